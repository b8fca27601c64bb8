"""Videos between the core and the faces: frame sampling for verifiers, and MP4 files.

A decoded video batch is a float tensor [B, F, 3, H, W] in [0, 1]; a video handed to a face is a list of
RGB PIL frames. MP4s are written with PyAV (FFmpeg's libx264, yuv420p: lossy, for watching); the exact
frames go beside them as PNGs.
"""

from __future__ import annotations

import os
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


class FrameSampledVerifier:
    """A video verifier from any image verifier: the score of a video is the **mean** of ``verifier``'s
    scores over ``k`` evenly spaced frames (:func:`frame_indices`), each frame scored on its own with the
    prompt.

    Args:
        verifier: any image verifier ``verifier(images [N,3,H,W], prompt) -> [N]``.
        k: frames per video shown to ``verifier``.

    Returns (when called on ``videos`` [B, F, 3, H, W]): scores [B]. ``verifier`` sees ``B * k`` frames in
    one call, video by video. What this does not judge: motion and temporal consistency (frames are scored
    independently), nor anything between the sampled frames.
    """

    def __init__(self, verifier, k: int = 4):
        self.verifier = verifier
        self.k = int(k)

    def __call__(self, videos: torch.Tensor, prompt: str) -> torch.Tensor:
        if videos.ndim != 5:
            raise ValueError(f"expected videos [B, F, 3, H, W], got a tensor of shape {tuple(videos.shape)}")
        b, f = videos.shape[:2]
        frames = videos[:, frame_indices(f, self.k)].flatten(0, 1)
        scores = torch.as_tensor(self.verifier(frames, prompt), dtype=torch.float32).reshape(-1)
        if scores.shape[0] != b * self.k:
            from .checks import check_scores

            check_scores(scores, b * self.k, self.verifier)
        return scores.reshape(b, self.k).mean(dim=1)

    def spec(self) -> dict[str, Any] | None:
        """The image verifier's spec: a run rebuilds it and wraps it again from its denoiser's settings."""
        from .verifiers import verifier_spec

        return verifier_spec(self.verifier)

    def __getattr__(self, name: str):
        # device, on_device, timings … are the image verifier's (not compare: pairs of videos are not frames)
        if name in ("verifier", "k", "compare") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.verifier, name)


def for_denoiser(verifier, den):
    """``verifier`` as the search must call it on ``den``'s decoded output: wrapped in a
    :class:`FrameSampledVerifier` when ``den`` makes videos (it says so with ``verify_frames``)."""
    k = getattr(den, "verify_frames", None)
    return verifier if k is None or isinstance(verifier, FrameSampledVerifier) else FrameSampledVerifier(verifier, k)


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
