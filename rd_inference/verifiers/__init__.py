"""Verifiers: picklable callables ``verifier(images, prompt) -> FloatTensor[B]``, higher is better.

``images`` is a float tensor [B,3,H,W] in [0,1] (what the search hands over: decoded x0-predictions) or a
list of PIL images. The yes-token VLM verifier lives in :mod:`rd_inference.yes_token`, CLIP-family scorers
in :mod:`.clip`, LAION's aesthetic predictor in :mod:`.aesthetic`, ensembles of any kinds in :mod:`.ensemble`;
the simple ones here are for tests, examples and sanity checks. :func:`rd_inference.verifier_loading.load_verifier`
names them all as ``KIND:PATH``.

Every verifier exposes ``spec()`` -> a JSON-able dict from which :func:`verifier_from_spec` rebuilds it,
so a run directory can be regenerated from its ``summary.json``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from ..images import ImageBatch, to_tensor


@runtime_checkable
class Verifier(Protocol):
    def __call__(self, images: ImageBatch, prompt: str) -> torch.Tensor: ...


class BrightnessVerifier:
    """Mean pixel brightness in [0,1]; ignores the prompt. A verifier any search should be able to climb.

    Example:
        >>> BrightnessVerifier()(torch.ones(2, 3, 8, 8), "anything")
        tensor([1., 1.])
    """

    def __call__(self, images: ImageBatch, prompt: str) -> torch.Tensor:
        return to_tensor(images).mean(dim=(1, 2, 3))

    def spec(self) -> dict[str, Any]:
        return {"name": "brightness"}


class ColorVerifier:
    """How close the mean colour is to ``rgb`` (three floats in [0,1]): 1 - mean absolute difference."""

    def __init__(self, rgb: tuple[float, float, float] = (1.0, 0.0, 0.0)):
        if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
            raise ValueError(f"rgb must be three numbers in [0,1], got {rgb!r}")
        self.rgb = tuple(float(c) for c in rgb)

    def __call__(self, images: ImageBatch, prompt: str) -> torch.Tensor:
        mean = to_tensor(images).mean(dim=(2, 3))
        return 1.0 - (mean - torch.tensor(self.rgb)).abs().mean(dim=1)

    def spec(self) -> dict[str, Any]:
        return {"name": "color", "rgb": list(self.rgb)}


class ConstantVerifier:
    """The same score for every image: a control for tests (selection becomes order-only)."""

    def __init__(self, value: float = 0.5):
        self.value = float(value)

    def __call__(self, images: ImageBatch, prompt: str) -> torch.Tensor:
        return torch.full((to_tensor(images).shape[0],), self.value)

    def spec(self) -> dict[str, Any]:
        return {"name": "constant", "value": self.value}


SIMPLE_VERIFIERS = {"brightness": BrightnessVerifier, "color": ColorVerifier, "constant": ConstantVerifier}


def verifier_spec(verifier: Verifier) -> dict[str, Any] | None:
    """The verifier's rebuild spec, or None for a plain callable that cannot describe itself."""
    spec = getattr(verifier, "spec", None)
    return spec() if callable(spec) else None


def verifier_from_spec(spec: dict[str, Any], **load_kwargs: Any) -> Verifier:
    """Rebuild a verifier from ``spec()``; ``load_kwargs`` (device, dtype …) go to a VLM verifier's loader."""
    name = spec.get("name")
    if name == "yes_token":
        from ..yes_token import YesTokenVerifier

        return YesTokenVerifier.from_spec(spec, **load_kwargs)
    if name in ("clip", "pickscore"):
        from .clip import ClipScoreVerifier

        return ClipScoreVerifier(spec["model"], kind=name, max_batch=spec.get("max_batch", 32),
                                 device=load_kwargs.get("device"))
    if name == "aesthetic":
        from .aesthetic import AestheticVerifier

        return AestheticVerifier(spec["model"], scale=spec.get("scale", 1.0), max_batch=spec.get("max_batch", 32),
                                 device=load_kwargs.get("device"))
    if name == "openai":
        from .remote import RemoteYesTokenVerifier

        return RemoteYesTokenVerifier(spec["url"], spec["model"], criteria=spec.get("criteria"),
                                      aggregation=spec.get("aggregation", "mean"))
    if name == "ensemble":
        from .ensemble import EnsembleVerifier

        members = [verifier_from_spec(m, **load_kwargs) for m in spec["members"]]
        return EnsembleVerifier(members, spec.get("weights"), spec.get("aggregation", "mean"))
    if name not in SIMPLE_VERIFIERS:
        known = ", ".join(sorted([*SIMPLE_VERIFIERS, "yes_token", "clip", "pickscore", "aesthetic", "openai",
                                "ensemble"]))
        raise ValueError(f"unknown verifier {name!r}; known verifiers: {known}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return SIMPLE_VERIFIERS[name](**kwargs)
