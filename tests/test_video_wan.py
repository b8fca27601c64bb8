"""Text-to-video search on a tiny random WanPipeline (tests/tiny_video.py): the adapter against the pipeline's
own output, frame-sampled verification, Best-of-N and Search over Paths at equal budget, same seed same
bytes, the MP4 run directory through the command line, and refusals before loading."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_video import check_equal_budget_video_search, tiny_wan, wan_unipc_scheduler

from rd_inference import BrightnessVerifier, regenerate, search
from rd_inference.checks import UserError, check_pipeline_source, size_factor
from rd_inference.denoisers import make_denoiser
from rd_inference.video import FrameSampledVerifier, frame_indices, read_mp4

PROMPT = "two red circles"
TINY = {"steps": 6, "height": 16, "width": 16, "num_frames": 9}
SOP = {"sigma_start": 0.4, "delta_f": 0.3, "delta_b": 0.5}
SCHEDULERS = {"flow_euler": lambda: None, "unipc_flow": wan_unipc_scheduler}


@pytest.fixture(scope="module")
def pipe():
    return tiny_wan(wan_unipc_scheduler())  # the scheduler Wan 2.1 ships


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_one_path_equals_the_pipelines_own_video(scheduler):
    pipe = tiny_wan(SCHEDULERS[scheduler]())
    den = make_denoiser(pipe, PROMPT, steps=4, height=16, width=16, num_frames=9)
    assert den.forwards_per_step == 2 and den.schedule.space == "flow"
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    _, x0 = den.denoise(den.initial_noise(gens), 0, 4, gens)
    ours = den.decode(x0)
    theirs = pipe(PROMPT, num_inference_steps=4, height=16, width=16, num_frames=9, num_videos_per_prompt=2,
                  generator=[torch.Generator().manual_seed(i) for i in range(2)], output_type="pt",
                  guidance_scale=den.guidance_scale).frames
    assert ours.shape == (2, 9, 3, 16, 16)
    torch.testing.assert_close(ours, theirs.cpu(), rtol=0, atol=1e-6)
    assert den.ledger.decodes == 2 and den.ledger.nfe == 2 * 4 * 2


def test_x0_prediction_matches_unipc_on_flow_sigmas(pipe):
    den = make_denoiser(pipe, PROMPT, steps=5, height=16, width=16, num_frames=5)
    gens = [torch.Generator().manual_seed(0)]
    x = den.initial_noise(gens)
    for i in range(2):
        x, _ = den.denoise(x, i, i + 1, gens)
    sched = den._fresh_scheduler(2)
    t = sched.timesteps[2]
    with torch.no_grad():
        out = den.forward(x, t)
        sched._step_index = 2
        theirs = sched.convert_model_output(out, sample=x)
    torch.testing.assert_close(den.schedule.x0_from_output(x, out, 2), theirs, rtol=1e-5, atol=1e-5)


def test_frame_sampled_score_is_the_mean_over_evenly_spaced_frames():
    assert frame_indices(81, 4) == [0, 27, 53, 80] and frame_indices(9, 1) == [4] and frame_indices(3, 3) == [0, 1, 2]
    videos = torch.rand(2, 9, 3, 4, 4)
    seen = []

    def per_frame(images, prompt):
        seen.append(images.shape[0])
        return images.mean(dim=(1, 2, 3))

    scores = FrameSampledVerifier(per_frame, k=3)(videos, PROMPT)
    expected = torch.stack([videos[b, [0, 4, 8]].mean(dim=(1, 2, 3)).mean() for b in range(2)])
    torch.testing.assert_close(scores, expected)
    assert seen == [6]  # one call, k frames of each video
    assert FrameSampledVerifier(BrightnessVerifier(), k=2).spec() == BrightnessVerifier().spec()
    with pytest.raises(ValueError, match="cannot pick 5 frames"):
        FrameSampledVerifier(per_frame, k=5)(torch.rand(1, 4, 3, 4, 4), PROMPT)


@pytest.mark.parametrize("strategy, params", [("bon", {}), ("sop", SOP), ("zo", {}), ("prune", {})])
def test_strategies_spend_the_same_budget_and_repeat_bytes(pipe, strategy, params):
    # Search over Paths on this tiny grid leaves a few forwards of 4x unspent (no further branch fits)
    check_equal_budget_video_search(pipe, PROMPT, strategy, params, TINY, all_spent=strategy != "sop")


@pytest.mark.parametrize("strategy", ["zo", "beam", "fk", "prune", "evo"])
def test_the_other_strategies_run_on_video_latents_within_budget(pipe, strategy):
    result = search(pipe, PROMPT, verifier=BrightnessVerifier(), strategy=strategy, budget="4x", seed=0, **TINY)
    assert 0.95 * result.counts["budget_nfe"] <= result.counts["nfe"] == result.counts["planned_nfe"] <= 48
    assert all(len(frames) == 9 for frames in result.candidates.values())


def test_search_over_paths_node_regenerates_exactly(pipe, tmp_path):
    result = search(pipe, PROMPT, verifier=BrightnessVerifier(), strategy="sop", budget="4x", seed=1,
                    out=tmp_path / "run", **TINY, **SOP)
    late = max(n.id for n in result.tree.nodes if n.score is not None)  # a re-noised branch
    frames = regenerate(tmp_path / "run", late, pipe=pipe)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(frames, result.candidates[late]))
    assert len(read_mp4(tmp_path / "run" / "candidates" / f"node-{late:05d}.mp4")) == 9


def test_bad_video_settings_are_refused(pipe):
    with pytest.raises(UserError, match="num_frames must be 4k \\+ 1"):
        make_denoiser(pipe, PROMPT, num_frames=10)
    assert make_denoiser(pipe, PROMPT, num_frames=1).verify_frames == 1  # the default fits a short video
    with pytest.raises(UserError, match="verify_frames 6 is more than the video's 5 frames"):
        make_denoiser(pipe, PROMPT, num_frames=5, verify_frames=6)
    with pytest.raises(UserError, match="tournament"):
        search(pipe, PROMPT, verifier=BrightnessVerifier(), strategy="bon", budget="2x", final_pick="tournament",
               **TINY)
    from tiny_pipelines import tiny_sd

    with pytest.raises(UserError, match="apply to video pipelines only"):
        make_denoiser(tiny_sd(), PROMPT, num_frames=9)


def rd_tts(*args):
    cmd = [sys.executable, "-m", "rd_inference.cli", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)


def test_cli_generate_writes_an_mp4_run_and_regenerates_it(tmp_path):
    model = tmp_path / "tiny-wan"
    tiny_wan(wan_unipc_scheduler()).save_pretrained(model, safe_serialization=True)
    assert size_factor(model) == 16  # sizes checked before loading: the VAE's 8x times the 2x2 patches
    res = rd_tts("generate", "--model", model, PROMPT, "--verifier", "brightness", "--height", "24")
    assert res.returncode != 0 and "multiple of 16" in res.stderr and "Traceback" not in res.stderr
    run = tmp_path / "run"
    res = rd_tts("generate", "--model", model, PROMPT, "--strategy", "bon", "--budget", "2x", "--out", run,
                 "--verifier", "brightness", "--steps", "4", "--height", "16", "--width", "16", "--num-frames", "9",
                 "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert "chosen.mp4" in res.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["denoiser"]["family"] == "wan" and summary["counts"]["nfe"] == 2 * 4 * 2
    assert len((run / "tree.jsonl").read_text().splitlines()) == 2
    chosen = [np.asarray(Image.open(p)) for p in sorted((run / "chosen").glob("frame-*.png"))]
    assert len(chosen) == 9 and chosen[0].shape == (16, 16, 3)
    decoded = read_mp4(run / "chosen.mp4")  # lossy H.264: readable, same length and size, close
    import av

    with av.open(str(run / "chosen.mp4")) as container:
        assert float(container.streams.video[0].average_rate) == 16  # Wan 2.1's frame rate
    assert len(decoded) == 9 and decoded[0].size == (16, 16)
    assert np.abs(np.asarray(decoded[4], dtype=float) - chosen[4]).mean() < 12
    node = summary["chosen"]["node"]
    again = tmp_path / "again.mp4"
    res = rd_tts("regenerate", run, node, "--out", again, "--device", "cpu")
    assert res.returncode == 0, res.stderr
    frames = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "again").glob("frame-*.png"))]
    assert len(frames) == 9 and all(np.array_equal(x, y) for x, y in zip(frames, chosen))


@pytest.mark.parametrize("index, says", [
    ({"_class_name": "LTXImageToVideoPipeline"}, "holds a LTXImageToVideoPipeline, which the search does not support"),
    ({"_class_name": "WanImageToVideoPipeline"}, "holds a WanImageToVideoPipeline"),
    ({"_class_name": "CogVideoXPipeline"}, "holds a CogVideoXPipeline"),
    ({"_class_name": "WanPipeline", "boundary_ratio": 0.875, "transformer_2": ["diffusers", "WanTransformer3DModel"]},
     "two experts (Wan 2.2"),
    ({"_class_name": "WanPipeline", "expand_timesteps": True}, "per-token timesteps (Wan 2.2 TI2V"),
])
def test_an_unsupported_video_pipeline_is_refused_before_loading(tmp_path, index, says):
    folder = tmp_path / "model"
    folder.mkdir()  # no weights at all: the refusal must come from model_index.json alone
    (folder / "model_index.json").write_text(json.dumps({**index, "transformer": ["diffusers", "X"]}))
    with pytest.raises(UserError) as err:
        check_pipeline_source(str(folder))
    message = str(err.value)
    assert "\n" not in message and says in message
    assert "WanPipeline" in message or "Wan 2.1" in message
