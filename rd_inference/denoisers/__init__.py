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
        LTXPipeline,
        StableDiffusion3Pipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        WanPipeline,
    )

    from .flow import FluxDenoiser, StableDiffusion3Denoiser
    from .ltx import LTXDenoiser
    from .stable_diffusion import StableDiffusionDenoiser, StableDiffusionXLDenoiser
    from .wan import WanDenoiser

    return {
        StableDiffusionPipeline: StableDiffusionDenoiser,
        StableDiffusionXLPipeline: StableDiffusionXLDenoiser,
        StableDiffusion3Pipeline: StableDiffusion3Denoiser,
        FluxPipeline: FluxDenoiser,
        WanPipeline: WanDenoiser,
        LTXPipeline: LTXDenoiser,
    }


def __getattr__(name: str):
    if name == "DENOISERS":  # the registry as a module attribute, built on first access
        return denoisers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def family_of(class_name: str | None) -> str | None:
    """The adapter family ("sd", "sdxl", "sd3", "flux", "wan", "ltx") of a diffusers pipeline class name (subclasses
    included), or None for an unknown or unsupported class."""
    import diffusers

    cls = getattr(diffusers, class_name, None) if isinstance(class_name, str) else None
    if not isinstance(cls, type):
        return None
    return next((den.family for pipe_cls, den in denoisers().items() if issubclass(cls, pipe_cls)), None)


def check_model_index(index: dict) -> None:
    """An adapter's own refusals of a supported class's ``model_index.json`` settings (e.g. Wan 2.2's two
    experts), before any weight loads; nothing for classes without an adapter."""
    import diffusers

    cls = getattr(diffusers, str(index.get("_class_name")), None)
    for pipe_cls, den_cls in denoisers().items():
        if isinstance(cls, type) and issubclass(cls, pipe_cls) and hasattr(den_cls, "check_model_index"):
            den_cls.check_model_index(index)


def denoiser_class(pipe) -> type[Denoiser]:
    registry = denoisers()
    for pipe_cls, den_cls in registry.items():
        if isinstance(pipe, pipe_cls):
            return den_cls
    known = ", ".join(c.__name__ for c in registry)
    raise ValueError(f"unsupported pipeline {type(pipe).__name__}; supported: {known}")


VIDEO_OPTIONS = ("num_frames", "verify_frames")


def make_denoiser(pipe, prompt: str, **kwargs) -> Denoiser:
    """The adapter for ``pipe`` with ``prompt`` encoded once. See :class:`Denoiser` for the options; video
    adapters (``media == "video"``) also take ``num_frames`` and ``verify_frames`` (None: their default)."""
    cls = denoiser_class(pipe)
    video = {k: kwargs.pop(k) for k in VIDEO_OPTIONS if k in kwargs}
    if getattr(cls, "media", "image") == "video":
        kwargs.update({k: v for k, v in video.items() if v is not None})
    elif any(v is not None for v in video.values()):
        from ..checks import UserError

        given = ", ".join(k for k, v in video.items() if v is not None)
        raise UserError(f"{given} apply to video pipelines only; {type(pipe).__name__} makes images")
    return cls(pipe, prompt, **kwargs)


__all__ = ["DENOISERS", "Denoiser", "KDiffusionDenoiser", "check_model_index", "denoiser_class", "denoisers",
           "family_of", "make_denoiser"]
