"""The ODE solvers of the sampler step: one registry, all on the EDM σ parametrisation.

x_σ = x_0 + σ·n and D(x; σ) the denoiser (the estimate of x_0); the probability-flow ODE is
dx/dσ = (x − D(x; σ))/σ. In λ = −log σ (the log-SNR of the VE/EDM process, α = 1) its exact
solution from σ_s to σ_t is x_t = (σ_t/σ_s) x_s + σ_t ∫_{λ_s}^{λ_t} e^{λ} D dλ, which the
exponential-integrator solvers (DPM-Solver++, UniPC) approximate with a polynomial in λ
through past values of D. Every solver here is one object of the registry :data:`REGISTRY`
with one method, :meth:`Solver.advance`, called by :func:`diffusion_gym.steps.step` after the
churn; :func:`diffusion_gym.steps.sample` is the only loop.

| name | method | NFE per step | order |
|---|---|---|---|
| ``euler`` | Euler on dx/dσ (EDM Alg. 1 without the correction) | 1 | 1 |
| ``heun`` | EDM's Heun (Karras et al. 2022, Alg. 1); Euler on the step to σ = 0 | 2 (1 last) | 2 |
| ``dpmpp-2m`` | DPM-Solver++(2M) (Lu et al. 2022, Alg. 2, data prediction) | 1 | 2 |
| ``dpmpp-3m`` | DPM-Solver++(3M) (Lu et al. 2022; diffusers' third-order update) | 1 | 2 (!) |
| ``unipc-2`` | UniPC, UniP-2 + UniC, B(h) = e^h − 1 (bh2) (Zhao et al. 2023) | 1 | 3 |
| ``unipc-3`` | UniPC, UniP-3 + UniC, bh2 | 1 | 4 |
| ``ipndm`` | iPNDM (Zhang & Chen 2023): Adams–Bashforth on d = (x − D)/σ, up to 4th | 1 | 4 (*) |

(*) iPNDM: 4 on equal steps in σ (its fixed coefficients assume them). (!) the published 3M
update (DPM-Solver code, diffusers, k-diffusion; kept here bit-compatible with diffusers) is of
order 2: its D2 term is half the Taylor term; ``DPMSolverPP(3, taylor=True)`` is of order 3.

Multistep solvers keep past model outputs in a :class:`SolverState` (batched tensors on x's
device, per-sample σ allowed, never written in place, so gradients reach the σ's). They warm
up at lower order (the first step is order 1, the second at most 2, ...). The final step to
σ = 0 of DPM-Solver++ and UniPC is always first order, i.e. the denoise x_N = D(x; σ_{N−1})
(their higher-order terms divide by h = ∞ there); with ``lower_order_final`` (default, as
diffusers) the order is also capped by the number of steps left (DPM-Solver++: only when the
schedule has fewer than 15 steps, as diffusers), which for iPNDM makes its last step the
denoise too. UniPC's corrector UniC-p refines x_k with D(x_k) of the next step (no extra
NFE), so UniPC-p is of order p + 1; the model is always evaluated at the uncorrected x_k, as in
the paper and diffusers. iPNDM's fixed coefficients are Adams–Bashforth's on equal steps in σ:
on a non-uniform grid (Karras) it is, like the published iPNDM, a heuristic of order ≥ 1 whose
error is small in practice.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "Solver",
    "SolverState",
    "Euler",
    "Heun",
    "DPMSolverPP",
    "UniPC",
    "IPNDM",
    "REGISTRY",
    "SOLVERS",
    "get_solver",
    "MIXED",
]

#: ``D(x, σ) -> x0_hat`` with σ broadcastable against x (the step's guided denoiser call).
DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: ``final=MIXED``: some samples of the step land on σ = 0 (see :meth:`Solver.advance`).
MIXED = "mixed"

#: DPM-Solver++ lowers its final orders only below this many steps (diffusers' rule).
DPM_LOWER_ORDER_FINAL_BELOW = 15


class SolverState:
    """The history a multistep solver carries between the steps of one batch of trajectories.

    Create one per batch of episodes (``SolverState(num_steps)``) and pass it to every
    :func:`diffusion_gym.steps.step` of those trajectories; the step replaces its fields by new
    tensors (never in place). All samples of a batch step in lockstep (the same k), each with
    its own σ.

    :param num_steps: steps of the schedule (N), needed by ``lower_order_final``; None if
        unknown (then only the final step to σ = 0 is lowered).
    :param lower_order_final: cap the order by the number of steps left (see the module doc).
    """

    __slots__ = ("num_steps", "lower_order_final", "k", "model", "sigmas", "x_last", "order_last")

    def __init__(self, num_steps: int | None = None, *, lower_order_final: bool = True):
        if num_steps is not None and (
            not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1
        ):
            raise ValueError(f"num_steps must be None or an int >= 1, got {num_steps!r}")
        if not isinstance(lower_order_final, bool):
            raise TypeError(f"lower_order_final must be a bool, got {lower_order_final!r}")
        self.num_steps, self.lower_order_final = num_steps, lower_order_final
        self.k = 0
        """Steps taken so far."""
        self.model: tuple[torch.Tensor, ...] = ()
        """Past model outputs, newest first (D for DPM-Solver++/UniPC, d = (x − D)/σ for iPNDM)."""
        self.sigmas: tuple[torch.Tensor, ...] = ()
        """The σ of each entry of ``model`` (scalar or broadcastable ``[B, 1, ...]``)."""
        self.x_last: torch.Tensor | None = None
        """UniPC: the (corrected) sample the last predictor started from."""
        self.order_last = 0
        """UniPC: the order of the last predictor (the order of the next corrector)."""

    def push(self, model: torch.Tensor, sigma: torch.Tensor, keep: int) -> None:
        """Prepend one model output and its σ, keeping the newest ``keep``."""
        self.model = ((model,) + self.model)[:keep]
        self.sigmas = ((sigma,) + self.sigmas)[:keep]

    def copy(self) -> SolverState:
        """A shallow copy (the tensors are shared; none is ever written in place)."""
        new = SolverState(self.num_steps, lower_order_final=self.lower_order_final)
        new.k, new.model, new.sigmas = self.k, self.model, self.sigmas
        new.x_last, new.order_last = self.x_last, self.order_last
        return new


class Solver:
    """One ODE solver of the registry. ``advance`` makes the ODE step from (x̂, σ̂) to σ_next
    (after any churn) and returns ``(x_next, denoised)`` with denoised = D(x̂; σ̂)."""

    name: str = ""
    order: int = 1
    multistep: bool = False
    sde: bool = False
    """Whether churn γ > 0 runs as this solver's own SDE variant (``advance(churn=)``)
    instead of EDM's churn (single-step solvers) or being refused (other multistep ones)."""

    def nfe(self, num_steps: int) -> int:
        """Denoiser evaluations of ``num_steps`` steps ending at σ = 0."""
        return num_steps

    def steps_for_nfe(self, nfe: int) -> int:
        """The number of steps that spends exactly ``nfe`` (inverse of :meth:`nfe`)."""
        return nfe

    def advance(
        self,
        D: DenoiseFn,  # noqa: N803 - the paper's name
        x: torch.Tensor,
        t_cur: torch.Tensor,
        t_next: torch.Tensor,
        state: SolverState | None,
        churn: tuple[torch.Tensor, torch.Tensor] | None = None,
        final: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ODE step from σ = ``t_cur`` to ``t_next`` (both broadcastable against x);
        ``churn = (γ, S_noise · ε)`` only for solvers with :attr:`sde`. ``final``: whether
        σ_next = 0 for every sample (True), for none (False) or for some (:data:`MIXED`:
        selected per sample with ``torch.where``), known on the host so that the step reads
        no σ_next there (:func:`diffusion_gym.steps.step` passes it); None: read from
        ``t_next`` (a host sync on a device)."""
        raise NotImplementedError

    @property
    def history_slots(self) -> int:
        """How many tensors of the :class:`SolverState` the next step reads (0: single-step):
        the kept model outputs (``order``), plus UniPC's x_last."""
        return 0

    def history_view(
        self, state: SolverState | None, sigma_data: float
    ) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """The state as ``history_slots`` entries ``(σ, scaled values)`` (None: empty yet),
        newest first: a past D as D/σ_data, a past d = (x − D)/σ (iPNDM) as is, UniPC's x_last
        as x/sqrt(σ² + σ_data²); σ as stored (scalar or ``[B, 1, ...]``). For observations."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, order={self.order})"


class Euler(Solver):
    """Euler on dx/dσ = (x − D)/σ (1 NFE per step)."""

    name, order = "euler", 1

    def advance(self, D, x, t_cur, t_next, state, final=None):  # noqa: N803
        # Euler step.
        denoised = D(x, t_cur)
        d_cur = (x - denoised) / t_cur
        return x + (t_next - t_cur) * d_cur, denoised


class Heun(Solver):
    """EDM's Heun step (Karras et al. 2022, Alg. 1): Euler, then the trapezoidal correction
    where σ_next > 0 (the last step to σ = 0 stays Euler). 2 NFE per step, 1 on the last."""

    name, order = "heun", 2

    def nfe(self, num_steps: int) -> int:
        return 2 * num_steps - 1

    def steps_for_nfe(self, nfe: int) -> int:
        if nfe % 2 == 0:
            raise ValueError(f"Heun ending at sigma=0 spends an odd NFE (2n-1), got nfe={nfe}")
        return (nfe + 1) // 2

    def advance(self, D, x, t_cur, t_next, state, final=None):  # noqa: N803
        # Euler step.
        denoised = D(x, t_cur)
        d_cur = (x - denoised) / t_cur
        x_next = x + (t_next - t_cur) * d_cur
        final = _landing(final, t_next)
        if final is True:  # every sample lands on σ = 0: Euler
            return x_next, denoised
        # Apply 2nd order correction where t_next > 0.
        last = None if final is False else t_next == 0  # MIXED: per sample
        t_safe = t_next if last is None else torch.where(last, torch.ones_like(t_next), t_next)
        d_prime = (x_next - D(x_next, t_safe)) / t_safe
        x_heun = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
        return (x_heun if last is None else torch.where(last, x_next, x_heun)), denoised


class _Multistep(Solver):
    """Shared by the multistep solvers: the order of this step, the final denoise."""

    multistep = True
    lower_order_final_below: int | None = None  # None: cap by steps left at any N

    def _order(self, state: SolverState) -> int:
        p = min(self.order, state.k + 1)  # warm start: as many past outputs as exist
        n = state.num_steps
        if state.lower_order_final and n is not None:
            below = self.lower_order_final_below
            if below is None or n < below:
                p = min(p, max(1, n - state.k))
        return p

    #: Whether the stored model outputs are derivatives d = (x − D)/σ (iPNDM) or D.
    stores_derivative = False

    @property
    def history_slots(self) -> int:
        return self.order

    def history_view(self, state, sigma_data):
        out: list = [None] * self.history_slots
        if state is None:
            return out
        scale = 1.0 if self.stores_derivative else 1.0 / sigma_data
        for j, (m, sig) in enumerate(zip(state.model, state.sigmas, strict=True)):
            out[j] = (sig, m * scale)
        return out

    @staticmethod
    def _check_state(state: SolverState | None, name: str) -> SolverState:
        if not isinstance(state, SolverState):
            raise ValueError(
                f"solver {name!r} is multistep: pass state=steps.SolverState(num_steps) and "
                "reuse it for every step of the trajectory (steps.sample does this)"
            )
        return state

    @staticmethod
    def _finish(final, t_next, x_high_fn, denoised):
        """Where σ_next = 0 the step is the denoise x = D; elsewhere ``x_high_fn(t_safe)``
        (``final``: σ_next = 0 everywhere, nowhere, :data:`MIXED` or None: see advance)."""
        final = _landing(final, t_next)
        if final is True:
            return denoised
        if final is False:
            return x_high_fn(t_next)
        last = t_next == 0
        t_safe = torch.where(last, torch.ones_like(t_next), t_next)
        return torch.where(last, denoised, x_high_fn(t_safe))


def _landing(final: bool | str | None, t_next: torch.Tensor) -> bool | str:
    """``final`` as True / False / :data:`MIXED`; None is read from ``t_next`` (a sync)."""
    if final is not None:
        return final
    last = t_next == 0
    return True if bool(last.all()) else (MIXED if bool(last.any()) else False)


def _solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.linalg.solve(a, b)`` without its singularity check, which reads the factor's
    status on the host (a device sync per call): a singular system gives inf/NaN, which the
    step's finiteness check reports."""
    return torch.linalg.solve_ex(a, b)[0]


def _lam(sigma: torch.Tensor) -> torch.Tensor:
    """λ = −log σ (the log-SNR of the EDM/VE process)."""
    return -torch.log(sigma)


class DPMSolverPP(_Multistep):
    """DPM-Solver++(2M)/(3M), multistep, data prediction (Lu et al. 2022, "DPM-Solver++",
    Alg. 2; the third-order update of diffusers' ``DPMSolverMultistepScheduler``), in λ = −log σ:
    with h = λ_t − λ_s, r_j = h_j/h and m_j the past D,
    x_t = (σ_t/σ_s) x − (e^{−h} − 1) D_0 [+ terms in D_1, D_2]. 1 NFE per step.

    Churn γ > 0 (2M only) runs DPM-Solver++(2M) SDE (k-diffusion's ``sample_dpmpp_2m_sde``,
    midpoint; diffusers' ``sde-dpmsolver++`` is η = 1) with η h = log(1 + γ):
    x_t = (σ_t/σ_s) e^{−ηh} x + (1 − e^{−h−ηh}) (D_0 + D_1/2) + σ_t sqrt(1 − e^{−2ηh}) S_noise ε.
    Its first-order part is exactly EDM's churn to σ̂ = σ(1 + γ) followed by a DDIM step to σ_t,
    except that D is evaluated before the noise (at x, σ) rather than at (x̂, σ̂): the same
    fresh-noise fraction as EDM's churn, without breaking the history. γ = 0 gives the ODE
    update bit for bit."""

    lower_order_final_below = DPM_LOWER_ORDER_FINAL_BELOW

    def __init__(self, order: int, *, taylor: bool = False):
        if order not in (2, 3):
            raise ValueError(f"DPM-Solver++ multistep order must be 2 or 3, got {order!r}")
        self.order, self.name = order, f"dpmpp-{order}m" + ("-taylor" if taylor else "")
        # The D2 term of the published 3M update (DPM-Solver's code, diffusers, k-diffusion)
        # uses D2 = (D1_0 − D1_1)/(r0 + r1) ≈ h² D''/2 with the coefficient of h² D'': half
        # the Taylor term, so that update is of order 2 (measured: tests/test_solvers.py).
        # ``taylor=True`` doubles D2 (order 3; not registered, pass the object).
        self._d2_scale = 2.0 if taylor else 1.0
        self.sde = order == 2 and not taylor

    def advance(self, D, x, t_cur, t_next, state, churn=None, final=None):  # noqa: N803
        state = self._check_state(state, self.name)
        p = self._order(state)
        m0 = D(x, t_cur)
        hist, hist_sig = state.model, state.sigmas
        if churn is not None and not self.sde:
            raise ValueError(f"solver {self.name!r} has no SDE variant for churn gamma > 0")
        if churn is not None:  # 2M SDE: η h = log(1 + γ) (see the class docstring)
            eta_h = torch.log1p(churn[0])
            decay, noise = torch.exp(-eta_h), churn[1]

        def update(t_n):
            lam_s, lam_t = _lam(t_cur), _lam(t_n)
            h = lam_t - lam_s
            if churn is None:
                phi = torch.expm1(-h)  # e^{−h} − 1 = σ_t/σ_s − 1
                x_t = (t_n / t_cur) * x - phi * m0  # DPM-Solver++(1) = DDIM
            else:  # e^{−h−ηh} − 1; γ = 0: the ODE's values exactly
                phi = torch.expm1(-h - eta_h)
                x_t = ((t_n / t_cur) * decay) * x - phi * m0
            if p >= 2:
                r0 = (lam_s - _lam(hist_sig[0])) / h
                d1_0 = (m0 - hist[0]) / r0
                if p == 2:  # 2M (midpoint): D = m0 + D1/2
                    x_t = x_t - 0.5 * phi * d1_0
                    if churn is not None:  # fresh noise of the SDE
                        x_t = x_t + t_n * (-torch.expm1(-2 * eta_h)).sqrt() * noise
                    return x_t
                r1 = (_lam(hist_sig[0]) - _lam(hist_sig[1])) / h
                d1_1 = (hist[0] - hist[1]) / r1
                d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
                d2 = self._d2_scale * (d1_0 - d1_1) / (r0 + r1)
                x_t = x_t + (phi / h + 1.0) * d1 - ((phi + h) / h**2 - 0.5) * d2
            if churn is not None:  # fresh noise of the SDE (first-order steps)
                x_t = x_t + t_n * (-torch.expm1(-2 * eta_h)).sqrt() * noise
            return x_t

        x_next = self._finish(final, t_next, update, m0)
        state.push(m0, t_cur, self.order)
        state.k += 1
        return x_next, m0


class UniPC(_Multistep):
    """UniPC-p (Zhao et al. 2023, "UniPC", Alg. 1/2 with B(h) = e^h − 1, "bh2"), data
    prediction in λ = −log σ: the predictor UniP-p from (x_k, D_k and p − 1 past D), and before
    it the corrector UniC-p', which refines x_k with D(x_k) (no extra NFE; p' = the previous
    predictor's order). Coefficients as diffusers' ``UniPCMultistepScheduler`` (UniP-2 uses
    ρ = ½; otherwise ρ solves R ρ = b with R_ij = r_j^{i−1}, b_i = i! φ_{i+1}(h)/B(h))."""

    def __init__(self, order: int):
        if order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3, got {order!r}")
        self.order, self.name = order, f"unipc-{order}"

    @property
    def history_slots(self) -> int:
        return self.order + 1  # the past D, then x_last (the corrector's start)

    def history_view(self, state, sigma_data):
        out = super().history_view(state, sigma_data)
        if state is not None and state.x_last is not None:
            sig = state.sigmas[0]
            out[-1] = (sig, state.x_last / (sig * sig + sigma_data**2).sqrt())
        return out

    @staticmethod
    def _rb(h: torch.Tensor, rks: list[torch.Tensor], order: int):
        """R (``[..., order, order]``), b (``[..., order]``) and B(h) of the UniPC system."""
        h, *rks = torch.broadcast_tensors(h, *rks)
        hh = -h  # data prediction
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = torch.expm1(hh)  # bh2
        rks = torch.stack([*rks, torch.ones_like(h)], -1)
        rows, b, fact = [], [], 1
        for i in range(1, order + 1):
            rows.append(rks ** (i - 1))
            b.append(h_phi_k * fact / b_h)
            fact *= i + 1
            h_phi_k = h_phi_k / hh - 1 / fact
        return torch.stack(rows, -2), torch.stack(b, -1), b_h, h_phi_1

    def _predict(self, x, m0, t_s, t_t, hist, hist_sig, p):
        """UniP-p from (x, m0) at σ_s to σ_t, past outputs ``hist`` (newest first)."""
        lam_s = _lam(t_s)
        h = _lam(t_t) - lam_s
        rks = [(_lam(hist_sig[i - 1]) - lam_s) / h for i in range(1, p)]
        d1s = [(hist[i - 1] - m0) / rks[i - 1] for i in range(1, p)]
        r, b, b_h, h_phi_1 = self._rb(h, rks, p)
        x_t = (t_t / t_s) * x - h_phi_1 * m0
        if p == 1:
            return x_t
        if p == 2:
            rhos = [torch.full_like(h, 0.5)]
        else:
            sol = _solve(r[..., :-1, :-1], b[..., :-1])
            rhos = [sol[..., i] for i in range(p - 1)]
        return x_t - b_h * sum(rho * d for rho, d in zip(rhos, d1s, strict=True))

    def _correct(self, x_last, m_t, t_s, t_t, hist, hist_sig, p):
        """UniC-p: x at σ_t from x_last at σ_s (= hist_sig[0]) and D at the predicted x_t."""
        m0, lam_s = hist[0], _lam(t_s)
        h = _lam(t_t) - lam_s
        rks = [(_lam(hist_sig[i]) - lam_s) / h for i in range(1, p)]
        d1s = [(hist[i] - m0) / rks[i - 1] for i in range(1, p)]
        r, b, b_h, h_phi_1 = self._rb(h, rks, p)
        if p == 1:
            rhos = [torch.full_like(h, 0.5)]
        else:
            sol = _solve(r, b)
            rhos = [sol[..., i] for i in range(p)]
        x_t = (t_t / t_s) * x_last - h_phi_1 * m0
        res = sum((rho * d for rho, d in zip(rhos[:-1], d1s, strict=True)), torch.zeros_like(m0))
        return x_t - b_h * (res + rhos[-1] * (m_t - m0))

    def advance(self, D, x, t_cur, t_next, state, final=None):  # noqa: N803
        state = self._check_state(state, self.name)
        m_t = D(x, t_cur)
        # Corrector UniC on x_k with D(x_k), of the previous predictor's order.
        if state.k > 0 and state.x_last is not None:
            x = self._correct(
                state.x_last, m_t, state.sigmas[0], t_cur, state.model, state.sigmas,
                state.order_last,
            )  # fmt: skip
        p = self._order(state)
        hist, hist_sig = state.model, state.sigmas
        # Predictor UniP-p from the corrected x_k.
        x_next = self._finish(
            final, t_next, lambda t_n: self._predict(x, m_t, t_cur, t_n, hist, hist_sig, p),
            m_t,
        )  # fmt: skip
        state.push(m_t, t_cur, self.order)
        state.x_last, state.order_last = x, p
        state.k += 1
        return x_next, m_t


#: Adams–Bashforth coefficients of iPNDM, newest derivative first (orders 1..4).
IPNDM_COEFFICIENTS = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)


