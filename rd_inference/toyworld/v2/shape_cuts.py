"""Where the v2 oracle's shape cuts come from: shape measures of objects whose true shape is known.

The pipeline never draws a shape as crisply as the renderer, so cuts measured on renders alone (where
every shape is far from every other) misname soft shapes. Known-shape soft shapes come from the
pipeline's own autoencoder: a render of a train or tune prompt, encoded and decoded, is what a perfect
denoiser would produce. Each component the oracle finds in a reconstruction is matched to the rendered
object whose centre is within 3 pixels of its centroid (others are left out). This prints per shape the
2nd-98th percentile of every measure, the confusion of the current cuts, and cuts fitted by coordinate
ascent (each cut in turn set to the value that names most reconstructed objects right while every
render, aliased or anti-aliased, stays right), so the constants in ``oracle.py`` are reproducible::

    python -m rd_inference.toyworld.v2.shape_cuts --pipeline rd_inference/toyworld/weights/v2/pipeline

``--world v3`` measures world v3 (the same oracle and cuts on 64x64 scenes) with a v3 autoencoder.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
import torch
from scipy import ndimage

from rd_inference.toyworld.v2 import oracle
from rd_inference.toyworld.v2.world import SHAPES
from rd_inference.toyworld.worlds import get_world

CUTS = ("RING_HOLE", "TRIANGLE_TAPER", "CROSS_SOLIDITY", "DIAMOND_FILL", "SQUARE_CORNERS", "SQUARE_FILL")


def labelled_measures(images, scenes) -> list[tuple[str, np.ndarray, dict]]:
    """(true shape, crop mask, measures) of every component matched to a scene object."""
    out = []
    for image, scene in zip(images, scenes):
        labels = oracle.label_pixels(np.asarray(image))
        for lab in range(1, labels.max() + 1):
            comp, _ = ndimage.label(labels == lab, structure=oracle._FOUR)
            for k, sl in enumerate(ndimage.find_objects(comp), start=1):
                if sl is None:
                    continue
                mask = comp[sl] == k
                if mask.sum() < oracle.MIN_AREA:
                    continue
                ys, xs = np.nonzero(mask)
                cx, cy = xs.mean() + sl[1].start, ys.mean() + sl[0].start
                near = min(scene.objects, key=lambda o: (o.cx - cx) ** 2 + (o.cy - cy) ** 2)
                if (near.cx - cx) ** 2 + (near.cy - cy) ** 2 <= 9:
                    out.append((near.shape, mask, oracle.shape_measures(mask)))
    return out


def accuracy(rows, cuts: dict[str, float]) -> float:
    saved = {c: getattr(oracle, c) for c in CUTS}
    try:
        for c, v in cuts.items():
            setattr(oracle, c, v)
        return sum(oracle.shape_of(m) == s for s, m, _ in rows) / len(rows)
    finally:
        for c, v in saved.items():
            setattr(oracle, c, v)


def fit(soft, crisp, passes: int = 3) -> dict[str, float]:
    cuts = {c: getattr(oracle, c) for c in CUTS}
    for _ in range(passes):
        for c in CUTS:
            best = (accuracy(soft, cuts), cuts[c])
            for v in np.round(np.linspace(0.05, 1.0, 96), 3):
                trial = {**cuts, c: float(v)}
                if accuracy(crisp, trial) == 1.0:
                    best = max(best, (accuracy(soft, trial), float(v)))
            cuts[c] = best[1]
    return cuts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", required=True, help="pipeline folder (its VAE reconstructs the renders)")
    ap.add_argument("--world", choices=("v2", "v3"), default="v2")
    ap.add_argument("--no-fit", action="store_true", help="only measure the current cuts (the fit takes an hour)")
    ap.add_argument("--scenes", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKL

    w = get_world(args.world)
    vae = AutoencoderKL.from_pretrained(args.pipeline, subfolder="vae", local_files_only=True).eval()
    rng = np.random.default_rng(11)
    scenes, renders = [], []
    for i in range(args.scenes):  # train and tune prompts only, never eval
        ps = w.prompts("train" if i % 2 else "tune", w.tasks[i % len(w.tasks)])
        scene = w.sample_scene(ps[rng.integers(len(ps))], rng)
        scenes.append(scene)
        renders.append(np.asarray(w.render(scene)))
    recon = []
    with torch.no_grad():
        for i in range(0, len(renders), 64):
            x = torch.from_numpy(np.stack(renders[i : i + 64])).permute(0, 3, 1, 2).float() / 127.5 - 1
            y = vae.decode(vae.encode(x).latent_dist.mean).sample
            recon += list(((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    soft = labelled_measures(recon, scenes)
    crisp = labelled_measures([w.render(s, supersample=k) for s in scenes[:200] for k in (1, 4)],
                              [s for s in scenes[:200] for _ in (1, 4)])
    report = {"soft_objects": len(soft), "crisp_objects": len(crisp), "ranges_2_98": {}}
    for shape in SHAPES:
        ms = [m for s, _, m in soft if s == shape]
        report["ranges_2_98"][shape] = {k: [round(float(np.percentile([m[k] for m in ms], q)), 3) for q in (2, 98)]
                                        for k in ms[0]} if ms else {}
    current = {c: getattr(oracle, c) for c in CUTS}
    named = Counter(f"{s}->{oracle.shape_of(m)}" for s, m, _ in soft)
    report["confusion_current"] = dict(named.most_common())
    report["accuracy_current"] = {"soft": round(accuracy(soft, current), 4), "crisp": accuracy(crisp, current)}
    if not args.no_fit:
        fitted = fit(soft, crisp)
        report["fitted"] = fitted
        report["accuracy_fitted"] = {"soft": round(accuracy(soft, fitted), 4), "crisp": accuracy(crisp, fitted)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
