"""Core search overheads on a tiny pipeline on CPU (random weights: timings only, not quality).

Run from the repository root:

    python -m benchmarks.bench_search [--paths 8] [--size 32] [--steps 20] [--repeats 3] [--threads 2]

Prints, from one run:
  (a) N paths denoised as one batch vs the same N paths one at a time: the speed ratio;
  (b) for a whole Search over Paths run with the yes-token verifier on a tiny LLaVA: the share of wall
      time spent outside model forwards (denoiser, VAE decode, verifier forward); the goal is <= 5%.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time

import torch

from rd_inference import search
from rd_inference.denoisers import make_denoiser
from rd_inference.yes_token import YesTokenVerifier
from tests.tiny_pipelines import tiny_sd
from tests.tiny_vlm import build_tiny_vlm


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def timed(obj, name: str, bucket: list[float]) -> None:
    """Wrap ``obj.name`` so every call adds its wall time to ``bucket``."""
    fn = getattr(obj, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            bucket[0] += time.perf_counter() - t0

    setattr(obj, name, wrapper)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paths", type=int, default=8)
    p.add_argument("--size", type=int, default=32, help="image side in pixels (latent side is half)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = tiny_sd()
    size = {"height": args.size, "width": args.size}

    # (a) batch vs sequential
    def run(max_batch: int) -> None:
        den = make_denoiser(pipe, "two red circles", steps=args.steps, max_batch=max_batch, **size)
        gens = [torch.Generator().manual_seed(i) for i in range(args.paths)]
        den.denoise(den.initial_noise(gens), 0, args.steps, gens)

    run(args.paths)  # warm-up
    batched = best_of(args.repeats, lambda: run(args.paths))
    sequential = best_of(args.repeats, lambda: run(1))
    print(f"(a) {args.paths} paths x {args.steps} steps, {args.size}px: batched {batched:.3f} s, "
          f"sequential {sequential:.3f} s -> batching is {sequential / batched:.2f}x faster")

    # (b) share of wall time outside model forwards; the fastest of --repeats runs (other processes on a
    # shared machine only ever add time, and they add it to both sides of the ratio unevenly)
    with tempfile.TemporaryDirectory() as tmp:
        verifier = YesTokenVerifier.from_pretrained(str(build_tiny_vlm("llava", f"{tmp}/vlm")), device="cpu")
        verifier(torch.rand(1, 3, args.size, args.size), "warm up")
        model_time = [0.0]
        timed(pipe.unet, "forward", model_time)
        timed(pipe.vae, "decode", model_time)
        timed(verifier.model, "forward", model_time)
        runs = []
        for _ in range(args.repeats):
            model_time[0] = 0.0
            t0 = time.perf_counter()
            result = search(pipe, "two red circles", verifier=verifier, strategy="sop", n=args.paths // 2, m=2,
                            sigma_start=0.4, delta_f=0.3, delta_b=0.4, steps=args.steps, seed=0, **size)
            runs.append((time.perf_counter() - t0, model_time[0], result.counts))
    wall, models, c = min(runs, key=lambda r: r[0])
    outside = 1.0 - models / wall
    print(f"(b) Search over Paths: {c['nfe']} denoiser forwards, {c['decodes']} decodes, {c['verifier_images']} "
          f"images verified in {wall:.2f} s (fastest of {args.repeats}); model forwards {models:.2f} s -> "
          f"{100 * outside:.1f}% of wall time outside model forwards (goal <= 5%)")

if __name__ == "__main__":
    main()
