"""A denoiser over a k-diffusion style model ``model_fn(x, sigma) -> denoised x0``, stepped with Euler.

This is how a search runs inside a host that owns the model, the prompt conditioning and the schedule
(ComfyUI's KSAMPLER, a k-diffusion ``CFGDenoiser``): the host hands over a denoising function, its sigma
grid, the state space and a decoder, and every strategy in :mod:`rd_inference.strategies` runs on it
unchanged, with the exact re-noising kernels of :mod:`rd_inference.renoise`.

Two state spaces share the k-diffusion contract (``model_fn`` returns the clean estimate):

- ``"ve"``: ``x = x0 + sigma * eps`` (epsilon and v-prediction models in k-diffusion sigma space);
- ``"flow"``: ``x = (1 - sigma) * x0 + sigma * eps`` (rectified flow: SD3, FLUX; ComfyUI's CONST).

The k-diffusion Euler step ``d = (x - x0) / sigma; x += d * (sigma_next - sigma)`` is exact for both when
the model's x0 is exact, so one stepper serves both, and it keeps no state between steps: no history can
leak from one path to another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..ledger import Ledger
from ..schedule import Schedule
from .base import ChunkedDenoiser

SPACES = ("ve", "flow")


def default_level(space: str, sigmas: torch.Tensor) -> torch.Tensor:
    """The noise-level axis Search over Paths measures its distances on, in [0, 1], 0 = clean.

    Flow: sigma itself (the paper's axis). VE: ``sigma / sqrt(1 + sigma^2)``, the noise standard deviation
    of the equivalent variance-preserving state (``sqrt(1 - abar)``), monotone in sigma and bounded by 1.
    A host that knows its model's discrete timesteps should pass ``timestep(sigma) / 1000`` instead: that is
    the axis the diffusers adapters use, so the strategy defaults mean the same on both.
    """
    s = sigmas.to(torch.float64)
    return s.clone() if space == "flow" else s / torch.sqrt(1.0 + s * s)


def schedule_from_sigmas(space: str, sigmas: torch.Tensor, level: torch.Tensor | None = None) -> Schedule:
    """A :class:`Schedule` over a k-diffusion sigma grid (``sigmas[-1]`` must be 0: the clean end).

    The model is asked for x0 directly, so ``prediction="sample"`` and ``timesteps`` are the sigmas.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    sigmas = torch.as_tensor(sigmas).detach().to("cpu", torch.float64).flatten()
    if sigmas.numel() < 2:
        raise ValueError(f"need at least two sigmas (one step), got {sigmas.numel()}")
    if float(sigmas[-1]) != 0.0:
        raise ValueError(
            f"the sigmas end at {float(sigmas[-1]):.4g}, not 0: a search must finish at a clean image. "
            "Give the full schedule (in ComfyUI: do not split the sigmas before a search sampler)."
        )
    if not bool((sigmas[:-1] > sigmas[1:]).all()):
        raise ValueError("the sigmas must be strictly decreasing (noisiest first)")
    if space == "flow" and float(sigmas[0]) > 1.0:
        raise ValueError(f"flow sigmas lie in [0, 1], got a first sigma of {float(sigmas[0]):.4g}")
    level = default_level(space, sigmas) if level is None else torch.as_tensor(level, dtype=torch.float64).flatten()
    if level.shape != sigmas.shape:
        raise ValueError(f"level needs one value per sigma ({sigmas.numel()}), got {level.numel()}")
    level = level.clone()
    level[-1] = 0.0
    if space == "flow":
        alpha, sigma = 1.0 - sigmas, sigmas.clone()
    else:
        alpha, sigma = torch.ones_like(sigmas), sigmas.clone()
    return Schedule(space, "sample", sigmas[:-1].clone(), alpha, sigma, level)


class KDiffusionDenoiser(ChunkedDenoiser):
    """The :class:`~rd_inference.denoisers.Denoiser` interface over ``model_fn(x, sigma) -> x0``.

    Args:
        model_fn: the (guided) denoiser; ``sigma`` is a tensor [B] on ``device``.
        sigmas: the sigma grid, noisiest first, ending at 0.
        space: ``"ve"`` or ``"flow"`` (see the module docstring).
        latent_shape: one path's latent shape, e.g. ``(4, 64, 64)``.
        decode_fn: clean latents -> float images [B,3,H,W] in [0,1].
        prompt: the text the verifier judges against.
        level: noise-level axis per sigma (see :func:`default_level`).
        noise_scaling: ``(sigma, unit_noise) -> x`` at the first grid point (a host's own scaling, e.g. the
            img2img latent mixed in); defaults to ``sigma * noise`` (the x0 = 0 start of txt2img).
        forwards_per_step: model forwards one path costs per step (2 with classifier-free guidance).
        on_final: called with ``(latents, generators)`` whenever a batch reaches the clean end, so a host
            can keep the latents of the node it will pick (the search returns images, not latents).

    Example:
        >>> den = KDiffusionDenoiser(lambda x, s: torch.zeros_like(x), torch.tensor([1.0, 0.5, 0.0]), space="flow",
        ...                          latent_shape=(3, 8, 8), decode_fn=lambda x0: (x0 + 1) / 2, prompt="red")
        >>> run_search(den, BrightnessVerifier(), strategy="bon", n=2)
    """

    family = "kdiffusion"

    def __init__(
        self,
        model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        sigmas: torch.Tensor,
        *,
        space: str,
        latent_shape: Sequence[int],
        decode_fn: Callable[[torch.Tensor], torch.Tensor],
        prompt: str,
        level: torch.Tensor | None = None,
        noise_scaling: Callable[[float, torch.Tensor], torch.Tensor] | None = None,
        forwards_per_step: int = 1,
        max_batch: int = 8,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        ledger: Ledger | None = None,
        on_final: Callable[[torch.Tensor, Sequence[torch.Generator]], None] | None = None,
        extra_config: dict[str, Any] | None = None,
    ):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty: pass a text describing the image")
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if int(forwards_per_step) < 1:
            raise ValueError(f"forwards_per_step must be >= 1, got {forwards_per_step}")
        self.model_fn = model_fn
        self.space = space
        self.schedule = schedule_from_sigmas(space, sigmas, level)
        self.latent_shape = tuple(int(d) for d in latent_shape)
        self.decode_fn = decode_fn
        self.prompt = prompt
        self.noise_scaling = noise_scaling
        self._forwards_per_step = int(forwards_per_step)
        self.max_batch = int(max_batch)
        self.device = torch.device(device)
        self.dtype = dtype
        self.ledger = ledger or Ledger()
        self.on_final = on_final
        self.extra_config = dict(extra_config or {})

    @property
    def forwards_per_step(self) -> int:
        return self._forwards_per_step

    # ---- randomness ------------------------------------------------------------------------------------
    def sample_noise(self, generators: Sequence[torch.Generator], shape: Sequence[int]) -> torch.Tensor:
        """Unit noise, one row per generator, drawn on the CPU so a seed gives the same noise on any device."""
        rows = [torch.randn((1, *shape[1:]), generator=g, dtype=torch.float32) for g in generators]
        return torch.cat(rows).to(self.device, self.dtype)

    def initial_noise(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """The state at grid point 0 for new paths."""
        noise = self.sample_noise(generators, (len(generators), *self.latent_shape))
        sigma0 = float(self.schedule.sigma[0])
        if self.noise_scaling is not None:
            return self.noise_scaling(sigma0, noise).to(self.device, self.dtype)
        return noise * sigma0

    # ---- stepping ------------------------------------------------------------------------------------
    def denoise(self, x, start, end, generators, on_step=None, on_chunk=None):
        """Euler from grid point ``start`` to ``end`` in chunks of ``max_batch``; returns (x_end, x0).
        Finished paths are handed to ``on_final`` (the host keeps the chosen path's latent)."""
        x_end, x0 = super().denoise(x, start, end, generators, on_step, on_chunk)
        if end == self.schedule.num_steps and self.on_final is not None:
            self.on_final(x_end, list(generators))
        return x_end, x0

    @torch.inference_mode()
    def _denoise_chunk(self, x, start, end, generators, on_step):
        s = self.schedule.sigma
        x0 = None
        for i in range(start, end):
            sigma, sigma_next = float(s[i]), float(s[i + 1])
            with self.ledger.phase("denoise"):
                x0 = self._predict_chunk(x, i)
                x = x + (x - x0) / sigma * (sigma_next - sigma)  # k-diffusion Euler: d = (x - x0) / sigma
            self._counted(x.shape[0], on_step)
        self.ledger.paths += x.shape[0]
        if end == self.schedule.num_steps:
            x0 = x  # at sigma 0 the state is the clean image
        return x, x0

    def _predict_chunk(self, x: torch.Tensor, i: int) -> torch.Tensor:
        sig = torch.full((x.shape[0],), float(self.schedule.sigma[i]), device=x.device, dtype=torch.float32)
        return self.model_fn(x, sig).to(x.dtype)

    def _decode_chunk(self, x0: torch.Tensor) -> torch.Tensor:
        img = self.decode_fn(x0)
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"decode_fn must return images [B,3,H,W], got {tuple(img.shape)}")
        return img

    def move_models(self, device) -> None:
        """The host owns the model and moves it (ComfyUI: its model management); nothing to do here."""

    def config(self) -> dict:
        return {
            "family": self.family,
            "space": self.space,
            "steps": self.schedule.num_steps,
            "sigmas": [round(v, 6) for v in self.schedule.sigma.tolist()],
            "forwards_per_step": self.forwards_per_step,
            "max_batch": self.max_batch,
            "dtype": str(self.dtype),
            "device": str(self.device),
            **self.extra_config,
        }
