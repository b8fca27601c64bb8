"""Joint multi-frame verification (issue 21): a video's sampled frames go to the yes-token VLM as one
multi-image prompt; the per-frame mean where a verifier cannot take that, said so; the video criteria; a
joint search on the tiny Wan with exact counts, its mode kept in the spec and rebuilt by regenerate."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_video import tiny_wan, wan_unipc_scheduler

from rd_inference import BrightnessVerifier, regenerate, search
from rd_inference.checks import UserError
from rd_inference.criteria import VIDEO_CRITERIA, builtin_criteria, resolve_criteria
from rd_inference.denoisers import make_denoiser
from rd_inference.verifiers import verifier_from_spec
from rd_inference.video import FrameSampledVerifier, for_denoiser, frame_indices
from rd_inference.yes_token import YesTokenVerifier

PROMPT = "two red circles"
TINY = {"steps": 4, "height": 16, "width": 16, "num_frames": 9}


def videos(b: int = 3, f: int = 9, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, f, 3, size, size, generator=torch.Generator().manual_seed(seed))


def image_runs(row: torch.Tensor, token: int) -> int:
    """Contiguous runs of the image placeholder token in one row of input ids: one per image block."""
    hits = (row == token).long()
    return int(((hits[1:] - hits[:-1]) == 1).sum() + hits[0])


def test_joint_prompt_holds_k_image_blocks_and_one_forward_per_candidate(tiny_vlms):
    v = YesTokenVerifier.from_pretrained(tiny_vlms["llava"], device="cpu", max_batch=1)
    token = v.model.config.image_token_id
    seen = []
    v.model.register_forward_pre_hook(lambda _m, _a, kw: seen.append((kw["input_ids"], kw["pixel_values"])),
                                      with_kwargs=True)
    clips = videos(3)
    scores = FrameSampledVerifier(v, k=3, frames="joint")(clips, PROMPT)
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    assert len(seen) == 3 and v.timings["rows"] == 3  # one row, so one forward at max_batch=1, per candidate
    for ids, pixels in seen:
        assert ids.shape[0] == 1 and pixels.shape[0] == 3 and image_runs(ids[0], token) == 3
    text = v.processor.tokenizer.decode(seen[0][0][0])
    assert text.count("Image ") == 3 and "frames of one video" in text  # "Image i:" before each frame
    seen.clear()
    FrameSampledVerifier(v, k=3, frames="each")(clips, PROMPT)
    assert len(seen) == 9 and all(image_runs(ids[0], token) == 1 for ids, _ in seen)  # k one-image rows each


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl", "qwen3_vl", "idefics3"])
def test_joint_scores_are_deterministic_and_batch_equals_single(tiny_verifiers, family):
    v = tiny_verifiers[family]
    size = 32 if family != "llava" else 16
    clips = videos(2, 5, size=size)
    joint = FrameSampledVerifier(v, k=3, frames="joint")
    assert joint.frames == "joint" and joint.note is None
    first, again = joint(clips, PROMPT), joint(clips, PROMPT)
    assert torch.equal(first, again)
    alone = torch.cat([joint(clips[i : i + 1], PROMPT) for i in range(2)])
    torch.testing.assert_close(first, alone, rtol=0, atol=1e-5)
    picked = [clips[i, frame_indices(5, 3)] for i in range(2)]
    torch.testing.assert_close(first, v.score_frames(picked, PROMPT).reward.float())
    # The frames shown together are not the mean of the frames shown alone.
    each = FrameSampledVerifier(v, k=3, frames="each")(clips, PROMPT)
    assert not torch.allclose(first, each, atol=1e-4)


def test_per_frame_fallback_is_reported_and_the_spec_still_rebuilds(tiny_verifiers):
    clips = videos(2, 5)
    with pytest.warns(UserWarning, match="BrightnessVerifier scores single images.*frames='each'"):
        asked = FrameSampledVerifier(BrightnessVerifier(), k=2, frames="joint")
    assert asked.frames == "each" and "scored on its own and the scores averaged" in asked.note
    torch.testing.assert_close(asked(clips, PROMPT), clips[:, [0, 4]].mean(dim=(2, 3, 4)).mean(dim=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default asks nothing, so it warns nothing, but still notes
        default = FrameSampledVerifier(BrightnessVerifier(), k=2)
    assert default.frames == "each" and default.note == asked.note
    assert asked.spec() == default.spec() == BrightnessVerifier().spec()  # rebuilt as before: it can only average
    assert FrameSampledVerifier(tiny_verifiers["llava"], k=2, frames="each").note is None
    with pytest.raises(ValueError, match="frames must be one of joint, each"):
        FrameSampledVerifier(BrightnessVerifier(), frames="all")


def test_the_mode_is_kept_in_the_spec_and_rebuilt(tiny_verifiers):
    v = tiny_verifiers["llava"]
    for mode in ("joint", "each"):
        spec = FrameSampledVerifier(v, k=2, frames=mode).spec()
        assert spec == {**v.spec(), "frames": mode}
        again = verifier_from_spec(json.loads(json.dumps(spec)), device="cpu")
        assert isinstance(again, FrameSampledVerifier) and again.frames == mode and again.k is None
        assert again.spec() == spec
    assert "frames" not in v.spec()  # the image verifier's own spec is unchanged
    assert isinstance(verifier_from_spec(v.spec(), device="cpu"), YesTokenVerifier)


def test_the_wrapper_takes_the_denoisers_frame_count():
    pipe = tiny_wan()
    den = make_denoiser(pipe, PROMPT, **TINY, verify_frames=3)
    bound = for_denoiser(FrameSampledVerifier(BrightnessVerifier(), frames="each"), den)
    assert bound.k == 3 and bound.frames == "each"
    with pytest.raises(UserError, match="shows 2 frames per video but verify_frames is 3"):
        for_denoiser(FrameSampledVerifier(BrightnessVerifier(), k=2), den)
    from tiny_pipelines import tiny_sd

    with pytest.raises(UserError, match="applies to video pipelines only"):
        for_denoiser(FrameSampledVerifier(BrightnessVerifier()), make_denoiser(tiny_sd(), PROMPT, steps=2))


def test_video_criteria_load_by_name():
    crits = resolve_criteria("video_alignment,temporal_consistency:2,motion")
    assert [c.name for c in crits] == list(VIDEO_CRITERIA) and crits[1].weight == 2.0
    for name in VIDEO_CRITERIA:
        c = builtin_criteria()[name]
        assert c.description.startswith("Video") and "Answer yes or no." in c.template
        assert "a cat running" in c.render("a cat running")
    assert "same identity" in builtin_criteria()["temporal_consistency"].template
    assert "movement" in builtin_criteria()["motion"].template


def test_joint_search_on_tiny_wan_spends_exact_counts_and_regenerates(tiny_vlms, tmp_path):
    pipe = tiny_wan(wan_unipc_scheduler())
    v = YesTokenVerifier.from_pretrained(tiny_vlms["llava"], device="cpu", criteria=",".join(VIDEO_CRITERIA))
    result = search(pipe, PROMPT, verifier=FrameSampledVerifier(v, frames="joint"), strategy="bon", budget="2x",
                    seed=0, verify_frames=3, out=tmp_path / "run", **TINY)
    c = result.counts
    assert c["budget_nfe"] == c["planned_nfe"] == c["nfe"] == 2 * 4 * 2  # two paths of 4 steps with CFG
    assert c["decodes"] == c["verifier_images"] == len(result.candidates) == 2
    assert c["verifier_frames"] == 2 * 3  # frames shown: 3 per candidate, all in one prompt
    assert v.timings["rows"] == 2 * len(VIDEO_CRITERIA)  # one row per candidate and criterion
    assert result.config["verifier"]["frames"] == "joint"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["verifier"]["frames"] == "joint" and summary["counts"]["verifier_frames"] == 6
    assert [n.score for n in result.tree.nodes] == pytest.approx(
        v.score_frames([torch.stack([torch.from_numpy(np.array(result.candidates[n.id][i])).permute(2, 0, 1)
                                     for i in frame_indices(9, 3)]).float() / 255 for n in result.tree.nodes],
                       PROMPT).reward.tolist(), abs=2e-2)  # the frames re-encoded as 8-bit: close, not equal
    frames = regenerate(tmp_path / "run", result.node_id, pipe=pipe, device="cpu")
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(frames, result.image))


def test_cli_verify_mode_is_recorded(tiny_vlms, tmp_path):
    model = tmp_path / "tiny-wan"
    tiny_wan(wan_unipc_scheduler()).save_pretrained(model, safe_serialization=True)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "rd_inference.cli", "generate", PROMPT, "--model", str(model), "--verifier",
           tiny_vlms["llava"], "--criteria", "motion", "--strategy", "bon", "--budget", "2x", "--steps", "4",
           "--height", "16", "--width", "16", "--num-frames", "9", "--verify-frames", "2", "--verify-mode", "each",
           "--device", "cpu", "--out", str(run)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["verifier"]["frames"] == "each"
    assert summary["counts"]["verifier_frames"] == 2 * 2 and summary["counts"]["nfe"] == 2 * 4 * 2
