"""Search over Paths (Ma et al. 2025, arXiv 2501.09732 §3.2) with exact forward re-noising.

Levels are snapped to the scheduler's grid: re-noising goes from grid point ``i`` to the point nearest
``level[i] + delta_f`` (at least one step noisier) and denoising stops at the point nearest
``level[i] + delta_f - delta_b`` (at least one step cleaner than ``i``), so every round makes progress.
"""

from __future__ import annotations

import torch

from ..schedule import Schedule
from .context import SearchContext

DEFAULTS = {"n": 2, "m": 2, "sigma_start": 0.11, "delta_f": 0.78, "delta_b": 0.81}


def plan_rounds(schedule: Schedule, sigma_start: float, delta_f: float, delta_b: float):
    """(start index, [(i, f, j) per round]): re-noise i -> f, denoise f -> j."""
    n = schedule.num_steps
    i = n if sigma_start <= 0 else max(schedule.index_of_level(sigma_start), 1)
    start, rounds = i, []
    while i < n:
        level = float(schedule.level[i])
        f = max(min(schedule.index_of_level(level + delta_f), i - 1), 0)
        target = level + delta_f - delta_b
        j = n if target <= 0 else schedule.index_of_level(target)
        j = max(j, i + 1)
        rounds.append((i, f, j))
        i = j
    return start, rounds


def search_over_paths(
    ctx: SearchContext,
    n: int = 2,
    m: int = 2,
    sigma_start: float = 0.11,
    delta_f: float = 0.78,
    delta_b: float = 0.81,
) -> int:
    """Keep ``n`` paths; each round re-noise every kept path along ``m`` fresh branches, denoise them a
    little past where they were, verify the branches' clean predictions and keep the global top ``n``."""
    start, rounds = plan_rounds(ctx.schedule, sigma_start, delta_f, delta_b)
    kept, gens = ctx.spawn([None] * n, round=0, kind="init", start=0, end=start)
    x, x0 = ctx.denoise(ctx.start(gens), kept, gens)
    if not rounds:  # sigma_start = 0: the initial paths are finished images
        scores = ctx.verify(x0, kept)
        best = kept[int(torch.argmax(scores))]
        best.kept = True
        return best.id
    for r, (i, f, j) in enumerate(rounds, start=1):
        parents = [p for p in kept for _ in range(m)]
        children, gens = ctx.spawn(parents, round=r, kind="branch", start=f, end=j)
        y = ctx.branch(x.repeat_interleave(m, dim=0), i, f, gens)
        y, x0 = ctx.denoise(y, children, gens)
        scores = ctx.verify(x0, children)
        top, kept = ctx.keep_best(scores, children, n)
        x = y[top]
    return kept[0].id


def nfe(num_steps: int, forwards_per_step: int, schedule: Schedule, n=2, m=2, sigma_start=0.11,
        delta_f=0.78, delta_b=0.81) -> int:
    start, rounds = plan_rounds(schedule, sigma_start, delta_f, delta_b)
    return forwards_per_step * n * (start + m * sum(j - f for _, f, j in rounds))


def validate(n=2, m=2, sigma_start=0.11, delta_f=0.78, delta_b=0.81) -> None:
    if int(n) < 1 or int(m) < 1:
        raise ValueError(f"n and m must be >= 1 (paths kept, branches per path), got n={n}, m={m}")
    if not 0.0 <= sigma_start <= 1.0:
        raise ValueError(f"sigma_start must be in [0, 1] on the noise-level axis, got {sigma_start}")
    if delta_f <= 0:
        raise ValueError(f"delta_f must be > 0 (how far to re-noise), got {delta_f}")
    if delta_b <= delta_f:
        raise ValueError(
            f"delta_b ({delta_b}) must be larger than delta_f ({delta_f}), or the search makes no progress "
            "towards a clean image; the paper uses delta_f=0.78, delta_b=0.81"
        )


def fit(budget: int, num_steps: int, forwards_per_step: int, schedule: Schedule, **params) -> dict:
    """The largest ``n`` (paths kept) whose cost fits ``budget``, with ``m`` and the levels as given."""
    params = {**DEFAULTS, **params}
    per_path = nfe(num_steps, forwards_per_step, schedule, **{**params, "n": 1})
    return {**params, "n": budget // per_path}
