"""The shipped toy VLM verifier: loads offline through the public loaders, scores in [0,1], and the
training inputs are the scoring inputs; the README's main-job command runs on the embedded models."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rd_inference.toyworld import render, sample_scene
from rd_inference.toyworld.oracle import check, find_objects
from rd_inference.toyworld.prompts import SKILLS, parse, prompts, split_of
from rd_inference.toyworld.train_verifier import (
    AUX_CLASSES,
    GRID,
    describe,
    mention_places,
    mention_targets,
    near_miss,
    patch_targets,
)
from rd_inference.toyworld.train_verifier import main as train_main
from rd_inference.toyworld.vlm import build_vlm, training_inputs, wrap
from rd_inference.toyworld.world import Scene, SceneObject
from rd_inference.toyworld.worlds import get_world
from rd_inference.verifier_loading import default_verifier_path, load_verifier
from rd_inference.yes_token import YesTokenVerifier

ROOT = Path(__file__).resolve().parents[1]
V1_VERIFIER = get_world("v1").verifier_path  # this file tests world v1; the embedded default is v2's


def test_shipped_verifier_scores_images_in_unit_interval():
    v = YesTokenVerifier.from_pretrained(str(V1_VERIFIER), device="cpu")
    rng = np.random.default_rng(0)
    images = [render(sample_scene("two red circles", rng)) for _ in range(2)]
    scores = v(images, "two red circles")
    assert scores.shape == (2,) and bool(((scores >= 0) & (scores <= 1)).all())
    tensor_scores = v(torch.rand(3, 3, 32, 32), "a blue square")
    assert tensor_scores.shape == (3,)
    assert load_verifier(None, device="cpu").source == str(default_verifier_path())


def test_shipped_verifier_lists_only_train_prompts():
    listed = (V1_VERIFIER / "training_prompts.txt").read_text().split("\n")
    assert {split_of(p) for p in listed if p} == {"train"}


def test_training_inputs_are_the_scoring_inputs():
    model, processor = build_vlm(0)
    v = wrap(model, processor)
    rng = np.random.default_rng(1)
    ims = [render(sample_scene("a red circle", rng)), render(sample_scene("a blue square left of a red circle", rng))]
    texts = ["a red circle", "a blue square left of a red circle"]
    ours = training_inputs(v, ims, texts)
    rows = [([im], c.render(p)) for im, p in zip(ims, texts) for c in v.criteria]
    theirs = v._inputs(rows)
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])
    assert processor.tokenizer.decode(ours["input_ids"][1]).count("a blue square left of a red circle") == 1


def test_near_misses_stay_in_the_train_split():
    rng = np.random.default_rng(0)
    for p in prompts("train")[::40]:
        q = near_miss(p, rng)
        assert q != p and split_of(q) == "train"


def test_generate_runs_on_the_embedded_models(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "rd_inference.cli", "generate", "two red circles", "--out",
                          str(tmp_path / "demo")], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "demo" / "chosen.png").is_file()


def test_described_prompts_are_train_prompts_the_image_satisfies():
    rng = np.random.default_rng(3)
    for prompt in [prompts("train", skill)[0] for skill in SKILLS]:
        image = render(sample_scene(prompt, rng))
        described = describe(find_objects(image))
        assert described, prompt
        assert all(split_of(p) == "train" and check(image, p).ok for p in described)
    assert describe(()) == []


def test_patch_and_mention_targets_follow_the_oracle():
    image = render(Scene((SceneObject("triangle", "yellow", 8, 16, 4), SceneObject("square", "blue", 24, 16, 4))))
    cls, xy, mix = patch_targets(image)
    assert cls.shape == (GRID * GRID,) and int((cls > 0).sum()) == 2 and int(cls.max()) < AUX_CLASSES
    assert xy[cls > 0][:, 0].tolist()[0] < 0 < xy[cls > 0][:, 0].tolist()[1]  # left object, then right
    assert torch.allclose(mix.sum(-1), torch.ones(GRID * GRID))
    objects = find_objects(image)
    n = -100
    assert mention_targets(objects, "a yellow triangle left of a blue square") == [
        [1, n, n, n, n], [n, 1, 1, n, n], [1, n, n, n, n], [n, 1, 1, 1, 2]]
    assert mention_targets(objects, "a yellow triangle right of a blue square")[-1] == [n, 1, 1, 0, 2]
    assert mention_targets(objects, "two red circles") == [[0, n, n, n, n], [n, 0, 0, n, 2]]
    assert mention_targets(objects, "a blue triangle and a yellow square") == [
        [1, n, n, n, n], [n, 1, 0, n, n], [1, n, n, n, n], [n, 1, 0, n, 2]]
    assert mention_targets(objects, "a triangle and a square") == [[n, 1, n, n, n], [n, 1, n, n, 2]]
    # Where the one object each bound shape word names is: the look-up a relation compares.
    place = {o.shape: (o.cx / 31 * 2 - 1, o.cy / 31 * 2 - 1) for o in objects}
    (tx, ty), (sx, sy) = place["triangle"], place["square"]
    assert mention_places(objects, "a yellow triangle left of a blue square") == [None, (tx, ty), None, (sx, sy)]
    assert mention_places(objects, "a blue triangle and a yellow square") == [None, None, None, None]
    assert mention_places(objects, "a triangle and a square") == [None, None]
    twins = find_objects(render(Scene((SceneObject("circle", "red", 8, 8, 3), SceneObject("circle", "red", 24, 8, 3)))))
    assert mention_places(twins, "two red circles") == [None, None]  # no single object to point at


def _one_image_data(tv, image, prompt):
    pool = [(0, prompt, True)]
    data = {"images": torch.from_numpy(np.asarray(image)[None].copy()),
            "pools": {"render_own": pool, "render_other": pool, "sample_own": pool, "sample_other": pool}}
    tv.read_images(data, lambda **_: None)
    return data


def test_mirrored_rows_are_labelled_again_by_the_oracle(monkeypatch):
    """A "left of" scene shown mirrored satisfies "right of": the label, the mention targets and the
    patch targets all follow the mirror image, not the stored ones."""
    import rd_inference.toyworld.train_verifier as tv

    image = render(Scene((SceneObject("triangle", "yellow", 8, 16, 4), SceneObject("square", "blue", 24, 16, 4))))
    prompt = "a yellow triangle left of a blue square"
    assert check(image, prompt).ok and not check(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), prompt).ok
    data = _one_image_data(tv, image, prompt)
    monkeypatch.setattr(tv, "MIX", {"render_own": 1.0})
    views, images, texts, labels, mentions = tv._batch(data, 4, np.random.default_rng(0), p_flip=1.0)
    assert all(f and dx == dy == 0 for _, f, dx, dy in views)
    assert labels.tolist() == [0.0] * 4 and texts == [prompt] * 4
    assert np.array_equal(np.asarray(images[0]), np.asarray(image)[:, ::-1])
    assert mentions[0][0][-1][3] == 0  # the relation no longer holds
    (plain, *_), (mirrored, *_) = (tv.view_targets(data, [(0, f, 0, 0)]) for f in (False, True))
    assert plain[plain > 0].tolist() == mirrored[mirrored > 0].tolist()[::-1]  # left and right swapped


def test_moved_rows_keep_their_label_and_their_targets_move_with_them(monkeypatch):
    """A view moved by (dx, dy) is the image moved, read by the oracle as the same objects moved: the
    stored label holds, and the patch targets are those the oracle reads off the moved image."""
    import rd_inference.toyworld.train_verifier as tv

    image = render(Scene((SceneObject("circle", "red", 9, 8, 4), SceneObject("square", "green", 20, 22, 5))))
    prompt = "a red circle above a green square"
    data = _one_image_data(tv, image, prompt)
    left, right, up, down = data["room"][0, 0].tolist()
    assert (left, right, up, down) == (4, 5, 3, 3)  # content spans x 5..25, y 4..27; a 1-pixel border stays
    monkeypatch.setattr(tv, "MIX", {"render_own": 1.0})
    views, images, _, labels, _ = tv._batch(data, 16, np.random.default_rng(1), max_shift=2)
    assert labels.tolist() == [1.0] * 16 and any(dx or dy for _, _, dx, dy in views)
    for (i, f, dx, dy), im in zip(views, images):
        assert -2 <= dx <= 2 and -2 <= dy <= 2
        assert check(im, prompt).ok
        moved = [(o.cx, o.cy) for o in find_objects(im)]
        assert moved == [(o.cx + dx, o.cy + dy) for o in find_objects(image)]
        for got, want in zip(tv.view_targets(data, [(i, f, dx, dy)]), patch_targets(im)):
            assert torch.allclose(got[0], want)


def test_position_near_misses_move_the_same_objects():
    rng = np.random.default_rng(0)
    p = next(q for q in prompts("train", "position"))
    same = [q for q in (near_miss(p, rng, p_any=0.0, p_relation=1.0) for _ in range(30))
            if sorted(o.colour + o.shape for o in parse(q).objects) == sorted(o.colour + o.shape for o in parse(p).objects)]
    assert len(same) == 30 and all(q != p and split_of(q) == "train" for q in same)


def test_training_runs_resumes_and_saves_a_loadable_verifier(tmp_path, monkeypatch):
    """Both stages for a few steps on a tiny data set (renders only), then a resumed run, then loading."""
    import rd_inference.toyworld.train_verifier as tv

    def no_pipeline(*_a, **_k):
        raise AssertionError("the test must not sample the pipeline")

    monkeypatch.setattr(tv, "load_pipeline", no_pipeline)
    rng = np.random.default_rng(0)
    ps = list(prompts("train")[::60])
    images = [render(sample_scene(p, rng)) for p in ps]
    own, other = tv.make_pairs(images, ps, rng, 0)
    data = {"images": torch.from_numpy(np.stack([np.asarray(im) for im in images])),
            "pools": {"render_own": own, "render_other": other, "sample_own": own, "sample_other": other},
            "prompts": ps}
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    torch.save(data, work / "data.pt")

    def argv(train_steps):
        return ["--work", str(work), "--out", str(out), "--vision-steps", "2", "--vision-batch", "4", "--train-steps",
                str(train_steps), "--batch", "4", "--width", "64", "--layers", "1", "--text-layers", "1", "--monitor-every", "0",
                "--threads", "1"]

    train_main(argv(2))
    assert torch.load(work / "ckpt.pt", weights_only=False)["step"] == 4
    train_main(argv(3))  # resumes at step 4 and trains one more
    assert torch.load(work / "ckpt.pt", weights_only=False)["step"] == 5
    v = YesTokenVerifier.from_pretrained(str(out), device="cpu")
    assert v(images[:2], ps[0]).shape == (2,)
    assert (out / "model.safetensors").is_file()
