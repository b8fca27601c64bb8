"""Tiny random CLIP-kind scorers built from configs: a CLIP folder (clip: and pickscore: read the same
dual encoder) and an aesthetic folder (that CLIP plus a random LAION-style head, built by the converter)."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_pipelines import _clip_config, tiny_tokenizer
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPVisionConfig

WIDTH = 16  # the tiny CLIP's projection_dim


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random CLIPModel with its tokenizer and image processor saved in ``folder``."""
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(image_size=16, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, projection_dim=WIDTH)
    model = CLIPModel(CLIPConfig(text_config=_clip_config().to_dict(), vision_config=vision.to_dict(),
                                 projection_dim=WIDTH))
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


def build_tiny_aesthetic(root: Path, seed: int = 0) -> Path:
    """An aesthetic folder converted, as a user would, from a tiny CLIP and a random .pth head."""
    from rd_inference.verifiers import aesthetic
    from rd_inference.verifiers.aesthetic import AestheticHead

    clip = build_tiny_clip(root / "clip", seed)
    pth = root / "head.pth"
    torch.save(AestheticHead(WIDTH).state_dict(), pth)
    assert aesthetic.main(["convert", str(pth), str(clip), str(root / "aesthetic")]) == 0
    return root / "aesthetic"
