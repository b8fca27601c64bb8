"""Toy world: renderer/oracle round trips, prompt grammar and splits, and the shipped pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from rd_inference.toyworld import (
    SKILLS,
    SPLITS,
    PromptError,
    all_prompts,
    check,
    parse,
    prompts,
    render,
    sample_scene,
    split_of,
)
from rd_inference.toyworld.oracle import SQUARE_CORNERS, find_objects, shape_measures, shape_of
from rd_inference.toyworld.world import BACKGROUND, COLOURS, Scene, SceneObject


def test_oracle_exact_on_random_renders():
    rng = np.random.default_rng(123)
    every = all_prompts()
    bad = []
    for _ in range(300):
        p = every[rng.integers(len(every))]
        res = check(render(sample_scene(p, rng)), p)
        if not res.ok:
            bad.append((p, res.detail))
    assert not bad


# A scene rendered for the first prompt must fail the second: one wrong word per skill aspect.
NEGATIVES = [
    ("a red circle", "a blue circle"),
    ("a red circle", "a red square"),
    ("a circle and a square", "a circle and a triangle"),
    ("two blue circles", "three blue circles"),
    ("three green triangles", "two green triangles"),
    ("two blue circles", "two blue squares"),
    ("a red square and a green circle", "a green square and a red circle"),
    ("a yellow triangle left of a blue square", "a yellow triangle right of a blue square"),
    ("a purple circle above a red triangle", "a purple circle below a red triangle"),
    ("a purple circle above a red triangle", "a red triangle above a purple circle"),
]


@pytest.mark.parametrize("skill", SKILLS)
def test_round_trip_per_skill(skill):
    rng = np.random.default_rng(SKILLS.index(skill))
    ps = all_prompts(skill)
    for p in rng.choice(ps, size=min(20, len(ps)), replace=False):
        res = check(render(sample_scene(str(p), rng)), str(p))
        assert res.ok and res.skill == skill and all(res.detail.values()), (p, res)


@pytest.mark.parametrize("good,wrong", NEGATIVES)
def test_oracle_rejects_wrong_prompt(good, wrong):
    rng = np.random.default_rng(0)
    for _ in range(5):
        im = render(sample_scene(good, rng))
        assert check(im, good).ok
        assert not check(im, wrong).ok


def test_oracle_survives_speckle_but_counts_real_extras():
    rng = np.random.default_rng(7)
    p = "a red square left of a blue circle"
    arr = np.array(render(sample_scene(p, rng)))
    noisy = arr.copy()
    # isolated single-pixel speckle of random palette colours, 2% of pixels
    palette = np.array(list(COLOURS.values()), dtype=np.uint8)
    for y, x in zip(*np.nonzero(rng.random(arr.shape[:2]) < 0.02)):
        noisy[y, x] = palette[rng.integers(len(palette))]
    # mild colour noise everywhere
    noisy = np.clip(noisy.astype(int) + rng.integers(-30, 31, noisy.shape), 0, 255).astype(np.uint8)
    assert check(noisy, p).ok
    extra = arr.copy()
    extra[26:30, 26:30] = COLOURS["green"]  # a real (16-pixel) extra object
    if (arr[26:30, 26:30] == BACKGROUND).all():
        assert not check(extra, p).ok
        assert not check(extra, p).detail["count"]


def test_oracle_names_rendered_shapes():
    for r in (3, 4, 5, 6):
        for shape in ("circle", "square", "triangle"):
            (obj,) = find_objects(render(Scene((SceneObject(shape, "green", 15, 15, r),))))
            assert obj.shape == shape and obj.colour == "green"


def _mask(rows: str) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows.split()])


# Shapes the pipeline draws, which the old fill-ratio rule misnamed (fill in brackets).
GENERATED_SHAPES = [
    ("square", """
     .########.
     ##########
     ##########
     ##########
     ##########
     ##########
     ##########
     .########."""),  # rounded corners (0.95 is fine either way) ...
    ("square", """
     ..########.
     .#########.
     .#########.
     .#########.
     ##########.
     .#########.
     .#########.
     .#########.
     .##########
     .##########"""),  # ... a ragged one from a tune-split sample (0.84: was "circle")
    ("circle", """
     ...###...
     ..#####..
     .#######.
     #########
     #########
     #########
     .#######.
     ..#####..
     ...###..."""),  # a round blob (0.72) ...
    ("circle", """
     ....#....
     ..#####..
     .#######.
     .#######.
     #########
     .#######.
     .#######.
     ..#####..
     ....#...."""),  # ... pointed at top and bottom (0.67: was "triangle")
    ("triangle", """
     ..##..
     .####.
     .####.
     ######
     ######"""),  # a small triangle with a blunt top (0.77: was "circle")
    ("triangle", """
     ..#..
     .###.
     .###.
     #####
     #####"""),
]


@pytest.mark.parametrize("shape,rows", GENERATED_SHAPES)
def test_oracle_names_generated_shapes_by_taper_and_corners(shape, rows):
    assert shape_of(_mask(rows)) == shape


def test_oracle_calls_a_corner_filling_fragment_a_blob():
    # Fills its box's corners like a square but only half its box: a piece of a colour-drifted object.
    fragment = _mask("""
        ##..
        ##..
        ###.
        ####""")
    assert shape_measures(fragment)[2] >= SQUARE_CORNERS and shape_of(fragment) == "blob"
    assert shape_of(_mask("#####\n#####")) == "blob"  # elongated


def test_oracle_rejects_wrong_image_size():
    from PIL import Image

    with pytest.raises(ValueError, match="32x32"):
        check(Image.new("RGB", (64, 64)), "a red circle")


@pytest.mark.parametrize("bad", [
    "a pink circle", "two red circle", "a circle and a circle", "a red circle and a red square",
    "a red circle left of a red circle", "four red circles", "", "a red circle next to a blue square",
])
def test_parse_rejects_prompts_outside_the_grammar(bad):
    with pytest.raises(PromptError, match="not in the toy-world grammar"):
        parse(bad)


def test_parse_normalises_and_reads_structure():
    p = parse("  A Yellow triangle   LEFT OF a blue square. ")
    assert p.text == "a yellow triangle left of a blue square"
    assert p.skill == "position" and p.relation == "left of"
    assert [(o.colour, o.shape) for o in p.objects] == [("yellow", "triangle"), ("blue", "square")]
    assert len(parse("three red squares").objects) == 3
    assert parse("a circle and a square").objects[0].colour is None


def test_splits_are_disjoint_cover_everything_and_are_stable():
    sets = {s: set(prompts(s)) for s in SPLITS}
    assert not (sets["train"] & sets["tune"]) and not (sets["train"] & sets["eval"])
    assert not (sets["tune"] & sets["eval"])
    assert set.union(*sets.values()) == set(all_prompts())
    for skill in SKILLS:
        assert all(prompts(s, skill) for s in SPLITS)
    # The split is a content hash: changing it silently would leak eval prompts into old training runs.
    assert prompts("eval", "single") == ("a green circle", "a green square", "a yellow circle")
    assert split_of("A green circle.") == "eval"
    with pytest.raises(ValueError, match="known: train, tune, eval"):
        prompts("test")


def test_oracle_reads_anti_aliased_renders():
    # Soft edges are colour/background blends; half-red-half-white lies nearer yellow than red.
    rng = np.random.default_rng(11)
    every = all_prompts()
    for _ in range(100):
        p = every[rng.integers(len(every))]
        assert check(render(sample_scene(p, rng), supersample=4), p).ok, p
