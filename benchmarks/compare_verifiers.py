"""Paired comparison of verifiers: the same strategy, budget and (prompt, seed) pairs, judged by the oracle.

Each run is an ``rd-tts bench`` output folder (its ``records/``) made with a different ``--verifier``; cells
present in every run are compared with the first run's, pair by pair::

    python -m benchmarks.compare_verifiers vlm=benchmarks/results/v2_default \\
        clip=benchmarks/results/v2_verifiers/clip@0.3 ensemble=benchmarks/results/v2_verifiers/vlm+clip@0.5

``name=FOLDER@T`` gives the run's reward-hacking threshold (a pick scored at least T that fails the oracle;
0.5 by default, right for a yes-token probability, not for a cosine). Prints a markdown table: oracle pass
rate with its Wilson interval, hacking rate, and the paired difference from the first run (bootstrap over
prompts, discordant pairs, exact McNemar p).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rd_inference.bench import wilson
from rd_inference.paired import paired


def read_records(folder: Path) -> dict[str, dict[tuple[str, int], dict]]:
    """``{"bon@8x": {(prompt, seed): row}}`` from a bench output folder's records."""
    records = folder / "records"
    if not records.is_dir():
        raise SystemExit(f"{folder} has no records/ folder: pass an rd-tts bench output folder")
    out = {}
    for path in sorted(records.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[path.stem] = {(r["prompt"], r["seed"]): r for r in rows}
    return out


def compare(runs: dict[str, tuple[dict, float]]) -> str:
    names = list(runs)
    base = runs[names[0]][0]
    cells = [c for c in base if all(c in runs[n][0] for n in names)]
    lines = ["| cell | verifier | oracle pass [95% CI] | hacking rate | vs " + names[0] + ", paired (pts [95% CI] (wins:losses, p, pairs)) |",
             "|---|---|---|---|---|"]
    for cell in sorted(cells, key=lambda c: (c.split("@")[0] != "one", c.split("@")[0], int(c.split("@")[1][:-1]))):
        keys = sorted(set.intersection(*(set(runs[n][0][cell]) for n in names)))
        ref = [base[cell][k]["ok"] for k in keys]
        for n in names:
            rows, threshold = [runs[n][0][cell][k] for k in keys], runs[n][1]
            ok = [r["ok"] for r in rows]
            low, high = wilson(sum(ok), len(ok))
            picked = [r for r in rows if r["score"] >= threshold]
            hack = sum(not r["ok"] for r in picked) / len(picked) if picked else 0.0
            vs = ""
            if n != names[0]:
                d = paired(ok, ref, groups=[k[0] for k in keys])
                vs = d.text()
            lines.append(f"| {cell} | {n} | {sum(ok) / len(ok):.3f} [{low:.3f}, {high:.3f}] | {hack:.3f} "
                         f"(≥ {threshold:g}, {len(picked)} picks) | {vs} |")
    return "\n".join(lines) + f"\n\n{len(keys)} (prompt, seed) pairs per cell.\n" if cells else "no common cells\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="NAME=FOLDER or NAME=FOLDER@THRESHOLD; the first is the reference")
    args = ap.parse_args(argv)
    runs = {}
    for spec in args.runs:
        name, sep, rest = spec.partition("=")
        if not sep:
            raise SystemExit(f"write each run as NAME=FOLDER[@THRESHOLD], got {spec!r}")
        folder, _, t = rest.rpartition("@") if "@" in Path(rest).name else (rest, "", "0.5")
        runs[name] = (read_records(Path(folder)), float(t))
    print(compare(runs), end="")


if __name__ == "__main__":
    main()
