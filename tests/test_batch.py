"""rd-tts batch: prompts files, resuming after a kill, splitting across accelerate processes, bad input."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_pipelines import tiny_sd

from rd_inference import BrightnessVerifier
from rd_inference.batch import (
    INDEX,
    ITEMS,
    item_criteria,
    parse_seeds,
    prepare_batch,
    read_index,
    read_prompts,
    run_batch,
)
from rd_inference.cli import main
from rd_inference.pipelines import load_pipeline

ROOT = Path(__file__).resolve().parents[1]
SEARCH = {"strategy": "bon", "budget": "2x", "steps": 4, "height": 16, "width": 16}
SEARCH_ARGS = ["--strategy", "bon", "--budget", "2x", "--steps", "4", "--height", "16", "--width", "16"]
ROWS = [
    {"prompt": "two red circles"},
    {"prompt": "a blue square", "seed": [5], "metadata": {"tag": "colors"}},
    {"prompt": "a cat"},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "tiny-sd"
    tiny_sd().save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def batch_argv(prompts, out, model_dir, *extra):
    return ["batch", str(prompts), "--out", str(out), "--model", str(model_dir), "--verifier", "brightness",
            "--seeds", "0,1", "--no-progress", *SEARCH_ARGS, *extra]


@pytest.fixture(scope="module")
def reference(prompts, model_dir, tmp_path_factory):
    """One uninterrupted single-process batch through the CLI."""
    out = tmp_path_factory.mktemp("reference") / "batch"
    assert main(batch_argv(prompts, out, model_dir)) == 0
    return out


def per_item(out):
    """item -> what must not depend on how the batch was run: prompt, seed, score, chosen image bytes."""
    return {r["item"]: (r["prompt"], r["seed"], r["score"], (out / r["image"]).read_bytes()) for r in read_index(out)}


def test_read_prompts_text_and_jsonl(tmp_path, prompts):
    text = tmp_path / "p.txt"
    text.write_text("two red circles\n\n   \n  a cat  \n")
    items = read_prompts(text, seeds=[0, 3])
    assert [(i.row, i.prompt, i.seed) for i in items] == [
        (0, "two red circles", 0), (0, "two red circles", 3), (1, "a cat", 0), (1, "a cat", 3)]
    assert items[1].name == "00000-two-red-circles-s3"
    items = read_prompts(prompts, seeds=[0, 1])
    assert [(i.prompt, i.seed, i.metadata) for i in items] == [
        ("two red circles", 0, None), ("two red circles", 1, None), ("a blue square", 5, {"tag": "colors"}),
        ("a cat", 0, None), ("a cat", 1, None)]
    assert parse_seeds("0-2,7,1") == [0, 1, 2, 7]


def test_batch_writes_one_run_dir_per_item_and_an_index(reference):
    records = read_index(reference)
    assert [(r["prompt"], r["seed"]) for r in records] == [
        ("two red circles", 0), ("two red circles", 1), ("a blue square", 5), ("a cat", 0), ("a cat", 1)]
    assert sorted(p.name for p in (reference / ITEMS).iterdir()) == [r["item"] for r in records]
    for r in records:
        run = reference / r["run_dir"]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["config"]["prompt"] == r["prompt"] and summary["config"]["seed"] == r["seed"]
        assert summary["chosen"]["score"] == r["score"] and (reference / r["image"]).is_file()
        assert r["counts"]["nfe"] == summary["counts"]["nfe"] > 0 and r["seconds"]["total"] > 0
    assert records[2]["metadata"] == {"tag": "colors"}
    assert json.loads((reference / "batch.json").read_text())["strategy"] == "bon"


def test_killed_batch_resumes_without_duplicates(reference, prompts, model_dir, tmp_path, capsys):
    out = tmp_path / "batch"
    items = read_prompts(prompts, seeds=[0, 1])
    settings = json.loads((reference / "batch.json").read_text())
    pipe = load_pipeline(model_dir)

    class Killed(Exception):
        pass

    def kill_after_two(item, record):
        if len(done) == 1:
            raise Killed
        done.append(item)

    done: list = []
    prepare_batch(out, items, settings)
    with pytest.raises(Killed):
        run_batch(pipe, items, out, verifier=BrightnessVerifier(), on_item=kill_after_two, show_progress=False,
                  **SEARCH)
    finished = [p for p in (out / ITEMS).iterdir() if (p / "summary.json").is_file()]
    assert len(finished) == 2
    before = {p.name: ((p / "chosen.png").read_bytes(), (p / "summary.json").stat().st_mtime_ns) for p in finished}
    # What a SIGKILL mid-item leaves: a hidden partial run directory, and a torn index line.
    leftover = out / ITEMS / f".{items[2].name}.partial-99999"
    leftover.mkdir()
    (leftover / "chosen.png").write_bytes(b"half")
    with open(out / INDEX, "a") as f:
        f.write('{"item": "00000-two-red-circles-s0", "sco')

    assert main(batch_argv(prompts, out, model_dir)) == 0
    assert "5 of 5 items finished (2 before this run)" in capsys.readouterr().out
    assert not leftover.exists()
    records = read_index(out)
    assert len(records) == len({r["item"] for r in records}) == 5
    for name, (png, mtime) in before.items():  # finished before the kill: kept, not redone
        assert (out / ITEMS / name / "chosen.png").read_bytes() == png
        assert (out / ITEMS / name / "summary.json").stat().st_mtime_ns == mtime
    assert per_item(out) == per_item(reference)

    assert main(batch_argv(prompts, out, model_dir)) == 0  # nothing left to do
    assert "5 of 5 items finished (5 before this run)" in capsys.readouterr().out
    assert per_item(out) == per_item(reference)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accelerate_two_processes_split_and_merge(reference, prompts, model_dir, tmp_path):
    out = tmp_path / "batch"
    argv = batch_argv(prompts, out, model_dir)
    argv.remove("--no-progress")  # the per-process bars show that both processes took items
    # accelerate 1.x's --cpu starts one process without MPI; --multi_gpu starts K torchrun workers, and
    # on a machine without CUDA the command puts them on the CPU with gloo.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "-m", "rd_inference.cli", *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "process 0: 100%" in res.stderr and "process 1: 100%" in res.stderr
    assert "all processes: 100%" in res.stderr  # the main process's bar over every item
    assert "5 of 5 items finished" in res.stdout
    assert per_item(out) == per_item(reference)
    assert [r["item"] for r in read_index(out)] == [r["item"] for r in read_index(reference)]


def _jsonl(tmp_path, *lines):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (lambda t: t / "missing.txt", [], "prompts file not found"),
        (lambda t: (t / "e.txt").write_text("\n  \n") and t / "e.txt", [], "holds no prompts"),
        (lambda t: _jsonl(t, '{"prompt": "a cat"}', "", '{"prompt": "a dog",}'), [],
         "p.jsonl:3: not valid JSON"),
        (lambda t: _jsonl(t, '{"prompt": "a cat", "sed": 3}'), [], "p.jsonl:1: unknown key(s) ['sed']"),
        (lambda t: _jsonl(t, '{"prompt": 3}'), [], 'p.jsonl:1: "prompt" must be a non-empty string'),
        (lambda t: _jsonl(t, '{"prompt": "a cat", "seed": "3"}'), [], 'p.jsonl:1: "seed" must be'),
        (lambda t: _jsonl(t, '{"prompt": "a cat", "metadata": [1]}'), [], '"metadata" must be a JSON object'),
        (lambda t: _jsonl(t, '{"prompt": "a cat", "criteria": "no_such"}'), [], 'p.jsonl:1: bad "criteria"'),
        (lambda t: _jsonl(t, '["a cat"]'), [], "p.jsonl:1: expected a JSON object"),
        (lambda t: _jsonl(t, '{"prompt": "a cat", "criteria": "alignment"}'), [], "brightness takes none"),
        (lambda t: _jsonl(t, '{"prompt": "a cat"}'), ["--seeds", "1,x"], "--seeds '1,x'"),
        (lambda t: _jsonl(t, '{"prompt": "a cat"}'), ["--strategy", "astar"], "unknown strategy 'astar'"),
        (lambda t: _jsonl(t, '{"prompt": "a cat"}'), ["--budget", "lots"], "not a number of denoiser forwards"),
    ],
)
def test_bad_input_fails_before_any_work(tmp_path, capsys, make, extra, message):
    prompts = make(tmp_path)
    out = tmp_path / "out"
    assert main(batch_argv(prompts, out, "/nonexistent/model", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()  # nothing loaded, nothing written


def test_unwritable_output_dir(tmp_path, prompts, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(batch_argv(prompts, blocker / "out", "/nonexistent/model")) == 2
    assert "cannot write the batch output folder" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(batch_argv(prompts, locked / "out", "/nonexistent/model")) == 2
        assert "cannot write the batch output folder" in capsys.readouterr().err


def test_resume_with_other_settings_is_refused(reference, prompts, model_dir, capsys):
    before = (reference / INDEX).read_bytes()
    assert main(batch_argv(prompts, reference, model_dir, "--budget", "3x")) == 2
    err = capsys.readouterr().err
    assert "holds a batch made with other settings (budget: '2x' -> '3x')" in err
    assert (reference / INDEX).read_bytes() == before


def test_changed_prompts_file_is_refused(reference, model_dir, tmp_path, capsys):
    out = tmp_path / "batch"
    shutil.copytree(reference, out)
    changed = tmp_path / "changed.jsonl"
    changed.write_text(json.dumps({"prompt": "two red circles", "seed": 1}) + "\n")
    assert main(batch_argv(changed, out, model_dir)) == 0  # a subset of the batch: already finished
    assert "1 of 1 items finished (1 before this run)" in capsys.readouterr().out
    changed.write_text(json.dumps({"prompt": "two red  circles", "seed": 1}) + "\n")  # same slug, other prompt
    assert main(batch_argv(changed, out, model_dir)) == 2
    assert "the prompts file changed since that run" in capsys.readouterr().err


def test_row_criteria_swap_the_shared_verifiers_and_restore_them():
    class Stub:
        criteria = ("default",)

    v = Stub()
    with item_criteria(v, "aesthetics"):
        assert [c.name for c in v.criteria] == ["aesthetics"]
    assert v.criteria == ("default",)
    with item_criteria(v, None):
        assert v.criteria == ("default",)
    with pytest.raises(ValueError, match="takes none"), item_criteria(BrightnessVerifier(), "aesthetics"):
        pass
