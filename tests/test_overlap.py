"""Verification overlapped with denoising: the same choices, counts, verifier batches and (to float
rounding) scores as the synchronous path, and the verifier really runs while later chunks denoise."""

from __future__ import annotations

import threading

import pytest
import torch
from tiny_pipelines import tiny_sd

from rd_inference import BrightnessVerifier, search
from rd_inference.checks import UserError

SMALL = {"steps": 4, "height": 16, "width": 16, "max_batch": 3, "verify_batch": 2, "seed": 5}
CASES = [("bon", {"n": 7}), ("sop", {"n": 2, "m": 3, "keep_parent": True}), ("zo", {"neighbors": 5, "rounds": 2}),
         ("prune", {"n": 8})]


class Recording(BrightnessVerifier):
    """Brightness, recording each call's batch size, thread and how many UNet forwards had run by then."""

    def __init__(self, pipe):
        super().__init__()
        self.calls: list[tuple[int, str, int]] = []
        self.forwards = [0]
        pipe.unet.register_forward_hook(lambda *_: self.forwards.__setitem__(0, self.forwards[0] + 1))

    def __call__(self, images, prompt):
        self.calls.append((len(images), threading.current_thread().name, self.forwards[0]))
        return super().__call__(images, prompt)


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd()


@pytest.mark.parametrize("strategy, params", CASES, ids=[c[0] for c in CASES])
def test_overlap_gives_the_synchronous_result(pipe, strategy, params):
    runs = {}
    for overlap in (False, True):
        verifier = Recording(pipe)
        result = search(pipe, "a cat", verifier=verifier, strategy=strategy, overlap=overlap, **SMALL, **params)
        scores = [n.score for n in result.tree.nodes]
        counts = {k: result.counts[k] for k in ("nfe", "decodes", "verifier_images", "verifier_batches")}
        runs[overlap] = (result.node_id, scores, counts, [c[0] for c in verifier.calls], verifier.calls)
        verifier.forwards[0] = -10**9  # detach the count from later runs (hooks stay on the shared pipe)
    # The same images in the same verifier batches; a CPU reduction may split differently while the other
    # thread holds the cores, so scores agree to float rounding (the chosen node and every count exactly).
    (id_a, scores_a, counts_a, sizes_a), (id_b, scores_b, counts_b, sizes_b) = runs[True][:4], runs[False][:4]
    assert (id_a, counts_a, sizes_a) == (id_b, counts_b, sizes_b)
    assert scores_a == pytest.approx(scores_b, abs=1e-6)
    assert all(name.startswith("rd-verify") for _, name, _ in runs[True][4])
    assert not any(name.startswith("rd-verify") for _, name, _ in runs[False][4])


def test_the_verifier_works_while_later_chunks_denoise(pipe):
    verifier = Recording(pipe)
    search(pipe, "a cat", verifier=verifier, strategy="bon", n=9, overlap=True, **SMALL)
    # 9 paths in chunks of 3 (4 steps each, one batched forward per step): the first verifier batch was
    # scored before the last chunk's forwards had all run.
    first_seen = verifier.calls[0][2]
    assert first_seen < 12, verifier.calls


def test_overlap_auto_is_off_on_one_device_and_bad_values_are_refused(pipe):
    verifier = Recording(pipe)
    search(pipe, "a cat", verifier=verifier, strategy="bon", n=2, **SMALL)
    assert all(name == threading.main_thread().name for _, name, _ in verifier.calls)
    with pytest.raises(UserError, match="overlap must be True, False or 'auto'"):
        search(pipe, "a cat", verifier=verifier, strategy="bon", n=2, overlap="yes", **SMALL)
    assert torch.is_tensor(verifier(torch.zeros(1, 3, 4, 4), "x"))
