"""Shared-prefix reuse for the yes-token verifier: several questions about one image in one forward of
the image.

With k criteria the verifier asks k questions per image. Chat templates put the image before the
question, so the k rows of one image share every token up to the question text — and that shared part
(the vision tower and hundreds to thousands of image tokens) is what costs. Here the shared prefix runs
once per image, its key/value cache is copied to the image's k rows, and only the k question suffixes
run on top of it. In a causal language model this is the same computation, so the last-position
logits equal the uncached ones up to float rounding.

It is exact only where the model's positions are 1-D and its attention is causal across the cut: not
for multimodal RoPE (Qwen2-VL's 3-D positions) or prefix-LM attention (PaliGemma). Rather than trust a
list of model types, :class:`PrefixCache` checks its first use against the uncached forward and keeps
using the cache only when the two agree (:data:`TOLERANCE`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)

# Largest |difference| of log-probabilities accepted at the self-check. float32 agrees to ~1e-6; half
# precision differs by rounding (batch shapes change the reduction order); a wrong cache differs by
# far more than either (a shifted position or a lost image changes the answer's log-probability by
# tenths or more).
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-4}
HALF_TOLERANCE = 5e-2
MODES = ("auto", "on", "off")


def groups_of(rows: Sequence[tuple[Sequence[Any], str]]) -> list[list[int]]:
    """Runs of consecutive rows that show the very same images (the same objects), in order."""
    out: list[list[int]] = []
    for i, (images, _) in enumerate(rows):
        if out and _same_images(rows[out[-1][0]][0], images):
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _same_images(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def chunks_of(groups: list[list[int]], max_rows: int) -> list[list[list[int]]]:
    """Groups packed in order into chunks of at most ``max_rows`` rows; a group is split only when it
    alone is larger than that (its pieces still share their images)."""
    pieces = [g[i : i + max_rows] for g in groups for i in range(0, len(g), max_rows)]
    out: list[list[list[int]]] = []
    size = 0
    for g in pieces:
        if out and size + len(g) <= max_rows:
            out[-1].append(g)
            size += len(g)
        else:
            out.append([g])
            size = len(g)
    return out


def _image_token(model: Any) -> int | None:
    config = model.config
    for name in ("image_token_id", "image_token_index"):
        if getattr(config, name, None) is not None:
            return int(getattr(config, name))
    return None


def _cache_argument(model: Any) -> str:
    # transformers renamed `past_key_values` to `cache` during 5.x; the old name still works but warns.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.inference_mode()
def shared_prefix_logits(model: Any, inputs: dict[str, Any], groups: list[list[int]]) -> torch.Tensor | None:
    """Last-position logits [N, V] of left-padded chat ``inputs`` (N rows) whose rows come in ``groups``
    (indices into the rows, each group showing the same images), computed with one prefix forward per
    group; None where this batch cannot be split that way (the caller then runs it whole).

    Each group's rows must share their tokens up to past the last image token; the prefix is the
    longest run of tokens that every row of every group starts with (the same length for all groups, so
    the prefixes batch without padding). Image inputs are taken from each group's first row.
    """
    ids, mask = inputs["input_ids"], inputs["attention_mask"].bool()
    n = ids.shape[0]
    rows = [ids[r][mask[r]] for r in range(n)]
    p = min(len(r) for r in rows)
    first = rows[0]
    for r in rows[1:]:
        same = (r[:p] == first[:p]).long()
        p = int(same.cumprod(0).sum())
    # A row must keep at least its last token for the suffix pass (its logits are the answer).
    p = min(p, min(len(r) for r in rows) - 1)
    image_token = _image_token(model)
    if p <= 0 or image_token is None or any((r[p:] == image_token).any() for r in rows):
        return None
    heads = torch.tensor([g[0] for g in groups])
    extra = {}
    for key, value in inputs.items():
        if key in ("input_ids", "attention_mask"):
            continue
        if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.shape[0] != n:
            return None  # e.g. patches flattened across images (Qwen2-VL): rows cannot be picked out
        extra[key] = value[heads]
    prefix = torch.stack([rows[int(h)][:p] for h in heads])
    out = model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True, logits_to_keep=1, **extra)
    cache = out.cache if "cache" in out else out.past_key_values
    owner = torch.tensor([k for k, g in enumerate(groups) for _ in g])
    order = torch.tensor([r for g in groups for r in g])
    cache.batch_select_indices(owner)
    # Suffixes right-padded: in a causal model the padding after a row's last token cannot reach it.
    tails = [rows[int(r)][p:] for r in order]
    width = max(len(t) for t in tails)
    # The padding repeats each row's last token: masked out and never read, but a valid id for every
    # vocabulary (a config's pad_token_id can lie outside a small one).
    suffix = torch.stack([torch.cat([t, t[-1:].expand(width - len(t))]) for t in tails])
    suffix_mask = torch.zeros((n, p + width), dtype=inputs["attention_mask"].dtype, device=ids.device)
    suffix_mask[:, :p] = 1
    for j, t in enumerate(tails):
        suffix_mask[j, p : p + len(t)] = 1
    positions = torch.arange(p, p + width, device=ids.device)
    logits = model(input_ids=suffix, attention_mask=suffix_mask, use_cache=True, position_ids=positions.expand(n, -1),
                   **{_cache_argument(model): cache}).logits
    last = torch.tensor([len(t) - 1 for t in tails], device=logits.device)
    picked = logits[torch.arange(n, device=logits.device), last]
    result = torch.empty_like(picked)
    result[order.to(picked.device)] = picked
    return result


class PrefixCache:
    """The verifier's switch for :func:`shared_prefix_logits`: ``"off"``, ``"on"`` (used wherever the
    batch allows) or ``"auto"`` (the default: used after its first use agreed with the uncached forward
    within :data:`TOLERANCE`; never again if it did not)."""

    def __init__(self, mode: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"prefix_cache must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.checked: bool | None = None  # auto: None until the first check, then its outcome
        self.last_difference: float | None = None

    def wanted(self, groups: list[list[int]]) -> bool:
        return self.mode != "off" and self.checked is not False and any(len(g) > 1 for g in groups)

    def logits(self, model: Any, inputs: dict[str, Any], groups: list[list[int]],
               uncached: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Last-position logits of ``inputs``, through the cache where it applies, else ``uncached()``."""
        if not self.wanted(groups):
            return uncached()
        try:
            cached = shared_prefix_logits(model, inputs, groups)
        except (TypeError, ValueError, RuntimeError, AttributeError, IndexError) as err:  # a forward without cache support
            if self.mode == "on":
                raise
            log.info("prefix cache off for %s: %s", type(model).__name__, err)
            self.checked = False
            return uncached()
        if cached is None:
            return uncached()
        if self.mode == "on" or self.checked:
            return cached
        reference = uncached()
        diff = float((torch.log_softmax(cached.float(), -1) - torch.log_softmax(reference.float(), -1)).abs().max())
        self.last_difference = diff
        self.checked = diff <= TOLERANCE.get(reference.dtype, HALF_TOLERANCE)
        if not self.checked:
            log.info("prefix cache off for %s: differs from the uncached forward by %.2g", type(model).__name__, diff)
        return reference
