"""Evolutionary search over initial noise and intermediate latents (after EvoSearch, He et al. 2025,
arXiv 2505.17618).

Generation ``g`` starts at grid point ``e_g = levels[g] * steps`` (``levels[0] = 0``: the initial noise)
and moves the population forward along the denoising trajectory. Every member is denoised to a finished
image and verified; the ``elites`` best finished images so far are the parents of the next generation,
which starts from their latents at ``e_{g+1}`` (kept from their own denoising) mutated so that each
level's marginal is kept:

- at the initial noise: ``x' = sqrt(1 - beta^2) x + beta eps`` (a Gaussian stays the same Gaussian);
- at grid point e > 0, with ``x = alpha x0 + sigma eps``: the x0-prediction x0_hat (one model call per
  parent) splits ``x`` into signal and noise, and only the noise is mutated,
  ``x' = alpha x0_hat + sigma (sqrt(1 - beta^2) eps_hat + beta eps)``.

Later generations start cleaner, so they cost less and change less: early generations search layouts,
late ones refine details. The best finished image over all generations is returned.
"""

from __future__ import annotations

import itertools
import math

import torch

from .context import SearchContext

# Tuned on the toy world's tune split (300 pairs at 8x): two generations, at the noise and at 30% of the
# schedule, beat three at (0, 0.4, 0.6) with 2 elites and beta 0.5 by 2.7 points (paired).
DEFAULTS = {"population": 4, "elites": 3, "levels": (0.0, 0.3), "beta": 0.6, "extra": 0}


def starts(num_steps: int, levels) -> list[int]:
    """Grid points where the generations start (``levels`` are fractions of the schedule)."""
    return [min(round(float(f) * num_steps), num_steps - 1) for f in levels]


def sizes(population: int, generations: int, extra: int) -> list[int]:
    """Children per generation: ``population`` each, the ``extra`` ones in the last (the cheapest)."""
    out = [int(population)] * generations
    out[-1] += int(extra)
    return out


def mutate(ctx: SearchContext, x: torch.Tensor, rows: list[int], e: int, beta: float, gens) -> torch.Tensor:
    """Children of the parents' latents ``x`` at grid point ``e``: child k mutates row ``rows[k]``, with
    the noise of generator ``gens[k]``."""
    keep = math.sqrt(1.0 - beta * beta)
    if e == 0:  # pure noise: mix in fresh initial noise of the same scale
        return keep * x[rows] + beta * ctx.start(gens)
    eps = ctx.denoiser.sample_noise(gens, (len(rows), *x.shape[1:]))
    alpha, sigma = float(ctx.schedule.alpha[e]), float(ctx.schedule.sigma[e])
    x0 = ctx.predict(x, e)  # one call per parent, shared by its children
    eps_hat = (x - alpha * x0) / sigma
    return alpha * x0[rows] + sigma * (keep * eps_hat[rows] + beta * eps)


def evolutionary(ctx: SearchContext, population: int = 4, elites: int = 3, levels=(0.0, 0.3),
                 beta: float = 0.6, extra: int = 0) -> int:
    """Returns the best finished node's id."""
    n = ctx.schedule.num_steps
    points = starts(n, levels)
    states: dict[int, dict[int, torch.Tensor]] = {}  # node id -> its latents at later generations' starts
    finished = []  # (score, node) of every verified image
    for g, (e, size) in enumerate(zip(points, sizes(population, len(points), extra))):
        if g == 0:
            nodes, gens = ctx.spawn([None] * size, round=0, kind="init", start=0, end=n)
            x = ctx.start(gens)
        else:
            ranked = sorted(finished, key=lambda t: -t[0])[: min(int(elites), size)]
            parents = [ranked[k % len(ranked)][1] for k in range(size)]
            nodes, gens = ctx.spawn(parents, round=g, kind="mutant", start=e, end=n)
            x = torch.cat([states[p.id][e] for _, p in ranked])
            x = mutate(ctx, x, [k % len(ranked) for k in range(size)], e, float(beta), gens)
        later = points[g + 1:]
        saved, x0 = ctx.denoise_through(x, nodes, gens, later)
        for k, node in enumerate(nodes):
            states[node.id] = {p: saved[p][k : k + 1] for p in later}
        scores = ctx.verify(x0, nodes)
        finished += list(zip(scores.tolist(), nodes))
    best = max(finished, key=lambda t: t[0])[1]
    best.kept = True
    return best.id


def nfe(num_steps: int, forwards_per_step: int, population=4, elites=3, levels=(0.0, 0.3), beta=0.6,
        extra=0) -> int:
    points = starts(num_steps, levels)
    calls = done = 0
    for g, (e, size) in enumerate(zip(points, sizes(population, len(points), extra))):
        calls += size * (num_steps - e)
        if g > 0 and e > 0:  # one x0-prediction per parent mutated at an intermediate level
            calls += min(int(elites), size, done)
        done += size
    return forwards_per_step * calls


def validate(population=4, elites=3, levels=(0.0, 0.3), beta=0.6, extra=0) -> None:
    if int(population) < 1 or int(elites) < 1:
        raise ValueError(f"population and elites must be >= 1, got population={population}, elites={elites}")
    levels = tuple(float(f) for f in levels)
    if not levels or levels[0] != 0.0 or any(b <= a for a, b in itertools.pairwise(levels)) or levels[-1] >= 1.0:
        raise ValueError(f"levels must start at 0 (the initial noise) and increase below 1 (fractions of the "
                         f"schedule where generations start), got {levels}")
    if not 0.0 < float(beta) < 1.0:
        raise ValueError(f"beta must be in (0, 1): how much fresh noise a mutation mixes in, got {beta}")
    if int(extra) < 0:
        raise ValueError(f"extra must be >= 0 (children added to the last generation), got {extra}")


def fit(budget: int, num_steps: int, forwards_per_step: int, **params) -> dict:
    """The ``population`` and ``extra`` children in the last generation (whose children cost the least)
    that spend the most of ``budget``; ties go to the larger population."""
    params = {**DEFAULTS, **params, "extra": 0}
    cost = lambda pop, extra: nfe(num_steps, forwards_per_step, **{**params, "population": pop, "extra": extra})
    last = starts(num_steps, params["levels"])[-1]
    best, pop = {**params, "population": 0}, 1
    while cost(pop, 0) <= budget:
        extra = (budget - cost(pop, 0)) // (forwards_per_step * (num_steps - last))
        while extra > 0 and cost(pop, extra) > budget:  # each extra child may need its parent predicted
            extra -= 1
        if best["population"] == 0 or cost(pop, extra) >= cost(best["population"], best["extra"]):
            best = {**params, "population": pop, "extra": extra}
        pop += 1
    return best
