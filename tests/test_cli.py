"""rd-tts generate / regenerate through the real loading path (a saved pipeline folder)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_pipelines import tiny_sd


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-sd"
    tiny_sd().save_pretrained(folder, safe_serialization=True)
    return folder


def rd_tts(*args, cwd=None):
    cmd = [sys.executable, "-m", "rd_inference.cli", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_generate_then_regenerate(model_dir, tmp_path):
    run = tmp_path / "run"
    res = rd_tts("generate", "two red circles", "--model", model_dir, "--verifier", "brightness", "--strategy", "sop",
                 "--budget", "6x", "--steps", "6", "--height", "16", "--width", "16", "--sigma-start", "0.4",
                 "--delta-f", "0.3", "--delta-b", "0.5", "--seed", "7", "--out", run, "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert "chosen: node" in res.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["strategy"] == "sop" and summary["config"]["seed"] == 7
    assert summary["counts"]["nfe"] <= 6 * 6 * 2
    assert set(summary["versions"]) >= {"torch", "diffusers", "transformers", "rd_inference"}
    tree = [json.loads(line) for line in (run / "tree.jsonl").read_text().splitlines()]
    assert {"id", "parent", "round", "seed", "level_start", "level_end", "score"} <= set(tree[0])
    node = summary["chosen"]["node"]
    out_png = tmp_path / "again.png"
    res = rd_tts("regenerate", run, node, "--out", out_png, "--device", "cpu")
    assert res.returncode == 0, res.stderr
    a = np.asarray(Image.open(out_png))
    b = np.asarray(Image.open(run / "candidates" / f"node-{node:05d}.png"))
    assert (a == b).all()
    assert (np.asarray(Image.open(run / "chosen.png")) == b).all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "", "--verifier", "brightness"], "no prompt"),
        (["generate", "a cat", "--verifier", "brightness", "--model", "/nonexistent/model"], "model folder /nonexistent/model does not exist"),
        (["generate", "a cat", "--verifier", "color:red"], "color:R,G,B"),
        (["regenerate", "/nonexistent/run", "0"], "not a run directory"),
    ],
)
def test_cli_errors_are_one_line(args, message, tmp_path):
    res = rd_tts(*args, cwd=tmp_path)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()


def test_cli_refuses_bad_strategy_settings_before_loading(model_dir, tmp_path):
    res = rd_tts("generate", "a cat", "--model", model_dir, "--verifier", "brightness", "--delta-f", "0.9",
                 "--delta-b", "0.5", "--out", tmp_path / "run", "--steps", "4")
    assert res.returncode == 2 and "no progress" in res.stderr
    assert not (tmp_path / "run").exists()


def test_help_does_not_import_the_model_libraries():
    # `rd-tts --help` and every sub-command's parser stay light: diffusers, transformers and gradio load
    # only when a command runs (they took ~3 s of a 4 s `--help` before).
    code = ("import sys; from rd_inference import cli; p = cli.build_parser(); "
            "print(sorted(m for m in ('diffusers', 'transformers', 'gradio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
