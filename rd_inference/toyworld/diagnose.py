"""Where should Search over Paths branch? Two curves on the toy world's tune prompts (DESIGN.md, "Where
search can beat Best-of-N"):

1. per noise level, how well the verifier's score on the x0-prediction predicts the final oracle verdict
   (rank AUC), and how often the x0-prediction's own oracle verdict already equals the final one;
2. per level and re-noising distance delta_f, how often fresh branches (exact re-noising, then denoising to
   the end) flip the final verdict: flip, rescue (failed -> pass) and break (passed -> fail) rates.

    python -m rd_inference.toyworld.diagnose --out runs/diagnose
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rd_inference.denoisers import make_denoiser
from rd_inference.images import to_pil
from rd_inference.pipelines import load_pipeline, model_defaults
from rd_inference.renoise import renoise
from rd_inference.toyworld.oracle import check
from rd_inference.toyworld.prompts import SKILLS, parse, prompts
from rd_inference.toyworld.worlds import get_world
from rd_inference.verifier_loading import load_verifier

DELTAS = (0.1, 0.3, 0.5, 0.78)
MAX_BATCH = 128  # per path the toy UNet is cheaper in big batches (2 threads: 4.6 ms at 8 -> 3.3 ms at 128)


def rank_auc(scores, labels) -> float:
    """P(score of a random positive > score of a random negative), ties counting half; NaN if a class is empty."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return math.nan
    # All positive-negative pairs compared directly: exact with ties, and a few hundred pairs cost nothing.
    diff = s[y][:, None] - s[~y][None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def pick_prompts(per_skill: int) -> list[str]:
    """Up to ``per_skill`` tune prompts per skill, evenly spread over the skill's list (never eval)."""
    out = []
    for skill in SKILLS:
        ps = prompts("tune", skill)
        n = min(per_skill, len(ps))
        out += [ps[k * len(ps) // n] for k in range(n)]
    return out


def branch_seed(seed: int, i: int, delta: float, k: int) -> int:
    # A hash, not arithmetic on the numbers, so no two (seed, level, delta, branch) cells share noise.
    return int(hashlib.sha256(f"{seed}/{i}/{delta:.4f}/{k}".encode()).hexdigest()[:15], 16)


def oracle_ok(images: torch.Tensor, prompt: str) -> np.ndarray:
    return np.array([check(im, prompt).ok for im in to_pil(images)], dtype=bool)


@torch.inference_mode()
def measure_prompt(pipe, verifier, prompt: str, seeds, deltas=DELTAS, branches: int = 4,
                   steps: int = 10, guidance: float = 4.0) -> dict:
    """One deterministic trajectory per seed, scored at every grid point, then ``branches`` re-noised
    continuations per (seed, grid point, delta). ``branch_ok`` is NaN where no noisier grid point exists."""
    den = make_denoiser(pipe, prompt, steps=steps, guidance_scale=guidance, max_batch=MAX_BATCH)
    n, level = den.schedule.num_steps, den.schedule.level
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    x = den.initial_noise(gens)
    latents, scores, x0_ok = [x], [], []
    for i in range(n):
        if i < n - 1:
            x, x0 = den.denoise(x, i, i + 1, gens)
        else:  # the last step returns the image itself, so ask the model for its prediction explicitly
            x0 = den.predict_x0(x, i)
            x, _ = den.denoise(x, i, n, gens)
        images = den.decode(x0)
        scores.append(verifier(images, prompt).float().numpy())
        x0_ok.append(oracle_ok(images, prompt))
        latents.append(x)
    final_images = den.decode(x)
    final_ok = oracle_ok(final_images, prompt)
    final_score = verifier(final_images, prompt).float().numpy()

    # Group every (grid point, delta) job by its re-noised start point: one denoise call per start point.
    by_start: dict[int, list[tuple[int, int]]] = {}
    for i in range(n):
        for d, delta in enumerate(deltas):
            i_to = den.schedule.index_of_level(min(level[i].item() + delta, level[0].item()))
            if i_to < i:  # i_to == i would re-run the deterministic DDIM path: nothing new to learn
                by_start.setdefault(i_to, []).append((i, d))
    branch_ok = np.full((len(seeds), n, len(deltas), branches), np.nan)
    for i_to, jobs in sorted(by_start.items()):
        ys, bgens = [], []
        for i, d in jobs:
            for k in range(branches):
                rows = [torch.Generator("cpu").manual_seed(branch_seed(s, i, deltas[d], k)) for s in seeds]
                noise = den.sample_noise(rows, latents[i].shape)
                ys.append(renoise(den.schedule, latents[i], i, i_to, noise))
                bgens += rows
        y, _ = den.denoise(torch.cat(ys), i_to, n, bgens)
        ok = oracle_ok(den.decode(y), prompt).reshape(len(jobs), branches, len(seeds))
        for j, (i, d) in enumerate(jobs):
            branch_ok[:, i, d, :] = ok[j].T
    return {"prompt": prompt, "skill": parse(prompt).skill, "seeds": list(seeds), "level": level[:n].tolist(),
            "scores": np.stack(scores, 1), "x0_ok": np.stack(x0_ok, 1), "final_ok": final_ok,
            "final_score": final_score, "branch_ok": branch_ok}


def _rate(values: np.ndarray) -> float | None:
    return float(np.nanmean(values)) if (~np.isnan(values)).any() else None


def _any(b: np.ndarray) -> float | None:
    return float(np.nanmax(b, axis=1).mean()) if len(b) else None


def summarise(records: list[dict], deltas=DELTAS) -> dict:
    """Tables from per-prompt records: AUC/agreement per level, flip/rescue/break per (level, delta)."""
    scores = np.concatenate([r["scores"] for r in records])
    x0_ok = np.concatenate([r["x0_ok"] for r in records])
    final = np.concatenate([r["final_ok"] for r in records])
    branch = np.concatenate([r["branch_ok"] for r in records])  # [pairs, n, D, K]
    skill = np.concatenate([[r["skill"]] * len(r["seeds"]) for r in records])
    level = records[0]["level"]
    per_level = [{"i": i, "level": level[i], "auc": rank_auc(scores[:, i], final),
                  "agreement": float((x0_ok[:, i] == final).mean()), "x0_pass": float(x0_ok[:, i].mean())}
                 for i in range(len(level))]
    final_score = np.concatenate([r["final_score"] for r in records])
    per_level.append({"i": len(level), "level": 0.0, "auc": rank_auc(final_score, final),
                      "agreement": 1.0, "x0_pass": float(final.mean())})
    fin = final[:, None]  # broadcast the original verdict over branches
    cells = []
    for i in range(len(level)):
        for d, delta in enumerate(deltas):
            b = branch[:, i, d, :]
            if np.isnan(b).all():
                continue
            flips = np.where(np.isnan(b), np.nan, (b == 1) != fin)
            cell = {"i": i, "level": level[i], "delta_f": delta, "flip": _rate(flips),
                    "rescue": _rate(b[~final]), "break": _rate(1 - b[final]),
                    # a search keeps the best of its branches: a failed pair any of whose K branches passes
                    "rescue_any": _any(b[~final]), "rescue_any_position": _any(b[~final & (skill == "position")]),
                    "rescue_by_skill": {s: _rate(b[~final & (skill == s)]) for s in SKILLS},
                    "rescue_rest": _rate(b[~final & (skill != "position")])}
            cell["rescue_position"] = cell["rescue_by_skill"]["position"]
            cells.append(cell)
    return {"pairs": len(final), "failed": int((~final).sum()), "passed": int(final.sum()),
            "pairs_by_skill": {s: int((skill == s).sum()) for s in SKILLS},
            "failed_by_skill": {s: int((~final & (skill == s)).sum()) for s in SKILLS},
            "per_level": per_level, "per_level_delta": cells}


def _fmt(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def markdown(summary: dict) -> str:
    s, row = summary, lambda *cells: "| " + " | ".join(map(str, cells)) + " |"
    lines = [f"Pairs: {s['pairs']} ({s['passed']} pass, {s['failed']} fail at the end of the trajectory).", "",
             row("grid point", "level", "verifier AUC", "x0 oracle agrees with final", "x0 oracle pass"),
             row(*["---:"] * 5)]
    lines += [row(r["i"], f"{r['level']:.3f}", *(_fmt(r[k]) for k in ("auc", "agreement", "x0_pass")))
              for r in s["per_level"]]
    keys = ("flip", "rescue", "rescue_any", "break", "rescue_position", "rescue_any_position", "rescue_rest")
    lines += ["", f"Branches (failed pairs: {s['failed']}, of which position {s['failed_by_skill']['position']}):",
              "", row("level", "δf", "flip", "rescue", "rescue any of K", "break", "rescue position",
                      "any of K, position", "rescue rest"), row(*["---:"] * 9)]
    lines += [row(f"{c['level']:.3f}", c["delta_f"], *(_fmt(c[k]) for k in keys)) for c in s["per_level_delta"]]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = summary["per_level"]
    lv = [r["level"] for r in rows]
    a.plot(lv, [r["auc"] for r in rows], "o-", label="verifier AUC vs final verdict")
    a.plot(lv, [r["agreement"] for r in rows], "s--", label="x0 oracle agrees with final")
    a.axhline(0.5, color="grey", lw=0.8)
    a.set(xlabel="noise level of the x0-prediction", ylim=(0.25, 1.02), title=f"{summary['pairs']} pairs")
    a.invert_xaxis()  # left to right = the order the trajectory visits the levels
    a.legend(loc="lower right")
    for d in sorted({c["delta_f"] for c in summary["per_level_delta"]}):
        cs = [c for c in summary["per_level_delta"] if c["delta_f"] == d]
        line, = b.plot([c["level"] for c in cs], [c["rescue"] for c in cs], "o-", label=f"δf={d} all")
        b.plot([c["level"] for c in cs], [c["rescue_position"] for c in cs], "x:",
               color=line.get_color(), label=f"δf={d} position")
    b.set(xlabel="level branched from", ylabel="rescue rate (failed → pass)", ylim=(0, None),
          title=f"{summary['failed']} failed pairs, K branches each")
    b.invert_xaxis()
    b.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _jsonable(v):  # strict JSON has no NaN
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return [_jsonable(x) for x in v] if isinstance(v, list) else None if isinstance(v, float) and math.isnan(v) else v


def write_outputs(out: Path, report: dict) -> None:
    """Write into a temp folder beside ``out`` and rename, so a failure never leaves half a result."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "diagnosis.json").write_text(json.dumps(_jsonable(report), indent=1))
        (tmp / "diagnosis.md").write_text(markdown(report["summary"]))
        plot(report["summary"], tmp / "diagnosis.png")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-skill", type=int, default=12, help="tune prompts per skill (evenly spread)")
    # 3 seeds (102 pairs) keep the default near 10 min on 2 shared cores; 4 seeds took 14 min there.
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--branches", type=int, default=4, help="K fresh branches per (pair, level, delta_f)")
    ap.add_argument("--deltas", default=",".join(map(str, DELTAS)), help="comma-separated delta_f")
    ap.add_argument("--out", type=Path, default=Path("runs/diagnose"))
    # 1 thread by default: with other jobs on the 2 cores, 2 threads ran 9x slower (167 vs 18 s a prompt);
    # alone, 2 threads are ~1.5x faster. Scores differ in the 4th decimal between thread counts.
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 pays only on an idle machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    deltas = tuple(float(d) for d in args.deltas.split(","))
    v1 = get_world("v1")  # the diagnosis of docs/sop_diagnosis.md, on the world it was made on
    defaults = model_defaults(v1.pipeline_path)
    steps, guidance = int(defaults.get("steps", 10)), float(defaults.get("guidance_scale", 4.0))
    t0 = time.time()
    pipe = load_pipeline(v1.pipeline_path, device="cpu")
    verifier = load_verifier(str(v1.verifier_path), device="cpu")
    chosen = pick_prompts(args.per_skill)
    print(f"{len(chosen)} tune prompts x {len(seeds)} seeds, {args.branches} branches, deltas {deltas}", flush=True)
    records = []
    for j, p in enumerate(chosen, 1):
        r = measure_prompt(pipe, verifier, p, seeds, deltas, args.branches, steps, guidance)
        records.append(r)
        print(f"[{j}/{len(chosen)}] {r['skill']:<18} {p!r}: final pass {int(r['final_ok'].sum())}/{len(seeds)}, "
              f"{time.time() - t0:.0f} s", flush=True)
    summary = summarise(records, deltas)
    report = {"config": {"per_skill": args.per_skill, "seeds": seeds, "branches": args.branches,
                         "deltas": list(deltas), "steps": steps, "guidance_scale": guidance, "split": "tune",
                         "threads": args.threads},
              "seconds": round(time.time() - t0, 1), "prompts": chosen, "summary": summary,
              # per pair, so later questions need no rerun; branch_ok is [level][delta][branch], null = none
              "pairs": [{"prompt": r["prompt"], "seed": s, "final_ok": bool(r["final_ok"][j]),
                         "scores": np.round(r["scores"][j].astype(float), 4).tolist(), "x0_ok": r["x0_ok"][j].tolist(),
                         "branch_ok": r["branch_ok"][j].tolist()} for r in records for j, s in enumerate(r["seeds"])]}
    write_outputs(args.out, report)
    print(markdown(summary))
    print(f"wrote {args.out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
