"""Videos between the core and the faces: how a verifier sees a video's frames (one multi-image prompt, or
frame by frame), what a face asks of a video model, and MP4 files.

A decoded video batch is a float tensor [B, F, 3, H, W] in [0, 1]; a video handed to a face is a list of
RGB PIL frames. MP4s are written with PyAV (FFmpeg's libx264, yuv420p: lossy, for watching); the exact
frames go beside them as PNGs.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .images import to_pil

DEFAULT_FPS = 16  # Wan 2.1's frame rate


def frame_indices(num_frames: int, k: int) -> list[int]:
    """``k`` evenly spaced frame indices of a ``num_frames``-frame video, first and last included.

    Example:
        >>> frame_indices(81, 4)
        [0, 27, 53, 80]
    """
    if not 1 <= k <= num_frames:
        raise ValueError(f"cannot pick {k} frames of a {num_frames}-frame video")
    if k == 1:
        return [num_frames // 2]
    return [round(j * (num_frames - 1) / (k - 1)) for j in range(k)]


FRAMES_MODES = ("joint", "each")
DEFAULT_VERIFY_FRAMES = 4  # frames per video when nothing says how many (Wan's default too)


class FrameSampledVerifier:
    """A video verifier from an image verifier: ``k`` evenly spaced frames (:func:`frame_indices`) of each
    video are shown to ``verifier``, either all in one prompt or one at a time.

    Args:
        verifier: an image verifier ``verifier(images [N,3,H,W], prompt) -> [N]``; one that also has
            ``score_frames(videos, prompt)`` (the yes-token VLM) can judge several frames in one prompt.
        k: frames per video; None takes the search's ``verify_frames`` (:func:`for_denoiser` binds it) or,
            called directly, 4 (every frame of a shorter video).
        frames: ``"joint"``: the k frames of a video go to the VLM as one multi-image prompt (k image
            blocks in one user turn, one row per video and criterion), so it can answer questions about the
            video as a whole (motion, the same objects across frames: the ``video_alignment``,
            ``temporal_consistency`` and ``motion`` criteria); ``"each"``: every frame is scored on its own
            with the prompt and a video's score is their mean. None (the default) is ``"joint"`` where the
            verifier can take it: only joint can see motion and change between frames, and it costs one
            k-image row per video instead of k one-image rows (the same images through the vision tower,
            the question once). A verifier without ``score_frames`` (CLIP, aesthetic, simple, ensembles,
            the remote VLM) falls back to ``"each"``; ``note`` says so, and when ``"joint"`` was asked a
            warning too.

    Returns (when called on ``videos`` [B, F, 3, H, W]): scores [B]. In both modes ``verifier`` is called
    once for the whole batch; neither judges anything between the sampled frames.
    """

    def __init__(self, verifier, k: int | None = None, frames: str | None = None):
        if frames is not None and frames not in FRAMES_MODES:
            raise ValueError(f"frames must be one of {', '.join(FRAMES_MODES)} (or None: joint where the "
                             f"verifier can), got {frames!r}")
        if k is not None and int(k) < 1:
            raise ValueError(f"k must be at least 1 frame, got {k!r}")
        self.verifier, self.k, self.asked = verifier, None if k is None else int(k), frames
        self.frames = "joint" if frames != "each" and joins_frames(verifier) else "each"
        self.note = None
        if self.frames != (frames or "joint"):
            self.note = (f"{type(verifier).__name__} scores single images, so each of a video's frames was "
                         "scored on its own and the scores averaged (frames='each'), not shown in one prompt")
            if frames == "joint":
                warnings.warn(self.note, stacklevel=2)

    def __call__(self, videos: torch.Tensor, prompt: str) -> torch.Tensor:
        if videos.ndim != 5:
            raise ValueError(f"expected videos [B, F, 3, H, W], got a tensor of shape {tuple(videos.shape)}")
        b, f = videos.shape[:2]
        k = self.k if self.k is not None else min(DEFAULT_VERIFY_FRAMES, f)
        picked = videos[:, frame_indices(f, k)]
        if self.frames == "joint":
            return self.verifier.score_frames(list(picked), prompt).reward.float()
        scores = torch.as_tensor(self.verifier(picked.flatten(0, 1), prompt), dtype=torch.float32).reshape(-1)
        if scores.shape[0] != b * k:
            from .checks import check_scores

            check_scores(scores, b * k, self.verifier)
        return scores.reshape(b, k).mean(dim=1)

    def with_k(self, k: int) -> FrameSampledVerifier:
        """This wrapper showing ``k`` frames per video (same verifier, same mode, no second warning)."""
        bound = copy.copy(self)
        bound.k = int(k)
        return bound

    def spec(self) -> dict[str, Any] | None:
        """The image verifier's spec; for one that can join frames, with ``frames`` (its mode) added, from which
        its ``from_spec`` rebuilds this wrapper. The frame count is the denoiser's ``verify_frames``."""
        from .verifiers import verifier_spec

        spec = verifier_spec(self.verifier)
        return {**spec, "frames": self.frames} if spec is not None and joins_frames(self.verifier) else spec

    def __getattr__(self, name: str):
        # device, on_device, timings … are the image verifier's (not compare: pairs of videos are not frames)
        if name in ("verifier", "k", "asked", "frames", "note", "compare", "score_frames") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.verifier, name)

    def __repr__(self) -> str:
        return f"FrameSampledVerifier({self.verifier!r}, k={self.k}, frames={self.frames!r})"


