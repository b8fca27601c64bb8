"""The toy-world quality benchmark: oracle accuracy of each strategy at matched denoiser-NFE budgets.

Every cell runs one search per (prompt, seed) pair of an evaluation set that shares no prompt with the
training or tuning sets, and reports the oracle's verdict on the chosen image (a 95% Wilson interval over
the pairs), the mean verifier score, wall time, and the reward-hacking rate: how often the verifier's
pick scores high (>= ``hack_threshold``) yet fails the oracle. With a records folder every finished pair
is appended to ``<records>/<method>@<budget>x.jsonl`` and skipped when the run is started again, so a
long run can be stopped and resumed.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .api import search

# method -> (strategy, fixed settings); "one" is a single sample, run at budget 1x only.
METHODS: dict[str, tuple[str, dict]] = {
    "one": ("bon", {"n": 1}),
    "bon": ("bon", {}),
    "sop": ("sop", {}),
    "zo": ("zo", {}),
    "beam": ("beam", {}),
    "fk": ("fk", {}),
    "prune": ("prune", {}),
    "evo": ("evo", {}),
}


@dataclass
class Cell:
    method: str
    budget: int  # multiple of one sample's denoiser forwards
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_score: float
    mean_nfe: float
    seconds_per_item: float
    hack_rate: float  # share of picks with score >= threshold that fail the oracle
    high_score_picks: int
    budget_nfe: float = 0.0  # the budget in denoiser forwards (a single sample's cost for "one")
    passes: list[bool] = field(default_factory=list)  # the oracle's verdict per (prompt, seed), in order
    vs_bon: str = ""  # paired difference against Best-of-N at the same budget, same pairs


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamped to contain p: in floating point centre + half can land a hair below p = 1 (n = 6, 21, ...),
    # which made the plot's error bars negative.
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def resolve_methods(methods: str | Sequence[str]) -> list[str]:
    """Method names from a list or a comma-separated string; "all" is every method of ``METHODS``.
    Unknown names are refused here, before any cell runs, not after the first few."""
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    names = list(METHODS) if list(methods) == ["all"] else list(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"choose from {', '.join(METHODS)}, or 'all'")
    return names


def check_disjoint(eval_prompts: Sequence[str], seen: Sequence[str]) -> None:
    """Refuse an evaluation set that shares a prompt with training or tuning data."""
    from .toyworld.prompts import normalise

    overlap = sorted({normalise(p) for p in eval_prompts} & {normalise(p) for p in seen})
    if overlap:
        shown = ", ".join(repr(p) for p in overlap[:5])
        raise ValueError(
            f"{len(overlap)} evaluation prompt(s) also appear in the training or tuning sets ({shown}); "
            "evaluate on prompts the models and the tuning never saw (rd_inference.toyworld.prompts.prompts('eval'))"
        )


def _search_pair(pipe, verifier, method: str, budget: int, prompt: str, seed: int, *, steps: int,
                 guidance: float, params: dict, check: Callable) -> dict:
    strategy = METHODS[method][0]
    result = search(pipe, prompt, verifier=verifier, strategy=strategy,
                    budget=None if method == "one" else f"{budget}x", seed=seed, steps=steps,
                    guidance_scale=guidance, **params)
    return {"prompt": prompt, "seed": seed, "ok": bool(check(result.image, prompt).ok), "score": result.score,
            "nfe": result.counts["nfe"], "cap": result.counts["budget_nfe"] or result.counts["planned_nfe"],
            "seconds": result.counts["seconds"]["total"]}


def run_cell(pipe, verifier, method: str, budget: int, pairs: Sequence[tuple[str, int]], *, steps: int,
             guidance: float, hack_threshold: float = 0.5, settings: dict | None = None,
             check: Callable | None = None, record: Path | None = None) -> Cell | None:
    """One (method, budget) cell over (prompt, seed) pairs; None when the strategy cannot fit the budget.
    ``check`` is the oracle (default: world v1's); ``record``, a JSONL file of finished pairs to resume from."""
    if check is None:
        from .toyworld.oracle import check
    params = {**METHODS[method][1], **(settings or {}).get(method, {})}
    done: dict[tuple[str, int], dict] = {}
    if record is not None and record.is_file():
        for line in record.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["prompt"], row["seed"]] = row
    rows = []
    for prompt, seed in pairs:
        row = done.get((prompt, seed))
        if row is None:
            try:
                row = _search_pair(pipe, verifier, method, budget, prompt, seed, steps=steps, guidance=guidance,
                                   params=params, check=check)
            except ValueError as exc:
                if "too small" in str(exc):
                    return None
                raise
            if record is not None:
                with record.open("a") as f:
                    f.write(json.dumps(row) + "\n")
        rows.append(row)
    oks = [r["ok"] for r in rows]
    high = [r for r in rows if r["score"] >= hack_threshold]
    hacked = sum(not r["ok"] for r in high)
    low, up = wilson(sum(oks), len(oks))
    mean = lambda key: sum(r[key] for r in rows) / len(rows)
    return Cell(method, budget, len(oks), sum(oks) / len(oks), low, up, mean("score"), mean("nfe"),
                mean("seconds"), hacked / len(high) if high else 0.0, len(high), mean("cap"), oks)


