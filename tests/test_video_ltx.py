"""Text-to-video search on a tiny random LTXPipeline (tests/tiny_video.py): the adapter against the pipeline's
own output (shifted sigmas, packed latents, guidance as a batch of two, timestep-conditioned decoding),
Best-of-N, Search over Paths, zero-order and pruning search at equal budget, same seed same bytes, the MP4
run directory through the command line, and refusals of bad settings before any model runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from PIL import Image
from tiny_video import check_equal_budget_video_search, ltx_scheduler, tiny_ltx

from rd_inference import BrightnessVerifier, regenerate, search
from rd_inference.checks import UserError, check_pipeline_source, size_factor
from rd_inference.denoisers import family_of, make_denoiser
from rd_inference.denoisers.ltx import DECODE_NOISE_SEED
from rd_inference.video import read_mp4


def mp4_fps(path) -> float:
    import av

    with av.open(str(path)) as container:
        return float(container.streams.video[0].average_rate)

PROMPT = "two red circles"
TINY = {"steps": 6, "height": 32, "width": 32, "num_frames": 9}
SOP = {"sigma_start": 0.4, "delta_f": 0.3, "delta_b": 0.5}  # on the tiny shifted grid these spend all of 4x
SCHEDULERS = {"shifted_by_mu": ltx_scheduler, "flow_euler": FlowMatchEulerDiscreteScheduler}


@pytest.fixture(scope="module")
def pipe():
    return tiny_ltx()  # the scheduler LTX-Video ships (dynamic shifting, shift_terminal)


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_one_path_equals_the_pipelines_own_video(scheduler):
    pipe = tiny_ltx(SCHEDULERS[scheduler]())
    den = make_denoiser(pipe, PROMPT, steps=4, height=32, width=32, num_frames=9)
    assert den.forwards_per_step == 2 and den.schedule.space == "flow" and den.latent_shape() == (2 * 4 * 4, 8)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    _, x0 = den.denoise(den.initial_noise(gens), 0, 4, gens)
    ours = den.decode(x0)
    pipe.vae.enable_slicing()  # the adapter decodes video by video, as the VAE's slicing does
    theirs = pipe(PROMPT, num_inference_steps=4, height=32, width=32, num_frames=9, num_videos_per_prompt=2,
                  generator=[torch.Generator().manual_seed(i) for i in range(2)], output_type="pt",
                  guidance_scale=den.guidance_scale).frames
    assert ours.shape == (2, 9, 3, 32, 32)
    torch.testing.assert_close(ours, theirs.cpu(), rtol=0, atol=1e-6)
    # the search's noise levels are the sigmas the pipeline stepped on (shifted by mu from the video's length)
    torch.testing.assert_close(den.schedule.level[:4], pipe.scheduler.sigmas[:4].double(), rtol=0, atol=1e-7)
    assert (den.schedule.level[3].item() == pytest.approx(0.1)) == (scheduler == "shifted_by_mu")
    assert den.ledger.decodes == 2 and den.ledger.nfe == 2 * 4 * 2


def test_x0_prediction_is_the_flow_estimate(pipe):
    den = make_denoiser(pipe, PROMPT, steps=4, height=32, width=32, num_frames=9)
    gens = [torch.Generator().manual_seed(0)]
    x, _ = den.denoise(den.initial_noise(gens), 0, 2, gens)
    sched = den._fresh_scheduler(2)
    out = den.forward(x, sched.timesteps[2])
    sigma = sched.sigmas[2].item()
    torch.testing.assert_close(den.predict_x0(x, 2), x - sigma * out, rtol=0, atol=1e-6)
    assert x.dtype == torch.float32  # the pipeline's latents stay float32 whatever the model's dtype


def test_timestep_conditioned_decoder_matches_the_pipeline_and_repeats():
    pipe = tiny_ltx(timestep_conditioning=True, inject_noise=True)  # LTX-Video 0.9.1's kind of decoder
    den = make_denoiser(pipe, PROMPT, steps=3, height=32, width=32, num_frames=9, decode_timestep=0.05,
                        decode_noise_scale=0.0)
    gens = [torch.Generator().manual_seed(7)]
    _, x0 = den.denoise(den.initial_noise(gens), 0, 3, gens)
    state = torch.get_rng_state()
    ours = den.decode(x0)
    assert torch.equal(torch.get_rng_state(), state)  # the decoder's noise did not move the caller's generator
    assert torch.equal(den.decode(x0), ours)  # the same decode repeats bit for bit
    # each video's decode reseeds, so its frames do not depend on its place in a chunk
    assert torch.equal(den.decode(torch.cat([x0, x0]), max_batch=2)[1], ours[0])
    torch.manual_seed(DECODE_NOISE_SEED)  # the pipeline's decoder draws from the global generator
    theirs = pipe(PROMPT, num_inference_steps=3, height=32, width=32, num_frames=9, decode_timestep=0.05,
                  decode_noise_scale=0.0, generator=torch.Generator().manual_seed(7), output_type="pt").frames
    torch.testing.assert_close(ours, theirs.cpu(), rtol=0, atol=1e-6)
    with pytest.raises(UserError, match="decode_noise_scale 0.05 .* pass decode_noise_scale=0"):
        make_denoiser(pipe, PROMPT, decode_timestep=0.05)  # the noise scale defaults to the decode timestep


@pytest.mark.parametrize("strategy, params", [("bon", {}), ("sop", SOP), ("zo", {}), ("prune", {})])
def test_strategies_spend_the_same_budget_and_repeat_bytes(pipe, strategy, params):
    result = check_equal_budget_video_search(pipe, PROMPT, strategy, params, TINY)
    assert result.config["denoiser"]["family"] == "ltx"


def test_search_over_paths_node_regenerates_exactly(pipe, tmp_path):
    result = search(pipe, PROMPT, verifier=BrightnessVerifier(), strategy="sop", budget="4x", seed=1,
                    out=tmp_path / "run", **TINY, **SOP)
    late = max(n.id for n in result.tree.nodes if n.score is not None)  # a re-noised branch
    frames = regenerate(tmp_path / "run", late, pipe=pipe)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(frames, result.candidates[late]))


def test_bad_ltx_settings_are_refused_before_any_model_runs(pipe):
    calls = []
    hook = pipe.text_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(UserError, match="num_frames must be 8k \\+ 1 .*compresses time 8x") as err:
            make_denoiser(pipe, PROMPT, num_frames=10)
        assert "\n" not in str(err.value)
        with pytest.raises(UserError, match="height 48 is not a multiple of 32"):
            make_denoiser(pipe, PROMPT, height=48, num_frames=9)
        with pytest.raises(UserError, match="verify_frames 10 is more than the video's 9 frames"):
            make_denoiser(pipe, PROMPT, num_frames=9, verify_frames=10)
        with pytest.raises(UserError, match="frame_rate must be a finite number > 0"):
            make_denoiser(pipe, PROMPT, frame_rate=0)
        with pytest.raises(UserError, match="num_frames must be 8k \\+ 1"):
            search(pipe, PROMPT, verifier=BrightnessVerifier(), budget="2x", **{**TINY, "num_frames": 12})
    finally:
        hook.remove()
    assert calls == []
    assert make_denoiser(pipe, PROMPT, num_frames=1).verify_frames == 1  # the default fits a one-frame video


def test_ltx_is_accepted_from_its_model_index_and_its_siblings_are_refused(tmp_path):
    assert family_of("LTXPipeline") == "ltx"
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "LTXPipeline"}))
    check_pipeline_source(str(folder))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "LTXImageToVideoPipeline"}))
    with pytest.raises(UserError, match="holds a LTXImageToVideoPipeline, which the search does not support; "
                                        "supported: .*LTXPipeline"):
        check_pipeline_source(str(folder))


def rd_tts(*args):
    cmd = [sys.executable, "-m", "rd_inference.cli", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)


def test_cli_generate_writes_an_mp4_run_and_regenerates_it(tmp_path):
    model = tmp_path / "tiny-ltx"
    tiny_ltx().save_pretrained(model, safe_serialization=True)
    assert size_factor(model) == 32  # sizes checked before loading: LTXPipeline takes multiples of 32
    res = rd_tts("generate", "--model", model, PROMPT, "--verifier", "brightness", "--height", "48")
    assert res.returncode != 0 and "multiple of 32" in res.stderr and "Traceback" not in res.stderr
    res = rd_tts("generate", "--model", model, PROMPT, "--verifier", "brightness", "--num-frames", "10",
                 "--steps", "2", "--height", "32", "--width", "32", "--device", "cpu", "--out", tmp_path / "bad")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    said = [line for line in res.stderr.splitlines() if "num_frames" in line]
    line = ("rd-tts generate: error: num_frames must be 8k + 1 (e.g. 1, 9, 81), got 10: the video VAE compresses "
            "time 8x after the first frame")
    assert said == [line]
    assert not (tmp_path / "bad" / "summary.json").exists()
    run = tmp_path / "run"
    res = rd_tts("generate", "--model", model, PROMPT, "--strategy", "sop", "--budget", "4x", "--out", run,
                 "--verifier", "brightness", "--steps", "5", "--height", "32", "--width", "32", "--num-frames", "9",
                 "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert "chosen.mp4" in res.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["denoiser"]["family"] == "ltx"
    assert summary["counts"]["nfe"] == summary["config"]["planned_nfe"] == 4 * 5 * 2
    tree = (run / "tree.jsonl").read_text().splitlines()
    assert len(tree) >= 4 and len(list((run / "candidates").glob("node-*.mp4"))) == summary["counts"]["decodes"]
    chosen = [np.asarray(Image.open(p)) for p in sorted((run / "chosen").glob("frame-*.png"))]
    assert len(chosen) == 9 and chosen[0].shape == (32, 32, 3)
    decoded = read_mp4(run / "chosen.mp4")  # lossy H.264: readable, same length and size, close
    assert len(decoded) == 9 and decoded[0].size == (32, 32)
    assert mp4_fps(run / "chosen.mp4") == 25 == mp4_fps(next((run / "candidates").glob("node-*.mp4")))  # LTX's rate
    # in brightness: the random VAE's per-pixel colour noise does not survive H.264's halved chroma
    luma = [np.asarray(Image.fromarray(chosen[4]).convert("L"), dtype=float), np.asarray(decoded[4].convert("L"))]
    assert np.abs(luma[0] - luma[1]).mean() < 12
    node = summary["chosen"]["node"]
    again = tmp_path / "again.mp4"
    res = rd_tts("regenerate", run, node, "--out", again, "--device", "cpu")
    assert res.returncode == 0, res.stderr
    frames = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "again").glob("frame-*.png"))]
    assert len(frames) == 9 and all(np.array_equal(x, y) for x, y in zip(frames, chosen))
    assert mp4_fps(again) == 25
