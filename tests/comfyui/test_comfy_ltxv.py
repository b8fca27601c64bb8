"""Search KSampler on LTX-Video in real ComfyUI: ComfyUI's own LTXV model class (LTXVModel, flux-style shifted
flow sampling) and causal video VAE at tiny sizes (tests/comfyui/tiny_comfy_nodes.py), run through the example
workflow workflows/search_ksampler_ltxv_video.json with the tiny models in place of its loaders, through
SamplerCustomAdvanced with LTXVScheduler, and through the node function."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from graphs import ltxv_video_graph
from PIL import Image
from test_comfy_nodes import errors, output, table_rows

SEARCH, SAMPLING, DECODE, SAVE = "10", "8", "11", "12"  # node ids in the example workflow


def _summary(ex) -> dict:
    return json.loads(output(ex, SEARCH, 2))


def _ltxv_shift(tokens: int, max_shift: float = 2.05, base_shift: float = 0.95) -> float:
    """ModelSamplingLTXV's and LTXVScheduler's shift: linear in the latent's token count."""
    slope = (max_shift - base_shift) / (4096 - 1024)
    return tokens * slope + base_shift - slope * 1024


@pytest.mark.parametrize(("length", "latent_frames"), [(9, 2), (17, 3), (1, 1)])
def test_the_ltxv_workflow_searches_videos_end_to_end(comfy, executor, length, latent_frames):
    verify = min(3, length)
    ok, messages, ex = executor(ltxv_video_graph(length=length, verify_frames=verify))
    assert ok, errors(messages)
    latent, frames, summary, candidates = output(ex, SEARCH, 0), output(ex, SEARCH, 1), _summary(ex), output(ex, SEARCH, 3)
    # EmptyLTXVLatentVideo: 128 channels, 8x in time ((length - 1) / 8 + 1), 32x in space; decoded: 8 (T - 1) + 1.
    assert latent["samples"].shape == (1, 128, latent_frames, 2, 2) and torch.isfinite(latent["samples"]).all()
    frames_out = 8 * (latent_frames - 1) + 1
    assert frames_out == length and frames.shape == (length, 64, 64, 3) and 0 <= frames.min() and frames.max() <= 1
    den = summary["config"]["denoiser"]
    assert (den["model"], den["space"], den["num_frames"], den["verify_frames"]) == ("LTXV", "flow", length, verify)
    # Exact budget: Best-of-N at 4x is four whole videos of 4 steps at two forwards (cfg 3), no more.
    counts = summary["counts"]
    assert counts["nfe"] == counts["planned_nfe"] == counts["budget_nfe"] == 4 * 4 * 2
    assert counts["decodes"] == counts["verifier_images"] == 4 and counts["verifier_frames"] == 4 * verify
    rows = table_rows(output(ex, SEARCH, 4))
    assert len(rows) == 4 and rows[0][2] == "final (chosen)" and candidates.shape == (4 * length, 64, 64, 3)
    # VAE Decode of the latent output, saved as an animated WEBP of all its frames.
    assert output(ex, DECODE, 0).shape == (length, 64, 64, 3)
    saved = ex.history_result["outputs"][SAVE]["images"][0]
    with Image.open(Path(comfy.folder_paths.get_output_directory()) / saved["subfolder"] / saved["filename"]) as webp:
        assert webp.n_frames == length and webp.size == (64, 64)


