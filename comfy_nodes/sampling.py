"""The search as a ComfyUI sampler: a ``KSAMPLER`` function with the k-diffusion signature.

ComfyUI hands a sampler function ``model(x, sigma) -> denoised`` (guidance, conditioning, ControlNets and
patches already inside), the sigma grid and a noised latent. The function below wraps that model in a
:class:`~rd_inference.denoisers.kdiffusion.KDiffusionDenoiser` and runs an rd_inference strategy on it.
The state space comes from the model's own ``model_sampling`` (its noise scaling), so epsilon, v-prediction
and flow models re-noise correctly. A video latent [B, C, T, H, W] (Wan 2.1, LTX-Video) is searched as
videos: see :mod:`.video`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import comfy.model_management as mm
import comfy.samplers
import comfy.utils
import torch

from ..rd_inference.api import SearchResult, run_search
from ..rd_inference.budget import DEFAULT_MAX_NFE
from ..rd_inference.denoisers.kdiffusion import KDiffusionDenoiser
from ..rd_inference.images import to_pil
from ..rd_inference.strategies import get_strategy
from ..rd_inference.video import joins_frames
from .video import (
    DEFAULT_VERIFY_FRAMES,
    VideoKDiffusionDenoiser,
    decoded_frames,
    frames_verifier,
    is_video,
    preview_image,
    vae_decoder,
)

log = logging.getLogger("rd_inference")


def model_space(model_sampling: Any) -> str:
    """"ve" or "flow", read off the model's own noise scaling at sigma = 0.5 with x0 = noise = 1."""
    one = torch.ones(1)
    x = float(model_sampling.noise_scaling(torch.tensor(0.5), one, one, max_denoise=False))
    if math.isclose(x, 1.5, abs_tol=1e-4):  # x0 + sigma * eps
        return "ve"
    if math.isclose(x, 1.0, abs_tol=1e-4):  # (1 - sigma) * x0 + sigma * eps
        return "flow"
    raise ValueError(
        f"the search cannot sample this model ({type(model_sampling).__name__}): it supports epsilon, "
        "v-prediction and flow (CONST) models"
    )


def model_level(model_sampling: Any, sigmas: torch.Tensor, space: str) -> torch.Tensor | None:
    """Noise levels on the axis the strategy settings are given in.

    Flow: None (sigma itself). Discrete-timestep models (SD 1.5, SDXL): ``timestep(sigma) / T``, the axis
    the diffusers adapters use, so ``sigma_start``, ``delta_f`` and ``delta_b`` mean the same in ComfyUI
    and in Python. Others (continuous EDM): None, the VP-equivalent noise level (see ``default_level``).
    """
    if space == "flow":
        return None
    T = len(getattr(model_sampling, "sigmas", ()))
    if T == 0:
        return None
    t = model_sampling.timestep(sigmas.to(model_sampling.sigmas.device)).to("cpu", torch.float64).flatten()
    if not (bool((t[:-1] >= 0).all()) and bool((t[:-1] < T).all())):
        return None
    return t / T


class _ScoreThenReload:
    """Scores with the VERIFIER, then loads the diffusion model (and its ControlNets etc.) back, which the
    VAE decode or the verifier may have pushed off the GPU."""

    def __init__(self, verifier: Any, guider: Any):
        self.verifier = verifier
        self.guider = guider
        self.best: tuple[float, Any] | None = None  # (score, PIL image) of the best image scored so far
        if joins_frames(verifier):  # only then: the core asks joins_frames() whether a video may go in one prompt
            self.score_frames = self._score_frames

    def _reload(self) -> None:
        mm.load_models_gpu([self.guider.model_patcher, *getattr(self.guider, "loaded_models", [])])

    def _keep_best(self, scores: torch.Tensor, image_of: Callable[[int], Any]) -> None:
        k = int(torch.argmax(scores)) if len(scores) else None
        if k is not None and torch.isfinite(scores[k]) and (self.best is None or float(scores[k]) > self.best[0]):
            self.best = (float(scores[k]), image_of(k))

    def __call__(self, images, prompt: str) -> torch.Tensor:
        try:
            scores = torch.as_tensor(self.verifier(images, prompt), dtype=torch.float32).reshape(-1)
        finally:
            self._reload()
        self._keep_best(scores, lambda k: to_pil(images[k : k + 1])[0])
        return scores

    def _score_frames(self, videos, prompt: str) -> Any:
        """The verifier's ``score_frames`` (each video's frames in one prompt); the preview keeps the best
        video's middle frame shown."""
        try:
            out = self.verifier.score_frames(videos, prompt)
        finally:
            self._reload()
        self._keep_best(out.reward.float().reshape(-1), lambda k: preview_image(to_pil(videos[k])))
        return out

    def spec(self) -> dict | None:
        return self.verifier.spec() if callable(getattr(self.verifier, "spec", None)) else None


PREVIEW_SIZE = 512  # the longest side of the preview on the node


def _preview(image) -> tuple:
    """A progress bar preview of a PIL image at most ``PREVIEW_SIZE`` on its longest side. ComfyUI's server
    fits a preview to the size given, enlarging a small one, and the node labels it with the size it got."""
    return "JPEG", image, min(PREVIEW_SIZE, max(image.size))