class IPNDM(_Multistep):
    """Improved PNDM (Zhang & Chen 2023, DEIS, "iPNDM"; Liu et al. 2022 PNDM without its
    Runge–Kutta warm start): linear multistep on d = (x − D)/σ (= ε̂ in EDM units),
    x_{k+1} = x_k + (σ_{k+1} − σ_k) Σ_j c_j d_{k−j}, with the fixed Adams–Bashforth
    coefficients of order min(order, k + 1) (lower-order warm start). 1 NFE per step."""

    stores_derivative = True

    def __init__(self, order: int = 4):
        if order not in (1, 2, 3, 4):
            raise ValueError(f"iPNDM order must be 1..4, got {order!r}")
        self.order = order
        self.name = "ipndm" if order == 4 else f"ipndm-{order}"

    def advance(self, D, x, t_cur, t_next, state, final=None):  # noqa: N803
        state = self._check_state(state, self.name)
        p = self._order(state)
        denoised = D(x, t_cur)
        d_cur = (x - denoised) / t_cur
        coef = IPNDM_COEFFICIENTS[p - 1]
        d = coef[0] * d_cur
        for c, d_old in zip(coef[1:], state.model, strict=False):
            d = d + c * d_old
        x_next = x + (t_next - t_cur) * d
        if p == 1:  # where σ_next = 0 this is the denoise, exactly
            x_next = torch.where(t_next == 0, denoised, x_next)
        state.push(d_cur, t_cur, self.order)
        state.k += 1
        return x_next, denoised


#: name -> solver object (one instance each; solvers hold no per-trajectory state).
REGISTRY: dict[str, Solver] = {
    s.name: s
    for s in (
        Euler(),
        Heun(),
        DPMSolverPP(2),
        DPMSolverPP(3),
        UniPC(2),
        UniPC(3),
        IPNDM(4),
    )
}

#: The registered solver names.
SOLVERS = tuple(REGISTRY)


def get_solver(name: str | Solver) -> Solver:
    """The solver registered as ``name`` (a :class:`Solver` is returned as is)."""
    if isinstance(name, Solver):
        return name
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"solver must be one of {SOLVERS}, got {name!r}") from None