def test_the_grid_is_comfyuis_sigmas_for_the_graph(comfy, executor):
    """The search's grid is the one ComfyUI's own schedulers give for the ModelSamplingLTXV-patched model:
    BasicScheduler on the graph's model (what KSampler uses) and the token-count shift's closed form."""
    graph = ltxv_video_graph(length=17, steps=5)
    ok, messages, ex = executor(graph)
    assert ok, errors(messages)
    grid = _summary(ex)["config"]["denoiser"]["sigmas"]
    scheduler = comfy.nodes.NODE_CLASS_MAPPINGS["BasicScheduler"]
    comfy_sigmas = scheduler.execute(output(ex, SAMPLING, 0), "simple", 5, 1.0).result[0]
    assert grid == [round(float(s), 6) for s in comfy_sigmas]
    shift = _ltxv_shift(3 * 2 * 2)  # ModelSamplingLTXV reads the tokens off the latent [1, 128, 3, 2, 2]
    t = torch.linspace(1, 0, 6, dtype=torch.float64)[:-1]
    closed = math.exp(shift) / (math.exp(shift) + (1 / t - 1))
    assert torch.allclose(comfy_sigmas[:-1].double(), closed, atol=1e-3) and float(comfy_sigmas[-1]) == 0.0
    # Without ModelSamplingLTXV the model's own shift (2.37) gives another grid: the patch is what is followed.
    graph[SEARCH]["inputs"]["model"] = ["2", 0]
    ok, messages, ex = executor(graph)
    assert ok, errors(messages)
    assert _summary(ex)["config"]["denoiser"]["sigmas"] != grid


def test_search_over_paths_follows_ltxvscheduler_sigmas(comfy, executor, monkeypatch):
    """SamplerCustomAdvanced with LTXVScheduler's stretched grid (as ComfyUI's LTXV example graphs sample) and the
    Search over Paths SAMPLER: the search steps on exactly those sigmas."""
    sampling = sys.modules[f"{REPO}.comfy_nodes.sampling"]
    seen = []
    real = sampling.run_search
    monkeypatch.setattr(sampling, "run_search", lambda den, *a, **k: seen.append(den) or real(den, *a, **k))
    graph = ltxv_video_graph()
    graph.update({
        "20": {"class_type": "RDSearchOverPathsSampler",
               "inputs": {"verifier": ["9", 0], "vae": ["2", 2], "prompt": ["4", 1], "n": 2, "m": 2, "delta_f": 0.2,
                          "delta_b": 0.4, "sigma_start": 0.9, "max_batch": 8}},
        "21": {"class_type": "CFGGuider", "inputs": {"model": [SAMPLING, 0], "positive": ["6", 0],
                                                     "negative": ["6", 1], "cfg": 3.0}},
        "22": {"class_type": "LTXVScheduler", "inputs": {"steps": 6, "max_shift": 2.05, "base_shift": 0.95,
                                                         "stretch": True, "terminal": 0.1, "latent": ["7", 0]}},
        "23": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
        "24": {"class_type": "SamplerCustomAdvanced",
               "inputs": {"noise": ["23", 0], "guider": ["21", 0], "sampler": ["20", 0], "sigmas": ["22", 0],
                          "latent_image": ["7", 0]}},
    })
    graph[DECODE]["inputs"]["samples"] = ["24", 0]
    ok, messages, ex = executor(graph)
    assert ok, errors(messages)
    den = next(d for d in seen if d.config()["steps"] == 6)
    sigmas = den.schedule.sigma  # the grid the search steps and re-noises on
    assert torch.equal(sigmas.float(), output(ex, "22", 0).float())
    assert float(sigmas[-2]) == pytest.approx(0.1)  # stretched to the terminal sigma
    assert output(ex, "24", 0)["samples"].shape == (1, 128, 2, 2, 2) and output(ex, DECODE, 0).shape == (9, 64, 64, 3)


def test_same_seed_same_video_and_another_seed_another(executor):
    runs = []
    for seed in (5, 5, 6):
        ok, messages, ex = executor(ltxv_video_graph(seed=seed, strategy="sop", budget="4x"))
        assert ok, errors(messages)
        runs.append((output(ex, SEARCH, 0)["samples"], _summary(ex), output(ex, SEARCH, 3)))
        ex.reset()  # else the executor's cache answers the repeated graph without running it
    (a, sa, ca), (b, sb, cb), (c, _, _) = runs
    assert torch.equal(a, b) and sa["candidates"] == sb["candidates"] and sa["chosen"] == sb["chosen"]
    assert torch.equal(ca, cb)
    assert not torch.equal(a, c)


