"""Beam search with look-ahead, Feynman-Kac particles, staged pruning and evolutionary search on two families
(VP and flow)."""

import numpy as np
import pytest
import torch
from tiny_pipelines import tiny_flux, tiny_sd

from rd_inference import BrightnessVerifier, ConstantVerifier, regenerate, search
from rd_inference.posterior import posterior_step
from rd_inference.schedule import Schedule
from rd_inference.strategies.particles import effective_sample_size, resample_indices

SMALL = {"steps": 8, "height": 16, "width": 16}
SETTINGS = {
    "beam": {"beams": 2, "children": 2, "lookahead": 2, "every": 3},
    "fk": {"particles": 4, "every": 3, "ess": 1.0},
    "prune": {"n": 6, "prune_at": (0.25, 0.5), "keep": 0.5},
    "evo": {"population": 3, "elites": 2, "levels": (0.0, 0.25, 0.5), "extra": 1},
}


def expected_nfe(strategy: str, per_step: int) -> int:
    """The cost formulas written out by hand for SETTINGS on an 8-step grid."""
    if strategy == "beam":  # selections after steps 3, 6, 8; width 4
        first = 4 * 3
        segments = 4 * (3 - 1) + 4 * (2 - 1)  # the branching call comes from the look-ahead
        lookahead = 4 * 2 + 4 * 2  # 2 calls at step 3 (points 3, 5), 2 at step 6 (points 6, 7)
        return per_step * (first + segments + lookahead)
    if strategy == "fk":
        return per_step * 4 * 8
    if strategy == "evo":  # generations start at steps 0, 2, 4 with 3, 3, 3 + 1 children; 2 parents predicted
        return per_step * (3 * 8 + (3 * 6 + 2) + (4 * 4 + 2))
    return per_step * (6 * 2 + 3 * 2 + 2 * 4)  # prune at steps 2 and 4: 6 -> 3 -> 2 paths


@pytest.fixture(scope="module", params=["sd", "flux"])
def family(request):
    return request.param, (tiny_sd() if request.param == "sd" else tiny_flux())


@pytest.mark.parametrize("strategy", list(SETTINGS))
def test_runs_counts_reproduces_and_regenerates(family, strategy, tmp_path):
    name, pipe = family
    per_step = 1 if name == "flux" else 2
    run = lambda seed, **kw: search(pipe, "two red circles", verifier=BrightnessVerifier(), strategy=strategy,
                                    seed=seed, **SMALL, **SETTINGS[strategy], **kw)
    result = run(5, out=tmp_path / "run")
    assert result.counts["nfe"] == result.config["planned_nfe"] == expected_nfe(strategy, per_step)
    again = run(5)
    assert again.score == result.score and again.node_id == result.node_id
    assert (np.asarray(again.image) == np.asarray(result.image)).all()
    assert run(6).score != result.score
    node_id = max(result.candidates)
    image = regenerate(tmp_path / "run", node_id, pipe=pipe, verifier=BrightnessVerifier())
    assert (np.asarray(image) == np.asarray(result.candidates[node_id])).all()


def test_constant_verifier_leaves_the_particle_set_unchanged():
    log_w = torch.zeros(6, dtype=torch.float64)
    assert effective_sample_size(log_w) == pytest.approx(6.0)
    assert resample_indices(log_w, "systematic", torch.Generator().manual_seed(0)).tolist() == list(range(6))
    # In a run resampling at every scoring, each particle's next node continues its own lineage.
    result = search(tiny_sd(), "a cat", verifier=ConstantVerifier(), strategy="fk", particles=4, every=3, ess=1.0,
                    **SMALL)
    rounds = {}
    for node in result.tree.nodes:
        rounds.setdefault(node.round, []).append(node)
    for r in range(1, max(rounds) + 1):
        assert [n.parent for n in rounds[r]] == [n.id for n in rounds[r - 1]]


