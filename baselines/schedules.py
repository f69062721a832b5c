"""Fixed-schedule baselines: classic hand-made schedules and three optimised ones.

Classic (thin wrappers over :mod:`diffusion_gym.schedules`, nothing re-implemented):
EDM ρ (Karras et al. 2022) with a ρ grid search, uniform σ, log-linear (uniform log-SNR),
VP uniform-t (DDPM/DDIM). Optimised on *training* noise, to be evaluated on held-out noise
(:func:`baselines.evaluate.evaluate` draws x_T with salts = its seeds; training here uses
:data:`TRAIN_SALT` + seed):

- :func:`ays` — Align Your Steps (Sabour et al. 2024): minimise the KL upper bound
  KLUB = Σ_i ∫_{σ_{i+1}}^{σ_i} t⁻³ E‖D(x_0 + tε, t) − D(x_0 + σ_i ε, σ_i)‖² dt on data
  samples, with the paper's iterative refinement and subdivision stages.
- :func:`gits_dp` — GITS-style (Chen et al. 2024): dynamic programming over a fine σ grid;
  the cost of an edge σ_a → σ_b is the local truncation error of one solver step from the
  teacher's x(σ_a), measured against the teacher's x(σ_b) (a fine ODE solve).
- :func:`oracle` — σ_1..σ_{n−1} optimised with Adam through the differentiable sampler
  (:func:`diffusion_gym.steps.step`) to minimise the MSE to the reference ODE solution: the
  best any fixed schedule can do on that objective.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

from diffusion_gym import schedules as S  # noqa: N812
from diffusion_gym import splits as _splits
from diffusion_gym import steps as _steps
from diffusion_gym.noise import make_labels, make_noise
from diffusion_gym.presets import Preset
from diffusion_gym.steps import reference_solution

__all__ = [
    "TRAIN_SALT",
    "CLASSIC",
    "classic",
    "TrainingSet",
    "training_set",
    "schedule_rmse",
    "best_rho",
    "ays",
    "gits_dp",
    "oracle",
    "OracleConfig",
    "OracleResult",
]

#: Salt offset of the training noise (evaluation uses salts = its seeds: validation seeds
#: 0, 1, 2, ... and the test seeds of :mod:`diffusion_gym.splits`, which defines it).
TRAIN_SALT = _splits.TRAIN_SALT

#: Hand-made schedules by name: fn(n, sigma_min, sigma_max) -> n+1 σ.
CLASSIC = {
    "edm": lambda n, lo, hi, rho=7.0: S.karras(n, lo, hi, rho),
    "uniform": lambda n, lo, hi: S.uniform(n, lo, hi),
    "log-linear": lambda n, lo, hi: S.log_linear(n, lo, hi),
    "ddim": lambda n, lo, hi: S.vp_uniform_t(n, lo, hi),
}


def classic(kind: str, n: int, preset: Preset, **kw) -> torch.Tensor:
    """A hand-made schedule of ``n`` steps on the preset's σ range (``kind`` in
    :data:`CLASSIC`; ``rho=`` for ``"edm"``)."""
    if kind not in CLASSIC:
        raise ValueError(f"unknown schedule kind {kind!r}; valid: {sorted(CLASSIC)}")
    return CLASSIC[kind](n, preset.sigma_min, preset.sigma_max, **kw)


# ---------------------------------------------------------------------------------------------
# Training data


@dataclass
class TrainingSet:
    """x_T, labels and the reference ODE solution x_ref on training noise."""

    x_T: torch.Tensor  # noqa: N815
    labels: torch.Tensor | None
    x_ref: torch.Tensor


def training_set(
    preset: Preset, num_samples: int = 256, seed: int = 0, reference_steps: int = 256
) -> TrainingSet:
    """Training noise (salt :data:`TRAIN_SALT` + seed, disjoint from evaluation seeds),
    balanced labels and the fine reference solution (Heun, EDM ρ=7, w=1)."""
    x_T, _ = make_noise(preset, num_samples, TRAIN_SALT + seed)  # noqa: N806
    labels = make_labels(preset, num_samples, TRAIN_SALT + seed, "balanced")
    return TrainingSet(x_T, labels, reference_solution(preset, x_T, labels, reference_steps))


def schedule_rmse(preset: Preset, sigmas, solver: str, data: TrainingSet) -> float:
    """RMSE (per coordinate) of the sampler on ``sigmas`` to the reference solution."""
    x = _steps.sample(preset.denoiser, data.x_T, sigmas, class_labels=data.labels, solver=solver)
    return float(((x - data.x_ref) ** 2).mean().sqrt())


def best_rho(
    preset: Preset,
    n: int,
    solver: str = "heun",
    grid: Sequence[float] = (0.5, 0.7, 0.88, 1.0, 1.5, 2, 3, 5, 7, 10, 15, 30),
    data: TrainingSet | None = None,
) -> tuple[float, dict[float, float]]:
    """Grid search of EDM's ρ by RMSE to the reference on training noise.
    Returns ``(best ρ, {ρ: rmse})``."""
    data = data or training_set(preset)
    scores = {
        float(r): schedule_rmse(preset, classic("edm", n, preset, rho=r), solver, data)
        for r in grid
    }
    return min(scores, key=scores.get), scores


# ---------------------------------------------------------------------------------------------
# Align Your Steps (KLUB refinement)


def _klub(preset, x0, eps, labels, t_lo: float, t_hi: float, quad: int = 8) -> torch.Tensor:
    """∫_{t_lo}^{t_hi} t⁻³ E‖D(x0 + tε, t) − D(x0 + t_hi ε, t_hi)‖² dt by midpoint rule in
    log t (dt = t d log t); the same (x0, ε) for every t (common random numbers)."""
    D = preset.denoiser  # noqa: N806
    with torch.no_grad():
        d_hi = D(x0 + t_hi * eps, t_hi, labels)
        u = (torch.arange(quad, dtype=torch.float64) + 0.5) / quad
        logs = math.log(t_lo) + u * (math.log(t_hi) - math.log(t_lo))
        total = 0.0
        for lt in logs.tolist():
            t = math.exp(lt)
            err = ((D(x0 + t * eps, t, labels) - d_hi) ** 2).sum(-1).mean()
            total = total + err * t**-2
    return total * (math.log(t_hi) - math.log(t_lo)) / quad


def _klub_total(preset, x0, eps, labels, sig: list[float], quad: int) -> float:
    """Σ_i KLUB(σ_{i+1}, σ_i) over the positive σ's of ``sig`` (the step to 0 has none)."""
    return sum(
        float(_klub(preset, x0, eps, labels, sig[i + 1], sig[i], quad)) for i in range(len(sig) - 1)
    )


