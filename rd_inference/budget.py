"""Budgets in denoiser forwards: parsing ``400`` or ``"4x"``, and sizing a strategy to fit one."""

from __future__ import annotations

import math
import numbers
import re

from .checks import UserError

DEFAULT_MAX_NFE = "256x"  # the ceiling when none is given: 256 single samples' worth of forwards


NO_CEILING = ("none", "off", "0")  # typed in a face; None and 0 mean the same in the API


def ceiling_from_text(text: str | None) -> str | None:
    """A ceiling typed in a face: empty -> the default, ``none``/``off``/``0`` -> no ceiling, else the text."""
    text = (text or "").strip()
    if not text:
        return DEFAULT_MAX_NFE
    return None if text.lower() in NO_CEILING else text


def no_ceiling(max_nfe: int | str | None) -> bool:
    """``None``, ``0`` or ``"none"``/``"off"``/``"0"``: no ceiling, in the API as on the command line."""
    if isinstance(max_nfe, str):
        return max_nfe.strip().lower() in NO_CEILING
    return max_nfe is None or (isinstance(max_nfe, numbers.Real) and not isinstance(max_nfe, bool) and max_nfe == 0)


def parse_budget(budget: int | str, one_sample_nfe: int) -> int:
    """``400`` -> 400 denoiser forwards; ``"4x"`` -> 4 times one sample's forwards."""
    if isinstance(budget, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*x\s*", budget)
        if m:
            budget = int(float(m.group(1)) * one_sample_nfe)
        elif budget.strip().isdigit():
            budget = int(budget)
        else:
            raise UserError(f"budget {budget!r} is not a number of denoiser forwards or a multiple like '4x'")
    elif (isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not math.isfinite(budget)
          or budget != int(budget)):
        raise UserError(f"budget must be a whole number of denoiser forwards or a multiple like '4x', got {budget!r}")
    if int(budget) < 1:
        raise UserError(f"budget must be at least 1 denoiser forward, got {budget!r}")
    return int(budget)


def check_ceiling(nfe: int, max_nfe: int | str | None, one_sample: int) -> None:
    """Refuse a search that would spend more than ``max_nfe`` forwards (``None`` or 0 = no ceiling)."""
    if no_ceiling(max_nfe):
        return
    ceiling = parse_budget(max_nfe, one_sample)
    if nfe > ceiling:
        raise UserError(
            f"this search would spend {nfe} denoiser forwards ({nfe / one_sample:.0f}x one sample), above the "
            f"ceiling of {ceiling} ({max_nfe}): lower the budget, or raise the ceiling to at least {nfe} "
            f"(CLI --max-forwards {nfe}, API max_nfe={nfe}, demo 'Max forwards', node max_forwards)"
        )


def check_ceiling_early(budget: int | str | None, max_nfe: int | str | None) -> None:
    """Before any model loads (one sample's forwards unknown): compare a budget and a ceiling given in
    the same unit, both as multiples ("4x") or both as forwards."""
    def multiple(v) -> bool:
        return isinstance(v, str) and "x" in v

    if budget is None or no_ceiling(max_nfe) or multiple(budget) != multiple(max_nfe):
        return
    if parse_budget(budget, 1) > parse_budget(max_nfe, 1):
        raise UserError(f"budget {budget} is above the ceiling of {max_nfe}: lower the budget, "
                        f"or raise the ceiling to at least {budget} (CLI --max-forwards {budget}, API max_nfe=…)")


def size_search(strat, den, budget: int | str | None, params: dict, max_nfe: int | str | None):
    """The strategy's validated settings for ``den`` (sized to ``budget`` when given), the forwards they
    plan and the budget in forwards; refuses a plan above the ceiling ``max_nfe``."""
    params = {**strat.defaults, **params}
    strat.validate(params)
    per_step = den.forwards_per_step
    one_sample = den.schedule.num_steps * per_step
    nfe_budget = None
    if budget is not None:
        nfe_budget = parse_budget(budget, one_sample)
        check_ceiling(nfe_budget, max_nfe, one_sample)  # before fitting, which grows with the budget
        params = fit_budget(strat, nfe_budget, den.schedule, per_step, params)
    planned = strat.nfe(den.schedule, per_step, params)
    check_ceiling(planned, max_nfe, one_sample)
    return params, planned, nfe_budget


def fit_budget(strat, budget: int, schedule, per_step: int, params: dict) -> dict:
    """The strategy's settings sized to spend at most ``budget`` forwards, or one line naming the least
    budget that fits."""
    if not fits(strat, budget, schedule, per_step, params):
        raise UserError(
            f"budget of {budget} denoiser forwards is too small for strategy {strat.name!r} with these "
            f"settings: its smallest run costs {smallest_budget(strat, schedule, per_step, params)}; raise the "
            "budget or use fewer steps"
        )
    return strat.fit(budget, schedule, per_step, params)


def fits(strat, budget: int, schedule, per_step: int, params: dict) -> bool:
    try:
        strat.validate(strat.fit(budget, schedule, per_step, params))
    except ValueError:
        return False
    return True


def smallest_budget(strat, schedule, per_step: int, params: dict) -> int:
    """The least budget the strategy fits with the user's other settings (fitting is monotone in budget)."""
    low, high = 1, schedule.num_steps * per_step
    while not fits(strat, high, schedule, per_step, params):
        high *= 2
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(strat, mid, schedule, per_step, params) else (mid + 1, high)
    return low
