"""Occupancy discriminator and f-divergence rewards for inverse RL on diffusion sampling.

The discriminator d(s) sees one observation vector s = (x_k, log σ_k, k/N, one-hot c) of the
Guidance env (so it is d(x, σ, c)) and is trained with the logistic loss to tell expert
states (real x_0 ~ data(c) noised to σ_k) from the policy's states at the same σ_k and class.
At the optimum its logit is ℓ(s) = log p_E(s) / p_π(s) (Goodfellow et al. 2014, Prop. 1).

Rewards (Ghasemipour et al. 2019, "A Divergence Minimization Perspective on Imitation
Learning", f-MAX). The policy minimises D_f(p_E ‖ p_π) = E_π[f(u)], u = p_E/p_π. Its
functional derivative with respect to p_π(s) is f(u) − u f'(u) = −f*(f'(u)), so the per-state
reward whose expected sum the policy maximises is

    r(s) = f*(f'(u)) = u f'(u) − f(u),   u = exp(ℓ(s)),

which is also the policy's term of the variational bound D_f ≥ E_E[T] − E_π[f*(T)] at the
optimal T = f'(u). Worked out (constants dropped where marked, they do not change the policy):

====================  ===================  =========================================
name                  f(u)                 r(ℓ)
====================  ===================  =========================================
``reverse_kl`` (AIRL) −log u               ℓ  (+ const −1)
``forward_kl``        u log u              exp(ℓ)
``js`` (GAIL)         u log u − (u+1)      softplus(ℓ) − log 2 = −log(1 − D) − log 2
                      log((u+1)/2)
``chi2`` (Pearson)    (u − 1)²             exp(2ℓ) − 1
====================  ===================  =========================================

reverse KL is mode seeking, forward KL and χ² mass covering (their rewards grow without bound
in the expert's regions the policy misses), JS sits between.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = [
    "DIVERGENCES",
    "Discriminator",
    "DiscriminatorConfig",
    "f_divergence",
    "grad_penalty",
    "logistic_loss",
    "reward_from_logit",
    "train_discriminator",
]


# f(u) of each divergence, as functions of u = p_E / p_π (for tests and docs).
DIVERGENCES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "reverse_kl": lambda u: -torch.log(u),
    "forward_kl": lambda u: u * torch.log(u),
    "js": lambda u: u * torch.log(u) - (u + 1) * torch.log((u + 1) / 2),
    "chi2": lambda u: (u - 1) ** 2,
}


def f_divergence(name: str, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """D_f(p ‖ q) = Σ q f(p/q) for discrete distributions ``p``, ``q`` (the definition)."""
    _check_name(name)
    return (q * DIVERGENCES[name](p / q)).sum(-1)


def _check_name(name: str) -> None:
    if name not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {sorted(DIVERGENCES)}, got {name!r}")


def reward_from_logit(logit: torch.Tensor, divergence: str = "reverse_kl") -> torch.Tensor:
    """Per-state reward r = f*(f'(e^ℓ)) of the f-divergence ``divergence`` (see module doc).

    :param logit: discriminator logits ℓ ≈ log p_E/p_π, any shape.
    :param divergence: ``"reverse_kl"`` (AIRL), ``"forward_kl"``, ``"js"`` (GAIL), ``"chi2"``.
    """
    _check_name(divergence)
    if divergence == "reverse_kl":
        return logit - 1.0
    if divergence == "forward_kl":
        return torch.exp(logit)
    if divergence == "js":
        return F.softplus(logit) - math.log(2.0)
    return torch.exp(2.0 * logit) - 1.0


def logistic_loss(
    logit_expert: torch.Tensor, logit_policy: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Binary cross-entropy with expert = 1, policy = 0; targets smoothed to ε/2, 1 − ε/2."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    hi, lo = 1.0 - label_smoothing / 2, label_smoothing / 2
    loss_e = F.binary_cross_entropy_with_logits(logit_expert, torch.full_like(logit_expert, hi))
    loss_p = F.binary_cross_entropy_with_logits(logit_policy, torch.full_like(logit_policy, lo))
    return 0.5 * (loss_e + loss_p)


@dataclass
class DiscriminatorConfig:
    """Hyperparameters of the occupancy discriminator."""

    hidden: tuple[int, ...] = (64, 64)
    """widths of the MLP's hidden layers"""
    lr: float = 1e-3
    """Adam learning rate"""
    epochs: int = 2
    """passes over the round's policy states per round"""
    batch_size: int = 256
    """minibatch size (policy and expert halves each)"""
    normalize: bool = True
    """standardise inputs with running mean/std of all states seen (frozen in the loss)"""
    spectral_norm: bool = False
    """spectral normalisation of every linear layer (Miyato et al. 2018)"""
    grad_penalty: float = 0.0
    """weight of the zero-centred gradient penalty on expert states (R1, Mescheder 2018)"""
    label_smoothing: float = 0.0
    """targets ε/2 and 1 − ε/2 instead of 0 and 1"""
    weight_decay: float = 0.0
    """Adam weight decay"""


class Discriminator(nn.Module):
    """MLP d(s) → logit ℓ ≈ log p_E(s)/p_π(s) on observation vectors s of size ``obs_dim``.

    :param obs_dim: length of the observation vector (x, log σ, k/N, one-hot c).
    :param config: :class:`DiscriminatorConfig`.
    """

    def __init__(self, obs_dim: int, config: DiscriminatorConfig | None = None):
        super().__init__()
        if obs_dim < 1:
            raise ValueError(f"obs_dim must be >= 1, got {obs_dim}")
        self.config = cfg = config or DiscriminatorConfig()
        layers: list[nn.Module] = []
        width = obs_dim
        for h in cfg.hidden:
            layers += [self._linear(width, h), nn.SiLU()]
            width = h
        layers.append(self._linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("var", torch.ones(obs_dim))
        self.register_buffer("count", torch.zeros(()))

    def _linear(self, n_in: int, n_out: int) -> nn.Module:
        lin = nn.Linear(n_in, n_out)
        return nn.utils.parametrizations.spectral_norm(lin) if self.config.spectral_norm else lin

    @torch.no_grad()
    def update_normalizer(self, s: torch.Tensor) -> None:
        """Merge a batch into the running mean/variance (Chan et al. parallel update)."""
        if not self.config.normalize:
            return
        n_b = s.shape[0]
        mean_b, var_b = s.mean(0), s.var(0, unbiased=False)
        n = self.count + n_b
        delta = mean_b - self.mean
        self.var.copy_((self.var * self.count + var_b * n_b + delta**2 * self.count * n_b / n) / n)
        self.mean.add_(delta * n_b / n)
        self.count.copy_(n)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Logits ``[B]`` for observations ``s [B, obs_dim]``."""
        if self.config.normalize:
            s = (s - self.mean) / (self.var + 1e-8).sqrt()
        return self.net(s).squeeze(-1)


def grad_penalty(
    logit_fn: Callable[[torch.Tensor], torch.Tensor],
    s: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """R1 penalty E‖∇_s ℓ(s)‖² at the states ``s`` (Mescheder et al. 2018); with ``weight
    [B]``, the per-state weighted mean E[weight · ‖∇_s ℓ(s)‖²]."""
    s = s.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(logit_fn(s).sum(), s, create_graph=True)
    sq = g.pow(2).sum(-1)
    return (sq if weight is None else weight * sq).mean()


def train_discriminator(
    logit_fn: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    expert: torch.Tensor,
    policy: torch.Tensor,
    config: DiscriminatorConfig,
    generator: torch.Generator | None = None,
    penalty_weight: torch.Tensor | None = None,
) -> dict[str, float]:
    """``config.epochs`` passes of logistic-loss minibatch updates on paired states.

    ``expert[i]`` and ``policy[i]`` share σ_k and class (the caller pairs them), so a
    minibatch is balanced per (σ_k, c). ``penalty_weight [n]``: a per-pair factor of the R1
    penalty on ``expert[i]`` (None = 1). Returns the last epoch's mean loss and accuracy.
    """
    if expert.shape != policy.shape:
        raise ValueError(f"expert {tuple(expert.shape)} and policy {tuple(policy.shape)} differ")
    n = expert.shape[0]
    stats = {"loss": 0.0, "accuracy": 0.0, "grad_penalty": 0.0}
    for _ in range(config.epochs):
        perm = torch.randperm(n, generator=generator)
        tot = {k: 0.0 for k in stats}
        batches = 0
        for start in range(0, n, config.batch_size):
            idx = perm[start : start + config.batch_size]
            le, lp = logit_fn(expert[idx]), logit_fn(policy[idx])
            loss = logistic_loss(le, lp, config.label_smoothing)
            gp = torch.zeros(())
            if config.grad_penalty > 0:
                pw = None if penalty_weight is None else penalty_weight[idx]
                gp = grad_penalty(logit_fn, expert[idx], pw)
            optimizer.zero_grad()
            (loss + config.grad_penalty * gp).backward()
            optimizer.step()
            acc = 0.5 * ((le > 0).float().mean() + (lp < 0).float().mean())
            for k, v in (("loss", loss), ("accuracy", acc), ("grad_penalty", gp)):
                tot[k] += float(v.detach())
            batches += 1
        stats = {k: v / max(batches, 1) for k, v in tot.items()}
    return stats
