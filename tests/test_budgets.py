"""Budgets that are spent: every strategy's fitter uses >= 95% of 4x, 8x and 16x on the embedded toy model,
and Search over Paths' wider start and rollover spend what they plan."""

import numpy as np
import pytest
from tiny_pipelines import tiny_sd

from rd_inference import BrightnessVerifier, regenerate, search
from rd_inference.budget import fits as _fits
from rd_inference.denoisers import make_denoiser
from rd_inference.paired import mcnemar_exact, paired
from rd_inference.pipelines import default_model_path, load_pipeline, model_defaults
from rd_inference.strategies import STRATEGIES

SMALL = {"steps": 8, "height": 16, "width": 16}


@pytest.fixture(scope="module")
def embedded():
    pipe = load_pipeline(default_model_path(), device="cpu")
    d = model_defaults(default_model_path())
    return make_denoiser(pipe, "a red circle", steps=d["steps"], guidance_scale=d["guidance_scale"]), d


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("multiple", [4, 8, 16])
def test_every_strategy_spends_its_budget_on_the_embedded_model(embedded, name, multiple):
    """With the settings the embedded model ships (the bench's), and with the built-in ones from 8x on."""
    den, defaults = embedded
    strategy = STRATEGIES[name]
    one = den.schedule.num_steps * den.forwards_per_step
    shipped = defaults.get("strategies", {}).get(name, {})
    for settings in [shipped] + ([{}] if multiple >= 8 else []):
        params = {**strategy.defaults, **settings}
        budget = multiple * one
        assert _fits(strategy, budget, den.schedule, den.forwards_per_step, params)
        planned = strategy.nfe(den.schedule, den.forwards_per_step,
                               strategy.fit(budget, den.schedule, den.forwards_per_step, params))
        assert 0.95 * budget <= planned <= budget, (name, settings, planned, budget)


def test_a_budget_that_cannot_be_spent_says_so():
    """The paper's levels on a 10-step grid: a path costs 8 steps to sigma_start and a branch 9, so at 4x
    (40 steps) 6 steps are left that nothing fits in."""
    pipe = load_pipeline(default_model_path(), device="cpu")
    with pytest.warns(UserWarning, match="can spend only 68 of the 80 denoiser forwards"):
        result = search(pipe, "a red circle", verifier=BrightnessVerifier(), strategy="sop", budget="4x", steps=10,
                        guidance_scale=4.0, m=2, sigma_start=0.11, delta_f=0.78, delta_b=0.81)
    assert result.counts["nfe"] == 68 and "can spend only" in result.config["budget_note"]


@pytest.mark.parametrize("settings", [
    {"n": 2, "m": 2, "widen": 2.0},
    {"n": 1, "m": 3, "n_init": 5},
    {"n": 2, "m": 3, "widen": 2.0, "rollover": True},
    {"n": 2, "m": 2, "widen": 2.0, "keep_parent": True},
    {"n": 1, "m": 2, "widen": 3.0, "keep_parent": True, "rollover": True},
])
def test_sop_wider_start_and_rollover(settings, tmp_path):
    pipe = tiny_sd()
    run = lambda **kw: search(pipe, "two red circles", verifier=BrightnessVerifier(), strategy="sop", seed=3,
                              sigma_start=0.6, delta_f=0.2, delta_b=0.4, **SMALL, **settings, **kw)
    result = run(out=tmp_path / "run")
    inits = [n for n in result.tree.nodes if n.round == 0]
    expected = settings.get("n_init") or int(settings["widen"] * settings["n"])
    assert len(inits) == expected
    assert all(n.score is not None for n in inits)  # the wide start is verified at sigma_start
    assert sum(n.kept for n in inits) == settings["n"]
    if settings.get("keep_parent"):  # every round also continues each kept path without new noise
        assert any(n.kind == "continue" for n in result.tree.nodes)
    if settings.get("rollover"):
        assert result.counts["nfe"] <= result.counts["planned_nfe"]
    else:
        assert result.counts["nfe"] == result.counts["planned_nfe"]
    again = run()
    assert again.node_id == result.node_id and (np.asarray(again.image) == np.asarray(result.image)).all()
    node_id = max(result.candidates)
    image = regenerate(tmp_path / "run", node_id, pipe=pipe, verifier=BrightnessVerifier())
    assert (np.asarray(image) == np.asarray(result.candidates[node_id])).all()


def test_sop_budget_goes_to_extra_initial_paths():
    result = search(tiny_sd(), "two red circles", verifier=BrightnessVerifier(), strategy="sop", budget="8x",
                    sigma_start=0.6, delta_f=0.2, delta_b=0.4, m=2, **SMALL)
    c = result.counts
    assert c["budget_nfe"] == 8 * 8 * 2 and 0.95 * c["budget_nfe"] <= c["nfe"] == c["planned_nfe"] <= c["budget_nfe"]
    assert result.config["params"]["n_init"] > result.config["params"]["n"]


def test_paper_setting_stays_reachable():
    """widen=1 and no rollover is the paper's search: the initial paths are not verified."""
    result = search(tiny_sd(), "two red circles", verifier=BrightnessVerifier(), strategy="sop", n=2, m=2,
                    sigma_start=0.6, delta_f=0.2, delta_b=0.4, **SMALL)
    assert all(n.score is None for n in result.tree.nodes if n.round == 0)


def test_mcnemar_exact():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)


def test_paired_difference():
    a = [True] * 40 + [False] * 10 + [True] * 10
    b = [True] * 40 + [True] * 2 + [False] * 8 + [False] * 10
    res = paired(a, b)
    assert (res.a_only, res.b_only, res.n) == (10, 2, 60)
    assert res.diff == pytest.approx(8 / 60)
    assert 0 < res.ci_low < res.diff < res.ci_high
    # Pairs that share a prompt move together: the interval widens when they agree within the group.
    grouped = paired(a, b, groups=[i // 4 for i in range(60)])
    assert grouped.diff == res.diff and grouped.ci_high - grouped.ci_low >= res.ci_high - res.ci_low
    same = paired(a, a)
    assert (same.diff, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="equally long"):
        paired(a, b[:-1])
