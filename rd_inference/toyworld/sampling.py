"""Sample the toy pipeline on prompts and label every image with the oracle.

Stage 2 (the VLM verifier and the benchmark) builds on ``sample_and_label``: its ``LabelledSample``
records say which prompt, which seed (the seed alone reproduces the image) and what the oracle saw.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from rd_inference.toyworld.oracle import CheckResult
from rd_inference.toyworld.worlds import get_world

DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 4.0


def default_pipeline_path(world: str = "v1") -> Path:
    """The folder of the shipped pipeline (loadable with ``StableDiffusionPipeline.from_pretrained``)."""
    return get_world(world).pipeline_path


def load_pipeline(path: str | Path | None = None, world: str = "v1"):
    """Load the toy ``StableDiffusionPipeline`` offline, on the CPU, with its progress bar off."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(path or default_pipeline_path(world)), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass(frozen=True)
class LabelledSample:
    prompt: str
    seed: int
    image: Image.Image
    result: CheckResult

    @property
    def ok(self) -> bool:
        return self.result.ok


def sample_and_label(pipe, prompts: Sequence[str], seeds: Sequence[int], *,
                     num_inference_steps: int = DEFAULT_STEPS, guidance_scale: float = DEFAULT_GUIDANCE,
                     batch_size: int = 64, world: str = "v1") -> list[LabelledSample]:
    """One image per (prompt, seed) pair of the cross product, prompt-major, each labelled by the oracle.

    Every image gets its own ``torch.Generator(seed)``, so an image does not depend on its batch.

    >>> pipe = load_pipeline()
    >>> [s.ok for s in sample_and_label(pipe, ["two red circles"], seeds=[0, 1])]  # doctest: +SKIP
    [True, False]
    """
    return label_pairs(pipe, [(p, s) for p in prompts for s in seeds], num_inference_steps=num_inference_steps,
                       guidance_scale=guidance_scale, batch_size=batch_size, world=world)


def label_pairs(pipe, jobs: Sequence[tuple[str, int]], *, num_inference_steps: int = DEFAULT_STEPS,
                guidance_scale: float = DEFAULT_GUIDANCE, batch_size: int = 64,
                world: str = "v1") -> list[LabelledSample]:
    """One image per (prompt, seed) pair, in order, each labelled by the oracle (see :func:`sample_and_label`)."""
    check = get_world(world).check
    out: list[LabelledSample] = []
    for i in range(0, len(jobs), batch_size):
        chunk = jobs[i : i + batch_size]
        images = pipe(
            [p for p, _ in chunk],
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=[torch.Generator().manual_seed(s) for _, s in chunk],
        ).images
        out += [LabelledSample(p, s, im, check(im, p)) for (p, s), im in zip(chunk, images)]
    return out


def pass_rates(samples: Sequence[LabelledSample]) -> dict[str, dict[str, float]]:
    """Per-skill oracle pass rate (and per-aspect rates), plus an ``all`` row."""
    rows: dict[str, list[CheckResult]] = defaultdict(list)
    for s in samples:
        rows[s.result.skill].append(s.result)
        rows["all"].append(s.result)
    table = {}
    for skill, results in rows.items():
        n = len(results)
        entry = {"n": n, "pass": sum(r.ok for r in results) / n}
        for aspect in dict.fromkeys(a for r in results for a in r.detail):
            having = [r.detail[aspect] for r in results if aspect in r.detail]
            entry[aspect] = sum(having) / len(having)
        table[skill] = entry
    return table


def grid(images: Sequence[Image.Image], cols: int = 8, scale: int = 3, pad: int = 2) -> Image.Image:
    """Tile images (upscaled with nearest neighbour) for looking at by eye."""
    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    g = Image.new("RGB", (cols * (w + pad), rows * (h + pad)), (0, 0, 0))
    for i, im in enumerate(images):
        g.paste(im, ((i % cols) * (w + pad), (i // cols) * (h + pad)))
    return g.resize((g.width * scale, g.height * scale), Image.NEAREST)