def test_a_candidate_decodes_to_the_same_frames_alone_or_in_a_batch(comfy):
    """The LTXV 0.9.1+ VAE is timestep-conditioned: ComfyUI 0.3.75 fails on a batch of several videos, and each
    decode mixes torch.randn noise into the latent. The search decodes one video at a time with the RNG seeded,
    so a candidate's frames (and score) do not depend on its batch or on what was drawn before."""
    video = sys.modules[f"{REPO}.comfy_nodes.video"]
    model, _, vae = comfy.nodes.NODE_CLASS_MAPPINGS["RDTestTinyLTXVCheckpoint"]().load()
    assert vae.first_stage_model.timestep_conditioning
    decode = video.vae_decoder(vae, model.model, video=True)
    latents = torch.randn(3, 128, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():  # as ComfyUI's executor runs a node
        batch = decode(latents)
        torch.randn(5)  # move the global RNG
        alone = decode(latents[1:2])
        state = torch.random.get_rng_state()
        decode(latents[:1])
    assert batch.shape == (3, 9, 3, 64, 64) and torch.equal(batch[1:2], alone)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left as it was


def test_ltxv_frame_rate_reaches_every_model_call_unchanged(comfy):
    """LTXVConditioning's frame_rate rides in the conditioning to every forward the search makes."""
    mappings = comfy.nodes.NODE_CLASS_MAPPINGS
    model, clip, vae = mappings["RDTestTinyLTXVCheckpoint"]().load()
    positive = clip.encode_from_tokens_scheduled(clip.tokenize("a red kite"))
    negative = clip.encode_from_tokens_scheduled(clip.tokenize("blurry"))
    positive, negative = mappings["LTXVConditioning"].execute(positive, negative, 12.5).result
    seen = []  # (rows in the call, frame_rate) per model call

    def record(apply_model, args):
        seen.append((len(args["input"]), args["c"]["frame_rate"]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    model = model.clone()
    model.set_model_unet_function_wrapper(record)
    latent = mappings["EmptyLTXVLatentVideo"].execute(64, 64, 9).result[0]
    with torch.inference_mode():
        out = mappings["RDSearchKSampler"].execute(
            model, positive, negative, latent, lambda images, prompt: images.mean(dim=(1, 2, 3)), vae, "bright",
            "bon", "2x", 0, 3, 3.0, "simple", 8, verify_frames=2).result
    counts = json.loads(out[2])["counts"]
    assert counts["nfe"] == counts["budget_nfe"] == 2 * 3 * 2
    # Every model call has frame_rate 12.5: the plan's timing calls first, then one call per step with both
    # paths, cond and uncond (four rows).
    assert {rate for _, rate in seen} == {12.5} and [rows for rows, _ in seen[-3:]] == [4, 4, 4]
    assert out[0]["samples"].shape == (1, 128, 2, 2, 2) and out[1].shape == (9, 64, 64, 3)


def test_the_image_output_is_the_chosen_candidates_frames(executor):
    """The node decodes its latent output as the search decoded the candidate (one video, RNG seeded), not with
    ComfyUI's VAE.decode, which noises an LTXV 0.9.1+ latent unseeded: its frames are those the verifier scored."""
    ok, messages, ex = executor(ltxv_video_graph())
    assert ok, errors(messages)
    frames, candidates = output(ex, SEARCH, 1), output(ex, SEARCH, 3)
    assert torch.allclose(candidates[:9], frames, atol=1 / 255 + 1e-6)


def test_ltxv_image_to_video_is_refused_in_one_line(comfy, executor):
    """LTXVImgToVideo fixes the first frames through the latent's noise mask, which the search cannot keep."""
    graph = ltxv_video_graph()
    graph["30"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}
    graph["31"] = {"class_type": "LTXVImgToVideo",
                   "inputs": {"positive": ["6", 0], "negative": ["6", 1], "vae": ["2", 2], "image": ["30", 0],
                              "width": 64, "height": 64, "length": 9, "batch_size": 1, "strength": 1.0}}
    graph[SEARCH]["inputs"].update(positive=["31", 0], negative=["31", 1], latent_image=["31", 2])
    ok, messages, _ = executor(graph)
    assert not ok
    assert any("LTXVImgToVideo" in m and "unmasked latent" in m for m in errors(messages)), errors(messages)
