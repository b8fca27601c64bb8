"""The verifier's training code on world v2: describing samples, word-level targets with v2's plurals and
counts, "malformed" images as negatives, and a tiny resumable training run that saves a loadable VLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rd_inference.toyworld.train_verifier as tv
from rd_inference.toyworld.v2.oracle import check, find_objects
from rd_inference.toyworld.v2.prompts import TASKS, prompts, split_of
from rd_inference.toyworld.v2.world import Scene, SceneObject, render, sample_scene
from rd_inference.yes_token import YesTokenVerifier


@pytest.fixture
def v2():
    tv.use_world("v2")
    yield tv
    tv.use_world("v1")


def test_use_world_binds_the_v2_grammar_and_sizes(v2):
    assert (v2.SIZE, v2.PATCH, v2.GRID, v2.CAP) == (48, 6, 8, 5)
    assert v2.SINGULAR["crosses"] == "cross" and set(v2.SKILLS) == set(TASKS)
    with pytest.raises(ValueError, match="known: v1, v2"):
        v2.use_world("v9")


def test_described_prompts_are_v2_train_prompts_the_image_satisfies(v2):
    rng = np.random.default_rng(3)
    for task in TASKS:
        prompt = prompts("train", task)[0]
        image = render(sample_scene(prompt, rng))
        labels = v2.label_pixels(np.asarray(image))
        described = v2.describe(*v2._read(labels))
        assert described, prompt
        assert all(split_of(p) == "train" and check(image, p).ok for p in described)


def test_malformed_images_describe_nothing_and_label_negative(v2):
    merged = render(Scene((SceneObject("circle", "red", 15, 20, 5), SceneObject("circle", "red", 24, 20, 5))))
    data = {"images": torch.from_numpy(np.asarray(merged)[None].copy()),
            "pools": {k: [(0, "two red circles", False)] for k in ("render_own", "render_other", "sample_own",
                                                                   "sample_other")}}
    v2.read_images(data, lambda **_: None)
    assert "blob" in data["malformed"][0, False] and data["described"][0] == []
    assert not v2.judge(data["objects"][0, False], v2.parse("two red circles"), data["malformed"][0, False]).ok


def test_mention_targets_read_v2_plurals_and_count_to_five(v2):
    objs = find_objects(render(Scene(tuple(SceneObject("cross", "black", x, y, 5) for x, y in ((7, 7), (22, 7), (37, 7), (7, 30), (22, 30))))))
    n = -100
    assert v2.mention_targets(objs, "five black crosses") == [[5, n, n, n, n], [n, 5, 5, n, 5]]
    assert v2.mention_targets(objs, "a cross") == [[n, 5, n, n, 5]]


def test_v2_training_runs_resumes_and_saves_a_48px_verifier(v2, tmp_path, monkeypatch):
    monkeypatch.setattr(v2, "load_pipeline", lambda *a, **k: pytest.fail("the test must not sample a pipeline"))
    rng = np.random.default_rng(0)
    ps = list(prompts("train")[::400])
    images = [render(sample_scene(p, rng)) for p in ps]
    own, other = v2.make_pairs(images, ps, rng, 0)
    data = {"images": torch.from_numpy(np.stack([np.asarray(im) for im in images])),
            "pools": {"render_own": own, "render_other": other, "sample_own": own, "sample_other": other},
            "prompts": ps}
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    torch.save(data, work / "data.pt")

    def argv(train_steps):
        return ["--world", "v2", "--work", str(work), "--out", str(out), "--vision-steps", "2", "--vision-batch", "4",
                "--train-steps", str(train_steps), "--batch", "4", "--width", "64", "--layers", "1",
                "--text-layers", "1", "--monitor-every", "0", "--threads", "1"]

    v2.main(argv(2))
    assert torch.load(work / "ckpt.pt", weights_only=False)["step"] == 4
    v2.main(argv(3))
    assert torch.load(work / "ckpt.pt", weights_only=False)["step"] == 5
    verifier = YesTokenVerifier.from_pretrained(str(out), device="cpu")
    scores = verifier([images[0], images[1]], [ps[0], ps[1]])
    assert scores.shape == (2,) and bool(((scores >= 0) & (scores <= 1)).all())
    assert verifier.model.config.vision_config.image_size == 48


def test_reliability_bins_scores_and_counts_oracle_passes(tmp_path):
    labels = [True, False, True, True, False, False]
    scores = [0.95, 0.91, 1.0, 0.55, 0.52, 0.05]
    rows = tv.reliability(labels, scores, bins=10)
    assert [(r["low"], r["n"]) for r in rows] == [(0.0, 1), (0.5, 2), (0.9, 3)]
    top = rows[-1]
    assert top["oracle_pass"] == pytest.approx(2 / 3) and top["mean_score"] == pytest.approx((0.95 + 0.91 + 1.0) / 3)
    assert sum(r["n"] for r in rows) == len(scores)
    tv.plot_reliability(rows, tmp_path / "r.png", "test")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_evaluation_images_each_have_a_seed_of_their_own(v2):
    """Images of different prompts made from one seed start from the same noise and err together, so
    every held-out evaluation image gets its own seed (the counting row once read 45% on 40 seed-0 images)."""
    from PIL import Image

    class Pipe:  # records each image's generator seed; blank images are enough for the oracle
        def __init__(self):
            self.seeds: list[int] = []

        def __call__(self, prompts, generator, **kw):
            self.seeds += [g.initial_seed() for g in generator]
            return type("Out", (), {"images": [Image.new("RGB", (48, 48)) for _ in prompts]})()

    pipe = Pipe()
    samples = tv.evaluation_samples(pipe, seeds_per_skill=12, first_seed=500)
    assert [s.seed for s in samples] == pipe.seeds == list(range(500, 500 + len(samples)))
    per_task = {t: sum(s.result.skill == t for s in samples) for t in TASKS}
    assert all(10 <= n <= 12 for n in per_task.values()), per_task
    assert all(not s.ok for s in samples)  # a blank image passes nothing
