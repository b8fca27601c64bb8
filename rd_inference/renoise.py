"""Exact forward re-noising: move a latent from a cleaner level to a noisier one along the forward process.

Unlike ``scheduler.add_noise(x0_hat, ...)``, which restarts from a clean estimate, the forward transition
kernel keeps the path: if ``x`` has the marginal of the cleaner level, the result has the marginal of the
noisier one. With ``x = alpha x0 + sigma eps`` at both levels the kernel is

    x' = (alpha'/alpha) x + sqrt(sigma'^2 - (alpha'/alpha)^2 sigma^2) eps',

which is, written per family (DESIGN.md):
    VP:   x' = sqrt(abar'/abar) x + sqrt(1 - abar'/abar) eps'
    VE:   x' = x + sqrt(sigma'^2 - sigma^2) eps'
    flow: a = (1-t')/(1-t),  x' = a x + sqrt(t'^2 - a^2 t^2) eps'
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # types only: importing it would load diffusers
    from .schedule import Schedule


def renoise_vp(x: torch.Tensor, abar: float, abar_to: float, noise: torch.Tensor) -> torch.Tensor:
    ratio = abar_to / abar
    return math.sqrt(ratio) * x + math.sqrt(max(1.0 - ratio, 0.0)) * noise


def renoise_ve(x: torch.Tensor, sigma: float, sigma_to: float, noise: torch.Tensor) -> torch.Tensor:
    return x + math.sqrt(max(sigma_to**2 - sigma**2, 0.0)) * noise


def renoise_flow(x: torch.Tensor, t: float, t_to: float, noise: torch.Tensor) -> torch.Tensor:
    a = (1.0 - t_to) / (1.0 - t)
    return a * x + math.sqrt(max(t_to**2 - (a * t) ** 2, 0.0)) * noise


def renoise(schedule: Schedule, x: torch.Tensor, i_from: int, i_to: int, noise: torch.Tensor) -> torch.Tensor:
    """Re-noise ``x`` from grid point ``i_from`` to the noisier point ``i_to <= i_from`` of ``schedule``."""
    if i_to > i_from:
        raise ValueError(f"re-noising goes to a noisier level: grid index {i_to} is cleaner than {i_from}")
    if i_to == i_from:
        return x
    if schedule.space == "flow":
        out = renoise_flow(x.double(), schedule.sigma[i_from].item(), schedule.sigma[i_to].item(), noise.double())
    elif schedule.space == "ve":
        out = renoise_ve(x.double(), schedule.sigma[i_from].item(), schedule.sigma[i_to].item(), noise.double())
    else:
        abar, abar_to = schedule.alpha[i_from].item() ** 2, schedule.alpha[i_to].item() ** 2
        out = renoise_vp(x.double(), abar, abar_to, noise.double())
    return out.to(x.dtype)
