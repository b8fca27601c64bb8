"""LAION's improved aesthetic predictor (``sac+logos+ava1-l14-linearMSE``) as a verifier.

A five-layer MLP head over the L2-normalised CLIP ViT-L/14 image embedding (``CLIPModel.get_image_features``)
predicts a mean human aesthetic rating on the AVA-like ~1-10 scale. The score does not look at the prompt:
it rewards good-looking images whatever they show, so on its own it can drift from the prompt; pair it with
a prompt-aware verifier in an ensemble (``vlm:X+aesthetic:Y@0.1``).

Its folder is a transformers CLIP checkpoint (``config.json``, safetensors, ``preprocessor_config.json``)
plus the head as ``aesthetic_head.safetensors`` (LAION's key names, ``layers.{0,2,4,6,7}.{weight,bias}``).
LAION ships the head as a pickle ``.pth``; convert it once (the pickle is read with ``weights_only=True``)::

    python -m rd_inference.verifiers.aesthetic convert sac+logos+ava1-l14-linearMSE.pth \\
        openai/clip-vit-large-patch14 ./aesthetic-l14

On scale: an ensemble's ``mean`` keeps each member's own scale, and aesthetic scores spread about ten times
wider than a yes-token probability or a CLIP cosine, so they would dominate an unweighted mean. Weight the
member (``@0.1``), use ``rank`` aggregation, or build the verifier with ``scale=0.1`` (kept in ``spec()``);
``scale`` also keeps Feynman-Kac's ``lam`` meaningful when this is the only verifier.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checks import UserError, check_verifier_source, first_line
from ..images import ImageBatch, to_pil
from .clip import _features

HEAD_FILE = "aesthetic_head.safetensors"
CONVERT = "python -m rd_inference.verifiers.aesthetic convert HEAD.pth CLIP_FOLDER_OR_ID OUT_FOLDER"
HIDDEN = (1024, 128, 64, 16)  # LAION's widths; only the input width follows the CLIP


class AestheticHead(nn.Module):
    """LAION's MLP: no activations between the linear layers, dropout only in training."""

    def __init__(self, width: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings).squeeze(-1)


def head_from_state(state: dict[str, torch.Tensor], width: int, source: str) -> AestheticHead:
    """An ``AestheticHead`` for ``width``-wide embeddings from LAION's state dict, or a one-line error."""
    head = AestheticHead(width).eval()
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if set(got) != set(expected):
        raise UserError(f"{source} is not an aesthetic-predictor head: expected the keys {sorted(expected)}, "
                        f"got {sorted(got)[:6]}")
    if got["layers.0.weight"][1] != width:
        raise UserError(f"{source} expects {got['layers.0.weight'][1]}-wide CLIP embeddings but the CLIP gives "
                        f"{width}: pair the head with the CLIP it was trained on (ViT-L/14 for sac+logos+ava1-l14)")
    if got != expected:
        bad = sorted(k for k in got if got[k] != expected[k])
        raise UserError(f"{source}: layer shapes {bad} differ from LAION's {HIDDEN} hidden widths")
    head.load_state_dict({k: v.float() for k, v in state.items()})
    return head


