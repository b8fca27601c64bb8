"""Text-to-video adapter: LTX-Video (``LTXPipeline``), packed latents [B, tokens, C] on a rectified-flow grid.

The search steps on exactly what ``LTXPipeline``'s scheduler steps on: float32 noise drawn as [B, C, F, H, W]
and packed into tokens (``_pack_latents``), on the sigmas ``linspace(1, 1/n, n)`` shifted by ``mu`` from the
latent video's length (``calculate_shift``), so one path is the pipeline's own video for the same noise.
Guidance is one batch of two (unconditional first), as the pipeline runs it.

Decoding follows the pipeline: unpack, de-normalise with the VAE's ``latents_mean``/``latents_std``, and for
VAEs with ``timestep_conditioning`` (LTX-Video 0.9.1 and later) decode at ``decode_timestep``. The pipeline's
``decode_noise_scale`` mixes fresh noise into each video before decoding; the search's decodes must repeat,
so only a noise scale of 0 is taken (the pipeline's defaults, ``decode_timestep=0``, are exactly that).
"""

from __future__ import annotations

import contextlib
import inspect
import math

import numpy as np
import torch

from ..checks import UserError
from .base import Denoiser
from .flow import _mu
from .wan import _check_count, _check_frames

# Decoders built with ``decoder_inject_noise`` (LTX-Video 0.9.1) draw noise from the global generator while
# decoding. Seeding it for each decode makes a candidate's frames repeat, whatever ran before.
DECODE_NOISE_SEED = 0


