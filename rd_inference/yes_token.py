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

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from PIL import Image

from .checks import check_criteria
from .criteria import AGGREGATIONS, Criterion, aggregate, resolve_criteria
from .images import ImageBatch, to_pil
from .verifiers.prefix_cache import PrefixCache, chunks_of, groups_of
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

PROBABILITIES = ("conditional", "full")
QUANTIZATIONS = (None, "8bit", "4bit")
RATIONALE_SUFFIX = " Then explain why in one or two sentences."


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
class YesTokenVerifier:
    """``verifier(images, prompt) -> FloatTensor[B]``: a VLM's probability of "yes" to task questions.

    Build it with :meth:`from_pretrained`. Picklable: the pickle keeps the model path and settings and
    the copy reloads the weights on its first call (``spec()``/``from_spec()`` is the same route, as JSON).

    Timings (cumulative, seconds) are in ``timings``: ``preprocess``, ``forward``, ``move`` (offload moves
    to and from the GPU), plus ``calls`` and ``rows``; ``last_move_seconds`` is the move time of the last
    call. ``memory`` reports weight bytes before (``full_precision_bytes``) and after (``weights_bytes``)
    quantization.
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

    # ------------------------------------------------------------------------------ spec and pickling
    def spec(self) -> dict[str, Any]:
        """JSON-able settings from which :meth:`from_spec` (and ``verifier_from_spec``) rebuild this verifier.

        Placement (``device``, ``device_map``, ``offload``) is recorded but may be overridden at rebuild.
        """
        if self.source is None:
            raise ValueError("this verifier was built from objects, not from_pretrained: it has no spec")
        return {
            "name": "yes_token",
            "model": self.source,
            "criteria": [c.to_dict() for c in self.criteria],
            "pairwise_criteria": [c.to_dict() for c in self.pairwise_criteria],
            "probability": self.probability,
            "aggregation": self.aggregation,
            "max_batch": self.max_batch,
            "prefix_cache": self.prefix_cache.mode,
            **self._load_settings,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], **load_kwargs: Any) -> YesTokenVerifier:
        """Rebuild from :meth:`spec`; ``load_kwargs`` (device, dtype, offload ...) override the recorded ones."""
        if spec.get("name") != "yes_token":
            raise ValueError(f"not a yes_token verifier spec: name={spec.get('name')!r}")
        kwargs = {k: v for k, v in spec.items() if k not in ("name", "model")}
        if "model" not in spec:
            raise ValueError("yes_token verifier spec has no 'model' (path or hub id)")
        kwargs.update(load_kwargs)
        return cls.from_pretrained(spec["model"], **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        # The weights are not pickled: the copy reloads them from `source` when first used.
        return {"spec": self.spec()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(
            {"_pending_spec": state["spec"], "model": None, "processor": None, "timings": {}, "_held": 0}
        )
        self.reset_timings()
        spec = state["spec"]
        self.source, self.max_batch = spec["model"], spec["max_batch"]
        self.prefix_cache = PrefixCache(spec.get("prefix_cache", "auto"))
        self.probability, self.aggregation = spec["probability"], spec["aggregation"]
        self.criteria = resolve_criteria(spec["criteria"])
        self.pairwise_criteria = resolve_criteria(spec["pairwise_criteria"], pairwise=True)
        self.last_move_seconds, self.memory = 0.0, {}

    def _ensure_loaded(self) -> None:
        spec = self.__dict__.pop("_pending_spec", None)
        if spec is not None:
            self.__dict__.update(type(self).from_spec(spec).__dict__)

    def with_criteria(self, criteria: Any) -> YesTokenVerifier:
        """This verifier asking other questions: a copy that shares the loaded model and processor, so
        switching criteria costs no reload. Timings start afresh; other settings are kept."""
        self._ensure_loaded()
        other = object.__new__(type(self))  # not copy.copy: pickling (__getstate__) would drop the weights
        other.__dict__.update(self.__dict__)
        other.criteria = resolve_criteria(criteria)
        other.reset_timings()
        return other

    # --------------------------------------------------------------------------------- placement
    def reset_timings(self) -> None:
        self.timings = {"calls": 0, "rows": 0, "preprocess": 0.0, "forward": 0.0, "move": 0.0}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _move(self, device: torch.device) -> float:
        t0 = time.perf_counter()
        self.model.to(device)
        self._sync()
        seconds = time.perf_counter() - t0
        self.timings["move"] += seconds
        return seconds

    @contextlib.contextmanager
    def on_device(self) -> Iterator[YesTokenVerifier]:
        """Hold the model on ``device`` for the block (with ``offload``: one move in, one move out).

        The search can wrap a whole verify phase in it so several calls share one pair of moves.
        """
        self._ensure_loaded()
        moved = 0.0
        if self.offload and self._held == 0:
            moved += self._move(self.device)
        self._held += 1
        try:
            yield self
        finally:
            self._held -= 1
            if self.offload and self._held == 0:
                moved += self._move(torch.device("cpu"))
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            self.last_move_seconds = moved

    # ----------------------------------------------------------------------------------- scoring
    @staticmethod
    def _pil_images(images: ImageBatch | Image.Image) -> list[Image.Image]:
        if isinstance(images, Image.Image):
            return [images.convert("RGB")]
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"expected an image tensor of shape [B,3,H,W], got {tuple(images.shape)}")
            if images.shape[0] == 0:
                raise ValueError("no images given: pass at least one image")
            return to_pil(images.detach().cpu())
        images = list(images)
        if not images:
            raise ValueError("no images given: pass at least one image")
        if not all(isinstance(im, Image.Image) for im in images):
            raise TypeError("images must be a float tensor [B,3,H,W] in [0,1] or a list of PIL images")
        return to_pil(images)

    @staticmethod
    def _prompts(prompt: str | Sequence[str], n: int) -> list[str]:
        if isinstance(prompt, str):
            return [prompt] * n
        prompts = list(prompt)
        if len(prompts) != n or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"got {n} images but {len(prompts)} prompts: pass one prompt, or one per image")
        return prompts

    def _inputs(self, rows: Sequence[tuple[Sequence[Image.Image], str]]) -> Any:
        def content(images: Sequence[Image.Image], text: str) -> list[dict[str, Any]]:
            if len(images) == 1:
                return [{"type": "image", "image": images[0]}, {"type": "text", "text": text}]
            parts: list[dict[str, Any]] = []
            for i, im in enumerate(images, start=1):
                parts += [{"type": "text", "text": f"Image {i}:"}, {"type": "image", "image": im}]
            return [*parts, {"type": "text", "text": text}]

        messages = [[{"role": "user", "content": content(ims, text)}] for ims, text in rows]
        inputs = self.processor.apply_chat_template(
            messages,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True},
        )
        dtype = self.model.dtype
        return {
            k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
            if isinstance(v, torch.Tensor)
            else v
            for k, v in inputs.items()
        }

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

    def compare(
        self, first: ImageBatch | Image.Image, second: ImageBatch | Image.Image, prompt: str | Sequence[str]
    ) -> torch.Tensor:
        """Probability that ``second[i]`` is better than ``first[i]``, [P], position bias cancelled.

        Each pair is asked in both orders ("is image 2 better than image 1?" with (first, second) and with
        (second, first)); the result is the mean of P(second wins | shown second) and
        1 - P(first wins | shown second), so ``compare(a, b) == 1 - compare(b, a)``.
        """
        a, b = self._pil_images(first), self._pil_images(second)
        if len(a) != len(b):
            raise ValueError(
                f"compare needs as many first images as second images, got {len(a)} and {len(b)}"
            )
        prompts = self._prompts(prompt, len(a))
        crits = self.pairwise_criteria
        rows = []
        for x, y, p in zip(a, b, prompts):
            for c in crits:
                rows += [([x, y], c.render(p)), ([y, x], c.render(p))]
        lp = self.yes_no_logprobs(rows).view(len(a), len(crits), 2, 2)
        probs = (
            torch.sigmoid(lp[..., 0] - lp[..., 1]) if self.probability == "conditional" else lp[..., 0].exp()
        )
        w = torch.tensor([c.weight for c in crits], dtype=probs.dtype)
        w = w / w.sum()
        second_wins = 0.5 * (probs[..., 0] + (1.0 - probs[..., 1]))  # [P, C]
        return (second_wins * w).sum(dim=1)

    @torch.inference_mode()
    def rationale(
        self, image: ImageBatch | Image.Image, prompt: str, criterion: Any = None, max_new_tokens: int = 96
    ) -> str:
        """The VLM's short written answer ("yes/no, then why") for one image; for display only.

        Greedy generation; never used for scores.
        """
        self._ensure_loaded()
        pil = self._pil_images(image)
        if len(pil) != 1:
            raise ValueError(f"rationale explains one image, got {len(pil)}")
        crit = self.criteria[0] if criterion is None else resolve_criteria(criterion)[0]
        with self.on_device():
            inputs = self._inputs([(pil, crit.render(prompt) + RATIONALE_SUFFIX)])
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1] :]
        return self.processor.tokenizer.decode(new, skip_special_tokens=True).strip()

    def __repr__(self) -> str:
        names = ",".join(c.name for c in self.criteria)
        return f"YesTokenVerifier({self.source!r}, criteria={names}, probability={self.probability!r})"
