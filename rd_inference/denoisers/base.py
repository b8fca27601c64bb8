"""Denoiser: a thin adapter over a diffusers pipeline's components that moves a batch of paths along the
pipeline's own schedule, with classifier-free guidance inside.

A family subclass supplies four hooks (like k-diffusion's ``external.py`` wrappers): ``encode`` (once per
search), ``forward`` (guided model output for a batch), ``latent_shape`` and ``decode_latents``. The
stepping itself is the pipeline's own scheduler: a fresh copy per segment and per chunk, so multistep
history or step indices never leak from one path (or chunk of paths) to another.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor

from ..checks import (
    NonFiniteError,
    check_guidance,
    check_max_batch,
    check_negative_prompt,
    check_prompt,
    check_size,
    check_steps,
)
from ..ledger import Ledger
from ..schedule import Schedule

StepHook = Callable[[int], None]  # called with the number of denoiser forwards just run


class ChunkedDenoiser:
    """What every denoiser shares, whatever drives the model: chunks of ``max_batch`` paths, counting of
    forwards, NaN checks and chunked decoding. Subclasses set ``schedule``, ``ledger``, ``max_batch`` and
    ``forwards_per_step`` and implement ``_denoise_chunk``, ``_predict_chunk`` and ``_decode_chunk``."""

    schedule: Schedule
    ledger: Ledger
    max_batch: int

    def _denoise_chunk(self, x, start, end, generators, on_step) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _predict_chunk(self, x: torch.Tensor, i: int) -> torch.Tensor:
        raise NotImplementedError

    def _decode_chunk(self, x0: torch.Tensor) -> torch.Tensor:
        """Clean latents to images in [0, 1]."""
        raise NotImplementedError

    def _counted(self, paths: int, on_step: StepHook | None) -> None:
        self.ledger.nfe += paths * self.forwards_per_step
        if on_step is not None:
            on_step(paths * self.forwards_per_step)

    def denoise(
        self,
        x: torch.Tensor,
        start: int,
        end: int,
        generators: Sequence[torch.Generator],
        on_step: StepHook | None = None,
        on_chunk: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoise a batch from grid point ``start`` to ``end``; returns (latents at ``end``, x0-prediction).

        The x0-prediction is the model's estimate at its last call, or the latents themselves when ``end``
        is the clean end of the grid. ``on_chunk(lo, hi, x0)`` is called as each chunk of rows finishes
        (so their images can be verified while the next chunk denoises).
        """
        if not 0 <= start < end <= self.schedule.num_steps:
            raise ValueError(f"bad denoising segment {start} -> {end} on a {self.schedule.num_steps}-step grid")
        gens = list(generators)

        def run(lo: int, hi: int):
            out = self._denoise_chunk(x[lo:hi], start, end, gens[lo:hi], on_step)
            if on_chunk is not None:
                on_chunk(lo, hi, out[1])
            return out

        chunks = self._each_chunk(x.shape[0], run, gens, on_step)
        outs, x0s = zip(*chunks)
        x_end, x0 = torch.cat(outs), torch.cat(x0s)
        _check_finite(x_end, f"after denoising to step {end}")
        return x_end, x0

    def _each_chunk(self, n: int, run, generators: Sequence[torch.Generator], on_step: StepHook | None,
                    size: int | None = None) -> list:
        """``run(lo, hi)`` over rows ``0..n`` in chunks of ``max_batch`` (or ``size``). An out-of-memory error
        halves the chunk size (kept for the rest of the run) and redoes that chunk from its start: its
        generators' states and the ledger's forwards are rolled back, and ``on_step`` is told the forwards
        being redone (a negative count), so counts, budgets and results are those of a run that never
        failed."""
        out, lo = [], 0
        while lo < n:
            step = size or self.max_batch
            hi = min(lo + step, n)
            states = [g.get_state() for g in generators[lo:hi]]
            nfe, paths = self.ledger.nfe, self.ledger.paths
            try:
                out.append(run(lo, hi))
            except torch.OutOfMemoryError:
                if hi - lo == 1:
                    raise
                for g, state in zip(generators[lo:hi], states):
                    g.set_state(state)
                if on_step is not None and self.ledger.nfe > nfe:
                    on_step(nfe - self.ledger.nfe)
                self.ledger.nfe, self.ledger.paths = nfe, paths
                self.ledger.chunk_retries += 1
                if size:
                    size = max(1, (hi - lo) // 2)
                else:
                    self.max_batch = max(1, (hi - lo) // 2)
                _release_memory()
                continue
            lo = hi
        return out

    @torch.inference_mode()
    def predict_x0(self, x: torch.Tensor, i: int, on_step: StepHook | None = None) -> torch.Tensor:
        """One (guided) model call at grid point ``i`` for a batch: the x0-prediction (chunked, counted).

        Strategies that step with their own transition (beam search, particle resampling) use this."""
        if not 0 <= i < self.schedule.num_steps:
            raise ValueError(f"grid point {i} has no model call on a {self.schedule.num_steps}-step grid")

        def predict(lo: int, hi: int) -> torch.Tensor:
            with self.ledger.phase("denoise"):
                x0 = self._predict_chunk(x[lo:hi], i)
            self._counted(hi - lo, on_step)
            return x0

        x0s = self._each_chunk(x.shape[0], predict, (), on_step)
        x0 = torch.cat(x0s)
        _check_finite(x0, f"in the prediction at step {i}")
        return x0

    @torch.inference_mode()
    def decode(self, x0: torch.Tensor, max_batch: int | None = None) -> torch.Tensor:
        """Decode x0 latents to float images [B,3,H,W] in [0,1] on the CPU, in chunks."""
        with self.ledger.phase("decode"):
            images = self._each_chunk(x0.shape[0], lambda lo, hi: self._decode_chunk(x0[lo:hi]).float().clamp(0, 1)
                                      .cpu(), (), None, size=max_batch)
        self.ledger.decodes += x0.shape[0]
        return torch.cat(images)


def _release_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _check_finite(x: torch.Tensor, where: str) -> None:
    if not torch.isfinite(x).all():
        hint = ("float16 overflows easily: try bfloat16 or float32" if x.dtype == torch.float16 else
                "lower the guidance scale, use fewer steps' worth of noise, or check the model's weights")
        raise NonFiniteError(f"non-finite latents {where}: the model produced NaN/inf ({x.dtype}); {hint}")


class Denoiser(ChunkedDenoiser):
    """Base class of the pipeline adapters. ``steps``, ``guidance_scale``, ``height``/``width`` have the
    pipeline's meaning. Chunks of ``max_batch`` paths each get a fresh scheduler copy."""

    family = "base"
    media = "image"  # "video": decode gives [B, F, 3, H, W] and the adapter has ``verify_frames``
    default_steps = 50
    default_guidance = 7.5

    def __init__(
        self,
        pipe,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        max_batch: int | str = 8,
        ledger: Ledger | None = None,
    ):
        check_prompt(prompt)
        check_negative_prompt(negative_prompt)
        max_batch = check_max_batch(max_batch)
        steps, guidance_scale = check_steps(steps), check_guidance(guidance_scale)
        self.pipe = pipe
        height = check_size("height", height, self.size_factor())
        width = check_size("width", width, self.size_factor())
        self.prompt = prompt
        self.negative_prompt = negative_prompt
        self.steps = steps or self.default_steps
        self.guidance_scale = float(self.default_guidance if guidance_scale is None else guidance_scale)
        default_size = self.default_size()
        self.height = height or default_size
        self.width = width or default_size
        self.max_batch = max_batch
        self.ledger = ledger or Ledger()
        self.device = pipe._execution_device
        self.dtype = self.model_dtype()
        self.scheduler = copy.deepcopy(pipe.scheduler)
        self.set_timesteps(self.scheduler)
        self.schedule = Schedule.from_scheduler(self.scheduler)
        self._step_takes_generator = "generator" in inspect.signature(self.scheduler.step).parameters
        self._cond: dict | None = None
        if self.max_batch == "auto":
            from .memory import auto_max_batch

            self.max_batch = auto_max_batch(self)

    @property
    def cond(self) -> dict:
        """The encoded prompt, computed on first use (so settings can be validated before any model runs)."""
        if self._cond is None:
            with self.ledger.phase("encode"), torch.inference_mode():
                self._cond = self.encode()
        return self._cond

    # ---- family hooks -------------------------------------------------------------------------------
    def default_size(self) -> int:
        return self.pipe.default_sample_size * self.pipe.vae_scale_factor

    def size_factor(self) -> int:
        """Pixels per latent cell: heights and widths must be multiples of it."""
        return self.pipe.vae_scale_factor

    def model_dtype(self) -> torch.dtype:
        raise NotImplementedError

    def set_timesteps(self, scheduler) -> None:
        scheduler.set_timesteps(self.steps, device=self.device)

    def encode(self) -> dict:
        raise NotImplementedError

    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one path's latent, as the scheduler sees it (FLUX: packed)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Guided model output for a batch ``x`` at timestep ``t``."""
        raise NotImplementedError

    def decode_latents(self, x0: torch.Tensor) -> torch.Tensor:
        """Decode clean latents to images in [-1, 1] (the VAE's range)."""
        raise NotImplementedError

    @property
    def forwards_per_step(self) -> int:
        """Model forwards one path costs per step (2 with classifier-free guidance)."""
        return 2 if self.do_cfg else 1

    @property
    def do_cfg(self) -> bool:
        return self.guidance_scale > 1.0

    # ---- shared machinery ----------------------------------------------------------------------------
    def initial_noise(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Pure noise at grid point 0, one generator per path (the pipeline's own ``init_noise_sigma``)."""
        shape = (len(generators), *self.latent_shape())
        noise = self.sample_noise(generators, shape)
        # Flow-matching schedulers have no init_noise_sigma: their noise level 1 is unit noise.
        return noise * getattr(self.scheduler, "init_noise_sigma", 1.0)

    def sample_noise(self, generators: Sequence[torch.Generator], shape: Sequence[int]) -> torch.Tensor:
        return randn_tensor(tuple(shape), generator=list(generators), device=self.device, dtype=torch.float32).to(
            self.dtype
        )

    def _fresh_scheduler(self, begin: int):
        sched = copy.deepcopy(self.scheduler)
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(begin)
        return sched

    def _predict_chunk(self, x: torch.Tensor, i: int) -> torch.Tensor:
        sched = self._fresh_scheduler(i)
        t = sched.timesteps[i]
        xin = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
        return self.schedule.x0_from_output(x.float(), self.forward(xin, t).float(), i).to(x.dtype)

    def _decode_chunk(self, x0: torch.Tensor) -> torch.Tensor:
        return self.decode_latents(x0).float() / 2 + 0.5

    @torch.inference_mode()
    def _denoise_chunk(self, x, start, end, generators, on_step):
        sched = self._fresh_scheduler(start)
        kwargs = {"generator": generators} if self._step_takes_generator else {}
        for i in range(start, end):
            t = sched.timesteps[i]
            with self.ledger.phase("denoise"):
                # Flow-matching schedulers take the latents as they are (no scale_model_input).
                xin = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
                out = self.forward(xin, t)
                if i == end - 1 and end < self.schedule.num_steps:  # only the segment's last prediction is used
                    x0 = self.schedule.x0_from_output(x.float(), out.float(), i).to(x.dtype)
                x = sched.step(out, t, x, return_dict=False, **kwargs)[0]
            self._counted(x.shape[0], on_step)
        self.ledger.paths += x.shape[0]
        if end == self.schedule.num_steps:
            x0 = x  # at the clean end of the grid the latents are the image
        return x, x0

    def denoising_modules(self) -> list[torch.nn.Module]:
        """The modules used after the prompt is encoded (the ones a one-GPU mode moves out of the way)."""
        names = ("unet", "transformer", "vae")
        return [m for m in (getattr(self.pipe, n, None) for n in names) if isinstance(m, torch.nn.Module)]

    def move_models(self, device) -> None:
        """Move the denoising modules (not the encoded prompt) to ``device``; waits for the copy to finish."""
        for module in self.denoising_modules():
            module.to(device)
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize(self.device)

    def config(self) -> dict:
        return {
            "family": self.family,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "negative_prompt": self.negative_prompt,
            "height": self.height,
            "width": self.width,
            "max_batch": self.max_batch,
            "scheduler": type(self.scheduler).__name__,
            "dtype": str(self.dtype),
            "vae_dtype": str(self.pipe.vae.dtype) if hasattr(getattr(self.pipe, "vae", None), "dtype") else None,
            "device": str(self.device),
        }

    def _cfg(self, out: torch.Tensor) -> torch.Tensor:
        uncond, cond = out.chunk(2)
        return uncond + self.guidance_scale * (cond - uncond)