class _Progress:
    """Per-step progress for ComfyUI's progress bar with a preview of the best candidate verified so far
    (then of the chosen image), and the place where a cancel request stops the search."""

    def __init__(self, scorer: _ScoreThenReload):
        self.bar = None
        self.scorer = scorer

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = comfy.utils.ProgressBar(total)
            self.scorer.best = None  # what the plan's calibration scored is not a candidate
        best = self.scorer.best
        self.bar.update_absolute(done, total, None if best is None else _preview(best[1]))
        mm.throw_exception_if_processing_interrupted()

    def show_chosen(self, image) -> None:
        """The chosen image as the node's last preview: the best verified so far may be an x0-prediction
        of an unfinished path (Search over Paths' earlier rounds), not what the search chose."""
        bar = self.bar if self.bar is not None else comfy.utils.ProgressBar(1)
        bar.update_absolute(bar.total, bar.total, _preview(image))


def check_settings(prompt: str, strategy: str, params: dict) -> None:
    """Fail at the node, before any sampling, on an empty prompt or impossible strategy settings."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the verifier prompt is empty: type what the image should show (the text the verifier checks)")
    strat = get_strategy(strategy)
    strat.validate({**strat.defaults, **params})


def search_function(
    *,
    strategy: str,
    params: dict[str, Any],
    verifier: Any,
    vae: Any,
    prompt: str,
    budget: int | str | None = None,
    max_batch: int = 8,
    on_result: Callable[[SearchResult], None] | None = None,
    max_nfe: int | str | None = DEFAULT_MAX_NFE,
    verify_frames: int = DEFAULT_VERIFY_FRAMES,
    verify_mode: str = "joint",
) -> Callable[..., torch.Tensor]:
    """A sampler function for ``comfy.samplers.KSAMPLER``: runs ``strategy`` and returns the chosen latent.
    The plan (forwards, decodes, images verified, rough time) goes to the console before the search; a
    plan above ``max_nfe`` forwards is refused there. On a video latent the verifier is shown
    ``verify_frames`` evenly spaced frames of each candidate video, in one prompt or one by one
    (``verify_mode``: see :func:`.video.frames_verifier`)."""
    check_settings(prompt, strategy, params)

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        mm.throw_exception_if_processing_interrupted()
        extra_args = dict(extra_args or {})
        if extra_args.get("denoise_mask") is not None:
            raise ValueError("the search samplers do not support a latent noise mask (inpainting, or the frames an "
                             "image-to-video node such as LTXVImgToVideo fixes): give an unmasked latent")
        if x.shape[0] != 1:
            raise ValueError(
                f"the search makes one image from a latent batch of 1, got {x.shape[0]}: set batch_size to 1 "
                "(the strategy's N decides how many paths are explored)"
            )
        guider = model.inner_model  # KSamplerX0Inpaint -> the guider -> the diffusion model
        base = guider.inner_model
        ms = base.model_sampling
        space = model_space(ms)
        sigmas = sigmas.detach().to("cpu", torch.float32)
        max_sigma = float(ms.sigma_max)
        max_denoise = math.isclose(max_sigma, float(sigmas[0]), rel_tol=1e-05) or float(sigmas[0]) > max_sigma
        latent_image = model.latent_image

        def noise_scaling(sigma: float, noise: torch.Tensor) -> torch.Tensor:
            return ms.noise_scaling(torch.tensor(sigma), noise, latent_image.to(noise), max_denoise=max_denoise)

        finals: dict[int, torch.Tensor] = {}

        def keep_finals(x_end: torch.Tensor, generators) -> None:
            for row, g in zip(x_end, generators):
                finals[g.initial_seed()] = row  # a node's generator is seeded with the node's seed

        cfg = float(getattr(guider, "cfg", 1.0))
        video = is_video(x)
        make, frames = KDiffusionDenoiser, {}
        if video:
            make = VideoKDiffusionDenoiser
            frames = {"num_frames": decoded_frames(vae, x.shape[2]), "verify_frames": verify_frames}
        den = make(
            lambda xb, s: model(xb, s, **extra_args),
            sigmas,
            space=space,
            latent_shape=x.shape[1:],
            decode_fn=vae_decoder(vae, base, video),
            prompt=prompt,
            level=model_level(ms, sigmas, space),
            noise_scaling=noise_scaling,
            forwards_per_step=1 if math.isclose(cfg, 1.0) else 2,
            max_batch=max_batch,
            device=x.device,
            dtype=x.dtype,
            on_final=keep_finals,
            extra_config={"model": type(base).__name__, "cfg": cfg},
            **frames,
        )
        seed = extra_args.get("seed")
        scorer = _ScoreThenReload(verifier, guider)
        progress = _Progress(scorer)
        result = run_search(
            den,
            frames_verifier(scorer, verify_mode) if video else scorer,
            strategy=strategy,
            budget=budget,
            seed=0 if seed is None else int(seed),
            progress=progress,
            max_nfe=max_nfe,
            on_plan=lambda plan: log.info("%s", plan.line()),
            **params,
        )
        best = finals[result.tree[result.node_id].seed][None]
        if callback is not None:  # ComfyUI's preview and SamplerCustomAdvanced's denoised output
            s = sigmas[-2]
            callback({"x": best, "i": len(sigmas) - 2, "sigma": s, "sigma_hat": s, "denoised": best})
        progress.show_chosen(preview_image(result.image))  # after the callback's own preview, so it is the last one
        if on_result is not None:
            on_result(result)
        return best

    return sample


def search_sampler(**kwargs: Any) -> comfy.samplers.KSAMPLER:
    """A SAMPLER for ``SamplerCustomAdvanced`` (see :func:`search_function` for the arguments)."""
    return comfy.samplers.KSAMPLER(search_function(**kwargs))
