"""The sampler step (Euler / Heun, guidance, churn) and the reference sampler."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_gym import metrics, presets, schedules, steps
from diffusion_gym.denoisers import NULL_LABEL, GaussianMixture
from diffusion_gym.noise import SampleStreams, derive_keys, draw_normal, make_labels, make_noise

C = 1.5  # std of the 1-D Gaussian data


def _ode_error(solver: str, n: int) -> float:
    """Max error of n uniform steps of the PF-ODE from σ = 3 to σ = 0.5 for N(0, C²) data.

    There dx/dσ = σ x / (C² + σ²), so x(σ) = x(σ₀) sqrt((C² + σ²) / (C² + σ₀²)).
    """
    gm = GaussianMixture([[0.0]], C**2)
    x0 = torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    grid = torch.linspace(3.0, 0.5, n + 1, dtype=torch.float64)
    x = x0
    for i in range(n):
        x, _ = steps.step(gm, x, grid[i], grid[i + 1], solver=solver)
    exact = x0 * math.sqrt((C**2 + 0.5**2) / (C**2 + 3.0**2))
    return float((x - exact).abs().max())


@pytest.mark.parametrize("solver, order", [("euler", 1), ("heun", 2)])
def test_convergence_order(solver, order):
    """Error slopes in log-log: Euler 1st order, Heun 2nd order."""
    ns = [8, 16, 32, 64]
    errs = [_ode_error(solver, n) for n in ns]
    # Measured: Euler 0.984, 0.992, 0.996; Heun 1.992, 1.997, 1.998.
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(len(ns) - 1)]
    assert all(abs(s - order) < 0.05 for s in slopes), slopes


def _exact_reference(gm: GaussianMixture, x_T: torch.Tensor) -> torch.Tensor:
    """The PF-ODE from σ_max to σ_min in closed form for N(0, C²) data, then the final
    (Euler) step to 0, which lands on D(x; σ_min) = x C² / (C² + σ_min²)."""
    lo, hi = gm.sigma_min, gm.sigma_max
    x_lo = x_T * math.sqrt((C**2 + lo**2) / (C**2 + hi**2))
    return x_lo * C**2 / (C**2 + lo**2)


def test_reference_solve_plain_is_heun_on_karras_and_extrapolation_converges_faster():
    gm = GaussianMixture([[0.0]], C**2)
    x_T = 80.0 * torch.randn(64, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plain = steps.reference_solve(gm, x_T, 32, extrapolate=False)
    assert torch.equal(plain, steps.sample(gm, x_T, schedules.karras(32, gm.sigma_min, 80.0)))
    exact = _exact_reference(gm, x_T)
    err = {
        (n, ex): float((steps.reference_solve(gm, x_T, n, extrapolate=ex) - exact).abs().max())
        for n in (32, 64, 128)
        for ex in (False, True)
    }
    # Plain Heun halves its step: error / 4 (2nd order). Measured 4.26, 4.12.
    assert 3.5 < err[32, False] / err[64, False] < 4.5
    assert 3.5 < err[64, False] / err[128, False] < 4.5
    # Extrapolated: 3rd order (measured / 9.0, / 8.5 per halving), and 12x / 25x / 51x below
    # the plain solve on the same finest grid.
    assert err[64, True] < err[32, True] / 6 and err[128, True] < err[64, True] / 6
    assert err[32, True] < err[32, False] / 8 and err[128, True] < err[128, False] / 35


def test_reference_solve_bad_input():
    gm = GaussianMixture([[0.0]], C**2)
    with pytest.raises(ValueError, match="num_steps"):
        steps.reference_solve(gm, torch.zeros(2, 1, dtype=torch.float64), 0)


def test_last_step_is_euler_and_lands_on_denoised(ring8):
    """A step to σ_next = 0 returns D(x; σ) whatever the solver, with one NFE."""
    gm = ring8.data
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for solver in ("euler", "heun"):
        x_next, den = steps.step(gm, x, 0.7, 0.0, solver=solver)
        torch.testing.assert_close(x_next, gm(x, 0.7), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(den, gm(x, 0.7))


def test_per_sample_sigma_equals_scalar_sigma():
    """Per-sample σ, σ_next, w and γ: each row equals the scalar call for that row alone."""
    model = presets.make("gmm-ring8-imperfect").denoiser
    g = torch.Generator().manual_seed(1)
    b = 5
    x = 2.0 * torch.randn(b, 2, generator=g, dtype=torch.float64)
    noise = torch.randn(b, 2, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, NULL_LABEL])
    sigma = torch.tensor([5.0, 2.0, 1.0, 0.5, 0.2], dtype=torch.float64)
    sigma_next = torch.tensor([2.0, 1.0, 0.0, 0.1, 0.05], dtype=torch.float64)
    w = torch.tensor([1.0, 2.0, 0.0, 3.0, 1.5], dtype=torch.float64)
    gamma = torch.tensor([0.0, 0.1, 0.4, 0.0, 0.2], dtype=torch.float64)
    for solver in ("euler", "heun"):
        out, den = steps.step(
            model, x, sigma, sigma_next, class_labels=labels, guidance=w, gamma=gamma,
            solver=solver, noise=noise,
        )  # fmt: skip
        for i in range(b):
            row, row_den = steps.step(
                model, x[i : i + 1], float(sigma[i]), float(sigma_next[i]),
                class_labels=labels[i : i + 1], guidance=float(w[i]), gamma=float(gamma[i]),
                solver=solver, noise=noise[i : i + 1],
            )  # fmt: skip
            torch.testing.assert_close(out[i : i + 1], row, rtol=1e-13, atol=1e-13)
            torch.testing.assert_close(den[i : i + 1], row_den, rtol=1e-13, atol=1e-13)
    # A [B] tensor of one value equals the scalar.
    a, _ = steps.step(model, x, torch.full((b,), 1.3, dtype=torch.float64), 0.4, solver="heun")
    s, _ = steps.step(model, x, 1.3, 0.4, solver="heun")
    torch.testing.assert_close(a, s, rtol=0, atol=0)


def test_churn_matches_edm_formula(ring8):
    """σ̂ = σ(1 + γ), x̂ = x + sqrt(σ̂² − σ²) S_noise ε, then the ODE step from σ̂."""
    gm = ring8.data
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 2, generator=g, dtype=torch.float64)
    gamma, s_noise, sigma = 0.3, 1.007, 1.2
    out, den = steps.step(gm, x, sigma, 0.5, gamma=gamma, noise=eps, s_noise=s_noise)
    t_hat = sigma * (1 + gamma)
    x_hat = x + math.sqrt(t_hat**2 - sigma**2) * s_noise * eps
    ref, ref_den = steps.step(gm, x_hat, t_hat, 0.5)
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(den, ref_den)


def _streams_sample(keys: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    p = presets.make("gmm-ring8-imperfect")
    x_t = p.prior_std * draw_normal(keys, 0, (2,), torch.float64)  # draw 0 = x_T
    sig = schedules.karras(6, p.sigma_min, p.sigma_max, 7.0)
    gamma = torch.tensor([0.0, 0.4, 0.4, 0.1, 0.1, 0.0])
    return steps.sample(
        p.denoiser, x_t, sig, class_labels=labels, guidance=2.0, gamma=gamma,
        generator=SampleStreams(keys),
    )  # fmt: skip


def test_churn_with_sample_streams_is_sub_batch_invariant():
    """Rows of a batch of 8 equal a batch of 3 with the same keys (any order)."""
    keys = derive_keys(torch.arange(8), salt=3)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    full = _streams_sample(keys, labels)
    idx = torch.tensor([6, 1, 4])
    part = _streams_sample(keys[idx], labels[idx])
    torch.testing.assert_close(part, full[idx], rtol=1e-12, atol=1e-12)
    # And the churn noise mattered: other keys give other samples.
    other = _streams_sample(derive_keys(torch.arange(8), salt=4)[idx], labels[idx])
    assert (other - part).abs().max() > 1e-3


def test_sample_matches_manual_loop_and_callback(ring8):
    """``sample`` = the loop of ``step`` over the schedule; the callback sees every step."""
    gm = ring8.data
    g = torch.Generator().manual_seed(3)
    x_t = 80.0 * torch.randn(4, 2, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3])
    sig = schedules.karras(5, 0.002, 80.0)
    w = torch.tensor([1.0, 2.0, 2.0, 1.5, 1.0])
    seen = []
    out = steps.sample(gm, x_t, sig, class_labels=labels, guidance=w, callback=seen.append)
    x = x_t
    for i in range(5):
        x, _ = steps.step(gm, x, sig[i], sig[i + 1], class_labels=labels, guidance=float(w[i]))
    torch.testing.assert_close(out, x, rtol=1e-13, atol=1e-13)
    assert [s["i"] for s in seen] == list(range(5))
    assert seen[-1]["sigma_next"] == 0.0
    torch.testing.assert_close(seen[-1]["x"], out)


def test_schedule_matters_at_a_small_budget(ring8):
    """gmm-ring8, Heun with 3 steps: RMSE to a fine reference differs by more than 2x between
    EDM ρ = 7 (σ_min = 0.002) and the best (ρ, σ_min) of a small grid."""
    p = ring8
    g = torch.Generator().manual_seed(0)
    b = 512
    labels = p.data.sample_labels(b, g)
    x_t = p.prior_std * torch.randn(b, 2, generator=g, dtype=torch.float64)
    ref = steps.sample(p.denoiser, x_t, schedules.karras(128, 0.002, 80.0), class_labels=labels)

    def err(sigma_min, rho):
        sig = schedules.karras(3, sigma_min, 80.0, rho)
        return metrics.rmse(steps.sample(p.denoiser, x_t, sig, class_labels=labels), ref)

    edm = err(0.002, 7.0)
    grid = {(s, r): err(s, r) for s in (0.002, 0.05, 0.3) for r in (5.0, 7.0, 10.0, 20.0)}
    best = min(grid.values())
    assert edm > 2 * best, (edm, grid)
    # The fine reference itself is converged far below these errors.
    ref2 = steps.sample(p.denoiser, x_t, schedules.karras(256, 0.002, 80.0), class_labels=labels)
    assert metrics.rmse(ref, ref2) < 1e-3 < best


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sigma=-1.0), "sigma must be > 0"),
        (dict(sigma=0.0), "sigma must be > 0"),
        (dict(sigma_next=-0.1), "sigma_next"),
        (dict(sigma=torch.ones(3)), r"sigma must be a scalar or have shape \[2\]"),
        (dict(sigma=math.nan), "finite"),
        (dict(gamma=-0.1), "gamma"),
        (dict(gamma=0.2), "noise="),
        (dict(gamma=0.2, noise=torch.zeros(3, 2)), "noise must"),
        (dict(solver="rk4"), "solver"),
        (dict(guidance=torch.ones(3), class_labels=torch.tensor([0, 1])), "guidance"),
    ],
)
def test_step_bad_input(kwargs, match, ring8):
    gm = ring8.data
    args = dict(sigma=1.0, sigma_next=0.5) | kwargs
    x = torch.zeros(2, 2, dtype=torch.float64)
    sigma, sigma_next = args.pop("sigma"), args.pop("sigma_next")
    with pytest.raises(ValueError, match=match):
        steps.step(gm, x, sigma, sigma_next, **args)


def test_zero_gamma_tensor_needs_no_noise(ring8):
    gm = ring8.data
    x = torch.ones(2, 2, dtype=torch.float64)
    a, _ = steps.step(gm, x, 1.0, 0.5, gamma=torch.zeros(2, dtype=torch.float64))
    b, _ = steps.step(gm, x, 1.0, 0.5)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_sample_bad_input(ring8):
    gm = ring8.data
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="end in 0"):
        steps.sample(gm, x, torch.tensor([80.0, 1.0]))
    with pytest.raises(ValueError, match="one entry per step"):
        steps.sample(gm, x, schedules.karras(3, 0.002, 80.0), guidance=torch.ones(4))
    with pytest.raises(ValueError, match="streams"):
        sig = schedules.karras(3, 0.002, 80.0)
        steps.sample(gm, x, sig, gamma=0.1, generator=SampleStreams.from_seeds([1, 2, 3]))


# ---------------------------------------------------------------------------------------------
# NFE accounting and the reference solution of a preset (moved here from baselines.evaluate)


def test_nfe_of_and_steps_for_nfe():
    assert steps.nfe_of(3, "heun") == 5 and steps.nfe_of(5, "euler") == 5
    assert steps.steps_for_nfe(9, "heun") == 5 and steps.steps_for_nfe(4, "euler") == 4
    for n in range(1, 8):
        for solver in steps.SOLVERS:
            assert steps.steps_for_nfe(steps.nfe_of(n, solver), solver) == n
    with pytest.raises(ValueError, match="odd"):
        steps.steps_for_nfe(4, "heun")
    with pytest.raises(ValueError, match="nfe must be"):
        steps.steps_for_nfe(0, "euler")
    with pytest.raises(ValueError, match="solver must be"):
        steps.nfe_of(3, "rk4")


def test_reference_solution_is_reference_solve_of_the_preset(ring8):
    x_T, _ = make_noise(ring8, 3, seed=7)
    labels = make_labels(ring8, 3, 7)
    ref = steps.reference_solution(ring8, x_T, labels, num_steps=16)
    assert ref.tolist() == [
        [1.6248747006862545, 0.15919804650068745],
        [1.4224497914510528, 1.804320108209684],
        [0.205572926081285, 2.180028148904954],
    ]
    plain = steps.reference_solution(ring8, x_T, labels, num_steps=16, extrapolate=False)
    direct = steps.reference_solve(ring8.denoiser, x_T, 16, class_labels=labels, extrapolate=False)
    assert torch.equal(plain, direct)


def test_baselines_evaluate_reexports_nfe_and_reference():
    evaluate = pytest.importorskip("baselines.evaluate")
    assert evaluate.nfe_of is steps.nfe_of and evaluate.steps_for_nfe is steps.steps_for_nfe
    assert evaluate.reference_solution is steps.reference_solution


def test_shared_env_fixtures_make_small_native_vector_envs(make_guidance, make_clock):
    g = make_guidance(num_envs=3)
    obs, _ = g.reset(seed=0)
    assert obs.shape[0] == 3
    c = make_clock(num_envs=2)
    obs, _ = c.reset(seed=0)
    assert obs.shape[0] == 2


def test_sample_without_final_step_stops_at_sigma_min():
    """``final_step=False`` (GITS/DEIS convention) is the loop of steps down to the last
    positive σ, with a multistep history that knows its last step; it refuses 1-step
    schedules."""
    p = presets.make("gmm-ring8")
    x = 80 * torch.randn(32, *p.denoiser.shape, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)  # fmt: skip
    sig = schedules.karras(5, p.sigma_min, p.sigma_max, 7.0)
    for solver in ("euler", "unipc-2", "ipndm"):
        s, state, y = sig[:-1].tolist(), steps.SolverState(4), x
        for i in range(4):
            y, _ = steps.step(p.denoiser, y, s[i], s[i + 1], solver=solver, state=state)
        z = steps.sample(p.denoiser, x, sig, solver=solver, final_step=False)
        assert torch.equal(y, z), solver
        assert not torch.equal(z, steps.sample(p.denoiser, x, sig, solver=solver))
    with pytest.raises(ValueError, match="at least 2 steps"):
        steps.sample(p.denoiser, x, torch.tensor([80.0, 0.0]), final_step=False)
