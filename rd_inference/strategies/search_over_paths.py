"""Search over Paths (Ma et al. 2025, arXiv 2501.09732 §3.2) with exact forward re-noising.

Levels are snapped to the scheduler's grid: re-noising goes from grid point ``i`` to the point nearest
``level[i] + delta_f`` (at least one step noisier) and denoising stops at the point nearest
``level[i] + delta_f - delta_b`` (at least one step cleaner than ``i``), so every round makes progress.

Three settings go beyond the paper (``widen=1, rollover=False, keep_parent=False`` is the paper's algorithm):

- ``widen``: start ``widen * n`` paths, verify their x0-predictions at ``sigma_start`` and keep the best
  ``n``. The layout of an image is decided at high noise (docs/sop_diagnosis.md), so choosing among many
  starts is where most of the gain is; the rounds then repair what is still open.
- ``rollover`` (after Kim et al. 2025's rollover budget forcing): a round issues its branches one wave
  (one branch per kept path) at a time and stops as soon as a branch beats the best kept path; the
  forwards it did not use roll over to the next round, and the last round spends what is left.
- ``keep_parent``: each kept path also continues without re-noising (from ``i`` to ``j``) and competes with
  its branches, so a round can keep what it had. A re-noised branch rarely keeps a layout (a failed
  position prompt is rescued by re-noising only from high noise), so without this a good path found early
  can be lost.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .context import SearchContext

if TYPE_CHECKING:  # types only: importing it would load diffusers
    from ..schedule import Schedule

DEFAULTS = {"n": 2, "m": 2, "sigma_start": 0.11, "delta_f": 0.78, "delta_b": 0.81, "widen": 1.0, "n_init": 0,
            "rollover": False, "keep_parent": False}


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


def initial_paths(n: int, widen: float = 1.0, n_init: int = 0) -> int:
    """Paths started from noise: ``n_init`` when given (the fitter sets it), else ``widen * n``."""
    return max(int(n), int(n_init) if n_init else math.ceil(float(widen) * int(n)))


def search_over_paths(
    ctx: SearchContext,
    n: int = 2,
    m: int = 2,
    sigma_start: float = 0.11,
    delta_f: float = 0.78,
    delta_b: float = 0.81,
    widen: float = 1.0,
    n_init: int = 0,
    rollover: bool = False,
    keep_parent: bool = False,
) -> int:
    """Keep ``n`` paths; each round re-noise every kept path along ``m`` fresh branches, denoise them a
    little past where they were, verify the branches' clean predictions and keep the global top ``n``.
    Returns the best finished node's id."""
    start, rounds = plan_rounds(ctx.schedule, sigma_start, delta_f, delta_b)
    n0 = initial_paths(n, widen, n_init)
    kept, gens = ctx.spawn([None] * n0, round=0, kind="init", start=0, end=start)
    x, x0 = ctx.denoise(ctx.start(gens), kept, gens)
    if not rounds:  # sigma_start = 0: the initial paths are finished images
        scores = ctx.verify(x0, kept)
        return ctx.keep_best(scores, kept, 1)[1][0].id
    best_kept = None  # the kept paths' best score, when they were verified
    if n0 > n:  # a wider start: select on the x0-predictions at sigma_start
        scores = ctx.verify(x0, kept)
        top, kept = ctx.keep_best(scores, kept, n)
        x, best_kept = x[top], float(scores[top[0]])
    carry = 0  # path-steps left unused by earlier rounds (rollover)
    for r, (i, f, j) in enumerate(rounds, start=1):
        last, length = r == len(rounds), j - f
        allowance = n * m * length + carry
        children, ys, scores = [], [], []
        if keep_parent:  # the kept paths themselves, denoised on from i without new noise
            nodes, gens = ctx.spawn(kept, round=r, kind="continue", start=i, end=j)
            y, _, s = ctx.denoise_verified(x, nodes, gens)
            children, ys, scores = list(nodes), [y], [s]
        # Without rollover one wave holds all m branches per path (one batch); with it, one branch per path,
        # so the round can stop at the first wave that improves on the kept paths.
        size = 1 if rollover else m
        while allowance >= n * size * length:
            parents = [p for p in kept for _ in range(size)]
            nodes, gens = ctx.spawn(parents, round=r, kind="branch", start=f, end=j)
            y = ctx.branch(x.repeat_interleave(size, dim=0), i, f, gens)
            y, _, s = ctx.denoise_verified(y, nodes, gens)
            children, ys, scores = children + nodes, ys + [y], scores + [s]
            allowance -= n * size * length
            if rollover and not last and best_kept is not None and float(s.max()) > best_kept:
                break
        carry = allowance if rollover else 0
        scores_all = torch.cat(scores)
        top, kept = ctx.keep_best(scores_all, children, n)
        x, best_kept = torch.cat(ys)[top], float(scores_all[top[0]])
    return kept[0].id


