"""Yes-token verifier cost on a tiny Qwen2.5-VL on CPU (random weights: timings only, not quality).

Run from the repository root:

    HF_HUB_OFFLINE=1 python -m benchmarks.bench_verifier [--batch 8] [--repeats 15] [--threads 1]

Prints, from one run (best of ``--repeats`` interleaved rounds), like for like: every row asks the same
criterion question about the same images (the generate rows append only the JSON instruction), and the
prompt lengths are printed beside the times:
  (a) yes-token scoring (one batched forward) vs: the same question one image per forward (the VQAScore
      way), and generate-based scoring (the VLM writes a JSON verdict, greedy, forced to ``--json-tokens``
      new tokens, 128 by default) batched and one image at a time;
  (b) the verifier's whole call (tensor -> PIL -> processor -> forward with logits_to_keep=1 ->
      probabilities) vs one bare batched ``model(**inputs)`` on the same, already prepared inputs.
  (c) the shared-prefix cache (several criteria about one image: the image and the text before the
      question run once per image) on and off, on the embedded toy-world v2 verifier (a trained LLaVA;
      Qwen's flattened patches cannot be split per image, so the cache does not apply there), with
      ``--criteria`` questions per image, and the largest score difference between the two.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from rd_inference.images import to_pil
from rd_inference.yes_token import YesTokenVerifier
from tests.tiny_vlm import build_tiny_vlm, random_images

PROMPT = "two red circles on the left of a blue square"
JSON_SUFFIX = ' Reply with JSON only, like {"answer": "yes", "score": 7, "reason": "..."}.'



def best_seconds(fns: dict, repeats: int) -> dict[str, float]:
    """Best (minimum) wall time of each function over ``repeats`` interleaved rounds.

    Interleaved so that load drift on a shared machine hits all alike; the minimum because other
    processes only ever add time.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--json-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--criteria", default="alignment,object_consistency,visual_quality,plausibility",
                        help="criteria for (c), one question each per image")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_vlm("qwen2_5_vl", tmp, hidden=args.hidden, layers=args.layers)
        v = YesTokenVerifier.from_pretrained(str(path), device="cpu", max_batch=args.batch)
    model = v.model
    images = random_images(args.batch, size=56)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"tiny Qwen2.5-VL: {n_params / 1e6:.2f}M parameters, hidden {args.hidden}, {args.layers} layers; "
        f"batch {args.batch} images 56x56; torch threads {torch.get_num_threads()}; best of {args.repeats}"
    )

    pil = to_pil(images)
    question = v.criteria[0].render(PROMPT)  # the yes/no question the verifier asks, in every row
    json_question = question + JSON_SUFFIX

    def generate_json(images=pil):
        inputs = v._inputs([([im], json_question) for im in images])
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=args.json_tokens,
                min_new_tokens=args.json_tokens,
                do_sample=False,
            )
        texts = v.processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :])
        return [t for t in texts if '"score"' in t]  # what a JSON scorer would parse

    rows = [([im], question) for im in pil]
    inputs = v._inputs(rows)
    json_len = v._inputs([([pil[0]], json_question)])["input_ids"].shape[1]

    def bare():
        with torch.inference_mode():
            model(**inputs)

    def generate_json_one_by_one():
        return [generate_json([im]) for im in pil]

    def vqascore_one_by_one():
        return [v(images[k : k + 1], PROMPT) for k in range(len(images))]

    fns = {"yes": lambda: v(images, PROMPT), "bare": bare, "vqa1": vqascore_one_by_one, "json": generate_json,
           "json1": generate_json_one_by_one}
    for warm_up in fns.values():
        warm_up()
    v.reset_timings()
    t = best_seconds(fns, args.repeats)
    t_yes, t_bare = t["yes"], t["bare"]
    print(f"prompt tokens per row (image tokens included): yes-token {inputs['input_ids'].shape[1]}, "
          f"JSON {json_len}; JSON rows generate {args.json_tokens} new tokens")
    rows = {"yes-token, batched": t_yes, "yes/no, one image per forward (VQAScore way)": t["vqa1"],
            "generate JSON, batched": t["json"], "generate JSON, one image at a time": t["json1"]}
    for k, (label, sec) in enumerate(rows.items()):
        print(f"{'(a)' if k == 0 else '   '} {label:<46} {sec * 1e3:9.1f} ms {sec / t_yes:6.1f}x")
    t_pre = v.timings["preprocess"] / v.timings["calls"]
    print(
        f"(b) bare model(**inputs) {t_bare * 1e3:8.1f} ms   whole verifier call {t_yes * 1e3:8.1f} ms   "
        f"overhead ratio {t_yes / t_bare:4.2f} (mean preprocessing {t_pre * 1e3:.1f} ms per call)"
    )
    prefix_cache_rows(args)


def prefix_cache_rows(args) -> None:
    from rd_inference.toyworld.worlds import get_world

    path = str(get_world("v2").weights / "verifier")
    by_mode = {m: YesTokenVerifier.from_pretrained(path, device="cpu", criteria=args.criteria, prefix_cache=m,
                                                   max_batch=64) for m in ("off", "on")}
    images = random_images(args.batch, size=48)
    fns = {m: (lambda v=v: v.score(images, PROMPT)) for m, v in by_mode.items()}
    scores = {m: fn().conditional for m, fn in fns.items()}
    t = best_seconds(fns, args.repeats)
    v = by_mode["off"]
    rows = [([im], c.render(PROMPT)) for im in to_pil(images[:1]) for c in v.criteria]
    lengths = v._inputs(rows)["attention_mask"].sum(-1).tolist()
    image_tokens = (v.model.config.vision_config.image_size // v.model.config.vision_config.patch_size) ** 2
    print(f"(c) toy-world v2 verifier, {args.batch} images x {len(v.criteria)} criteria; tokens per row "
          f"{min(lengths)}-{max(lengths)} of which {image_tokens} image tokens")
    print(f"    shared-prefix cache off {t['off'] * 1e3:8.1f} ms   on {t['on'] * 1e3:8.1f} ms   "
          f"speed-up {t['off'] / t['on']:4.2f}x   max |score difference| "
          f"{(scores['on'] - scores['off']).abs().max().item():.1e}")


if __name__ == "__main__":
    main()
