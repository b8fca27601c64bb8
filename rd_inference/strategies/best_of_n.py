"""Best-of-N: N independent trajectories from pure noise, the verifier picks one."""

from __future__ import annotations

import torch

from .context import SearchContext

DEFAULTS = {"n": 4}


def best_of_n(ctx: SearchContext, n: int = 4) -> int:
    """Denoise ``n`` paths in one batch, verify the finished images, return the best node's id."""
    end = ctx.schedule.num_steps
    nodes, gens = ctx.spawn([None] * n, round=0, kind="init", start=0, end=end)
    _, _, scores = ctx.denoise_verified(ctx.start(gens), nodes, gens)
    best = nodes[int(torch.argmax(scores))]
    best.kept = True
    return best.id


def nfe(num_steps: int, forwards_per_step: int, n: int = 4) -> int:
    return n * num_steps * forwards_per_step


def validate(n: int = 4) -> None:
    if int(n) < 1:
        raise ValueError(f"n must be >= 1 (number of paths), got {n}")


def fit(budget: int, num_steps: int, forwards_per_step: int, **params) -> dict:
    """The largest ``n`` whose cost fits ``budget`` denoiser forwards."""
    return {**params, "n": budget // (num_steps * forwards_per_step)}