def nfe(num_steps: int, forwards_per_step: int, schedule: Schedule, n=2, m=2, sigma_start=0.11,
        delta_f=0.78, delta_b=0.81, widen=1.0, n_init=0, rollover=False, keep_parent=False) -> int:
    """Planned denoiser forwards (with ``rollover`` a ceiling: forwards a round leaves roll over and the last
    round may not divide them)."""
    start, rounds = plan_rounds(schedule, sigma_start, delta_f, delta_b)
    branches = n * m * sum(j - f for _, f, j in rounds)
    kept = n * sum(j - i for i, _, j in rounds) if keep_parent else 0
    return forwards_per_step * (initial_paths(n, widen, n_init) * start + branches + kept)


def validate(n=2, m=2, sigma_start=0.11, delta_f=0.78, delta_b=0.81, widen=1.0, n_init=0, rollover=False,
             keep_parent=False) -> None:
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
    if not float(widen) >= 1.0:
        raise ValueError(f"widen must be >= 1 (initial paths per kept path; 1 is the paper's search), got {widen}")
    if int(n_init) < 0:
        raise ValueError(f"n_init must be >= 0 (0: widen * n initial paths), got {n_init}")
    if not isinstance(rollover, bool):
        # A ValueError like every other bad setting, so every face shows it as a one-line user error.
        raise ValueError(f"rollover must be true or false, got {rollover!r}")  # noqa: TRY004
    if not isinstance(keep_parent, bool):
        raise ValueError(f"keep_parent must be true or false, got {keep_parent!r}")  # noqa: TRY004


def fit(budget: int, num_steps: int, forwards_per_step: int, schedule: Schedule, **params) -> dict:
    """Sizes that spend ``budget``: the most kept paths ``n`` at the given shape (m, levels, widen), the
    remainder as extra initial paths; when that leaves more than 5% unspent, the ``m`` (1 .. 2m) that
    spends the most. ``n = 0`` when even one path does not fit."""
    params = {**DEFAULTS, **params, "n_init": 0}
    start, _ = plan_rounds(schedule, params["sigma_start"], params["delta_f"], params["delta_b"])
    per_init = forwards_per_step * start

    def sized(m: int) -> dict:
        p = {**params, "m": m, "n": 0}
        while nfe(num_steps, forwards_per_step, schedule, **{**p, "n": p["n"] + 1}) <= budget:
            p["n"] += 1
        if p["n"] == 0:
            return p
        spent = nfe(num_steps, forwards_per_step, schedule, **p)
        p["n_init"] = initial_paths(p["n"], p["widen"]) + (budget - spent) // per_init
        return p

    def spent(p: dict) -> int:
        return nfe(num_steps, forwards_per_step, schedule, **p) if p["n"] else 0

    m = int(params["m"])
    best = sized(m)
    if spent(best) < 0.95 * budget:
        for other in range(1, 2 * m + 1):
            cand = sized(other)
            if spent(cand) > spent(best) or (spent(cand) == spent(best) and abs(other - m) < abs(best["m"] - m)):
                best = cand
    return best
