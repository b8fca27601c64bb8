"""The toy-world benchmark: statistics, refusal of seen prompts, and a --quick run writing all outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rd_inference.bench import Cell, check_disjoint, markdown_table, wilson, write_outputs
from rd_inference.toyworld.prompts import prompts

ROOT = Path(__file__).resolve().parents[1]


def rd_tts(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rd_inference.cli", *map(str, args)], check=False,
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_wilson_interval():
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-3) and high == pytest.approx(0.7634, abs=1e-3)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0
    # The interval holds the estimate exactly, also where floating point once put 1 - 1e-16 above it.
    for n in range(1, 80):
        assert wilson(n, n)[1] == 1.0 and wilson(0, n)[0] == 0.0
        assert all(wilson(k, n)[0] <= k / n <= wilson(k, n)[1] for k in range(n + 1))


def test_eval_prompts_seen_in_training_or_tuning_are_refused(tmp_path):
    train, tune, evaluation = prompts("train"), prompts("tune"), prompts("eval")
    check_disjoint(evaluation, [*train, *tune])  # the shipped split is clean
    with pytest.raises(ValueError, match="also appear in the training or tuning sets"):
        check_disjoint([evaluation[0], tune[0]], [*train, *tune])
    bad = tmp_path / "prompts.txt"
    bad.write_text(f"{evaluation[0]}\n{train[0]}\n")
    res = rd_tts("bench", "--prompts", bad, "--out", tmp_path / "out", cwd=tmp_path)
    assert res.returncode == 2 and "training or tuning sets" in res.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_methods_are_refused_before_any_work(tmp_path):
    from rd_inference.bench import run_bench

    # No pipeline or verifier is touched: the check comes before the first cell.
    with pytest.raises(ValueError, match="unknown method.*'bogus'"):
        run_bench(None, None, [("a red circle", 0)], methods=["one", "bogus"], budgets=[1], steps=2, guidance=1.0)
    res = rd_tts("bench", "--methods", "one,bogus", "--out", tmp_path / "out", cwd=tmp_path)
    assert res.returncode == 2 and "'bogus'" in res.stderr and "or 'all'" in res.stderr
    assert not (tmp_path / "out").exists()


def test_methods_all_and_default():
    from rd_inference.bench import METHODS, resolve_methods

    assert resolve_methods("all") == list(METHODS)
    assert resolve_methods(" one, bon ,sop,zo ") == ["one", "bon", "sop", "zo"]


def test_outputs_from_cells(tmp_path):
    cells = [Cell("one", 1, 10, 0.4, 0.2, 0.6, 0.5, 40, 0.1, 0.25, 4),
             Cell("bon", 4, 10, 0.6, 0.3, 0.8, 0.7, 160, 0.3, 0.0, 8)]
    write_outputs(cells, tmp_path, {"note": "synthetic"})
    assert json.loads((tmp_path / "results.json").read_text())["cells"][1]["accuracy"] == 0.6
    assert "| bon | 4x | 0.600 [0.300, 0.800]" in markdown_table(cells)
    assert (tmp_path / "accuracy_vs_nfe.png").stat().st_size > 1000


def test_a_perfect_cell_plots_and_a_failed_write_leaves_no_folder(tmp_path, monkeypatch):
    from rd_inference import bench

    lo, hi = wilson(57, 57)
    perfect = [Cell("one", 1, 57, 0.7, 0.6, 0.8, 0.7, 20, 0.1, 0.1, 40),
               Cell("sop", 16, 57, 1.0, lo, hi, 0.99, 276, 1.6, 0.0, 57)]
    write_outputs(perfect, tmp_path / "ok", {})
    assert (tmp_path / "ok" / "accuracy_vs_nfe.png").stat().st_size > 1000

    def broken_plot(cells, path):
        raise ValueError("plot failed")

    monkeypatch.setattr(bench, "plot", broken_plot)
    with pytest.raises(ValueError, match="plot failed"):
        write_outputs(perfect, tmp_path / "bad", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]


def test_quick_bench_writes_table_json_and_plot(tmp_path):
    res = rd_tts("bench", "--quick", "--out", tmp_path / "bench", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads((tmp_path / "bench" / "results.json").read_text())
    methods = {c["method"] for c in data["cells"]}
    assert {"one", "bon", "sop"} <= methods
    assert all(0.0 <= c["accuracy"] <= 1.0 and c["ci_low"] <= c["accuracy"] <= c["ci_high"] for c in data["cells"])
    table = (tmp_path / "bench" / "table.md").read_text()
    assert table.startswith("| method |") and "per task" in table
    assert (tmp_path / "bench" / "accuracy_vs_nfe.png").stat().st_size > 1000
    assert data["meta"]["world"] == "v2" and len(data["meta"]["pairs"]) == len(data["meta"]["tasks"]) == 6  # one a task
    records = sorted(p.name for p in (tmp_path / "bench" / "records").iterdir())
    assert "bon@8x.jsonl" in records and "one@1x.jsonl" in records
    assert not any(p.name.endswith(".records") for p in tmp_path.iterdir())  # moved into --out at the end


def test_balanced_pairs_give_every_task_as_many_fresh_pairs():
    from rd_inference.commands.bench import balanced_pairs

    pairs = balanced_pairs({"big": tuple(f"p{i}" for i in range(10)), "small": ("a", "b")}, 4, [0, 1])
    big, small = pairs[:8], pairs[8:]
    assert len(big) == len(small) == 8 and len(set(pairs)) == 16
    assert sorted({p for p, _ in big}) == ["p0", "p3", "p6", "p9"]  # spread over the task's prompts
    assert sorted(small) == [("a", 0), ("a", 1), ("a", 10000), ("a", 10001),
                             ("b", 0), ("b", 1), ("b", 10000), ("b", 10001)]


def test_cells_resume_from_their_records_and_refuse_other_settings(tmp_path, monkeypatch):
    from rd_inference import bench
    from rd_inference.commands.bench import _check_records

    calls = []

    def fake(pipe, verifier, method, budget, prompt, seed, **_):
        calls.append((prompt, seed))
        return {"prompt": prompt, "seed": seed, "ok": seed % 2 == 0, "score": 0.9, "nfe": 80, "cap": 80,
                "seconds": 0.1}

    monkeypatch.setattr(bench, "_search_pair", fake)
    record = tmp_path / "bon@8x.jsonl"
    pairs = [("a red circle", s) for s in range(4)]
    first = bench.run_cell(None, None, "bon", 8, pairs[:2], steps=10, guidance=4.0, record=record)
    again = bench.run_cell(None, None, "bon", 8, pairs, steps=10, guidance=4.0, record=record)
    assert calls == pairs  # the first two pairs were not searched again
    assert first.passes == [True, False] and again.passes == [True, False, True, False]
    _check_records(tmp_path / "rec", {"steps": 10})
    _check_records(tmp_path / "rec", {"steps": 10})
    with pytest.raises(ValueError, match="other settings"):
        _check_records(tmp_path / "rec", {"steps": 20})


def test_records_of_the_embedded_models_resume_from_any_checkout(tmp_path):
    """The committed --full records were made in one checkout; a clone elsewhere must resume them."""
    from rd_inference.commands.bench import _check_records

    here = {"model": "/home/a/rd_inference/toyworld/weights/v2/pipeline",
            "verifier": "vlm:/home/a/rd_inference/toyworld/weights/v2/verifier@1", "steps": 10}
    _check_records(tmp_path / "rec", here)
    written = json.loads((tmp_path / "rec" / "fingerprint.json").read_text())
    assert written["model"] == "rd_inference/toyworld/weights/v2/pipeline"
    assert written["verifier"] == "vlm:rd_inference/toyworld/weights/v2/verifier@1"
    _check_records(tmp_path / "rec", {**here, "model": "/srv/x/y/rd_inference/toyworld/weights/v2/pipeline"})
    with pytest.raises(ValueError, match="other settings"):  # a model of one's own stays itself
        _check_records(tmp_path / "rec", {**here, "model": "/srv/my_pipeline"})


def test_per_task_table_compares_with_best_of_n_on_each_tasks_pairs():
    from rd_inference.bench import per_task_table

    tasks = ["counting"] * 4 + ["position"] * 4
    bon = Cell("bon", 8, 8, 0.5, 0, 1, 0.5, 80, 0.1, 0.0, 0, 80.0, [True, True, False, False] * 2)
    sop = Cell("sop", 8, 8, 0.5, 0, 1, 0.5, 80, 0.1, 0.0, 0, 80.0, [True, True, True, False] + [False] * 4)
    table = per_task_table([bon, sop], tasks)
    assert "| counting (4) | position (4) |" in table
    assert "| sop | 8x | 75.0 (+25.0; 1:0) | 0.0 (-50.0; 0:2) |" in table
    assert "| bon | 8x | 50.0 | 50.0 |" in table


def test_the_verifier_is_named_by_kind_and_resolved_folders_in_the_records(tmp_path):
    # A bare VLM folder keeps the name records had before other kinds existed; kinds and ensembles are
    # named with each local folder resolved and the ensemble's aggregation, so mixed runs never resume.
    from rd_inference.commands.bench import _verifier_identity

    vlm, clip = tmp_path / "vlm", tmp_path / "clip"
    for folder in (vlm, clip):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"")
    assert _verifier_identity(str(vlm), "mean") == (str(vlm.resolve()), [vlm])
    name, folders = _verifier_identity(f"vlm:{vlm}+clip:{clip}@0.5", "rank")
    assert name == f"vlm:{vlm.resolve()}@1+clip:{clip.resolve()}@0.5 (rank)" and folders == [vlm, clip]
    assert _verifier_identity(f"vlm:{vlm}+clip:{clip}@0.5", "mean")[0] != name
    assert _verifier_identity("brightness", "mean") == ("brightness:@1", [])


def test_verifier_runs_are_compared_pair_by_pair(tmp_path, capsys):
    from benchmarks.compare_verifiers import main as compare_main

    for name, oks in (("vlm", [1, 0, 1, 0]), ("clip", [1, 1, 1, 0])):
        records = tmp_path / name / "records"
        records.mkdir(parents=True)
        rows = [{"prompt": f"p{i // 2}", "seed": i % 2, "ok": bool(ok), "score": 0.8} for i, ok in enumerate(oks)]
        (records / "bon@4x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    compare_main([f"vlm={tmp_path / 'vlm'}", f"clip={tmp_path / 'clip'}@0.7"])
    out = capsys.readouterr().out
    assert "| bon@4x | clip | 0.750" in out and "+25.0 pts" in out and "(1:0, p=1, 4 pairs)" in out
    assert "0.333 (≥ 0.7, 4 picks)" not in out and "0.250 (≥ 0.7, 4 picks)" in out


def test_the_oracle_as_verifier_scores_its_own_verdicts_and_makes_best_of_n_pass_at_n():
    """A perfect judge: score 1 exactly when the oracle passes, so Best-of-N with it finds a passing sample
    whenever any of its N samples passes (never worse than one sample on the same pair)."""
    import numpy as np

    from rd_inference import search
    from rd_inference.images import to_tensor
    from rd_inference.pipelines import load_pipeline
    from rd_inference.toyworld.oracle_verifier import OracleVerifier
    from rd_inference.toyworld.worlds import get_world

    world = get_world("v2")
    verifier = OracleVerifier(world)
    prompt = "two red circles"
    good = world.render(world.sample_scene(prompt, np.random.default_rng(0)))
    bad = world.render(world.sample_scene("three blue squares", np.random.default_rng(0)))
    assert verifier(to_tensor([good, bad]), prompt).tolist() == [1.0, 0.0]
    pipe = load_pipeline(world.pipeline_path, device="cpu")
    for seed in range(3):
        one = search(pipe, prompt, verifier=verifier, strategy="bon", n=1, seed=seed, steps=6)
        best = search(pipe, prompt, verifier=verifier, strategy="bon", budget="4x", seed=seed, steps=6)
        assert best.score == float(world.check(best.image, prompt).ok)
        assert best.score >= one.score  # the 4 samples start with the single one's (same seed)
