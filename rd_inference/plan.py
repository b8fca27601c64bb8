"""What a search will cost, said before it starts, and the ceiling that refuses a doomed run.

The plan is exact where it can be: the strategy runs once on a stand-in denoiser whose latents are 2x2
noise and a verifier of seeded random scores, with the real schedule, forwards per step, chunk size and
settings, so the forwards, decodes and verified images it counts are the ones the real run will spend
(strategies whose structure depends on the scores, such as pruning, spend the same amounts whatever the
scores are). The time is rough: one model call on a full chunk, one decode and one verifier image, timed
on the real models after a warm-up, scaled by the counts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .budget import DEFAULT_MAX_NFE, size_search
from .checks import check_seed
from .denoisers.base import ChunkedDenoiser
from .ledger import Ledger


@dataclass(frozen=True)
class Plan:
    strategy: str
    forwards: int  # denoiser forwards (the budget's unit)
    decodes: int
    verifier_images: int
    model_calls: int  # batched model calls of up to max_batch paths
    seconds: float | None = None  # rough estimate from a calibration on the real models

    def line(self) -> str:
        eta = f", {_duration(self.seconds)}" if self.seconds is not None else ""
        return (f"plan: {self.strategy}, {self.forwards} denoiser forwards, {self.decodes} decodes, "
                f"{self.verifier_images} images verified{eta}")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


class _DryDenoiser(ChunkedDenoiser):
    """The real denoiser's schedule and sizes over 2x2 random latents; counts what a run would spend."""

    def __init__(self, den):
        self.schedule, self.max_batch, self.prompt = den.schedule, den.max_batch, den.prompt
        self.forwards_per_step = den.forwards_per_step
        self.ledger, self.device, self.dtype = Ledger(), torch.device("cpu"), torch.float32
        self.model_calls = 0
        self.gen = torch.Generator().manual_seed(0)

    def initial_noise(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        return self.sample_noise(generators, (len(generators), 1, 2, 2))

    def sample_noise(self, generators, shape) -> torch.Tensor:
        # Noise, not zeros: strategies normalise perturbations.
        return torch.randn(tuple(shape), generator=self.gen)

    def _denoise_chunk(self, x, start, end, generators, on_step):
        for _ in range(start, end):
            self.model_calls += 1
            self._counted(x.shape[0], on_step)
        self.ledger.paths += x.shape[0]
        return x, x

    def _predict_chunk(self, x, i):
        self.model_calls += 1
        return x

    def _decode_chunk(self, x0):
        return torch.zeros(x0.shape[0], 3, 2, 2)

    def move_models(self, device) -> None:
        pass

    def config(self) -> dict:
        return {}


class _RandomVerifier:
    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, images, prompt):
        return torch.rand(len(images), generator=self.gen)


def dry_run(den, strategy, params: dict, *, seed: int = 0, verify_batch: int | None = None,
            final_pick: str = "score", tournament_k: int = 4) -> Plan:
    """Count what ``strategy`` with ``params`` spends on ``den`` without running a model."""
    from .strategies import SearchContext

    dry = _DryDenoiser(den)
    ctx = SearchContext(dry, _RandomVerifier(seed), den.prompt, seed=seed, verify_batch=verify_batch)
    strategy.run(ctx, **params)
    images = dry.ledger.verifier_images
    if final_pick == "tournament":  # the pairwise final pick shows two images for each ordered pair
        finished = sum(n.score is not None and n.end == den.schedule.num_steps for n in ctx.tree.nodes)
        k = min(tournament_k, finished)
        images += k * (k - 1) * 2
    return Plan(strategy.name, dry.ledger.nfe, dry.ledger.decodes, images, dry.model_calls)


@torch.inference_mode()
def calibrate(den, verifier, plan: Plan) -> Plan:
    """``plan`` with a rough time: one model call on a full chunk, one decode and one verified image,
    timed on the real models after a warm-up call of each (nothing is booked in the run's ledger)."""
    from .video import for_denoiser

    verifier = for_denoiser(verifier, den)  # a video's frames, as the search will score them
    saved, den.ledger = den.ledger, Ledger()
    try:
        getattr(den, "cond", None)  # the prompt is encoded once per run, not per call
        gens = [torch.Generator("cpu").manual_seed(k) for k in range(den.max_batch)]
        x = den.initial_noise(gens)
        # A first call of each kind warms up (kernel selection, lazy allocations); the second is timed.
        den.predict_x0(x[:1], 0)
        image = den.decode(x[:1])
        verifier(image, den.prompt)
        t0 = time.perf_counter()
        den.predict_x0(x, 0)
        t_call = time.perf_counter() - t0
        t0 = time.perf_counter()
        image = den.decode(x[:1])
        t_decode = time.perf_counter() - t0
        t0 = time.perf_counter()
        verifier(image, den.prompt)
        t_verify = time.perf_counter() - t0
    finally:
        den.ledger = saved
    seconds = plan.model_calls * t_call + plan.decodes * t_decode + plan.verifier_images * t_verify
    return Plan(plan.strategy, plan.forwards, plan.decodes, plan.verifier_images, plan.model_calls, seconds)


def plan_search(pipe, prompt: str, *, verifier=None, strategy: str = "sop", budget: int | str | None = None,
                seed: int = 0, steps: int | None = None, guidance_scale: float | None = None,
                negative_prompt: str | None = None, height: int | None = None, width: int | None = None,
                max_batch: int = 8, verify_batch: int | None = None, final_pick: str = "score",
                tournament_k: int = 4, max_nfe: int | str | None = DEFAULT_MAX_NFE, offload: bool = False,
                overlap: bool | str = "auto", num_frames: int | None = None, verify_frames: int | None = None,
                timed: bool = True, **params) -> Plan:
    """What :func:`~rd_inference.search` with these arguments would spend, without searching: every
    check it makes (bad input, a budget too small, the ceiling) and the counts of a dry run; with
    ``timed`` and a ``verifier``, a rough time from a short calibration on the real models."""
    from .denoisers import make_denoiser
    from .strategies import get_strategy

    strat = get_strategy(strategy)
    seed = check_seed(seed)
    den = make_denoiser(pipe, prompt, negative_prompt=negative_prompt, steps=steps, guidance_scale=guidance_scale,
                        height=height, width=width, max_batch=max_batch, num_frames=num_frames,
                        verify_frames=verify_frames)
    params, _, _ = size_search(strat, den, budget, params, max_nfe)
    plan = dry_run(den, strat, params, seed=seed, verify_batch=verify_batch, final_pick=final_pick,
                   tournament_k=tournament_k)
    return calibrate(den, verifier, plan) if timed and verifier is not None else plan
