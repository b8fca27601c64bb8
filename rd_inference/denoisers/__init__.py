"""Per-family denoiser adapters and the registry that picks one for a pipeline.

The diffusers pipeline classes (and the family adapters, which import pipeline modules) are imported on
first use, so a host that only needs :class:`KDiffusionDenoiser` (ComfyUI) does not load every pipeline.
"""

from __future__ import annotations

import functools

from .base import Denoiser
from .kdiffusion import KDiffusionDenoiser


@functools.cache
def denoisers() -> dict[type, type[Denoiser]]:
    """Pipeline class -> adapter. Subclasses of these pipelines (e.g. community variants) are accepted."""
    from diffusers import (
        FluxPipeline,
        StableDiffusion3Pipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )

    from .flow import FluxDenoiser, StableDiffusion3Denoiser
    from .stable_diffusion import StableDiffusionDenoiser, StableDiffusionXLDenoiser

    return {
        StableDiffusionPipeline: StableDiffusionDenoiser,
        StableDiffusionXLPipeline: StableDiffusionXLDenoiser,
        StableDiffusion3Pipeline: StableDiffusion3Denoiser,
        FluxPipeline: FluxDenoiser,
    }


def __getattr__(name: str):
    if name == "DENOISERS":  # the registry as a module attribute, built on first access
        return denoisers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def family_of(class_name: str | None) -> str | None:
    """The adapter family ("sd", "sdxl", "sd3", "flux") of a diffusers pipeline class name (subclasses
    included), or None for an unknown or unsupported class."""
    import diffusers

    cls = getattr(diffusers, class_name, None) if isinstance(class_name, str) else None
    if not isinstance(cls, type):
        return None
    return next((den.family for pipe_cls, den in denoisers().items() if issubclass(cls, pipe_cls)), None)


def denoiser_class(pipe) -> type[Denoiser]:
    registry = denoisers()
    for pipe_cls, den_cls in registry.items():
        if isinstance(pipe, pipe_cls):
            return den_cls
    known = ", ".join(c.__name__ for c in registry)
    raise ValueError(f"unsupported pipeline {type(pipe).__name__}; supported: {known}")


def make_denoiser(pipe, prompt: str, **kwargs) -> Denoiser:
    """The adapter for ``pipe`` with ``prompt`` encoded once. See :class:`Denoiser` for the options."""
    return denoiser_class(pipe)(pipe, prompt, **kwargs)


__all__ = ["DENOISERS", "Denoiser", "KDiffusionDenoiser", "denoiser_class", "denoisers", "family_of", "make_denoiser"]
