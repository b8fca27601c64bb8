"""Staged pruning of Best-of-N (as in TTSnap): start ``n`` paths, and at a few early steps (``prune_at``,
fractions of the schedule) verify their x0-predictions and keep only the best ``keep`` fraction."""

from __future__ import annotations

import itertools
import math

from .context import SearchContext

DEFAULTS = {"n": 8, "prune_at": (0.3, 0.6), "keep": 0.5}


def stages(num_steps: int, n: int, prune_at, keep: float) -> list[tuple[int, int, int]]:
    """[(start, end, paths alive)] per segment between pruning points."""
    cuts = sorted({min(max(round(f * num_steps), 1), num_steps - 1) for f in prune_at})
    bounds = [0, *cuts, num_steps]
    out, alive = [], n
    for a, b in itertools.pairwise(bounds):
        out.append((a, b, alive))
        alive = max(1, math.ceil(keep * alive))
    return out


def prune(ctx: SearchContext, n: int = 8, prune_at=(0.3, 0.6), keep: float = 0.5) -> int:
    plan = stages(ctx.schedule.num_steps, n, prune_at, keep)
    kept, x = [None] * n, None
    for r, (start, end, alive) in enumerate(plan):
        nodes, gens = ctx.spawn(kept, round=r, kind="init" if r == 0 else "continue", start=start, end=end)
        if r == 0:
            x = ctx.start(gens)
        x, _, scores = ctx.denoise_verified(x, nodes, gens)
        survivors = plan[r + 1][2] if r + 1 < len(plan) else 1
        top, kept = ctx.keep_best(scores, nodes, survivors)
        x = x[top]
    return kept[0].id


def nfe(num_steps: int, forwards_per_step: int, n=8, prune_at=(0.3, 0.6), keep=0.5) -> int:
    return forwards_per_step * sum((b - a) * alive for a, b, alive in stages(num_steps, n, prune_at, keep))


def validate(n=8, prune_at=(0.3, 0.6), keep=0.5) -> None:
    if int(n) < 1:
        raise ValueError(f"n must be >= 1 (paths at the start), got {n}")
    if not prune_at or not all(0.0 < float(f) < 1.0 for f in prune_at):
        raise ValueError(f"prune_at must be fractions of the schedule in (0, 1), got {prune_at!r}")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")


def fit(budget: int, num_steps: int, forwards_per_step: int, **params) -> dict:
    """The largest starting ``n`` whose pruned cost fits ``budget``; when that leaves more than 5% unspent,
    the ``keep`` fraction within 0.25 of the given one that spends the most (ties: the nearest)."""
    params = {**DEFAULTS, **params}

    def sized(keep: float) -> dict:
        p, n = {**params, "keep": keep}, 0
        while nfe(num_steps, forwards_per_step, **{**p, "n": n + 1}) <= budget:
            n += 1
        return {**p, "n": n}

    def spent(p: dict) -> int:
        return nfe(num_steps, forwards_per_step, **p) if p["n"] else 0

    keep = float(params["keep"])
    best = sized(keep)
    if spent(best) < 0.95 * budget:
        for k in range(-5, 6):
            other = round(keep + 0.05 * k, 4)
            if 0.0 < other <= 1.0:
                cand = sized(other)
                if spent(cand) > spent(best) or (spent(cand) == spent(best)
                                                 and abs(other - keep) < abs(best["keep"] - keep)):
                    best = cand
    return best
