"""The yes-token verifier: a vision-language model's probability of answering "yes" (RewardDance, 2509.08826).

One batched forward per chunk of (image, question) rows, left padded, only the last position's logits,
log-softmax; no text generation on the scoring path. Works on any ``AutoModelForImageTextToText`` model
whose tokenizer has "yes"/"no" as single tokens (Qwen2.5-VL, Qwen3-VL, InternVL, LLaVA, Idefics3/SmolVLM,
Gemma 3, ...). Image-only: no video processor (so no torchvision) is ever built.

Example:
    >>> v = YesTokenVerifier.from_pretrained("Qwen/Qwen2.5-VL-3B-Instruct", quantization="4bit")
    >>> v(images, "two red circles")                # FloatTensor[B], the search's verifier call
    >>> v.score(images, "two red circles").full     # P(yes) over the whole vocabulary, [B, criteria]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from PIL import Image

from .checks import check_criteria
from .criteria import AGGREGATIONS, Criterion, aggregate, resolve_criteria
from .images import ImageBatch
from .verifiers.prefix_cache import PrefixCache, chunks_of, groups_of
from .verifiers.vlm_inputs import ChatInputsMixin, JointFramesMixin
from .verifiers.vlm_loading import (  # noqa: F401  (answer_token_ids, load_image_processor: public here too)
    NO_WORDS,
    YES_WORDS,
    _as_dtype,
    _check_safetensors,
    _default_device,
    _weight_bytes,
    _yes_no_ids,
    answer_token_ids,
    full_precision_skip_modules,
    load_image_processor,
    load_vlm,
)
from .verifiers.vlm_pairwise import RATIONALE_SUFFIX, PairwiseMixin  # noqa: F401  (RATIONALE_SUFFIX: public here too)
from .verifiers.vlm_placement import PlacementMixin
from .verifiers.vlm_spec import SpecMixin

PROBABILITIES = ("conditional", "full")
QUANTIZATIONS = (None, "8bit", "4bit")


# ----------------------------------------------------------------------------------------------- scores
@dataclass
class YesTokenScores:
    """Per-image, per-criterion probabilities of one :meth:`YesTokenVerifier.score` call.

    ``full``: P(yes) over the whole vocabulary; ``conditional``: P(yes | {yes, no}) =
    sigmoid(log P(yes) - log P(no)); both [B, C] with C = ``len(criteria)``. ``reward`` combines the
    chosen ``probability`` over the criteria with ``aggregation`` into [B] (what the search sees).
    """

    full: torch.Tensor
    conditional: torch.Tensor
    criteria: tuple[Criterion, ...]
    probability: str = "conditional"
    aggregation: str = "mean"
    reward: torch.Tensor = field(init=False)

    def __post_init__(self):
        probs = self.conditional if self.probability == "conditional" else self.full
        self.reward = aggregate(probs, [c.weight for c in self.criteria], self.aggregation)


# ---------------------------------------------------------------------------------------------- verifier
class YesTokenVerifier(JointFramesMixin, SpecMixin, PairwiseMixin, PlacementMixin, ChatInputsMixin):
    """``verifier(images, prompt) -> FloatTensor[B]``: a VLM's probability of "yes" to task questions.

    Build it with :meth:`from_pretrained`. Picklable: the pickle keeps the model path and settings and
    the copy reloads the weights on its first call (``spec()``/``from_spec()`` is the same route, as JSON).

    Timings (cumulative, seconds) are in ``timings``: ``preprocess``, ``forward``, ``move`` (offload moves
    to and from the GPU), plus ``calls`` and ``rows``; ``last_move_seconds`` is the move time of the last
    call. ``memory`` reports weight bytes before (``full_precision_bytes``) and after (``weights_bytes``)
    quantization.

    Its concerns live beside it in :mod:`rd_inference.verifiers`: ``vlm_loading`` (weights), ``vlm_spec``
    (spec and pickling), ``vlm_placement`` (``on_device``, offload), ``vlm_inputs`` (chat inputs, a video's
    frames in one prompt) and ``vlm_pairwise`` (``compare``, ``rationale``); this class keeps the rest.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        criteria: Any = None,
        pairwise_criteria: Any = None,
        probability: str = "conditional",
        aggregation: str = "mean",
        max_batch: int = 8,
        device: str | torch.device | None = None,
        offload: bool = False,
        source: str | None = None,
        load_settings: dict[str, Any] | None = None,
        prefix_cache: str = "auto",
    ):
        if probability not in PROBABILITIES:
            raise ValueError(f"probability must be one of {PROBABILITIES}, got {probability!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch!r}")
        self.criteria = resolve_criteria(criteria)
        self.pairwise_criteria = resolve_criteria(pairwise_criteria, pairwise=True)
        self.probability = probability
        self.aggregation = aggregation
        self.max_batch = int(max_batch)
        self.prefix_cache = PrefixCache(prefix_cache)
        self.offload = bool(offload)
        self.source = source
        self._load_settings = dict(load_settings or {})
        self.device = torch.device(device if device is not None else _default_device())
        self.timings: dict[str, float] = {}
        self.reset_timings()
        self.last_move_seconds = 0.0
        self.memory: dict[str, int] = {}
        self._held = 0
        self._attach(model, processor)

    def _attach(self, model: Any, processor: Any) -> None:
        self.model, self.processor = model, processor
        if model is None:
            return
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"  # the last position must be the answer position in every row
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.yes_ids, self.no_ids = _yes_no_ids(tokenizer, self.source or type(model).__name__)
        if not self.memory:
            footprint = model.get_memory_footprint()
            self.memory = {"weights_bytes": footprint, "full_precision_bytes": footprint}

    # ---------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        *,
        quantization: str | None = None,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        device_map: str | dict | None = None,
        trust_remote_code: bool = False,
        quantize_vision: bool = False,
        offload: bool = False,
        criteria: Any = None,
        pairwise_criteria: Any = None,
        probability: str = "conditional",
        aggregation: str = "mean",
        max_batch: int = 8,
        attn_implementation: str | None = None,
        compile: bool = False,
        prefix_cache: str = "auto",
    ) -> YesTokenVerifier:
        """Load a VLM (safetensors only) and its image-only processor.

        Args:
            path_or_id: a local folder or a hub id of an ``AutoModelForImageTextToText`` model.
            quantization: None, ``"8bit"`` or ``"4bit"`` (bitsandbytes nf4 with double quantization,
                compute in ``dtype``). The output head, and unless ``quantize_vision`` the vision tower and
                projector, stay in full precision.
            dtype: weights/compute dtype; default bfloat16 on CUDA, float32 on CPU.
            device: where scoring runs (default CUDA when available). ``device_map`` is passed to
                transformers instead when given (e.g. ``"auto"``); not with ``offload``.
            trust_remote_code: run the model repository's own Python code (off unless you pass it).
            offload: keep the weights on the CPU and move them to ``device`` only while scoring, so a
                diffusion model and the verifier share one GPU; the moves are timed in ``timings["move"]``.
            criteria / pairwise_criteria: see :func:`rd_inference.criteria.resolve_criteria`.
            probability: ``"conditional"`` (P(yes|{yes,no}), default) or ``"full"`` (P(yes)) as the reward.
            aggregation: ``"mean"`` or ``"rank"`` over several criteria.
            max_batch: rows per forward pass (images x criteria, chunked).
            attn_implementation: transformers' attention kernel (``"sdpa"``, ``"eager"``,
                ``"flash_attention_2"``, ...); None lets transformers choose.
            compile: ``torch.compile`` the model (worth its compile time only over many calls).
            prefix_cache: with several criteria, run each image and the text before the question once
                and only the questions per criterion (:mod:`rd_inference.verifiers.prefix_cache`):
                ``"auto"`` (after checking its first use against the uncached forward), ``"on"``, ``"off"``.
        """
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
        if offload and device_map is not None:
            raise ValueError("offload moves the whole model to one device; pass device=..., not device_map")
        # Criteria are read (names, files) before the weights load: a typo fails in a second, not a minute.
        criteria = check_criteria(criteria, "criteria")
        pairwise_criteria = check_criteria(pairwise_criteria, "pairwise_criteria", pairwise=True)
        device = torch.device(device if device is not None else _default_device())
        model, processor, settings, full_precision_bytes = load_vlm(
            path_or_id, quantization=quantization, dtype=dtype, device=device, device_map=device_map,
            trust_remote_code=trust_remote_code, quantize_vision=quantize_vision, offload=offload,
            attn_implementation=attn_implementation, compile=compile,
        )
        verifier = cls(
            model,
            processor,
            criteria=criteria,
            pairwise_criteria=pairwise_criteria,
            probability=probability,
            aggregation=aggregation,
            max_batch=max_batch,
            device=device if device_map is None else model.device,
            offload=offload,
            source=str(path_or_id),
            load_settings=settings,
            prefix_cache=prefix_cache,
        )
        footprint = model.get_memory_footprint()
        verifier.memory = {
            "weights_bytes": footprint,
            "full_precision_bytes": full_precision_bytes or footprint,
        }
        return verifier

    # ------------------------------------------------------------------------------------ criteria
    def with_criteria(self, criteria: Any) -> YesTokenVerifier:
        """This verifier asking other questions: a copy that shares the loaded model and processor, so
        switching criteria costs no reload. Timings start afresh; other settings are kept."""
        self._ensure_loaded()
        other = object.__new__(type(self))  # not copy.copy: pickling (__getstate__) would drop the weights
        other.__dict__.update(self.__dict__)
        other.criteria = resolve_criteria(criteria)
        other.reset_timings()
        return other

    # ----------------------------------------------------------------------------------- scoring
    def _last_logits(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self.model(**inputs, logits_to_keep=1).logits[:, -1]

    @torch.inference_mode()
    def yes_no_logprobs(self, rows: Sequence[tuple[Sequence[Image.Image], str]]) -> torch.Tensor:
        """log P(yes), log P(no) [N, 2] for rows of (images, question text), in chunks of ``max_batch``.

        Each chunk is one forward pass (two with the prefix cache: the images, then the questions); the logsumexp over the yes (no) token variants is taken after a
        log-softmax over the whole vocabulary at the last position.
        """
        self._ensure_loaded()
        out = []
        with self.on_device():
            # Rows of one image stay in one chunk, so its questions can share the image's prefix.
            for chunk_groups in chunks_of(groups_of(rows), self.max_batch):
                start = chunk_groups[0][0]
                chunk = rows[start : chunk_groups[-1][-1] + 1]
                local = [[i - start for i in g] for g in chunk_groups]
                t0 = time.perf_counter()
                inputs = self._inputs(chunk)
                t1 = time.perf_counter()
                logits = self.prefix_cache.logits(self.model, inputs, local, partial(self._last_logits, inputs)).float()
                logp = torch.log_softmax(logits, dim=-1)
                pair = torch.stack(
                    [logp[:, self.yes_ids].logsumexp(-1), logp[:, self.no_ids].logsumexp(-1)], dim=-1
                ).cpu()
                out.append(pair)
                self.timings["preprocess"] += t1 - t0
                self.timings["forward"] += time.perf_counter() - t1
        self.timings["calls"] += 1
        self.timings["rows"] += len(rows)
        return torch.cat(out)

    def score(
        self, images: ImageBatch | Image.Image, prompt: str | Sequence[str], criteria: Any = None
    ) -> YesTokenScores:
        """Both probabilities for every image and criterion, and the combined reward.

        Args:
            images: float tensor [B,3,H,W] in [0,1], or PIL images.
            prompt: the generation prompt (one for all images, or one per image).
            criteria: override this verifier's criteria for this call.
        """
        pil = self._pil_images(images)
        prompts = self._prompts(prompt, len(pil))
        crits = self.criteria if criteria is None else resolve_criteria(criteria)
        rows = [([im], c.render(p)) for im, p in zip(pil, prompts) for c in crits]
        lp = self.yes_no_logprobs(rows).view(len(pil), len(crits), 2)
        return YesTokenScores(
            full=lp[..., 0].exp(),
            conditional=torch.sigmoid(lp[..., 0] - lp[..., 1]),
            criteria=crits,
            probability=self.probability,
            aggregation=self.aggregation,
        )

    def __call__(self, images: ImageBatch, prompt: str) -> torch.Tensor:
        """The search's verifier call: one score in [0,1] per image, higher is better."""
        return self.score(images, prompt).reward.float()

    def __repr__(self) -> str:
        names = ",".join(c.name for c in self.criteria)
        return f"YesTokenVerifier({self.source!r}, criteria={names}, probability={self.probability!r})"
