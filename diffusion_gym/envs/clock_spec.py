"""The clock's definition: :class:`ClockSpec` (every parameter of the Clock env, written once)
and :class:`Clock` (the warped time over a base σ curve they define), with
:func:`schedule_from_actions` (action sequences -> σ schedules, for any sampler).

ART / ART-RL (arXiv 2601.18681) reparameterises the sampler's time by a clock whose speed an
agent sets at every step, so a fixed number of solver steps is spent where the
discretisation error is largest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import schedules, steps
from ..checks import as_int, as_real, as_seed
from ..hostpaths import on_host
from .rewards import check_reward_options

__all__ = [
    "ClockSpec",
    "Clock",
    "schedule_from_actions",
    "max_speed_scale",
    "check_actions",
    "BASES",
    "REWARDS",
    "OBS_MODES",
]

BASES = ("edm", "linear")
REWARDS = ("terminal_error", "local_error", "log_terminal_error")
OBS_MODES = ("state", "features", "time")

MAX_BUDGET = 10_000  # far past any useful budget; bounds the constructor's O(K) check
_EPS = 2.0**-52  # float64 machine epsilon
_LOG_SIGMA_FLOOR = math.log(1e-250)  # every σ_k before the last step stays above this
_TINY_BETA = 1e-12  # "β → 0": the base schedule alone


def _rho_roots(sigma_min: float, sigma_max: float, rho: float) -> tuple[float, float]:
    """``(σ_max^(1/ρ), σ_min^(1/ρ))``; ``ValueError`` where float64 cannot warp the range
    with this ρ (the root overflows for a tiny ρ, or the two roots round together for a
    huge one)."""
    try:
        hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    except OverflowError:
        hi, lo = math.inf, 0.0
    if not (math.isfinite(hi) and hi > lo and math.isfinite(hi / (hi - lo))):
        raise ValueError(
            f"rho={rho} is out of range for sigma in [{sigma_min}, {sigma_max}]: "
            "sigma_max**(1/rho) must be finite and differ from sigma_min**(1/rho) in float64"
        )
    return hi, lo


def _sigmoid(z: float) -> float:
    """1 / (1 + e^−z) without overflow, accurate in both tails."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


