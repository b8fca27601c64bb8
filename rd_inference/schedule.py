"""Schedule: the grid of noise levels of a pipeline's own diffusers scheduler, as plain tensors.

Grid point ``i`` (0 <= i <= n) is the state *before* step ``i``; point ``n`` is the clean image. At every
point the latent has the form ``x = alpha[i] * x0 + sigma[i] * eps``, which is all the exact re-noising
kernels and the x0-prediction need. ``level`` is the normalised noise-level axis on which Search over
Paths measures its distances: the (shifted) sigma for rectified flow, ``timestep / num_train_timesteps``
for VP and VE discrete schedulers; ``level[n] == 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)

# Which state space each supported scheduler steps in. "vp": x = sqrt(abar) x0 + sqrt(1-abar) eps;
# "ve": x = x0 + sigma eps (k-diffusion sigma space of a VP model); "flow": x = (1-t) x0 + t eps.
SCHEDULER_SPACES: dict[type, str] = {
    DDIMScheduler: "vp",
    DDPMScheduler: "vp",
    DPMSolverMultistepScheduler: "vp",
    UniPCMultistepScheduler: "vp",
    EulerDiscreteScheduler: "ve",
    EulerAncestralDiscreteScheduler: "ve",
    LMSDiscreteScheduler: "ve",
    FlowMatchEulerDiscreteScheduler: "flow",
}


def scheduler_space(scheduler) -> str:
    """The state space of ``scheduler``; a clear error for a scheduler the search cannot drive."""
    space = SCHEDULER_SPACES.get(type(scheduler))
    if space is None:
        known = ", ".join(sorted(c.__name__ for c in SCHEDULER_SPACES))
        raise ValueError(
            f"unsupported scheduler {type(scheduler).__name__}; supported: {known}. "
            "Swap it with e.g. `pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)`."
        )
    if space == "vp" and scheduler.config.get("use_flow_sigmas", False):
        # Multistep solvers on rectified-flow sigmas (Wan ships UniPC so): x = (1-s) x0 + s eps, the
        # flow-matching grid the re-noising kernel needs; their history restarts per segment, as on VP.
        if scheduler.config.get("prediction_type") != "flow_prediction":
            raise ValueError(
                f"{type(scheduler).__name__} with use_flow_sigmas=True needs prediction_type='flow_prediction', "
                f"got {scheduler.config.get('prediction_type')!r}"
            )
        return "flow"
    if getattr(scheduler, "order", 1) != 1 and space != "vp":
        raise ValueError(f"{type(scheduler).__name__} needs several model calls per step; use a one-call scheduler.")
    return space


@dataclass(frozen=True)
class Schedule:
    """Noise levels of an inference grid of ``n`` steps (tensors of length n+1, index n = clean)."""

    space: str  # "vp" | "ve" | "flow"
    prediction: str  # "epsilon" | "v_prediction" | "sample" | "flow"
    timesteps: torch.Tensor  # [n], what the denoiser is called with at each step
    alpha: torch.Tensor  # [n+1]
    sigma: torch.Tensor  # [n+1]
    level: torch.Tensor  # [n+1], decreasing, level[n] == 0

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def index_of_level(self, level: float) -> int:
        """The grid index whose level is nearest to ``level`` (ties go to the cleaner point)."""
        dist = (self.level - float(level)).abs()
        return int(len(dist) - 1 - torch.argmin(dist.flip(0)))

    def x0_from_output(self, x: torch.Tensor, output: torch.Tensor, i: int) -> torch.Tensor:
        """The clean-image estimate from the model's (guided) output at grid point ``i``."""
        a, s = self.alpha[i].item(), self.sigma[i].item()
        if self.prediction == "epsilon":
            return (x - s * output) / a
        if self.prediction == "flow":  # velocity v = eps - x0, x = (1-t) x0 + t eps
            return x - s * output
        if self.prediction == "v_prediction":
            # v is defined in VP coordinates: x_vp = sqrt(abar) x0 + sqrt(1-abar) eps.
            abar = a * a / (a * a + s * s)
            x_vp = x * (abar**0.5) / a
            return abar**0.5 * x_vp - (1 - abar) ** 0.5 * output
        if self.prediction == "sample":
            return output
        raise ValueError(f"unknown prediction type {self.prediction!r}")

    def to_dict(self) -> dict:
        return {
            "space": self.space,
            "prediction": self.prediction,
            "timesteps": self.timesteps.tolist(),
            "level": [round(v, 6) for v in self.level.tolist()],
        }

    @classmethod
    def from_scheduler(cls, scheduler) -> Schedule:
        """Read the grid off a scheduler on which ``set_timesteps`` has already been called."""
        space = scheduler_space(scheduler)
        timesteps = scheduler.timesteps.detach().to("cpu", torch.float64)
        n = len(timesteps)
        T = scheduler.config.num_train_timesteps
        if space == "flow":
            s = scheduler.sigmas.detach().to("cpu", torch.float64)[: n + 1].clone()
            s[n] = 0.0
            return cls(space, "flow", scheduler.timesteps, 1.0 - s, s, s.clone())
        level = torch.cat([timesteps / T, torch.zeros(1, dtype=torch.float64)])
        prediction = scheduler.config.prediction_type
        if space == "ve" or hasattr(scheduler, "sigmas"):
            # Both VE schedulers and the VP multistep ones keep k-diffusion sigmas sqrt((1-abar)/abar).
            ve = scheduler.sigmas.detach().to("cpu", torch.float64)[: n + 1].clone()
            ve[n] = 0.0
            if space == "ve":
                return cls(space, prediction, scheduler.timesteps, torch.ones(n + 1, dtype=torch.float64), ve, level)
            alpha = 1.0 / torch.sqrt(ve**2 + 1.0)
            return cls(space, prediction, scheduler.timesteps, alpha, ve * alpha, level)
        abar = scheduler.alphas_cumprod.detach().to("cpu", torch.float64)[timesteps.long()]
        abar = torch.cat([abar, torch.ones(1, dtype=torch.float64)])
        return cls(space, prediction, scheduler.timesteps, abar.sqrt(), (1.0 - abar).sqrt(), level)
