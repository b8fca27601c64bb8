"""The shipped toy VLM verifier: loads offline through the public loaders, scores in [0,1], and the
training inputs are the scoring inputs; the README's main-job command runs on the embedded models."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from rd_inference.toyworld import render, sample_scene
from rd_inference.toyworld.prompts import prompts, split_of
from rd_inference.toyworld.train_verifier import near_miss
from rd_inference.toyworld.vlm import build_vlm, training_inputs, wrap
from rd_inference.verifier_loading import default_verifier_path, load_verifier
from rd_inference.yes_token import YesTokenVerifier

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_verifier_scores_images_in_unit_interval():
    v = YesTokenVerifier.from_pretrained(str(default_verifier_path()), device="cpu")
    rng = np.random.default_rng(0)
    images = [render(sample_scene("two red circles", rng)) for _ in range(2)]
    scores = v(images, "two red circles")
    assert scores.shape == (2,) and bool(((scores >= 0) & (scores <= 1)).all())
    tensor_scores = v(torch.rand(3, 3, 32, 32), "a blue square")
    assert tensor_scores.shape == (3,)
    assert load_verifier(None, device="cpu").source == str(default_verifier_path())


def test_shipped_verifier_lists_only_train_prompts():
    listed = (default_verifier_path() / "training_prompts.txt").read_text().split("\n")
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
