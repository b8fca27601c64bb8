"""The VERIFIER that flows between nodes: an rd_inference verifier whose weights ComfyUI places.

A VLM verifier is wrapped in a ``ModelPatcher`` and loaded with ``load_models_gpu`` before every scoring
call, so ComfyUI's memory management can move the diffusion model off the GPU while the verifier runs
(and bring it back: see :mod:`comfy_nodes.sampling`), exactly as it does for its own text encoders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import comfy.model_management as mm
import comfy.model_patcher
import folder_paths
import torch

from ..rd_inference.verifier_loading import load_verifier
from ..rd_inference.verifiers import verifier_spec
from ..rd_inference.video import joins_frames
from ..rd_inference.yes_token import YesTokenVerifier

FOLDER = "vlm"  # ComfyUI/models/vlm/<model folder>/config.json
QUANTIZATIONS = ("none", "8bit", "4bit")
SIMPLE_VERIFIERS = ("brightness", "color:")  # prompt-blind verifiers for sanity checks and tests
USE_PATH = "(use path)"  # the model list's last entry: take the 'path' input instead


def register_folder() -> None:
    """Register ``models/vlm`` with ComfyUI (extra_model_paths.yaml may add more ``vlm`` folders)."""
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


def model_folders() -> list[str]:
    """Names of the model folders (each holding a config.json) under every registered ``vlm`` path."""
    names: set[str] = set()
    for base in folder_paths.get_folder_paths(FOLDER):
        if os.path.isdir(base):
            names.update(d for d in os.listdir(base) if os.path.isfile(os.path.join(base, d, "config.json")))
    return sorted(names)


def resolve_model(name: str, path: str) -> str:
    """A local path (``path`` wins when given) or a folder name under ``models/vlm``; errors say where to look."""
    path = path.strip()
    if path:
        if path.startswith(SIMPLE_VERIFIERS):
            return path
        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"no VLM folder at {path!r}: give the full path of a local Hugging Face model folder "
                f"(with config.json and safetensors), or leave 'path' empty and pick a folder under "
                f"{folder_paths.get_folder_paths(FOLDER)[0]}"
            )
        return path
    if name == USE_PATH:
        raise ValueError(
            "no verifier chosen: pick a model folder (put it under "
            f"{folder_paths.get_folder_paths(FOLDER)[0]} and refresh) or fill in 'path'"
        )
    for base in folder_paths.get_folder_paths(FOLDER):
        candidate = os.path.join(base, name)
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return candidate
    raise FileNotFoundError(
        f"no VLM model folder {name!r}: put a Hugging Face model folder (config.json, safetensors, "
        f"processor files) under {folder_paths.get_folder_paths(FOLDER)[0]} and refresh, or fill in 'path'"
    )


class _Holder(torch.nn.Module):
    """Owns the VLM for the ModelPatcher, which sets ``model.device``: a read-only property on HF models."""

    def __init__(self, vlm: torch.nn.Module):
        super().__init__()
        self.vlm = vlm
        self.device = None


class ComfyVerifier:
    """``verifier(images, prompt) -> FloatTensor[B]`` with ComfyUI placing the weights first.

    ``patcher`` is None for weightless verifiers (brightness, colour).
    """

    def __init__(self, verifier: Any, patcher: Any = None):
        self.verifier = verifier
        self.patcher = patcher
        if joins_frames(verifier):  # only then: the core asks joins_frames() whether a video may go in one prompt
            self.score_frames = self._score_frames

    def load(self) -> None:
        if self.patcher is not None:
            mm.load_models_gpu([self.patcher])

    def __call__(self, images, prompt: str) -> torch.Tensor:
        self.load()
        return self.verifier(images, prompt)

    def _score_frames(self, videos, prompt: str) -> Any:
        """The VLM's ``score_frames``: each video's frames as the images of one prompt."""
        self.load()
        return self.verifier.score_frames(videos, prompt)

    @property
    def pairwise(self) -> bool:
        return callable(getattr(self.verifier, "compare", None))

    def compare(self, first, second, prompt) -> torch.Tensor:
        if not self.pairwise:
            raise ValueError(
                f"the {type(self.verifier).__name__} verifier cannot compare two images; "
                "load a VLM with 'Load VLM Verifier' for a pairwise tournament"
            )
        self.load()
        return self.verifier.compare(first, second, prompt)

    def spec(self) -> dict | None:
        return verifier_spec(self.verifier)

    def __repr__(self) -> str:
        return f"ComfyVerifier({self.verifier!r})"


def load_comfy_verifier(name: str, path: str = "", quantization: str = "none", criteria: str = "") -> ComfyVerifier:
    """Load a verifier for the nodes: a VLM folder (optionally 8/4-bit) or a simple test verifier."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    source = resolve_model(name, path)
    crit = criteria.strip() or None
    if source.startswith(SIMPLE_VERIFIERS):
        return ComfyVerifier(load_verifier(source))
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    if quantization != "none":
        # bitsandbytes weights are quantized on the device they load to and are not moved afterwards:
        # ComfyUI counts their memory but never offloads them.
        offload_device = load_device
    on_gpu = torch.device(load_device).type == "cuda"
    dtype = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    verifier = YesTokenVerifier.from_pretrained(
        source,
        quantization=None if quantization == "none" else quantization,
        dtype=dtype,
        device=str(offload_device),
        criteria=crit,
    )
    verifier.device = torch.device(load_device)  # where scoring inputs go once ComfyUI has loaded the model
    patcher = comfy.model_patcher.ModelPatcher(
        _Holder(verifier.model), load_device=load_device, offload_device=offload_device
    )
    return ComfyVerifier(verifier, patcher)
