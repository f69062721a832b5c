"""The continuous clock-speed environment: where the K steps of a fixed budget land.

ART / ART-RL (arXiv 2601.18681) reparameterises the sampler's time by a clock whose speed an
agent sets at every step, so a fixed number of solver steps is spent where the
discretisation error is largest. :class:`ClockVectorEnv` holds a batch of trajectories as
tensors (one batched denoiser call per solver stage, per-sample σ since every sample has its
own schedule) on the shared :class:`~diffusion_gym.envs.base.BatchedSamplerEnv`;
:class:`ClockEnv` is the single-env view (``gym.make``, ``check_env``, RL Zoo). The clock and
the parameters live in :mod:`.clock_spec`, the reference bank in :mod:`.bank`, the
observation's layout and writers in :mod:`.clock_obs`.

Why this file is over 500 lines: one class, whose docstring is the env's specification
(~100 lines) and whose hot path (bank draws, transition, the step's outputs) is kept in one
place so the throughput benchmark's in-run overhead can be read against one listing (the
observation writers it calls are :class:`.ClockObservation`'s).

One hot path per piece of the step, with three host copies kept (issue 16, item 4): on CPU
(1) the ``obs_mode="state"`` observation is written from numpy columns by
:meth:`.ClockObservation.host` (clock_obs.py) besides the tensor writer
:meth:`.ClockObservation.write`,
(2) the bank rows drawn ahead are gathered with ``np.take`` besides ``index_select``
(:meth:`ClockVectorEnv._bank_entries`), (3) a clock step with no zero action runs on numpy
views (``Clock._advance_host`` in clock_spec.py) besides the tensor update; each pair is
bit-identical (tested). The throughput benchmark showed they are needed to hold Clock-v0's
in-run overhead at 4,096 envs, 1 thread, within 1 point of before: with (1) and (2) only it
was +0.6 to +1.4 points in the benchmark's A/B, with none +0.9 to +1.1 in an interleaved
CPU-time A/B, with all three ≈ +0. The fourth copy (``observe_into``) is gone.
docs/clock_env.md has the commands and figures. Issue 19 (multistep solvers, whose raw
step is one NFE) added (4): the terminal error of 2-D float64 samples on numpy views in
:meth:`ClockVectorEnv._reward` (tested against torch's ``pow(2).mean(1)`` in
tests/test_clock_step_paths.py); docs/benchmarks.md has that A/B.

On a device (issue 22, item 2) a step makes one host sync: its value checks are deferred
flags (:mod:`diffusion_gym.deferred`) copied to the host with the observation, reward, σ's
and, on the last step, schedule, x_K and the next episodes' first observations, in one
packed copy (:meth:`ClockVectorEnv._step_to_host`). tests/test_host_syncs.py runs that code
on CPU (``diffusion_gym.hostpaths.ENABLED = False``), counts the syncs and compares it with
the host paths bit for bit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from .. import steps
from ..deferred import DeferredChecks
from ..denoisers.base import NULL_LABEL, Denoiser
from ..hostpaths import on_host
from ..noise import draw_uniform, draw_uniform_int
from .bank import ReferenceBank
from .base import BatchedSamplerEnv, SingleEnvView, to_host
from .clock_obs import ClockObservation
from .clock_spec import (
    BASES,
    OBS_MODES,
    REWARDS,
    Clock,
    ClockSpec,
    check_actions,
    max_speed_scale,
    schedule_from_actions,
)
from .common import episode_keys
from .rewards import schedule_errors, shape_terminal_reward

__all__ = [
    "Clock",
    "ClockSpec",
    "ClockVectorEnv",
    "ClockEnv",
    "ClockRollout",
    "ReferenceBank",
    "schedule_from_actions",
    "max_speed_scale",
    "BASES",
    "REWARDS",
    "OBS_MODES",
]

_HOST_TAKE_DTYPES = (torch.float64, torch.float32, torch.int64)  # gathered with np.take


@dataclass(frozen=True)
class ClockRollout:
    """One batch of Clock episodes run by :meth:`ClockVectorEnv.rollout` (B = num_envs)."""

    schedule: torch.Tensor
    """``[B, K+1]`` float64 realised σ schedules (ending in 0)."""
    x0: torch.Tensor
    """``[B, *shape]`` the final samples x_K."""
    x_ref: torch.Tensor
    """``[B, *shape]`` the bank's reference solutions of the same x_T."""
    x_T: torch.Tensor
    """``[B, *shape]`` the start states (bank rows)."""
    class_labels: torch.Tensor | None
    """``[B]`` long labels (−1: unconditional call) or None."""
    bank_index: torch.Tensor
    """``[B]`` long bank entries."""
    actions: torch.Tensor
    """``[K, B]`` float64 actions as validated."""
    rewards: torch.Tensor
    """``[K, B]`` float64 rewards."""
    observations: torch.Tensor
    """``[K + 1, B, obs_dim]`` float32 observations before every step, then the last."""


