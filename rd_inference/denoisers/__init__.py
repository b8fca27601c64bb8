"""Per-family denoiser adapters and the registry that picks one for a pipeline."""

from __future__ import annotations

from diffusers import (
    FluxPipeline,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)

from .base import Denoiser
from .flow import FluxDenoiser, StableDiffusion3Denoiser
from .kdiffusion import KDiffusionDenoiser
from .stable_diffusion import StableDiffusionDenoiser, StableDiffusionXLDenoiser

# Pipeline class -> adapter. Subclasses of these pipelines (e.g. community variants) are accepted.
DENOISERS: dict[type, type[Denoiser]] = {
    StableDiffusionPipeline: StableDiffusionDenoiser,
    StableDiffusionXLPipeline: StableDiffusionXLDenoiser,
    StableDiffusion3Pipeline: StableDiffusion3Denoiser,
    FluxPipeline: FluxDenoiser,
}


def denoiser_class(pipe) -> type[Denoiser]:
    for pipe_cls, den_cls in DENOISERS.items():
        if isinstance(pipe, pipe_cls):
            return den_cls
    known = ", ".join(c.__name__ for c in DENOISERS)
    raise ValueError(f"unsupported pipeline {type(pipe).__name__}; supported: {known}")


def make_denoiser(pipe, prompt: str, **kwargs) -> Denoiser:
    """The adapter for ``pipe`` with ``prompt`` encoded once. See :class:`Denoiser` for the options."""
    return denoiser_class(pipe)(pipe, prompt, **kwargs)


__all__ = ["DENOISERS", "Denoiser", "KDiffusionDenoiser", "denoiser_class", "make_denoiser"]
