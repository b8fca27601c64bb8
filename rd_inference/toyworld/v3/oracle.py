"""World v3's exact oracle: v2's (``rd_inference.toyworld.v2.oracle``) on 64x64 images and v3's grammar.

Every step is v2's: palette labels, connected components, shape named from the component's crop by
scale-free measures (fill, hole, solidity, taper, corners), "malformed" for unclean scenes, closed-world
matching and relations whose named direction dominates. Only the size floor scales: the smallest object
v3 draws (a radius-6 triangle) covers 84 pixels, so an object under ``SMALLEST`` is malformed, as v2's
40 sits under its 61.

v2's shape cuts carry over without a refit: on 600 train/tune scenes encoded and decoded by the v3
autoencoder (what a perfect denoiser would draw), they name 98.9% of 1,204 reconstructed objects right
(v2's autoencoder: 95.3%; errors: 8 diamonds read as crosses, 3 crosses as diamonds, 2 rings as crosses)
and every one of 822 rendered objects::

    python -m rd_inference.toyworld.v2.shape_cuts --world v3 --pipeline <v3 pipeline> --no-fit
"""

from __future__ import annotations

from rd_inference.toyworld.v2.oracle import (
    CheckResult,
    FoundObject,
    judge,
    label_pixels,
    malformation,
    objects_in,
    read,
)
from rd_inference.toyworld.v3.prompts import parse
from rd_inference.toyworld.v3.world import SIZE

__all__ = ["SMALLEST", "CheckResult", "FoundObject", "check", "find_objects", "judge", "label_pixels", "malformation",
           "objects_in", "read_v3"]

SMALLEST = 55


def read_v3(image) -> tuple[tuple[FoundObject, ...], str]:
    """The objects in a 64x64 image (top-to-bottom, left-to-right) and why it is malformed ("" if clean)."""
    return read(image, SIZE, SMALLEST, "v3")


def find_objects(image) -> tuple[FoundObject, ...]:
    return read_v3(image)[0]


def check(image, prompt: str) -> CheckResult:
    """Decide from pixels whether ``image`` (PIL or uint8 [64,64,3]) satisfies ``prompt``.

    >>> import numpy as np
    >>> from rd_inference.toyworld.v3.world import render, sample_scene
    >>> check(render(sample_scene("six black crosses", np.random.default_rng(0))), "six black crosses").ok
    True
    """
    objects, malformed = read_v3(image)
    return judge(objects, parse(prompt), malformed)
