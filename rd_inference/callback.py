"""A diffusers ``callback_on_step_end`` that prunes a batch of paths, for users who keep calling ``pipe(...)``.

    cb = PruneCallback(verifier, "two red circles", prune_at=[5, 10], keep=0.5)
    images = pipe("two red circles", num_images_per_prompt=8, callback_on_step_end=cb,
                  callback_on_step_end_tensor_inputs=cb.tensor_inputs).images

At each step index in ``prune_at`` the callback predicts x0 for every path (one extra guided denoiser
forward, counted in ``cb.ledger``), decodes and verifies it, keeps the top ``keep`` fraction and refills
the batch with copies of the survivors. A copy keeps its survivor's x0-estimate but has a fraction
``refresh`` of its noise component redrawn at the same noise level, so copies diverge even under a
deterministic scheduler: ``x' = a x0 + s (sqrt(1 - r^2) eps_hat + r eps_new)``.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.callbacks import PipelineCallback

from .denoisers import make_denoiser
from .ledger import Ledger
from .verifiers import Verifier

# Schedulers whose step keeps no per-row history, so rows can be re-paired between steps.
STATELESS_SCHEDULERS = (
    DDIMScheduler,
    DDPMScheduler,
    EulerDiscreteScheduler,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
)


class PruneCallback(PipelineCallback):
    tensor_inputs: ClassVar[list[str]] = ["latents"]

    def __init__(self, verifier: Verifier, prompt: str, *, prune_at: list[int], keep: float = 0.5,
                 refresh: float = 0.5, seed: int = 0, guidance_scale: float | None = None,
                 height: int | None = None, width: int | None = None):
        # PipelineCallback.__init__ takes CFG-cutoff settings; only the JSON-able settings go to the config.
        if not prune_at:
            raise ValueError("prune_at is empty: give the step indices at which to prune")
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")
        if not 0.0 <= refresh <= 1.0:
            raise ValueError(f"refresh must be in [0, 1], got {refresh}")
        self.register_to_config(prune_at=sorted(int(s) for s in prune_at), keep=keep, refresh=refresh, seed=seed)
        self.verifier, self.prompt = verifier, prompt
        self.guidance_scale, self.height, self.width = guidance_scale, height, width
        self.generator = torch.Generator("cpu").manual_seed(seed)
        self.ledger = Ledger()
        self.history: list[dict] = []
        self._denoiser = None

    def _denoiser_for(self, pipe, latents):
        if not isinstance(pipe.scheduler, STATELESS_SCHEDULERS):
            names = ", ".join(c.__name__ for c in STATELESS_SCHEDULERS)
            raise TypeError(
                f"PruneCallback cannot re-pair the multistep history of {type(pipe.scheduler).__name__}; "
                f"use one of {names}"
            )
        if self._denoiser is None:
            f = pipe.vae_scale_factor
            height = self.height or (latents.shape[-2] * f if latents.ndim == 4 else None)
            width = self.width or (latents.shape[-1] * f if latents.ndim == 4 else None)
            guidance = self.guidance_scale if self.guidance_scale is not None else getattr(pipe, "guidance_scale", None)
            self._denoiser = make_denoiser(
                pipe, self.prompt, steps=len(pipe.scheduler.timesteps), guidance_scale=guidance,
                height=height, width=width, max_batch=latents.shape[0], ledger=self.ledger,
            )
            # The pipeline may have set custom timesteps (e.g. FLUX's shifted sigmas): use its own grid.
            self._denoiser.scheduler = copy.deepcopy(pipe.scheduler)
            from .schedule import Schedule

            self._denoiser.schedule = Schedule.from_scheduler(pipe.scheduler)
        return self._denoiser

    @torch.inference_mode()
    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        if step_index not in self.config.prune_at:
            return callback_kwargs
        latents = callback_kwargs["latents"]
        den = self._denoiser_for(pipeline, latents)
        sched, i = den.schedule, step_index + 1  # the latents are now at grid point step_index + 1
        if i >= sched.num_steps:
            x0 = latents.float()
        else:
            fresh = copy.deepcopy(den.scheduler)
            if hasattr(fresh, "set_begin_index"):
                fresh.set_begin_index(i)
            t = fresh.timesteps[i]
            xin = fresh.scale_model_input(latents, t) if hasattr(fresh, "scale_model_input") else latents
            with self.ledger.phase("denoise"):
                out = den.forward(xin, t)
            self.ledger.nfe += latents.shape[0] * den.forwards_per_step
            x0 = sched.x0_from_output(latents.float(), out.float(), i)
        images = den.decode(x0.to(latents.dtype))
        with self.ledger.phase("verify"):
            scores = torch.as_tensor(self.verifier(images, self.prompt), dtype=torch.float32).reshape(-1).cpu()
        self.ledger.verifier_images += len(scores)
        self.ledger.verifier_batches += 1
        b = latents.shape[0]
        k = max(1, math.floor(self.config.keep * b))
        survivors = torch.argsort(scores, descending=True, stable=True)[:k]
        source = survivors.repeat(math.ceil(b / k))[:b]
        new = latents[source].clone()
        r = self.config.refresh
        if r > 0 and i < sched.num_steps and b > k:
            a, s = sched.alpha[i].item(), sched.sigma[i].item()
            x0_src = x0[source]
            eps_hat = (latents[source].float() - a * x0_src) / s
            eps_new = torch.randn(eps_hat.shape, generator=self.generator).to(eps_hat.device)
            refreshed = a * x0_src + s * (math.sqrt(1 - r * r) * eps_hat + r * eps_new)
            new[k:] = refreshed[k:].to(latents.dtype)
        self.history.append({"step": step_index, "scores": scores.tolist(), "survivors": survivors.tolist()})
        callback_kwargs["latents"] = new
        return callback_kwargs
