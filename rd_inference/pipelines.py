"""Loading diffusion pipelines the way users do (a folder or a hub id), safely."""

from __future__ import annotations

import os
from pathlib import Path

import torch

EMBEDDED_PIPELINE = Path(__file__).parent / "toyworld" / "weights" / "pipeline"


def default_model_path() -> Path:
    """The embedded toy-world pipeline shipped inside the package."""
    path = EMBEDDED_PIPELINE
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(
            f"no embedded default model at {path}; pass --model with a diffusers folder or hub id"
        )
    return path


def looks_local(path_or_id: str) -> bool:
    return os.path.isabs(path_or_id) or path_or_id.startswith((".", "~")) or os.path.exists(path_or_id)


def load_pipeline(path_or_id: str | os.PathLike | None = None, *, dtype: torch.dtype | None = None,
                  device: str | None = None):
    """``DiffusionPipeline.from_pretrained`` with safetensors only; ``None`` loads the embedded toy model."""
    from diffusers import DiffusionPipeline

    path_or_id = str(path_or_id) if path_or_id is not None else str(default_model_path())
    if looks_local(path_or_id):
        folder = Path(path_or_id).expanduser()
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{folder} is not a diffusers pipeline folder (no model_index.json); "
                "pass a folder saved with save_pretrained or a hub id"
            )
        path_or_id = str(folder)
    kwargs = {"use_safetensors": True}
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    pipe = DiffusionPipeline.from_pretrained(path_or_id, **kwargs)
    if device is not None:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
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
