"""ART-RL: actor-critic timestep schedules for the Clock env, distillation, export, transfer.

ART (Huang, Tang & Zhou, arXiv 2601.18681) treats the speed θ = dψ/du of a reparameterised
clock ψ(u), u ∈ [0, 1], as a control: a uniform grid on u becomes an uneven grid in diffusion
time, and the learned speed decides where the K solver steps of a fixed budget land. Two
learners live here:

1. **SB3 actor-critic with Gaussian policies** (PPO, A2C, SAC) on the batched
   ``ClockVectorEnv`` through ``agents.vec_env.SB3VecEnv``; the reward is the env's
   (``"terminal_error"`` by default), optionally transformed (log error, see
   :class:`RewardTransform`) since per-sample terminal errors span orders of magnitude.
2. **ART's own continuous-time actor-critic** (:class:`ContinuousActorCritic`) for the
   local-error surrogate on the linear clock σ = T − ψ: a critic V(u, x, ψ), TD increments
   with the running reward −|Q|θ² + γθ (the multiplier term), a Gaussian policy on θ, and the
   Lagrange multiplier γ updated on the terminal-time constraint ψ(1) = T.

Distillation: the learned policy's mean action per step becomes a fixed schedule (zero
inference overhead), exported as ``schedule.json`` (``diffusion_gym.schedules.save_schedule``)
that ``steps.sample`` and the harness (``FixedSchedule``) load; ``interpolate`` moves it to
other budgets. :func:`run` is the ``diffusion-gym train`` entry (``agent: art``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from diffusion_gym import presets as _presets
from diffusion_gym import schedules as _schedules
from diffusion_gym import steps as _steps
from diffusion_gym.denoisers.base import Denoiser

__all__ = [
    "Config",
    "EvalConfig",
    "ActorCriticConfig",
    "ContinuousActorCritic",
    "local_error_coefficient",
    "clock_schedule",
    "ALGOS",
    "REWARD_TRANSFORMS",
    "make_env",
    "make_model",
    "distill",
    "gaussian_1d_w2",
    "transfer_schedule",
    "run",
]

ALGOS = ("ppo", "a2c", "sac", "art_ac")
REWARD_TRANSFORMS = ("none", "log", "scale", "self_critical", "log_self_critical")
POLICY_INPUTS = ("time", "full", "asymmetric")


# ---------------------------------------------------------------------------------------------
# ART's continuous-time actor-critic (local-error surrogate, linear clock σ = T − ψ)


def _drift(denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor, labels) -> torch.Tensor:
    """Probability-flow ODE drift dx/dσ = (x − D(x; σ)) / σ, per-sample σ ``[B]``."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return (x - denoiser(x, sigma, labels)) / s


