"""Train the toy world's CLIP-style scorer: a tiny ``CLIPModel`` whose image-prompt cosine is the score.

The scalar-scorer counterpart of the toy VLM (``clip:<folder>`` loads it like any CLIP checkpoint, through
:class:`rd_inference.verifiers.clip.ClipScoreVerifier`). Same data as the VLM (``train_verifier``'s renders,
pipeline samples of train-split prompts and their near misses, labelled by the oracle), trained with
SigLIP's pairwise sigmoid loss over every image x prompt pair of a batch, each pair labelled by the
oracle (so "three red circles" against an image of four is a negative, exactly). Resumable legs::

    python -m rd_inference.toyworld.train_clip --world v2 --work runs/clip_v2 \\
        --out rd_inference/toyworld/weights/v2/clip --time-budget-min 40
    python -m rd_inference.toyworld.train_clip --world v2 --evaluate rd_inference/toyworld/weights/v2/clip
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from rd_inference.toyworld import train_verifier as tv
from rd_inference.toyworld.components import image_size
from rd_inference.toyworld.vlm import build_tokenizer
from rd_inference.toyworld.worlds import WORLDS

EOS = "<|im_end|>"  # not "<|endoftext|>": CLIP's text model reads eos id 2 as its legacy argmax pooling


def clip_tokenizer(world: str):
    """The VLM's word-level tokenizer, ending every text with the end token CLIP pools at."""
    from tokenizers.processors import TemplateProcessing

    tok = build_tokenizer(world)
    eos = tok.convert_tokens_to_ids(EOS)
    tok.backend_tokenizer.post_processor = TemplateProcessing(single=f"$A {EOS}", pair=f"$A $B {EOS}",
                                                              special_tokens=[(EOS, eos)])
    return tok


def build_clip(world: str, *, width: int = 128, vision_layers: int = 3, text_layers: int = 2, seed: int = 0):
    """A randomly initialised tiny ``CLIPModel``, its tokenizer and image processor (untrained)."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = clip_tokenizer(world)
    size = image_size(world)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=CLIPTextConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width,
                                   num_hidden_layers=text_layers, num_attention_heads=width // 32,
                                   max_position_embeddings=32, pad_token_id=tok.pad_token_id,
                                   eos_token_id=tok.convert_tokens_to_ids(EOS), bos_token_id=None),
        vision_config=CLIPVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=vision_layers,
                                       num_attention_heads=width // 32, image_size=size, patch_size=size // 8),
        projection_dim=width,
    )
    processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return CLIPModel(config), tok, processor


def pair_labels(data: dict, views, texts) -> torch.Tensor:
    """[B, B] oracle labels: does view i satisfy text j (every pair of the batch, not only the diagonal)."""
    parsed = [tv.parse(t) for t in texts]
    return torch.tensor([[float(tv.judge(tv._objects(data, i, f, dx, dy), p, data["malformed"][i, f]).ok)
                          for p in parsed] for i, f, dx, dy in views])


def sigmoid_loss(model, bias, pixels: torch.Tensor, text: dict, labels: torch.Tensor) -> torch.Tensor:
    """SigLIP's loss with oracle labels: -log sigmoid(+-(scale * cosine + bias)) averaged per image."""
    img = model.get_image_features(pixel_values=pixels)
    txt = model.get_text_features(**text)
    img, txt = (getattr(x, "pooler_output", x) for x in (img, txt))
    cos = torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T
    logits = model.logit_scale.exp() * cos + bias
    return -torch.nn.functional.logsigmoid((2 * labels - 1) * logits).sum(-1).mean()