def _is_integer_dtype(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


@dataclass(frozen=True)
class ClockSpec:
    """Every parameter of a Clock env but the denoiser, device and batch size (frozen,
    validated at construction; see :class:`~diffusion_gym.envs.clock.ClockVectorEnv` for
    their meaning). ``class_labels`` is normalised to a tuple of ints (or None)."""

    budget: int = 3
    solver: str = "heun"
    base: str = "edm"
    rho: float = 7.0
    speed_scale: float = 3.0
    obs_mode: str = "state"
    reward: str | Callable[[dict], Any] = "terminal_error"
    reference_steps: int = 128
    reference_extrapolate: bool = True
    bank_size: int = 4096
    bank_seed: int = 0
    class_labels: tuple[int, ...] | None = None
    guidance: float | None = None
    max_episode_steps: int | None = None
    prior_std: float | None = None
    obs_history: bool = False
    lower_order_final: bool = True
    reward_baseline: str | None = None
    reward_scale: float | str = 1.0

    def __post_init__(self):
        def norm(name, value):  # frozen: normalised values are set through object
            object.__setattr__(self, name, value)

        norm("budget", as_int("budget (K solver steps)", self.budget, 1, MAX_BUDGET))
        if self.base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {self.base!r}")
        if self.prior_std is not None:
            norm("prior_std", as_real("prior_std", self.prior_std, 0.0, low_open=True))
        norm("rho", as_real("rho", self.rho, 0.0, low_open=True))
        norm("speed_scale", as_real("speed_scale (β)", self.speed_scale, 0.0, low_open=True))
        if self.solver not in steps.SOLVERS:
            raise ValueError(f"solver must be one of {steps.SOLVERS}, got {self.solver!r}")
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode!r}")
        if not (callable(self.reward) or self.reward in REWARDS):
            raise ValueError(f"reward must be one of {REWARDS} or a callable, got {self.reward!r}")
        if isinstance(self.reward_scale, np.generic):  # a numpy scalar: its Python value
            norm("reward_scale", self.reward_scale.item())
        check_reward_options(self.reward, self.reward_baseline, self.reward_scale)
        if not isinstance(self.reward_scale, str):
            norm("reward_scale", float(self.reward_scale))
        norm("reference_steps", as_int("reference_steps", self.reference_steps, 1))
        norm("bank_size", as_int("bank_size", self.bank_size, 1))
        norm("bank_seed", as_seed("bank_seed", self.bank_seed))
        if self.max_episode_steps is not None:
            m = as_int("max_episode_steps (None or an int >= 1)", self.max_episode_steps, 1)
            norm("max_episode_steps", m)
        if self.guidance is not None:
            norm("guidance", as_real("guidance (None or a CFG weight)", self.guidance))
        for flag in ("obs_history", "lower_order_final"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
            norm(flag, bool(getattr(self, flag)))
        if not isinstance(self.reference_extrapolate, (bool, np.bool_)):
            raise TypeError(
                f"reference_extrapolate must be a bool, got {self.reference_extrapolate!r}"
            )
        norm("reference_extrapolate", bool(self.reference_extrapolate))
        if self.class_labels is not None:
            labels = torch.as_tensor(self.class_labels).reshape(-1)
            if labels.numel() == 0 or not _is_integer_dtype(labels.dtype):
                raise TypeError(
                    f"class_labels must be None, an int or a list of ints, got {labels}"
                )
            norm("class_labels", tuple(int(v) for v in labels))
        # The clock's own check (every action valid) runs when the env builds it.

    def clock(self, sigma_min: float, sigma_max: float, device="cpu") -> Clock:
        """The :class:`Clock` of this spec over ``[sigma_min, sigma_max]``."""
        return Clock(
            self.budget, self.base, sigma_min, sigma_max, self.rho, self.speed_scale, device
        )


# ---------------------------------------------------------------------------------------------
# The warped clock


class Clock:
    """The clock u ∈ [0, u*) over a base σ curve, and the speed action that advances it.

    ``base="edm"``: σ_base(u) = (σ_max^(1/ρ) + u (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, continued past
    u = 1 until it reaches 0 at u* = σ_max^(1/ρ) / (σ_max^(1/ρ) − σ_min^(1/ρ)); base positions
    u_k = k/(K−1), k = 0..K−1 (σ_base(u_k) = ``karras(K)``). ``base="linear"`` (ART):
    σ_base(u) = T (1 − u) with T = σ_max, u* = 1, base positions u_k = k/K (``linear(K)``).

    Step k's action a_k ∈ [−1, 1] covers the fraction f_k = sigmoid(logit(f_k^base) + β a_k)
    of the remaining clock, u_{k+1} = u_k + (u* − u_k) f_k, with the fixed base fractions
    f_k^base = (u^base_{k+1} − u^base_k)/(u* − u^base_k) and β = ``speed_scale``. a_k = 0 gives
    f_k = f_k^base exactly; while every action so far was 0 the position and σ are read from
    the base tables, so all-zero actions reproduce the base schedule bit for bit. The last
    step (k = K−1) ignores its action and lands on σ = 0.

    :param budget: K, the number of solver steps (>= 1).
    :param base: ``"edm"`` or ``"linear"``.
    :param sigma_min, sigma_max: the σ range (σ_max is the start σ_0 = T).
    :param rho: ρ of the EDM base (ignored by ``"linear"``).
    :param speed_scale: β, how far one unit of action moves the logit of f. A β for which
        some action sequence in [−1, 1]^K could stop σ decreasing in float64 is refused with
        a ``ValueError`` naming the largest that works (:meth:`max_safe_speed_scale`), so
        every action in the env's action space is valid.
    """

    def __init__(
        self,
        budget: int,
        base: str = "edm",
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        speed_scale: float = 3.0,
        device: torch.device | str = "cpu",
    ):
        budget = as_int("budget (K solver steps)", budget, 1, MAX_BUDGET)
        if base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {base!r}")
        speed_scale = as_real("speed_scale (β)", speed_scale, 0.0, low_open=True)
        sigma_min = as_real("sigma_min", sigma_min, 0.0, low_open=True)
        sigma_max = as_real("sigma_max", sigma_max, 0.0, low_open=True)
        if not sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
        rho = as_real("rho", rho, 0.0, low_open=True)
        self.budget, self.base, self.rho = budget, base, float(rho)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.speed_scale = float(speed_scale)
        self.device = torch.device(device)
        k = budget
        if base == "edm":
            self._hi, self._lo = _rho_roots(sigma_min, sigma_max, rho)
            self.u_star = self._hi / (self._hi - self._lo)
            self.u_base = torch.linspace(0, 1, k, dtype=torch.float64, device=device)
            self.sigma_base = schedules.karras(k, sigma_min, sigma_max, rho, device=device)
        else:
            self.u_star = 1.0
            self.u_base = torch.linspace(0, 1, k + 1, dtype=torch.float64, device=device)[:k]
            self.sigma_base = schedules.linear(k, sigma_max, device=device)
        # Base fraction of the remaining clock covered by step k (k = 0..K−2).
        u = self.u_base
        self.f_base = (u[1:] - u[:-1]) / (self.u_star - u[:-1])
        self.logit_f_base = torch.logit(self.f_base)
        # The same tables as python floats (exact float64 values): no per-step indexing.
        self._f, self._logit_f = self.f_base.tolist(), self.logit_f_base.tolist()
        self._u, self._sigma = self.u_base.tolist(), self.sigma_base.tolist()
        self._off_base_cache: torch.Tensor | None = None  # see _off_base
        unsafe = self._unsafe_step(self.speed_scale)
        if unsafe is not None:
            raise ValueError(self._unsafe_message(unsafe))

    # -- every action in [−1, 1] is valid: the constructor's guarantee ------------------------
    def _unsafe_step(self, beta: float) -> int | None:
        """The first step k < K−1 at which some action sequence in [−1, 1]^K could fail
        1e−250 < σ_{k+1} < σ_k in float64 with speed scale ``beta``; None if none can.

        With r = u* − u the remaining clock, a step maps r_{k+1} = r_k (1 − f_k), f_k rising
        with a_k, and σ_base = (c r)^ρ (EDM, c = σ_max^(1/ρ) − σ_min^(1/ρ)) or T r (linear).
        So the smallest move r_k f_k is at a_k = −1 from the smallest r_k, and the smallest
        r_k is on the all +1 path. In float64 (e = ε u*, ε = 2^−52): u* − u_k is exact once
        u_k >= u*/2 (Sterbenz), each update rounds u by <= e/2, the sigmoid's 1 − f by <= ε,
        and σ's root c r by <= 2 ε c u*. A lower bound R_k of the computed r_k then follows
        R_{k+1} = R_k (1 − f_hi − 2ε) − 2e, and step k is safe when its smallest move
        M = R_k f_lo (1 − 2ε) − e/2 is >= 8e (σ's root strictly drops), the relative drop of
        σ it implies is > 1e−12 (pow's rounding and the base tables' few ulps cannot undo
        it), R_{k+1} > 8e (σ_{k+1} > 0) and σ_{k+1} > 1e−250 (log σ needs no clamp)."""
        edm = self.base == "edm"
        c = self._hi - self._lo if edm else self.sigma_max
        power = self.rho if edm else 1.0
        e = _EPS * self.u_star
        r = self.u_star  # R_0: u_0 = 0 exactly
        for k in range(self.budget - 1):
            lf = self._logit_f[k]
            f_lo, q_hi = _sigmoid(lf - beta), _sigmoid(-(lf + beta))  # a = −1; 1 − f at a = +1
            move = r * f_lo * (1 - 2 * _EPS) - e / 2
            drop = (move - 2 * e) / (r + 2 * e)  # relative drop of the root, lower bound
            if not (move >= 8 * e and -math.expm1(power * math.log1p(-min(drop, 1.0))) > 1e-12):
                return k
            r = r * (q_hi - 2 * _EPS) - 2 * e
            if not (r > 8 * e and power * math.log(c * (r - 2 * e)) > _LOG_SIGMA_FLOOR):
                return k
        return None

    def max_safe_speed_scale(self) -> float:
        """The largest β for which every action sequence in [−1, 1]^K is valid on this
        clock's base (see :meth:`_unsafe_step`; ``inf`` for K = 1, 0.0 if even the base
        schedule is too fine for float64). Found by bisection (β only widens [f_lo, f_hi]),
        rounded down to 4 significant digits."""
        if self.budget == 1:
            return math.inf
        if self._unsafe_step(_TINY_BETA) is not None:
            return 0.0
        lo, hi = _TINY_BETA, 1.0
        while self._unsafe_step(hi) is None:  # f_hi rounds to 1 by β ≈ 40: this ends
            lo, hi = hi, 2 * hi
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self._unsafe_step(mid) is None else (lo, mid)
        digits = 3 - math.floor(math.log10(lo))
        return math.floor(lo * 10**digits) / 10**digits

    def _unsafe_message(self, k: int) -> str:
        where = (
            f"budget={self.budget}, base={self.base!r}"
            + (f", rho={self.rho}" if self.base == "edm" else "")
            + f", sigma in [{self.sigma_min}, {self.sigma_max}]"
        )
        beta = self.max_safe_speed_scale()
        fix = (
            f"use speed_scale <= {beta} (the largest this configuration accepts) or a "
            "smaller budget"
            if beta > 0
            else "no speed_scale > 0 is safe: the base schedule itself is too fine for "
            "float64; use a smaller budget"
        )
        return (
            f"speed_scale={self.speed_scale} is too large for {where}: some action sequence "
            f"in [-1, 1] would stop σ decreasing (or reach σ = 0) at step {k} before the last "
            f"step; {fix}"
        )

    def sigma_of(self, u: torch.Tensor) -> torch.Tensor:
        """σ_base(u) (float64), for clock positions u ∈ [0, u*]."""
        if self.base == "edm":
            return (self._hi + u * (self._lo - self._hi)) ** self.rho
        return self.sigma_max * (1 - u)

    def actions_for(self, sigmas) -> torch.Tensor:
        """The inverse of the clock: the K actions whose schedule is ``sigmas`` (K+1 float
        σ from σ_max down to 0; the free σ_1..σ_{K−1} must lie on the base curve's range), with
        the last (ignored) action 0. Raises ``ValueError`` if ``sigmas`` does not start at
        σ_max, is not descending, or needs an action outside [−1, 1] at this speed scale
        (then a larger ``speed_scale`` may express it).

        u_k = σ_base⁻¹(σ_k), f_k = (u_{k+1} − u_k)/(u* − u_k) and
        a_k = (logit f_k − logit f_k^base)/β: :func:`schedule_from_actions` of the result
        returns ``sigmas`` to round-off."""
        s = schedules.validate(torch.as_tensor(sigmas, dtype=torch.float64)).cpu()
        k = self.budget
        if s.numel() != k + 1:
            raise ValueError(f"sigmas must hold K+1 = {k + 1} values, got {s.numel()}")
        if not math.isclose(float(s[0]), self.sigma_max, rel_tol=1e-12):
            raise ValueError(
                f"sigmas must start at sigma_max = {self.sigma_max}, got {float(s[0])}"
            )
        free = s[:-1]
        if self.base == "edm":
            u = (free ** (1.0 / self.rho) - self._hi) / (self._lo - self._hi)
        else:
            u = 1.0 - free / self.sigma_max
        u[0] = 0.0
        f = (u[1:] - u[:-1]) / (self.u_star - u[:-1])
        a = (torch.logit(f) - self.logit_f_base.cpu()) / self.speed_scale
        worst = float(a.abs().max()) if a.numel() else 0.0
        if not worst <= 1.0 + 1e-9:
            raise ValueError(
                f"the schedule needs clock actions up to |a| = {worst:.4g} at speed_scale "
                f"{self.speed_scale}; actions live in [-1, 1] (a larger speed_scale widens them)"
            )
        return torch.cat([a.clamp(-1.0, 1.0), torch.zeros(1, dtype=torch.float64)])

    def start(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Initial ``(u, sigma, on_base)`` for a batch: u = 0, σ = σ_max, on the base path."""
        u = torch.zeros(batch, dtype=torch.float64, device=self.device)
        sigma = self.sigma_base[:1].expand(batch).clone()
        return u, sigma, torch.ones(batch, dtype=torch.bool, device=self.device)

    def advance(
        self,
        k: int,
        u: torch.Tensor,
        on_base: torch.Tensor,
        action: torch.Tensor,
        any_zero: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Clock step k: ``(u_{k+1}, σ_{k+1}, on_base_{k+1})`` from ``u_k [B]`` and ``a_k [B]``.

        ``any_zero``: whether some a_k is exactly 0, if the caller knows it (None: tested here
        on the host; on a device the selects below run, the same values without a sync).
        """
        if k == self.budget - 1:
            # Forced last step: land on σ = 0 whatever the action.
            return torch.full_like(u, self.u_star), torch.zeros_like(u), on_base
        a = action.to(torch.float64)
        if any_zero is False and on_host(a):
            return self._advance_host(k, u, a)
        s = torch.sigmoid(self._logit_f[k] + self.speed_scale * a)
        if any_zero is False:  # no a_k = 0: f_k = s and no env stays on the base path
            u_next = u + (self.u_star - u) * s  # the same ops as below, without the selects
            return u_next, self.sigma_of(u_next), torch.zeros_like(a, dtype=torch.bool)
        zero = a == 0
        if any_zero is None and on_host(zero) and not bool(zero.any()):  # the same, found
            u_next = u + (self.u_star - u) * s  # on the host (a device selects: no sync)
            return u_next, self.sigma_of(u_next), zero
        # f_k = sigmoid(logit f_k^base + β a_k), exactly f_k^base at a_k = 0.
        f = torch.where(zero, self._f[k], s)
        # u_{k+1} = u_k + (u* − u_k) f_k.
        u_next = u + (self.u_star - u) * f
        on_base = on_base & zero
        u_next = torch.where(on_base, self._u[k + 1], u_next)
        sigma_next = torch.where(on_base, self._sigma[k + 1], self.sigma_of(u_next))
        return u_next, sigma_next, on_base

    def _advance_host(
        self, k: int, u: torch.Tensor, a: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`advance` of a CPU batch with no a_k = 0: the same float64 operations in the
        same order, the arithmetic on numpy views (a few µs less per op than tensor dispatch
        on [B]) and sigmoid and pow still torch's (its vectorised versions round differently
        from numpy's), so the result is bit for bit the tensor path's."""
        z = a.numpy() * self.speed_scale
        z += self._logit_f[k]  # logit f_k^base + β a_k
        s = torch.from_numpy(z).sigmoid_().numpy()  # f_k, in place (the same kernel)
        u_np = u.numpy()
        u_next = self.u_star - u_np
        u_next *= s
        u_next += u_np  # u_{k+1} = u_k + (u* − u_k) f_k
        if self.base == "edm":  # σ_base(u) = (σ_max^(1/ρ) + u (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ
            root = u_next * (self._lo - self._hi)
            root += self._hi
            sigma_next = torch.from_numpy(root).pow_(self.rho)
        else:  # σ_base(u) = T (1 − u)
            sigma_next = torch.from_numpy(1 - u_next)
            sigma_next *= self.sigma_max
        return torch.from_numpy(u_next), sigma_next, self._off_base(len(u_next))

    def _off_base(self, batch: int) -> torch.Tensor:
        """A shared all-False ``on_base`` of ``batch`` CPU envs (never written in place)."""
        off = self._off_base_cache
        if off is None or len(off) != batch:
            off = self._off_base_cache = torch.zeros(batch, dtype=torch.bool)
        return off


def schedule_from_actions(
    actions,
    budget: int | None = None,
    *,
    base: str = "edm",
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    speed_scale: float = 3.0,
) -> torch.Tensor:
    """The σ schedule(s) that an action sequence produces on the clock (see :class:`Clock`).

    :param actions: ``[K]`` (one sequence) or ``[B, K]`` actions in [−1, 1]; the last action
        of each sequence is ignored (the last step is forced to σ = 0).
    :param budget: K; defaults to the actions' last dimension (must match it if given).
    :returns: float64 ``[K+1]`` (or ``[B, K+1]``) descending σ ending in 0, usable by
        :func:`diffusion_gym.steps.sample` (``sigmas=``) and exportable with
        :func:`diffusion_gym.schedules.save_schedule`.
    """
    a = torch.as_tensor(np.asarray(actions) if not isinstance(actions, torch.Tensor) else actions)
    single = a.ndim == 1
    if a.ndim not in (1, 2) or a.shape[-1] < 1:
        raise ValueError(f"actions must have shape [K] or [B, K], got {tuple(a.shape)}")
    if not (a.is_floating_point() or _is_integer_dtype(a.dtype)):  # bool, complex
        raise TypeError(f"actions must be real numbers, got dtype {a.dtype}")
    if not a.is_floating_point():
        a = a.to(torch.float64)
    if budget is not None and budget != a.shape[-1]:
        raise ValueError(f"actions have {a.shape[-1]} steps but budget={budget}")
    check_actions(a, "actions")
    clock = Clock(a.shape[-1], base, sigma_min, sigma_max, rho, speed_scale, device=a.device)
    a = a.reshape(-1, a.shape[-1])
    u, sigma, on_base = clock.start(a.shape[0])
    out = [sigma]
    for k in range(clock.budget):
        u, sigma, on_base = clock.advance(k, u, on_base, a[:, k])
        out.append(sigma)
    sig = torch.stack(out, 1)  # strictly decreasing: Clock rejects a β that could break it
    return sig[0] if single else sig


def max_speed_scale(
    budget: int,
    base: str = "edm",
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
) -> float:
    """The largest ``speed_scale`` (β) a Clock of this budget and base accepts: every action
    sequence in [−1, 1]^K then gives 1e−250 < σ_{k+1} < σ_k in float64 before the last step
    (see :meth:`Clock.max_safe_speed_scale`; rounded down to 4 significant digits, ``inf`` for
    K = 1). ``ValueError`` if not even the base schedule qualifies."""
    return Clock(budget, base, sigma_min, sigma_max, rho, _TINY_BETA).max_safe_speed_scale()


def check_actions(a: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` unless every action is finite and in [−1, 1]."""
    if bool(((a >= -1) & (a <= 1)).all()):  # False for NaN too: one reduction when valid
        return
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"{name} must be finite (got NaN or inf)")
    lo, hi = float(a.min()), float(a.max())
    raise ValueError(f"{name} must lie in [-1, 1] (the action space), got [{lo}, {hi}]")
