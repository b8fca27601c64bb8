"""Round-robin tournament over the top-k: with a scripted judge, and on a tiny VLM."""

from __future__ import annotations

import pytest
import torch
from tiny_vlm import random_images

from rd_inference.images import to_tensor
from rd_inference.pairwise import tournament


class BrightnessJudge:
    """Prefers the brighter image, and (like real VLMs) is biased toward whichever it is shown second."""

    def __init__(self):
        self.calls = []

    def __call__(self, images, prompt):
        return to_tensor(images).mean(dim=(1, 2, 3))

    def compare(self, first, second, prompt):
        self.calls.append(len(first))
        a, b = self(first, prompt), self(second, prompt)
        return 0.5 * (self._shown_second_wins(a, b) + 1 - self._shown_second_wins(b, a))

    @staticmethod
    def _shown_second_wins(x, y):
        return torch.sigmoid(20 * (y - x) + 0.5)  # +0.5: position bias toward the second image


def grey(levels):
    return torch.stack([torch.full((3, 8, 8), v) for v in levels])


def test_brightest_wins_and_table_is_consistent():
    judge = BrightnessJudge()
    result = tournament(judge, grey([0.2, 0.9, 0.5, 0.7]), "p")
    assert result.winner == 1
    assert result.candidates == [0, 1, 2, 3]
    assert result.wins.tolist() == [0, 3, 1, 2]
    assert result.wins.sum() == 4 * 3 / 2
    assert torch.allclose(result.preference + result.preference.T, torch.ones(4, 4, dtype=torch.float64))
    assert judge.calls == [6]  # one batched compare over all pairs
    assert "*" in result.table().splitlines()[2]


def test_top_k_uses_pointwise_scores():
    judge = BrightnessJudge()
    images = grey([0.2, 0.9, 0.5, 0.7, 0.1])
    result = tournament(judge, images, "p", top_k=2)
    assert result.candidates == [1, 3] and result.winner == 1
    given = tournament(judge, images, "p", top_k=3, scores=[5.0, 0.0, 4.0, 3.0, 0.0])
    assert given.candidates == [0, 2, 3] and given.winner == 3


def test_single_image_and_bad_input():
    assert tournament(BrightnessJudge(), grey([0.4]), "p").winner == 0
    with pytest.raises(ValueError, match="no images"):
        tournament(BrightnessJudge(), [], "p")
    with pytest.raises(ValueError, match="top_k"):
        tournament(BrightnessJudge(), grey([0.1, 0.2]), "p", top_k=0)
    with pytest.raises(ValueError, match="pointwise scores"):
        tournament(BrightnessJudge(), grey([0.1, 0.2]), "p", scores=[1.0])


def test_tournament_on_a_tiny_vlm(tiny_verifiers):
    v = tiny_verifiers["qwen2_5_vl"]
    images = random_images(4)
    rows = v.timings["rows"]
    result = tournament(v, images, "a red circle", top_k=3)
    assert v.timings["rows"] - rows == 4 + 3 * 2  # pointwise for top-k, then both orders of 3 pairs
    assert len(result.candidates) == 3 and result.winner in result.candidates
    assert result.wins.sum().item() == pytest.approx(3.0)
    assert torch.allclose(result.preference + result.preference.T, torch.ones(3, 3, dtype=torch.float64))
