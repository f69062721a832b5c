"""Guidance environment: choose the CFG weight and the churn of every sampler step.

Diffusion sampling as a finite-horizon MDP whose actions modify the sampling dynamics (the
environment of the inverse-RL sampler paper, arXiv 2602.08689). The σ schedule is fixed; at
step k the agent picks a pair (w, γ) from two tables (or, ``action_format="box"``, as
continuous values; optionally with a restart-style renoise first), and the state moves by
one EDM step
(Karras et al. 2022, Alg. 2): churn σ̂ = σ_k (1 + γ), then a guided Heun (or Euler) step to
σ_{k+1} with D_w = D_u + w (D_c − D_u) (Ho & Salimans 2022), or a guided step of a multistep
solver (DPM-Solver++, UniPC, iPNDM: the guided D_w feeds its history, as in SD-style
pipelines; churn there is DPM-Solver++(2M) SDE for ``dpmpp-2m``, refused for the others).

:class:`GuidanceVectorEnv` is a native :class:`gymnasium.vector.VectorEnv` holding the whole
batch as tensors on ``device``; a step is one call of :func:`diffusion_gym.steps.step` on the
batch (one guided denoiser call of size 2B per solver stage). :class:`GuidanceEnv` is the
single-environment view over a batch of one, for ``gym.make``, ``check_env``, RL Zoo and
CleanRL. Both stand on :mod:`.base` (seeding, autoreset, device, render, the view), the
action table is :class:`~.actions.ActionTable`, and one step function (``_transition``)
serves :meth:`GuidanceVectorEnv.step` and :meth:`GuidanceVectorEnv.rollout`.

Why this file is over 500 lines: one class, whose docstring is the env's specification
(~150 lines: spaces, rewards, arguments), plus the renoise (restart) that must stay next to
the step it re-runs. The observation (layout, encoder, expert states) lives in
:mod:`.guidance_obs`, the action decoding in :mod:`.actions`, the classifier features in
:mod:`.obs_features`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from .. import presets, schedules, steps
from ..checks import as_int, as_real
from ..denoisers.base import Denoiser
from ..noise import SampleStreams, draw_normal
from .actions import (
    ACTION_FORMATS,
    DEFAULT_GAMMAS,
    DEFAULT_GUIDANCE_WEIGHTS,
    ActionTable,
    StepActions,
)
from .base import BatchedSamplerEnv, SingleEnvView
from .common import draw_class_labels
from .guidance_obs import GuidanceObservation, _RecordingDenoiser

__all__ = [
    "GuidanceVectorEnv",
    "GuidanceEnv",
    "ActionTable",
    "Rollout",
    "DEFAULT_GUIDANCE_WEIGHTS",
    "DEFAULT_GAMMAS",
    "SCHEDULES",
    "REWARDS",
]

SCHEDULES = ("karras", "uniform", "log_linear", "linear", "vp_uniform_t")
REWARDS = ("none", "log_prob", "classifier")

RewardFn = Callable[[dict[str, Any]], torch.Tensor | np.ndarray]


def _make_schedule(schedule, num_steps: int | None, preset, device) -> torch.Tensor:
    """The fixed σ schedule (n+1 values ending in 0) from a name or explicit values."""
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES} or a list of sigmas")
        n = num_steps if num_steps is not None else int(preset.defaults.get("num_steps", 4))
        if schedule == "linear":
            return schedules.linear(n, preset.sigma_max)
        return getattr(schedules, schedule)(n, preset.sigma_min, preset.sigma_max)
    sigmas = schedules.validate(torch.as_tensor(schedule, dtype=torch.float64).cpu())
    if num_steps is not None and num_steps != len(sigmas) - 1:
        raise ValueError(
            f"num_steps={num_steps} disagrees with the explicit schedule of {len(sigmas) - 1} steps"
        )
    return sigmas


@dataclass(frozen=True)
class Rollout:
    """One batch of Guidance episodes run by :meth:`GuidanceVectorEnv.rollout`.

    N = ``num_steps``, B = batch size; tensors on the env's device unless noted.
    """

    x_T: torch.Tensor
    """``[B, *shape]`` the start states at σ_0."""
    x0: torch.Tensor
    """``[B, *shape]`` the final samples (σ_N = 0)."""
    class_labels: torch.Tensor | None
    """``[B]`` long, or None (unconditional)."""
    actions: np.ndarray
    """``[N, B]`` (discrete) or ``[N, B, m]`` (multidiscrete) int64 actions, or ``[N, B, D]``
    float64 (box), as validated."""
    guidance: torch.Tensor
    """``[N, B]`` float64 CFG weight w of every step (host)."""
    gamma: torch.Tensor
    """``[N, B]`` float64 churn γ of every step (host)."""
    rewards: torch.Tensor
    """``[N, B]`` float64 rewards (the env's ``reward=``)."""
    observations: torch.Tensor
    """``[N + 1, B, obs_dim]`` float32: the observation before every step, then the last."""
    sigmas: torch.Tensor
    """``[N + 1]`` the σ schedule."""
    renoised: np.ndarray
    """``[N, B]`` bool: the renoises that happened (all False without ``renoise_steps``)."""
    nfe: np.ndarray
    """``[B]`` int64 denoiser evaluations each episode spent (re-run steps included)."""


class GuidanceVectorEnv(GuidanceObservation, BatchedSamplerEnv):
    """Choose the classifier-free guidance weight and the churn of each sampler step.

    ## Description

    A batch of ``num_envs`` diffusion samplers runs down a fixed σ schedule
    σ_0 > … > σ_N = 0 (EDM ρ = 7 by default). At step k each environment picks a guidance
    weight w and a churn γ; the sample moves by one EDM step: churn
    x̂ = x_k + sqrt(σ̂² − σ_k²) ε with σ̂ = σ_k (1 + γ), then a Heun (or Euler) step of the
    probability-flow ODE from σ̂ to σ_{k+1} with the guided denoiser
    D_w = D_u + w (D_c − D_u). With a multistep ``solver`` (DPM-Solver++(2M/3M), UniPC-2/3,
    iPNDM) the step is that solver's, 1 guided call per step, and the guided D_w of every
    step feeds the solver's history (a :class:`~diffusion_gym.solvers.SolverState` of the
    batch, empty at every reset). Churn γ > 0 with ``dpmpp-2m`` runs its SDE variant
    (DPM-Solver++(2M) SDE, η h = log(1 + γ): the same fresh-noise fraction as EDM's churn);
    the other multistep solvers refuse it (a multistep history assumes one smooth
    trajectory): ``gammas`` defaults to (0,) for them and a γ > 0 raises ``ValueError`` at
    construction. The whole batch is one tensor on ``device``; every solver stage
    is one denoiser call of size 2B. Environment ``i`` reset with ``seed=s`` draws all its
    noise from its own stream keyed by ``(s + i, episode)``, so its trajectory does not
    depend on ``num_envs``; a rollout with fixed actions equals
    :func:`diffusion_gym.steps.sample` with the same schedule, weights and ``SampleStreams``.

    ## Action Space

    ``action_format="discrete"``: ``Discrete(len(guidance_weights) * len(gammas))``; action
    ``a`` picks ``w = guidance_weights[a // len(gammas)]``, ``γ = gammas[a % len(gammas)]``.
    ``action_format="multidiscrete"``: ``MultiDiscrete([len(guidance_weights), len(gammas)])``
    = (weight index, γ index). Defaults: w ∈ {0, 1, 1.5, 2, 3, 5} × γ ∈ {0, 0.1, 0.4}.
    ``action_format="box"``: ``Box(float32)`` of the values ``[w, γ]`` with w ∈
    [min, max] of ``guidance_weights`` and γ ∈ [0, max(gammas)] (a column with an empty range
    is left out; ``action_table.box_names`` names them); out-of-range values raise (no
    clipping). With ``renoise_steps`` every format gains a renoise switch (discrete: indices
    ``n_w n_γ`` … ``2 n_w n_γ − 1``; multidiscrete: a third column of 2; box: a column in
    [0, 1], on where > 0.5): before step k the env renoises from σ_k to σ_j,
    j = max(k − r, 0), with fresh noise and re-runs steps j … k − 1 (γ = 0), at most
    ``max_renoises`` times per episode (other requests and k = 0 are ignored;
    ``info["renoised"]``, ``info["nfe"]``); docs/guidance_env.md.

    ## Observation Space

    ``Box(float32)``. With ``obs_mode="state"`` (d = data dimension, C = classes):

    | Index          | Observation                                 | Min  | Max |
    |----------------|---------------------------------------------|------|-----|
    | 0 … d−1        | x_k / sqrt(σ_k² + σ_data²)                   | -Inf | Inf |
    | d              | log σ_k (σ_N = 0 shown as log(σ_{N−1}/10))  | -Inf | Inf |
    | d+1            | k / N                                       | 0    | 1   |
    | d+2 … d+1+C    | one-hot class c (absent if unconditional)   | 0    | 1   |

    With ``renoise_steps`` a last column holds the share of the renoise budget left (0 … 1).

    With ``obs_mode="features"`` (compact, for image-scale x; s_k = sqrt(σ_k² + σ_data²)):

    | Index      | Observation                                                   | Min  | Max |
    |------------|---------------------------------------------------------------|------|-----|
    | 0          | log σ_k (as above)                                            | -Inf | Inf |
    | 1          | k / N                                                         | 0    | 1   |
    | 2 … 1+C    | one-hot class c                                               | 0    | 1   |
    | 2+C        | ‖x_k‖ / (s_k √d)                                              | 0    | Inf |
    | 3+C        | ‖D_c − D_u‖ / (σ_data √d) of the previous step's guided call   | 0    | Inf |
    | 4+C        | ‖D_w‖ / (σ_data √d) of the previous step's call                | 0    | Inf |
    | 5+C        | ‖x̂ − D_w‖ / (σ̂ √d) of the previous step's call (≈ 1)          | 0    | Inf |

    The last three are 0 at k = 0 (no call yet). :meth:`expert_observations` computes them
    for expert states from one guided call (w = 1) at the state itself.

    With ``obs_mode="classifier"`` (digits presets: the shipped classifier) the features
    layout is followed by 64 columns: the classifier's penultimate features of x̂_0 = D_w of
    the previous step's call, standardised by their mean and std over the training images
    (:mod:`.obs_features`; 0 at k = 0). Other presets raise ``ValueError``.

    ## Rewards

    ``reward="none"`` (default; the IRL agent supplies rewards): 0. ``"log_prob"``: at the
    last step, the exact log p_data(x_0 | c) (mixtures: ``data.log_prob``), else 0.
    ``"classifier"``: at the last step, log p(c | x_0) from ``classifier=`` (a callable
    ``x0 [B, *shape] -> log-probs [B, C]``) or, for mixtures, the Bayes classifier
    ``data.class_log_posterior(x0, 0)``. A callable ``reward(t: dict) -> [B]`` receives the
    batched transition ``t`` with keys ``x`` (x_k), ``x_next``, ``denoised`` (D_w at σ̂),
    ``sigma``, ``sigma_next`` (floats), ``step`` (k), ``guidance`` and ``gamma`` (``[B]``),
    ``class_labels`` (``[B]`` or None), ``terminated`` (bool) and ``env``; it returns a
    ``[B]`` tensor or array.

    ## Starting State

    The sampler's start x_T = ``preset.prior_std`` · ε with ε draw 0 of the env's stream
    (at σ_0 = σ_max); class c fixed (``class_labels``) or drawn per episode from the data's
    class histogram with the env's stream. Step k = 0.

    ## Episode End

    Terminated after ``num_steps`` steps (σ = 0; ``final_info["x0"]`` holds the sample).
    Truncated after ``max_episode_steps`` steps when that is smaller. The vector env resets
    finished environments in the same step (``AutoresetMode.SAME_STEP``, the default): the
    last observation and info are in ``info["final_obs"]`` / ``info["final_info"]``. With
    ``autoreset_mode="next_step"`` the last step returns them directly and the next step
    starts the new episodes; with ``"disabled"`` call ``reset()``.

    ## Arguments

    ``gym.make_vec("diffusion_gym/Guidance-v0", num_envs=1024,
    vectorization_mode="vector_entry_point", device="cpu", ...)``

    :param num_envs: batch size B.
    :param denoiser: preset name (see ``diffusion_gym.presets.names()``), a ``Preset``, or
        a ``Denoiser`` object (then ``data=`` is the true distribution for rewards and
        expert states).
    :param data: the data distribution for a ``Denoiser`` object (``sample``, ``log_prob``).
    :param num_steps: number of sampler steps N (default: the preset's).
    :param solver: any of ``steps.SOLVERS`` (default: the preset's, else Heun); multistep
        solvers but ``dpmpp-2m`` (SDE variant) take γ = 0 only (above).
    :param schedule: a schedule name (``karras``, ``uniform``, ``log_linear``, ``linear``,
        ``vp_uniform_t``) or explicit σ (N+1 values ending in 0).
    :param guidance_weights: table of CFG weights w. With an unconditional denoiser every w
        gives the same step: the default table becomes ``(1.0,)`` with a warning (the
        actions are then the γ values), any other table with several weights is refused.
    :param gammas: table of churn values γ >= 0 (default {0, 0.1, 0.4}; (0,) for a
        multistep solver other than ``dpmpp-2m``).
    :param action_format: ``"discrete"``, ``"multidiscrete"`` or ``"box"`` (continuous
        [w, γ]; the tables' ranges bound it).
    :param obs_mode: ``"state"``, ``"features"`` or ``"classifier"`` (digits presets).
    :param reward: ``"none"``, ``"log_prob"``, ``"classifier"`` or a callable (above).
    :param classifier: ``x0 -> [B, C]`` log-probs for ``reward="classifier"``.
    :param class_labels: an int (all envs), a ``[num_envs]`` sequence, or None (drawn).
    :param device: torch device of the batch.
    :param max_episode_steps: truncate after this many steps (<= ``num_steps``).
    :param render_mode: None or ``"rgb_array"``.
    :param mask_fn: optional ``mask_fn(env) -> bool [num_envs, n]`` for :meth:`action_masks`.
    :param s_noise: EDM's S_noise (scale of the churn noise).
    :param prior_std: std of x_T (default: the preset's ``prior_std``), as Clock's.
    :param renoise_steps: r >= 1 adds the renoise switch (restart: back r schedule steps);
        None (default): no renoise. Needs ``euler`` or ``heun``.
    :param max_renoises: renoises per env and episode (default 1).
    :param guide: the guiding model of **autoguidance** (Karras et al. 2024): a preset name
        (``"digits-imperfect-guide"``), a ``Preset`` or a ``Denoiser`` (the model's shape,
        classes and σ range). Then w weighs the model against this weaker version at the
        sample's own class, D_w = D_guide + w (D − D_guide), in place of CFG's
        unconditional model (:func:`diffusion_gym.presets.autoguided`); the weight table,
        the action formats and the agents are unchanged. None (default): CFG.
    :param autoreset_mode: ``"same_step"`` (default; ``final_obs``/``final_info``),
        ``"next_step"`` (gymnasium's default, needed by its vector observation wrappers: the
        step after the last one returns the next episode's first observation with reward 0
        and ignores its actions) or ``"disabled"`` (call ``reset()``); a
        ``gymnasium.vector.AutoresetMode`` member also works. Same trajectories in each.

    ## Version History

    * v0: initial version.
    """

    def __init__(
        self,
        num_envs: int = 1,
        denoiser: str | Denoiser = "gmm-ring8-imperfect",
        *,
        data: Any = None,
        num_steps: int | None = None,
        solver: str | None = None,
        schedule: str | Sequence[float] | torch.Tensor = "karras",
        guidance_weights: Sequence[float] = DEFAULT_GUIDANCE_WEIGHTS,
        gammas: Sequence[float] | None = None,
        action_format: str = "discrete",
        obs_mode: str = "state",
        reward: str | RewardFn = "none",
        classifier: Callable[[torch.Tensor], torch.Tensor] | None = None,
        class_labels: int | Sequence[int] | torch.Tensor | None = None,
        device: str | torch.device = "cpu",
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        mask_fn: Callable[[GuidanceVectorEnv], np.ndarray] | None = None,
        s_noise: float = 1.0,
        autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
        prior_std: float | None = None,
        renoise_steps: int | None = None,
        max_renoises: int = 1,
        guide: str | Denoiser | None = None,
    ):
        self._init_batch(num_envs, denoiser, data, device, render_mode, autoreset_mode)
        if guide is not None:  # autoguidance: w weighs the model against its weaker version
            self._preset = presets.autoguided(self._preset, guide, self.device)
        if prior_std is not None:  # the same keyword as Clock's: x_T = prior_std · ε
            self._preset = _with_prior_std(self._preset, prior_std)
        guidance_weights = _unconditional_weights(guidance_weights, self.num_classes)
        self._solver = solver if solver is not None else self.preset.defaults.get("solver", "heun")
        if self._solver not in steps.SOLVERS:
            raise ValueError(f"solver must be one of {steps.SOLVERS}, got {self._solver!r}")
        if num_steps is not None:
            num_steps = as_int("num_steps", num_steps, 1, 100_000)
        ode = steps.get_solver(self._solver)
        self._multistep = ode.multistep
        no_churn = ode.multistep and not ode.sde  # dpmpp-2m: churn is its SDE variant
        if gammas is None:
            gammas = (0.0,) if no_churn else DEFAULT_GAMMAS
        elif no_churn and any(float(g) != 0 for g in gammas):
            raise ValueError(
                f"gammas {tuple(gammas)} has churn gamma > 0, which needs a single-step solver "
                f"(euler, heun) or dpmpp-2m (SDE variant); solver {self._solver!r} is "
                "multistep: use gammas=(0.0,)"
            )
        sig = _make_schedule(schedule, num_steps, self.preset, self.device)
        self._sigmas = sig.to(self.device)
        self._sigma_list = [float(s) for s in sig]
        self._num_steps = len(sig) - 1
        self.max_episode_steps = self._check_max_steps(max_episode_steps)
        self._init_renoise(renoise_steps, max_renoises)
        self._action_table = ActionTable(
            guidance_weights,
            gammas,
            action_format,
            renoise=self._renoise_steps > 0,
            device=self.device,
            dtype=self.dtype,
        )
        self._guidance_weights = self._action_table.weights
        self._gammas = self._action_table.gammas
        self.s_noise = as_real("s_noise (EDM's S_noise)", s_noise, 0.0)
        self._init_obs_space(obs_mode)  # checks the memory before the batched spaces
        self._init_action_space(action_format)
        self._init_reward(reward, classifier)
        self._fixed_labels = self._check_labels(class_labels, num_envs)
        self.mask_fn = mask_fn
        self._recorder = _RecordingDenoiser(self.denoiser).to(self.device)
        self._label_weights = self._class_histogram()
        self._onehot_table = torch.eye(max(self.num_classes, 1), device=self.device)
        self._log_sigma = self._log_sigmas()
        self._k: int | None = None
        self._needs_reset = True
        self._solver_state: steps.SolverState | None = None
        self._x: torch.Tensor | None = None
        self._class_labels: torch.Tensor | None = None
        self.keys: torch.Tensor | None = None
        self.streams: SampleStreams | None = None

    def memory_estimate(self) -> dict[str, int]:
        """A lower estimate of the bytes this configuration holds, by part: ``"batch"`` (per
        env: x, the churned x̂, its noise and the solver's temporaries, ~8 samples, plus the
        guided call's doubled input and output, 4 more; observation, keys, labels),
        ``"denoiser call"`` (the workspace of one guided call of 2B), ``"host arrays"`` (a
        step's numpy outputs and ``final_obs`` rows). Checked against the available memory at
        construction (:mod:`diffusion_gym.memory`)."""
        b, den, d = self.num_envs, self.denoiser, self.obs_dim
        s = den.dim * den.itemsize
        calls = 2 if self.num_classes else 1
        return {
            "batch": b * (8 * s + 4 * calls * s // 2 + 4 * d + 8 * 4 + 4 * self.num_classes),
            "denoiser call": den.workspace_bytes(calls * b),
            # obs ×2, reward, final_obs rows; the batched spaces' bounds and action nvec
            "host arrays": b * (8 * d + 8 + 112) + b * (10 * d + 16),
        }

    # ------------------------------------------------------------------------------------
    # Public state (read-only)

    @property
    def sigmas(self) -> torch.Tensor:
        """The fixed σ schedule ``[N + 1]`` (float64, on ``device``, ending in 0)."""
        return self._sigmas

    @property
    def num_steps(self) -> int:
        """N, the steps of an episode."""
        return self._num_steps

    @property
    def solver(self) -> str:
        """The solver's name (one of ``steps.SOLVERS``)."""
        return self._solver

    @property
    def action_table(self) -> ActionTable:
        """The (w, γ) table and its action encoding."""
        return self._action_table

    @property
    def guidance_weights(self) -> np.ndarray:
        """The table's CFG weights w (read-only float64)."""
        return self._guidance_weights

    @property
    def gammas(self) -> np.ndarray:
        """The table's churn values γ (read-only float64)."""
        return self._gammas

    @property
    def renoise_steps(self) -> int:
        """r, how many schedule steps a renoise goes back (0: no renoise switch)."""
        return self._renoise_steps

    @property
    def max_renoises(self) -> int:
        """The renoises an env may make per episode (later requests are ignored)."""
        return self._max_renoises

    @property
    def nfe_budget(self) -> int:
        """The most NFE an episode can spend: the schedule's N steps plus ``max_renoises``
        renoises at the costliest step (each re-runs up to r steps; 0 without renoise)."""
        extra = self._max_renoises * max(self._rerun_nfe) if self._renoise_steps else 0
        return sum(self._step_nfe) + extra

    @property
    def x(self) -> torch.Tensor | None:
        """``[B, *shape]`` the current states x_k (None before the first reset)."""
        return self._x

    @property
    def class_labels(self) -> torch.Tensor | None:
        """``[B]`` long labels of the current episodes (None: unconditional or not reset)."""
        return self._class_labels

    # ------------------------------------------------------------------------------------
    # Construction helpers

    def _init_renoise(self, renoise_steps, max_renoises) -> None:
        """The renoise (restart) option: span r (0: off), budget, per-step NFE tables."""
        n = self._num_steps
        self._renoise_steps = 0
        if renoise_steps is not None:
            self._renoise_steps = as_int("renoise_steps", renoise_steps, 1, max(n - 1, 1))
            if self._multistep:
                raise ValueError(
                    f"renoise_steps needs a single-step solver (euler, heun); {self._solver!r} "
                    "is multistep (a restart breaks its history)"
                )
        self._max_renoises = as_int("max_renoises", max_renoises, 0, 100_000)
        stages = 2 if self._solver == "heun" else 1
        # NFE of step k (Heun's last step to σ = 0 is one Euler call) and of re-running the
        # steps j = max(k − r, 0) … k − 1 after a renoise at step k (never the last step).
        self._step_nfe = [stages if k + 1 < n else 1 for k in range(n)]
        self._rerun_nfe = [stages * (k - max(k - self._renoise_steps, 0)) for k in range(n)]
        self._nfe: np.ndarray | None = None
        self._renoises_used: np.ndarray | None = None

    def _check_max_steps(self, m) -> int:
        if m is None:
            return self._num_steps
        return as_int("max_episode_steps", m, 1, self._num_steps)

    def _init_action_space(self, action_format: str) -> None:
        assert action_format in ACTION_FORMATS  # validated by ActionTable
        self.action_format = action_format
        self.single_action_space = self._action_table.space()
        self._action_shape: tuple[int, ...] = (self.num_envs, *self._action_table.action_shape)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def _init_reward(self, reward, classifier) -> None:
        data = self.preset.data
        if callable(reward) and not isinstance(reward, str):
            self.reward_fn: RewardFn | None = reward
            self.reward_mode = "callable"
            return
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS} or a callable, got {reward!r}")
        self.reward_mode, self.reward_fn = reward, None
        if reward == "log_prob" and not hasattr(data, "log_prob"):
            raise ValueError(f"reward='log_prob' needs data with log_prob; {type(data).__name__}")
        if reward == "classifier":
            if self.num_classes == 0:
                raise ValueError("reward='classifier' needs a class-conditional denoiser")
            if classifier is None and not hasattr(data, "class_log_posterior"):
                raise ValueError("reward='classifier' needs classifier= (x0 -> [B, C] log-probs)")
        if classifier is not None and not callable(classifier):
            raise TypeError(f"classifier must be callable, got {type(classifier).__name__}")
        self.classifier = classifier

    def _check_labels(self, labels, n: int) -> torch.Tensor | None:
        """Fixed labels ``[n]`` on the device, or None (drawn per episode / unconditional)."""
        if labels is None:
            return None
        if self.num_classes == 0:
            raise ValueError("class_labels given but the denoiser is unconditional")
        t = torch.as_tensor(labels, device=self.device)
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError(f"class_labels must be integers, got {t.dtype}")
        t = t.long().expand(n) if t.ndim == 0 else t.long()
        if t.shape != (n,) or not bool(((t >= 0) & (t < self.num_classes)).all()):
            raise ValueError(
                f"class_labels must be an int or {n} ints in [0, {self.num_classes}), got {labels}"
            )
        return t.clone()

    def _class_histogram(self) -> torch.Tensor | None:
        """The data's class weights (for drawing labels), uniform if the data has none."""
        if self.num_classes == 0:
            return None
        w = getattr(self.preset.data, "class_weights", None)
        if isinstance(w, torch.Tensor) and w.shape == (self.num_classes,):
            return w.double().cpu()
        return torch.ones(self.num_classes, dtype=torch.float64)

    # ------------------------------------------------------------------------------------
    # Reset

    def reset(
        self,
        *,
        seed: int | Sequence[int] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start new episodes in every env; returns ``(obs [B, obs_dim], info)``.

        :param seed: int ``s`` (env i gets base seed ``s + i``), a list of ``num_envs`` ints,
            or None (a fresh random base on the first reset, the next episode afterwards).
        :param options: ``{"class_labels": int | [B]}`` overrides the labels from now on.
        """
        obs, info = self.reset_tensors(seed=seed, options=options)
        return obs.cpu().numpy(), info

    def reset_tensors(self, *, seed=None, options=None) -> tuple[torch.Tensor, dict[str, Any]]:
        """:meth:`reset` with the observation left as a tensor on ``device``."""
        options = self._check_reset_options(options)
        if options:
            unknown = sorted(set(options) - {"class_labels"})
            if unknown:
                raise ValueError(f"unknown reset option(s) {unknown}; valid: ['class_labels']")
            self._fixed_labels = self._check_labels(options["class_labels"], self.num_envs)
        self._seed_episodes(seed)
        self._begin_episodes()
        return self._encode(self._x, 0, self._class_labels, self._zero_stats()), {}

    def _zero_stats(self) -> torch.Tensor | None:
        if not self._with_stats:
            return None
        return torch.zeros(self.num_envs, self._num_stats, device=self.device)

    def _begin_episodes(self) -> None:
        """x_T = prior_std · draw 0 of each env's stream; labels fixed or drawn."""
        self.keys = self._episode_keys()
        self.streams = SampleStreams(self.keys)
        eps0 = draw_normal(self.keys, 0, self.denoiser.shape, self.dtype)
        self._x = self.preset.prior_std * eps0
        if self.num_classes == 0:
            self._class_labels = None
        elif self._fixed_labels is not None:
            self._class_labels = self._fixed_labels
        else:
            self._class_labels = draw_class_labels(self.keys, self._label_weights)
        self._stats = self._zero_stats()
        self._onehot_c = self._onehot(self._class_labels, self.num_envs)  # fixed per episode
        self._solver_state = self._new_solver_state()
        if self._renoise_steps:
            self._nfe = np.zeros(self.num_envs, dtype=np.int64)
            self._renoises_used = np.zeros(self.num_envs, dtype=np.int64)
        self._k = 0
        self._needs_reset = False

    # ------------------------------------------------------------------------------------
    # Step

    def _decode_actions(self, actions) -> StepActions:
        """Validated, decoded actions (host arrays ``[B]``)."""
        return self._action_table.parse(actions, self.num_envs)

    def _new_solver_state(self) -> steps.SolverState | None:
        """An empty multistep history for a batch of new episodes (None: single-step)."""
        return steps.SolverState(self._num_steps) if self._multistep else None

    def _transition(self, x, labels, streams, k: int, act: StepActions, state=None):
        """The one step of a batch (env steps and :meth:`rollout` both run it): states ``x``
        at σ_k with labels and streams, decoded actions ``act`` (their ``renoise`` mask: the
        renoises that happen, see :meth:`_spend_renoises`), the batch's multistep ``state``
        (updated; None for single-step solvers). Returns
        ``(x_next, reward, stats, w_np, g_np, terminated)``; ``stats`` are the features of
        this step's guided call (``obs_mode="features"``/``"classifier"``, else None).
        A renoise happens before the step, the reward sees x_k from before it."""
        table = self._action_table
        w_np, g_np = act.w, act.gamma
        w = table.weight_tensor(act)
        churn = bool(g_np.any())
        gamma = table.gamma_tensor(act) if churn else 0.0
        x_k = x
        if act.renoise.any():
            x = self._restart(x, labels, streams, k, act.renoise, w)
        noise = steps.churn_noise(streams, k, x) if churn else None
        sigma, sigma_next = self._sigma_list[k], self._sigma_list[k + 1]
        model = self.denoiser
        if self._with_stats:
            model = self._recorder
            model.arm()
        x_next, denoised = steps.step(
            model,
            x,
            sigma,
            sigma_next,
            class_labels=labels,
            guidance=w if labels is not None else None,
            gamma=gamma,
            solver=self._solver,
            noise=noise,
            s_noise=self.s_noise,
            state=state,
            checks=(checks := steps.DeferredChecks()),  # inputs and x_next finite: one sync
        )
        checks.resolve()
        stats = None
        if self._with_stats:
            n = x.shape[0]
            x_hat, sigma_hat = model.inputs  # what steps.step gave the denoiser: x̂, σ̂
            stats = self._call_stats(x_hat[:n], sigma_hat[:n], denoised, model.last)
        terminated = k + 1 == self._num_steps
        reward = self._reward(x_k, x_next, denoised, k, w, gamma, terminated, labels)
        return x_next, reward, stats, w_np, g_np, terminated

    # ------------------------------------------------------------------------------------
    # Renoise (restart sampling, Xu et al. 2023)

    def _renoises_left(self, used: np.ndarray | None, n: int) -> torch.Tensor | float:
        """The observation's last column: the share of the renoise budget left."""
        m = self._max_renoises
        if used is None or m == 0:
            return 1.0 if m else 0.0
        return torch.from_numpy((m - used) / m).to(self.device, torch.float32)

    def _spend_renoises(self, act: StepActions, k: int, used, nfe) -> StepActions:
        """``act`` with its renoise mask cut to the renoises that happen at step k (asked
        for, k >= 1, budget left); adds them to ``used`` and this step's NFE to ``nfe``
        (host ``[B]`` int64, in place). Without renoise: ``act`` unchanged."""
        if not self._renoise_steps:
            return act
        mask = act.renoise & (used < self._max_renoises) if k >= 1 else act.renoise & False
        used += mask
        nfe += self._step_nfe[k] + mask * self._rerun_nfe[k]
        return dataclasses.replace(act, renoise=mask)

    def _restart(self, x, labels, streams, k: int, mask: np.ndarray, w) -> torch.Tensor:
        """Renoise the envs of ``mask`` from σ_k up to σ_j, j = max(k − r, 0), with fresh
        noise (draw N + 1 + k of their streams), x ← x + sqrt(σ_j² − σ_k²) ε, then re-run the
        schedule's steps j … k − 1 (γ = 0, this step's w) back to σ_k: one restart of Xu et
        al. (2023) on the fixed schedule. The other envs keep ``x``."""
        idx = torch.from_numpy(np.flatnonzero(mask)).to(self.device)
        j = max(k - self._renoise_steps, 0)
        sig = self._sigma_list
        eps = draw_normal(streams.keys[idx], self._num_steps + 1 + k, self.denoiser.shape, x.dtype)
        xs = x[idx] + math.sqrt(sig[j] ** 2 - sig[k] ** 2) * eps.to(x.device)
        ls = None if labels is None else labels[idx]
        ws = None if labels is None else w[idx]
        for i in range(j, k):
            xs, _ = steps.step(
                self.denoiser, xs, sig[i], sig[i + 1], class_labels=ls, guidance=ws,
                solver=self._solver,
            )  # fmt: skip
        return x.index_copy(0, idx, xs)

    @torch.no_grad()
    def step_tensors(self, actions):
        """One step of every env, outputs left on ``device``.

        :returns: ``(obs [B, obs_dim] tensor, reward [B] tensor, terminated, truncated, info,
            final)`` with ``terminated``/``truncated`` Python bools (all envs move in lockstep),
            ``info`` the host-side step info and ``final`` = ``(final_obs tensor,
            final_info dict)`` when the episodes ended and were auto-reset, else None.
        """
        if self._next_step_reset():  # NEXT_STEP: this step starts the next episodes
            obs, info = self.reset_tensors()
            zero = torch.zeros(self.num_envs, dtype=torch.float64, device=self.device)
            return obs, zero, False, False, info, None
        if self._needs_reset or self._k is None:
            raise ResetNeeded("call reset() before step() (and after an episode ends)")
        act = self._decode_actions(actions)
        k = self._k
        sigma = self._sigma_list[k]
        act = self._spend_renoises(act, k, self._renoises_used, self._nfe)
        x_next, reward, stats, w_np, g_np, terminated = self._transition(
            self._x, self._class_labels, self.streams, k, act, self._solver_state
        )
        self._x, self._k = x_next, k + 1
        if stats is not None:
            self._stats = stats
        truncated = not terminated and self._k >= self.max_episode_steps
        obs = self._encode(self._x, self._k, self._class_labels, self._stats, self._renoises_used)
        info = {
            "sigma": np.full(self.num_envs, sigma),
            "guidance": w_np,
            "gamma": g_np,
            "step": np.full(self.num_envs, k),
        }
        if self._renoise_steps:
            info["renoised"] = act.renoise
            info["nfe"] = self._nfe.copy()
        if not (terminated or truncated):
            return obs, reward, False, False, info, None
        info["x0"] = self._x
        if not self._autoreset:
            self._needs_reset = True
            self._end_episodes()
            return obs, reward, terminated, truncated, info, None
        final = (obs, info)
        self._episodes += 1
        self._begin_episodes()
        obs = self._encode(self._x, 0, self._class_labels, self._stats)
        return obs, reward, terminated, truncated, {}, final

    def step(self, actions):
        """One step of every env: ``(obs, reward, terminated, truncated, info)`` as numpy
        arrays; finished envs are reset in the same step (``info["final_obs"]``,
        ``info["final_info"]`` with masks ``_final_obs``, ``_final_info``)."""
        obs, reward, term, trunc, info, final = self.step_tensors(actions)
        b = self.num_envs
        host = self._to_host([obs, reward] + ([] if final is None else [final[0]]))  # one copy
        obs_np, reward_np, final_obs = host[0], host[1], (None if final is None else host[2])
        if final_obs is not None:  # the last observation of the ended episodes
            self._check_outputs(final_obs, reward_np)
        self._check_outputs(obs_np, reward_np)
        info = {key: self._host(v) for key, v in info.items()}
        for key in list(info):
            info["_" + key] = np.ones(b, dtype=bool)
        if final is not None:
            finfo = {key: self._host(v) for key, v in final[1].items()}
            for key in list(finfo):
                finfo["_" + key] = np.ones(b, dtype=bool)
            info.update(self._final_info(final_obs, finfo))
        return (
            obs_np,
            reward_np,
            np.full(b, term),
            np.full(b, trunc),
            info,
        )

    @torch.no_grad()
    def rollout(
        self,
        policy: Callable[[torch.Tensor, int], Any],
        *,
        seed: int | Sequence[int] | None = None,
        x_T: torch.Tensor | None = None,  # noqa: N803 - the paper's name
        class_labels: int | Sequence[int] | torch.Tensor | None = None,
        streams: SampleStreams | None = None,
    ) -> Rollout:
        """Whole episodes of a batch under ``policy``, by the same step code as :meth:`step`,
        without touching the env's own episodes.

        :param policy: ``policy(obs [B, obs_dim] float32 tensor, k) -> actions`` (``[B]`` or
            ``[B, 2]``; numpy, tensor or list), called at k = 0 .. N−1.
        :param seed: env i of the batch starts like episode 0 of ``reset(seed=seed)``: base
            seed ``seed + i`` (or a list), stream key ``derive_keys(seed + i, salt=0)``;
            None: a fresh random base. It supplies whatever of ``x_T``, ``class_labels`` and
            ``streams`` is not given.
        :param x_T: ``[B, *shape]`` start states at σ_0 (any B; default: ``prior_std`` · draw
            0 of each stream, B = ``num_envs``).
        :param class_labels: an int or ``[B]`` labels (default: the env's fixed labels if they
            fit B, else drawn from each stream like the env does).
        :param streams: :class:`~diffusion_gym.noise.SampleStreams` of the churn noise.
        :returns: a :class:`Rollout`; with the same x_T, labels, streams and actions it equals
            ``env.step`` episodes bit for bit.
        """
        if x_T is None:
            b = self.num_envs
        else:
            x_T = torch.as_tensor(x_T, device=self.device).to(self.dtype)  # noqa: N806
            if x_T.ndim < 1 or tuple(x_T.shape[1:]) != self.denoiser.shape:
                raise ValueError(
                    f"x_T must have shape [B, {self.denoiser.shape}], got {tuple(x_T.shape)}"
                )
            b = x_T.shape[0]
        keys = self._rollout_keys(seed, b, self.device)
        if x_T is None:
            x_T = self.preset.prior_std * draw_normal(keys, 0, self.denoiser.shape, self.dtype)  # noqa: N806
        labels = self._rollout_labels(class_labels, keys, b)
        if streams is None:
            streams = SampleStreams(keys)
        elif not isinstance(streams, SampleStreams) or len(streams) != b:
            raise ValueError(f"streams must be SampleStreams of {b} samples, got {streams!r}")
        stats = None
        if self._with_stats:
            stats = torch.zeros(b, self._num_stats, device=self.device)
        x, n = x_T, self._num_steps
        state = self._new_solver_state()
        used, nfe = np.zeros(b, dtype=np.int64), np.zeros(b, dtype=np.int64)
        obs = [self._encode(x, 0, labels, stats, used)]
        acts, ws, gs, rewards, renoised = [], [], [], [], []
        for k in range(n):
            act = self._action_table.parse(policy(obs[-1], k), b)
            act = self._spend_renoises(act, k, used, nfe)
            x, r, st, w_np, g_np, _ = self._transition(x, labels, streams, k, act, state)
            stats = st if st is not None else stats
            obs.append(self._encode(x, k + 1, labels, stats, used))
            acts.append(np.array(act.actions))  # a copy: the policy may reuse its array
            ws.append(w_np)
            gs.append(g_np)
            rewards.append(r)
            renoised.append(act.renoise)
        observations, rewards = torch.stack(obs), torch.stack(rewards)
        self._check_outputs(observations, rewards)
        if not self._renoise_steps:
            nfe[:] = sum(self._step_nfe)
        return Rollout(
            x_T=x_T,
            x0=x,
            class_labels=labels,
            actions=np.stack(acts),
            guidance=torch.from_numpy(np.stack(ws)),
            gamma=torch.from_numpy(np.stack(gs)),
            rewards=rewards,
            observations=observations,
            sigmas=self._sigmas,
            renoised=np.stack(renoised),
            nfe=nfe,
        )

    def _rollout_labels(self, class_labels, keys, b: int) -> torch.Tensor | None:
        if class_labels is not None:
            return self._check_labels(class_labels, b)
        if self.num_classes == 0:
            return None
        fixed = self._fixed_labels
        if fixed is not None:
            if len(fixed) == b:
                return fixed
            raise ValueError(
                f"the env's fixed class_labels hold {len(fixed)} labels, the batch {b}: "
                "pass class_labels="
            )
        return draw_class_labels(keys, self._label_weights)

    @staticmethod
    def _host(v):
        return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v

    def _reward(self, x, x_next, denoised, k, w, gamma, terminated, labels) -> torch.Tensor:
        """Reward ``[B]`` float64 on the device (see the class docstring)."""
        b = x.shape[0]
        if self.reward_mode == "callable":
            t = {
                "x": x,
                "x_next": x_next,
                "denoised": denoised,
                "sigma": self._sigma_list[k],
                "sigma_next": self._sigma_list[k + 1],
                "step": k,
                "guidance": w,
                "gamma": torch.as_tensor(gamma, device=self.device).expand(b),
                "class_labels": labels,
                "terminated": terminated,
                "env": self,
            }
            r = torch.as_tensor(self.reward_fn(t), device=self.device).to(torch.float64)
            if r.shape != (b,):
                raise ValueError(f"the reward callable must return [{b}] values, got {r.shape}")
            return r
        if self.reward_mode == "none" or not terminated:
            return torch.zeros(b, dtype=torch.float64, device=self.device)
        if self.reward_mode == "log_prob":
            return self.preset.data.log_prob(x_next, 0.0, labels).to(torch.float64)
        if self.classifier is not None:
            logp = torch.as_tensor(self.classifier(x_next), device=self.device)
        else:
            logp = self.preset.data.class_log_posterior(x_next, 0.0)
        return logp.gather(1, labels[:, None]).squeeze(1).to(torch.float64)

    # ------------------------------------------------------------------------------------
    # Masks, rendering

    def action_masks(self) -> np.ndarray:
        """``[num_envs, n]`` bool mask of valid actions (MaskablePPO); n = number of discrete
        actions, or ``len(guidance_weights) + len(gammas)`` (+ 2 with renoise) for
        ``multidiscrete``. Without ``mask_fn`` every action is valid, except a renoise where
        it would be ignored (k = 0, budget spent). ``ValueError`` for ``"box"``."""
        if self.action_format == "box":
            raise ValueError("action_masks() applies to the discrete action formats, not 'box'")
        nw, ng = len(self._guidance_weights), len(self._gammas)
        rn = 2 if self._renoise_steps else 0
        n = self._action_table.size if self.action_format == "discrete" else nw + ng + rn
        if self.mask_fn is None:
            m = np.ones((self.num_envs, n), dtype=bool)
            if rn and self._k is not None:  # renoise only where it would happen
                can = (self._renoises_used < self._max_renoises) & (self._k >= 1)
                if self.action_format == "discrete":
                    m[:, nw * ng :] = can[:, None]
                else:
                    m[:, -1] = can
            return m
        m = np.asarray(self.mask_fn(self), dtype=bool)
        if m.shape != (self.num_envs, n):
            raise ValueError(
                f"mask_fn must return a bool array [{self.num_envs}, {n}], got {m.shape}"
            )
        return m

    def _render_state(self):
        if self._x is None:
            raise ResetNeeded("call reset() before render()")
        k = self._k or 0
        title = f"{self.preset.name}  step {k}/{self._num_steps}  sigma={self._sigma_list[k]:.3g}"
        return self._x, self._class_labels, title

    def close_extras(self, **kwargs) -> None:
        self._x = None

    def __repr__(self) -> str:
        return (
            f"GuidanceVectorEnv(preset={self.preset.name!r}, num_envs={self.num_envs}, "
            f"num_steps={self._num_steps}, solver={self._solver!r}, obs_mode={self.obs_mode!r})"
        )


def _with_prior_std(preset, prior_std) -> Any:
    """``preset`` with another x_T std (a copy sharing the denoiser and data)."""
    if isinstance(prior_std, bool) or not isinstance(prior_std, (int, float)):
        raise TypeError(f"prior_std must be a float > 0 or None, got {prior_std!r}")
    if not (math.isfinite(prior_std) and prior_std > 0):
        raise ValueError(f"prior_std must be finite and > 0, got {prior_std!r}")
    return dataclasses.replace(preset, prior_std=float(prior_std))


def _unconditional_weights(weights: Sequence[float], num_classes: int) -> Sequence[float]:
    """The weight table for the denoiser: unchanged if class-conditional; for an
    unconditional one (D_w = D_u for every w) the default table collapses to (1.0,) with a
    warning and an explicit table of several distinct weights is a ``ValueError``."""
    if num_classes > 0:
        return weights
    try:
        distinct = {float(w) for w in np.asarray(weights, dtype=np.float64).reshape(-1)}
    except (TypeError, ValueError):
        return weights  # ActionTable names what is wrong with it
    if len(distinct) <= 1:
        return weights
    if tuple(weights) == tuple(DEFAULT_GUIDANCE_WEIGHTS):
        warnings.warn(
            "the denoiser is unconditional (num_classes=0): every guidance weight gives the "
            "same step, so the action table keeps w = 1 only and the actions choose γ; pass "
            "guidance_weights=[1.0] to silence this",
            stacklevel=3,
        )
        return (1.0,)
    raise ValueError(
        f"guidance_weights {sorted(distinct)}: the denoiser is unconditional (num_classes=0), "
        "so every weight gives the same step (D_w = D_u); pass guidance_weights=[1.0]"
    )


class GuidanceEnv(SingleEnvView):
    """Single-environment view of :class:`GuidanceVectorEnv` (a batch of one, no copy of the
    dynamics; see :class:`~diffusion_gym.envs.base.SingleEnvView`). Takes the same arguments
    except ``num_envs``; see the vector env's docstring for the spaces, rewards and episode
    end. After the last step call :meth:`reset`."""

    vector_class = GuidanceVectorEnv

    def action_masks(self) -> np.ndarray:
        """``[n]`` bool mask of valid actions (MaskablePPO)."""
        return self.batch.action_masks()[0]
