"""Tune the search defaults on the toy world's ``tune`` split (never on ``eval``), paired against Best-of-N.

Every configuration runs on the same (prompt, seed) pairs at each budget; each pair's oracle verdict is
recorded (one JSON line per pair, so a killed sweep resumes where it stopped), and the report compares every
configuration with Best-of-N at the same budget, paired (difference, 95% interval, discordant pairs). The
chosen settings go into the shipped pipeline's ``rd_inference_defaults.json`` by hand, and the table into
the model card.

    nice python -m rd_inference.toyworld.tune --configs bon,sop-paper,sop-wide --budgets 8,16 --out runs/tune
    python -m rd_inference.toyworld.tune --report --out runs/tune
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rd_inference.toyworld.worlds import WORLDS

# name -> (strategy, settings). "one" is a single sample; every other runs at each budget. "*-shipped" reads
# the settings the embedded model ships (rd_inference_defaults.json), as every face uses them.
CONFIGS: dict[str, tuple[str, dict | None]] = {
    "sop-shipped": ("sop", None),
    "evo-shipped": ("evo", None),
    "one": ("bon", {"n": 1}),
    "bon": ("bon", {}),
    "sop-paper": ("sop", {"m": 2, "sigma_start": 0.11, "delta_f": 0.78, "delta_b": 0.81}),
    "sop-v1": ("sop", {"m": 4, "sigma_start": 0.3, "delta_f": 0.3, "delta_b": 0.6}),
    "sop-v1-rollover": ("sop", {"m": 4, "sigma_start": 0.3, "delta_f": 0.3, "delta_b": 0.6, "rollover": True}),
    "sop-v1-wide": ("sop", {"m": 4, "widen": 4.0, "sigma_start": 0.3, "delta_f": 0.3, "delta_b": 0.6}),
    "sop-v1-keep": ("sop", {"m": 4, "widen": 4.0, "sigma_start": 0.3, "delta_f": 0.3, "delta_b": 0.6, "keep_parent": True}),
    "sop-far-keep": ("sop", {"m": 2, "widen": 6.0, "sigma_start": 0.3, "delta_f": 0.5, "delta_b": 0.8, "keep_parent": True}),
    "sop-late-keep": ("sop", {"m": 3, "widen": 4.0, "sigma_start": 0.2, "delta_f": 0.3, "delta_b": 0.5, "keep_parent": True}),
    "sop-wide": ("sop", {"m": 2, "widen": 4.0, "sigma_start": 0.6, "delta_f": 0.2, "delta_b": 0.4}),
    "sop-wide-late": ("sop", {"m": 2, "widen": 4.0, "sigma_start": 0.3, "delta_f": 0.3, "delta_b": 0.6}),
    "sop-wide-rollover": ("sop", {"m": 2, "widen": 4.0, "sigma_start": 0.6, "delta_f": 0.2, "delta_b": 0.4,
                                  "rollover": True}),
    "sop-wide-far": ("sop", {"m": 2, "widen": 4.0, "sigma_start": 0.6, "delta_f": 0.4, "delta_b": 0.6}),
    "evo": ("evo", {}),
    "evo-early": ("evo", {"levels": (0.0, 0.2, 0.4), "elites": 2, "beta": 0.5}),
    "evo-noise": ("evo", {"levels": (0.0, 0.3), "elites": 3, "beta": 0.6}),
    "zo": ("zo", {}),
}


def pairs_for(split: str, per_skill: int, seeds: list[int], world: str = "v1") -> list[tuple[str, int]]:
    from rd_inference.toyworld.prompts import spread
    from rd_inference.toyworld.worlds import get_world

    w = get_world(world)
    return [(p, s) for skill in w.tasks for p in spread(w.prompts(split, skill), per_skill) for s in seeds]


def records_path(out: Path, config: str, budget: int) -> Path:
    return out / "records" / f"{config}@{budget}x.jsonl"


def run_config(pipe, verifier, config: str, budget: int, pairs, out: Path, *, steps: int, guidance: float,
               world: str = "v1", model: Path | None = None) -> None:
    """Append one record per (prompt, seed) not yet recorded for this configuration and budget."""
    from rd_inference.api import search
    from rd_inference.toyworld.worlds import get_world

    check = get_world(world).check
    strategy, settings = CONFIGS[config]
    if settings is None:
        from rd_inference.pipelines import model_defaults

        settings = model_defaults(model or get_world(world).pipeline_path).get("strategies", {}).get(strategy, {})
    path = records_path(out, config, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["prompt"], r["seed"]) for r in map(json.loads, path.read_text().splitlines())} if path.exists() else set()
    t0, ran = time.time(), 0
    with path.open("a") as f:
        for prompt, seed in pairs:
            if (prompt, seed) in done:
                continue
            res = search(pipe, prompt, verifier=verifier, strategy=strategy, seed=seed, steps=steps,
                         guidance_scale=guidance, budget=None if config == "one" else f"{budget}x", **settings)
            f.write(json.dumps({"prompt": prompt, "seed": seed, "ok": check(res.image, prompt).ok,
                                "score": res.score, "nfe": res.counts["nfe"],
                                "budget_nfe": res.counts["budget_nfe"], "params": res.config["params"]},
                               default=list) + "\n")
            f.flush()
            ran += 1
    print(f"{config:>18} {budget:>3}x  {ran} new pairs in {time.time() - t0:.0f} s", flush=True)


def report(out: Path, pairs, world: str = "v1") -> str:
    """A markdown table: pass rate, forwards spent and the paired difference against Best-of-N."""
    from rd_inference.paired import paired
    from rd_inference.toyworld.worlds import get_world

    parse = get_world(world).parse

    wanted = set(pairs)
    table: dict[tuple[str, int], dict] = {}
    for path in sorted((out / "records").glob("*.jsonl")):
        config, budget = path.stem.rsplit("@", 1)
        rows = {(r["prompt"], r["seed"]): r for r in map(json.loads, path.read_text().splitlines())}
        if wanted <= set(rows):
            table[(config, int(budget[:-1]))] = {k: rows[k] for k in pairs}
    lines = ["| config | budget | pairs | oracle pass | position pass | forwards spent / budget | vs Best-of-N, paired |",
             "|---|---|---|---|---|---|---|"]
    for (config, budget), rows in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        oks = [rows[k]["ok"] for k in pairs]
        pos = [rows[k]["ok"] for k in pairs if parse(k[0]).skill == "position"]
        spent = sum(r["nfe"] for r in rows.values()) / len(rows)
        cap = rows[pairs[0]]["budget_nfe"]
        ref = table.get(("bon", budget))
        vs = "" if ref is None or config == "bon" else paired(oks, [ref[k]["ok"] for k in pairs],
                                                                groups=[k[0] for k in pairs]).text()
        lines.append(f"| {config} | {budget}x | {len(oks)} | {100 * sum(oks) / len(oks):.1f}% | "
                     f"{100 * sum(pos) / max(len(pos), 1):.1f}% | {spent:.0f} / {cap or '-'} | {vs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="bon,sop-paper,sop-v1,sop-wide,evo", help=f"of: {', '.join(CONFIGS)}")
    ap.add_argument("--per-skill", type=int, default=41, help="tune prompts per skill (all of a smaller skill)")
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--budgets", default="8,16", help="multiples of one sample's denoiser forwards")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--split", default="tune", choices=["tune", "eval"],
                    help="tune: choose settings; eval: only to re-check chosen ones on fresh seeds")
    ap.add_argument("--out", type=Path, default=Path("runs/tune"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="only print the table of what is recorded")
    ap.add_argument("--world", choices=WORLDS, default="v1", help="which toy world's splits and oracle")
    ap.add_argument("--model", type=Path, default=None, help="pipeline folder (default: the world's shipped one)")
    ap.add_argument("--verifier", type=Path, default=None, help="verifier folder (default: the world's shipped one)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from rd_inference.toyworld.worlds import get_world

    model = args.model or get_world(args.world).pipeline_path
    verifier_dir = args.verifier or get_world(args.world).verifier_path
    pairs = pairs_for(args.split, args.per_skill, [int(s) for s in args.seeds.split(",")], args.world)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; known: {', '.join(CONFIGS)}")
    if not args.report:
        from rd_inference.pipelines import load_pipeline
        from rd_inference.verifier_loading import load_verifier

        pipe = load_pipeline(model, device="cpu")
        verifier = load_verifier(str(verifier_dir), device="cpu")
        for budget in [int(b) for b in args.budgets.split(",")]:
            for config in configs:
                if config != "one" or budget == 1:
                    run_config(pipe, verifier, config, budget, pairs, args.out, steps=args.steps,
                               guidance=args.guidance, world=args.world, model=model)
    text = report(args.out, pairs, args.world)
    print(text)
    (args.out / "table.md").write_text(text)
    plot_records(args.out, pairs, args.out / "accuracy_vs_budget.png")


def plot_records(out: Path, pairs, path: Path) -> None:
    """Pass rate per configuration and budget with 95% Wilson intervals, one line per configuration."""
    from rd_inference.bench import Cell, plot, wilson

    cells = []
    for rec in sorted((out / "records").glob("*.jsonl")):
        config, budget = rec.stem.rsplit("@", 1)
        rows = {(r["prompt"], r["seed"]): r for r in map(json.loads, rec.read_text().splitlines())}
        if not set(pairs) <= set(rows):
            continue
        oks = [rows[k]["ok"] for k in pairs]
        low, high = wilson(sum(oks), len(oks))
        nfe = sum(rows[k]["nfe"] for k in pairs) / len(pairs)
        cells.append(Cell(config, int(budget[:-1]), len(oks), sum(oks) / len(oks), low, high, 0.0, nfe, 0.0, 0.0, 0))
    if cells:
        plot(cells, path)


if __name__ == "__main__":
    main()
