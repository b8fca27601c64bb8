"""``rd-tts score`` on image files with a tiny VLM."""

from __future__ import annotations

import argparse

import pytest
from tiny_vlm import random_images

from rd_inference.commands import score
from rd_inference.images import to_pil


def run_score(argv):
    parser = argparse.ArgumentParser()
    score.add_arguments(parser)
    return score.run(parser.parse_args(argv))


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    paths = []
    for i, im in enumerate(to_pil(random_images(3))):
        paths.append(str(root / f"img{i}.png"))
        im.save(paths[-1])
    return paths


def test_score_prints_table_and_ranking(tiny_vlms, image_files, capsys):
    argv = ["--verifier", tiny_vlms["llava"], "--prompt", "a red circle", "--device", "cpu"]
    assert run_score([*argv, "--criteria", "alignment,aesthetics:0.5", *image_files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "alignment" in out[1] and "aesthetics" in out[1]
    ranked = [line.split() for line in out[2:5]]
    assert [r[0] for r in ranked] == ["1", "2", "3"]
    assert sorted(r[2] for r in ranked) == sorted(image_files)
    scores = [float(r[1]) for r in ranked]
    assert scores == sorted(scores, reverse=True)


def test_score_pairwise_and_rationale(tiny_vlms, image_files, capsys):
    argv = ["--verifier", tiny_vlms["qwen3_vl"], "--prompt", "a red circle", "--device", "cpu"]
    assert run_score([*argv, "--pairwise", "--top-k", "2", "--rationale", *image_files]) == 0
    out = capsys.readouterr().out
    assert "pairwise tournament" in out and "tournament winner: " in out and "rationale for" in out


def test_score_missing_image(tiny_vlms, tmp_path):
    with pytest.raises(ValueError, match="missing.png does not exist"):
        run_score(["--verifier", tiny_vlms["llava"], "--prompt", "p", str(tmp_path / "missing.png")])
