"""Text-to-video adapter: Wan 2.1 (``WanPipeline``), 5-D latents [B, C, F, H, W] on a rectified-flow grid.

Wan ships ``UniPCMultistepScheduler`` on shifted flow sigmas (``use_flow_sigmas=True``, flow prediction);
its tests use ``FlowMatchEulerDiscreteScheduler``. Either way the grid is ``x = (1 - s) x0 + s eps``, so the
exact re-noising kernel and the x0-prediction are those of SD3/FLUX, read off the pipeline's own scheduler
(:mod:`rd_inference.schedule`). A multistep solver's history restarts at each segment's start, as on VP.

Decoding gives whole videos [B, F, 3, H, W]; a verifier sees ``verify_frames`` evenly spaced frames of each
(:class:`~rd_inference.video.FrameSampledVerifier`).
"""

from __future__ import annotations

import torch

from ..checks import UserError
from .base import Denoiser


class WanDenoiser(Denoiser):
    """Wan 2.1 text-to-video. ``num_frames`` (4k + 1, the VAE compresses time 4x after the first frame) and
    ``verify_frames`` (frames per candidate shown to the verifier) add to the :class:`Denoiser` settings.
    Guidance runs the conditional and unconditional passes one after the other, as ``WanPipeline`` does."""

    family = "wan"
    media = "video"
    default_steps = 50
    default_guidance = 5.0
    default_height, default_width, default_frames = 480, 832, 81

    def __init__(self, pipe, prompt: str, *, num_frames: int | None = None, verify_frames: int | None = None,
                 max_sequence_length: int = 512, height: int | None = None, width: int | None = None, **kwargs):
        _check_wan(pipe)
        self.num_frames = _check_frames(num_frames, pipe.vae_scale_factor_temporal, self.default_frames)
        # default: 4 frames, or every frame of a shorter video
        self.verify_frames = _check_count("verify_frames", min(4, self.num_frames) if verify_frames is None
                                          else verify_frames)
        if self.verify_frames > self.num_frames:
            raise UserError(f"verify_frames {self.verify_frames} is more than the video's {self.num_frames} frames")
        self.max_sequence_length = _check_count("max_sequence_length", max_sequence_length)
        super().__init__(pipe, prompt, height=height or self.default_height, width=width or self.default_width,
                         **kwargs)

    @staticmethod
    def check_model_index(index: dict) -> None:
        """Refuse, from ``model_index.json`` before any weight loads, what :func:`_check_wan` refuses."""
        second = index.get("transformer_2")
        _refuse_wan22(index.get("boundary_ratio"), index.get("expand_timesteps", False),
                      isinstance(second, list) and second[0] is not None)

    # ---- family hooks -------------------------------------------------------------------------------
    def default_size(self) -> int:
        return self.default_height  # unused: height and width are always given to the base

    def size_factor(self) -> int:
        return self.pipe.vae_scale_factor_spatial * self.pipe.transformer.config.patch_size[1]

    def model_dtype(self) -> torch.dtype:
        return self.pipe.transformer.dtype

    def encode(self) -> dict:
        pos, neg = self.pipe.encode_prompt(
            prompt=self.prompt, negative_prompt=self.negative_prompt, do_classifier_free_guidance=self.do_cfg,
            num_videos_per_prompt=1, max_sequence_length=self.max_sequence_length, device=self.device,
        )
        return {"pos": pos.to(self.dtype), "neg": None if neg is None else neg.to(self.dtype)}

    def latent_shape(self) -> tuple[int, ...]:
        s = self.pipe.vae_scale_factor_spatial
        frames = (self.num_frames - 1) // self.pipe.vae_scale_factor_temporal + 1
        return (self.pipe.transformer.config.in_channels, frames, self.height // s, self.width // s)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = x.to(self.dtype)

        def run(emb: torch.Tensor) -> torch.Tensor:
            return self.pipe.transformer(hidden_states=x, timestep=t.expand(b),
                                         encoder_hidden_states=emb.expand(b, -1, -1), return_dict=False)[0]

        out = run(self.cond["pos"])
        if self.do_cfg:
            neg = run(self.cond["neg"])
            out = neg + self.guidance_scale * (out - neg)
        return out

    def decode_latents(self, x0: torch.Tensor) -> torch.Tensor:
        """Clean latents to videos [B, F, 3, H, W] in [-1, 1] (the pipeline's own de-normalisation)."""
        vae = self.pipe.vae
        z = vae.config.z_dim
        latents = x0.to(vae.dtype)
        mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
        video = vae.decode(latents / inv_std + mean, return_dict=False)[0]  # [B, 3, F, H, W]
        return video.permute(0, 2, 1, 3, 4)

    def denoising_modules(self) -> list[torch.nn.Module]:
        return [self.pipe.transformer, self.pipe.vae]

    def config(self) -> dict:
        return {**super().config(), "num_frames": self.num_frames, "verify_frames": self.verify_frames,
                "max_sequence_length": self.max_sequence_length}


def _check_wan(pipe) -> None:
    if getattr(pipe, "transformer", None) is None:
        raise UserError("this WanPipeline has no transformer: load a complete Wan 2.1 text-to-video model")
    _refuse_wan22(pipe.config.get("boundary_ratio"), pipe.config.get("expand_timesteps", False),
                  getattr(pipe, "transformer_2", None) is not None)


def _refuse_wan22(boundary_ratio, expand_timesteps, two_experts: bool) -> None:
    """Wan 2.2's two experts and its TI2V per-token timesteps are not driven by this adapter yet."""
    if two_experts or boundary_ratio is not None:
        raise UserError("this WanPipeline has two experts (Wan 2.2, transformer_2/boundary_ratio), which the "
                        "search does not support yet: use a Wan 2.1 text-to-video model")
    if expand_timesteps:
        raise UserError("this WanPipeline uses per-token timesteps (Wan 2.2 TI2V, expand_timesteps=True), which "
                        "the search does not support yet: use a Wan 2.1 text-to-video model")


def _check_frames(num_frames, temporal: int, default: int) -> int:
    if num_frames is None:
        return default
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1 \
            or (num_frames - 1) % temporal:
        raise UserError(f"num_frames must be {temporal}k + 1 (e.g. 1, {temporal + 1}, 81), got {num_frames!r}: "
                        f"the video VAE compresses time {temporal}x after the first frame")
    return num_frames


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be a whole number >= 1, got {value!r}")
    return value
