"""Bad input fails before any work with a message naming the fix, and leaves no run directory."""

import pytest
import torch
from diffusers import HeunDiscreteScheduler
from tiny_pipelines import tiny_sd

from rd_inference import BrightnessVerifier, search


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd()


def _search(pipe, out, **kw):
    args = {"verifier": BrightnessVerifier(), "steps": 4, "height": 16, "width": 16, "out": out, **kw}
    prompt = args.pop("prompt", "two red circles")
    return search(pipe, prompt, **args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"strategy": "bon", "budget": 3}, "budget of 3 denoiser forwards is too small"),
        ({"strategy": "sop", "budget": "1x"}, "too small for strategy 'sop'"),
        ({"strategy": "sop", "delta_f": 0.5, "delta_b": 0.5}, "no progress"),
        ({"strategy": "sop", "delta_f": 0.5, "delta_b": 0.2}, "no progress"),
        ({"strategy": "sop", "n": 0}, "n and m must be >= 1"),
        ({"strategy": "sop", "m": 0}, "n and m must be >= 1"),
        ({"strategy": "bon", "n": 0}, "n must be >= 1"),
        ({"strategy": "zo", "cosine": 1.0}, "cosine must be in"),
        ({"strategy": "astar"}, "unknown strategy 'astar'; known strategies: bon, sop, zo, beam, fk, prune"),
        ({"strategy": "bon", "m": 3}, r"unknown setting\(s\) \['m'\]"),
        ({"budget": "lots"}, "not a number of denoiser forwards"),
        ({"max_batch": 0}, r"max_batch \(paths per denoiser forward\) must be a whole number >= 1"),
        ({"prompt": 5}, "the prompt must be text \\(str\\), got int 5"),
        ({"steps": 0}, "steps must be a whole number >= 1"),
        ({"steps": 2.5}, "steps must be a whole number >= 1"),
        ({"guidance_scale": float("nan")}, "guidance scale must be a finite number"),
        ({"guidance_scale": float("inf")}, "guidance scale must be a finite number"),
        ({"height": 31}, "height 31 is not a multiple of 2 .*: use 30 or 32"),
        ({"width": 1}, "width 1 is not a multiple of 2 .*: use 2"),
        ({"width": 0}, "width must be a whole number of pixels"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"seed": -1}, "seed -1 is outside the generator's range"),
        ({"seed": 2**70}, "outside the generator's range: use a whole number from 0 to 2\\*\\*64-1"),
        ({"seed": True}, "seed must be a whole number"),
        ({"budget": float("nan")}, "budget must be a whole number of denoiser forwards"),
        ({"budget": 0}, "budget must be at least 1"),
        ({"strategy": "bon", "budget": "1000000x"}, r"above the ceiling of 2048 \(256x\).*at least 8000000"),
        ({"strategy": "bon", "n": 300}, r"above the ceiling.*raise the ceiling to at least 2400"),
        ({"negative_prompt": 5}, r"the negative prompt must be text \(str\) or None, got int 5"),
        ({"verify_batch": 0}, r"verify_batch \(images per verifier call\) must be a whole number >= 1, got 0"),
        ({"verify_batch": -1}, r"verify_batch \(images per verifier call\) must be a whole number >= 1"),
        ({"height": 2**20}, "height 1048576 is above 16384 pixels"),
        ({"strategy": "bon", "n": 2.5}, "strategy 'bon': n must be a whole number, got 2.5"),
        ({"strategy": "sop", "delta_f": float("nan")}, "strategy 'sop': delta_f must be a finite number, got nan"),
        ({"strategy": "sop", "widen": float("inf")}, "strategy 'sop': widen must be a finite number, got inf"),
        ({"strategy": "fk", "lam": float("nan")}, "strategy 'fk': lam must be a finite number"),
        ({"strategy": "fk", "lam": -1.0}, "lam must be >= 0"),
        ({"strategy": "prune", "prune_at": (0.3, float("nan"))}, "prune_at must be a list of finite numbers"),
    ],
)
def test_bad_settings_fail_before_work(pipe, tmp_path, kwargs, match):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        _search(pipe, out, **kwargs)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_unsupported_pipeline_and_scheduler(tmp_path):
    with pytest.raises(ValueError, match="unsupported pipeline object; supported: StableDiffusionPipeline"):
        _search(object(), tmp_path / "run")
    heun = tiny_sd(scheduler=HeunDiscreteScheduler())
    with pytest.raises(ValueError, match="unsupported scheduler HeunDiscreteScheduler; supported: .*DDIMScheduler"):
        _search(heun, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "dtype, hint",
    [
        (torch.float32, "lower the guidance scale"),
        (torch.float16, "float16 overflows easily: try bfloat16 or float32"),
        (torch.bfloat16, "lower the guidance scale"),
    ],
)
def test_non_finite_latents_leave_no_run_directory(tmp_path, monkeypatch, dtype, hint):
    broken = tiny_sd().to(dtype=dtype)
    real_forward = broken.unet.forward

    def nan_forward(*args, **kwargs):
        out = real_forward(*args, **kwargs)
        return (out[0] * float("nan"),)

    monkeypatch.setattr(broken.unet, "forward", nan_forward)
    # The hint names the dtype the run used, and float16's overflow only when the run is float16.
    with pytest.raises(FloatingPointError, match=rf"non-finite latents.*\({dtype}\); {hint}"):
        _search(broken, tmp_path / "run", strategy="bon", n=2)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_directory_is_refused(pipe, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="choose another --out"):
        _search(pipe, out, strategy="bon", n=1)
    assert (out / "keep.txt").read_text() == "user data"


def test_interrupted_run_leaves_nothing(pipe, tmp_path):
    out = tmp_path / "run"
    calls = []

    def interrupt(done, total):
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _search(pipe, out, strategy="bon", n=2, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_write_leaves_nothing(pipe, tmp_path, monkeypatch):
    from rd_inference import api

    def broken_versions():
        raise OSError("disk full")

    monkeypatch.setattr(api, "versions", broken_versions)
    with pytest.raises(OSError, match="disk full"):
        _search(pipe, tmp_path / "run", strategy="bon", n=1)
    assert list(tmp_path.iterdir()) == []


def test_verifier_must_score_every_image(pipe, tmp_path):
    def short(images, prompt):
        return torch.zeros(1)

    with pytest.raises(ValueError, match="returned 1 scores for 2 images"):
        _search(pipe, tmp_path / "run", strategy="bon", n=2, verifier=short)
