"""Ensembles of verifiers of any kinds: a weighted mean of their scores, or of their ranks.

Mixing a scalar scorer with the yes-token judge is the usual guard against reward hacking (an image one
verifier is fooled by rarely fools a different kind). ``mean`` keeps each score's own scale, so it is
comparable across calls — what strategies that compare rounds (Search over Paths, zero-order) need; weight
the members to put them on a common footing. ``rank`` replaces each member's scores by their ranks within
the call (0 worst … 1 best) before averaging: scale-free, but a score then only means something within one
call, which suits a one-batch pick (Best-of-N, ``rd-tts score``) and not a search across rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from ..checks import UserError, check_scores
from ..images import ImageBatch

AGGREGATIONS = ("mean", "rank")


def ranks(scores: torch.Tensor) -> torch.Tensor:
    """Ranks in [0, 1] (ties share their mean rank); a single image ranks 1."""
    n = scores.shape[0]
    if n == 1:
        return torch.ones(1)
    order = scores.argsort(stable=True)
    r = torch.empty(n)
    r[order] = torch.arange(n, dtype=torch.float32)
    for value in scores.unique():  # ties: the mean rank of the tied group
        tied = scores == value
        r[tied] = r[tied].mean()
    return r / (n - 1)


def member_label(member: Any) -> str:
    """A member as ``--verifier`` names it (``clip:PATH``, ``vlm:PATH``, ``color:1,0,0``, ``brightness``), from
    its ``spec()``; else a function's name or the member's repr."""
    from . import verifier_spec

    try:
        spec = verifier_spec(member)
    except (ValueError, TypeError, AttributeError, KeyError):  # a VLM built from objects has no spec
        spec = None
    if isinstance(spec, dict) and isinstance(spec.get("name"), str) and spec["name"] != "ensemble":
        kind = "vlm" if spec["name"] == "yes_token" else spec["name"]
        if kind == "openai":
            target = f"{spec.get('url')}#{spec.get('model')}"
        elif "model" in spec:
            target = str(spec["model"])
        elif "rgb" in spec:
            target = ",".join(f"{c:g}" for c in spec["rgb"])
        else:
            target = ""
        return f"{kind}:{target}" if target else kind
    return getattr(member, "__name__", None) or repr(member)


class EnsembleVerifier:
    """``verifier(images, prompt)``: the weighted ``aggregation`` of ``members``' scores."""

    def __init__(self, members: Sequence[Any], weights: Sequence[float] | None = None, aggregation: str = "mean"):
        if len(members) < 1:
            raise UserError("an ensemble needs at least one verifier")
        weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members) or any(not w > 0 for w in weights):
            raise UserError(f"ensemble weights must be positive numbers, one per verifier; got {weights}")
        if aggregation not in AGGREGATIONS:
            raise UserError(f"ensemble aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
        self.members, self.aggregation = list(members), aggregation
        total = sum(weights)
        self.weights = [w / total for w in weights]

    def __call__(self, images: ImageBatch, prompt: str) -> torch.Tensor:
        n = 1 if isinstance(images, Image.Image) else len(images)
        parts = []
        for i, member in enumerate(self.members, start=1):
            part = torch.as_tensor(member(images, prompt), dtype=torch.float32).reshape(-1).cpu()
            # A member's NaN or short answer is named here; past the sum it would only name the ensemble.
            check_scores(part, n, member, name=f"{member_label(member)} (member {i} of {len(self.members)} of "
                                               "the ensemble)")
            parts.append(part)
        if self.aggregation == "rank":
            parts = [ranks(p) for p in parts]
        return sum(w * p for w, p in zip(self.weights, parts))

    def spec(self) -> dict[str, Any]:
        from . import verifier_spec

        specs = [verifier_spec(m) for m in self.members]
        if any(s is None for s in specs):
            raise ValueError("every member of an ensemble needs spec() for the ensemble to be rebuilt")
        return {"name": "ensemble", "members": specs, "weights": self.weights, "aggregation": self.aggregation}

    def __repr__(self) -> str:
        return f"EnsembleVerifier({self.members!r}, weights={self.weights}, aggregation={self.aggregation!r})"
