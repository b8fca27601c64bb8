"""The SoP diagnosis (rd_inference.toyworld.diagnose) on the embedded toy models, at a tiny size."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rd_inference.toyworld import diagnose


def test_rank_auc_known_values():
    assert diagnose.rank_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert diagnose.rank_auc([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(0.5)  # ties count half
    assert math.isnan(diagnose.rank_auc([0.1, 0.9], [1, 1]))  # one class missing


def test_prompts_come_from_tune_only():
    from rd_inference.toyworld.prompts import split_of

    chosen = diagnose.pick_prompts(2)
    assert len(chosen) == 10 - 1  # two_objects has a single tune prompt
    assert all(split_of(p) == "tune" for p in chosen)


@pytest.fixture(scope="module")
def models():
    from rd_inference.pipelines import load_pipeline
    from rd_inference.toyworld.worlds import get_world
    from rd_inference.verifier_loading import load_verifier

    v1 = get_world("v1")  # the diagnosis is of world v1
    return load_pipeline(v1.pipeline_path, device="cpu"), load_verifier(str(v1.verifier_path), device="cpu")


def _run(models, chosen):
    pipe, verifier = models
    return [diagnose.measure_prompt(pipe, verifier, p, [0], deltas=(0.3,), branches=1) for p in chosen]


def _in_unit(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or 0.0 <= v <= 1.0


def test_measurement_shapes_ranges_and_determinism(models, tmp_path):
    chosen = [diagnose.pick_prompts(1)[0], diagnose.pick_prompts(1)[-1]]  # a single and a position prompt
    first, second = _run(models, chosen), _run(models, chosen)
    for a, b in zip(first, second):
        assert a["scores"].shape == (1, 10) and a["x0_ok"].shape == (1, 10) and a["branch_ok"].shape == (1, 10, 1, 1)
        for key in ("scores", "x0_ok", "final_ok", "final_score"):
            assert np.array_equal(a[key], b[key])
        assert np.array_equal(a["branch_ok"], b["branch_ok"], equal_nan=True)
    rec = first[0]
    assert all(x > y for x, y in zip(rec["level"], rec["level"][1:]))  # noisiest first
    assert np.isnan(rec["branch_ok"][:, 0]).all()  # nothing noisier than grid point 0 to re-noise to
    assert not np.isnan(rec["branch_ok"][:, 1:]).any()

    summary = diagnose.summarise(first, deltas=(0.3,))
    assert summary["pairs"] == 2 and summary["passed"] + summary["failed"] == 2
    levels = [r["level"] for r in summary["per_level"]]
    assert levels == sorted(levels, reverse=True) and levels[-1] == 0.0
    for r in summary["per_level"]:
        assert _in_unit(r["auc"]) and _in_unit(r["agreement"]) and _in_unit(r["x0_pass"])
    assert len(summary["per_level_delta"]) == 9
    for c in summary["per_level_delta"]:
        assert all(_in_unit(c[k]) for k in ("flip", "rescue", "break", "rescue_any", "rescue_any_position", "rescue_rest"))
        assert all(_in_unit(v) for v in c["rescue_by_skill"].values())

    out = tmp_path / "diag"
    diagnose.write_outputs(out, {"summary": summary})
    assert sorted(p.name for p in out.iterdir()) == ["diagnosis.json", "diagnosis.md", "diagnosis.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["diag"]  # no temp folder left beside it
    assert json.loads((out / "diagnosis.json").read_text())["summary"]["pairs"] == 2
