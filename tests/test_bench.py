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
        run_bench(None, None, ["a red circle"], [0], methods=["one", "bogus"], budgets=[1], steps=2, guidance=1.0)
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
    assert (tmp_path / "bench" / "table.md").read_text().startswith("| method |")
    assert (tmp_path / "bench" / "accuracy_vs_nfe.png").stat().st_size > 1000
