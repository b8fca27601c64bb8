"""KDiffusionDenoiser on a toy model whose x0 is exact (Gaussian data): Euler reaches the data marginal in
both state spaces, every strategy runs on it unchanged, counts match the plan, seeds reproduce."""

import pytest
import torch

from rd_inference import BrightnessVerifier
from rd_inference.api import run_search
from rd_inference.denoisers.kdiffusion import KDiffusionDenoiser, default_level, schedule_from_sigmas
from rd_inference.strategies.search_over_paths import plan_rounds

MU, STD = 0.3, 0.5  # toy data: every latent entry ~ N(MU, STD^2), independently


def exact_x0(space):
    """The posterior mean E[x0 | x] of the toy data: the ideal denoiser, so Euler follows the exact ODE."""

    def fn(x, sigma):
        s = sigma.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        if space == "ve":  # x = x0 + s eps
            return MU + STD**2 / (STD**2 + s**2) * (x - MU)
        a = 1 - s  # x = a x0 + s eps
        return MU + a * STD**2 / (a**2 * STD**2 + s**2) * (x - a * MU)

    return fn


def sigmas_for(space, steps):
    if space == "flow":
        return torch.linspace(1.0, 0.0, steps + 1)
    k = torch.linspace(0, 1, steps)  # Karras-like grid from 14.6 down, then 0
    s = (14.6 ** (1 / 7) + k * (0.03 ** (1 / 7) - 14.6 ** (1 / 7))) ** 7
    return torch.cat([s, torch.zeros(1)])


def make(space, steps=8, **kw):
    return KDiffusionDenoiser(
        exact_x0(space), sigmas_for(space, steps), space=space, latent_shape=(3, 4, 4),
        decode_fn=lambda x0: x0.clamp(0, 1), prompt="a bright square", **kw,
    )


@pytest.mark.parametrize("space", ["ve", "flow"])
def test_euler_with_exact_x0_reaches_the_data_marginal(space):
    den = make(space, steps=60, max_batch=4096)
    gens = [torch.Generator().manual_seed(i) for i in range(2000)]
    x = den.initial_noise(gens)
    if space == "ve":  # txt2img start x = sigma0 * eps has variance sigma0^2, data adds STD^2: start exact
        x = x * (1 + STD**2 / float(den.schedule.sigma[0]) ** 2) ** 0.5 + MU
    x_end, x0 = den.denoise(x, 0, den.schedule.num_steps, gens)
    assert torch.equal(x_end, x0)
    assert abs(x_end.mean().item() - MU) < 0.02
    assert abs(x_end.std().item() - STD) < 0.03
    assert den.ledger.nfe == 2000 * 60


@pytest.mark.parametrize("space", ["ve", "flow"])
@pytest.mark.parametrize("strategy,params", [
    ("bon", {"n": 3}),
    ("sop", {"n": 2, "m": 2, "sigma_start": 0.4, "delta_f": 0.3, "delta_b": 0.5}),
    ("zo", {"neighbors": 2, "rounds": 2}),
    ("beam", {"beams": 2, "children": 2, "every": 3}),
    ("fk", {"particles": 3, "every": 3}),
    ("prune", {"n": 4}),
])
def test_strategies_run_unchanged_with_planned_counts_and_seeds(space, strategy, params):
    finals = {}

    def keep(x, gens):
        for row, g in zip(x, gens):
            finals[g.initial_seed()] = row.clone()

    steps_done = []
    den = make(space, forwards_per_step=2, on_final=keep)
    result = run_search(den, BrightnessVerifier(), strategy=strategy, seed=5,
                        progress=lambda done, total: steps_done.append((done, total)), **params)
    planned = result.config["planned_nfe"]
    assert result.counts["nfe"] == planned == steps_done[-1][0] == steps_done[-1][1]
    if strategy == "sop":
        start, rounds = plan_rounds(den.schedule, 0.4, 0.3, 0.5)
        assert planned == 2 * 2 * (start + 2 * sum(j - f for _, f, j in rounds))
    # The chosen node's latents were handed to on_final, and decode to the chosen image's score.
    chosen = finals[result.tree[result.node_id].seed]
    assert abs(BrightnessVerifier()(den.decode(chosen[None]), "").item() - result.score) < 1e-2
    again = run_search(make(space, forwards_per_step=2), BrightnessVerifier(), strategy=strategy, seed=5, **params)
    assert again.node_id == result.node_id and again.score == result.score
    other = run_search(make(space, forwards_per_step=2), BrightnessVerifier(), strategy=strategy, seed=6, **params)
    assert other.score != result.score


def test_search_climbs_the_verifier():
    single = [run_search(make("flow"), BrightnessVerifier(), strategy="bon", n=1, seed=s).score for s in range(4)]
    best = run_search(make("flow"), BrightnessVerifier(), strategy="bon", n=8, seed=0).score
    assert best > sum(single) / len(single)


def test_schedule_from_sigmas():
    s = schedule_from_sigmas("flow", torch.tensor([1.0, 0.6, 0.2, 0.0]))
    assert s.space == "flow" and s.prediction == "sample" and s.num_steps == 3
    assert torch.allclose(s.alpha + s.sigma, torch.ones(4, dtype=torch.float64))
    assert torch.equal(s.level, s.sigma)
    ve = schedule_from_sigmas("ve", torch.tensor([14.6, 1.0, 0.0]))
    assert torch.equal(ve.alpha, torch.ones(3, dtype=torch.float64))
    assert torch.allclose(ve.level, default_level("ve", torch.tensor([14.6, 1.0, 0.0])))
    assert 0.99 < float(ve.level[0]) < 1.0 and float(ve.level[-1]) == 0.0
    given = schedule_from_sigmas("ve", torch.tensor([14.6, 1.0, 0.0]), level=torch.tensor([0.999, 0.5, 0.01], dtype=torch.float64))
    assert given.level.tolist() == [0.999, 0.5, 0.0]


@pytest.mark.parametrize("kwargs,match", [
    ({"sigmas": torch.tensor([1.0, 0.5])}, "not 0"),
    ({"sigmas": torch.tensor([0.5, 1.0, 0.0])}, "strictly decreasing"),
    ({"sigmas": torch.tensor([2.0, 1.0, 0.0])}, "flow sigmas"),
    ({"space": "vp"}, "space must be"),
    ({"prompt": "  "}, "prompt is empty"),
    ({"max_batch": 0}, "max_batch"),
])
def test_bad_settings_name_the_fix(kwargs, match):
    args = {"sigmas": torch.tensor([1.0, 0.5, 0.0]), "space": "flow", "prompt": "x", **kwargs}
    sigmas, space, prompt = args.pop("sigmas"), args.pop("space"), args.pop("prompt")
    with pytest.raises(ValueError, match=match):
        KDiffusionDenoiser(exact_x0("flow"), sigmas, space=space, latent_shape=(3, 2, 2),
                           decode_fn=lambda x: x, prompt=prompt, **args)
