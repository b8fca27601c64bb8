"""World v2: grammar and balanced splits, renderer/oracle round trips (aliased and anti-aliased), the
dominant-direction relation rule and "malformed" verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from rd_inference.toyworld.components import build_tokenizer, grammar_words
from rd_inference.toyworld.v2.oracle import check, find_objects
from rd_inference.toyworld.v2.prompts import (
    SPLITS,
    TASKS,
    PromptError,
    all_prompts,
    parse,
    prompts,
    split_of,
    split_sizes,
)
from rd_inference.toyworld.v2.world import COLOURS, RADII, SHAPES, Scene, SceneObject, render, sample_scene
from rd_inference.toyworld.worlds import get_world


@pytest.mark.parametrize("supersample", [1, 2, 3, 4])
def test_oracle_exact_on_renders_of_every_task(supersample):
    rng = np.random.default_rng(100 + supersample)
    bad = []
    for i in range(240):
        task = TASKS[i % len(TASKS)]
        ps = all_prompts(task)
        p = ps[rng.integers(len(ps))]
        res = check(render(sample_scene(p, rng), supersample=supersample), p)
        if not (res.ok and res.task == task and not res.malformed):
            bad.append((p, res.detail, res.malformed))
    assert not bad


@pytest.mark.parametrize("supersample", [1, 4])
def test_oracle_names_every_shape_at_every_radius(supersample):
    for shape in SHAPES:
        for r in RADII:
            for colour in COLOURS:
                im = render(Scene((SceneObject(shape, colour, 23, 24, r),)), supersample=supersample)
                found = find_objects(im)
                assert [(o.shape, o.colour) for o in found] == [(shape, colour)], (shape, r, colour, found)


# A scene rendered for the first prompt must fail the second: one wrong word per aspect.
NEGATIVES = [
    ("a ring", "a circle"),
    ("a diamond", "a square"),
    ("a cross", "a square"),
    ("a ring and a cross", "a ring and a square"),
    ("four black crosses", "five black crosses"),
    ("five red rings", "four red rings"),
    ("two blue diamonds", "two blue squares"),
    ("a purple diamond", "a blue diamond"),
    ("a red square and a green triangle", "a green square and a red triangle"),
    ("a yellow ring left of a blue cross", "a yellow ring right of a blue cross"),
    ("a black circle above a red triangle", "a red triangle above a black circle"),
]


@pytest.mark.parametrize("good,wrong", NEGATIVES)
def test_oracle_rejects_one_wrong_word(good, wrong):
    rng = np.random.default_rng(7)
    for _ in range(5):
        im = render(sample_scene(good, rng))
        assert check(im, good).ok
        assert not check(im, wrong).ok


def _scene(*objs) -> Scene:
    return Scene(tuple(SceneObject(*o) for o in objs))


def test_relation_needs_the_named_direction_to_dominate():
    # Stacked vertically 20 px apart with a 3 px horizontal offset: "above", never "left of".
    im = render(_scene(("circle", "red", 20, 12, 5), ("square", "blue", 23, 32, 5)))
    assert check(im, "a red circle above a blue square").ok
    assert not check(im, "a red circle left of a blue square").ok
    # A diagonal with more horizontal than vertical offset reads as left of, not above.
    im = render(_scene(("circle", "red", 10, 14, 5), ("square", "blue", 36, 26, 5)))
    assert check(im, "a red circle left of a blue square").ok
    assert not check(im, "a red circle above a blue square").ok


def test_touching_objects_and_unknown_shapes_are_malformed():
    touching = render(_scene(("square", "red", 15, 20, 5), ("circle", "blue", 26, 20, 5)))
    res = check(touching, "a red square and a blue circle")
    assert not res.ok and res.malformed.startswith("touching") and not res.detail["clean"]
    merged = render(_scene(("circle", "red", 15, 20, 5), ("circle", "red", 24, 20, 5)))  # one red blob
    res = check(merged, "two red circles")
    assert not res.ok and "blob" in res.malformed
    clean = render(_scene(("circle", "red", 10, 20, 5), ("circle", "red", 30, 20, 5)))
    res = check(clean, "two red circles")
    assert res.ok and res.malformed == "" and res.detail["clean"]


def test_speckle_is_ignored_but_a_real_extra_object_counts():
    base = np.asarray(render(_scene(("ring", "green", 14, 14, 6)))).copy()
    base[40, 40] = COLOURS["red"]  # one stray pixel
    assert check(base, "a green ring").ok
    extra = render(_scene(("ring", "green", 14, 14, 6), ("triangle", "red", 36, 36, 4)))
    assert not check(extra, "a green ring").ok


def test_splits_are_disjoint_balanced_and_stable():
    seen = {}
    for split in SPLITS:
        for p in prompts(split):
            assert p not in seen
            seen[p] = split
            assert split_of(p) == split
    assert set(seen) == set(all_prompts())
    for task in TASKS:
        n = len(all_prompts(task))
        n_eval, n_tune = split_sizes(n)
        assert len(prompts("eval", task)) == n_eval and len(prompts("tune", task)) == n_tune
        assert n_eval >= min(40, n // 2) and len(prompts("train", task)) >= 1
    assert prompts("eval", "counting")[:2] == ("two red rings", "two green circles")  # stable across versions


@pytest.mark.parametrize("bad", ["a circle and a circle", "a red ring and a red cross", "six red rings",
                                 "a red ring left of a red ring", "a red hexagon", "two red crosss", ""])
def test_parse_rejects_prompts_outside_the_grammar(bad):
    with pytest.raises(PromptError, match="Templates"):
        parse(bad)


def test_parse_reads_every_task_and_plurals():
    assert parse("Five black crosses.").objects == parse("five black crosses").objects
    assert len(parse("five black crosses").objects) == 5
    assert parse("a ring").objects[0].colour is None
    assert parse("a red circle below a blue ring").relation == "below"
    assert {parse(p).task for p in all_prompts()} == set(TASKS)


def test_tokenizer_keeps_every_v2_word_whole():
    tok = build_tokenizer("v2")
    for word in grammar_words("v2"):
        assert tok.tokenize(word) == [word + "</w>"]


def test_worlds_registry():
    w1, w2, w3 = get_world("v1"), get_world("v2"), get_world("v3")
    assert (w1.size, w2.size, w3.size) == (32, 48, 64) and w2.tasks == w3.tasks == TASKS
    with pytest.raises(ValueError, match="known: v1, v2, v3"):
        get_world("v4")


def _canvas():
    from rd_inference.toyworld.v2.world import BACKGROUND, SIZE

    return np.full((SIZE, SIZE, 3), BACKGROUND, dtype=np.uint8)


def test_a_shaded_or_two_tone_object_is_one_object():
    from rd_inference.toyworld.v2.oracle import check
    from rd_inference.toyworld.v2.world import COLOURS

    img = _canvas()
    img[14:30, 14:30] = COLOURS["green"]
    img[20:24, 16:22] = COLOURS["black"]  # a dark patch, as the pipeline shades: 24 of 256 pixels
    res = check(img, "a green square")
    assert res.ok and [(o.shape, o.colour) for o in res.objects] == [("square", "green")]
    img[14:30, 22:30] = COLOURS["purple"]  # half green, half purple: a square of no single colour
    assert check(img, "a square").ok
    assert not check(img, "a green square").ok and check(img, "a square").objects[0].colour == "mixed"


def test_touching_objects_of_two_shapes_stay_two_and_are_reported():
    from rd_inference.toyworld.v2.oracle import check
    from rd_inference.toyworld.v2.world import COLOURS

    img = _canvas()
    img[14:26, 8:20] = COLOURS["red"]
    img[14:26, 20:32] = COLOURS["blue"]  # two squares side by side: together a 2:1 bar, not one shape
    res = check(img, "a square and a circle")
    assert not res.ok and res.malformed.startswith("touching: the red square and the blue square")


def test_an_object_smaller_than_the_world_draws_is_malformed():
    from rd_inference.toyworld.v2.oracle import SMALLEST, check
    from rd_inference.toyworld.v2.world import COLOURS

    img = _canvas()
    img[20:25, 20:25] = COLOURS["red"]  # 25 pixels; the world's smallest object has about 61
    res = check(img, "a red square")
    assert not res.ok and res.malformed.startswith("too small to name") and 25 < SMALLEST
