"""Search KSampler on video latents in real ComfyUI: ComfyUI's own Wan 2.1 model class (WanModel, flow
sampling with shift 8) and Wan 2.1 VAE at tiny sizes, run through the example workflow
workflows/search_ksampler_wan_video.json with the tiny models in place of its loaders, and through the node
function directly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from graphs import wan_video_graph
from PIL import Image
from test_comfy_nodes import errors, output, table_rows

SEARCH, DECODE, SAVE = "9", "10", "11"  # node ids in the example workflow
LATENT_SHAPE = (1, 16, 3, 4, 4)  # EmptyHunyuanLatentVideo at 32x32, 9 frames: 16 channels, (9 - 1) / 4 + 1 steps


@pytest.fixture
def previews(comfy):
    import comfy.utils

    calls = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: calls.append(preview))
    yield calls
    comfy.utils.set_progress_bar_global_hook(None)


def _summary(ex) -> dict:
    return json.loads(output(ex, SEARCH, 2))


def test_the_wan_workflow_searches_videos_end_to_end(comfy, executor, previews):
    ok, messages, ex = executor(wan_video_graph())
    assert ok, errors(messages)
    latent, frames, summary, candidates = output(ex, SEARCH, 0), output(ex, SEARCH, 1), _summary(ex), output(ex, SEARCH, 3)
    assert latent["samples"].shape == LATENT_SHAPE and torch.isfinite(latent["samples"]).all()
    assert frames.shape == (9, 32, 32, 3) and 0 <= frames.min() and frames.max() <= 1
    den = summary["config"]["denoiser"]
    assert (den["model"], den["space"], den["num_frames"], den["verify_frames"]) == ("WAN21", "flow", 9, 3)
    # Wan's own shifted flow grid (shift 8), as KSampler's 'simple' scheduler gives it, is the search's grid.
    assert den["sigmas"] == [1.0, 0.96, 0.888889, 0.727273, 0.0]
    # Exact budget: Best-of-N at 4x is four whole videos of 4 steps at two forwards (cfg 6), no more.
    counts = summary["counts"]
    assert counts["nfe"] == counts["planned_nfe"] == counts["budget_nfe"] == 4 * 4 * 2
    assert counts["decodes"] == counts["verifier_images"] == 4 and counts["verifier_frames"] == 4 * 3
    # Every candidate's nine frames, candidate after candidate, in the ranking's order; the chosen first.
    rows = table_rows(output(ex, SEARCH, 4))
    assert len(rows) == 4 and rows[0][2] == "final (chosen)" and candidates.shape == (4 * 9, 32, 32, 3)
    assert torch.allclose(candidates[:9], frames, atol=1 / 255 + 1e-6)
    # The node's last preview is the chosen video's middle frame.
    shown = torch.from_numpy(np.array(previews[-1][1])).float() / 255
    assert torch.allclose(shown, frames[4], atol=1 / 255 + 1e-6)
    # The latent output is the chosen video: VAE Decode of it gives its frames, saved as an animated WEBP.
    assert torch.allclose(output(ex, DECODE, 0), frames)
    saved = ex.history_result["outputs"][SAVE]["images"][0]
    with Image.open(Path(comfy.folder_paths.get_output_directory()) / saved["subfolder"] / saved["filename"]) as webp:
        assert webp.n_frames == 9 and webp.size == (32, 32)


def _ran(messages, node_id: str) -> bool:
    """Whether the executor ran ``node_id`` (a node its cache answers gets no 'executing' message)."""
    return any(event == "executing" and data.get("node") == node_id for event, data in messages)


def test_same_seed_same_video_and_another_seed_another(executor):
    runs = []
    for seed in (5, 5, 6):
        ok, messages, ex = executor(wan_video_graph(seed=seed, strategy="sop", budget="4x"))
        assert ok, errors(messages)
        assert _ran(messages, SEARCH)  # a search made this run's outputs, not the cache
        runs.append((output(ex, SEARCH, 0)["samples"], _summary(ex), output(ex, SEARCH, 3)))
        ex.reset()  # else the executor's cache answers the repeated graph without running it
    (a, sa, ca), (b, sb, cb), (c, _, _) = runs
    assert torch.equal(a, b) and sa["candidates"] == sb["candidates"] and sa["chosen"] == sb["chosen"]
    assert torch.equal(ca, cb)
    assert not torch.equal(a, c)


def test_a_vlm_sees_a_candidates_frames_in_one_prompt_or_one_by_one(executor, tiny_llava, monkeypatch):
    """verify_mode 'joint': one VLM row per candidate video holding its verify_frames frames; 'each': one row per
    frame, the candidate's score the mean. The mode is recorded with the verifier in scores_json."""
    yes_token = sys.modules[f"{REPO}.rd_inference.yes_token"]
    real, rows = yes_token.YesTokenVerifier.yes_no_logprobs, []
    monkeypatch.setattr(yes_token.YesTokenVerifier, "yes_no_logprobs",
                        lambda self, batch: rows.extend(len(images) for images, _ in batch) or real(self, batch))
    seen = {}
    for mode in ("joint", "each"):
        rows.clear()
        graph = wan_video_graph(verify_mode=mode)
        graph["8"]["inputs"]["path"] = tiny_llava
        ok, messages, ex = executor(graph)
        assert ok, errors(messages)
        summary, verifier = _summary(ex), output(ex, "8", 0)
        assert summary["config"]["verifier"]["frames"] == mode
        counts = summary["counts"]
        assert counts["verifier_images"] == 4 and counts["verifier_frames"] == 4 * 3
        seen[mode] = list(rows)
        # The chosen video's score, again from its frames 0, 4 and 8 (8-bit, as the candidates output has them).
        picked = output(ex, SEARCH, 3)[[0, 4, 8]].movedim(-1, 1)
        with torch.inference_mode():
            again = verifier.score_frames([picked], "a red kite flying over a green hill under a blue sky").reward
            if mode == "each":
                again = verifier(picked, "a red kite flying over a green hill under a blue sky").mean()
        assert float(table_rows(output(ex, SEARCH, 4))[0][1]) == pytest.approx(float(again), abs=1e-3)
        ex.reset()
    assert set(seen["joint"]) == {3} and set(seen["each"]) == {1}  # images per row
    assert len(seen["each"]) == 3 * len(seen["joint"]) >= 3 * 4  # the same videos scored (plan calibration too)


