"""σ schedules: shapes, endpoints, monotonicity, closed forms, interpolation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion_gym import schedules

BUILDERS = {
    "karras": lambda n, lo, hi: schedules.karras(n, lo, hi, 7.0),
    "karras_rho3": lambda n, lo, hi: schedules.karras(n, lo, hi, 3.0),
    "uniform": schedules.uniform,
    "log_linear": schedules.log_linear,
    "vp_uniform_t": schedules.vp_uniform_t,
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("n", [1, 2, 3, 10, 256])
def test_endpoints_length_monotone(name, n):
    s = BUILDERS[name](n, 0.002, 80.0)
    assert s.dtype == torch.float64 and s.shape == (n + 1,)
    assert s[-1] == 0.0 and math.isclose(float(s[0]), 80.0, rel_tol=1e-12)
    if n > 1:
        # VP stops at t = eps_t = 1e-3 (σ ≈ 0.0105) when σ_min lies below it, as in EDM.
        lo = math.sqrt(math.expm1(0.5 * 19.9e-6 + 0.1e-3)) if name == "vp_uniform_t" else 0.002
        assert math.isclose(float(s[-2]), lo, rel_tol=1e-9)
    assert bool((s[1:] < s[:-1]).all())
    schedules.validate(s)


@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_linear_is_arts_uniform_grid(n):
    s = schedules.linear(n, 3.0)
    torch.testing.assert_close(s, torch.tensor([3.0 * (1 - i / n) for i in range(n + 1)]).double())


def test_closed_forms():
    """karras matches EDM eq. 5; ρ = 1 is uniform; large ρ approaches log-linear."""
    n, lo, hi, rho = 5, 0.002, 80.0, 7.0
    eq5 = [
        (hi ** (1 / rho) + i / (n - 1) * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        for i in range(n)
    ]
    torch.testing.assert_close(schedules.karras(n, lo, hi, rho)[:-1], torch.tensor(eq5).double())
    torch.testing.assert_close(schedules.karras(n, lo, hi, 1.0), schedules.uniform(n, lo, hi))
    far = schedules.karras(n, lo, hi, 1e4)[:-1].log()
    torch.testing.assert_close(far, schedules.log_linear(n, lo, hi)[:-1].log(), atol=5e-3, rtol=0)
    # log_linear: equal ratios.
    r = schedules.log_linear(n, lo, hi)[:-1]
    ratios = r[1:] / r[:-1]
    torch.testing.assert_close(ratios, ratios[:1].expand(n - 1), rtol=1e-12, atol=0)


def test_vp_uniform_t_is_uniform_in_vp_time():
    """σ(t) = sqrt(exp(½β_d t² + β_min t) − 1): the inverse map gives equal t steps."""
    s = schedules.vp_uniform_t(6, 0.002, 80.0)[:-1]
    t = (torch.sqrt(0.1**2 + 2 * 19.9 * torch.log1p(s**2)) - 0.1) / 19.9
    dt = t[1:] - t[:-1]
    torch.testing.assert_close(dt, dt[:1].expand(5), rtol=1e-6, atol=0)


@settings(max_examples=60, deadline=None)
@given(
    src=st.integers(2, 40),
    n=st.integers(1, 60),
    lo=st.floats(1e-3, 1.0),
    ratio=st.floats(1.5, 1e5),
    rho=st.floats(0.5, 20.0),
)
def test_interpolate_properties(src, n, lo, ratio, rho):
    """Endpoints preserved, strictly decreasing, n + 1 values ending in 0."""
    hi = lo * ratio
    base = schedules.karras(src, lo, hi, rho)
    out = schedules.interpolate(base, n)
    assert out.shape == (n + 1,) and out.dtype == torch.float64
    assert out[-1] == 0.0 and out[0] == base[0]
    if n > 1:
        assert out[-2] == base[-2]
    assert bool((out[1:] < out[:-1]).all())


def test_interpolate_same_budget_is_identity_and_log_linear_between():
    base = schedules.karras(7, 0.002, 80.0)
    torch.testing.assert_close(schedules.interpolate(base, 7), base, rtol=1e-12, atol=0)
    # Doubling the budget of a log-linear schedule stays log-linear.
    ll = schedules.log_linear(5, 0.01, 10.0)
    torch.testing.assert_close(
        schedules.interpolate(ll, 9), schedules.log_linear(9, 0.01, 10.0), rtol=1e-12, atol=0
    )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: schedules.karras(0, 0.002, 80.0), "n"),
        (lambda: schedules.karras(2.0, 0.002, 80.0), "n"),
        (lambda: schedules.karras(3, 0.0, 80.0), "sigma_min"),
        (lambda: schedules.karras(3, 1.0, 0.5), "sigma_min"),
        (lambda: schedules.karras(3, 0.002, math.inf), "inf"),
        (lambda: schedules.karras(3, 0.002, 80.0, rho=0.0), "rho"),
        (lambda: schedules.linear(3, -1.0), "sigma_max"),
        (lambda: schedules.vp_uniform_t(3, 1e-4, 5e-3), "eps_t"),
        (lambda: schedules.validate(torch.tensor([1.0, 2.0, 0.0])), "decreasing"),
        (lambda: schedules.validate(torch.tensor([2.0, 1.0])), "end in 0"),
        (lambda: schedules.validate(torch.tensor([math.nan, 0.0])), "finite"),
        (lambda: schedules.validate(torch.tensor([0.0])), "n\\+1"),
        (lambda: schedules.validate(torch.ones(2, 2)), "1-D"),
        (lambda: schedules.interpolate(schedules.karras(3, 0.1, 1.0), 0), "n must"),
        (lambda: schedules.interpolate(torch.tensor([5.0, 0.0]), 3), "1-step"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_save_schedule_keeps_float64_values_of_a_list(tmp_path):
    """A list of Python floats is saved with its float64 values, not rounded to float32."""
    sigmas = [80.0, 1.8248123456789, 0.4906123456789, 0.0]
    path = tmp_path / "s.json"
    schedules.save_schedule(path, sigmas, "heun", 3, "gmm-ring8")
    assert schedules.load_schedule(path)["sigmas"].tolist() == sigmas
    assert schedules.schedule_to_list(tuple(sigmas)) == sigmas
