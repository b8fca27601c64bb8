"""Diffusion latent beam search with look-ahead (DLBS, arXiv 2501.19252).

``beams`` paths are kept. Every ``every`` steps each beam spawns ``children`` stochastic continuations
(the posterior transition of :mod:`rd_inference.posterior` with ``eta``), each child is scored through a
``lookahead``-call deterministic look-ahead to x0, and the global top ``beams`` children survive. The
look-ahead's first call (the x0-prediction at the selection step) is reused as the survivors' next model
call, which the children of a beam share. The first round starts
``beams * children`` paths from pure noise; the last selection sees finished images.
"""

from __future__ import annotations

import itertools

from .context import SearchContext, lookahead_points

DEFAULTS = {"beams": 2, "children": 2, "lookahead": 1, "every": 5, "eta": 1.0}


def selection_points(num_steps: int, every: int) -> list[int]:
    return [*range(every, num_steps, every), num_steps]


def beam(ctx: SearchContext, beams: int = 2, children: int = 2, lookahead: int = 1, every: int = 5,
         eta: float = 1.0) -> int:
    """Returns the best finished child's node id."""
    points = selection_points(ctx.schedule.num_steps, every)
    kept, x, x0_first, start = [None] * (beams * children), None, None, 0
    for r, end in enumerate(points):
        if r == 0:
            nodes, gens = ctx.spawn(kept, round=0, kind="init", start=0, end=end)
            x = ctx.start(gens)
        else:
            parents = [p for p in kept for _ in range(children)]
            nodes, gens = ctx.spawn(parents, round=r, kind="branch", start=start, end=end)
            x0_first = x0_first.repeat_interleave(children, dim=0)
            x = x.repeat_interleave(children, dim=0)
        x, x0 = ctx.walk(x, nodes, gens, eta, x0_first=x0_first)
        if end < ctx.schedule.num_steps:
            x0, x0_first = ctx.lookahead(x, end, lookahead)
        scores = ctx.verify(x0, nodes)
        top, kept = ctx.keep_best(scores, nodes, beams)
        x, start = x[top], end
        if end < ctx.schedule.num_steps:
            x0_first = x0_first[top]
    return kept[0].id


def nfe(num_steps: int, forwards_per_step: int, beams=2, children=2, lookahead=1, every=5, eta=1.0) -> int:
    points = selection_points(num_steps, every)
    width = beams * children
    calls = width * points[0]  # first round: every path from noise
    for prev, end in itertools.pairwise(points):
        calls += width * (end - prev - 1)  # the branching step's call comes from the look-ahead
    # look-ahead at every selection before the end
    calls += width * sum(len(lookahead_points(p, num_steps, lookahead)) for p in points[:-1])
    return forwards_per_step * calls


def validate(beams=2, children=2, lookahead=1, every=5, eta=1.0) -> None:
    if int(beams) < 1 or int(children) < 1:
        raise ValueError(f"beams and children must be >= 1, got beams={beams}, children={children}")
    if int(lookahead) < 1:
        raise ValueError(f"lookahead must be >= 1 model call, got {lookahead}")
    if int(every) < 1:
        raise ValueError(f"every must be >= 1 step between selections, got {every}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0: deterministic steps, 1: ancestral), got {eta}")


def fit(budget: int, num_steps: int, forwards_per_step: int, **params) -> dict:
    """The most beams whose cost fits ``budget`` (cost grows linearly in beams)."""
    params = {**DEFAULTS, **params}
    per_beam = nfe(num_steps, forwards_per_step, **{**params, "beams": 1})
    return {**params, "beams": budget // per_beam}
