"""Search strategies, each a short function ``strategy(ctx, **params) -> chosen node id``, plus its cost
formula (denoiser forwards) and a budget fitter, so strategies can be compared at equal compute."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from ..checks import check_setting
from . import beam, best_of_n, evolutionary, particles, prune, search_over_paths, zero_order
from .context import NodeReached, SearchContext


@dataclass(frozen=True)
class Strategy:
    name: str
    run: Callable[..., int]
    module: ModuleType

    @property
    def defaults(self) -> dict:
        return dict(self.module.DEFAULTS)

    def _extra(self, fn, schedule) -> dict:
        return {"schedule": schedule} if "schedule" in inspect.signature(fn).parameters else {}

    def nfe(self, schedule, forwards_per_step: int, params: dict) -> int:
        fn = self.module.nfe
        return fn(schedule.num_steps, forwards_per_step, **self._extra(fn, schedule), **params)

    def fit(self, budget: int, schedule, forwards_per_step: int, params: dict) -> dict:
        fn = self.module.fit
        return fn(budget, schedule.num_steps, forwards_per_step, **self._extra(fn, schedule), **params)

    def validate(self, params: dict) -> None:
        unknown = set(params) - set(self.module.DEFAULTS)
        if unknown:
            raise ValueError(
                f"unknown setting(s) {sorted(unknown)} for strategy {self.name!r}; "
                f"it takes {sorted(self.module.DEFAULTS)}"
            )
        for name, value in params.items():
            check_setting(self.name, name, value, self.module.DEFAULTS[name])
        self.module.validate(**params)


STRATEGIES: dict[str, Strategy] = {
    "bon": Strategy("bon", best_of_n.best_of_n, best_of_n),
    "sop": Strategy("sop", search_over_paths.search_over_paths, search_over_paths),
    "zo": Strategy("zo", zero_order.zero_order, zero_order),
    "beam": Strategy("beam", beam.beam, beam),
    "fk": Strategy("fk", particles.feynman_kac, particles),
    "prune": Strategy("prune", prune.prune, prune),
    "evo": Strategy("evo", evolutionary.evolutionary, evolutionary),
}
ALIASES = {"best_of_n": "bon", "search_over_paths": "sop", "zero_order": "zo", "dlbs": "beam",
           "feynman_kac": "fk", "evolutionary": "evo", "evosearch": "evo"}


def get_strategy(name: str) -> Strategy:
    key = ALIASES.get(name, name)
    if key not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known strategies: {', '.join(STRATEGIES)}")
    return STRATEGIES[key]


__all__ = ["STRATEGIES", "NodeReached", "SearchContext", "Strategy", "get_strategy"]
