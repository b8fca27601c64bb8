"""Turning images and prompts into a VLM's batched chat inputs, for the yes-token verifier.

:class:`ChatInputsMixin` checks the images (a [B,3,H,W] tensor in [0,1] or PIL images) and the prompts
(one, or one per image), and renders rows of (images, question) through the processor's chat template,
left padded, on the verifier's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from ..images import ImageBatch, to_pil


class ChatInputsMixin:
    """``_pil_images``, ``_prompts`` and ``_inputs`` for a verifier with ``model``, ``processor``, ``device``."""

    model: Any
    processor: Any
    device: torch.device

    @staticmethod
    def _pil_images(images: ImageBatch | Image.Image) -> list[Image.Image]:
        if isinstance(images, Image.Image):
            return [images.convert("RGB")]
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"expected an image tensor of shape [B,3,H,W], got {tuple(images.shape)}")
            if images.shape[0] == 0:
                raise ValueError("no images given: pass at least one image")
            return to_pil(images.detach().cpu())
        images = list(images)
        if not images:
            raise ValueError("no images given: pass at least one image")
        if not all(isinstance(im, Image.Image) for im in images):
            raise TypeError("images must be a float tensor [B,3,H,W] in [0,1] or a list of PIL images")
        return to_pil(images)

    @staticmethod
    def _prompts(prompt: str | Sequence[str], n: int) -> list[str]:
        if isinstance(prompt, str):
            return [prompt] * n
        prompts = list(prompt)
        if len(prompts) != n or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"got {n} images but {len(prompts)} prompts: pass one prompt, or one per image")
        return prompts

    def _inputs(self, rows: Sequence[tuple[Sequence[Image.Image], str]]) -> Any:
        def content(images: Sequence[Image.Image], text: str) -> list[dict[str, Any]]:
            if len(images) == 1:
                return [{"type": "image", "image": images[0]}, {"type": "text", "text": text}]
            parts: list[dict[str, Any]] = []
            for i, im in enumerate(images, start=1):
                parts += [{"type": "text", "text": f"Image {i}:"}, {"type": "image", "image": im}]
            return [*parts, {"type": "text", "text": text}]

        messages = [[{"role": "user", "content": content(ims, text)}] for ims, text in rows]
        inputs = self.processor.apply_chat_template(
            messages,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True},
        )
        dtype = self.model.dtype
        return {
            k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
            if isinstance(v, torch.Tensor)
            else v
            for k, v in inputs.items()
        }
