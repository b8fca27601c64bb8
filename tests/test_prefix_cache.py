"""Shared-prefix reuse in the yes-token verifier: equal to the uncached scores, checked before it is
trusted, and off where it cannot apply."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from rd_inference.toyworld.worlds import get_world
from rd_inference.verifiers import prefix_cache
from rd_inference.verifiers.prefix_cache import PrefixCache, chunks_of, groups_of
from rd_inference.yes_token import YesTokenVerifier

VERIFIER = str(get_world("v2").weights / "verifier")
CRITERIA = "alignment,visual_quality,object_consistency"


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(5)]


def _verifier(mode, **kwargs):
    return YesTokenVerifier.from_pretrained(VERIFIER, criteria=CRITERIA, prefix_cache=mode, **kwargs)


def _scores(verifier, images, prompt="a red circle"):
    s = verifier.score(images, prompt)
    return torch.stack([s.full, s.conditional])


@pytest.mark.parametrize("max_batch", [8, 4, 2])
def test_cached_scores_equal_uncached(images, max_batch):
    # max_batch 2 < 3 criteria: an image's questions are split over chunks and still share the prefix.
    off = _scores(_verifier("off", max_batch=max_batch), images)
    on = _verifier("on", max_batch=max_batch)
    calls = []
    real = prefix_cache.shared_prefix_logits
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prefix_cache, "shared_prefix_logits", lambda *a: calls.append(1) or real(*a))
        cached = _scores(on, images)
    assert calls, "the cache was never used"
    assert torch.allclose(cached, off, atol=1e-5, rtol=0)


def test_prompts_per_image_are_cached_exactly(images):
    prompts = ["a red circle", "two blue squares left of a ring", "a ring", "a cross and a ring", "a green diamond"]
    off = _verifier("off").score(images, prompts).conditional
    on = _verifier("on").score(images, prompts).conditional
    assert torch.allclose(on, off, atol=1e-5, rtol=0)


def test_auto_checks_its_first_use_then_keeps_the_cache(images):
    verifier = _verifier("auto")
    first = _scores(verifier, images)
    assert verifier.prefix_cache.checked is True
    assert verifier.prefix_cache.last_difference < 1e-4
    assert torch.allclose(_scores(verifier, images), first, atol=1e-5, rtol=0)


def test_auto_turns_the_cache_off_when_it_disagrees(images, monkeypatch):
    real = prefix_cache.shared_prefix_logits
    monkeypatch.setattr(prefix_cache, "shared_prefix_logits", lambda *a: real(*a) + torch.randn(real(*a).shape))
    verifier = _verifier("auto")
    reference = _scores(_verifier("off"), images)
    # The first call answers with the uncached forward, and so does every later one.
    assert torch.allclose(_scores(verifier, images), reference, atol=1e-5, rtol=0)
    assert verifier.prefix_cache.checked is False
    assert not verifier.prefix_cache.wanted([[0, 1]])
    assert torch.allclose(_scores(verifier, images), reference, atol=1e-5, rtol=0)


def test_one_criterion_never_uses_the_cache(images, monkeypatch):
    monkeypatch.setattr(prefix_cache, "shared_prefix_logits", lambda *a: pytest.fail("cache used"))
    YesTokenVerifier.from_pretrained(VERIFIER, prefix_cache="on").score(images, "a ring")


def test_the_mode_is_checked_and_travels_with_the_verifier(images):
    with pytest.raises(ValueError, match="prefix_cache must be one of auto, on, off"):
        PrefixCache("yes")
    verifier = _verifier("off")
    assert verifier.spec()["prefix_cache"] == "off"
    copy = pickle.loads(pickle.dumps(verifier))
    assert copy.prefix_cache.mode == "off"
    assert torch.allclose(_scores(copy, images), _scores(verifier, images))


def test_groups_and_chunks():
    a, b = [object()], [object()]
    rows = [(a, "q1"), (a, "q2"), (b, "q1"), ([a[0]], "q3"), (b, "q2")]
    assert groups_of(rows) == [[0, 1], [2], [3], [4]]  # same image objects, consecutive rows
    assert chunks_of([[0, 1, 2], [3, 4, 5], [6]], 4) == [[[0, 1, 2]], [[3, 4, 5], [6]]]
    assert chunks_of([[0, 1, 2, 3, 4]], 2) == [[[0, 1]], [[2, 3]], [[4]]]


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl", "qwen3_vl", "idefics3"])
def test_every_tiny_family_scores_as_uncached_under_auto(tiny_vlms, family):
    # Whatever auto decides for a family (cache kept, refused by the self-check, or not applicable
    # to its inputs, as for Qwen's flattened patches), the scores are the uncached ones.
    from tiny_vlm import random_images

    images = random_images(3)
    off = YesTokenVerifier.from_pretrained(tiny_vlms[family], device="cpu", criteria=CRITERIA, prefix_cache="off")
    auto = YesTokenVerifier.from_pretrained(tiny_vlms[family], device="cpu", criteria=CRITERIA)
    for _ in range(2):
        assert torch.allclose(_scores(auto, images), _scores(off, images), atol=1e-5, rtol=0)
    if family == "llava":
        assert auto.prefix_cache.checked is True
