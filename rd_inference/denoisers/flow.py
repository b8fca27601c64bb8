"""Rectified-flow adapters: SD3 / SD3.5 and FLUX.1 (packed latents, guidance embedding)."""

from __future__ import annotations

import numpy as np
import torch
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

from .base import Denoiser


def _mu(scheduler, seq_len: int) -> float:
    c = scheduler.config
    return calculate_shift(
        seq_len,
        c.get("base_image_seq_len", 256),
        c.get("max_image_seq_len", 4096),
        c.get("base_shift", 0.5),
        c.get("max_shift", 1.15),
    )


class StableDiffusion3Denoiser(Denoiser):
    family = "sd3"
    default_steps = 28
    default_guidance = 7.0

    def size_factor(self) -> int:
        return self.pipe.vae_scale_factor * 2  # the transformer patches the latents 2x2

    def model_dtype(self) -> torch.dtype:
        return self.pipe.transformer.dtype

    def set_timesteps(self, scheduler) -> None:
        kwargs = {}
        if scheduler.config.get("use_dynamic_shifting", False):
            p = self.pipe.transformer.config.patch_size
            f = self.pipe.vae_scale_factor
            kwargs["mu"] = _mu(scheduler, (self.height // f // p) * (self.width // f // p))
        scheduler.set_timesteps(self.steps, device=self.device, **kwargs)

    def encode(self) -> dict:
        pos, neg, pooled, neg_pooled = self.pipe.encode_prompt(
            prompt=self.prompt,
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=self.do_cfg,
            negative_prompt=self.negative_prompt,
        )
        return {"pos": pos, "neg": neg, "pooled": pooled, "neg_pooled": neg_pooled}

    def latent_shape(self) -> tuple[int, ...]:
        f = self.pipe.vae_scale_factor
        return (self.pipe.transformer.config.in_channels, self.height // f, self.width // f)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        emb, pooled = self.cond["pos"].expand(b, -1, -1), self.cond["pooled"].expand(b, -1)
        if self.do_cfg:
            x = torch.cat([x, x])
            emb = torch.cat([self.cond["neg"].expand(b, -1, -1), emb])
            pooled = torch.cat([self.cond["neg_pooled"].expand(b, -1), pooled])
        out = self.pipe.transformer(
            hidden_states=x,
            timestep=t.expand(x.shape[0]),
            encoder_hidden_states=emb,
            pooled_projections=pooled,
            return_dict=False,
        )[0]
        return self._cfg(out) if self.do_cfg else out

    def decode_latents(self, x0: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        latents = x0.to(vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
        return vae.decode(latents, return_dict=False)[0]


class FluxDenoiser(Denoiser):
    """FLUX.1: guidance-distilled models take ``guidance_scale`` as an embedding (one forward per step);
    models without a guidance embedding run true classifier-free guidance (two)."""

    family = "flux"
    default_steps = 28
    default_guidance = 3.5

    def size_factor(self) -> int:
        return self.pipe.vae_scale_factor * 2  # the transformer patches the latents 2x2

    def model_dtype(self) -> torch.dtype:
        return self.pipe.transformer.dtype

    @property
    def do_cfg(self) -> bool:
        return not self.pipe.transformer.config.guidance_embeds and self.guidance_scale > 1.0

    def _grid(self) -> tuple[int, int]:
        f = self.pipe.vae_scale_factor * 2
        return 2 * (self.height // f), 2 * (self.width // f)

    def set_timesteps(self, scheduler) -> None:
        h, w = self._grid()
        sigmas = np.linspace(1.0, 1 / self.steps, self.steps)
        scheduler.set_timesteps(sigmas=sigmas, device=self.device, mu=_mu(scheduler, (h // 2) * (w // 2)))

    def encode(self) -> dict:
        pos, pooled, text_ids = self.pipe.encode_prompt(
            prompt=self.prompt, prompt_2=None, device=self.device, num_images_per_prompt=1
        )
        cond = {"pos": pos, "pooled": pooled, "text_ids": text_ids}
        if self.do_cfg:
            neg, neg_pooled, _ = self.pipe.encode_prompt(
                prompt=self.negative_prompt or "", prompt_2=None, device=self.device, num_images_per_prompt=1
            )
            cond.update(neg=neg, neg_pooled=neg_pooled)
        h, w = self._grid()
        cond["img_ids"] = self.pipe._prepare_latent_image_ids(1, h // 2, w // 2, self.device, pos.dtype)
        return cond

    def latent_shape(self) -> tuple[int, ...]:
        h, w = self._grid()
        c = self.pipe.transformer.config.in_channels // 4
        return ((h // 2) * (w // 2), c * 4)

    def initial_noise(self, generators):
        # Draw in the unpacked layout, as the pipeline does, then pack: the same seed gives the same image.
        h, w = self._grid()
        c = self.pipe.transformer.config.in_channels // 4
        noise = self.sample_noise(generators, (len(generators), c, h, w))
        return self.pipe._pack_latents(noise, len(generators), c, h, w)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        guidance = None
        if self.pipe.transformer.config.guidance_embeds:
            guidance = torch.full((b,), self.guidance_scale, device=x.device, dtype=torch.float32)

        def run(emb, pooled):
            return self.pipe.transformer(
                hidden_states=x,
                timestep=(t / 1000).expand(b).to(x.dtype),
                guidance=guidance,
                pooled_projections=pooled.expand(b, -1),
                encoder_hidden_states=emb.expand(b, -1, -1),
                txt_ids=self.cond["text_ids"],
                img_ids=self.cond["img_ids"],
                return_dict=False,
            )[0]

        out = run(self.cond["pos"], self.cond["pooled"])
        if self.do_cfg:
            neg = run(self.cond["neg"], self.cond["neg_pooled"])
            out = neg + self.guidance_scale * (out - neg)
        return out

    def decode_latents(self, x0: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        latents = self.pipe._unpack_latents(x0, self.height, self.width, self.pipe.vae_scale_factor)
        latents = latents.to(vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
        return vae.decode(latents, return_dict=False)[0]