def test_a_simple_verifier_averages_in_either_mode(executor):
    """brightness has no score_frames: joint (the default) and each both take the per-frame mean, no error."""
    scores = []
    for mode in ("joint", "each"):
        ok, messages, ex = executor(wan_video_graph(verify_mode=mode))
        assert ok, errors(messages)
        assert "frames" not in _summary(ex)["config"]["verifier"]
        scores.append([c["score"] for c in _summary(ex)["candidates"]])
        ex.reset()
    assert scores[0] == scores[1]


def test_too_many_verified_frames_is_an_actionable_error(executor):
    ok, messages, _ = executor(wan_video_graph(length=5, verify_frames=6))
    assert not ok
    assert any("verify_frames is 6 but the video has 5 frames" in m for m in errors(messages)), errors(messages)


def _mean_brightness(images: torch.Tensor, prompt: str) -> torch.Tensor:
    return images.mean(dim=(1, 2, 3))


@pytest.mark.parametrize("strategy", ["bon", "sop"])
@pytest.mark.parametrize("budget", ["2x", "4x"])
def test_a_video_latent_through_the_node_function(comfy, strategy, budget):
    """SearchKSampler.execute on a 5-D latent, outside a graph: Wan model and VAE, CONDITIONING, a verifier."""
    mappings = comfy.nodes.NODE_CLASS_MAPPINGS
    (model,), (vae,) = mappings["RDTestTinyWan"]().load(), mappings["RDTestTinyWanVAE"]().load()
    positive, negative = mappings["RDTestTinyConditioning"]().encode(0)
    steps, x = 6, int(budget[0])
    with torch.inference_mode():  # as ComfyUI's executor runs a node
        out = mappings["RDSearchKSampler"].execute(
            model, positive, negative, {"samples": torch.zeros(1, 16, 2, 4, 4)}, _mean_brightness, vae, "bright",
            strategy, budget, 3, steps, 2.0, "simple", 8, verify_frames=2).result
    latent, frames, summary, candidates = out[0], out[1], json.loads(out[2]), out[3]
    assert latent["samples"].shape == (1, 16, 2, 4, 4) and frames.shape == (5, 32, 32, 3)
    counts = summary["counts"]
    assert counts["nfe"] == counts["planned_nfe"] <= counts["budget_nfe"] == x * steps * 2
    assert counts["verifier_frames"] == 2 * counts["verifier_images"] == 2 * len(summary["candidates"])
    assert candidates.shape == (5 * len(summary["candidates"]), 32, 32, 3)
    if strategy == "bon":
        assert counts["nfe"] == counts["budget_nfe"] and len(summary["candidates"]) == x
    # The chosen video is the best-scored finished one, and its frames are the ones the latent decodes to.
    rows = table_rows(out[4])
    assert rows[0][2] == "final (chosen)" and float(rows[0][1]) == max(float(r[1]) for r in rows if "final" in r[2])
    assert torch.allclose(candidates[:5], frames, atol=1 / 255 + 1e-6)


