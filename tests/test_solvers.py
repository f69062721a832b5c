"""The solver registry: multistep solvers against independent implementations (diffusers'
schedulers, a paper-formula iPNDM), their orders of convergence, NFE, state and errors."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_gym import schedules, solvers, steps
from diffusion_gym.denoisers import GaussianMixture
from diffusion_gym.noise import SampleStreams, derive_keys

MULTISTEP = ("dpmpp-2m", "dpmpp-3m", "unipc-2", "unipc-3", "ipndm")


@pytest.fixture(scope="module")
def mixture() -> GaussianMixture:
    """A 4-component, 3-D mixture with diagonal covariances (data scale ~1.5)."""
    g = torch.Generator().manual_seed(0)
    d = 3
    means = 1.5 * torch.randn(4, d, generator=g, dtype=torch.float64)
    covs = torch.stack(
        [torch.diag(0.05 + 0.3 * torch.rand(d, generator=g, dtype=torch.float64)) for _ in range(4)]
    )
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    return GaussianMixture(means, covs, weights)


def _x_T(gm: GaussianMixture, n: int, seed: int = 1) -> torch.Tensor:  # noqa: N802
    g = torch.Generator().manual_seed(seed)
    return gm.sigma_max * torch.randn(n, *gm.shape, generator=g, dtype=torch.float64)


def test_registry_names_nfe_and_errors():
    assert steps.SOLVERS == ("euler", "heun", *MULTISTEP)
    for name in steps.SOLVERS:
        s = steps.get_solver(name)
        assert s.name == name and steps.is_multistep(name) == (name in MULTISTEP)
        for n in (1, 3, 9):
            nfe = steps.nfe_of(n, name)
            assert nfe == (2 * n - 1 if name == "heun" else n)
            assert steps.steps_for_nfe(nfe, name) == n
    with pytest.raises(ValueError, match="solver must be one of"):
        steps.get_solver("dpm2")
    with pytest.raises(ValueError, match="solver must be one of"):
        steps.nfe_of(3, "rk4")
    with pytest.raises(ValueError, match="odd NFE"):
        steps.steps_for_nfe(4, "heun")


def test_multistep_needs_a_state_and_refuses_churn(mixture):
    x = _x_T(mixture, 4)
    with pytest.raises(ValueError, match="multistep: pass state="):
        steps.step(mixture, x, 80.0, 40.0, solver="dpmpp-2m")
    st = steps.SolverState(3)
    with pytest.raises(ValueError, match="churn gamma > 0 needs a single-step solver"):
        steps.step(mixture, x, 80.0, 40.0, solver="unipc-2", gamma=0.1, state=st,
                   noise=torch.zeros_like(x))  # fmt: skip
    with pytest.raises(ValueError, match="churn gamma > 0 needs a single-step solver"):
        steps.sample(mixture, x, schedules.karras(3, 0.002, 80.0), solver="ipndm", gamma=0.2)
    with pytest.raises(ValueError, match="num_steps"):
        steps.SolverState(0)


# ---------------------------------------------------------------------------------------------
# diffusers as the independent implementation of DPM-Solver++ and UniPC


def _diffusers_sample(scheduler, gm: GaussianMixture, x_T, sigmas) -> torch.Tensor:  # noqa: N803
    """Run a diffusers multistep scheduler (VP parametrisation) on our σ schedule: its
    ``sigmas`` are replaced by ours (float64), x_vp = α x with α = 1/sqrt(1 + σ²), and the
    model returns D (``prediction_type="sample"``) evaluated at x_vp/α, σ."""
    n = len(sigmas) - 1
    scheduler.set_timesteps(n)
    scheduler.sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    scheduler.timesteps = torch.arange(n - 1, -1, -1)  # labels only: the index drives step()
    scheduler.set_begin_index(0)
    x = x_T / math.sqrt(1 + sigmas[0] ** 2)
    for i in range(n):
        s = sigmas[i]
        alpha = 1 / math.sqrt(1 + s * s)
        d = gm(x / alpha, torch.full((x.shape[0],), s, dtype=torch.float64), None)
        x = scheduler.step(d, scheduler.timesteps[i], x).prev_sample
    return x.to(torch.float64)  # σ = 0: α = 1


@pytest.mark.parametrize("solver", ["dpmpp-2m", "dpmpp-3m", "unipc-2", "unipc-3"])
@pytest.mark.parametrize("n", [3, 6, 10, 20])
def test_against_diffusers(solver, n, mixture):
    """Same exact mixture, same EDM schedule, same x_T: diffusers' DPMSolverMultistepScheduler
    / UniPCMultistepScheduler agree to <= 1e-6 RMSE (measured: DPM-Solver++ ~1e-7, limited by
    diffusers' float32 cast of the sample in its DPM step; UniPC ~1e-14)."""
    diffusers = pytest.importorskip("diffusers")
    order = int(solver[-2] if solver.endswith("m") else solver[-1])
    if solver.startswith("dpmpp"):
        sched = diffusers.DPMSolverMultistepScheduler(
            solver_order=order, prediction_type="sample", algorithm_type="dpmsolver++",
            solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero",
        )  # fmt: skip
    else:
        sched = diffusers.UniPCMultistepScheduler(
            solver_order=order, prediction_type="sample", predict_x0=True, solver_type="bh2",
            lower_order_final=True, final_sigmas_type="zero",
        )  # fmt: skip
    sig = schedules.karras(n, mixture.sigma_min, mixture.sigma_max)
    x_T = _x_T(mixture, 128)  # noqa: N806
    ref = _diffusers_sample(sched, mixture, x_T, sig.tolist())
    ours = steps.sample(mixture, x_T, sig, solver=solver)
    rmse = float((ours - ref).pow(2).mean().sqrt())
    assert rmse <= 1e-6, rmse
    # and the solvers differ from each other and from Euler by far more than that
    assert float((ours - steps.sample(mixture, x_T, sig, solver="euler")).pow(2).mean()) > 1e-8


@pytest.mark.parametrize("n", [3, 6, 10])
def test_dpmpp_2m_sde_against_diffusers(n, mixture):
    """Churn with dpmpp-2m is DPM-Solver++(2M) SDE with η h = log(1 + γ); γ_k = σ_k/σ_{k+1} − 1
    is η = 1, diffusers' ``sde-dpmsolver++`` (fed the same noise, rounded to float32 as
    diffusers casts it): <= 1e-6 RMSE."""
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DPMSolverMultistepScheduler(
        solver_order=2, prediction_type="sample", algorithm_type="sde-dpmsolver++",
        solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero",
    )  # fmt: skip
    sig = schedules.karras(n, mixture.sigma_min, mixture.sigma_max)
    gamma = torch.cat([sig[:-2] / sig[1:-1] - 1, torch.zeros(1, dtype=torch.float64)])
    x_T = _x_T(mixture, 128)  # noqa: N806
    keys = derive_keys(torch.arange(128), salt=3)
    streams = SampleStreams(keys)

    eps = [steps.churn_noise(streams, i, x_T).float().double() for i in range(n)]
    ours = _sample_with_noise(mixture, x_T, sig, gamma, eps)
    sigs = sig.tolist()
    sched.set_timesteps(n)
    sched.sigmas = sig.clone()
    sched.timesteps = torch.arange(n - 1, -1, -1)
    sched.set_begin_index(0)
    x = x_T / math.sqrt(1 + sigs[0] ** 2)
    for i in range(n):
        alpha = 1 / math.sqrt(1 + sigs[i] ** 2)
        d = mixture(x / alpha, torch.full((128,), sigs[i], dtype=torch.float64), None)
        x = sched.step(d, sched.timesteps[i], x, variance_noise=eps[i]).prev_sample
    rmse = float((ours - x.double()).pow(2).mean().sqrt())
    assert rmse <= 1e-6, rmse
    ode = steps.sample(mixture, x_T, sig, solver="dpmpp-2m")
    assert float((ours - ode).pow(2).mean().sqrt()) > 1e-3  # the noise did something


def _sample_with_noise(gm, x_T, sigmas, gamma, eps) -> torch.Tensor:  # noqa: N803
    """steps.step in a loop with given churn noise per step."""
    st, x = steps.SolverState(len(sigmas) - 1), x_T
    for i in range(len(sigmas) - 1):
        x, _ = steps.step(gm, x, float(sigmas[i]), float(sigmas[i + 1]), solver="dpmpp-2m",
                          gamma=float(gamma[i]), noise=eps[i], state=st)  # fmt: skip
    return x


def test_dpmpp_2m_sde_with_zero_gamma_is_the_ode_bit_for_bit(mixture):
    """Per-sample γ with zeros: those samples follow the ODE update exactly."""
    x_T = _x_T(mixture, 6)  # noqa: N806
    sig = schedules.karras(5, mixture.sigma_min, mixture.sigma_max)
    g = torch.tensor([0.0, 0.3, 0.0, 0.1, 0.0, 0.0], dtype=torch.float64)
    streams = SampleStreams(derive_keys(torch.arange(6), salt=1))
    mixed = steps.sample(mixture, x_T, sig, solver="dpmpp-2m", gamma=g.expand(5, 6),
                         generator=streams)  # fmt: skip
    ode = steps.sample(mixture, x_T, sig, solver="dpmpp-2m")
    zero = g == 0
    assert torch.equal(mixed[zero], ode[zero])
    assert not torch.equal(mixed[~zero], ode[~zero])


# ---------------------------------------------------------------------------------------------
# iPNDM against the paper's formulas, written out here


def _ipndm_reference(gm, x_T, sigmas, lower_order_final: bool) -> torch.Tensor:  # noqa: N803
    """iPNDM (Zhang & Chen 2023, DEIS, eq. for iPNDM; the GITS code's ``ipndm``): ε = d =
    (x − D)/σ, x_{i+1} = x_i + (σ_{i+1} − σ_i) · AB_k(d_i, d_{i−1}, ...), k = min(4, i + 1)
    (and min(k, N − i) with lower-order final)."""
    sig = sigmas.tolist()
    n, x, buf = len(sig) - 1, x_T, []
    for i in range(n):
        t, t_next = sig[i], sig[i + 1]
        d = (x - gm(x, torch.full((x.shape[0],), t, dtype=x.dtype), None)) / t
        k = min(4, i + 1, n - i) if lower_order_final else min(4, i + 1)
        if k == 1:
            dp = d
        elif k == 2:
            dp = (3 * d - buf[-1]) / 2
        elif k == 3:
            dp = (23 * d - 16 * buf[-1] + 5 * buf[-2]) / 12
        else:
            dp = (55 * d - 59 * buf[-1] + 37 * buf[-2] - 9 * buf[-3]) / 24
        x = x + (t_next - t) * dp
        buf.append(d)
    return x


@pytest.mark.parametrize("lower_order_final", [True, False])
@pytest.mark.parametrize("n", [2, 5, 9])
def test_ipndm_against_paper_formulas(n, lower_order_final, mixture):
    x_T = _x_T(mixture, 64)  # noqa: N806
    sig = schedules.karras(n, mixture.sigma_min, mixture.sigma_max)
    ref = _ipndm_reference(mixture, x_T, sig, lower_order_final)
    ours = steps.sample(mixture, x_T, sig, solver="ipndm", lower_order_final=lower_order_final)
    assert float((ours - ref).abs().max()) <= 1e-12


# ---------------------------------------------------------------------------------------------
# Orders of convergence

NS = (8, 16, 32, 64)  # nested grids: every coarse point is a point of the finest one
REF_SUB = 8  # RK4 substeps per interval of the finest grid
# The grids: uniform in λ = −log σ on [0.5, 5] (exponential integrators), uniform in σ on
# [2, 5] for iPNDM (its fixed Adams–Bashforth coefficients assume equal σ steps; nearer σ = 0
# the uniform σ grid is too coarse for the asymptotic regime at these N).
GRIDS = {"log": (5.0, 0.5), "lin": (5.0, 2.0)}


def _grid(kind: str, n: int) -> torch.Tensor:
    hi, lo = GRIDS[kind]
    if kind == "log":
        return torch.exp(torch.linspace(math.log(hi), math.log(lo), n + 1).double())
    return torch.linspace(hi, lo, n + 1, dtype=torch.float64)


def _rk4_trajectory(gm, x0, grid: torch.Tensor) -> list[torch.Tensor]:
    """Classical RK4 on dx/ds = x − D(x; e^s), s = log σ, ``REF_SUB`` substeps per cell of
    ``grid``: the solution at every grid point (an independent reference)."""

    def f(x, s):
        sig = math.exp(s)
        return x - gm(x, torch.full((x.shape[0],), sig, dtype=x.dtype), None)

    xs, x = [x0], x0
    for a, b in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        s, h = math.log(a), (math.log(b) - math.log(a)) / REF_SUB
        for _ in range(REF_SUB):
            k1 = f(x, s)
            k2 = f(x + 0.5 * h * k1, s + 0.5 * h)
            k3 = f(x + 0.5 * h * k2, s + 0.5 * h)
            k4 = f(x + h * k3, s + h)
            x, s = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), s + h
        xs.append(x)
    return xs


