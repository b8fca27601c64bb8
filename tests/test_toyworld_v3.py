"""World v3: the harder grammar (counts to six, three-object colour binding), its splits, and v2's
oracle at 64x64 reading every render right (aliased and anti-aliased)."""

from __future__ import annotations

import numpy as np
import pytest

from rd_inference.toyworld.components import build_tokenizer, grammar_words
from rd_inference.toyworld.v2.prompts import split_sizes
from rd_inference.toyworld.v3.oracle import SMALLEST, check, find_objects
from rd_inference.toyworld.v3.prompts import (
    SPLITS,
    TASKS,
    PromptError,
    all_prompts,
    parse,
    prompts,
    split_of,
)
from rd_inference.toyworld.v3.world import (
    BACKGROUND,
    COLOURS,
    RADII,
    RADII_CROWDED,
    SHAPES,
    SIZE,
    Scene,
    SceneObject,
    render,
    sample_scene,
)


@pytest.mark.parametrize("supersample", [1, 2, 4])
def test_oracle_exact_on_renders_of_every_task(supersample):
    rng = np.random.default_rng(300 + supersample)
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
        for r in sorted({*RADII, *RADII_CROWDED}):
            for colour in COLOURS:
                im = render(Scene((SceneObject(shape, colour, 31, 32, r),)), supersample=supersample)
                found = find_objects(im)
                assert [(o.shape, o.colour) for o in found] == [(shape, colour)], (shape, r, colour, found)


def test_the_hard_prompts_render_and_check():
    rng = np.random.default_rng(5)
    for p in ("six black crosses", "six yellow rings", "a red square and a green triangle and a blue ring"):
        for _ in range(10):
            scene = sample_scene(p, rng)
            assert len(scene.objects) == len(parse(p).objects)
            assert check(render(scene), p).ok


NEGATIVES = [
    ("six black crosses", "five black crosses"),
    ("five red rings", "six red rings"),
    ("a red square and a green triangle and a blue ring", "a red square and a blue triangle and a green ring"),
    ("a red square and a green triangle and a blue ring", "a red square and a green triangle"),
    ("a red square and a green triangle", "a red square and a green triangle and a blue ring"),
    ("a yellow ring left of a blue cross", "a yellow ring right of a blue cross"),
]


@pytest.mark.parametrize("good,wrong", NEGATIVES)
def test_oracle_rejects_one_wrong_word(good, wrong):
    rng = np.random.default_rng(11)
    for _ in range(5):
        im = render(sample_scene(good, rng))
        assert check(im, good).ok
        assert not check(im, wrong).ok


def test_three_object_prompts_read_in_any_order_and_keep_one_split():
    a = "a red square and a green triangle and a blue ring"
    b = "a blue ring and a red square and a green triangle"
    assert set(parse(a).objects) == set(parse(b).objects) and parse(b).task == "color_attr"
    assert split_of(a) == split_of(b)
    rng = np.random.default_rng(2)
    assert check(render(sample_scene(a, rng)), b).ok


def test_splits_are_disjoint_balanced_and_stable():
    seen = {}
    for split in SPLITS:
        for p in prompts(split):
            assert p not in seen
            seen[p] = split
            assert split_of(p) == split
    assert set(seen) == set(all_prompts())
    for task in TASKS:
        n_eval, n_tune = split_sizes(len(all_prompts(task)))
        assert len(prompts("eval", task)) == n_eval and len(prompts("tune", task)) == n_tune
    assert {t: len(prompts("eval", t)) for t in ("counting", "position", "color_attr")} == {
        "counting": 40, "position": 504, "color_attr": 330}
    counting = prompts("eval", "counting")
    assert {p.split()[0] for p in counting} == {"two", "three", "four", "five", "six"}
    three = [p for p in prompts("eval", "color_attr") if len(parse(p).objects) == 3]
    assert 0.5 < len(three) / 330 < 0.9  # both kinds of colour-binding prompt are evaluated


@pytest.mark.parametrize("bad", ["seven red rings", "a red ring and a red cross and a blue square",
                                 "a red ring and a blue ring and a green square", "a red hexagon", ""])
def test_parse_rejects_prompts_outside_the_grammar(bad):
    with pytest.raises(PromptError, match="v3 grammar"):
        parse(bad)


def test_tokenizer_keeps_every_v3_word_whole():
    tok = build_tokenizer("v3")
    assert "six" in grammar_words("v3") and "six" not in grammar_words("v2")
    for word in grammar_words("v3"):
        assert tok.tokenize(word) == [word + "</w>"]
    longest = max(all_prompts(), key=lambda p: len(tok(p).input_ids))
    assert len(tok(longest).input_ids) <= tok.model_max_length


def test_an_object_smaller_than_the_world_draws_is_malformed():
    img = np.full((SIZE, SIZE, 3), BACKGROUND, dtype=np.uint8)
    img[20:27, 20:27] = COLOURS["red"]  # 49 pixels; the smallest object v3 draws has 84
    res = check(img, "a red square")
    assert not res.ok and res.malformed.startswith("too small to name") and 49 < SMALLEST


def test_the_oracle_refuses_images_of_another_size():
    with pytest.raises(ValueError, match="world-v3 oracle reads 64x64"):
        check(np.zeros((48, 48, 3), np.uint8), "a ring")


def test_the_bench_and_the_verifier_trainer_know_world_v3(tmp_path):
    import json

    from rd_inference.commands.bench import _world_of
    from rd_inference.toyworld import train_verifier as tv

    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"sample_size": 64}))
    assert _world_of(tmp_path) == "v3"
    tv.use_world("v3")
    try:
        assert (tv.SIZE, tv.PATCH, tv.CAP) == (64, 8, 6)
        scene = np.asarray(render(sample_scene("six red rings", np.random.default_rng(0))))
        objects, malformed = tv._read(tv.label_pixels(scene))
        assert len(objects) == 6 and malformed == "" and tv.judge(objects, tv.parse("six red rings")).ok
        assert not tv.judge(objects, tv.parse("five red rings")).ok
        # a three-object colour scene is described by the grammar's prompt for it, if that is a train prompt
        three = next(p for p in tv.prompts("train", "color_attr") if len(tv.parse(p).objects) == 3)
        found = tv._read(tv.label_pixels(np.asarray(render(sample_scene(three, np.random.default_rng(1))))))
        assert three in tv.describe(*found)
    finally:
        tv.use_world("v1")  # the module's default binding, which other tests expect
