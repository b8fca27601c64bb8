"""PruneCallback inside an ordinary pipe(...) call."""

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from tiny_pipelines import tiny_sd

from rd_inference import BrightnessVerifier
from rd_inference.callback import PruneCallback


def _call(pipe, cb, n=4, steps=8):
    return pipe("two red circles", num_inference_steps=steps, height=16, width=16, num_images_per_prompt=n,
                generator=torch.Generator().manual_seed(0), callback_on_step_end=cb,
                callback_on_step_end_tensor_inputs=cb.tensor_inputs, output_type="pt").images


def test_prune_keeps_the_best_and_refills_with_diverging_copies():
    pipe = tiny_sd()
    cb = PruneCallback(BrightnessVerifier(), "two red circles", prune_at=[2, 5], keep=0.5, refresh=0.5)
    images = _call(pipe, cb)
    assert images.shape == (4, 3, 16, 16)
    assert [h["step"] for h in cb.history] == [2, 5]
    for h in cb.history:
        scores = torch.tensor(h["scores"])
        assert h["survivors"] == torch.argsort(scores, descending=True)[:2].tolist()
    # One extra guided forward per path per prune point, counted.
    assert cb.ledger.nfe == 2 * 4 * 2 and cb.ledger.verifier_images == 8
    # Refilled copies were given fresh noise, so no two final images are identical.
    flat = images.flatten(1)
    assert torch.cdist(flat, flat).fill_diagonal_(1.0).min() > 0


def test_without_refresh_copies_stay_identical():
    cb = PruneCallback(BrightnessVerifier(), "two red circles", prune_at=[6], keep=0.5, refresh=0.0)
    images = _call(tiny_sd(), cb)
    survivors = cb.history[0]["survivors"]
    assert torch.equal(images[2], images[0]) and torch.equal(images[3], images[1])
    assert len(survivors) == 2


def test_multistep_scheduler_is_refused_with_advice():
    pipe = tiny_sd(scheduler=DPMSolverMultistepScheduler(beta_schedule="scaled_linear"))
    cb = PruneCallback(BrightnessVerifier(), "two red circles", prune_at=[1])
    with pytest.raises(TypeError, match="cannot re-pair the multistep history.*use one of DDIMScheduler"):
        _call(pipe, cb, steps=4)


@pytest.mark.parametrize("kwargs", [{"prune_at": []}, {"prune_at": [1], "keep": 0}, {"prune_at": [1], "refresh": 2}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        PruneCallback(BrightnessVerifier(), "a cat", **kwargs)
