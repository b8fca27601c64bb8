"""An out-of-memory error in a chunk halves the chunk and redoes it: same results, counts and budget as a
run that never failed (the OOM is forced on CPU by a model that refuses batches above a size)."""

import numpy as np
import pytest
import torch
from tiny_pipelines import tiny_sd

from rd_inference import BrightnessVerifier, search

SETTINGS = {"steps": 6, "height": 16, "width": 16, "seed": 5}


def _run(pipe, strategy, max_batch, progress=None, **kw):
    return search(pipe, "two red circles", verifier=BrightnessVerifier(), strategy=strategy, budget="8x",
                  max_batch=max_batch, progress=progress, **SETTINGS, **kw)


def _refusing(pipe, limit: int):
    """The pipeline's UNet raises torch.OutOfMemoryError for batches above ``limit`` (CFG doubles rows)."""
    forward = pipe.unet.forward

    def guarded(x, *args, **kwargs):
        if x.shape[0] > 2 * limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory (forced: batch {x.shape[0]})")
        return forward(x, *args, **kwargs)

    pipe.unet.forward = guarded
    return pipe


@pytest.mark.parametrize("strategy", ["bon", "sop", "beam"])
def test_oom_backoff_equals_a_run_that_fits(strategy):
    reference = _run(tiny_sd(), strategy, max_batch=16)
    seen = []
    result = _run(_refusing(tiny_sd(), 3), strategy, max_batch=16, progress=lambda d, t: seen.append(d))
    assert result.counts["chunk_retries"] >= 1 and reference.counts["chunk_retries"] == 0
    assert result.counts["nfe"] == reference.counts["nfe"] == result.config["planned_nfe"]
    assert result.config["denoiser"]["max_batch"] <= 3
    assert seen[-1] == result.counts["nfe"]  # progress was rolled back for the redone chunk, not overcounted
    a = [n.score for n in reference.tree.nodes if n.score is not None]
    b = [n.score for n in result.tree.nodes if n.score is not None]
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert result.node_id == reference.node_id


def test_a_single_path_that_does_not_fit_is_reported():
    with pytest.raises(torch.OutOfMemoryError, match="forced"):
        _run(_refusing(tiny_sd(), 0), "bon", max_batch=4)


def test_auto_batch_size():
    from rd_inference.denoisers.memory import AUTO_CAP, batch_from_memory

    assert batch_from_memory(10 * 2**30, 2**30) == 8  # 80% of 10 GiB at 1 GiB a path
    assert batch_from_memory(2**30, 4 * 2**30) == 1  # not even one: the backoff reports it
    assert batch_from_memory(10**15, 1) == AUTO_CAP
    result = _run(tiny_sd(), "bon", max_batch="auto")  # CPU: the cap
    assert result.config["denoiser"]["max_batch"] == AUTO_CAP