def _ays_refine(preset, x0, eps, labels, sig, sweeps, candidates, tol, quad) -> list[float]:
    """AYS iterative refinement: alternately the odd, then the even interior σ_i, each set to
    the minimiser of KLUB(σ_{i+1}, σ_i) + KLUB(σ_i, σ_{i−1}) on a log grid strictly between its
    neighbours (1-D search; the other σ's fixed), until no σ moves by more than ``tol`` in
    log σ or ``sweeps`` passes are done."""
    sig = list(sig)
    for _ in range(sweeps):
        moved = 0.0
        for parity in (1, 0):
            for i in range(1, len(sig) - 1):
                if i % 2 != parity:
                    continue
                hi, lo = sig[i - 1], sig[i + 1]
                cand = torch.exp(torch.linspace(math.log(lo), math.log(hi), candidates + 2))
                cand = cand[1:-1].tolist()
                cost = [
                    float(_klub(preset, x0, eps, labels, lo, c, quad))
                    + float(_klub(preset, x0, eps, labels, c, hi, quad))
                    for c in cand
                ]
                new = cand[min(range(len(cost)), key=cost.__getitem__)]
                moved = max(moved, abs(math.log(new) - math.log(sig[i])))
                sig[i] = new
        if moved < tol:
            break
    return sig


def _subdivide(sig: list[float]) -> list[float]:
    """AYS subdivision: insert the log-midpoint of every interval (n points → 2n − 1)."""
    out = [sig[0]]
    for a, b in zip(sig[:-1], sig[1:], strict=True):
        out += [math.sqrt(a * b), b]
    return out


