"""Feynman-Kac steering (arXiv 2501.06848): particles resampled by potentials of intermediate rewards.

``particles`` paths move with the stochastic posterior transition (``eta``; the principled way to make a
deterministic sampler's particles diverge). Every ``every`` steps the verifier scores each particle's
x0-prediction (no extra model call: it is the last step's prediction) and a potential turns the reward
history into a weight G_t: ``difference`` exp(lam (r_t - r_prev)), ``max`` exp(lam max_s r_s), ``sum``
exp(lam sum_s r_s) or ``current`` exp(lam r_t). Weights multiply between resamplings; the particles are
resampled (``multinomial`` or ``systematic``) when the effective sample size falls below
``ess * particles`` (``ess=1`` resamples at every scoring). The best finished particle is returned.
"""

from __future__ import annotations

import torch

from .context import SearchContext

DEFAULTS = {"particles": 4, "potential": "max", "lam": 10.0, "every": 5, "resample": "systematic",
            "ess": 0.5, "eta": 1.0}
POTENTIALS = ("difference", "max", "sum", "current")


def log_potential(history: torch.Tensor, potential: str, lam: float) -> torch.Tensor:
    """Log-weight increment from a [particles, t] reward history (t >= 1) at the current scoring."""
    current = history[:, -1]
    if potential == "difference":
        previous = history[:, -2] if history.shape[1] > 1 else torch.zeros_like(current)
        return lam * (current - previous)
    if potential == "max":
        return lam * history.max(dim=1).values
    if potential == "sum":
        return lam * history.sum(dim=1)
    return lam * current


def effective_sample_size(log_w: torch.Tensor) -> float:
    w = torch.softmax(log_w.double(), dim=0)
    return float(1.0 / (w * w).sum())


def resample_indices(log_w: torch.Tensor, method: str, generator: torch.Generator) -> torch.Tensor:
    """Ancestor indices for a new particle set (sorted, so an unchanged set keeps its order)."""
    k = log_w.shape[0]
    w = torch.softmax(log_w.double(), dim=0)
    if method == "multinomial":
        idx = torch.multinomial(w, k, replacement=True, generator=generator)
    else:  # systematic: one uniform offset, k evenly spaced pointers into the cumulative weights
        u = (torch.rand(1, generator=generator, dtype=torch.float64) + torch.arange(k, dtype=torch.float64)) / k
        idx = torch.searchsorted(torch.cumsum(w, 0), u).clamp(max=k - 1)
    return idx.sort().values


def feynman_kac(ctx: SearchContext, particles: int = 4, potential: str = "max", lam: float = 10.0,
                every: int = 5, resample: str = "systematic", ess: float = 0.5, eta: float = 1.0) -> int:
    n = ctx.schedule.num_steps
    points = [*range(every, n, every), n]
    nodes, gens = ctx.spawn([None] * particles, round=0, kind="init", start=0, end=points[0])
    x = ctx.start(gens)
    log_w = torch.zeros(particles, dtype=torch.float64)
    history = torch.zeros(particles, 0, dtype=torch.float64)
    start = 0
    for r, end in enumerate(points):
        if r > 0:
            nodes, gens = ctx.spawn(nodes, round=r, kind="particle", start=start, end=end)
        x, x0 = ctx.walk(x, nodes, gens, eta)
        scores = ctx.verify(x0, nodes).double()
        if end == n:
            break
        history = torch.cat([history, scores[:, None]], dim=1)
        # Weights multiply between resamplings (the standard SMC update); resampling resets them.
        log_w = log_w + log_potential(history, potential, lam)
        if effective_sample_size(log_w) < ess * particles or ess >= 1.0:
            idx = resample_indices(log_w, resample, ctx.master)
            x, history = x[idx], history[idx]
            nodes = [nodes[i] for i in idx.tolist()]
            log_w = torch.zeros(particles, dtype=torch.float64)
        for node in nodes:
            node.kept = True
        start = end
    best = nodes[int(torch.argmax(scores))]
    best.kept = True
    return best.id


def nfe(num_steps: int, forwards_per_step: int, particles=4, **_) -> int:
    return forwards_per_step * particles * num_steps


def validate(particles=4, potential="max", lam=10.0, every=5, resample="systematic", ess=0.5, eta=1.0) -> None:
    if int(particles) < 1:
        raise ValueError(f"particles must be >= 1, got {particles}")
    if potential not in POTENTIALS:
        raise ValueError(f"potential must be one of {', '.join(POTENTIALS)}, got {potential!r}")
    if resample not in ("multinomial", "systematic"):
        raise ValueError(f"resample must be 'multinomial' or 'systematic', got {resample!r}")
    if not 0.0 < ess <= 1.0:
        raise ValueError(f"ess must be in (0, 1] (resample when ESS < ess * particles), got {ess}")
    if int(every) < 1:
        raise ValueError(f"every must be >= 1 step between resamplings, got {every}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0 (0: no steering; larger: the verifier's preference weighs more), got {lam}")
    if not 0.0 < eta <= 1.0:
        raise ValueError(f"eta must be in (0, 1]: particles need stochastic steps to diverge, got {eta}")


def fit(budget: int, num_steps: int, forwards_per_step: int, **params) -> dict:
    return {**DEFAULTS, **params, "particles": budget // (num_steps * forwards_per_step)}
