"""The toy world's CLIP-style scorer: oracle labels for every image x prompt pair, a resumable training run
whose loss falls, and a saved folder that ``clip:`` loads like any CLIP checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rd_inference.toyworld.train_clip as tc
import rd_inference.toyworld.train_verifier as tv
from rd_inference.toyworld.v2.oracle import check
from rd_inference.toyworld.v2.prompts import prompts
from rd_inference.toyworld.v2.world import render, sample_scene
from rd_inference.verifiers.clip import ClipScoreVerifier


@pytest.fixture
def data(monkeypatch):
    tv.use_world("v2")
    monkeypatch.setattr(tv, "load_pipeline", lambda *a, **k: pytest.fail("the test must not sample a pipeline"))
    rng = np.random.default_rng(0)
    ps = list(prompts("train")[::300])
    images = [render(sample_scene(p, rng)) for p in ps]
    own, other = tv.make_pairs(images, ps, rng, 0)
    yield {"images": torch.from_numpy(np.stack([np.asarray(im) for im in images])),
           "pools": {"render_own": own, "render_other": other, "sample_own": own, "sample_other": other},
           "prompts": ps}, images, ps
    tv.use_world("v1")


def test_every_pair_of_a_batch_is_labelled_by_the_oracle(data):
    d, images, ps = data
    tv.read_images(d, lambda **_: None)
    views = [(i, False, 0, 0) for i in range(len(ps))]
    labels = tc.pair_labels(d, views, ps)
    expected = torch.tensor([[float(check(im, p).ok) for p in ps] for im in images])
    assert torch.equal(labels, expected)
    assert labels.diagonal().all() and not labels.all()  # renders pass their own prompt, not every other


def test_the_tokenizer_ends_every_text_where_clip_pools():
    tok = tc.clip_tokenizer("v2")
    ids = tok(["two red circles", "a ring"])["input_ids"]
    assert all(row[-1] == tok.convert_tokens_to_ids(tc.EOS) for row in ids)
    assert tok.convert_tokens_to_ids(tc.EOS) != 2  # CLIP reads eos id 2 as its legacy argmax pooling


def test_training_resumes_lowers_the_loss_and_saves_a_clip_folder(data, tmp_path):
    d, images, ps = data
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    torch.save(d, work / "data.pt")
    argv = ["--world", "v2", "--work", str(work), "--out", str(out), "--batch", "8", "--width", "64",
            "--threads", "1", "--lr", "3e-3"]
    tc.main([*argv, "--train-steps", "30", "--time-budget-min", "1e-4"])  # a leg stopped early: no folder yet
    assert not out.exists() and torch.load(work / "clip_ckpt.pt", weights_only=False)["step"] < 50
    tc.main([*argv, "--train-steps", "50"])
    assert torch.load(work / "clip_ckpt.pt", weights_only=False)["step"] == 50
    logged = [json.loads(line) for line in (work / "clip_log.jsonl").read_text().splitlines()]
    loss = {r["step"]: r["loss"] for r in logged if "loss" in r}
    assert loss[50] < loss[1]
    scorer = ClipScoreVerifier(str(out), device="cpu")
    scores = scorer(images[:3], ps[0])
    assert scores.shape == (3,) and bool(((scores >= -1) & (scores <= 1)).all())
    assert torch.equal(scores, ClipScoreVerifier(str(out), device="cpu")(images[:3], ps[0]))
    # Trained on these very pairs, the scorer ranks an image's own prompt above the others' on average.
    tv.use_world("v2")
    cos = torch.stack([ClipScoreVerifier(str(out), device="cpu")(images, p) for p in ps], dim=1)
    assert cos.diagonal().mean() > cos.mean()
