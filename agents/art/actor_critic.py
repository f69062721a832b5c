"""ART's own continuous-time actor-critic for the local-error surrogate (linear clock σ = T − ψ).

ART (Huang, Tang & Zhou, arXiv 2601.18681) treats the speed θ = dψ/du of a reparameterised
clock ψ(u), u ∈ [0, 1], as a control. :class:`ContinuousActorCritic` learns it with a critic
V(u, x, ψ), TD increments with the running reward −|Q|θ² + γθ (the multiplier term), a
Gaussian policy on θ, and the Lagrange multiplier γ updated on the terminal-time constraint
ψ(1) = T. :func:`clock_schedule` turns its mean speeds into a fixed schedule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diffusion_gym.denoisers.base import Denoiser

from .config import ActorCriticConfig

__all__ = ["local_error_coefficient", "clock_schedule", "ContinuousActorCritic"]


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
        h = self.cfg.hidden
        with torch.random.fork_rng(devices=[]):  # networks from cfg.seed; global RNG untouched
            torch.manual_seed(self.cfg.seed)
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