class ClockVectorEnv(BatchedSamplerEnv):
    """Clock (continuous): choose the clock speed of each of K solver steps.

    ## Description

    A batch of ``num_envs`` probability-flow ODE solves of a frozen denoiser, each with its
    own schedule. Time is a warped clock u ∈ [0, u*) over a base σ curve (``base``):
    ``"edm"`` σ_base(u) = (σ_max^(1/ρ) + u (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, continued past
    u = 1 to σ = 0 at u* = σ_max^(1/ρ)/(σ_max^(1/ρ) − σ_min^(1/ρ)), base positions
    u_k = k/(K−1) (= ``karras(K)``); ``"linear"`` (ART) σ_base(u) = T(1 − u), u* = 1, base
    positions u_k = k/K. Every step the agent sets the clock speed: the fraction of the
    remaining clock covered, f_k = sigmoid(logit(f_k^base) + β a_k),
    u_{k+1} = u_k + (u* − u_k) f_k, f_k^base = (u^base_{k+1} − u^base_k)/(u* − u^base_k),
    β = ``speed_scale``. a = 0 gives f = f^base exactly, so all-zero actions reproduce the
    base schedule bit for bit. The last step ignores its action and lands on σ = 0, so every
    action sequence gives a strictly decreasing schedule ending at 0 in exactly K steps (NFE
    K for Euler and the multistep solvers, 2K − 1 for Heun: ``steps.nfe_of(K, solver)``; one
    batched denoiser call per solver stage, via :func:`diffusion_gym.steps.step` with
    per-sample σ and σ_next). A multistep solver's history (past D, their σ) is a
    :class:`~diffusion_gym.solvers.SolverState` of the batch, started empty at every reset
    (autoreset included); the first steps warm up at lower order, the last step to σ = 0 is
    the denoise (see :mod:`diffusion_gym.solvers`).

    ## Action Space

    ``Box(-1, 1, (1,), float32)`` per env: the clock speed a_k (0 = the base schedule's speed,
    > 0 faster, < 0 slower). Outside [−1, 1], NaN, or a wrong-shaped batch: ``ValueError``.

    ## Observation Space

    ``Box(-inf, inf, (3 + n_x + H + C,), float32)``:

    | index | observation |
    |---|---|
    | 0 | log σ_k (log 1e-6 at the terminal state σ = 0) |
    | 1 | k / K |
    | 2 | remaining clock (u* − u_k)/u* |
    | 3 .. | x features: ``"state"`` x_k / sqrt(σ_k² + σ_data²) (n_x = dim); ``"features"`` (3) |
    | next H | ``obs_history=True``: the solver state the next step reads (H = 0 otherwise) |
    | last C | one-hot class (conditional denoisers only; all zeros for label −1) |

    ``"time"``: no x features (n_x = 0), so a policy is open loop (its mean actions are one
    schedule). ``"features"`` (for image-scale x) = RMS and mean of the scaled x, and the RMS of the
    previous step's D(x; σ)/σ_data (0 at reset).

    ``obs_history=True`` (multistep solvers; H = 0 for Euler/Heun) makes the observation
    Markov for the solver: for each of the ``solver.history_slots`` slots of the solver state
    (newest first: the past model outputs, D/σ_data, or d = (x − D)/σ for iPNDM; then, for
    UniPC, x_last/sqrt(σ² + σ_data²), the corrector's start) the columns [present (0/1),
    log σ of the slot, values] with values the n_x scaled entries (``"state"``) or their RMS
    (``"features"``); all 0 while the slot is empty (warm start). H = slots · (2 + n_x).

    ## Rewards

    - ``"terminal_error"`` (default): −‖x_K − x_ref‖²/dim at the last step, 0 before; x_ref
      solves the same PF-ODE (same x_T, class, guidance) with ``reference_steps`` Heun steps
      on karras(ρ = 7) from σ_max, Richardson-extrapolated with the ``reference_steps // 2``
      solve (:func:`~diffusion_gym.steps.reference_solve`; on gmm-ring8 the default is 5.9e-6
      RMSE from the converged solution, the plain 128-step solve 2.2e-4).
    - ``"local_error"``: ART's Euler local-error surrogate, every step r_k = −|Q_k| θ_k² Δt in
      the linear clock's units: Δt = σ_max/K (one uniform step of the linear clock, in σ),
      θ_k = (σ_k − σ_{k+1})/Δt (realised clock speed), |Q_k| = ½ Δt · RMS(x''_k), x'' = d²x/dσ²
      estimated without extra NFE: at k = 0 from the bank (finite difference of
      dx/dσ = (x − D)/σ over the reference's first step), at k ≥ 1 by the backward difference
      (d_k − d_{k−1})/(σ_k − σ_{k−1}) of dx/dσ along the trajectory. So r_k = −½ RMS(x'') Δσ_k².
    - ``"log_terminal_error"``: −log(‖x_K − x_ref‖²/dim + 1e-12) at the last step (scale-free).
    - a callable ``reward(transition) -> [B]`` on the batched transition dict with keys
      ``x, x_next, denoised, sigma, sigma_next, step, terminal, x_ref, x_T, class_labels``.

    For plain learners (:mod:`.rewards`): ``reward_baseline="base"`` subtracts the base
    schedule's terminal reward on the same x_T (scored once per bank entry; a = 0 earns 0),
    ``reward_scale`` divides the raw error reward (``"base"``: by the base schedule's mean
    error over the bank).

    ## Starting State

    The first reset builds a bank of ``bank_size`` (x_T, class, x_ref) entries on ``device``
    (x_T = prior_std · draw 0 of entry j's stream; build time in ``bank_build_seconds``).
    Each episode of env i draws its bank entry with ``draw_uniform_int`` from the keys
    ``derive_keys(seed + i, salt=episode_index)``, so env i's episodes depend only on
    (seed, i). σ_0 = σ_max, u_0 = 0.

    ## Episode End

    Termination after exactly K steps (σ_K = 0); truncation only if ``max_episode_steps``
    < K. Autoreset is ``SAME_STEP`` by default (``autoreset_mode``): the returned observation
    is the next episode's first, and ``info["final_obs"]``/``info["final_info"]`` hold the
    last observation and the last step's info, with ``"schedule"`` (``[B, K+1]`` σ of each
    sample) and ``"x0"`` (x_K). ``"next_step"``: the K-th step returns them directly and the
    next step (actions ignored, reward 0) starts the new episodes; ``"disabled"``: reset().
    Every step's info has ``"sigma"``, ``"sigma_next"``, ``"step"``.

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``denoiser`` | ``"gmm-ring8"`` | preset name or a Denoiser (+ ``data=``, ``prior_std=``) |
    | ``budget`` | 3 | K solver steps (>= 1); NFE K (Euler, multistep) or 2K−1 (Heun) |
    | ``solver`` | ``"heun"`` | ``steps.SOLVERS``: euler, heun, dpmpp-2m/3m, unipc-2/3, ipndm |
    | ``lower_order_final`` | True | multistep solvers: lower the order of the last steps |
    | ``obs_history`` | False | append the solver state to the observation (above) |
    | ``bank`` | None | another Clock env's ``ReferenceBank`` to share (below) |
    | ``base`` | ``"edm"`` | base clock: ``"edm"`` (ρ-warped) or ``"linear"`` (σ = T(1 − u)) |
    | ``rho`` | 7.0 | ρ of the EDM base |
    | ``speed_scale`` | 3.0 | β: f = sigmoid(logit f^base + β a) |
    | ``obs_mode`` | ``"state"`` | ``"state"``, ``"features"`` or ``"time"`` |
    | ``reward`` | ``"terminal_error"`` | ``"terminal_error"``, ``"log_terminal_error"``, |
    | | | ``"local_error"`` or a callable |
    | ``reward_baseline`` | None | ``"base"``: minus the base schedule's reward on the same x_T |
    | ``reward_scale`` | 1.0 | divisor of the raw error reward, or ``"base"`` (base mean error) |
    | ``reference_steps`` | 128 | Heun steps of the reference solve x_ref |
    | ``reference_extrapolate`` | True | Richardson-extrapolate x_ref with the half-step solve |
    | ``bank_size`` | 4096 | bank entries (x_T, c, x_ref), built at the first reset |
    | ``bank_seed`` | 0 | seed of the bank's x_T and labels |
    | ``class_labels`` | None | None (data's class histogram), an int, or a list to draw from |
    | ``guidance`` | None | CFG weight w (None = plain conditional call) |
    | ``device`` | ``"cpu"`` | torch device of every tensor |
    | ``num_envs`` | 1 | batch size (vector env only) |
    | ``max_episode_steps`` | None | truncate episodes after this many steps (< K) |
    | ``render_mode`` | None | ``"rgb_array"`` draws the batch |
    | ``autoreset_mode`` | ``"same_step"`` | or ``"next_step"``, ``"disabled"`` |

    ``bank=other.bank`` (with ``denoiser=other.preset``) shares a bank between envs that
    differ in anything but the bank's own parameters, e.g. the solver: x_ref is the ODE's
    solution, not a solver's, so one bank serves every solver. It is checked to define the
    same entries (``ReferenceBank.differences``; else ``ValueError``) and built once.

    ## Version History

    - v0: initial version.
    """

    def __init__(
        self,
        denoiser: str | Denoiser = "gmm-ring8",
        budget: int = 3,
        solver: str = "heun",
        base: str = "edm",
        rho: float = 7.0,
        speed_scale: float = 3.0,
        obs_mode: str = "state",
        reward: str | Callable[[dict], torch.Tensor] = "terminal_error",
        reference_steps: int = 128,
        reference_extrapolate: bool = True,
        bank_size: int = 4096,
        bank_seed: int = 0,
        class_labels: int | Sequence[int] | None = None,
        guidance: float | None = None,
        device: str | torch.device = "cpu",
        num_envs: int = 1,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        data: Any = None,
        prior_std: float | None = None,
        obs_history: bool = False,
        lower_order_final: bool = True,
        autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
        reward_baseline: str | None = None,
        reward_scale: float | str = 1.0,
        bank: ReferenceBank | None = None,
    ):
        spec = ClockSpec(
            budget=budget, solver=solver, base=base, rho=rho, speed_scale=speed_scale,
            obs_mode=obs_mode, reward=reward, reference_steps=reference_steps,
            reference_extrapolate=reference_extrapolate, bank_size=bank_size,
            bank_seed=bank_seed, class_labels=class_labels, guidance=guidance,
            max_episode_steps=max_episode_steps, prior_std=prior_std, obs_history=obs_history,
            lower_order_final=lower_order_final, reward_baseline=reward_baseline,
            reward_scale=reward_scale,
        )  # fmt: skip
        preset = self._init_batch(num_envs, denoiser, data, device, render_mode, autoreset_mode)
        den = preset.denoiser
        if spec.guidance is not None and den.num_classes == 0:
            raise ValueError("guidance needs a class-conditional denoiser (num_classes > 0)")
        self._spec = spec
        self._prior_std = float(spec.prior_std if spec.prior_std is not None else preset.prior_std)
        self._clock = spec.clock(den.sigma_min, den.sigma_max, self._device)
        self._K, self._solver, self._obs_mode = spec.budget, spec.solver, spec.obs_mode
        self._reward_mode, self._guidance = spec.reward, spec.guidance
        self._label_choices_t = self._check_label_choices(spec.class_labels)
        choices = self._label_choices_t  # the data's class histogram is read only if drawn from
        hist = choices is not None and choices.numel() == 0
        own = ReferenceBank(
            den,
            spec.bank_size,
            prior_std=self._prior_std,
            seed=spec.bank_seed,
            label_choices=choices,
            class_weights=getattr(preset.data, "class_weights", None) if hist else None,
            reference_steps=spec.reference_steps,
            extrapolate=spec.reference_extrapolate,
            guidance=spec.guidance,
            device=self._device,
        )
        self._bank = own if bank is None else self._check_shared_bank(bank, own)
        # Gather sources of an episode's bank rows (x_T, x_ref, labels, first observation).
        self._bank_table: dict[str, torch.Tensor | None] | None = None
        self._bank_cdf: np.ndarray | None = None  # None: uniform draws (set_bank_probs)
        self._bank_cdf_t: torch.Tensor | None = None  # the same CDF on the device
        self._bank_inv_p: torch.Tensor | None = None  # 1 / (bank_size · p_j)
        self._bank_weight: torch.Tensor | None = None  # the current episodes' 1 / (N p)
        self._k = -1  # step index; -1 = never reset
        self._host = on_host(self._device)  # CPU: the host (numpy) paths (hostpaths.py)
        self._x = self._x_T = self._x_ref = self._labels = self._idx = None
        self._start: tuple | None = None  # shared start state (u, σ, on_base, 0·x)
        self._ahead: tuple | None = None  # bank entries drawn ahead (see _bank_entries)
        self._obs32_start: torch.Tensor | None = None
        self._obs_rows0: torch.Tensor | None = None  # the episode's first observations
        self._obs64: torch.Tensor | None = None  # float64 observation buffer
        self._any_zero: tuple = (None, None)  # (actions, whether one is 0) from _to_actions
        self._real_dtypes: set = set()  # numpy action dtypes seen to be real numbers
        self._ode = steps.get_solver(spec.solver)
        self._solver_state: steps.SolverState | None = None  # the batch's multistep history
        self._layout = ClockObservation(  # the observation's columns and writers
            budget=spec.budget, mode=spec.obs_mode, shape=den.shape, sigma_data=den.sigma_data,
            u_star=self._clock.u_star, num_classes=den.num_classes if choices is not None else 0,
            history_slots=self._ode.history_slots if spec.obs_history else 0,
        )  # fmt: skip
        self._base_mse: torch.Tensor | None = None  # the episodes' base-schedule errors
        self._scale = 1.0 if isinstance(spec.reward_scale, str) else float(spec.reward_scale)
        self.obs_dim = self._layout.size
        self._n_x_dim2 = den.dim == 2  # 2-D samples: the terminal error's host path
        self._check_memory()  # before the batched spaces: their bounds are [B, obs_dim] too
        self._true_b = np.ones(self.num_envs, dtype=np.bool_)  # copied for masks (never handed out)
        self.single_action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (self.obs_dim,), np.float32)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)

    def memory_estimate(self) -> dict[str, int]:
        """A lower estimate of the bytes this configuration holds, by part: ``"batch"``
        (per env: x and the solver's temporaries, ~10 samples; the bank rows drawn ahead;
        the float64 observation state; clock and seed scalars), ``"bank"`` (bank_size
        entries of x_T, x_ref, x''_0 and first observations, plus a reference-solve chunk),
        ``"denoiser call"`` (the workspace of the largest batched call), ``"host arrays"``
        (a step's numpy outputs and ``final_obs`` rows). Checked against the available
        memory at construction (:mod:`diffusion_gym.memory`)."""
        b, den, d = self.num_envs, self.denoiser, self.obs_dim
        s = den.dim * den.itemsize  # one sample
        n_ahead = max(1, min(64, 2**15 // b))  # see _bank_entries
        per_env = 10 * s + n_ahead * (2 * s + 4 * d + 16) + 8 * d + 8 * (12 + self._K)
        n_bank, chunk = self._spec.bank_size, min(1024, self._spec.bank_size)
        bank = n_bank * (3 * s + 12 * d + 8) + chunk * 10 * s
        calls = 1 if self._guidance is None else 2  # a guided call is one batch of 2B
        return {
            "batch": b * per_env,
            "bank": bank,
            "denoiser call": den.workspace_bytes(calls * max(b, chunk)),
            # obs ×2, reward/σ/σ_next, final_obs rows; the batched spaces' bounds
            "host arrays": b * (8 * d + 48 + 112) + b * (10 * d + 10),
        }

    # -- public, read-only ------------------------------------------------------------------------
    @property
    def budget(self) -> int:
        """K, the number of solver steps of an episode."""
        return self._K

    @property
    def clock_spec(self) -> ClockSpec:
        """The frozen parameters of this env (everything but denoiser, device, num_envs)."""
        return self._spec

    @property
    def clock(self) -> Clock:
        """The warped clock (base schedule, speed action)."""
        return self._clock

    @property
    def solver(self) -> str:
        """The solver's name (one of ``steps.SOLVERS``)."""
        return self._solver

    @property
    def solver_state(self) -> steps.SolverState | None:
        """The multistep history of the current episodes (None for Euler/Heun or before a
        reset); read it, never modify it (each step replaces its tensors)."""
        return self._solver_state

    @property
    def guidance(self) -> float | None:
        """The CFG weight w of every call (None: the plain conditional call)."""
        return self._guidance

    @property
    def obs_mode(self) -> str:
        return self._obs_mode

    @property
    def x(self) -> torch.Tensor | None:
        """``[B, *shape]`` the current states x_k (None before the first reset)."""
        return self._x

    @property
    def x_T(self) -> torch.Tensor | None:  # noqa: N802 - the paper's name
        """``[B, *shape]`` the current episodes' start states (their bank rows' x_T)."""
        return self._x_T

    @property
    def x_ref(self) -> torch.Tensor | None:
        """``[B, *shape]`` the current episodes' reference solutions (bank rows' x_ref)."""
        return self._x_ref

    @property
    def class_labels(self) -> torch.Tensor | None:
        """``[B]`` long labels of the current episodes (−1: unconditional call), or None."""
        return self._labels

    @property
    def bank_index(self) -> torch.Tensor | None:
        """``[B]`` long: the bank entry of each current episode (None before a reset). Read
        it before the step that ends the episode: the autoreset draws the next ones."""
        return self._idx

    @property
    def bank(self) -> ReferenceBank:
        """The reference bank (built at the first reset, or by ``bank.build()``)."""
        return self._bank

    @property
    def bank_build_seconds(self) -> float | None:
        """Wall time of the bank build (None before it)."""
        return self._bank.build_seconds

    @property
    def bank_weight(self) -> torch.Tensor | None:
        """The current episodes' importance weights 1 / (bank_size · p_j) ``[num_envs]``
        float64 on the env's device (read them before the step that ends the episode, as
        the autoreset draws the next ones), or None with uniform draws."""
        return self._bank_weight

    @property
    def base_schedule(self) -> torch.Tensor:
        """The schedule of all-zero actions (``karras(K)`` or ``linear(K)``), float64 [K+1]."""
        return self._clock.sigma_base

    @property
    def schedule(self) -> torch.Tensor:
        """``[B, K+1]`` float64 (a new tensor): σ_0 .. σ_k of every current trajectory so far,
        then zeros. Assembled from the per-step σ when read (once per episode), instead of a
        column write into a cold [B, K+1] buffer every step and a clone per episode."""
        if self._k < 0:
            raise ResetNeeded("call reset() before reading schedule")
        sig = self._sigma_hist
        pad = [torch.zeros_like(sig[0])] * (self._K + 1 - len(sig))
        return torch.stack(sig + pad, 1)

    def schedule_from_actions(self, actions) -> torch.Tensor:
        """:func:`schedule_from_actions` with this env's clock (``[K]`` or ``[B, K]``)."""
        c = self._clock
        return schedule_from_actions(
            actions, c.budget, base=c.base, sigma_min=c.sigma_min, sigma_max=c.sigma_max,
            rho=c.rho, speed_scale=c.speed_scale,
        )  # fmt: skip

    def actions_from_schedule(self, sigmas) -> torch.Tensor:
        """The K clock actions (float64, the last 0) that realise ``sigmas`` on this env's
        clock: the inverse of :meth:`schedule_from_actions` (:meth:`Clock.actions_for`)."""
        return self._clock.actions_for(sigmas)

    @torch.no_grad()
    def rollout(
        self, policy: Callable[[torch.Tensor, int], Any], *, seed: int | Sequence[int] | None = None
    ) -> ClockRollout:
        """One episode of every env under ``policy``, by the same step code as :meth:`step`,
        without touching the env's own episodes (it builds the bank if needed).

        :param policy: ``policy(obs [B, obs_dim] float32 tensor, k) -> actions`` (``[B, 1]``
            or ``[B]`` in [−1, 1]; numpy or tensor), called at k = 0 .. K−1.
        :param seed: like ``reset(seed=seed)``: env i draws its bank entry from the stream of
            base seed ``seed + i``, episode 0 (None: a fresh random base).
        :returns: a :class:`ClockRollout`, equal bit for bit to the first episode after
            ``reset(seed=seed)`` stepped with the same actions.
        """
        if self._bank_table is None:
            self._build_bank_table()
        run = copy.copy(self)  # shares the bank, clock and spaces (read only), not the episodes
        run._seeds, run._start, run._ahead = None, None, None
        run._seed_episodes(seed)
        run._begin_episodes()
        b = run.num_envs
        x_T, x_ref, labels, idx = run._x_T, run._x_ref, run._labels, run._idx  # noqa: N806
        obs, acts, rewards = [run._observe()], [], []
        for k in range(run._K):
            a = policy(obs[-1], k)
            a = a if isinstance(a, torch.Tensor) else np.asarray(a)
            checks = DeferredChecks(inputs=False)
            a = run._to_actions(a.reshape(b, 1), b, checks)
            tr = run._transition(a, checks)
            checks.resolve()  # the policy reads every observation: one sync per step anyway
            obs.append(run._observe())
            acts.append(a)
            rewards.append(tr["reward"])
        observations, rewards = torch.stack(obs), torch.stack(rewards)
        self._check_outputs(observations, rewards)
        return ClockRollout(
            schedule=run.schedule,
            x0=run._x,
            x_ref=x_ref,
            x_T=x_T,
            class_labels=labels,
            bank_index=idx,
            actions=torch.stack(acts),
            rewards=rewards,
            observations=observations,
        )

    # -- gymnasium API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict | None = None):
        """Start a new episode in every env; ``seed`` (int or one per env) restarts the streams.
        ``options`` may hold gymnasium's ``"reset_mask"`` (every env: episodes end together)."""
        if self._check_reset_options(options):
            raise ValueError(f"unknown reset option(s) {sorted(options)}; valid: ['reset_mask']")
        self._seed_episodes(seed)
        self._begin_episodes()
        return self._observe().cpu().numpy(), {}  # a new float32 array

    def step(self, actions):
        """Advance every env one solver step with its clock speed (autoreset: see
        ``autoreset_mode``; ``SAME_STEP`` by default)."""
        if self._next_step_reset():  # NEXT_STEP: this step starts the next episodes
            obs, info = self.reset()
            zero = np.zeros(self.num_envs, dtype=np.bool_)
            return obs, np.zeros(self.num_envs), zero, zero.copy(), info
        b = self.num_envs
        checks = DeferredChecks(inputs=False)
        a = self._to_actions(actions, b, checks)
        tr = self._transition(a, checks)
        terminated = tr["terminal"]
        truncated = (not terminated) and self._is_truncated()
        ended = terminated or truncated
        stacked = (tr["reward"], tr["sigma"], tr["sigma_next"])
        if self._host:  # fresh tensors shared with numpy: no copy, no packing
            checks.resolve()
            obs = self._observe().numpy()
            reward, sigma, sigma_next = torch.stack(stacked).numpy()
        else:  # a device: everything the step returns in ONE copy to the host
            host = self._step_to_host(tr, checks, stacked, terminated, ended)
            obs, reward, sigma, sigma_next, schedule, x0, next_obs = host
        # The shared zero reward of a non-terminal step is finite: only obs is checked.
        self._check_outputs(obs, None if tr["reward"] is self._zero_reward else reward)
        mask = self._true_b.copy()  # np.ones(b, bool), one C call
        step = np.empty(b, dtype=np.int64)
        step.fill(tr["step"])
        info = {
            "sigma": sigma,
            "sigma_next": sigma_next,
            "step": step,
            "_sigma": mask,
            "_sigma_next": mask,
            "_step": mask,
        }
        if ended:
            if terminated:
                if self._host:
                    schedule, x0 = self.schedule.numpy(), tr["x_next"].numpy()
                info["schedule"], info["x0"] = schedule, x0
                info["_schedule"] = info["_x0"] = mask
            if not self._autoreset:  # the episode needs a reset (or NEXT_STEP's reset step)
                self._k = self._K
                self._end_episodes()
            else:
                final = self._final_info(obs, info)
                if self._host:
                    self._next_episodes()
                    self._begin_episodes()
                    next_obs = self._observe().numpy()
                obs, info = next_obs, final
        return (
            obs,
            reward,
            self._true_b.copy() if terminated else np.zeros(b, dtype=np.bool_),
            self._true_b.copy() if truncated else np.zeros(b, dtype=np.bool_),
            info,
        )

    def _step_to_host(self, tr, checks: DeferredChecks, stacked, terminated: bool, ended: bool):
        """A device step's outputs in one copy to the host (:func:`~.base.to_host`), the only
        sync of the step: the observation (rounded to float32 on the device), reward, σ_k and
        σ_{k+1}, the step's deferred check flags (resolved here: the same errors as the
        checks made at once), and on the last step the schedule, x_K and, with autoreset,
        the next episodes' first observations (those episodes start before the copy).
        Returns ``(obs, reward, sigma, sigma_next, schedule, x0, next_obs)`` (None where
        not part of this step)."""
        flags = checks.flags()
        # float32 now: the next episodes' start below must not reach the env's obs buffer
        parts = [self._observation64().to(torch.float32), torch.stack(stacked)]
        parts += [] if flags is None else [flags]
        if terminated:
            parts += [self.schedule, tr["x_next"]]
        if ended and self._autoreset:
            self._next_episodes()
            self._begin_episodes()
            parts.append(self._observe())
        host = to_host(parts)
        obs, (reward, sigma, sigma_next) = host[0], host[1]
        if flags is not None:
            checks.raise_failed(host[2].tolist())
        rest = host[2 if flags is None else 3 :]
        schedule, x0 = (rest[0], rest[1]) if terminated else (None, None)
        next_obs = rest[-1] if ended and self._autoreset else None
        return obs, reward, sigma, sigma_next, schedule, x0, next_obs

    def _render_state(self):
        sig = float(self._sigma[0]) if self._sigma.numel() else 0.0
        return self._x, self._labels, f"step {self._k}/{self._K}  σ={sig:.3g}"

    def close_extras(self, **kwargs):
        self._bank_table, self._start, self._ahead = None, None, None

    # -- internals: bank rows, episodes, observation, transition ----------------------------------

    # -- configuration -------------------------------------------------------------------------
    @staticmethod
    def _check_shared_bank(bank, own: ReferenceBank) -> ReferenceBank:
        """``bank`` if it holds the entries this env would build (``own``), else an error."""
        if not isinstance(bank, ReferenceBank):
            raise TypeError(f"bank must be a ReferenceBank or None, got {type(bank).__name__}")
        diff = own.differences(bank)
        if diff:
            raise ValueError(
                f"bank= is another bank than this env's (differs in {', '.join(diff)}); pass "
                "denoiser=other_env.preset and the same bank_size, bank_seed, prior_std, "
                "reference_steps, reference_extrapolate, guidance, class_labels, device"
            )
        return bank

    def _check_label_choices(self, class_labels) -> torch.Tensor | None:
        """None (unconditional), or the labels episodes draw from (empty = data's histogram)."""
        den = self.denoiser
        if den.num_classes == 0:
            if class_labels is not None:
                raise ValueError("class_labels given but the denoiser is unconditional")
            return None
        if class_labels is None:
            return torch.zeros(0, dtype=torch.long)
        labels = torch.as_tensor(class_labels).reshape(-1)
        if labels.numel() == 0 or labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f"class_labels must be None, an int or a list of ints, got {labels}")
        if not bool(((labels >= NULL_LABEL) & (labels < den.num_classes)).all()):
            raise ValueError(f"class_labels must lie in [-1, {den.num_classes}), got {labels}")
        return labels.long()

    # -- the reference bank --------------------------------------------------------------------
    @torch.no_grad()
    def _build_bank_table(self) -> None:
        """Build the reference bank (unless built) and each entry's first observation."""
        rb = self._bank
        if not rb.built:
            rb.build()
        den, n, dev = self.denoiser, rb.size, self._device
        x_T, labels = rb.x_T, rb.labels  # noqa: N806
        self._bank_table = {"x_T": x_T, "labels": labels, "x_ref": rb.x_ref, "d2": rb.d2}
        if labels is not None:  # one-hot observation part of each entry (−1: all zeros)
            onehot = torch.zeros(n, den.num_classes, dtype=torch.float64, device=dev)
            onehot.scatter_(1, labels.clamp_min(0)[:, None], (labels >= 0).double()[:, None])
            self._bank_table["onehot"] = onehot
        # Every episode starts at σ_max, u = 0: entry j's first observation is fixed, so a
        # reset is one index_select of these rows (float64 state, float32 as returned).
        obs0 = torch.empty(n, self.obs_dim, dtype=torch.float64, device=dev)
        sig0, u0 = self._clock.sigma_base[:1].expand(n), torch.zeros(n, dtype=torch.float64)
        self._layout.write(obs0, 0, sig0, u0.to(dev), x_T, torch.zeros_like(x_T))
        if self._layout.n_hist:  # the solver state is empty at reset
            obs0[:, self._layout.hist_cols].zero_()
        if labels is not None:
            obs0[:, self.obs_dim - den.num_classes :] = onehot
        self._bank_table["obs0_f32"] = obs0 = obs0.to(torch.float32)
        if not bool(torch.isfinite(obs0).all()):  # once per bank: x_T / sqrt(σ² + σ_data²)
            raise ValueError(
                f"the first observations overflow float32: prior_std={self._prior_std} is "
                "too large for the observation"
            )
        spec = self._spec
        if spec.reward_baseline == "base" or spec.reward_scale == "base":
            # the base schedule's error per entry (rewards.py): the per-x_T baseline / scale
            base_mse = schedule_errors(
                den, x_T, rb.x_ref, labels, self.base_schedule, solver=self._solver,
                guidance=self._guidance,
            )  # fmt: skip
            self._bank_table["base_mse"] = base_mse
            if spec.reward_scale == "base":
                self._scale = float(base_mse.mean())
        self._ahead = None  # entries gathered from an older bank

    # -- episodes ------------------------------------------------------------------------------
    def set_bank_probs(self, probs) -> None:
        """Importance-sample the reference bank: from the next episode on, entry j is drawn
        with probability ``probs[j] / sum(probs)`` (``[bank_size]``, finite, >= 0), by the
        inverse CDF of the same per-(seed, env, episode) uniform that uniform draws use, so
        runs stay reproducible. The episode's weight 1 / (bank_size · p_j) is in
        :attr:`bank_weight`: a weighted mean of rewards is an unbiased estimate of the
        uniform-bank mean. ``None`` restores uniform draws (weights None)."""
        if probs is None:
            self._bank_cdf = self._bank_cdf_t = self._bank_inv_p = None
        else:
            p = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs)
            if p.shape != (self._spec.bank_size,):
                raise ValueError(
                    f"probs must have shape ({self._spec.bank_size},) (bank_size), got {p.shape}"
                )
            p = p.astype(np.float64)
            if not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
                raise ValueError("probs must be finite, >= 0 and not all zero")
            p = p / p.sum()
            cdf = np.cumsum(p)
            cdf /= cdf[-1]
            with np.errstate(divide="ignore"):
                inv = 1.0 / (self._spec.bank_size * p)  # inf only for entries never drawn
            self._bank_cdf = cdf
            self._bank_cdf_t = torch.from_numpy(cdf).to(self._device)  # device searchsorted
            self._bank_inv_p = torch.from_numpy(inv).to(self._device)
        self._ahead = None  # entries drawn ahead used the old probabilities

    def _bank_entries(self) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
        """Every env's bank entry for its current episode (``draw_uniform_int`` of its keys)
        and the rows of that entry: ``(idx [B], {"x_T", "x_ref", "labels", "obs0_f32"})``.

        Drawn and gathered for the next M episodes at once (row m: episode counters + m;
        integer hashing, so each row equals the one-episode draw bit for bit; one gather of
        M·B rows while the bank is in cache); used while ``episode`` walks along the rows,
        recomputed when it does not (seeding, manual edits). Rows of different episodes are
        disjoint views, never written in place.
        """
        ahead = self._ahead
        if ahead is not None:
            seeds, serial, entries, m = ahead
            if m < len(entries) and seeds is self._seeds:
                idx_m, episodes_m, rows_m = entries[m]
                if (  # on a device: the host mirror of the counters' moves (no sync)
                    torch.equal(self._episodes, episodes_m)
                    if self._host
                    else self._episode_serial == serial + m
                ):
                    self._ahead = (seeds, serial, entries, m + 1)
                    return idx_m, dict(rows_m)
        n_ahead = max(1, min(64, 2**15 // self.num_envs))  # ~32k rows: stays in cache
        offsets = torch.arange(n_ahead, dtype=torch.int64, device=self._device)[:, None]
        episodes = self._episodes[None, :] + offsets
        keys = episode_keys(self._seeds[None, :], episodes)
        if self._bank_cdf is None:
            idx = draw_uniform_int(keys, 0, self._spec.bank_size)
        elif self._host:  # inverse CDF of the same stream's uniform
            u = draw_uniform(keys, 0).numpy()
            j = np.minimum(
                np.searchsorted(self._bank_cdf, u, side="right"), self._spec.bank_size - 1
            )
            idx = torch.from_numpy(j)
        else:  # the same search on the device (exact comparisons: the same entries)
            u = draw_uniform(keys, 0)
            idx = torch.searchsorted(self._bank_cdf_t, u, right=True)
            idx = idx.clamp_(max=self._spec.bank_size - 1)
        flat, b = idx.reshape(-1), self.num_envs
        rows, cpu = {}, self._host
        flat_np = flat.numpy() if cpu else None
        for key in ("x_T", "x_ref", "labels", "obs0_f32"):
            v = self._bank_table[key]
            if v is not None:  # the same gather; numpy's take is ~2-3x faster on the host
                v = (
                    torch.from_numpy(np.take(v.numpy(), flat_np, axis=0))
                    if cpu and v.dtype in _HOST_TAKE_DTYPES
                    else v.index_select(0, flat)
                )
                v = v.view(-1, b, *v.shape[1:])
            rows[key] = v
        # Row m's views made here at once (unbind: one call per tensor, not M indexings).
        cols = {key: None if v is None else v.unbind(0) for key, v in rows.items()}
        entries = [
            (i_m, e_m, {key: None if c is None else c[m] for key, c in cols.items()})
            for m, (i_m, e_m) in enumerate(zip(idx.unbind(0), episodes.unbind(0), strict=True))
        ]
        self._ahead = (self._seeds, self._episode_serial, entries, 1)
        return entries[0][0], dict(entries[0][2])

    def _begin_episodes(self) -> None:
        """Draw every env's bank entry by its own stream and put the batch at σ_max."""
        if self._bank_table is None:
            self._build_bank_table()
        if self._start is None:  # start state tensors, shared by every episode (never
            # written in place: each step makes new ones)
            u0, sigma0, on_base0 = self._clock.start(self.num_envs)
            self._obs64 = torch.empty(self.num_envs, self.obs_dim, dtype=torch.float64)
            self._obs64 = self._obs64.to(self._device)  # reused by every episode (internal)
            self._obs64_cols = self._layout.columns(self._obs64)  # kept: written every step
            self._start = (u0, sigma0, on_base0, torch.zeros_like(self._bank_table["x_T"][:1]))
            self._zero_reward = torch.zeros(self.num_envs, dtype=torch.float64, device=self._device)
        u0, sigma0, on_base0, zero_x = self._start
        idx, rows = self._bank_entries()
        self._idx = idx
        self._bank_weight = None if self._bank_inv_p is None else self._bank_inv_p[idx]
        if self._spec.reward_baseline is not None:
            self._base_mse = self._bank_table["base_mse"][idx]
        self._x = rows["x_T"]  # gathered copies: the bank stays untouched
        self._x_T = self._x
        self._x_ref, self._labels = rows["x_ref"], rows["labels"]
        self._u, self._sigma, self._on_base = u0, sigma0, on_base0
        self._sigma_hist = [sigma0]  # σ_0 .. σ_k of the episode (see schedule)
        self._prev_denoised = zero_x.expand_as(self._x)
        self._prev_d = None
        self._solver_state = (
            steps.SolverState(self._K, lower_order_final=self._spec.lower_order_final)
            if self._ode.multistep
            else None
        )
        # Float64 observation state of the episode (the one-hot part stays fixed), and the
        # float32 first observation handed out once by observe().
        self._obs32_start = self._obs_rows0 = rows["obs0_f32"]
        self._obs_k = -1  # obs64 is filled when first read in this episode (observation64)
        self._k = 0

    def _observe(self) -> torch.Tensor:
        """``[B, obs_dim]`` float32 (a new tensor): log σ_k, k/K, (u* − u_k)/u*, x features,
        one-hot c."""
        if self._k == 0 and self._obs32_start is not None:  # the reset's rows, handed out once
            obs, self._obs32_start = self._obs32_start, None
            return obs
        lay = self._layout
        if self._host and self._obs_mode == "state" and not lay.n_hist:
            rows0 = self._obs_rows0 if lay.n_cls else None
            return torch.from_numpy(lay.host(self._k, self._sigma, self._u, self._x, rows0))
        return self._observation64().to(torch.float32)

    def _observation64(self) -> torch.Tensor:
        """The float64 observation ``[B, obs_dim]`` of the current state (the env's own
        buffer: read it, do not keep it across steps)."""
        if self._obs_k < 0:  # first read this episode: its one-hot part, copied here rather
            # than at reset since the CPU "state" path never reads obs64 (whole rows, one
            # contiguous copy; the other columns are rewritten just below)
            self._obs64.copy_(self._obs_rows0)
        if self._obs_k != self._k:
            lay = self._layout
            lay.write(
                self._obs64, self._k, self._sigma, self._u, self._x, self._prev_denoised,
                self._obs64_cols,
            )  # fmt: skip
            if lay.n_hist:
                sd = self.denoiser.sigma_data
                lay.write_history(self._obs64, self._ode.history_view(self._solver_state, sd))
            self._obs_k = self._k
        return self._obs64

    def _transition(self, action: torch.Tensor, checks: DeferredChecks) -> dict[str, Any]:
        """One env step of every trajectory; returns the transition (tensors, reward [B]).
        The value checks of the step (x_next finite, a tensor action's range, a reward
        callable's values) are recorded in ``checks``, for the caller to resolve: with its
        one copy to the host per step on a device (:meth:`step`), at once on the host."""
        if torch.is_grad_enabled():  # no graphs; a caller under no_grad skips the switch
            with torch.no_grad():
                return self._transition_nograd(action, checks)
        return self._transition_nograd(action, checks)

    def _transition_nograd(self, action: torch.Tensor, checks: DeferredChecks) -> dict[str, Any]:
        k = self._k
        # Whether some action is 0, known from the host check of these very actions.
        any_zero = self._any_zero[1] if self._any_zero[0] is action else None
        self._any_zero = (None, None)
        u_next, sigma_next, on_base = self._clock.advance(
            k, self._u, self._on_base, action, any_zero
        )
        x_next, denoised = steps.step(
            self.denoiser,
            self._x,
            self._sigma,
            sigma_next,
            class_labels=self._labels,
            guidance=self._guidance,
            solver=self._ode,
            state=self._solver_state,
            final=k == self._K - 1,  # the clock lands every sample on σ = 0 at the last step
            checks=checks,  # inputs=False: the clock's σ and the bank's labels are valid
        )
        tr = {
            "x": self._x, "x_next": x_next, "denoised": denoised, "sigma": self._sigma,
            "sigma_next": sigma_next, "step": k, "terminal": k == self._K - 1,
            "x_ref": self._x_ref, "x_T": self._x_T, "class_labels": self._labels,
        }  # fmt: skip
        tr["reward"] = self._reward(tr, checks)
        self._sigma_hist.append(sigma_next)
        self._x, self._sigma, self._u, self._on_base = x_next, sigma_next, u_next, on_base
        self._prev_denoised = denoised
        self._k = k + 1
        return tr

    def _reward(self, tr: dict[str, Any], checks: DeferredChecks) -> torch.Tensor:
        b = self.num_envs
        if callable(self._reward_mode):
            r = torch.as_tensor(self._reward_mode(tr), dtype=torch.float64, device=self._device)

            def bad():
                raise ValueError(
                    f"the reward callable must return {b} finite values, got {r.shape}"
                )

            if r.shape != (b,):
                bad()
            checks.require(torch.isfinite(r).all(), bad)
            return r
        if self._reward_mode == "local_error":
            return self._local_error(tr)
        if not tr["terminal"]:
            return self._zero_reward  # shared, never written in place
        x_next = tr["x_next"]
        plain = (
            self._reward_mode == "terminal_error" and self._base_mse is None and self._scale == 1.0
        )
        if x_next.dtype == torch.float64 and self._host and self._n_x_dim2:
            # The same float64 IEEE ops as below, on numpy views (no tensor dispatch).
            err = np.subtract(x_next.numpy(), tr["x_ref"].numpy()).reshape(b, 2)
            e0, e1 = err[:, 0], err[:, 1]
            mse = e0 * e0
            mse += e1 * e1
            mse /= 2
            if plain:
                return torch.from_numpy(np.negative(mse, out=mse))
            mse = torch.from_numpy(mse)
        else:
            err = (x_next - tr["x_ref"]).reshape(b, -1).to(torch.float64)
            if err.shape[1] == 2:  # = mean(1) bit for bit (a two-term sum has one order),
                # without the slow reduction over a 2-wide inner dimension
                e0, e1 = err[:, 0], err[:, 1]
                mse = (e0 * e0 + e1 * e1) / 2
            else:
                mse = err.pow(2).mean(1)
        if plain:
            return -mse
        return shape_terminal_reward(  # rewards.py: log, per-x_T baseline, scale
            mse, log=self._reward_mode == "log_terminal_error", base_mse=self._base_mse,
            scale=self._scale,
        )  # fmt: skip

    def _local_error(self, tr: dict[str, Any]) -> torch.Tensor:
        """ART's Euler local-error surrogate r_k = −|Q_k| θ_k² Δt (see the env docstring)."""
        b, sig = self.num_envs, tr["sigma"]
        shape = (-1, *([1] * len(self.denoiser.shape)))
        d_k = (tr["x"] - tr["denoised"]) / sig.reshape(shape).to(tr["x"].dtype)
        if self._prev_d is None:  # k = 0: x'' at σ_max from the bank's reference
            d2 = self._bank_table["d2"][self._idx]
        else:  # backward difference of dx/dσ along this trajectory
            d2 = (d_k - self._prev_d) / (sig - self._prev_sigma).reshape(shape).to(d_k.dtype)
        self._prev_d, self._prev_sigma = d_k, sig
        dt = self._clock.sigma_max / self._K  # Δt: one uniform step of the linear clock, in σ
        theta = (sig - tr["sigma_next"]) / dt  # θ_k: realised clock speed in those units
        q = 0.5 * d2.reshape(b, -1).to(torch.float64).pow(2).mean(1).sqrt() * dt
        return -q.abs() * theta**2 * dt

    def _to_actions(self, actions, batch: int, checks: DeferredChecks) -> torch.Tensor:
        """Validate a batch of actions (``[batch, 1]``) and return them as a float64 ``[batch]``.
        Numpy actions are checked here, on the host; the range of a tensor's is recorded in
        ``checks`` (no sync on a device; resolved with the step's outputs, before any of them
        is returned: the same ``ValueError``)."""
        if self._k < 0:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._k >= self._K:
            raise gym.error.ResetNeeded("the episode is over: call reset() before step()")
        if isinstance(actions, torch.Tensor):
            if actions.dtype == torch.bool or actions.is_complex():
                raise TypeError(f"actions must be real numbers, got dtype {actions.dtype}")
            a = actions.detach().to(self._device, torch.float64)
        else:
            arr = np.asarray(actions)
            if arr.dtype not in self._real_dtypes:  # checked once per dtype
                if not np.issubdtype(arr.dtype, np.number) or arr.dtype.kind in "bc":
                    raise TypeError(f"actions must be real numbers, got dtype {arr.dtype}")
                self._real_dtypes.add(arr.dtype)
            if arr.shape != (batch, 1):
                raise ValueError(f"actions must have shape ({batch}, 1), got {arr.shape}")
            if not (arr.min() >= -1 and arr.max() <= 1):  # host check (NaN fails it too)
                check_actions(torch.as_tensor(arr.astype(np.float64)), "action")
            a = torch.from_numpy(arr[:, 0].astype(np.float64))  # a new array: no aliasing
            # to a device without a stream sync (a pageable source is staged at once)
            a = a if self._device.type == "cpu" else a.to(self._device, non_blocking=True)
            self._any_zero = (a, bool(np.count_nonzero(arr) < batch))  # for advance (a bool:
            # advance tests `is False`)
            return a
        if tuple(a.shape) != (batch, 1):
            raise ValueError(f"actions must have shape ({batch}, 1), got {tuple(a.shape)}")
        checks.require(((a >= -1) & (a <= 1)).all(), lambda: check_actions(a, "action"))
        return a[:, 0]

    def _is_truncated(self) -> bool:
        m = self._spec.max_episode_steps
        return m is not None and self._k >= m < self._K


class ClockEnv(SingleEnvView):
    """Single-env view of :class:`ClockVectorEnv` (a batch of one, no autoreset).

    Same Description, Action Space, Observation Space, Rewards, Starting State and Arguments
    as :class:`ClockVectorEnv`, unbatched: the action has shape (1,), the reward is a float,
    and the last step's info has ``"schedule"`` (``[K+1]`` σ) and ``"x0"`` directly. After the
    K-th step, call ``reset()``. Registered as ``diffusion_gym/Clock-v0`` and per preset.
    Everything else is read from :attr:`batch` (``diffusion_gym.envs.batch_of(env)``).
    """

    vector_class = ClockVectorEnv

    def schedule_from_actions(self, actions) -> torch.Tensor:
        """:func:`schedule_from_actions` with this env's clock."""
        return self.batch.schedule_from_actions(actions)