class LTXDenoiser(Denoiser):
    """LTX-Video text-to-video. Adds to the :class:`Denoiser` settings ``num_frames`` (8k + 1 for the
    released VAE, which compresses time 8x after the first frame), ``verify_frames`` (frames per candidate
    shown to the verifier), ``frame_rate`` (the transformer's rotary-position scale), ``max_sequence_length``
    and the VAE's ``decode_timestep`` / ``decode_noise_scale``; defaults are ``LTXPipeline``'s."""

    family = "ltx"
    media = "video"
    default_steps = 50
    default_guidance = 3.0
    default_height, default_width, default_frames = 512, 704, 161

    def __init__(self, pipe, prompt: str, *, num_frames: int | None = None, verify_frames: int | None = None,
                 frame_rate: float = 25, max_sequence_length: int = 128, decode_timestep: float = 0.0,
                 decode_noise_scale: float | None = None, height: int | None = None, width: int | None = None,
                 **kwargs):
        _check_ltx(pipe)
        self.num_frames = _check_frames(num_frames, pipe.vae_temporal_compression_ratio, self.default_frames)
        # default: 4 frames, or every frame of a shorter video
        self.verify_frames = _check_count("verify_frames", min(4, self.num_frames) if verify_frames is None
                                          else verify_frames)
        if self.verify_frames > self.num_frames:
            raise UserError(f"verify_frames {self.verify_frames} is more than the video's {self.num_frames} frames")
        self.frame_rate = _check_positive("frame_rate", frame_rate)
        self.max_sequence_length = _check_count("max_sequence_length", max_sequence_length)
        self.decode_timestep = _check_positive("decode_timestep", decode_timestep, zero=True)
        noise = decode_timestep if decode_noise_scale is None else decode_noise_scale
        if pipe.vae.config.timestep_conditioning and _check_positive("decode_noise_scale", noise, zero=True):
            raise UserError(f"decode_noise_scale {noise} (it defaults to decode_timestep) mixes fresh noise into each "
                            "video before decoding, so its frames would not repeat: pass decode_noise_scale=0")
        self.decode_noise_scale = decode_noise_scale
        super().__init__(pipe, prompt, height=height or self.default_height, width=width or self.default_width,
                         **kwargs)

    # ---- family hooks -------------------------------------------------------------------------------
    def default_size(self) -> int:
        return self.default_height  # unused: height and width are always given to the base

    def size_factor(self) -> int:
        # LTXPipeline refuses sizes that are not multiples of 32, and floors the rest to the latent grid.
        cell = self.pipe.vae_spatial_compression_ratio * self.pipe.transformer_spatial_patch_size
        return math.lcm(32, cell)

    def model_dtype(self) -> torch.dtype:
        return self.pipe.transformer.dtype

    def _grid(self) -> tuple[int, int, int]:
        """Latent frames, height and width (before the transformer's patching)."""
        s = self.pipe.vae_spatial_compression_ratio
        frames = (self.num_frames - 1) // self.pipe.vae_temporal_compression_ratio + 1
        return frames, self.height // s, self.width // s

    def set_timesteps(self, scheduler) -> None:
        f, h, w = self._grid()
        sigmas = np.linspace(1.0, 1 / self.steps, self.steps)
        scheduler.set_timesteps(sigmas=sigmas, device=self.device, mu=_mu(scheduler, f * h * w))

    def encode(self) -> dict:
        pos, pos_mask, neg, neg_mask = self.pipe.encode_prompt(
            prompt=self.prompt, negative_prompt=self.negative_prompt, do_classifier_free_guidance=self.do_cfg,
            num_videos_per_prompt=1, max_sequence_length=self.max_sequence_length, device=self.device,
        )
        return {"pos": pos, "pos_mask": pos_mask, "neg": neg, "neg_mask": neg_mask}

    def latent_shape(self) -> tuple[int, ...]:
        f, h, w = self._grid()
        p, pt = self.pipe.transformer_spatial_patch_size, self.pipe.transformer_temporal_patch_size
        return ((f // pt) * (h // p) * (w // p), self.pipe.transformer.config.in_channels * pt * p * p)

    def sample_noise(self, generators, shape) -> torch.Tensor:
        # LTXPipeline keeps its latents in float32 whatever the model's dtype; so do the paths.
        return super().sample_noise(generators, shape).float()

    def initial_noise(self, generators) -> torch.Tensor:
        # Drawn unpacked, as the pipeline draws it, then packed: the same seed gives the same video.
        f, h, w = self._grid()
        noise = self.sample_noise(generators, (len(generators), self.pipe.transformer.config.in_channels, f, h, w))
        return self.pipe._pack_latents(noise, self.pipe.transformer_spatial_patch_size,
                                       self.pipe.transformer_temporal_patch_size)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        emb, mask = self.cond["pos"].expand(b, -1, -1), self.cond["pos_mask"].expand(b, -1)
        if self.do_cfg:
            x = torch.cat([x, x])
            emb = torch.cat([self.cond["neg"].expand(b, -1, -1), emb])
            mask = torch.cat([self.cond["neg_mask"].expand(b, -1), mask])
        f, h, w = self._grid()
        s, temporal = self.pipe.vae_spatial_compression_ratio, self.pipe.vae_temporal_compression_ratio
        out = self.pipe.transformer(
            hidden_states=x.to(emb.dtype), encoder_hidden_states=emb, timestep=t.expand(x.shape[0]),
            encoder_attention_mask=mask, num_frames=f, height=h, width=w,
            rope_interpolation_scale=(temporal / self.frame_rate, s, s), return_dict=False,
        )[0].float()
        return self._cfg(out) if self.do_cfg else out

    def decode_latents(self, x0: torch.Tensor) -> torch.Tensor:
        """Clean latents to videos [B, F, 3, H, W] in [-1, 1] (the pipeline's own unpacking and decoding)."""
        pipe, vae = self.pipe, self.pipe.vae
        latents = pipe._unpack_latents(x0, *self._grid(), pipe.transformer_spatial_patch_size,
                                       pipe.transformer_temporal_patch_size)
        latents = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        latents = latents.to(self.cond["pos"].dtype)  # the pipeline's cast, through the prompt's dtype
        temb = None
        if vae.config.timestep_conditioning:
            temb = torch.tensor([self.decode_timestep], device=latents.device, dtype=latents.dtype)
        # One video at a time (the VAE's own slicing): its convolutions round differently in a batch, and a
        # candidate must decode to the same bytes alone (regenerate) as in its chunk.
        videos = []
        for z in latents.to(vae.dtype).split(1):
            with _seeded_decoder_noise(vae, latents.device):
                videos.append(vae.decode(z, temb, return_dict=False)[0])  # [1, 3, F, H, W]
        return torch.cat(videos).permute(0, 2, 1, 3, 4)

    def denoising_modules(self) -> list[torch.nn.Module]:
        return [self.pipe.transformer, self.pipe.vae]

    def config(self) -> dict:
        return {**super().config(), "num_frames": self.num_frames, "verify_frames": self.verify_frames,
                "frame_rate": self.frame_rate, "max_sequence_length": self.max_sequence_length,
                "decode_timestep": self.decode_timestep, "decode_noise_scale": self.decode_noise_scale}


def _check_ltx(pipe) -> None:
    for part in ("transformer", "vae"):
        if getattr(pipe, part, None) is None:
            raise UserError(f"this LTXPipeline has no {part}: load a complete LTX-Video text-to-video model")
    if "mu" not in inspect.signature(pipe.scheduler.set_timesteps).parameters:
        raise UserError(f"LTX-Video steps on shifted flow sigmas, which {type(pipe.scheduler).__name__} cannot "
                        "take: use its FlowMatchEulerDiscreteScheduler")


def _check_positive(name: str, value, zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero):
        raise UserError(f"{name} must be a finite number {'>= 0' if zero else '> 0'}, got {value!r}")
    return float(value)


@contextlib.contextmanager
def _seeded_decoder_noise(vae, device: torch.device):
    """Seed the global generator for a decoder that injects noise, leaving the caller's state as it was."""
    if not any(vae.config.get("decoder_inject_noise") or ()):
        yield
        return
    cuda = torch.device(device).type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(DECODE_NOISE_SEED)
        else:
            torch.random.default_generator.manual_seed(DECODE_NOISE_SEED)
        yield
