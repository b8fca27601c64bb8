"""Turning images and prompts into a VLM's batched chat inputs, for the yes-token verifier.

:class:`ChatInputsMixin` checks the images (a [B,3,H,W] tensor in [0,1] or PIL images) and the prompts
(one, or one per image), and renders rows of (images, question) through the processor's chat template,
left padded, on the verifier's device. A row may hold several images (several image placeholders in one
user turn, each after an "Image i:" label), which LLaVA, Qwen2/2.5/3-VL, Idefics3 and Gemma 3 processors
accept; :class:`JointFramesMixin` uses that to show a video's sampled frames in one prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from ..images import ImageBatch, to_pil

# Put before each criterion's question in a joint prompt: the criteria speak of "the image" or "the video".
FRAMES_PREAMBLE = "The {k} images are frames of one video, in time order (image 1 first)."


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


class JointFramesMixin:
    """``score_frames``: each criterion asked once per video, with the video's frames as the images of one
    prompt (one row, so one forward slot, per video and criterion), for
    :class:`rd_inference.video.FrameSampledVerifier`'s ``frames="joint"``.

    ``from_spec`` also reads back the ``frames`` key that the video wrapper adds to this verifier's spec: a
    run's ``summary.json`` then rebuilds the wrapper (and so its mode) around the rebuilt verifier. The host
    has ``criteria``, ``probability``, ``aggregation``, ``yes_no_logprobs``, ``_pil_images`` and ``_prompts``,
    and this mixin comes before :class:`~rd_inference.verifiers.vlm_spec.SpecMixin` among its bases.
    """

    def score_frames(self, videos: Sequence[ImageBatch], prompt: str | Sequence[str], criteria: Any = None) -> Any:
        """Per-video, per-criterion probabilities and the combined reward (a ``YesTokenScores``, [B, C]).

        Args:
            videos: B videos, each its frames as a tensor [k,3,H,W] in [0,1] or a list of k PIL images.
            prompt: the generation prompt (one for all videos, or one per video).
            criteria: override this verifier's criteria for this call (e.g. the video criteria
                ``video_alignment``, ``temporal_consistency``, ``motion``).
        """
        from ..criteria import resolve_criteria
        from ..yes_token import YesTokenScores

        clips = [self._pil_images(v) for v in videos]
        if not clips:
            raise ValueError("no videos given: pass at least one video's frames")
        prompts = self._prompts(prompt, len(clips))
        crits = self.criteria if criteria is None else resolve_criteria(criteria)
        rows = [(frames, f"{FRAMES_PREAMBLE.format(k=len(frames))} {c.render(p)}")
                for frames, p in zip(clips, prompts) for c in crits]
        lp = self.yes_no_logprobs(rows).view(len(clips), len(crits), 2)
        return YesTokenScores(full=lp[..., 0].exp(), conditional=torch.sigmoid(lp[..., 0] - lp[..., 1]),
                              criteria=crits, probability=self.probability, aggregation=self.aggregation)

    @classmethod
    def from_spec(cls, spec: dict[str, Any], **load_kwargs: Any) -> Any:
        """The verifier of ``spec``; a spec with ``frames`` gives it back inside the video wrapper with that mode."""
        if "frames" not in spec:
            return super().from_spec(spec, **load_kwargs)  # type: ignore[misc]
        from ..video import FrameSampledVerifier

        rest = {k: v for k, v in spec.items() if k != "frames"}
        return FrameSampledVerifier(super().from_spec(rest, **load_kwargs), frames=spec["frames"])  # type: ignore[misc]
