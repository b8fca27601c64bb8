"""Stochastic reverse transitions for strategies that need particles to diverge (beam search, particle
resampling), on any schedule written as ``x = alpha x0 + sigma eps`` (VP, VE or rectified flow).

The step from grid point ``i`` to the cleaner ``j`` samples the posterior of the exact forward kernel,
q(x_j | x_i, x0 = x0_hat), with its variance scaled by ``eta**2`` — DDIM's eta, written for all three
families (eta=1: the ancestral/DDPM posterior; eta=0: the deterministic DDIM/Euler-like step). For a
deterministic sampler such as flow-matching Euler this is the principled way to inject noise: the
marginals of the forward process are preserved whatever ``eta``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # types only: importing it would load diffusers
    from .schedule import Schedule


def posterior_step(schedule: Schedule, x: torch.Tensor, x0: torch.Tensor, i: int, j: int,
                   noise: torch.Tensor | None, eta: float = 1.0) -> torch.Tensor:
    """Move ``x`` (at grid point ``i``) to the cleaner point ``j`` given the clean estimate ``x0``."""
    if j <= i:
        raise ValueError(f"a reverse step goes to a cleaner grid point: {j} is not after {i}")
    a_i, s_i = schedule.alpha[i].item(), schedule.sigma[i].item()
    a_j, s_j = schedule.alpha[j].item(), schedule.sigma[j].item()
    eps = (x.double() - a_i * x0.double()) / s_i
    # Forward kernel j -> i: x_i = r x_j + sqrt(v) z; its posterior given x0 has variance s_j^2 v / s_i^2.
    r = a_i / a_j
    v = max(s_i * s_i - r * r * s_j * s_j, 0.0)
    c = eta * s_j * math.sqrt(v) / s_i
    out = a_j * x0.double() + math.sqrt(max(s_j * s_j - c * c, 0.0)) * eps
    if c > 0:
        out = out + c * noise.double()
    return out.to(x.dtype)