def test_multinomial_resampling_follows_the_weights():
    log_w = torch.log(torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(500):
        counts += torch.bincount(resample_indices(log_w, "multinomial", g), minlength=4)
    assert counts[0] / counts.sum() == pytest.approx(0.7, abs=0.03)


def test_particles_climb_the_verifier():
    result = search(tiny_sd(), "two red circles", verifier=BrightnessVerifier(), strategy="fk", particles=8,
                    every=2, lam=2000.0, ess=1.0, steps=12, height=16, width=16, seed=0)
    means = {}
    for node in result.tree.nodes:
        means.setdefault(node.round, []).append(node.score)
    first, last = np.mean(means[0]), np.mean(means[max(means)])
    assert last > first


def test_beam_climbs_the_verifier():
    result = search(tiny_sd(), "two red circles", verifier=BrightnessVerifier(), strategy="beam", beams=2,
                    children=4, every=3, steps=12, height=16, width=16, seed=0)
    best = {}
    for node in result.tree.nodes:
        best[node.round] = max(best.get(node.round, -1.0), node.score)
    assert best[max(best)] > best[0]


@pytest.mark.parametrize(
    "strategy, kwargs, match",
    [
        ("beam", {"beams": 0}, "beams and children must be >= 1"),
        ("beam", {"children": 0}, "beams and children must be >= 1"),
        ("beam", {"lookahead": 0}, "lookahead must be >= 1"),
        ("fk", {"ess": 0.0}, r"ess must be in \(0, 1\]"),
        ("fk", {"ess": 1.5}, r"ess must be in \(0, 1\]"),
        ("fk", {"potential": "mean"}, "potential must be one of difference, max, sum, current"),
        ("fk", {"eta": 0.0}, "particles need stochastic steps"),
        ("prune", {"prune_at": (0.0, 0.5)}, r"prune_at must be fractions of the schedule in \(0, 1\)"),
        ("prune", {"keep": 1.5}, r"keep must be a fraction in \(0, 1\]"),
        ("prune", {"keep": 0.0}, r"keep must be a fraction in \(0, 1\]"),
        ("evo", {"levels": (0.2, 0.5)}, "levels must start at 0"),
        ("evo", {"levels": (0.0, 0.5, 0.5)}, "levels must start at 0"),
        ("evo", {"beta": 1.0}, r"beta must be in \(0, 1\)"),
        ("evo", {"elites": 0}, "population and elites must be >= 1"),
        ("sop", {"widen": 0.5}, "widen must be >= 1"),
        ("sop", {"rollover": "yes"}, "rollover must be true or false"),
    ],
)
def test_bad_settings(strategy, kwargs, match):
    with pytest.raises(ValueError, match=match):
        search(tiny_sd(), "a cat", verifier=BrightnessVerifier(), strategy=strategy, **SMALL, **kwargs)


@pytest.mark.parametrize("space", ["vp", "flow"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_posterior_step_keeps_the_forward_marginals(space, eta):
    """Given the true x0, a reverse step from level i to j lands on the marginal of level j, for any eta."""
    if space == "flow":
        t = torch.tensor([0.9, 0.6, 0.3, 0.0], dtype=torch.float64)
        sched = Schedule("flow", "flow", t[:-1], 1 - t, t, t)
    else:
        abar = torch.tensor([0.05, 0.4, 0.8, 1.0], dtype=torch.float64)
        sched = Schedule("vp", "epsilon", torch.arange(3), abar.sqrt(), (1 - abar).sqrt(), 1 - abar)
    g = torch.Generator().manual_seed(0)
    count = 300_000
    x0 = 0.5 + 0.3 * torch.randn(count, generator=g, dtype=torch.float64)
    x = sched.alpha[0] * x0 + sched.sigma[0] * torch.randn(count, generator=g, dtype=torch.float64)
    y = posterior_step(sched, x, x0, 0, 2, torch.randn(count, generator=g, dtype=torch.float64), eta)
    a, s = sched.alpha[2].item(), sched.sigma[2].item()
    assert y.mean().item() == pytest.approx(a * 0.5, abs=0.01)
    assert y.var().item() == pytest.approx(a * a * 0.09 + s * s, rel=0.02)


def test_evolution_climbs_the_verifier_and_keeps_the_best():
    result = search(tiny_sd(), "two red circles", verifier=BrightnessVerifier(), strategy="evo", population=6,
                    elites=2, levels=(0.0, 0.3, 0.6), steps=12, height=16, width=16, seed=0)
    best = {}
    for node in result.tree.nodes:
        best[node.round] = max(best.get(node.round, -1.0), node.score)
    assert best[max(best)] >= best[0]
    assert result.score == max(n.score for n in result.tree.nodes)  # the best of every generation
    mutants = [n for n in result.tree.nodes if n.round > 0]
    assert mutants and all(result.tree[n.parent].round < n.round for n in mutants)


def test_mutation_keeps_the_level_marginal():
    """A mutant of a latent at grid point e has the marginal of that level when the x0-prediction is exact."""
    from types import SimpleNamespace

    from rd_inference.strategies.evolutionary import mutate

    abar = torch.tensor([0.05, 0.4, 1.0], dtype=torch.float64)
    sched = Schedule("vp", "epsilon", torch.arange(2), abar.sqrt(), (1 - abar).sqrt(), 1 - abar)
    g = torch.Generator().manual_seed(0)
    count = 200_000
    x0 = 0.5 + 0.3 * torch.randn(count, 1, generator=g, dtype=torch.float64)
    x = sched.alpha[1] * x0 + sched.sigma[1] * torch.randn(count, 1, generator=g, dtype=torch.float64)
    den = SimpleNamespace(sample_noise=lambda gens, shape: torch.randn(*shape, generator=g, dtype=torch.float64))
    ctx = SimpleNamespace(denoiser=den, schedule=sched, predict=lambda x, e: x0)
    y = mutate(ctx, x, list(range(count)), 1, 0.6, [None] * count)
    assert y.mean().item() == pytest.approx(x.mean().item(), abs=0.01)
    assert y.var().item() == pytest.approx(x.var().item(), rel=0.02)
    assert torch.corrcoef(torch.stack([x[:, 0], y[:, 0]]))[0, 1] < 0.99  # and it did move