def _solve_exact_start(gm, solver, grid, x_exact: list[torch.Tensor]) -> torch.Tensor:
    """The solver on ``grid`` (no lower-order final), its first ``order − 1`` results
    replaced by the exact solution (exact starting values, as in the analysis of linear
    multistep methods: the order-1 warm start would otherwise cost an order)."""
    st = steps.SolverState(len(grid) - 1, lower_order_final=False)
    ode = steps.get_solver(solver)
    warm = ode.order - 1 if ode.multistep else 0
    x = x_exact[0]
    for i in range(len(grid) - 1):
        x, _ = steps.step(gm, x, float(grid[i]), float(grid[i + 1]), solver=ode, state=st)
        if i < warm:
            x = x_exact[i + 1]
    return x


# (solver, grid, order). UniPC-p with its corrector is of order p + 1 (Zhao et al. 2023,
# Thm. 3.3); the published DPM-Solver++(3M) update is of order 2 (see solvers.DPMSolverPP),
# its Taylor-consistent variant of order 3. Measured slopes (8→16, 16→32, 32→64): euler 1.02
# 1.01 1.01, heun 2.08 2.04 2.02, dpmpp-2m 2.04 2.01 2.00, dpmpp-3m 3.01 2.47 2.18, dpmpp-3m-taylor
# 3.27 3.10 3.10, unipc-2 3.03 2.94 3.02, unipc-3 3.62 4.45 4.32, ipndm 3.26 3.60 3.79.
ORDERS = [
    ("euler", "log", 1),
    ("heun", "log", 2),
    ("dpmpp-2m", "log", 2),
    ("dpmpp-3m", "log", 2),
    (solvers.DPMSolverPP(3, taylor=True), "log", 3),
    ("unipc-2", "log", 3),
    ("unipc-3", "log", 4),
    ("ipndm", "lin", 4),
]