def ays(
    preset: Preset,
    n: int,
    num_samples: int = 512,
    sweeps: int = 4,
    candidates: int = 24,
    seed: int = 0,
    start_steps: int = 3,
    tol: float = 0.01,
    quad: int = 8,
) -> torch.Tensor:
    """Align Your Steps (Sabour, Fidler & Kreis 2024): the schedule minimising the KLUB of the
    linearised reverse SDE, KLUB = Σ_i ∫_{σ_{i+1}}^{σ_i} t⁻³ E‖D(x_0 + tε, t) − D(x_0 + σ_i ε,
    σ_i)‖² dt, with x_0 ~ the preset's true data, ε ~ N(0, I).

    The paper's two stages: (1) iterative refinement of a coarse schedule (``start_steps``
    positive σ, log-linear init; :func:`_ays_refine`: alternating odd/even coordinate-wise
    minimisation until converged), then (2) subdivision: insert the log-midpoint of every
    interval and refine again, repeated while the schedule has fewer than ``n`` positive σ.
    A finer schedule than ``n`` is brought to n steps by the paper's log-linear interpolation
    (:func:`diffusion_gym.schedules.interpolate`) and refined once more at n. σ_max, σ_min
    and the final step to 0 (a denoise) stay fixed. The integral is a midpoint rule in log t
    with ``quad`` nodes on common random numbers (x_0, ε), a low-variance stand-in for the
    paper's importance-sampled Monte-Carlo estimate.

    KLUB has no solver term (it bounds the first-order SDE discretisation), so the schedule
    depends on the solver only through ``n`` (:func:`diffusion_gym.steps.steps_for_nfe`).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not isinstance(start_steps, int) or start_steps < 2:
        raise ValueError(f"start_steps must be an int >= 2, got {start_steps!r}")
    g = torch.Generator().manual_seed(TRAIN_SALT + seed)
    labels = make_labels(preset, num_samples, TRAIN_SALT + seed, "balanced")
    x0 = preset.data.sample(num_samples, labels, generator=g)
    eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    args = (preset, x0, eps, labels)
    m = min(n, start_steps)
    sig = S.log_linear(m, preset.sigma_min, preset.sigma_max)[:-1].tolist()
    sig = _ays_refine(*args, sig, sweeps, candidates, tol, quad)
    while len(sig) < n:
        sig = _ays_refine(*args, _subdivide(sig), sweeps, candidates, tol, quad)
    if len(sig) > n:
        sig = S.interpolate(torch.tensor([*sig, 0.0], dtype=torch.float64), n)[:-1].tolist()
        sig = _ays_refine(*args, sig, sweeps, candidates, tol, quad)
    return S.validate(torch.tensor([*sig, 0.0], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# GITS-style dynamic programming


def _teacher(preset, x_T, labels, grid: torch.Tensor, substeps: int) -> list[torch.Tensor]:  # noqa: N803
    """The ODE solution at every grid σ (Heun, ``substeps`` log-spaced steps per cell; the
    last cell σ_min → 0 is one Euler step, as in every sampler here)."""
    xs, x = [x_T], x_T
    for a, b in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        if b == 0:
            sub = [a, 0.0]
        else:
            sub = torch.exp(torch.linspace(math.log(a), math.log(b), substeps + 1)).tolist()
        for s0, s1 in zip(sub[:-1], sub[1:], strict=True):
            x, _ = _steps.step(preset.denoiser, x, s0, s1, class_labels=labels, solver="heun")
        xs.append(x)
    return xs


@torch.no_grad()
def gits_dp(
    preset: Preset,
    n: int,
    solver: str = "heun",
    grid_size: int = 48,
    num_samples: int = 128,
    substeps: int = 4,
    seed: int = 0,
) -> torch.Tensor:
    """GITS-style schedule (Chen et al. 2024, "On the Trajectory Regularity of ODE-based
    Diffusion Sampling"): the n-edge path from σ_max to 0 through a fine grid (EDM ρ=7 with
    ``grid_size`` points on [σ_min, σ_max], then 0) minimising the summed local truncation
    error cost(a→b) = E‖step(x*(σ_a), σ_a → σ_b) − x*(σ_b)‖² of one solver step started on
    the teacher trajectory x* (fine Heun on training noise). Exact DP, O(n·M²). Multistep
    solvers: the edge cost is their first (order-1) step, as GITS costs every sampler."""
    grid = S.karras(grid_size, preset.sigma_min, preset.sigma_max, 7.0)
    x_T, _ = make_noise(preset, num_samples, TRAIN_SALT + seed)  # noqa: N806
    labels = make_labels(preset, num_samples, TRAIN_SALT + seed, "balanced")
    xs = _teacher(preset, x_T, labels, grid, substeps)
    m = grid.shape[0]
    cost = torch.full((m, m), math.inf, dtype=torch.float64)
    for a in range(m - 1):
        b = torch.arange(a + 1, m)
        x = xs[a].repeat(len(b), *([1] * (xs[a].dim() - 1)))  # [B, ...] of any sample shape
        lab = None if labels is None else labels.repeat(len(b))
        s_next = grid[b].repeat_interleave(num_samples)
        # A multistep solver's step from a fresh state is its first, order-1 step (DDIM in
        # data prediction, Euler for iPNDM): GITS' own cost for every sampler.
        state = _steps.SolverState(1) if _steps.is_multistep(solver) else None
        y, _ = _steps.step(
            preset.denoiser, x, float(grid[a]), s_next, class_labels=lab, solver=solver,
            state=state,
        )  # fmt: skip
        target = torch.cat([xs[j] for j in b.tolist()])
        err = ((y - target) ** 2).reshape(len(b), num_samples, -1).sum(-1).mean(1)
        cost[a, b] = err.double()  # float32 models (digits) into the float64 table
    # best[k, j]: least cost of reaching node j from node 0 in k edges.
    best = torch.full((n + 1, m), math.inf, dtype=torch.float64)
    arg = torch.zeros((n + 1, m), dtype=torch.long)
    best[0, 0] = 0.0
    for k in range(1, n + 1):
        tot = best[k - 1][:, None] + cost  # [from, to]
        best[k], arg[k] = tot.min(0)
    path, j = [m - 1], m - 1
    for k in range(n, 0, -1):
        j = int(arg[k, j])
        path.append(j)
    return S.validate(grid[path[::-1]].clone())


# ---------------------------------------------------------------------------------------------
# Oracle: gradient descent through the sampler


@dataclass
class OracleConfig:
    """THE oracle settings: the defaults of :func:`oracle`, of ``diffusion-gym compare``'s
    ``oracle:`` section and of the agents' evaluations (one definition; a YAML file may set
    any field). ``num_samples`` is the size of the training noise set the oracle (and
    ``edm-best``) fit on: its budget. The default, 1,024, is the smallest bank that does not
    overfit gmm-64d at NFE 9 (with 256 the oracle reaches 0.003 RMSE on its training noise
    and 0.086 held out; issue #19).

    :param iterations: Adam iterations per refined init.
    :param lr: Adam learning rate on the log-gap parameters.
    :param restarts: how many of the best-scored inits are refined.
    :param num_random: random sorted-log-σ inits besides the EDM ρ grid and log-linear.
    :param num_samples: training-noise samples (:func:`training_set`).
    """

    iterations: int = 200
    lr: float = 0.05
    restarts: int = 3
    num_random: int = 24
    num_samples: int = 1024


_ORACLE = OracleConfig()


@dataclass
class OracleResult:
    """The optimised schedule, its training RMSE, and the init it started from."""

    sigmas: torch.Tensor
    rmse: float
    init: torch.Tensor
    init_rmse: float
    history: list[float]


def _to_params(sigmas: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """Inverse of :func:`_from_params`: u_i = softplus⁻¹(log σ_{i−1} − log σ_i)."""
    logs = torch.log(sigmas[:-1].to(torch.float64))
    gaps = logs[:-1] - logs[1:]
    return torch.where(gaps > 20, gaps, torch.log(torch.expm1(gaps.clamp_min(1e-12))))


def _from_params(u: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """σ_0 = σ_max, log σ_i = log σ_max − Σ_{j≤i} softplus(u_j) (strictly decreasing), then 0;
    ``u`` ``[K−1]`` → ``[K+1]``, or a batch of them ``[B, K−1]`` → ``[B, K+1]``."""
    logs = math.log(sigma_max) - torch.cumsum(F.softplus(u), -1)
    head = torch.full((*u.shape[:-1], 1), sigma_max, dtype=torch.float64)
    return torch.cat([head, logs.exp(), torch.zeros_like(head)], -1)


def _sample_diff(preset, x_T, labels, sigmas, solver) -> torch.Tensor:  # noqa: N803
    """The sampler with gradients reaching the σ's: :func:`diffusion_gym.steps.sample` (the
    one sampler of every solver, differentiable w.r.t. ``sigmas`` under grad mode)."""
    with torch.enable_grad():
        return _steps.sample(preset.denoiser, x_T, sigmas, class_labels=labels, solver=solver)


def _oracle_init(preset, n, solver, data, extra_inits, num_random, seed) -> list[torch.Tensor]:
    """Candidate inits: EDM over a ρ grid, log-linear, the given ones, random sorted log σ."""
    inits = [classic("edm", n, preset, rho=r) for r in (0.7, 1.0, 2.0, 3.0, 7.0, 15.0)]
    inits += [classic("log-linear", n, preset)] + [S.validate(s) for s in extra_inits]
    g = torch.Generator().manual_seed(seed)
    lo, hi = math.log(preset.sigma_min), math.log(preset.sigma_max)
    for _ in range(num_random if n > 1 else 0):
        inner = (
            (lo + (hi - lo) * torch.rand(n - 1, generator=g, dtype=torch.float64))
            .sort(descending=True)
            .values.exp()
        )
        inits.append(torch.cat([torch.tensor([preset.sigma_max]), inner, torch.zeros(1)]).double())
    return inits


def oracle(
    preset: Preset,
    n: int,
    solver: str = "heun",
    *,
    data: TrainingSet | None = None,
    iterations: int = _ORACLE.iterations,
    lr: float = _ORACLE.lr,
    restarts: int = _ORACLE.restarts,
    extra_inits: Sequence[torch.Tensor] = (),
    num_random: int = _ORACLE.num_random,
    seed: int = 0,
) -> OracleResult:
    """The oracle fixed schedule: σ_1..σ_{n−1} optimised by Adam on the MSE to the reference
    ODE solution, through the differentiable sampler, on training noise (σ_0 = σ_max, σ_n =
    0; parameterised as cumulative softplus gaps in log σ, so order is always kept).

    All inits of :func:`_oracle_init` are scored first; the ``restarts`` best are refined by
    Adam and the best refined schedule is returned (never worse than its init: the best
    iterate is kept). Evaluate it on held-out noise (:func:`baselines.evaluate.evaluate`).
    Defaults: :class:`OracleConfig` (``data``: a training set of its ``num_samples``).
    """
    data = data or training_set(preset, _ORACLE.num_samples)
    inits = _oracle_init(preset, n, solver, data, extra_inits, num_random, seed)
    with torch.no_grad():
        scored = sorted((schedule_rmse(preset, s, solver, data), i) for i, s in enumerate(inits))
    best: OracleResult | None = None
    for init_rmse, i in scored[:restarts]:
        res = _refine(preset, inits[i], init_rmse, solver, data, iterations, lr)
        if best is None or res.rmse < best.rmse:
            best = res
    assert best is not None
    return best


def _refine(preset, init, init_rmse, solver, data, iterations, lr) -> OracleResult:
    """Adam on u (the log-gap parameters); keeps the best iterate."""
    best_s, best_r, hist = init.clone(), init_rmse, [init_rmse]
    if init.shape[0] <= 2:  # one step: nothing to optimise
        return OracleResult(best_s, best_r, init, init_rmse, hist)
    u = _to_params(init, preset.sigma_max).clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    for _ in range(iterations):
        sig = _from_params(u, preset.sigma_max)
        x = _sample_diff(preset, data.x_T, data.labels, sig, solver)
        loss = ((x - data.x_ref) ** 2).mean()
        r = float(loss.detach().sqrt())
        hist.append(r)
        if r < best_r and bool(torch.isfinite(loss)):
            best_r, best_s = r, sig.detach().clone()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return OracleResult(S.validate(best_s), best_r, init, init_rmse, hist)