def _sampler_graph(steps: int, **sampler) -> dict:
    """The Wan example graph decoding through SamplerCustomAdvanced with the Search over Paths SAMPLER
    (``sampler``: its inputs beyond the links and the search size)."""
    graph = wan_video_graph()
    graph.update({
        "20": {"class_type": "RDSearchOverPathsSampler",
               "inputs": {"verifier": ["8", 0], "vae": ["4", 0], "prompt": ["5", 1], "delta_f": 0.2, "delta_b": 0.4,
                          "sigma_start": 0.9, "max_batch": 8, **sampler}},
        "21": {"class_type": "CFGGuider", "inputs": {"model": ["2", 0], "positive": ["5", 0], "negative": ["6", 0],
                                                     "cfg": 1.0}},
        "22": {"class_type": "BasicScheduler", "inputs": {"model": ["2", 0], "scheduler": "simple", "steps": steps,
                                                          "denoise": 1.0}},
        "23": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
        "24": {"class_type": "SamplerCustomAdvanced",
               "inputs": {"noise": ["23", 0], "guider": ["21", 0], "sampler": ["20", 0], "sigmas": ["22", 0],
                          "latent_image": ["7", 0]}},
    })
    graph[DECODE]["inputs"]["samples"] = ["24", 0]
    return graph


def test_search_over_paths_sampler_on_a_wan_video_latent(executor):
    """The Search over Paths SAMPLER in SamplerCustomAdvanced takes the same video latents (4 frames verified)."""
    ok, messages, ex = executor(_sampler_graph(6, n=2, m=2))
    assert ok, errors(messages)
    assert output(ex, "24", 0)["samples"].shape == LATENT_SHAPE and output(ex, DECODE, 0).shape == (9, 32, 32, 3)


@pytest.mark.parametrize("mode", ["joint", "each"])
def test_the_search_over_paths_sampler_takes_verify_frames_and_mode(executor, tiny_llava, monkeypatch, mode):
    """The SAMPLER verifies a candidate video as the Search KSampler does: verify_frames frames, in one VLM
    prompt (joint) or one by one (each)."""
    yes_token = sys.modules[f"{REPO}.rd_inference.yes_token"]
    real, rows = yes_token.YesTokenVerifier.yes_no_logprobs, []
    monkeypatch.setattr(yes_token.YesTokenVerifier, "yes_no_logprobs",
                        lambda self, batch: rows.extend(len(images) for images, _ in batch) or real(self, batch))
    graph = _sampler_graph(4, n=1, m=2, verify_frames=2, verify_mode=mode)
    graph["8"]["inputs"]["path"] = tiny_llava
    del graph[SEARCH], graph["12"]  # the Search KSampler and its ranking preview: only the sampler verifies
    ok, messages, _ = executor(graph)
    assert ok, errors(messages)
    assert rows and set(rows) == ({2} if mode == "joint" else {1})
