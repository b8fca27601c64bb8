"""Monte-Carlo check of the exact forward kernels: the marginal of level t, re-noised to t', is the marginal
of t' (mean and variance), for VP, VE and rectified flow, on real scheduler grids (shifted sigmas too)."""

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
)

from rd_inference.renoise import renoise, renoise_flow, renoise_ve, renoise_vp
from rd_inference.schedule import Schedule


def _schedule(scheduler, steps=20):
    scheduler.set_timesteps(steps)
    return Schedule.from_scheduler(scheduler)


SCHEDULES = {
    "vp-ddim": lambda: _schedule(DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    "vp-dpm++": lambda: _schedule(DPMSolverMultistepScheduler(beta_schedule="scaled_linear", use_karras_sigmas=True)),
    "ve-euler": lambda: _schedule(EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    "flow": lambda: _schedule(FlowMatchEulerDiscreteScheduler()),
    "flow-shift3": lambda: _schedule(FlowMatchEulerDiscreteScheduler(shift=3.0)),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("pair", [(15, 5), (18, 2), (10, 9), (19, 0)])
def test_renoised_marginal_matches_target_level(name, pair):
    sched = SCHEDULES[name]()
    i_from, i_to = pair
    g = torch.Generator().manual_seed(0)
    count = 400_000
    x0 = 0.7 + 0.4 * torch.randn(count, generator=g, dtype=torch.float64)  # non-centred, non-unit data
    eps = torch.randn(count, generator=g, dtype=torch.float64)
    x = sched.alpha[i_from] * x0 + sched.sigma[i_from] * eps
    y = renoise(sched, x, i_from, i_to, torch.randn(count, generator=g, dtype=torch.float64))
    a, s = sched.alpha[i_to].item(), sched.sigma[i_to].item()
    want_mean, want_var = a * 0.7, a * a * 0.16 + s * s
    assert y.mean().item() == pytest.approx(want_mean, abs=0.01 * max(1.0, want_var**0.5))
    assert y.var().item() == pytest.approx(want_var, rel=0.01)
    # Correlation with x0 is kept: the kernel continues the path instead of restarting from noise.
    cov = ((y - y.mean()) * (x0 - x0.mean())).mean().item()
    assert cov == pytest.approx(a * 0.16, rel=0.03, abs=1e-3)


def test_family_kernels_match_general_formula():
    x, n = torch.randn(1000, dtype=torch.float64), torch.randn(1000, dtype=torch.float64)
    # VP: abar 0.8 -> 0.3
    a, s, a2, s2 = 0.8**0.5, 0.2**0.5, 0.3**0.5, 0.7**0.5
    r = a2 / a
    torch.testing.assert_close(renoise_vp(x, 0.8, 0.3, n), r * x + (s2**2 - r**2 * s**2) ** 0.5 * n)
    torch.testing.assert_close(renoise_ve(x, 1.0, 3.0, n), x + 8**0.5 * n)
    t, t2 = 0.2, 0.7
    aa = (1 - t2) / (1 - t)
    torch.testing.assert_close(renoise_flow(x, t, t2, n), aa * x + (t2**2 - aa**2 * t**2) ** 0.5 * n)


def test_renoise_refuses_to_go_cleaner():
    sched = SCHEDULES["flow"]()
    with pytest.raises(ValueError, match="noisier"):
        renoise(sched, torch.zeros(2), 3, 5, torch.zeros(2))