def train(args, data: dict, log):
    model, tok, processor = build_clip(args.world, width=args.width, seed=args.seed)
    # SigLIP's initialisation: temperature 10 and a negative bias, as most pairs are negatives.
    model.logit_scale.data.fill_(math.log(10.0))
    # The bias only shifts the training loss (the score is the cosine), so it is kept out of the model.
    bias = torch.nn.Parameter(torch.tensor(-5.0))
    params = [*model.parameters(), bias]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    ckpt, step = args.work / "clip_ckpt.pt", 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        bias.data.copy_(state["bias"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        log(event="resume", step=step)
    deadline = time.time() + 60 * args.time_budget_min if args.time_budget_min else math.inf
    running: list[tuple[float, float]] = []
    model.train()
    while step < args.train_steps and time.time() < deadline:
        gen = np.random.default_rng([args.seed, step])  # the batch depends on (seed, step) only: exact resume
        views, images, texts, _, _ = tv._batch(data, args.batch, gen, p_any=0.3, p_flip=0.5, max_shift=3)
        labels = pair_labels(data, views, texts)
        pixels = processor(images, return_tensors="pt")["pixel_values"]
        text = tok(texts, padding=True, return_tensors="pt")
        loss = sigmoid_loss(model, bias, pixels, {k: text[k] for k in ("input_ids", "attention_mask")}, labels)
        for g in opt.param_groups:
            g["lr"] = tv._lr(args.lr, step, args.train_steps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        running.append((loss.item(), labels.diagonal().mean().item()))
        if step % 50 == 0 or step == 1:
            loss_m, pos = np.mean(running, axis=0)
            running = []
            log(step=step, loss=round(float(loss_m), 4), diagonal_positives=round(float(pos), 3))
        if step % 100 == 0:
            torch.save({"model": model.state_dict(), "bias": bias.data, "opt": opt.state_dict(), "step": step}, ckpt)
    torch.save({"model": model.state_dict(), "bias": bias.data, "opt": opt.state_dict(), "step": step}, ckpt)
    return model.eval(), tok, processor, step


def save(model, tok, processor, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    processor.save_pretrained(out)


def evaluate(path: Path, pipeline: Path | None, per_skill: int, steps: int = 10) -> dict:
    """AUC per task on eval-split pipeline samples (the VLM card's samples: DDIM ``steps``, seeds 0, 1, ...),
    and agreement at the score threshold that agrees best on tune-split samples (a scalar scorer has no
    natural 0.5)."""
    from rd_inference.toyworld.sampling import load_pipeline
    from rd_inference.verifiers.clip import ClipScoreVerifier

    scorer = ClipScoreVerifier(str(path), device="cpu")
    pipe = load_pipeline(pipeline or tv.get_world(tv.WORLD).weights / "pipeline", tv.WORLD)

    def scored(split: str, n: int) -> list[tuple[str, bool, float]]:
        samples = tv.evaluation_samples(pipe, seeds_per_skill=n, split=split, steps=steps, guidance=tv.DEFAULT_GUIDANCE)
        by_prompt = defaultdict(list)
        for s in samples:
            by_prompt[s.prompt].append(s)
        out = []
        for prompt, group in by_prompt.items():
            for s, v in zip(group, scorer([g.image for g in group], prompt).tolist()):
                out.append((s.result.skill, s.ok, v))
        return out

    tune = scored("tune", 24)
    cuts = sorted({v for _, _, v in tune})
    threshold = max(cuts, key=lambda c: sum(ok == (v >= c) for _, ok, v in tune))
    rows = scored("eval", per_skill)
    table = {}
    for task in [*tv.SKILLS, "all"]:
        rs = [(ok, v) for t, ok, v in rows if task in (t, "all")]
        table[task] = {"n": len(rs), "oracle_pass": sum(ok for ok, _ in rs) / len(rs),
                       "agreement": sum(ok == (v >= threshold) for ok, v in rs) / len(rs),
                       "auc": tv._auc([ok for ok, _ in rs], [v for _, v in rs])}
    return {"threshold": threshold, "tune_samples": len(tune), "tasks": table}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", choices=WORLDS, default="v2")
    ap.add_argument("--work", type=Path, default=Path("runs/clip_train"), help="data cache, checkpoint, log")
    ap.add_argument("--out", type=Path, default=None, help="where to save (default: the world's clip/ folder)")
    ap.add_argument("--pipeline", type=Path, default=None, help="toy pipeline folder (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--renders", type=int, default=6000)
    ap.add_argument("--samples", type=int, default=3072, help="pipeline samples of train prompts")
    ap.add_argument("--steps", default="20,10", help="pipeline sampling steps (alternating per batch)")
    ap.add_argument("--guidance", type=float, default=tv.DEFAULT_GUIDANCE)
    ap.add_argument("--train-steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--time-budget-min", type=float, default=None, help="stop (and save) after this long")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--evaluate", type=Path, default=None, help="evaluate this saved scorer and exit")
    ap.add_argument("--eval-per-skill", type=int, default=40)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tv.use_world(args.world)
    if args.evaluate is not None:
        steps = int(str(args.steps).split(",")[-1])  # 10: the VLM card's evaluation, on the same samples
        print(json.dumps(evaluate(args.evaluate, args.pipeline, args.eval_per_skill, steps), indent=1))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.out or tv.get_world(args.world).weights / "clip"
    log_file = (args.work / "clip_log.jsonl").open("a")

    def log(**fields):
        line = json.dumps({"t": round(time.time(), 1), **fields})
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    args.pipeline = args.pipeline or tv.get_world(args.world).weights / "pipeline"
    data = tv.build_data(args, log)
    model, tok, processor, step = train(args, data, log)
    if step >= args.train_steps:
        save(model, tok, processor, out)
        (out / "training_prompts.txt").write_text("\n".join(data["prompts"]) + "\n")
        log(event="saved", out=str(out), step=step)
    else:
        log(event="stopped", step=step, of=args.train_steps, note="run again with the same --work to continue")


if __name__ == "__main__":
    main()
