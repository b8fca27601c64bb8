"""Train the toy world's yes/no VLM verifier on renders and on the toy pipeline's own samples, on a CPU.

Every training pair is (image, prompt) labelled by the exact oracle: renders of train-split prompts and
pipeline samples of train-split prompts, each shown with its own prompt and with a near-miss prompt (one
or two words changed: colour, shape, count, relation) or an unrelated one. So positives are images that
satisfy their prompt, and negatives include the pipeline's real failures, which makes the verifier's
mistakes look like a real VLM's. Inputs are built by ``YesTokenVerifier``'s own row-building code with the
default criterion, and the loss is cross-entropy towards "Yes"/"No" at the answer position.

Seeded and resumable (``<work>/data.pt``, ``<work>/ckpt.pt``); the trained model and its processor are
saved with ``save_pretrained`` (safetensors)::

    nice -n 10 python -m rd_inference.toyworld.train_verifier --work runs/verifier_train \\
        --out rd_inference/toyworld/weights/verifier
    python -m rd_inference.toyworld.train_verifier --evaluate rd_inference/toyworld/weights/verifier
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rd_inference.toyworld.oracle import check
from rd_inference.toyworld.prompts import SKILLS, prompts, skill_of
from rd_inference.toyworld.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS, load_pipeline, sample_and_label
from rd_inference.toyworld.vlm import build_vlm, training_inputs, wrap, yes_no_loss
from rd_inference.toyworld.world import render, sample_scene

SKILL_WEIGHTS = {"single": 0.1, "two_objects": 0.1, "counting": 0.2, "colour_attribution": 0.25, "position": 0.35}
# Share of each batch drawn from each pool of pairs.
MIX = {"sample_own": 0.4, "sample_other": 0.15, "render_own": 0.15, "render_other": 0.3}


def _draw_prompts(n: int, rng: np.random.Generator) -> list[str]:
    by_skill = {s: prompts("train", s) for s in SKILLS}
    skills = rng.choice(SKILLS, size=n, p=[SKILL_WEIGHTS[s] for s in SKILLS])
    return [str(rng.choice(by_skill[s])) for s in skills]


def near_miss(prompt: str, rng: np.random.Generator) -> str:
    """Another train-split prompt: usually the same template with one or two words changed, else any."""
    if rng.random() < 0.25:
        return str(rng.choice([p for p in prompts("train") if p != prompt]))
    words = prompt.split()
    close = [q for q in prompts("train", skill_of(prompt)) if q != prompt and len(q.split()) == len(words)
             and sum(a != b for a, b in zip(q.split(), words)) <= 2]
    if not close:
        close = [q for q in prompts("train", skill_of(prompt)) if q != prompt] or [
            p for p in prompts("train") if p != prompt]
    return str(rng.choice(close))


def make_pairs(images: Sequence[Image.Image], own: Sequence[str], rng: np.random.Generator, base: int):
    """(image index, prompt, oracle label) for each image with its own prompt and with a near miss."""
    own_pairs, other_pairs = [], []
    for i, (im, p) in enumerate(zip(images, own)):
        own_pairs.append((base + i, p, bool(check(im, p).ok)))
        q = near_miss(p, rng)
        other_pairs.append((base + i, q, bool(check(im, q).ok)))
    return own_pairs, other_pairs


def build_data(args, log) -> dict:
    path = args.work / "data.pt"
    if path.exists():
        data = torch.load(path, weights_only=False)
        # Label again with the current oracle: the cached images stay valid when the oracle is refined.
        for name in ("render_own", "sample_own"):
            data["pools"][name] = [(i, p, bool(check(Image.fromarray(data["images"][i].numpy()), p).ok))
                                   for i, p, _ in data["pools"][name]]
        log(event="relabelled", **{n: round(sum(y for _, _, y in data["pools"][n]) / len(data["pools"][n]), 3)
                                   for n in ("render_own", "sample_own")})
        return data
    rng = np.random.default_rng(args.seed)
    render_prompts = _draw_prompts(args.renders, rng)
    renders = [render(sample_scene(p, rng)) for p in render_prompts]
    log(event="renders", n=len(renders))
    pipe = load_pipeline(args.pipeline)
    sample_prompts = _draw_prompts(args.samples, rng)
    samples = []
    # Batches of 64, one seed per sample (far from the seeds the benchmark uses); the step count
    # alternates between the ``--steps`` values so the verifier sees the failures of each.
    steps = [int(s) for s in str(args.steps).split(",")]
    for k, i in enumerate(range(0, len(sample_prompts), 64)):
        chunk = sample_prompts[i : i + 64]
        out = pipe(chunk, num_inference_steps=steps[k % len(steps)], guidance_scale=args.guidance,
                   generator=[torch.Generator().manual_seed(100_000 + i + j) for j in range(len(chunk))]).images
        samples += out
        log(event="sampled", n=len(samples))
    ok = [check(im, p).ok for im, p in zip(samples, sample_prompts)]
    log(event="samples", n=len(samples), pass_rate=round(sum(ok) / len(ok), 3))
    images = renders + samples
    r_own, r_other = make_pairs(renders, render_prompts, rng, 0)
    s_own, s_other = make_pairs(samples, sample_prompts, rng, len(renders))
    data = {
        "images": torch.from_numpy(np.stack([np.asarray(im) for im in images])),
        "pools": {"render_own": r_own, "render_other": r_other, "sample_own": s_own, "sample_other": s_other},
        "prompts": sorted(set(render_prompts) | set(sample_prompts)
                          | {p for pool in (r_other, s_other) for _, p, _ in pool}),
    }
    torch.save(data, path)
    return data


def _batch(data: dict, batch: int, gen: np.random.Generator):
    """A batch mixed from the pools; "other" rows get a fresh near-miss prompt, labelled by the oracle."""
    pools = data["pools"]
    names = list(MIX)
    which = gen.choice(len(names), size=batch, p=[MIX[n] for n in names])
    images, texts, labels = [], [], []
    for k in which:
        name = names[k]
        own = pools[name.replace("other", "own")]
        i, prompt, label = own[gen.integers(len(own))]
        image = Image.fromarray(data["images"][i].numpy())
        if name.endswith("other"):
            prompt = near_miss(prompt, gen)
            label = bool(check(image, prompt).ok)
        images.append(image)
        texts.append(prompt)
        labels.append(float(label))
    return images, texts, torch.tensor(labels)


def train(args, data: dict, log) -> tuple:
    model, processor = build_vlm(args.seed, vision_hidden=args.width, vision_layers=args.layers,
                                 text_hidden=args.width, text_layers=args.layers)
    verifier = wrap(model, processor)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    ckpt = args.work / "ckpt.pt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        log(event="resume", step=step)
    deadline = time.time() + 60 * args.time_budget_min if args.time_budget_min else math.inf
    model.train()
    running = []
    while step < args.train_steps and time.time() < deadline:
        gen = np.random.default_rng([args.seed, step])  # batch depends on (seed, step) only: exact resume
        images, texts, labels = _batch(data, args.batch, gen)
        lr = args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / args.train_steps))
        for g in opt.param_groups:
            g["lr"] = lr
        inputs = training_inputs(verifier, images, texts)
        logits = model(**inputs, logits_to_keep=1).logits[:, -1]
        loss = yes_no_loss(verifier, logits, labels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        pred = logits[:, verifier.yes_ids].logsumexp(-1) > logits[:, verifier.no_ids].logsumexp(-1)
        running.append((loss.item(), (pred.float() == labels).float().mean().item()))
        if step % 50 == 0:
            loss_m, acc_m = np.mean(running, axis=0)
            running = []
            log(step=step, loss=round(float(loss_m), 4), acc=round(float(acc_m), 3), lr=round(lr, 6))
        if step % args.ckpt_every == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
    return model.eval(), processor, step


def evaluation_samples(pipe, *, seeds_per_skill: int = 60, steps: int = DEFAULT_STEPS,
                       guidance: float = DEFAULT_GUIDANCE):
    """Pipeline samples of eval-split prompts (held out from training and tuning), about
    ``seeds_per_skill`` per skill, seeds 0, 1, ... per prompt, labelled by the oracle."""
    out = []
    for skill in SKILLS:
        ps = prompts("eval", skill)
        per = max(1, math.ceil(seeds_per_skill / len(ps)))
        ps = ps[: max(1, seeds_per_skill // per)] if len(ps) * per > seeds_per_skill else ps
        out += sample_and_label(pipe, ps, list(range(per)), num_inference_steps=steps, guidance_scale=guidance)
    return out


def _auc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Probability that a random oracle-passing sample outscores a random failing one (ties count half)."""
    pos = [s for y, s in zip(labels, scores) if y]
    neg = [s for y, s in zip(labels, scores) if not y]
    if not pos or not neg:
        return None
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def agreement(verifier, samples, *, threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """Per skill: how often "score >= threshold" equals the oracle's verdict, for both probabilities."""
    rows: dict[str, list[tuple[bool, float, float]]] = defaultdict(list)
    for i in range(0, len(samples), 32):
        chunk = samples[i : i + 32]
        by_prompt = verifier.score([s.image for s in chunk], [s.prompt for s in chunk])
        for s, c, f in zip(chunk, by_prompt.conditional[:, 0].tolist(), by_prompt.full[:, 0].tolist()):
            rows[s.result.skill].append((s.ok, c, f))
            rows["all"].append((s.ok, c, f))
    table = {}
    for skill, rs in rows.items():
        table[skill] = {
            "n": len(rs),
            "oracle_pass": sum(ok for ok, _, _ in rs) / len(rs),
            "agree_conditional": sum(ok == (c >= threshold) for ok, c, _ in rs) / len(rs),
            "agree_full": sum(ok == (f >= threshold) for ok, _, f in rs) / len(rs),
            "auc_conditional": _auc([ok for ok, _, _ in rs], [c for _, c, _ in rs]),
        }
    return table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("runs/verifier_train"), help="data cache, checkpoint, log")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "weights" / "verifier")
    ap.add_argument("--pipeline", type=Path, default=None, help="toy pipeline folder (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--renders", type=int, default=6000)
    ap.add_argument("--samples", type=int, default=640, help="pipeline samples of train prompts")
    ap.add_argument("--steps", default="10", help="pipeline sampling steps (comma-separated: alternate per batch)")
    ap.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    ap.add_argument("--train-steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=int, default=128, help="hidden size of the vision tower and the language model")
    ap.add_argument("--layers", type=int, default=3, help="layers of each")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--time-budget-min", type=float, default=None, help="stop training (and save) after this long")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--evaluate", type=Path, default=None,
                    help="only measure a saved verifier's agreement with the oracle on eval-split samples")
    ap.add_argument("--eval-per-skill", type=int, default=60)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.evaluate is not None:
        from rd_inference.yes_token import YesTokenVerifier

        verifier = YesTokenVerifier.from_pretrained(str(args.evaluate), device="cpu")
        t0 = time.time()
        samples = evaluation_samples(load_pipeline(args.pipeline), seeds_per_skill=args.eval_per_skill,
                                     steps=int(str(args.steps).split(",")[-1]), guidance=args.guidance)
        table = agreement(verifier, samples)
        print(json.dumps({"agreement": table, "seconds": round(time.time() - t0, 1)}, indent=1))
        return

    args.work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    def log(**fields):
        line = json.dumps({"elapsed_s": round(time.time() - t_start, 1), **fields})
        print(line, flush=True)
        with (args.work / "log.jsonl").open("a") as f:
            f.write(line + "\n")

    log(event="start", args={k: str(v) for k, v in vars(args).items()})
    data = build_data(args, log)
    model, processor, step = train(args, data, log)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    processor.save_pretrained(args.out)
    # Near misses are drawn from every train-split prompt during training, so all of them are listed.
    (args.out / "training_prompts.txt").write_text("\n".join(prompts("train")) + "\n")
    minutes = (time.time() - t_start) / 60
    (args.out / "training.json").write_text(json.dumps(
        {"train_steps": step, "wall_minutes": round(minutes, 1), "pairs": {k: len(v) for k, v in data["pools"].items()},
         "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    log(event="done", steps=step, minutes=round(minutes, 1), out=str(args.out))


if __name__ == "__main__":
    main()
