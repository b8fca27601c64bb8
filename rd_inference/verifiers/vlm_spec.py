"""Rebuilding the yes-token verifier from JSON-able settings, and pickling it without its weights.

:class:`SpecMixin` gives :class:`rd_inference.yes_token.YesTokenVerifier` ``spec()``/``from_spec()`` and
``__getstate__``/``__setstate__``: the pickle keeps the model path and settings, and the copy reloads the
weights on its first use (``_ensure_loaded``).
"""

from __future__ import annotations

from typing import Any

from ..criteria import resolve_criteria
from .prefix_cache import PrefixCache


class SpecMixin:
    """Spec and pickling for a verifier built by ``from_pretrained(model, **settings)``.

    The host sets ``source``, ``criteria``, ``pairwise_criteria``, ``probability``, ``aggregation``,
    ``max_batch``, ``prefix_cache`` and ``_load_settings``, and has ``from_pretrained`` and ``reset_timings``.
    """

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
    def from_spec(cls, spec: dict[str, Any], **load_kwargs: Any) -> Any:  # an instance of cls
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