def joins_frames(verifier) -> bool:
    """Whether ``verifier`` can judge several frames in one prompt (it has ``score_frames``)."""
    return callable(getattr(verifier, "score_frames", None))


def for_denoiser(verifier, den):
    """``verifier`` as the search must call it on ``den``'s decoded output: wrapped in a
    :class:`FrameSampledVerifier` showing ``den.verify_frames`` frames when ``den`` makes videos (a wrapper
    given without ``k`` is bound to it, so ``counts["verifier_frames"]`` is what the verifier was shown)."""
    k = getattr(den, "verify_frames", None)
    if not isinstance(verifier, FrameSampledVerifier):
        return verifier if k is None else FrameSampledVerifier(verifier, k)
    from .checks import UserError

    if k is None:
        raise UserError(f"a video verifier (frames={verifier.frames!r}) applies to video pipelines only; this "
                        "pipeline makes images: pass the image verifier itself")
    if verifier.k is None:
        return verifier.with_k(k)
    if verifier.k != k:
        raise UserError(f"the video verifier shows {verifier.k} frames per video but verify_frames is {k}: pass "
                        f"verify_frames={verifier.k}, or build it without k")
    return verifier


def fps_of(config: dict) -> int:
    """Frames per second of a run's video, from its config (a run's, or its denoiser's): the model's own
    ``frame_rate`` where its adapter keeps one (LTX-Video: 25), else Wan 2.1's 16."""
    settings = config.get("denoiser", config)
    return max(1, round(float(settings.get("frame_rate") or DEFAULT_FPS)))


def makes_video(pipe) -> bool:
    """Whether the search makes videos with ``pipe`` (its denoiser adapter's ``media`` says so)."""
    from .denoisers import denoisers

    return any(isinstance(pipe, cls) and getattr(den, "media", "image") == "video" for cls, den in denoisers().items())


def folder_makes_video(path: str | os.PathLike | None) -> bool:
    """Whether the diffusers folder at ``path`` holds a video pipeline, read from its ``model_index.json`` before
    any weight loads; False for anything else (a hub id, a missing folder: :func:`makes_video` tells once loaded)."""
    import json

    import diffusers

    from .denoisers import denoisers

    index = Path(path).expanduser() / "model_index.json" if path else None
    if index is None or not index.is_file():
        return False
    cls = getattr(diffusers, str(json.loads(index.read_text()).get("_class_name")), None)
    return isinstance(cls, type) and any(issubclass(cls, p) and getattr(den, "media", "image") == "video"
                                         for p, den in denoisers().items())


def preview(item: Image.Image | Sequence[Image.Image]) -> Image.Image:
    """One picture of a candidate for a gallery: an image itself, a video as :func:`strip`."""
    return strip(item) if is_video(item) else item


def strip(frames: Sequence[Image.Image], k: int = DEFAULT_VERIFY_FRAMES) -> Image.Image:
    """``k`` evenly spaced frames side by side: one picture of a video, for a gallery of candidates."""
    picked = [frames[i] for i in frame_indices(len(frames), min(k, len(frames)))]
    w, h = picked[0].size
    sheet = Image.new("RGB", (w * len(picked), h))
    for j, frame in enumerate(picked):
        sheet.paste(frame.convert("RGB"), (j * w, 0))
    return sheet


def to_frames(video: torch.Tensor) -> list[Image.Image]:
    """One video [F, 3, H, W] in [0, 1] as RGB PIL frames."""
    return to_pil(video)


def to_media(images: torch.Tensor) -> list:
    """A decoded batch as the faces take it: PIL images for [B, 3, H, W], lists of PIL frames for videos."""
    if isinstance(images, torch.Tensor) and images.ndim == 5:
        return [to_frames(v) for v in images]
    return to_pil(images)


def is_video(item) -> bool:
    return isinstance(item, (list, tuple)) and all(isinstance(f, Image.Image) for f in item)


def check_video_writer() -> None:
    """PyAV must be installed to write MP4s: said before a search starts, not after it."""
    import importlib.util

    if importlib.util.find_spec("av") is None:
        from .checks import UserError

        raise UserError("writing a video run needs PyAV: pip install av (or pip install 'rd-inference[video]')")


def write_mp4(frames: Sequence[Image.Image], path: str | os.PathLike, fps: int = DEFAULT_FPS) -> Path:
    """Encode RGB frames as H.264 (yuv420p, even sizes) in an MP4 container."""
    import av

    path = Path(path)
    w, h = frames[0].size
    if w % 2 or h % 2:
        raise ValueError(f"H.264 in yuv420p needs even frame sizes, got {w}x{h}")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_image(frame.convert("RGB"))):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_mp4(path: str | os.PathLike) -> list[Image.Image]:
    """Decode every frame of a video file as RGB PIL images."""
    import av

    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def write_video(frames: Sequence[Image.Image], folder: Path, name: str, fps: int = DEFAULT_FPS) -> None:
    """``name.mp4`` and the exact frames as ``name/frame-0000.png`` … under ``folder``."""
    write_mp4(frames, folder / f"{name}.mp4", fps=fps)
    (folder / name).mkdir(exist_ok=True)
    for j, frame in enumerate(frames):
        frame.save(folder / name / f"frame-{j:04d}.png")


def temp_mp4(frames: Sequence[Image.Image], fps: int = DEFAULT_FPS) -> Path:
    """The frames as an MP4 in a fresh temporary folder (for a face that serves files, e.g. the demo)."""
    import tempfile

    return write_mp4(frames, Path(tempfile.mkdtemp(prefix="rd_video_")) / "video.mp4", fps=fps)
