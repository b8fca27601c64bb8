"""Paired comparison of two methods run on the same (prompt, seed) pairs: the difference in pass rate with a
95% interval, the discordant-pair counts and an exact McNemar test.

Pairing is what makes a small benchmark informative: two methods that agree on most pairs differ only on
the discordant ones, and independent intervals on each method's rate would waste that.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Paired:
    n: int  # pairs
    diff: float  # pass rate of a minus pass rate of b
    ci_low: float
    ci_high: float
    a_only: int  # pairs a passes and b fails
    b_only: int  # pairs b passes and a fails
    p_value: float  # exact two-sided McNemar (binomial test on the discordant pairs)

    def text(self) -> str:
        return (f"{100 * self.diff:+.1f} pts [{100 * self.ci_low:+.1f}, {100 * self.ci_high:+.1f}] "
                f"({self.a_only}:{self.b_only}, p={self.p_value:.3g}, {self.n} pairs)")


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs as a fair coin's flips."""
    k, n = min(a_only, b_only), a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(a: Sequence[bool], b: Sequence[bool], *, groups: Sequence[str] | None = None, resamples: int = 4000,
           seed: int = 0) -> Paired:
    """Compare pass/fail lists ``a`` and ``b`` over the same pairs (same order).

    The interval is a percentile bootstrap that resamples ``groups`` (e.g. the prompt of each pair, so the
    seeds of one prompt move together) or single pairs when no groups are given.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired() needs two equally long, non-empty lists, got {len(a)} and {len(b)}")
    d = [int(x) - int(y) for x, y in zip(a, b)]
    keys = list(groups) if groups is not None else list(range(len(d)))
    clusters: dict[object, list[int]] = {}
    for key, v in zip(keys, d):
        clusters.setdefault(key, []).append(v)
    sums = [(sum(v), len(v)) for v in clusters.values()]
    rng = random.Random(seed)
    stats = []
    for _ in range(resamples):
        draw = [sums[rng.randrange(len(sums))] for _ in sums]
        stats.append(sum(s for s, _ in draw) / sum(c for _, c in draw))
    stats.sort()
    lo, hi = stats[int(0.025 * resamples)], stats[min(int(0.975 * resamples), resamples - 1)]
    a_only, b_only = d.count(1), d.count(-1)
    return Paired(len(d), sum(d) / len(d), lo, hi, a_only, b_only, mcnemar_exact(a_only, b_only))
