"""Loading diffusion pipelines the way users do (a folder or a hub id), safely."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checks import UserError, check_pipeline_source, first_line, looks_local

EMBEDDED_PIPELINE = Path(__file__).parent / "toyworld" / "weights" / "v2" / "pipeline"  # toy world v2


def default_model_path() -> Path:
    """The embedded toy-world (v2) pipeline shipped inside the package."""
    path = EMBEDDED_PIPELINE
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(
            f"no embedded default model at {path}; pass --model with a diffusers folder or hub id"
        )
    return path


def _dtype_kwarg() -> str:
    """``dtype`` where diffusers has renamed ``torch_dtype`` (it warns on the old name), else ``torch_dtype``."""
    try:
        from diffusers.utils.deprecation_utils import _TORCH_DTYPE_DEPRECATION_MESSAGE  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def load_pipeline(path_or_id: str | os.PathLike | None = None, *, dtype: torch.dtype | str | None = "auto",
                  device: str | None = None, attention: str | None = None, compile: bool = False):
    """``DiffusionPipeline.from_pretrained`` with safetensors only; ``None`` loads the embedded toy model.

    ``dtype="auto"`` (see :mod:`rd_inference.dtypes`): bfloat16 for SD3/FLUX and float16 for SD/SDXL on
    CUDA, float32 elsewhere; the family is read from ``model_index.json`` before any weight loads.
    ``attention`` (a diffusers attention backend) and ``compile`` apply to the denoiser network (see
    :mod:`rd_inference.speed_options`)."""
    from diffusers import DiffusionPipeline

    from .denoisers import family_of
    from .dtypes import resolve_dtype, upcast_vae

    path_or_id = str(path_or_id) if path_or_id is not None else str(default_model_path())
    check_pipeline_source(path_or_id)
    if looks_local(path_or_id):
        path_or_id = str(Path(path_or_id).expanduser())
    kwargs = {"use_safetensors": True}
    try:
        class_name = DiffusionPipeline.load_config(path_or_id).get("_class_name")
        dtype = resolve_dtype(dtype, class_name, device)
        if dtype is not None:
            kwargs[_dtype_kwarg()] = dtype
        pipe = DiffusionPipeline.from_pretrained(path_or_id, **kwargs)
    except OSError as exc:  # not on the hub, no network, a missing file: say which model and why, in one line
        raise UserError(f"cannot load the diffusion model {path_or_id}: {first_line(exc)}") from exc
    upcast_vae(pipe, family_of(class_name))
    if device is not None:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if attention is not None or compile:
        from .speed_options import speed_up_pipeline

        speed_up_pipeline(pipe, attention=attention, compile=compile)
    return pipe


def model_defaults(folder: str | os.PathLike | None) -> dict:
    """Recommended settings a model folder may ship in ``rd_inference_defaults.json``: ``steps``,
    ``guidance_scale``, ``height``, ``width`` and per-strategy ``strategies: {name: {setting: value}}``."""
    if folder is None or not looks_local(str(folder)):
        return {}
    path = Path(folder) / "rd_inference_defaults.json"
    if not path.is_file():
        return {}
    import json

    return json.loads(path.read_text())


def model_name(pipe) -> str | None:
    return getattr(pipe, "name_or_path", None) or pipe.config.get("_name_or_path")
