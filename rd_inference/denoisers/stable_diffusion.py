"""SD 1.5 / 2.x (epsilon or v-prediction) and SDXL adapters over the pipeline's components."""

from __future__ import annotations

import torch

from .base import Denoiser


class StableDiffusionDenoiser(Denoiser):
    family = "sd"
    default_steps = 50
    default_guidance = 7.5

    def default_size(self) -> int:
        return self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor

    def model_dtype(self) -> torch.dtype:
        return self.pipe.unet.dtype

    def encode(self) -> dict:
        pos, neg = self.pipe.encode_prompt(
            self.prompt, self.device, 1, self.do_cfg, negative_prompt=self.negative_prompt
        )
        return {"pos": pos, "neg": neg}

    def latent_shape(self) -> tuple[int, ...]:
        f = self.pipe.vae_scale_factor
        return (self.pipe.unet.config.in_channels, self.height // f, self.width // f)

    def _embeds(self, b: int) -> torch.Tensor:
        pos = self.cond["pos"].expand(b, -1, -1)
        return torch.cat([self.cond["neg"].expand(b, -1, -1), pos]) if self.do_cfg else pos

    def _unet_kwargs(self, b: int) -> dict:
        return {}

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        xin = torch.cat([x, x]) if self.do_cfg else x
        out = self.pipe.unet(
            xin, t, encoder_hidden_states=self._embeds(b), return_dict=False, **self._unet_kwargs(b)
        )[0]
        return self._cfg(out) if self.do_cfg else out

    def decode_latents(self, x0: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        return vae.decode(x0.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]


class StableDiffusionXLDenoiser(StableDiffusionDenoiser):
    family = "sdxl"
    default_steps = 50
    default_guidance = 5.0

    def encode(self) -> dict:
        pos, neg, pooled, neg_pooled = self.pipe.encode_prompt(
            prompt=self.prompt,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=self.do_cfg,
            negative_prompt=self.negative_prompt,
        )
        if self.pipe.text_encoder_2 is None:
            proj_dim = int(pooled.shape[-1])
        else:
            proj_dim = self.pipe.text_encoder_2.config.projection_dim
        size = (self.height, self.width)
        time_ids = self.pipe._get_add_time_ids(size, (0, 0), size, dtype=pos.dtype, text_encoder_projection_dim=proj_dim)
        return {"pos": pos, "neg": neg, "pooled": pooled, "neg_pooled": neg_pooled, "time_ids": time_ids.to(self.device)}

    def _unet_kwargs(self, b: int) -> dict:
        pooled = self.cond["pooled"].expand(b, -1)
        time_ids = self.cond["time_ids"].expand(b, -1)
        if self.do_cfg:
            pooled = torch.cat([self.cond["neg_pooled"].expand(b, -1), pooled])
            time_ids = torch.cat([time_ids, time_ids])
        return {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}

    def decode_latents(self, x0: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        # SDXL's fp16 VAE overflows; the pipeline upcasts it, so do we (for the decode only).
        dtype = torch.float32 if (vae.dtype == torch.float16 and vae.config.force_upcast) else vae.dtype
        latents = x0.to(dtype)
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            c = latents.shape[1]
            mean = torch.tensor(mean).view(1, c, 1, 1).to(latents)
            std = torch.tensor(std).view(1, c, 1, 1).to(latents)
            latents = latents * std / vae.config.scaling_factor + mean
        else:
            latents = latents / vae.config.scaling_factor
        if dtype != vae.dtype:
            vae.to(dtype)
            try:
                return vae.decode(latents, return_dict=False)[0]
            finally:
                vae.to(torch.float16)
        return vae.decode(latents, return_dict=False)[0]
