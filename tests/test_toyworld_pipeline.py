"""The shipped toy pipeline: loads offline through the public diffusers loader, generates, labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rd_inference.toyworld import all_prompts


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusionPipeline

    from rd_inference.toyworld.sampling import default_pipeline_path

    p = StableDiffusionPipeline.from_pretrained(str(default_pipeline_path()), local_files_only=True)
    p.set_progress_bar_config(disable=True)
    return p


def test_shipped_pipeline_is_small_and_standard(pipe):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    from rd_inference.toyworld.sampling import default_pipeline_path

    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert isinstance(pipe.unet, UNet2DConditionModel) and isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel) and pipe.safety_checker is None
    size = sum(f.stat().st_size for f in default_pipeline_path().rglob("*") if f.is_file())
    assert size < 14e6


def test_shipped_tokenizer_keeps_grammar_words_whole(pipe):
    tok = pipe.tokenizer
    for p in all_prompts():
        ids = tok(p).input_ids
        assert len(ids) == len(p.split()) + 2 <= tok.model_max_length
        assert tok.decode(ids, skip_special_tokens=True).strip() == p


def test_shipped_pipeline_generates_and_labels(pipe):
    from rd_inference.toyworld.sampling import pass_rates, sample_and_label

    out = pipe(["two red circles", "a blue square"], num_inference_steps=2, guidance_scale=4.0,
               generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (2, 32, 32, 3)
    samples = sample_and_label(pipe, ["a red circle", "a circle and a square"], seeds=[0, 1], num_inference_steps=2)
    assert [(s.prompt, s.seed) for s in samples] == [
        ("a red circle", 0), ("a red circle", 1), ("a circle and a square", 0), ("a circle and a square", 1)]
    assert all(s.image.size == (32, 32) for s in samples)
    rates = pass_rates(samples)
    assert rates["all"]["n"] == 4 and 0.0 <= rates["all"]["pass"] <= 1.0
    # an image does not depend on the batch it was drawn in (up to float rounding of batched kernels)
    alone = sample_and_label(pipe, ["a red circle"], seeds=[1], num_inference_steps=2)[0].image
    diff = np.abs(np.asarray(alone, dtype=int) - np.asarray(samples[1].image, dtype=int))
    assert diff.max() <= 3
