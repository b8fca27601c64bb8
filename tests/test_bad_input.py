"""Every class of bad input gives one clear line before any work and leaves nothing behind: the CLI (in
process, exit 2), the API (UserError), and property tests over both with hypothesis."""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_pipelines import tiny_sd

from rd_inference import BrightnessVerifier, search
from rd_inference.checks import UserError
from rd_inference.cli import main
from rd_inference.plan import plan_search
from rd_inference.strategies import STRATEGIES

SMALL = {"steps": 4, "height": 16, "width": 16}
SMALL_ARGS = ["--steps", "4", "--height", "16", "--width", "16", "--verifier", "brightness"]


@pytest.fixture(scope="module")
def pipe():
    return tiny_sd()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-sd"
    tiny_sd().save_pretrained(folder, safe_serialization=True)
    return folder


def one_line_error(capsys, code: int, *, loaded: bool = False) -> str:
    """The error line; ``loaded``: a model loaded first, whose loading bars may share stderr."""
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("rd-tts")] if loaded else err.splitlines()
    assert "Traceback" not in err and len(lines) == 1 and err.endswith("\n"), err
    return lines[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "0"], "steps must be a whole number >= 1"),
        (["--guidance", "nan"], "guidance scale must be a finite number"),
        (["--height", "30"], "height 30 is not a multiple of 4 (this model's latent pixel size): use 28 or 32"),
        (["--seed", str(2**70)], "outside the generator's range: use a whole number from 0 to 2**64-1"),
        (["--seed", "-1"], "seed -1 is outside the generator's range"),
        (["--device", "gpu"], "device 'gpu' is not a device name"),
        (["--verifier", "./no/such/vlm"], "verifier folder ./no/such/vlm does not exist"),
        (["--model", "./no/such/model"], "model folder ./no/such/model does not exist"),
        (["--budget", "1000000x"], "budget 1000000x is above the ceiling of 256x"),
        (["--budget", "100x", "--max-forwards", "64x"], "raise the ceiling to at least 100x (CLI --max-forwards 100x"),
        (["--max-forwards", "lots"], "budget 'lots' is not a number"),
        (["--max-batch", "0"], "max_batch (paths per denoiser forward) must be a whole number >= 1 or 'auto'"),
        (["--attention", "fastest"], "--attention 'fastest' is not a diffusers attention backend; choose one of: flash"),
        (["--verifier-attention", "fast"], "--verifier-attention 'fast' is not a transformers attn_implementation"),
        (["--width", str(2**20)], "width 1048576 is above 16384 pixels, beyond any supported model"),
        (["--strategy", "bon", "--n", "0"], "n must be >= 1 (number of paths), got 0"),
        (["--widen", "inf"], "strategy 'sop': widen must be a finite number, got inf"),
        (["--delta-f", "nan"], "strategy 'sop': delta_f must be a finite number, got nan"),
        (["--strategy", "fk", "--lam=-1"], "lam must be >= 0"),
        (["--strategy", "evo", "--levels", "0,nan"], "strategy 'evo': levels must be a list of finite numbers"),
        (["--final-pick", "tournament", "--tournament-k=0"], "--tournament-k (images that play the tournament) must"),
        (["--verifier", "foo:bar"], "unknown verifier kind 'foo' in 'foo:bar'; known: vlm, clip, pickscore, aesthetic"),
        (["--criteria", "missing.json"], ("--criteria 'missing.json': criteria file not found: missing.json; pass an "
                                          "existing .json/.toml criteria file or built-in names (aesthetics, alignment")),
        (["--criteria", "alignment,beuaty"], "--criteria 'alignment,beuaty': unknown pointwise criterion 'beuaty'; known"),
        (["--final-pick", "tournament", "--verifier", "brightness"],
         ("--final-pick tournament needs a verifier that compares two images (one of kind vlm: vlm:PATH or a bare VLM "
          "folder or hub id); --verifier brightness cannot: use --final-pick score, or a VLM verifier")),
        (["--final-pick", "tournament", "--verifier", "clip:org/clip"], "--verifier clip:org/clip cannot: use"),
        (["--verifier", "brightness", "--criteria", "aesthetics"],
         ("--criteria aesthetics has no effect with --verifier brightness: criteria are the questions a VLM verifier "
          "(vlm:, openai:) answers; drop --criteria or use a VLM verifier")),
        (["--verifier", "color:red"], "--verifier color:red: write a colour as color:R,G,B with three numbers"),
        (["--final-pick", "tournament", "--verifier", "org/vlm+org/vlm2"], "--verifier org/vlm+org/vlm2 cannot: use"),
    ],
)
def test_generate_refuses_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    from rd_inference import pipelines, verifier_loading

    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **k: pytest.fail("the model loaded"))
    monkeypatch.setattr(verifier_loading, "load_verifier", lambda *a, **k: pytest.fail("the verifier loaded"))
    out = tmp_path / "run"
    # The embedded model is named but never loaded: every one of these fails on the options alone.
    err = one_line_error(capsys, main(["generate", "two red circles", "--out", str(out), *extra]))
    assert message in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "a cat", "--seed", "1.5"], "rd-tts generate: error: argument --seed: invalid int value: '1.5'"),
        (["generate", "a cat", "--max-batch", "lots"], "argument --max-batch: expected a whole number or auto, got 'lots'"),
        (["generate", "a cat", "--prune-at", "a,b"], "argument --prune-at: expected numbers separated by commas"),
        (["generate", "a cat", "--scheduler", "euler"], "rd-tts: error: unrecognized arguments: --scheduler euler"),
        (["score", "a.png"], "rd-tts score: error: the following arguments are required: --verifier, --prompt"),
    ],
)
def test_options_argparse_refuses_get_one_line(capsys, argv, message):
    """A wrong type or a missing argument: one line pointing at --help, not the whole usage text."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and message in err and "--help)" in err, err


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 8 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                     "you tried to allocate 4398046511104 bytes. Error code 12 (Cannot allocate memory)"),
    ],
)
def test_out_of_memory_is_one_line(capsys, monkeypatch, error):
    from rd_inference.commands import regenerate

    def too_big(args):
        raise error

    monkeypatch.setattr(regenerate, "run", too_big)
    err = one_line_error(capsys, main(["regenerate", "somewhere", "0"]))
    assert err.startswith("rd-tts regenerate: error: out of memory (") and "lower --max-batch, the image size" in err
    with pytest.raises(type(error)):
        main(["regenerate", "somewhere", "0", "--debug"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(tmp_path, capsys):
    err = one_line_error(capsys, main(["generate", "a cat", "--device", "cuda", "--out", str(tmp_path / "r")]))
    assert "this torch build sees no CUDA GPU; use --device cpu" in err


def test_pickle_only_model_and_verifier_folders_are_refused(tmp_path, capsys):
    model = tmp_path / "pickled-sd"
    tiny_sd().save_pretrained(model, safe_serialization=False)
    capsys.readouterr()  # the saving progress bar
    err = one_line_error(capsys, main(["generate", "a cat", "--model", str(model), *SMALL_ARGS]))
    assert "has only pickle weights (.bin/.pt)" in err and "convert them to safetensors" in err
    vlm = tmp_path / "pickled-vlm"
    vlm.mkdir()
    (vlm / "config.json").write_text("{}")
    (vlm / "pytorch_model.bin").write_bytes(b"\x80\x02")
    err = one_line_error(capsys, main(["generate", "a cat", "--verifier", str(vlm)]))
    assert "verifier" in err and "has only pickle weights" in err


def test_output_path_under_a_file(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = one_line_error(capsys, main(["generate", "a cat", "--out", str(blocker / "run"), "--verifier", "brightness"]))
    assert f"{blocker} is a file, not a folder; choose another --out" in err


def test_plan_prints_and_writes_nothing(model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["generate", "a cat", "--model", str(model_dir), *SMALL_ARGS, "--strategy", "bon", "--budget", "4x",
                 "--plan", "--out", str(out)])
    assert code == 0
    assert "plan: bon, 32 denoiser forwards, 4 decodes, 4 images verified" in capsys.readouterr().out
    assert not out.exists()


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(UserError, match="steps must be"):
        main(["generate", "a cat", "--steps", "0", "--debug"])


def test_internal_errors_keep_their_traceback(monkeypatch):
    from rd_inference.commands import regenerate

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(regenerate, "run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["regenerate", "somewhere", "0"])


def test_regenerate_without_tree(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"config": {}}))
    err = one_line_error(capsys, main(["regenerate", str(run), "0"]))
    assert "has no tree.jsonl" in err


@pytest.mark.parametrize(
    "content, prompt, extra, message",
    [
        (b"not an image", "a cat", [], "is not an image file PIL can read"),
        ("truncated", "a cat", [], "cannot be read (image file is truncated"),
        ("ok", "   ", [], "the prompt is empty"),
        ("folder", "a cat", [], "is a folder: pass the image files in it"),
        ("ok", "a cat", ["--max-batch", "0"], "--max-batch (images per verifier call) must be a whole number >= 1"),
        ("ok", "a cat", ["--pairwise", "--top-k=-1"], "--top-k (images that play the tournament) must be a whole"),
    ],
)
def test_score_refuses_bad_files_and_prompts(tmp_path, capsys, content, prompt, extra, message):
    path = tmp_path / "image.png"
    if content == "folder":
        path.mkdir()
    elif content in ("truncated", "ok"):
        from PIL import Image

        Image.effect_noise((64, 64), 64).convert("RGB").save(path)
        if content == "truncated":
            path.write_bytes(path.read_bytes()[:-40])
    else:
        path.write_bytes(content)
    # The verifier folder does not exist: every one of these is refused before it is looked at.
    err = one_line_error(capsys, main(["score", str(path), "--verifier", "./no/such/vlm", "--prompt", prompt, *extra]))
    assert message in err


def test_batch_with_a_budget_too_small_leaves_nothing(model_dir, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    out = tmp_path / "batch"
    code = main(["batch", str(prompts), "--out", str(out), "--model", str(model_dir), "--strategy", "sop",
                 "--budget", "1x", "--no-progress", *SMALL_ARGS])
    assert "too small for strategy 'sop'" in one_line_error(capsys, code, loaded=True)
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--criteria", "missing.json"], "--criteria 'missing.json': criteria file not found: missing.json"),
        (["--final-pick", "tournament", "--verifier", "brightness"], "--final-pick tournament needs a verifier that"),
        (["--verifier", "hf:org/vlm"], "unknown verifier kind 'hf' in 'hf:org/vlm'"),
    ],
)
def test_batch_refuses_verifier_options_before_loading(tmp_path, capsys, monkeypatch, extra, message):
    from rd_inference import pipelines, verifier_loading

    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **k: pytest.fail("the model loaded"))
    monkeypatch.setattr(verifier_loading, "load_verifier", lambda *a, **k: pytest.fail("the verifier loaded"))
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    out = tmp_path / "batch"
    err = one_line_error(capsys, main(["batch", str(prompts), "--out", str(out), "--no-progress", *extra]))
    assert message in err and not out.exists()


def test_score_refuses_missing_criteria_before_the_vlm_loads(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from rd_inference import yes_token

    monkeypatch.setattr(yes_token, "load_vlm", lambda *a, **k: pytest.fail("the VLM loaded"))
    path = tmp_path / "image.png"
    Image.new("RGB", (16, 16)).save(path)
    err = one_line_error(capsys, main(["score", str(path), "--verifier", "org/vlm", "--prompt", "a cat",
                                       "--criteria", "missing.json"]))
    assert "--criteria 'missing.json': criteria file not found: missing.json; pass an existing" in err


def test_api_reads_criteria_before_loading(monkeypatch):
    from rd_inference import yes_token
    from rd_inference.verifier_loading import load_verifier
    from rd_inference.verifiers.clip import ClipScoreVerifier

    monkeypatch.setattr(yes_token, "load_vlm", lambda *a, **k: pytest.fail("the VLM loaded"))
    monkeypatch.setattr(ClipScoreVerifier, "_ensure_loaded", lambda self: pytest.fail("the CLIP loaded"))
    with pytest.raises(UserError, match="criteria 'missing.json': criteria file not found: missing.json"):
        yes_token.YesTokenVerifier.from_pretrained("org/vlm", criteria="missing.json")
    with pytest.raises(UserError, match="pairwise_criteria 'nope': unknown pairwise criterion 'nope'"):
        yes_token.YesTokenVerifier.from_pretrained("org/vlm", pairwise_criteria="nope")
    with pytest.raises(UserError, match="criteria 'missing.json': criteria file not found"):
        load_verifier("clip:org/clip+vlm:org/vlm", criteria="missing.json")  # the CLIP would load first


def test_no_ceiling_is_0_or_none_in_every_face(pipe, model_dir, tmp_path, capsys):
    from rd_inference.budget import ceiling_from_text

    big = {"strategy": "bon", "budget": "300x", **SMALL}
    with pytest.raises(UserError, match="above the ceiling"):
        plan_search(pipe, "a cat", **big)
    for no_ceiling in (0, None, "none", "off", "0"):
        assert plan_search(pipe, "a cat", max_nfe=no_ceiling, **big).forwards == 2400
    assert [ceiling_from_text(t) for t in ("0", "none", "OFF", "", "64x")] == [None, None, None, "256x", "64x"]
    argv = ["generate", "a cat", "--model", str(model_dir), *SMALL_ARGS, "--strategy", "bon", "--budget", "300x",
            "--plan", "--out", str(tmp_path / "run")]
    assert main([*argv, "--max-forwards", "0"]) == 0
    assert "plan: bon, 2400 denoiser forwards" in capsys.readouterr().out
    assert "above the ceiling" in one_line_error(capsys, main(argv), loaded=True)
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert "0, 'none' or 'off' for no ceiling" in " ".join(capsys.readouterr().out.split())
    assert not (tmp_path / "run").exists()


def test_non_finite_verifier_scores_name_the_verifier(pipe, tmp_path):
    def nan_verifier(images, prompt):
        return torch.full((len(images),), float("nan"))

    with pytest.raises(UserError, match="the verifier nan_verifier returned non-finite scores"):
        search(pipe, "a cat", verifier=nan_verifier, strategy="bon", n=2, out=tmp_path / "run", **SMALL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_the_plan_counts_what_the_run_spends(pipe, strategy):
    kw = {"strategy": strategy, "budget": "6x", "seed": 3, **SMALL, "steps": 6}
    plan = plan_search(pipe, "a cat", verifier=BrightnessVerifier(), **kw)
    counts = search(pipe, "a cat", verifier=BrightnessVerifier(), **kw).counts
    assert (plan.forwards, plan.decodes, plan.verifier_images) == (
        counts["nfe"], counts["decodes"], counts["verifier_images"])
    assert plan.seconds is not None and plan.seconds > 0


def test_on_plan_can_cancel_before_any_forward(pipe, tmp_path):
    seen = []

    class Cancelled(Exception):
        pass

    def on_plan(plan):
        seen.append(plan)
        raise Cancelled

    with pytest.raises(Cancelled):
        search(pipe, "a cat", verifier=BrightnessVerifier(), strategy="bon", budget="2x", on_plan=on_plan,
               progress=lambda done, total: pytest.fail("a forward ran"), out=tmp_path / "run", **SMALL)
    assert seen[0].forwards == 16 and list(tmp_path.iterdir()) == []


# ---- property tests ------------------------------------------------------------------------------------
BAD = {
    "prompt": st.one_of(st.just(""), st.text(" \t\n", max_size=3), st.integers(), st.none(), st.floats()),
    "seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64), st.floats(), st.booleans()),
    "steps": st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.booleans()),
    "guidance_scale": st.one_of(st.just(math.nan), st.just(math.inf), st.just(-math.inf),
                                st.floats(max_value=-1e-3, allow_infinity=False)),
    "height": st.one_of(st.integers(max_value=0), st.integers(1, 200).filter(lambda v: v % 2)),
    "width": st.one_of(st.integers(max_value=0), st.integers(1, 200).filter(lambda v: v % 2)),
    "max_batch": st.one_of(st.integers(max_value=0), st.floats()),
    "budget": st.one_of(st.integers(max_value=0), st.just(math.nan), st.text(alphabet="abc-. ", min_size=1,
                                                                                max_size=5), st.just("1000000x")),
    "negative_prompt": st.one_of(st.integers(), st.binary(max_size=3), st.lists(st.just("dark"), max_size=2)),
    "verify_batch": st.one_of(st.integers(max_value=0), st.floats(), st.booleans()),
}
_PIPE = None


def _tiny_pipe():
    global _PIPE
    _PIPE = _PIPE or tiny_sd()
    return _PIPE


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), which=st.sampled_from(sorted(BAD)), strategy=st.sampled_from(sorted(STRATEGIES)))
def test_search_refuses_any_bad_argument_before_work(data, which, strategy):
    bad = data.draw(BAD[which], label=which)
    kw = {"prompt": "a cat", **SMALL, "strategy": strategy, which: bad}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"

        def no_forward(done, total):
            raise AssertionError(f"a forward ran with {which}={bad!r}")

        with pytest.raises(ValueError) as info:
            search(_tiny_pipe(), kw.pop("prompt"), verifier=BrightnessVerifier(), out=out, progress=no_forward, **kw)
        assert "\n" not in str(info.value) and len(str(info.value)) > 20
        assert list(Path(tmp).iterdir()) == []


CLI_BAD = {
    "--steps": st.integers(max_value=0).map(str),
    "--guidance": st.sampled_from(["nan", "inf", "-inf", "-1"]),
    "--height": st.integers(1, 300).filter(lambda v: v % 4).map(str),
    "--width": st.one_of(st.integers(-50, 0), st.integers(16385, 10**9)).map(str),
    "--delta-f": st.sampled_from(["nan", "inf", "-inf", "0", "-1"]),
    "--seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64)).map(str),
    "--max-batch": st.integers(max_value=0).map(str),
    "--budget": st.one_of(st.integers(257, 10**9).map(lambda v: f"{v}x"), st.text("abz!", min_size=1, max_size=4)),
    "--device": st.sampled_from(["gpu", "cuda:99" if torch.cuda.is_available() else "cuda", "tpu:0", "cpu:x"]),
    "--model": st.text("abc", min_size=1, max_size=6).map(lambda s: f"./missing-{s}"),
    "--verifier": st.text("abc", min_size=1, max_size=6).map(lambda s: f"./missing/{s}"),
}


@settings(max_examples=40, deadline=None)
@given(data=st.data(), flags=st.lists(st.sampled_from(sorted(CLI_BAD)), min_size=1, max_size=3, unique=True))
def test_cli_refuses_any_bad_option_with_one_line(data, flags):
    argv = []
    for flag in flags:
        argv.append(f"{flag}={data.draw(CLI_BAD[flag], label=flag)}")  # "=": values like -inf are not flags
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["generate", "two red circles", "--out", str(out), *argv])
        text = err.getvalue()
        assert code == 2 and text.count("\n") == 1 and text.startswith("rd-tts generate: error: "), (argv, text)
        assert list(Path(tmp).iterdir()) == []


def test_unsupported_pipeline_family_is_refused_before_loading(model_dir, tmp_path, capsys, monkeypatch):
    import shutil

    import diffusers

    folder = tmp_path / "pixart"
    shutil.copytree(model_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "PixArtAlphaPipeline"}))
    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained",
                        lambda *a, **k: pytest.fail("weights loaded before the family was checked"))
    err = one_line_error(capsys, main(["generate", "a cat", "--model", str(folder), *SMALL_ARGS]))
    assert "holds a PixArtAlphaPipeline, which the search does not support; supported: StableDiffusionPipeline" in err