def local_error_coefficient(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: torch.Tensor,
    class_labels: torch.Tensor | None = None,
    rel_step: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ART's leading-order Euler error coefficient |Q| = ½ ‖d²x/dσ²‖ / sqrt(dim) and the drift.

    The Euler step of size h in σ has local error ½ h² x''(σ) + O(h³); on the clock a step is
    h = θ Δu, so the per-step surrogate is |Q| θ² Δu² (the running reward −|Q| θ² Δu). x'' is
    the total derivative of the drift along the ODE, taken by a forward difference
    (f(x − ε f, σ − ε) − f(x, σ)) / (−ε), ε = ``rel_step`` · σ (one extra denoiser call).

    :param x: ``[B, *shape]`` states at noise level ``sigma`` ``[B]`` (σ > 0).
    :returns: ``(|Q| [B], f [B, *shape])``.
    """
    f = _drift(denoiser, x, sigma, class_labels)  # f(x, σ)
    eps = rel_step * sigma  # ε, relative so it scales with σ
    e = eps.reshape(-1, *([1] * (x.ndim - 1)))
    f2 = _drift(denoiser, x - e * f, sigma - eps, class_labels)  # f one ε down the ODE
    x2 = (f - f2) / e  # x'' ≈ (f(σ) − f(σ − ε)) / ε
    q = 0.5 * x2.flatten(1).norm(dim=1) / math.sqrt(x2[0].numel())  # |Q| per sample
    return q, f


def clock_schedule(speeds: torch.Tensor, t_max: float) -> torch.Tensor:
    """The fixed schedule of mean clock speeds: σ_k = T (1 − s_k), s_k = Σ_{j<k} ϑ_j Δu.

    ``speeds`` ``[K]`` are normalised speeds ϑ = θ / T (> 0); they are rescaled so the clock
    ends exactly at ψ(1) = T (the constraint the multiplier enforces only on average), which
    makes the last σ exactly 0. Returns the float64 schedule of K + 1 σ.
    """
    v = torch.as_tensor(speeds, dtype=torch.float64).reshape(-1)
    if v.numel() < 1 or not bool(torch.isfinite(v).all()) or not bool((v > 0).all()):
        raise ValueError(f"speeds must be a non-empty vector of finite values > 0, got {v}")
    s = torch.cat([v.new_zeros(1), torch.cumsum(v / v.sum(), 0)])  # s_k = ψ_k / T, s_K = 1
    sig = t_max * (1.0 - s)
    sig[-1] = 0.0
    return sig


@dataclass
class ActorCriticConfig:
    """Hyper-parameters of :class:`ContinuousActorCritic` (units: ψ and θ normalised by T).

    :param iterations: actor-critic updates (each on one batch of K-step trajectories).
    :param batch_size: trajectories per update (the env's batch).
    :param actor_lr: Adam step of the policy mean network.
    :param critic_lr: Adam step of the critic V(u, x, ψ).
    :param multiplier_lr: step of γ per unit of constraint violation E[ψ(1)]/T − 1, relative to
        γ's initial value (dual descent).
    :param exploration_std: std of the Gaussian policy on ϑ = θ / T (fixed, decays linearly to
        ``final_std``).
    :param final_std: exploration std at the last iteration.
    :param hidden: width of the two hidden layers of actor and critic.
    :param seed: seed of the networks and the exploration noise.
    """

    iterations: int = 400
    batch_size: int = 256
    actor_lr: float = 3e-3
    critic_lr: float = 3e-3
    multiplier_lr: float = 0.5
    exploration_std: float = 0.3
    final_std: float = 0.05
    hidden: int = 64
    seed: int = 0


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
        nn.Linear(hidden, n_out),
    )  # fmt: skip


class ContinuousActorCritic(nn.Module):
    """ART-RL's continuous-time actor-critic on the linear clock σ = T − ψ (Euler solver).

    State (u, x, ψ); control: the clock speed θ ~ N(μ_φ(u, ψ), s²) (Gaussian policy); dynamics
    on the grid u_k = k/K, Δu = 1/K: ψ_{k+1} = ψ_k + θ_k Δu, x_{k+1} = Euler step of the
    probability-flow ODE from σ_k = T − ψ_k to σ_{k+1}. Running reward (per unit u)
    r = −|Q| θ² + γ θ, whose θ-term is the Lagrangian of the constraint ψ(1) = T
    (L = J + γ (ψ(1) − T)). Updates per batch of trajectories, with the TD increment
    δ_k = V(u_{k+1}, x_{k+1}, ψ_{k+1}) − V(u_k, x_k, ψ_k) + r_k Δu and V(1, ·) = 0:

    - critic (TD(0) / martingale orthogonality): minimise Σ_k δ_k² in V_k (target detached);
    - actor (policy gradient in continuous time): ascend Σ_k ∇_φ log π(θ_k | u_k, ψ_k) δ_k;
    - multiplier (dual descent): γ ← γ − α_γ γ_0 (E[ψ(1)]/T − 1).

    Departures from the paper (documented in docs/art_agent.md): the policy mean depends on
    (u, ψ) only, so the distilled schedule is the mean-speed rollout; exploration std follows a
    fixed linear decay instead of the entropy-temperature optimum; rewards are divided by the
    initial schedule's mean |Q| T² so learning rates are scale-free; σ is floored at
    ``sigma_min`` inside the dynamics while ψ(1) is left free for the constraint.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        budget: int,
        sigma_max: float,
        prior_std: float,
        config: ActorCriticConfig | None = None,
        class_sampler=None,
    ):
        super().__init__()
        if not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be an int >= 1, got {budget!r}")
        if not sigma_max > 0 or not prior_std > 0:
            raise ValueError(f"need sigma_max, prior_std > 0, got {sigma_max}, {prior_std}")
        self.cfg = config or ActorCriticConfig()
        self.denoiser, self.K, self.T, self.prior_std = denoiser, budget, sigma_max, prior_std
        self.class_sampler = class_sampler
        g = torch.Generator().manual_seed(self.cfg.seed)
        torch.manual_seed(self.cfg.seed)
        h = self.cfg.hidden
        self.actor = _mlp(2, h, 1).double()  # μ_φ(u, ψ/T) (pre-softplus)
        self.critic = _mlp(3, h, 1).double()  # V(u, x-feature, ψ/T)
        with torch.no_grad():  # start at the uniform clock ϑ = 1: softplus(b) = 1
            self.actor[-1].weight.mul_(0.01)
            self.actor[-1].bias.fill_(math.log(math.e - 1))
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.actor_lr)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.critic_lr)
        self.generator = g
        self.iteration = 0
        self.gamma0 = float("nan")  # γ's initial scale, set by the first batch
        self.register_buffer("gamma", torch.tensor(float("nan"), dtype=torch.float64))
        self.reward_scale = float("nan")

    # --- policy ------------------------------------------------------------------------------
    def mean_speed(self, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """μ_φ(u, ψ/T) > 0, the mean normalised speed ϑ = θ / T."""
        return nn.functional.softplus(self.actor(torch.stack([u, s], -1)).squeeze(-1))

    def value(self, u: torch.Tensor, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """V(u, x, ψ/T); x enters as its RMS over dimensions scaled by the prior std."""
        xf = x.flatten(1).pow(2).mean(1).sqrt() / self.prior_std
        return self.critic(torch.stack([u, xf, s], -1)).squeeze(-1)

    def exploration_std(self) -> float:
        frac = min(self.iteration / max(self.cfg.iterations - 1, 1), 1.0)
        return self.cfg.exploration_std + frac * (self.cfg.final_std - self.cfg.exploration_std)

    # --- dynamics ----------------------------------------------------------------------------
    def _prior(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        dev, dt = self.denoiser.device, self.denoiser.dtype
        z = torch.randn((n, *self.denoiser.shape), generator=self.generator, dtype=dt)
        labels = None if self.class_sampler is None else self.class_sampler(n, self.generator)
        return (self.prior_std * z).to(dev), labels

    @torch.no_grad()
    def rollout(self, n: int, std: float | None = None, mean_only: bool = False) -> dict:
        """K steps of the clock for ``n`` trajectories; returns the per-step tensors."""
        std = self.exploration_std() if std is None else std
        x, labels = self._prior(n)
        K, T, floor = self.K, self.T, self.denoiser.sigma_min
        s = torch.zeros(n, dtype=torch.float64)  # ψ/T
        out = {k: [] for k in ("u", "x", "s", "theta", "q")}
        for k in range(K):
            u = torch.full((n,), k / K, dtype=torch.float64)
            mu = self.mean_speed(u, s)
            theta = mu if mean_only else mu + std * torch.randn(n, generator=self.generator)
            sigma = (T * (1 - s)).clamp(min=floor)  # σ_k = T − ψ_k, floored in the dynamics
            q, f = local_error_coefficient(self.denoiser, x, sigma.to(x.dtype), labels)
            for key, v in zip(out, (u, x, s, theta, q.double()), strict=True):
                out[key].append(v)
            s = s + theta / K  # ψ_{k+1} = ψ_k + θ_k Δu
            last = k == K - 1
            sigma_next = (T * (1 - s)).clamp(min=0.0 if last else floor)
            sigma_next = torch.minimum(sigma_next, torch.full_like(sigma_next, T))
            h = (sigma_next - sigma).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
            x = x + h * f  # Euler step x_{k+1} = x_k + (σ_{k+1} − σ_k) f(x_k, σ_k)
        out = {key: torch.stack(v) for key, v in out.items()}  # [K, n, ...]
        out["x_next"], out["s_final"] = x, s
        return out

    # --- one update --------------------------------------------------------------------------
    def _init_scales(self) -> None:
        """γ_0 and the reward scale from the uniform clock (ϑ = 1): 2 mean|Q| T²."""
        tr = self.rollout(self.cfg.batch_size, std=0.0, mean_only=True)
        qbar = float(tr["q"].mean()) * self.T**2
        self.reward_scale = qbar
        self.gamma0 = 2.0  # in reward-scale units: stationary point of −q ϑ² + γ ϑ at ϑ = 1
        self.gamma.fill_(self.gamma0)

    def running_reward(self, q: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """r = −|Q| θ² + γ θ in units of the reward scale (θ = T ϑ)."""
        return -(q * self.T**2 / self.reward_scale) * theta**2 + self.gamma * theta

    def update(self) -> dict:
        """One actor-critic + multiplier update on a fresh batch; returns scalar logs."""
        if math.isnan(self.reward_scale):
            self._init_scales()
        std = self.exploration_std()
        tr = self.rollout(self.cfg.batch_size, std=std)
        K, du = self.K, 1.0 / self.K
        r = self.running_reward(tr["q"], tr["theta"])  # [K, n]
        v = torch.stack([self.value(tr["u"][k], tr["x"][k], tr["s"][k]) for k in range(K)])
        v_next = torch.cat([v[1:].detach(), torch.zeros_like(v[:1])])  # V(1, ·) = 0
        delta = v_next + r * du - v  # TD increment δ_k
        critic_loss = delta.pow(2).mean()  # critic: minimise δ² with detached target
        self.opt_critic.zero_grad()
        critic_loss.backward()
        self.opt_critic.step()
        adv = delta.detach()
        mu = torch.stack([self.mean_speed(tr["u"][k], tr["s"][k]) for k in range(K)])
        logp = -0.5 * ((tr["theta"] - mu) / std).pow(2)  # log π(θ | u, ψ) + const
        actor_loss = -(logp * adv).mean()  # actor: ascend E[∇ log π δ]
        self.opt_actor.zero_grad()
        actor_loss.backward()
        self.opt_actor.step()
        violation = float(tr["s_final"].mean()) - 1.0  # E[ψ(1)]/T − 1
        self.gamma -= self.cfg.multiplier_lr * self.gamma0 * violation  # dual descent on γ
        self.iteration += 1
        return {
            "train/critic_loss": float(critic_loss.detach()),
            "train/actor_loss": float(actor_loss.detach()),
            "train/multiplier": float(self.gamma),
            "train/constraint_violation": violation,
            "train/surrogate": float((tr["q"] * (self.T * tr["theta"]) ** 2).sum(0).mean() * du),
            "train/exploration_std": std,
        }

    # --- distillation ------------------------------------------------------------------------
    @torch.no_grad()
    def mean_speeds(self) -> torch.Tensor:
        """ϑ_k of the mean-action rollout (deterministic: μ depends on (u, ψ) only)."""
        s = torch.zeros(1, dtype=torch.float64)
        out = []
        for k in range(self.K):
            mu = self.mean_speed(torch.full((1,), k / self.K, dtype=torch.float64), s)
            out.append(mu.clamp(min=1e-6))
            s = s + mu / self.K
        return torch.cat(out)

    def schedule(self) -> torch.Tensor:
        """The distilled fixed schedule: K + 1 σ from T to 0 (see :func:`clock_schedule`)."""
        return clock_schedule(self.mean_speeds(), self.T)

    def state(self) -> dict:
        """Everything :meth:`load_state` needs to resume (networks, optimisers, γ, RNG)."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "opt_actor": self.opt_actor.state_dict(),
            "opt_critic": self.opt_critic.state_dict(),
            "gamma": float(self.gamma),
            "gamma0": self.gamma0,
            "reward_scale": self.reward_scale,
            "iteration": self.iteration,
            "generator": self.generator.get_state(),
        }

    def load_state(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.opt_actor.load_state_dict(state["opt_actor"])
        self.opt_critic.load_state_dict(state["opt_critic"])
        self.gamma.fill_(state["gamma"])
        self.gamma0, self.reward_scale = state["gamma0"], state["reward_scale"]
        self.iteration = state["iteration"]
        self.generator.set_state(state["generator"])


# ---------------------------------------------------------------------------------------------
# Configuration (``diffusion-gym train`` maps the YAML onto these)


@dataclass
class EvalConfig:
    """The final evaluation (harness ``baselines.evaluate``, held-out noise seeds).

    :param num_samples: samples per seed.
    :param seeds: evaluation seeds (salts of x_T; training noise uses other streams).
    :param metrics: harness metric names (``rmse`` = RMSE to the fine reference solve).
    :param rho_grid: EDM ρ grid for the best-ρ baseline (picked on training noise).
    :param oracle: also optimise and evaluate the oracle fixed schedule (``baselines``).
    :param oracle_iterations: Adam iterations of the oracle's refinement.
    :param budgets: other budgets K for the learned schedule, log-linearly interpolated (and
        EDM ρ = 7 at the same K): the error-vs-NFE plot and the budget transfer table.
    :param transfer_presets: other presets the learned schedule is evaluated on (transfer).
    :param reference_steps: Heun steps of the harness's reference solve for ``rmse`` and of
        the best-ρ/oracle training set (None = the harness default, 256; smaller for the
        digits U-Net on CPU).
    :param train_samples: training-noise samples of the best-ρ grid search and the oracle.
    :param classic: extra hand-made baselines (``baselines.schedules.CLASSIC`` names other
        than ``edm``: ``uniform``, ``log-linear``, ``ddim``) at the same budget.
    """

    num_samples: int = 2048
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    metrics: list[str] = field(default_factory=lambda: ["rmse", "energy", "sliced_w"])
    rho_grid: list[float] = field(
        default_factory=lambda: [0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 30.0]
    )
    oracle: bool = True
    oracle_iterations: int = 200
    budgets: list[int] = field(default_factory=list)
    transfer_presets: list[str] = field(default_factory=list)
    reference_steps: int | None = None
    train_samples: int = 256
    classic: list[str] = field(default_factory=list)


@dataclass
class Config:
    """An ART-RL run (``agent: art``); YAML keys are these fields.

    :param preset: denoiser preset (``diffusion_gym.presets.names()``).
    :param budget: K solver steps; NFE K (Euler) or 2K − 1 (Heun).
    :param solver: ``"euler"`` or ``"heun"``.
    :param base: the Clock env's base clock, ``"edm"`` (karras ρ) or ``"linear"`` (ART).
    :param rho: ρ of the EDM base.
    :param speed_scale: β of the clock's action map.
    :param reward: the env reward, ``"terminal_error"`` or ``"local_error"``.
    :param reward_transform: ``"none"``; ``"log"`` (terminal reward −mse → −log(mse + ε) −
        the log-error reward, scale-free across samples whose errors span decades);
        ``"scale"`` (divide by a running mean |r|); ``"self_critical"`` (−(mse − mse_b) / m:
        the raw error minus the error mse_b that the policy's current *mean* schedule makes
        on the same (x_T, x_ref), divided by a running mean m of mse_b — a per-sample,
        action-independent baseline (self-critical training, Rennie et al. 2017), so the
        objective stays the mean squared error that RMSE measures while the spread of errors
        across x_T leaves the advantages; open-loop PPO/A2C only, see
        :class:`SelfCriticalReward`); ``"log_self_critical"`` (−log(mse + ε) + log(mse_b + ε):
        the log objective of ``"log"`` with the same per-sample baseline).
    :param algo: ``"ppo"``, ``"a2c"``, ``"sac"`` (SB3, Gaussian policies) or ``"art_ac"``
        (ART's continuous-time actor-critic; ``reward: local_error``, ``base: linear``, Euler).
    :param policy_inputs: ``"time"`` (log σ, k/K, remaining clock: an open-loop policy whose
        mean-action rollout *is* the distilled schedule) or ``"full"`` (the env's whole
        observation; distillation averages the mean action over a batch per step) or
        ``"asymmetric"`` (PPO/A2C: the actor sees the time features only, so it stays
        open-loop and distils exactly, while the critic V sees the whole observation, x
        included: a per-sample baseline that removes the spread of terminal errors across
        x_T from the advantages).
    :param num_envs: batch size of the vector env.
    :param total_timesteps: env steps (SB3; summed over envs).
    :param learning_rate: optimiser step (SB3).
    :param learning_rate_final: if set (SB3), the step decays linearly from ``learning_rate``
        to this value over training (the usual PPO annealing; lets the policy mean settle
        once exploration is small).
    :param net_arch: hidden layers of the policy and value networks (SB3).
    :param log_std_init: initial log std of the Gaussian policy (SB3).
    :param log_std_final: if set (PPO/A2C), the policy's log std is annealed linearly from
        ``log_std_init`` to this value over training (as ART's exploration decays): the
        smoothing of a wide Gaussian hides the narrow error valleys of few-step schedules.
    :param algo_kwargs: extra keyword arguments of the SB3 algorithm (override the defaults).
    :param bank_size, reference_steps: the env's (x_T, x_ref) bank.
    :param bank_sampling: ``"uniform"`` or ``"error"`` (with a self-critical reward): draw
        bank entry j with probability p_j = mix / N + (1 − mix) e_j / Σ e, e_j the latest
        error of the policy's mean schedule on entry j (all entries scored at the first
        rollout, then updated by every finished episode), and weight its reward by
        1 / (N p_j) so the objective stays the uniform mean error. Near a good schedule the
        mean is carried by a few entries (on gmm-64d 1 % of them carry half the MSE):
        drawn uniformly they arrive as rare, large advantages that PPO's stabilisers cap,
        drawn often with small weights they steer the update (docs/art_agent.md).
    :param bank_sampling_mix: ``mix`` above, in (0, 1]: bounds every weight by 1 / mix.
    :param restarts: independent trainings (seeds ``seed``, ``seed + 1``, …, each in
        ``restart<r>/`` with its own bank); the distilled schedule with the lowest RMSE on
        :data:`RESTART_SELECT_SAMPLES` training-noise samples of the harness (disjoint from
        every evaluation seed) is kept, as the oracle keeps its best restart. Few-step error
        landscapes have several valleys and which one a run settles in depends on the seed.
    :param distill_samples: batch used to read the mean actions.
    :param checkpoint_every: env steps (SB3) or iterations (art_ac) between checkpoints.
    :param seed: seed of everything.
    :param device: torch device.
    :param progress: show progress bars.
    :param num_threads: torch intra-op threads (None = torch's default).
    """

    agent: str = "art"
    preset: str = "gmm-ring8"
    budget: int = 3
    solver: str = "heun"
    base: str = "edm"
    rho: float = 7.0
    speed_scale: float = 3.0
    reward: str = "terminal_error"
    reward_transform: str = "log"
    algo: str = "ppo"
    policy_inputs: str = "time"
    num_envs: int = 64
    total_timesteps: int = 60_000
    learning_rate: float = 3e-4
    learning_rate_final: float | None = None
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    log_std_init: float = -1.5
    log_std_final: float | None = -4.5
    algo_kwargs: dict = field(default_factory=dict)
    bank_size: int = 4096
    reference_steps: int = 128
    bank_sampling: str = "uniform"
    bank_sampling_mix: float = 0.5
    restarts: int = 1
    distill_samples: int = 256
    checkpoint_every: int = 20_000
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    num_threads: int | None = None
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        checks = {
            "agent": (self.agent, ("art",)),
            "solver": (self.solver, _steps.SOLVERS),
            "base": (self.base, ("edm", "linear")),
            "reward": (self.reward, ("terminal_error", "local_error")),
            "reward_transform": (self.reward_transform, REWARD_TRANSFORMS),
            "algo": (self.algo, ALGOS),
            "policy_inputs": (self.policy_inputs, POLICY_INPUTS),
            "bank_sampling": (self.bank_sampling, ("uniform", "error")),
        }
        for name, (value, valid) in checks.items():
            if value not in valid:
                raise ValueError(f"{name} must be one of {valid}, got {value!r}")
        if self.preset not in _presets.names():
            raise ValueError(f"preset must be one of {_presets.names()}, got {self.preset!r}")
        for name in ("budget", "num_envs", "total_timesteps", "distill_samples", "restarts"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if self.reward_transform.endswith("self_critical") and (
            self.algo not in ("ppo", "a2c")
            or self.policy_inputs not in ("time", "asymmetric")
            or self.reward != "terminal_error"
        ):
            raise ValueError(
                f"reward_transform {self.reward_transform!r} needs algo 'ppo' or 'a2c', "
                "policy_inputs 'time' or 'asymmetric' (an open-loop actor: its mean is one "
                "schedule) and "
                f"reward 'terminal_error', got algo={self.algo!r}, "
                f"policy_inputs={self.policy_inputs!r}, reward={self.reward!r}"
            )
        if not (
            isinstance(self.bank_sampling_mix, (int, float)) and 0 < self.bank_sampling_mix <= 1
        ):
            raise ValueError(f"bank_sampling_mix must be in (0, 1], got {self.bank_sampling_mix!r}")
        if self.bank_sampling == "error" and not self.reward_transform.endswith("self_critical"):
            raise ValueError(
                "bank_sampling 'error' needs reward_transform 'self_critical' or "
                f"'log_self_critical' (it scores the mean schedule per entry), got "
                f"{self.reward_transform!r}"
            )
        if self.algo == "art_ac" and (self.base, self.solver) != ("linear", "euler"):
            raise ValueError(
                "algo 'art_ac' is ART's Euler surrogate: needs base=linear, solver=euler"
            )


# ---------------------------------------------------------------------------------------------
# SB3 actor-critic on the batched Clock env


def _vec_wrappers():
    """VecEnv wrappers defined lazily (SB3 is imported only when training)."""
    from gymnasium import spaces
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class TimeInputs(VecEnvWrapper):
        """Keep the clock's time features (log σ, k/K, remaining clock): an open-loop policy."""

        def __init__(self, venv):
            space = venv.observation_space
            box = spaces.Box(space.low[:3], space.high[:3], dtype=space.dtype)
            super().__init__(venv, observation_space=box)

        def reset(self):
            return self.venv.reset()[:, :3]

        def step_wait(self):
            obs, rew, done, infos = self.venv.step_wait()
            for info in infos:
                if "terminal_observation" in info:
                    info["terminal_observation"] = info["terminal_observation"][:3]
            return obs[:, :3], rew, done, infos

    class RewardTransform(VecEnvWrapper):
        """Terminal reward r = −mse → −log(mse + ε) (``"log"``) or r / running mean |r|
        (``"scale"``); the env's reward stays in ``info["env_reward"]``."""

        def __init__(self, venv, kind: str, eps: float = 1e-12):
            super().__init__(venv)
            self.kind, self.eps, self.scale = kind, eps, None

        def reset(self):
            return self.venv.reset()

        def step_wait(self):
            obs, rew, done, infos = self.venv.step_wait()
            for info, r in zip(infos, rew, strict=True):
                info["env_reward"] = float(r)
            if self.kind == "log":
                mse = np.maximum(-rew.astype(np.float64), 0.0)
                rew = np.where(rew != 0, -np.log(mse + self.eps), 0.0)
            elif self.kind == "scale":
                nz = np.abs(rew[rew != 0])
                if nz.size:
                    m = float(nz.mean())
                    self.scale = m if self.scale is None else 0.99 * self.scale + 0.01 * m
                if self.scale:
                    rew = rew / self.scale
            return obs, rew.astype(np.float32), done, infos

    class SelfCriticalReward(VecEnvWrapper):
        """Terminal reward −(mse − mse_b) / m (``log=False``) or −log(mse + ε) + log(mse_b + ε)
        (``log=True``) with a self-critical baseline.

        mse_b is the terminal error of the policy's current mean schedule (set by
        :meth:`set_schedule` at every rollout start) from the same x_T to the same x_ref; it
        does not depend on the episode's actions, so subtracting it leaves the policy
        gradient of E[mse] unbiased (a state-dependent baseline on the initial state) while
        removing most of the spread of errors across x_T (per-sample errors near a good
        schedule have a coefficient of variation of ~8 on gmm-64d; their difference to the
        mean schedule's error on the same x_T correlates at ~0.9). m is a running mean of
        mse_b (a scale only). The env's reward stays in ``info["env_reward"]``.

        ``sampling_mix`` (``bank_sampling: error``): at every :meth:`set_schedule` the env
        draws bank entry j with p_j = mix / N + (1 − mix) e_j / Σ e (e_j: the mean schedule's
        latest error on entry j; the whole bank is scored at the first call, then each
        finished episode updates its entry) and the reward is multiplied by the episode's
        weight 1 / (N p_j), so its mean over episodes still estimates the uniform-bank one.
        """

        def __init__(
            self, venv, core, log: bool = False, eps: float = 1e-12,
            sampling_mix: float | None = None,
        ):  # fmt: skip
            super().__init__(venv)
            self.core, self.sigmas, self.scale, self.log, self.eps = core, None, None, log, eps
            self.sampling_mix, self.errors = sampling_mix, None

        def set_schedule(self, sigmas: torch.Tensor) -> None:
            self.sigmas = sigmas.to(self.core.device, torch.float64)
            if self.sampling_mix is None:
                return
            if self.errors is None:  # score every bank entry once
                self.errors = self._bank_errors()
            n, mix = len(self.errors), self.sampling_mix
            e = np.maximum(self.errors, 1e-300)
            self.core.set_bank_probs(mix / n + (1.0 - mix) * e / e.sum())

        def _mse_b(self, x_T, x_ref, labels) -> np.ndarray:  # noqa: N803
            core = self.core
            with torch.no_grad():
                x_b = _steps.sample(
                    core.denoiser, x_T, self.sigmas, class_labels=labels,
                    guidance=core.guidance, solver=core.solver,
                )  # fmt: skip
            return (x_b - x_ref).reshape(len(x_T), -1).pow(2).mean(1).cpu().numpy()

        def _bank_errors(self) -> np.ndarray:
            core = self.core
            if core.bank is None:
                core.build_bank()
            bank, out = core.bank, []
            for lo in range(0, core.bank_size, 1024):
                sl = slice(lo, lo + 1024)
                lab = None if bank["labels"] is None else bank["labels"][sl]
                out.append(self._mse_b(bank["x_T"][sl], bank["x_ref"][sl], lab))
            return np.concatenate(out).astype(np.float64)

        def reset(self):
            return self.venv.reset()

        def step_wait(self):
            if self.sigmas is None:
                raise RuntimeError("SelfCriticalReward.set_schedule was not called")
            core = self.core  # the episode's rows, read before the step autoresets them
            x_T, x_ref, labels, idx = core.x_T, core.x_ref, core.labels, core.idx
            weight = core.bank_weight
            obs, rew, done, infos = self.venv.step_wait()
            for info, r in zip(infos, rew, strict=True):
                info["env_reward"] = float(r)
            if done.any():
                sel = torch.as_tensor(np.flatnonzero(done), device=core.device)
                lab = None if labels is None else labels[sel]
                mse_b = self._mse_b(x_T[sel], x_ref[sel], lab)
                w = np.ones(len(mse_b)) if weight is None else weight[sel].cpu().numpy()
                if self.errors is not None:
                    self.errors[idx[sel].cpu().numpy()] = mse_b
                rew = rew.astype(np.float64)
                if self.log:  # −log(mse + ε) + log(mse_b + ε)
                    mse = np.maximum(-rew[done], 0.0)
                    rew[done] = w * (np.log(mse_b + self.eps) - np.log(mse + self.eps))
                else:  # m: running (weighted) mean of mse_b over the uniform bank
                    m = float((w * mse_b).mean())
                    self.scale = m if self.scale is None else 0.99 * self.scale + 0.01 * m
                    rew[done] = w * (rew[done] + mse_b) / max(self.scale, 1e-30)
            return obs, rew.astype(np.float32), done, infos

    return TimeInputs, RewardTransform, SelfCriticalReward


def make_env(
    cfg: Config,
    num_envs: int | None = None,
    bank_size: int | None = None,
    reward_transform: bool = True,
):
    """The SB3 view of the batched ``ClockVectorEnv`` for ``cfg`` (+ input/reward wrappers;
    ``reward_transform=False`` leaves the env's own reward, as distillation needs)."""
    from agents.vec_env import SB3VecEnv
    from diffusion_gym.envs.clock import ClockVectorEnv

    venv = ClockVectorEnv(
        cfg.preset, budget=cfg.budget, solver=cfg.solver, base=cfg.base, rho=cfg.rho,
        speed_scale=cfg.speed_scale, reward=cfg.reward, reference_steps=cfg.reference_steps,
        bank_size=bank_size or cfg.bank_size, bank_seed=cfg.seed, device=cfg.device,
        num_envs=num_envs or cfg.num_envs,
    )  # fmt: skip
    env = SB3VecEnv(venv)
    env.seed(cfg.seed)
    time_inputs, transform, self_critical = _vec_wrappers()
    if cfg.policy_inputs == "time":
        env = time_inputs(env)
    if reward_transform and cfg.reward_transform.endswith("self_critical"):
        mix = cfg.bank_sampling_mix if cfg.bank_sampling == "error" else None
        log = cfg.reward_transform.startswith("log")
        env = self_critical(env, venv.core, log=log, sampling_mix=mix)
    elif reward_transform and cfg.reward_transform != "none":
        env = transform(env, cfg.reward_transform)
    return env, venv


def _find_wrapper(env, name: str):
    """The wrapper of class ``name`` in a VecEnv wrapper chain, or None."""
    while env is not None:
        if type(env).__name__ == name:
            return env
        env = getattr(env, "venv", None)
    return None


def _algo_defaults(cfg: Config) -> dict[str, Any]:
    """Sensible defaults per algorithm: undiscounted episodes of K steps (γ = 1)."""
    K, n = cfg.budget, cfg.num_envs
    if cfg.algo == "ppo":  # 8 episodes per env per rollout, 4 minibatches, GAE λ = 1
        return dict(n_steps=8 * K, batch_size=max(8 * K * n // 4, 2), n_epochs=10,
                    gamma=1.0, gae_lambda=1.0, ent_coef=0.0, clip_range=0.2)  # fmt: skip
    if cfg.algo == "a2c":  # one episode per env per update, Monte-Carlo returns
        return dict(n_steps=K, gamma=1.0, gae_lambda=1.0, ent_coef=0.0, normalize_advantage=True)
    return dict(gamma=1.0, learning_starts=10 * n, batch_size=256, train_freq=1,
                gradient_steps=max(n // 16, 1), buffer_size=200_000)  # fmt: skip


def _time_actor_policy():
    """SB3 ``ActorCriticPolicy`` whose actor reads only the first 3 (time) features and whose
    critic reads all of them (``policy_inputs: asymmetric``); defined lazily (SB3 import)."""
    from stable_baselines3.common.policies import ActorCriticPolicy

    class SplitExtractor(nn.Module):
        """Actor MLP on features[:, :3], critic MLP on all features (no shared layers)."""

        def __init__(self, feature_dim: int, net_arch, activation_fn, device=None):
            super().__init__()
            sizes = list(net_arch.get("pi", [])) if isinstance(net_arch, dict) else list(net_arch)

            def mlp(n_in: int) -> nn.Sequential:
                layers: list[nn.Module] = []
                for h in sizes:
                    layers += [nn.Linear(n_in, h), activation_fn()]
                    n_in = h
                return nn.Sequential(*layers)

            self.policy_net, self.value_net = mlp(3), mlp(feature_dim)
            self.latent_dim_pi = self.latent_dim_vf = sizes[-1] if sizes else 3

        def forward(self, features: torch.Tensor):
            return self.forward_actor(features), self.forward_critic(features)

        def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
            return self.policy_net(features[:, :3])  # time features only: open loop

        def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
            return self.value_net(features)  # (time, x): a per-sample baseline

    class TimeActorPolicy(ActorCriticPolicy):
        def _build_mlp_extractor(self) -> None:
            self.mlp_extractor = SplitExtractor(
                self.features_dim, self.net_arch, self.activation_fn, self.device
            )

    return TimeActorPolicy


def make_model(cfg: Config, env, tensorboard_log: str | None = None):
    """The SB3 algorithm (PPO, A2C or SAC, Gaussian policy ``MlpPolicy``) for ``cfg``."""
    from stable_baselines3 import A2C, PPO, SAC

    cls = {"ppo": PPO, "a2c": A2C, "sac": SAC}[cfg.algo]
    kwargs = {**_algo_defaults(cfg), **cfg.algo_kwargs}
    policy_kwargs = dict(net_arch=list(cfg.net_arch), log_std_init=cfg.log_std_init)
    policy = "MlpPolicy"
    lr: Any = cfg.learning_rate
    if cfg.learning_rate_final is not None:  # SB3 passes progress_remaining: 1 → 0
        lr0, lr1 = cfg.learning_rate, cfg.learning_rate_final
        if not (lr1 >= 0 and lr0 > 0):
            raise ValueError(f"learning_rate_final must be >= 0, got {lr1!r}")
        lr = lambda remaining: lr1 + (lr0 - lr1) * remaining  # noqa: E731
    if cfg.policy_inputs == "asymmetric":
        if cfg.algo == "sac":
            raise ValueError("policy_inputs 'asymmetric' needs algo 'ppo' or 'a2c', got 'sac'")
        policy = _time_actor_policy()
    return cls(
        policy, env, learning_rate=lr, policy_kwargs=policy_kwargs,
        seed=cfg.seed, device="cpu", tensorboard_log=tensorboard_log, verbose=0, **kwargs,
    )  # fmt: skip


@torch.no_grad()
def distill(model, cfg: Config) -> tuple[torch.Tensor, np.ndarray]:
    """The learned policy → fixed schedule: the mean (deterministic) action of every step,
    averaged over ``distill_samples`` trajectories, mapped by the env's
    ``schedule_from_actions``. Returns ``(sigmas [K+1], mean actions [K])``."""
    env, venv = make_env(
        cfg, num_envs=cfg.distill_samples, bank_size=cfg.distill_samples, reward_transform=False
    )
    sigmas, mean = _mean_schedule(model, env, venv, cfg.budget)
    env.close()
    return sigmas, mean


def _mean_schedule(model, env, venv, budget: int) -> tuple[torch.Tensor, np.ndarray]:
    """One deterministic episode of ``model`` on ``env``: the schedule of the batch-mean
    action per step, and those actions [K]."""
    obs = env.reset()
    actions = []
    for _ in range(budget):
        a, _ = model.predict(obs, deterministic=True)  # the policy's mean, squashed/clipped
        actions.append(np.clip(a[:, 0], -1.0, 1.0))
        obs, _, _, _ = env.step(a)
    mean = np.stack(actions, 1).mean(0)
    return venv.schedule_from_actions(torch.as_tensor(mean, dtype=torch.float64)), mean


def _callbacks(cfg: Config, out_dir: Path | None, start: int):
    """SB3 callbacks: exploration annealing, TensorBoard charts, checkpoints."""
    from stable_baselines3.common.callbacks import BaseCallback

    class ArtCallback(BaseCallback):
        """Anneal log std; log terminal MSE and mean actions; checkpoint every N steps."""

        def __init__(self):
            super().__init__()
            self.last_ckpt, self.errors, self.probe = start, [], None

        def _on_rollout_start(self) -> None:
            if cfg.policy_inputs != "full":  # open loop: the policy's mean is one schedule
                if self.probe is None:  # one env is enough to read it
                    self.probe = make_env(cfg, num_envs=1, bank_size=1, reward_transform=False)
                sigmas, acts = _mean_schedule(self.model, *self.probe, cfg.budget)
                critic = _find_wrapper(self.model.get_env(), "SelfCriticalReward")
                if critic is not None:  # the baseline follows the policy's current mean
                    critic.set_schedule(sigmas)
                for k, sig in enumerate(sigmas[1:-1].tolist(), start=1):
                    self.logger.record(f"charts/sigma_{k}", sig)
                if out_dir is not None:  # the mean schedule along training, one line a rollout
                    line = {"step": self.model.num_timesteps, "actions": acts.tolist(),
                            "sigmas": sigmas.tolist()}  # fmt: skip
                    with open(out_dir / "mean_schedules.jsonl", "a") as f:
                        f.write(json.dumps(line) + "\n")
            pol = self.model.policy
            if cfg.log_std_final is not None and hasattr(pol, "log_std"):
                frac = min(self.model.num_timesteps / cfg.total_timesteps, 1.0)
                v = cfg.log_std_init + frac * (cfg.log_std_final - cfg.log_std_init)
                with torch.no_grad():
                    pol.log_std.fill_(v)
                self.logger.record("train/log_std_annealed", v)

        def _on_step(self) -> bool:
            for info, done in zip(self.locals["infos"], self.locals["dones"], strict=True):
                if done and "env_reward" in info:
                    self.errors.append(-info["env_reward"])
                elif done:
                    self.errors.append(-float(self.locals.get("rewards", [0])[0]))
            if self.errors and len(self.errors) >= cfg.num_envs:
                e = np.asarray(self.errors)
                self.logger.record("charts/terminal_rmse", float(np.sqrt(e.mean())))
                self.logger.record("charts/log_terminal_mse", float(np.log(e + 1e-12).mean()))
                self.errors = []
            n = self.model.num_timesteps
            if out_dir is not None and n - self.last_ckpt >= cfg.checkpoint_every:
                self.model.save(out_dir / "checkpoints" / f"model_{n}.zip")
                self.last_ckpt = n
            return True

    return ArtCallback()


# ---------------------------------------------------------------------------------------------
# Closed-form W2 on the 1-D Gaussian toy, transfer


def gaussian_1d_w2(preset, sigmas, solver: str) -> float:
    """Closed-form W2 between the sampler's output and the data on a 1-D Gaussian preset.

    With Gaussian data and a Gaussian (linear) denoiser, every solver step is linear, so
    x_K = a · x_T with a = the sampler run from x_T = 1; x_T ~ N(0, prior_std²) gives
    x_K ~ N(0, (a · prior_std)²) and W2 = |a · prior_std − std_data| (same mean 0)
    (``diffusion_gym.metrics.gaussian_w2_1d``). For art-gauss1d: W2 = |a √10 − 1|.
    """
    from diffusion_gym.metrics import gaussian_w2_1d

    data = preset.data
    if preset.denoiser.dim != 1 or getattr(data, "num_components", 0) != 1:
        raise ValueError(f"gaussian_1d_w2 needs a 1-D single-Gaussian preset, got {preset.name}")
    one = torch.ones(1, 1, dtype=preset.denoiser.dtype, device=preset.denoiser.device)
    zero = torch.zeros_like(one)
    sig = torch.as_tensor(sigmas, dtype=torch.float64)
    a = float(_steps.sample(preset.denoiser, one, sig, solver=solver)[0, 0])
    b = float(_steps.sample(preset.denoiser, zero, sig, solver=solver)[0, 0])  # offset
    mu, std = float(data.means.reshape(-1)[0]), float(data.covariances.reshape(-1)[0]) ** 0.5
    return gaussian_w2_1d(b, abs(a) * preset.prior_std, mu, std)


def transfer_schedule(
    sigmas, budget: int | None = None, sigma_range=None, source_range=None
) -> torch.Tensor:
    """A learned schedule moved to another budget and/or σ range.

    :param budget: K' steps by log-linear interpolation over the step index
        (``diffusion_gym.schedules.interpolate``; endpoints and the final 0 kept).
    :param sigma_range: ``(σ_min', σ_max')`` of another denoiser: log σ is mapped affinely
        from ``source_range`` onto it (σ_max → σ_max', σ_min → σ_min').
    :param source_range: ``(σ_min, σ_max)`` of the denoiser the schedule was learned on;
        default: the schedule's own last positive and first σ.
    """
    s = _schedules.validate(torch.as_tensor(sigmas, dtype=torch.float64))
    if sigma_range is not None:
        lo, hi = (float(v) for v in sigma_range)
        src = (float(s[-2]), float(s[0])) if source_range is None else source_range
        s_lo, s_hi = (float(v) for v in src)
        if not (0 < lo < hi and 0 < s_lo < s_hi):
            raise ValueError(
                f"sigma_range and source_range must be (sigma_min, sigma_max) with "
                f"0 < min < max, got {sigma_range}, {src}"
            )
        t = (s[:-1].log() - math.log(s_lo)) / (math.log(s_hi) - math.log(s_lo))
        pos = torch.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
        s = torch.cat([pos, s.new_zeros(1)])
    return s if budget is None else _schedules.interpolate(s, budget)


# ---------------------------------------------------------------------------------------------
# Training entry (``diffusion-gym train``)


def _latest(ckpt_dir: Path, pattern: str) -> Path | None:
    found = sorted(ckpt_dir.glob(pattern), key=lambda p: int(p.stem.split("_")[-1]))
    return found[-1] if found else None


def _train_sb3(cfg: Config, out: Path, resume: bool) -> tuple[torch.Tensor, list[float]]:
    from stable_baselines3 import A2C, PPO, SAC

    env, _ = make_env(cfg)
    ckpt = _latest(out / "checkpoints", "model_*.zip") if resume else None
    tb = str(out / "tb")
    if ckpt is not None:
        cls = {"ppo": PPO, "a2c": A2C, "sac": SAC}[cfg.algo]
        model = cls.load(ckpt, env=env, tensorboard_log=tb, device="cpu")
        print(f"resuming from {ckpt} at {model.num_timesteps} steps")
    else:
        model = make_model(cfg, env, tensorboard_log=tb)
    remaining = cfg.total_timesteps - model.num_timesteps
    if remaining > 0:
        model.learn(
            remaining, callback=_callbacks(cfg, out, model.num_timesteps), tb_log_name="art",
            reset_num_timesteps=ckpt is None, progress_bar=cfg.progress,
        )  # fmt: skip
    model.save(out / "checkpoints" / f"model_{model.num_timesteps}.zip")
    env.close()
    sigmas, actions = distill(model, cfg)
    return sigmas, [float(a) for a in actions]


def _train_art_ac(cfg: Config, out: Path, resume: bool) -> tuple[torch.Tensor, list[float]]:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    p = _presets.make(cfg.preset, device=cfg.device)
    labels = None
    if p.num_classes > 0:
        labels = lambda n, g: p.data.sample_labels(n, generator=g)  # noqa: E731
    ac = ContinuousActorCritic(p.denoiser, cfg.budget, p.sigma_max, p.prior_std,
                               cfg.actor_critic, class_sampler=labels)  # fmt: skip
    ckpt = _latest(out / "checkpoints", "art_ac_*.pt") if resume else None
    if ckpt is not None:
        ac.load_state(torch.load(ckpt, weights_only=False))
        print(f"resuming from {ckpt} at iteration {ac.iteration}")
    writer = SummaryWriter(str(out / "tb" / "art_ac"))
    total = cfg.actor_critic.iterations
    bar = tqdm(total=total, initial=ac.iteration, disable=not cfg.progress, desc="art_ac")
    while ac.iteration < total:
        logs = ac.update()
        for k, v in logs.items():
            writer.add_scalar(k, v, ac.iteration)
        bar.update(1)
        if ac.iteration % cfg.checkpoint_every == 0 or ac.iteration == total:
            torch.save(ac.state(), out / "checkpoints" / f"art_ac_{ac.iteration}.pt")
    bar.close()
    writer.close()
    return ac.schedule(), [float(v) for v in ac.mean_speeds()]


def _row(value: float) -> dict[str, Any]:
    return {"mean": float(value), "std": 0.0, "values": [float(value)]}


def _evaluate(cfg: Config, sigmas: torch.Tensor, out: Path) -> dict:
    """Learned schedule vs base, EDM ρ=7, best ρ, oracle on held-out noise; budgets; transfer."""
    from baselines import schedules as B  # noqa: N812
    from baselines.evaluate import FixedSchedule, evaluate, markdown_table, write_report

    ev, K, solver = cfg.eval, cfg.budget, cfg.solver
    p = _presets.make(cfg.preset, device=cfg.device)
    common = dict(num_samples=ev.num_samples, seeds=ev.seeds, metrics=ev.metrics,
                  progress=cfg.progress, reference=ev.reference_steps)  # fmt: skip
    learned = f"art-{cfg.algo}"
    base = _schedules.linear(K, p.sigma_max) if cfg.base == "linear" else None
    strategies = [FixedSchedule(learned, sigmas, solver)]
    strategies.append(FixedSchedule("edm-rho7", B.classic("edm", K, p, rho=7.0), solver))
    if base is not None:
        strategies.append(FixedSchedule("uniform-linear", base, solver))
    if K > 1:
        ref_kw = {} if ev.reference_steps is None else {"reference_steps": ev.reference_steps}
        data = B.training_set(p, ev.train_samples, seed=cfg.seed, **ref_kw)
        rho, _ = B.best_rho(p, K, solver, ev.rho_grid, data=data)
        strategies.append(
            FixedSchedule(f"edm-best-rho{rho:g}", B.classic("edm", K, p, rho=rho), solver)
        )
        if ev.oracle:
            orc = B.oracle(p, K, solver, data=data, iterations=ev.oracle_iterations, seed=cfg.seed)
            strategies.append(FixedSchedule("oracle", orc.sigmas, solver))
    for kind in ev.classic:  # hand-made baselines on the preset's σ range
        strategies.append(FixedSchedule(kind, B.classic(kind, K, p), solver))
    budget_rows = []  # the learned schedule interpolated to other K, and EDM ρ=7 there
    for k2 in ev.budgets:
        budget_rows += [
            FixedSchedule(f"{learned}@K{k2}", transfer_schedule(sigmas, k2), solver),
            FixedSchedule(f"edm-rho7@K{k2}", B.classic("edm", k2, p, rho=7.0), solver),
        ]
    everything = evaluate(strategies + budget_rows, p, **common)  # one reference solve
    results = {s.name: everything[s.name] for s in strategies}
    transfer = {s.name: everything[s.name] for s in budget_rows}
    if p.denoiser.dim == 1 and getattr(p.data, "num_components", 0) == 1:
        for s in strategies:
            results[s.name]["w2"] = _row(gaussian_1d_w2(p, s.sigmas, solver))
    by_nfe: dict[str, dict[int, dict]] = {learned: {}, "edm-rho7": {}}
    for s in strategies[:2] + budget_rows:
        by_nfe[learned if s.name.startswith(learned) else "edm-rho7"][s.nfe] = everything[s.name]
    for name in ev.transfer_presets:
        q = _presets.make(name, device=cfg.device)
        moved = transfer_schedule(
            sigmas, None, (q.sigma_min, q.sigma_max), (p.sigma_min, p.sigma_max)
        )
        edm = B.classic("edm", K, q, rho=7.0)
        rows = [FixedSchedule(f"{learned}@{name}", moved, solver),
                FixedSchedule(f"edm-rho7@{name}", edm, solver)]  # fmt: skip
        transfer.update(evaluate(rows, q, **common))
    title = f"ART-RL {cfg.algo} on {cfg.preset}, {solver} K={K} (NFE {strategies[0].nfe})"
    write_report(results, out, title=title,
                 plots={"strategies": strategies, "by_nfe": by_nfe, "metric": "rmse"})  # fmt: skip
    if transfer:
        (out / "transfer.json").write_text(json.dumps(transfer, indent=2))
        (out / "transfer.md").write_text(markdown_table(transfer, f"Transfer of {learned}"))
    print(markdown_table(results, title))
    if transfer:
        print(markdown_table(transfer, f"Transfer of {learned}"))
    return results


#: Training-noise samples that score the restarts (``Config.restarts``).
RESTART_SELECT_SAMPLES = 1024


def _train_once(cfg: Config, out: Path, resume: bool) -> tuple[torch.Tensor, list[float]]:
    if cfg.algo == "art_ac":
        return _train_art_ac(cfg, out, resume)
    return _train_sb3(cfg, out, resume)


def _train_restarts(cfg: Config, out: Path, resume: bool):
    """Train ``cfg.restarts`` seeds in ``out/restart<r>`` (a finished one is reused on
    resume) and keep the schedule with the lowest RMSE on the harness's training noise."""
    from baselines import schedules as B

    p = _presets.make(cfg.preset, device=cfg.device)
    data = B.training_set(p, RESTART_SELECT_SAMPLES, seed=0)
    runs = []
    for r in range(cfg.restarts):
        sub, sub_cfg = out / f"restart{r}", replace(cfg, seed=cfg.seed + r)
        (sub / "checkpoints").mkdir(parents=True, exist_ok=True)
        done = sub / "distilled.json"
        if resume and done.exists():
            rec = json.loads(done.read_text())
            sig, means = torch.tensor(rec["sigmas"], dtype=torch.float64), rec["policy_means"]
        else:
            torch.manual_seed(sub_cfg.seed)
            sig, means = _train_once(sub_cfg, sub, resume)
            rec = {"sigmas": _schedules.schedule_to_list(sig), "policy_means": means}
            done.write_text(json.dumps(rec, indent=2))
        rmse = B.schedule_rmse(p, sig, cfg.solver, data)
        print(f"restart {r} (seed {sub_cfg.seed}): training-noise RMSE {rmse:.4g}")
        runs.append((rmse, r, sig, means))
    best = min(runs, key=lambda t: t[0])
    extra = {"restart": best[1], "restart_train_rmse": [t[0] for t in runs],
             "restart_select_samples": RESTART_SELECT_SAMPLES}  # fmt: skip
    return best[2], best[3], extra


def run(config: Config, out_dir: str | Path, resume: bool = False) -> dict:
    """Train (SB3 PPO/A2C/SAC or ART's actor-critic), distil, export ``schedule.json``,
    evaluate against the baselines with the harness; returns the ``eval.json`` results.

    Writes into ``out_dir``: ``checkpoints/`` (``--resume`` continues from the latest;
    with ``restarts`` > 1 each restart's files are in ``restart<r>/``),
    ``tb/`` (TensorBoard), ``schedule.json``, ``distilled.json`` (mean actions or speeds),
    ``eval.json``/``eval.md``/PNGs, and ``transfer.json``/``transfer.md`` when asked for.
    """
    cfg, out = config, Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.num_threads is not None:
        if not isinstance(cfg.num_threads, int) or cfg.num_threads < 1:
            raise ValueError(f"num_threads must be None or an int >= 1, got {cfg.num_threads!r}")
        torch.set_num_threads(cfg.num_threads)
    t0 = time.time()
    if cfg.restarts == 1:
        sigmas, policy_means = _train_once(cfg, out, resume)
        extra = {}
    else:
        sigmas, policy_means, extra = _train_restarts(cfg, out, resume)
    train_s = time.time() - t0
    _schedules.save_schedule(out / "schedule.json", sigmas, cfg.solver, cfg.budget, cfg.preset)
    record = {"policy_means": policy_means, "sigmas": _schedules.schedule_to_list(sigmas),
              "train_seconds": train_s, **extra}  # fmt: skip
    (out / "distilled.json").write_text(json.dumps(record, indent=2))
    print(f"distilled schedule ({train_s:.0f} s): {[round(float(s), 4) for s in sigmas]}")
    return _evaluate(cfg, sigmas, out)