@pytest.fixture(scope="module")
def order_reference(mixture):
    x0 = 5.0 * torch.randn(32, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = {}
    for kind in GRIDS:
        fine = _rk4_trajectory(mixture, x0, _grid(kind, NS[-1]))
        out[kind] = {n: fine[:: NS[-1] // n] for n in NS}
    return out


@pytest.mark.parametrize("solver, kind, order", ORDERS, ids=lambda v: getattr(v, "name", v))
def test_empirical_order_of_convergence(solver, kind, order, mixture, order_reference):
    """Log-log slope of the error at the grid's end against the step count (exact starting
    values) matches the order within 0.5 on the finest pair (32 → 64 steps)."""
    errs = []
    for n in NS:
        exact = order_reference[kind][n]
        x = _solve_exact_start(mixture, solver, _grid(kind, n), exact)
        errs.append(float((x - exact[-1]).pow(2).mean().sqrt()))
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(len(NS) - 1)]
    assert abs(slopes[-1] - order) <= 0.5, (errs, slopes)
    assert min(slopes) >= order - 1.0, (errs, slopes)


# ---------------------------------------------------------------------------------------------
# State, per-sample σ, gradients


@pytest.mark.parametrize("solver", MULTISTEP)
def test_per_sample_sigmas_equal_separate_runs(solver, mixture):
    """A batch whose samples follow different schedules (per-sample σ, as in the Clock env)
    equals each sample run alone on its own schedule."""
    x_T = _x_T(mixture, 2)  # noqa: N806
    s_a = schedules.karras(5, mixture.sigma_min, mixture.sigma_max, 7.0)
    s_b = schedules.karras(5, mixture.sigma_min, mixture.sigma_max, 3.0)
    st = steps.SolverState(5)
    x = x_T
    for i in range(5):
        sig = torch.stack([s_a[i], s_b[i]])
        nxt = torch.stack([s_a[i + 1], s_b[i + 1]])
        x, _ = steps.step(mixture, x, sig, nxt, solver=solver, state=st)
    a = steps.sample(mixture, x_T[:1], s_a, solver=solver)
    b = steps.sample(mixture, x_T[1:], s_b, solver=solver)
    assert torch.allclose(x, torch.cat([a, b]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("solver", steps.SOLVERS)
def test_sample_is_differentiable_wrt_sigmas(solver, mixture):
    """Gradients of a loss through sample() reach the σ's and match finite differences."""
    x_T = _x_T(mixture, 8)  # noqa: N806
    base = schedules.karras(4, mixture.sigma_min, mixture.sigma_max)

    def loss(inner: torch.Tensor) -> torch.Tensor:
        sig = torch.cat([base[:1], inner, base[-1:]])
        return steps.sample(mixture, x_T, sig, solver=solver).pow(2).mean()

    inner = base[1:-1].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(inner), inner)
    assert torch.isfinite(grad).all() and bool((grad != 0).any())
    e = torch.zeros_like(inner)
    e[1] = 1e-6 * float(inner[1].detach())
    with torch.no_grad():
        fd = (loss(inner + e) - loss(inner - e)) / (2 * e[1])
    assert abs(float(grad[1]) - float(fd)) <= 1e-5 * max(1.0, abs(float(fd)))
    with torch.no_grad():  # without grad on the σ's: no graph
        assert not steps.sample(mixture, x_T, base, solver=solver).requires_grad


def test_lower_order_final_and_final_denoise(mixture):
    """The final step to σ = 0 of DPM-Solver++ / UniPC is the denoise x = D(x; σ_{N-1});
    lower_order_final changes the result of 3rd-order solvers at few steps only."""
    x_T = _x_T(mixture, 16)  # noqa: N806
    sig = schedules.karras(6, mixture.sigma_min, mixture.sigma_max)
    for solver in ("dpmpp-2m", "dpmpp-3m", "unipc-2", "unipc-3"):
        seen = []
        out = steps.sample(mixture, x_T, sig, solver=solver, callback=seen.append)
        assert torch.equal(out, seen[-1]["denoised"])
    for solver in ("dpmpp-3m", "unipc-3", "ipndm"):
        a = steps.sample(mixture, x_T, sig, solver=solver, lower_order_final=True)
        b = steps.sample(mixture, x_T, sig, solver=solver, lower_order_final=False)
        assert not torch.equal(a, b)
    long = schedules.karras(16, mixture.sigma_min, mixture.sigma_max)  # >= 15: diffusers' rule
    a = steps.sample(mixture, x_T, long, solver="dpmpp-3m", lower_order_final=True)
    b = steps.sample(mixture, x_T, long, solver="dpmpp-3m", lower_order_final=False)
    assert torch.equal(a, b)


def test_state_copy_is_independent(mixture):
    x = _x_T(mixture, 4)
    st = solvers.SolverState(4)
    steps.step(mixture, x, 80.0, 20.0, solver="dpmpp-2m", state=st)
    c = st.copy()
    steps.step(mixture, x, 20.0, 5.0, solver="dpmpp-2m", state=st)
    assert c.k == 1 and st.k == 2 and len(c.model) == 1 and len(st.model) == 2
