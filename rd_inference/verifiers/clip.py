"""CLIP-family scorers: the image-text similarity of a dual encoder, as a verifier.

``clip`` is CLIP score (the cosine of the image and prompt embeddings, in [-1, 1]); ``pickscore`` is the
same computation on a PickScore checkpoint (a fine-tuned CLIP), scaled by the model's learnt temperature
as its authors score. Both load any transformers dual encoder (``AutoModel`` with ``get_image_features``
and ``get_text_features``: CLIP, SigLIP, PickScore) from a folder or hub id, safetensors only. One forward
per batch and no generation: the cheap verifier for a small GPU, and the usual partner of a VLM judge in an
ensemble (:mod:`rd_inference.verifiers.ensemble`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..checks import UserError, first_line
from ..images import ImageBatch, to_pil

KINDS = ("clip", "pickscore")


class ClipScoreVerifier:
    """``verifier(images, prompt) -> FloatTensor[B]``: cosine similarity of image and prompt embeddings
    (times the model's ``logit_scale`` for ``kind="pickscore"``). Picklable through ``spec()``."""

    def __init__(self, path_or_id: str, *, kind: str = "clip", device: str | None = None, max_batch: int = 32):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.source, self.kind, self.max_batch = str(path_or_id), kind, int(max_batch)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = self.tokenizer = self.image_processor = None

    def _ensure_loaded(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        from ..yes_token import _check_safetensors

        _check_safetensors(self.source)
        try:
            model = AutoModel.from_pretrained(self.source, use_safetensors=True).eval().to(self.device)
            self.tokenizer = AutoTokenizer.from_pretrained(self.source)
            self.image_processor = AutoImageProcessor.from_pretrained(self.source)
        except OSError as exc:
            raise UserError(f"cannot load the {self.kind} scorer {self.source}: {first_line(exc)}") from exc
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise UserError(f"{self.source} is a {type(model).__name__}, not a dual image-text encoder "
                            "(CLIP, SigLIP, PickScore); load a VLM with vlm:PATH")
        self.model = model

    @torch.inference_mode()
    def __call__(self, images: ImageBatch, prompt: str) -> torch.Tensor:
        self._ensure_loaded()
        pil = to_pil(images)
        text = self.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt").to(self.device)
        t = _features(self.model.get_text_features(**text))
        t = t / t.norm(dim=-1, keepdim=True)
        scale = float(self.model.logit_scale.exp()) if self.kind == "pickscore" else 1.0
        out = []
        for lo in range(0, len(pil), self.max_batch):
            pixels = self.image_processor(images=pil[lo : lo + self.max_batch], return_tensors="pt")["pixel_values"]
            v = _features(self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype)))
            v = v / v.norm(dim=-1, keepdim=True)
            out.append(scale * (v.float() @ t.float().T).squeeze(-1).cpu())
        return torch.cat(out)

    def spec(self) -> dict[str, Any]:
        return {"name": self.kind, "model": self.source, "max_batch": self.max_batch}

    def __getstate__(self) -> dict[str, Any]:  # the copy reloads its weights on first call
        return {**self.__dict__, "model": None, "tokenizer": None, "image_processor": None}

    def __repr__(self) -> str:
        return f"ClipScoreVerifier({self.source!r}, kind={self.kind!r})"


def _features(out) -> torch.Tensor:
    # transformers returns the projected embeddings as a tensor, or (newer versions) an output object
    # whose pooled field holds them.
    return out if isinstance(out, torch.Tensor) else out.pooler_output