def run_bench(pipe, verifier, pairs: Sequence[tuple[str, int]], *, methods: str | Sequence[str],
              budgets: Sequence[int], steps: int, guidance: float, settings: dict | None = None,
              check: Callable | None = None, records: Path | None = None, hack_threshold: float = 0.5,
              log: Callable[[str], None] = print) -> list[Cell]:
    """Every method at every budget (a single sample at 1x only) on the same (prompt, seed) pairs."""
    methods = resolve_methods(methods)
    if records is not None:
        records.mkdir(parents=True, exist_ok=True)
    cells = []
    for method in methods:
        for budget in [1] if method == "one" else [b for b in budgets if b > 1]:
            t0 = time.perf_counter()
            record = records / f"{method}@{budget}x.jsonl" if records is not None else None
            cell = run_cell(pipe, verifier, method, budget, pairs, steps=steps, guidance=guidance,
                            settings=settings, check=check, record=record, hack_threshold=hack_threshold)
            if cell is None:
                log(f"{method:>6} {budget:>3}x  does not fit this budget")
                continue
            cells.append(cell)
            log(f"{method:>6} {budget:>3}x  accuracy {cell.accuracy:.3f} [{cell.ci_low:.3f}, {cell.ci_high:.3f}]  "
                f"score {cell.mean_score:.3f}  hack {cell.hack_rate:.3f}  forwards {cell.mean_nfe:.0f}/"
                f"{cell.budget_nfe:.0f}  ({time.perf_counter() - t0:.0f} s)")
    add_paired(cells, [p for p, _ in pairs])
    return cells


def add_paired(cells: Sequence[Cell], groups: Sequence[str]) -> None:
    """Fill each cell's ``vs_bon``: the paired difference against Best-of-N at its budget (bootstrap over
    prompts, so the seeds of one prompt move together)."""
    from .paired import paired

    bon = {c.budget: c for c in cells if c.method == "bon"}
    for c in cells:
        ref = bon.get(c.budget)
        if c.method != "bon" and ref is not None and c.passes and len(c.passes) == len(ref.passes):
            c.vs_bon = paired(c.passes, ref.passes, groups=groups).text()


def markdown_table(cells: Sequence[Cell]) -> str:
    lines = [
        ("| method | budget (x one sample) | oracle accuracy [95% CI] | mean verifier score | reward-hacking rate "
        "| s / prompt | denoiser forwards spent / budget | vs Best-of-N, paired (pts [95% CI] (wins:losses)) |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        lines.append(
            f"| {c.method} | {c.budget}x | {c.accuracy:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}] | {c.mean_score:.3f} "
            f"| {c.hack_rate:.3f} ({c.high_score_picks} high-score picks) | {c.seconds_per_item:.2f} "
            f"| {c.mean_nfe:.0f} / {c.budget_nfe:.0f} | {c.vs_bon} |"
        )
    return "\n".join(lines) + "\n"


def per_task_table(cells: Sequence[Cell], tasks: Sequence[str]) -> str:
    """Oracle pass rate per task (``tasks[i]`` is pair i's task) for every cell, and beside each non-BoN
    cell its paired difference from Best-of-N at the same budget on that task's pairs (wins:losses)."""
    names = list(dict.fromkeys(tasks))
    idx = {t: [i for i, x in enumerate(tasks) if x == t] for t in names}
    bon = {c.budget: c for c in cells if c.method == "bon"}
    head = "| method | budget | " + " | ".join(f"{t} ({len(idx[t])})" for t in names) + " |"
    lines = [head, "|---|---|" + "---|" * len(names)]
    for c in cells:
        if len(c.passes) != len(tasks):
            continue
        row = []
        for t in names:
            mine = [c.passes[i] for i in idx[t]]
            text = f"{100 * sum(mine) / len(mine):.1f}"
            ref = bon.get(c.budget)
            if c.method != "bon" and ref is not None and len(ref.passes) == len(tasks):
                theirs = [ref.passes[i] for i in idx[t]]
                wins = sum(a and not b for a, b in zip(mine, theirs))
                losses = sum(b and not a for a, b in zip(mine, theirs))
                text += f" ({100 * (sum(mine) - sum(theirs)) / len(mine):+.1f}; {wins}:{losses})"
            row.append(text)
        lines.append(f"| {c.method} | {c.budget}x | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot(cells: Sequence[Cell], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    one = [c for c in cells if c.method == "one"]
    for method in dict.fromkeys(c.method for c in cells if c.method != "one"):
        mine = sorted((c for c in cells if c.method == method), key=lambda c: c.budget)
        line = one + mine
        ax.errorbar([c.budget for c in line], [c.accuracy for c in line],
                    yerr=[[c.accuracy - c.ci_low for c in line], [c.ci_high - c.accuracy for c in line]],
                    marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("denoiser forwards (multiples of one sample)")
    ax.set_ylabel("oracle accuracy")
    ax.set_title("Toy world: accuracy vs compute")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(cells: Sequence[Cell], out: Path, meta: dict) -> None:
    """results.json, table.md and accuracy_vs_nfe.png, all three or none: they are written to a
    scratch folder beside ``out`` and moved in only once every one is written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        scratch = Path(tmp)
        (scratch / "results.json").write_text(json.dumps({"meta": meta, "cells": [asdict(c) for c in cells]},
                                                         indent=2))
        table = markdown_table(cells)
        if meta.get("tasks"):
            table += ("\nOracle pass rate (%) per task (pairs); for each strategy, in brackets, its difference "
                      "from Best-of-N at the same budget on the same pairs (points; wins:losses).\n\n"
                      + per_task_table(cells, meta["tasks"]))
        (scratch / "table.md").write_text(table)
        plot(cells, scratch / "accuracy_vs_nfe.png")
        out.mkdir(exist_ok=True)
        for name in ("results.json", "table.md", "accuracy_vs_nfe.png"):
            os.replace(scratch / name, out / name)
