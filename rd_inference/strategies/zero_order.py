"""Zero-order search (Ma et al. 2025 §3.1): neighbours of a pivot noise at a fixed cosine similarity;
the pivot moves to the best neighbour only when it beats the pivot's score."""

from __future__ import annotations

import math

import torch

from .context import SearchContext

DEFAULTS = {"neighbors": 4, "rounds": 2, "cosine": 0.9}


def neighbor_noise(pivot: torch.Tensor, u: torch.Tensor, cosine: float) -> torch.Tensor:
    """A noise of the pivot's norm whose cosine with the pivot is ``cosine`` (u: raw Gaussian draws)."""
    p = pivot.flatten(1).double()
    u = u.flatten(1).double()
    p_hat = p / p.norm(dim=1, keepdim=True)
    u = u - (u * p_hat).sum(dim=1, keepdim=True) * p_hat  # orthogonal to the pivot
    u = u / u.norm(dim=1, keepdim=True) * p.norm(dim=1, keepdim=True)
    out = cosine * p + math.sqrt(1.0 - cosine**2) * u
    return out.reshape(pivot.shape).to(pivot.dtype)


def zero_order(ctx: SearchContext, neighbors: int = 4, rounds: int = 2, cosine: float = 0.9) -> int:
    """``rounds`` rounds of ``neighbors`` full trajectories around the pivot (the pivot itself first)."""
    end = ctx.schedule.num_steps
    (pivot,), gens = ctx.spawn([None], round=0, kind="init", start=0, end=end)
    pivot_noise = ctx.start(gens)
    _, _, scores = ctx.denoise_verified(pivot_noise, [pivot], gens)
    pivot_score = float(scores[0])
    for r in range(1, rounds + 1):
        k = int(neighbors)
        nodes, gens = ctx.spawn([pivot] * k, round=r, kind="neighbor", start=0, end=end)
        noise = neighbor_noise(pivot_noise.expand(k, *pivot_noise.shape[1:]), ctx.start(gens), cosine)
        _, _, scores = ctx.denoise_verified(noise, nodes, gens)
        best = int(torch.argmax(scores))
        if float(scores[best]) > pivot_score:
            pivot, pivot_score, pivot_noise = nodes[best], float(scores[best]), noise[best : best + 1]
    pivot.kept = True
    return pivot.id


def nfe(num_steps: int, forwards_per_step: int, neighbors=4, rounds=2, cosine=0.9) -> int:
    return num_steps * forwards_per_step * (1 + neighbors * rounds)


def validate(neighbors=4, rounds=2, cosine=0.9) -> None:
    if int(neighbors) < 1 or int(rounds) < 0:
        raise ValueError(f"neighbors must be >= 1 and rounds >= 0, got neighbors={neighbors}, rounds={rounds}")
    if not 0.0 < cosine < 1.0:
        raise ValueError(f"cosine must be in (0, 1): the similarity of a neighbour to its pivot, got {cosine}")


def fit(budget: int, num_steps: int, forwards_per_step: int, **params) -> dict:
    """Spend the paths left after the pivot on about ``neighbors`` per round, spreading the remainder over
    the rounds so the whole budget is used (e.g. 16 paths, 4 neighbours -> 3 rounds of 5)."""
    params = {**DEFAULTS, **params}
    extra = budget // (num_steps * forwards_per_step) - 1
    if extra < 1:
        return {**params, "neighbors": 1, "rounds": 0 if extra == 0 else -1}
    rounds = max(1, extra // int(params["neighbors"]))
    return {**params, "neighbors": extra // rounds, "rounds": rounds}
