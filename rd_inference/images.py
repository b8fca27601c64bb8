"""Conversions between the image forms the faces hand over: float tensors [B,3,H,W] in [0,1] and PIL."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

ImageBatch = torch.Tensor | Sequence[Image.Image]


def to_tensor(images: ImageBatch) -> torch.Tensor:
    """Return images as float32 [B,3,H,W] in [0,1]; accepts that form already, or a list of PIL images."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected an image tensor of shape [B,3,H,W], got {tuple(images.shape)}")
        return images.float().clamp(0, 1)
    if isinstance(images, Image.Image):
        images = [images]
    if len(images) == 0:
        raise ValueError("no images given: pass at least one image")
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def to_pil(images: ImageBatch) -> list[Image.Image]:
    """Return images as a list of RGB PIL images."""
    if not isinstance(images, torch.Tensor):
        return [im.convert("RGB") for im in images]
    arr = (to_tensor(images).permute(0, 2, 3, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arr]
