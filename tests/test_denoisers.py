"""The per-family adapters against the pipelines' own __call__ and the schedulers' own x0-predictions."""

import copy

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from tiny_pipelines import FAMILIES, tiny_sd

from rd_inference.denoisers import make_denoiser

PROMPT = "two red circles"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_adapter_reproduces_the_pipeline_output(family):
    pipe = FAMILIES[family]()
    den = make_denoiser(pipe, PROMPT, steps=4, height=16, width=16)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    _, x0 = den.denoise(den.initial_noise(gens), 0, 4, gens)
    ours = den.decode(x0)
    theirs = pipe(PROMPT, num_inference_steps=4, height=16, width=16, num_images_per_prompt=2,
                  generator=[torch.Generator().manual_seed(i) for i in range(2)], output_type="pt",
                  guidance_scale=den.guidance_scale).images
    torch.testing.assert_close(ours, theirs.cpu(), rtol=0, atol=1e-6)


SCHEDULERS = {
    "ddim": lambda p: DDIMScheduler(beta_schedule="scaled_linear", prediction_type=p, clip_sample=False),
    "ddpm": lambda p: DDPMScheduler(beta_schedule="scaled_linear", prediction_type=p, clip_sample=False),
    "euler": lambda p: EulerDiscreteScheduler(beta_schedule="scaled_linear", prediction_type=p),
    "euler_a": lambda p: EulerAncestralDiscreteScheduler(beta_schedule="scaled_linear", prediction_type=p),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_x0_prediction_matches_the_schedulers_own(name, prediction):
    pipe = tiny_sd(prediction_type=prediction, scheduler=SCHEDULERS[name](prediction))
    den = make_denoiser(pipe, PROMPT, steps=5, height=16, width=16)
    sched = den.scheduler
    gens = [torch.Generator().manual_seed(0)]
    x = den.initial_noise(gens)
    for i in range(3):  # a few steps in, so all coefficients are exercised
        x, _ = den.denoise(x, i, i + 1, gens)
    fresh = copy.deepcopy(sched)
    if hasattr(fresh, "set_begin_index"):
        fresh.set_begin_index(3)
    t = fresh.timesteps[3]
    with torch.no_grad():
        out = den.forward(fresh.scale_model_input(x, t), t)
        theirs = fresh.step(out, t, x, generator=torch.Generator().manual_seed(0)).pred_original_sample
    ours = den.schedule.x0_from_output(x, out, 3)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scheduler", [DPMSolverMultistepScheduler, UniPCMultistepScheduler])
def test_multistep_schedulers_run_segments_without_leaking_history(scheduler):
    pipe = tiny_sd(scheduler=scheduler(beta_schedule="scaled_linear"))
    den = make_denoiser(pipe, PROMPT, steps=6, height=16, width=16, max_batch=2)
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    x = den.initial_noise(gens)
    whole, _ = den.denoise(x, 0, 6, gens)
    # Chunks of two paths each get their own scheduler copy: the same as running each pair alone.
    pairs = [den.denoise(x[k : k + 2], 0, 6, gens[k : k + 2])[0] for k in (0, 2)]
    torch.testing.assert_close(whole, torch.cat(pairs), rtol=0, atol=0)
    assert torch.isfinite(whole).all()