def check_aesthetic_folder(path: str) -> Path:
    """The folder ``aesthetic:PATH`` names must be local and hold a CLIP checkpoint and the head."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"aesthetic folder {path} does not exist: build one from LAION's head with {CONVERT}")
    check_verifier_source(str(folder))
    if not (folder / HEAD_FILE).is_file():
        raise UserError(f"{folder} has no {HEAD_FILE}: build the folder from LAION's head with {CONVERT}")
    return folder


class AestheticVerifier:
    """``verifier(images, prompt) -> FloatTensor[B]``: ``scale`` times LAION's aesthetic score (~1-10).

    Args:
        path: a folder made by ``convert`` (a CLIP checkpoint plus ``aesthetic_head.safetensors``).
        scale: multiplies every score (e.g. 0.1 to sit beside probabilities in a ``mean`` ensemble).

    Returns (when called): one score per image; the prompt is ignored. Picklable through ``spec()``.
    """

    def __init__(self, path: str, *, scale: float = 1.0, device: str | None = None, max_batch: int = 32):
        if not scale > 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.source, self.scale, self.max_batch = str(path), float(scale), int(max_batch)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.clip = self.head = self.image_processor = None

    def _ensure_loaded(self) -> None:
        if self.clip is not None:
            return
        from safetensors.torch import load_file
        from transformers import CLIPImageProcessor, CLIPModel

        folder = check_aesthetic_folder(self.source)
        try:
            clip = CLIPModel.from_pretrained(folder, use_safetensors=True).eval().to(self.device)
            self.image_processor = CLIPImageProcessor.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load the aesthetic scorer's CLIP from {folder}: {first_line(exc)}") from exc
        width = clip.config.projection_dim
        self.head = head_from_state(load_file(folder / HEAD_FILE), width, str(folder / HEAD_FILE)).to(self.device)
        self.clip = clip

    @torch.inference_mode()
    def __call__(self, images: ImageBatch, prompt: str) -> torch.Tensor:
        self._ensure_loaded()
        pil = to_pil(images)
        out = []
        for lo in range(0, len(pil), self.max_batch):
            pixels = self.image_processor(images=pil[lo : lo + self.max_batch], return_tensors="pt")["pixel_values"]
            v = _features(self.clip.get_image_features(pixel_values=pixels.to(self.device, self.clip.dtype))).float()
            out.append(self.scale * self.head(v / v.norm(dim=-1, keepdim=True)).cpu())
        return torch.cat(out)

    def spec(self) -> dict[str, Any]:
        return {"name": "aesthetic", "model": self.source, "scale": self.scale, "max_batch": self.max_batch}

    def __getstate__(self) -> dict[str, Any]:  # the copy reloads its weights on first call
        return {**self.__dict__, "clip": None, "head": None, "image_processor": None}

    def __repr__(self) -> str:
        return f"AestheticVerifier({self.source!r}, scale={self.scale})"


def convert(head_pth: str | Path, clip: str | Path, out: str | Path) -> Path:
    """Write an ``aesthetic:`` folder: the CLIP (folder or hub id, safetensors) and LAION's ``.pth`` head."""
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPModel

    try:
        state = torch.load(head_pth, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refuses a pickle that holds more than tensors
        raise UserError(f"cannot read the head {head_pth}: it holds more than a state dict of tensors, and "
                        "loading it could run code; save model.state_dict() instead") from exc
    except (OSError, RuntimeError) as exc:
        raise UserError(f"cannot read the head {head_pth}: {first_line(exc)}") from exc
    if not isinstance(state, dict):
        raise UserError(f"{head_pth} holds a {type(state).__name__}, not a state dict of the aesthetic head")
    try:
        model = CLIPModel.from_pretrained(clip, use_safetensors=True)
        processor = CLIPImageProcessor.from_pretrained(clip)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the CLIP {clip}: {first_line(exc)}") from exc
    head = head_from_state(state, model.config.projection_dim, str(head_pth))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, out / HEAD_FILE)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rd_inference.verifiers.aesthetic",
                                     description="Build a folder for --verifier aesthetic:PATH.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("convert", help="LAION's .pth head + a transformers CLIP -> an aesthetic: folder")
    p.add_argument("head", help="the head, e.g. sac+logos+ava1-l14-linearMSE.pth (read with weights_only=True)")
    p.add_argument("clip", help="the CLIP it was trained on, a folder or hub id (openai/clip-vit-large-patch14)")
    p.add_argument("out", help="the folder to write")
    args = parser.parse_args(argv)
    try:
        out = convert(args.head, args.clip, args.out)
    except UserError as exc:
        parser.error(str(exc))
    print(f"wrote {out}: use it as --verifier aesthetic:{out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
