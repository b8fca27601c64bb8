"""Video latents in the search nodes: ComfyUI's 5-D latents [B, C, T, H, W] (Wan 2.1 from
``EmptyHunyuanLatentVideo``, LTX-Video from ``EmptyLTXVLatentVideo``) are searched as videos.

A video path decodes to frames [B, F, 3, H, W]; the denoiser says it makes videos with ``media = "video"``
and ``verify_frames``, and the core then shows the verifier that many evenly spaced frames of each candidate
(:class:`~rd_inference.video.FrameSampledVerifier`): all in one prompt to a VLM that has ``score_frames``
(verify_mode 'joint'), else one at a time, the candidate's score being their mean. The nodes hand ComfyUI
frames as an IMAGE batch [F, H, W, 3], as ``VAEDecode`` does. While the search runs, the node's preview
shows the best-scored frame so far (joint: the best-scored video's middle frame); at the end, the chosen
video's middle frame.

The VAE decodes one video at a time with the torch RNG seeded (:func:`decode_video`): LTX-Video 0.9.1+'s
VAE is timestep-conditioned, and in ComfyUI 0.3.75 it decodes at most one video per call and mixes
``torch.randn`` noise into the latent it decodes.
"""

from __future__ import annotations

from typing import Any

import torch

from ..rd_inference.denoisers.kdiffusion import KDiffusionDenoiser
from ..rd_inference.images import to_tensor
from ..rd_inference.video import FRAMES_MODES, FrameSampledVerifier

DEFAULT_VERIFY_FRAMES = 4
VERIFY_MODES = FRAMES_MODES  # joint, each
VERIFY_MODE_TIP = ("Video latents: 'joint' shows a candidate's verify_frames frames to a yes-token VLM as one "
                   "multi-image prompt, so it can judge the video as a whole (motion, the same objects across "
                   "frames); 'each' scores every frame on its own and takes the mean. Verifiers that score single "
                   "images (CLIP, PickScore, aesthetic, ensembles, brightness) always take the mean.")


def is_video(latent: torch.Tensor) -> bool:
    """ComfyUI's video latents have a time axis: [B, C, T, H, W]."""
    return latent.ndim == 5


def decoded_frames(vae: Any, latent_frames: int) -> int:
    """Frames ``vae`` decodes from ``latent_frames`` latent frames (Wan 2.1: 4 (T - 1) + 1, LTX-Video:
    8 (T - 1) + 1), as the VAE gives its temporal compression."""
    r = vae.temporal_compression_decode()
    if r is None:
        raise ValueError("this VAE does not decode videos, but the latent is a video [B, C, T, H, W]: connect the "
                         "video model's own VAE (for Wan 2.1, wan_2.1_vae)")
    return (latent_frames - 1) * r + 1


def check_verify_frames(verify_frames: int, num_frames: int) -> None:
    if not 1 <= verify_frames <= num_frames:
        raise ValueError(f"verify_frames is {verify_frames} but the video has {num_frames} frames: set verify_frames "
                         f"between 1 and {num_frames}, or make the video longer")


class VideoKDiffusionDenoiser(KDiffusionDenoiser):
    """:class:`KDiffusionDenoiser` whose ``decode_fn`` gives videos [B, F, 3, H, W] in [0, 1]; the verifier
    sees ``verify_frames`` evenly spaced frames of each."""

    media = "video"

    def __init__(self, *args: Any, num_frames: int, verify_frames: int, **kwargs: Any):
        check_verify_frames(verify_frames, num_frames)
        self.num_frames = int(num_frames)
        self.verify_frames = int(verify_frames)
        super().__init__(*args, **kwargs)

    def _decode_chunk(self, x0: torch.Tensor) -> torch.Tensor:
        video = self.decode_fn(x0)
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"decode_fn must return videos [B,F,3,H,W], got {tuple(video.shape)}")
        return video

    def config(self) -> dict:
        return {**super().config(), "num_frames": self.num_frames, "verify_frames": self.verify_frames}


DECODE_SEED = 0  # the torch RNG's seed while a video decodes


def decode_video(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """``vae.decode`` of video latents [B, C, T, H, W] -> [B, F, H, W, 3], one video per call, each with the
    torch RNG seeded with ``DECODE_SEED`` (and restored after): a timestep-conditioned VAE (LTX-Video 0.9.1+)
    fails on a batch of several videos in ComfyUI 0.3.75, and noises each latent it decodes with
    ``torch.randn``; seeded, a video's frames and score do not depend on what ran before it."""
    device = torch.device(vae.device)  # where the noise is drawn; its RNG and the CPU's are restored after
    gpu = [] if device.type == "cpu" else [device]
    videos = []
    for latent in latents.split(1):
        with torch.random.fork_rng(devices=gpu, device_type=device.type if gpu else "cuda"):
            torch.manual_seed(DECODE_SEED)
            videos.append(vae.decode(latent))
    return torch.cat(videos)


def vae_decoder(vae: Any, base: Any, video: bool):
    """Clean latents -> the core's layout: images [B, 3, H, W] or videos [B, F, 3, H, W], in [0, 1].
    ComfyUI's ``VAE.decode`` gives [B, H, W, 3] for images and [B, F, H, W, 3] for videos."""

    def decode(x0: torch.Tensor) -> torch.Tensor:
        latents = base.process_latent_out(x0.to(torch.float32))
        if video:
            return decode_video(vae, latents).movedim(-1, 2)
        out = vae.decode(latents)
        return out.reshape(-1, *out.shape[-3:]).movedim(-1, 1)

    return decode


def frames_verifier(scorer: Any, mode: str) -> FrameSampledVerifier:
    """``scorer`` as the search shows it a candidate video: ``mode`` 'joint' is the core's default (one prompt
    where the verifier has ``score_frames``, else the per-frame mean: no warning, since it is the node's
    default whatever the verifier), 'each' the per-frame mean."""
    return FrameSampledVerifier(scorer, frames=None if mode == "joint" else mode)


def decode_output(vae: Any, samples: torch.Tensor) -> torch.Tensor:
    """The node's IMAGE output for its latent output, as VAEDecode gives it; a video decoded as the search
    decoded it (:func:`decode_video`), so the frames are the chosen candidate's, those the verifier scored."""
    return as_frames(decode_video(vae, samples) if is_video(samples) else vae.decode(samples))


def as_frames(decoded: torch.Tensor) -> torch.Tensor:
    """``VAE.decode``'s output as one ComfyUI IMAGE batch: a video's frames one after another (as VAEDecode)."""
    return decoded.reshape(-1, *decoded.shape[-3:])


def preview_image(media):
    """A PIL image to preview: the image itself, or a video's middle frame."""
    return media[len(media) // 2] if isinstance(media, (list, tuple)) else media


def candidate_batch(result: Any, node_ids: list[int]) -> torch.Tensor:
    """The candidates ``node_ids`` as one ComfyUI IMAGE batch [N, H, W, 3]; a video candidate gives all its
    frames, candidate after candidate (N = candidates x frames)."""
    items = [result.candidates[i] for i in node_ids]
    if items and isinstance(items[0], (list, tuple)):
        return torch.cat([to_tensor(frames) for frames in items]).movedim(1, -1)
    return to_tensor(items).movedim(1, -1)
