"""Dual-head actor-critic policy and temperature-scaled action selection.

:class:`DualHeadPolicy` is an SB3 ``ActorCriticPolicy`` whose single MLP trunk (the features
extractor, shared by actor and critic) feeds three linear heads: the action logits, the value,
and a density-ratio head ℓ(s) ≈ log p_E(s)/p_π(s). With ``discriminator.source: policy`` the
IRL trainer trains that head (and, through it, the trunk) with the discriminator's logistic
loss, so the policy's features are the ones that tell the expert's states from its own
(one network instead of two; the shared-trunk variant of the inverse-RL paper's learner).

Temperature τ at inference: the action is drawn from softmax(logits / τ). τ → 0 is the
argmax (the most confident (w, γ) per state: fidelity, fewer and sharper modes), τ = 1 the
trained stochastic policy, τ > 1 flattens the choice towards uniform (more diverse guidance,
more spread-out samples: recall). See ``docs/irl_agent.md`` for a measured sweep.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
    MultiCategoricalDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

__all__ = [
    "DualHeadPolicy",
    "TrunkExtractor",
    "action_logits",
    "select_actions",
    "start_at_action",
    "start_gaussian_at",
]


class TrunkExtractor(BaseFeaturesExtractor):
    """The shared trunk: an MLP ``obs → features`` with SiLU activations.

    :param observation_space: a flat ``Box``.
    :param hidden: hidden widths; the last one is the features' size.
    """

    def __init__(self, observation_space: gym.spaces.Box, hidden: tuple[int, ...] = (64, 64)):
        if len(hidden) == 0:
            raise ValueError("hidden must name at least one layer width")
        super().__init__(observation_space, features_dim=int(hidden[-1]))
        layers: list[nn.Module] = []
        width = int(np.prod(observation_space.shape))
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.Tanh()]
            width = int(h)
        self.net = nn.Sequential(nn.Flatten(), *layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class DualHeadPolicy(ActorCriticPolicy):
    """Actor-critic on one trunk, plus a density-ratio head usable as the IRL discriminator.

    Keyword ``trunk`` (tuple of widths) sizes the trunk; the actor and critic heads are linear
    (``net_arch=[]``). :meth:`density_logit` returns ℓ(s) ``[B]``. The PPO optimiser does not
    train the density head (its loss does not reach it); the IRL trainer owns a second
    optimiser over :meth:`density_parameters` (trunk + head).
    """

    def __init__(self, observation_space, action_space, lr_schedule, trunk=(64, 64), **kwargs):
        kwargs.setdefault("net_arch", [])
        kwargs["features_extractor_class"] = TrunkExtractor
        kwargs["features_extractor_kwargs"] = {"hidden": tuple(trunk)}
        kwargs["share_features_extractor"] = True
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
        self.trunk = tuple(int(h) for h in trunk)
        self.density_head = nn.Linear(self.features_dim, 1)

    def _get_constructor_parameters(self) -> dict:
        data = super()._get_constructor_parameters()
        data["trunk"] = self.trunk
        for key in ("features_extractor_class", "features_extractor_kwargs"):
            data.pop(key, None)
        return data

    def density_logit(self, obs: torch.Tensor) -> torch.Tensor:
        """ℓ(s) ≈ log p_E(s)/p_π(s) for float observations ``obs [B, obs_dim]``."""
        return self.density_head(self.extract_features(obs, self.features_extractor)).squeeze(-1)

    def density_parameters(self) -> list[nn.Parameter]:
        """Parameters the discriminator loss trains: the trunk and the density head."""
        return list(self.features_extractor.parameters()) + list(self.density_head.parameters())


def action_logits(policy: ActorCriticPolicy, obs: torch.Tensor) -> list[torch.Tensor]:
    """The policy's action logits per categorical component (one for ``Discrete``, one per
    dimension for ``MultiDiscrete``), each ``[B, n_i]``."""
    return _logits(policy.get_distribution(obs))


def _logits(dist) -> list[torch.Tensor]:
    """:func:`action_logits` of an SB3 distribution already computed for the observations."""
    if isinstance(dist, CategoricalDistribution):
        return [dist.distribution.logits]
    if isinstance(dist, MultiCategoricalDistribution):
        return [d.logits for d in dist.distribution]
    # sb3-contrib's masked distributions (MaskablePPO): masked logits are -1e8.
    inner = getattr(dist, "distribution", None)
    if inner is not None and hasattr(inner, "logits"):
        return [inner.logits]
    if isinstance(getattr(dist, "distributions", None), list):
        return [d.logits for d in dist.distributions]
    raise TypeError(f"temperature needs a categorical policy, got {type(dist).__name__}")


@torch.no_grad()
def select_actions(
    policy: ActorCriticPolicy,
    obs: torch.Tensor,
    *,
    temperature: float = 1.0,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Actions ``[B]`` (``Discrete``) or ``[B, m]`` (``MultiDiscrete``) from softmax(logits/τ);
    for a ``Box`` (diagonal Gaussian) policy ``[B, m]`` from N(μ, τ σ²) (π^(1/τ), normalised:
    the same tempering as the categorical one), clipped to the box as SB3 clips its rollouts.

    :param temperature: τ > 0; ignored when ``deterministic`` (argmax / the mean μ, the τ → 0
        limit).
    :param generator: source of the draws (a trajectory then depends on its seed).
    """
    if not deterministic and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    dist = policy.get_distribution(obs)
    if isinstance(dist, DiagGaussianDistribution):
        normal = dist.distribution
        a = normal.mean
        if not deterministic:
            eps = torch.randn(a.shape, generator=generator, device=a.device, dtype=a.dtype)
            a = a + math.sqrt(temperature) * normal.stddev * eps
        space = policy.action_space
        low = torch.as_tensor(space.low, device=a.device, dtype=a.dtype)
        high = torch.as_tensor(space.high, device=a.device, dtype=a.dtype)
        return torch.minimum(torch.maximum(a, low), high)
    out = []
    for logits in _logits(dist):  # the same forward pass: one policy call per batch
        if deterministic:
            out.append(logits.argmax(-1))
            continue
        p = torch.softmax(logits.double() / temperature, -1)
        out.append(torch.multinomial(p, 1, generator=generator).squeeze(-1))
    return out[0] if len(out) == 1 else torch.stack(out, -1)


@torch.no_grad()
def start_gaussian_at(policy: ActorCriticPolicy, action, std: float) -> None:
    """Set a ``Box`` (diagonal Gaussian) policy to N(``action``, std²) in every state: the
    mean layer (``action_net``) gets weight 0 and bias ``action``, ``log_std`` = log ``std``.
    The deterministic (mean) policy is then exactly that constant action; as with
    :func:`start_at_action` the hidden layers keep their initialisation, so the policy can
    learn to depend on the state from the first update."""
    space = policy.action_space
    if not isinstance(space, gym.spaces.Box) or not isinstance(
        policy.action_dist, DiagGaussianDistribution
    ):
        raise TypeError(f"start_gaussian_at needs a Box (Gaussian) policy, got {space}")
    a = torch.as_tensor(np.asarray(action, dtype=np.float64)).reshape(-1)
    if a.shape != (space.shape[0],) or not bool(
        ((a >= torch.as_tensor(space.low)) & (a <= torch.as_tensor(space.high))).all()
    ):
        raise ValueError(f"action must be {space.shape[0]} values in the box, got {a.tolist()}")
    if not (math.isfinite(std) and std > 0):
        raise ValueError(f"std must be finite and > 0, got {std}")
    net = policy.action_net
    net.weight.zero_()
    net.bias.copy_(a.to(net.bias))
    policy.log_std.fill_(math.log(std))


@torch.no_grad()
def start_at_action(policy: ActorCriticPolicy, action: int, prob: float) -> None:
    """Set a ``Discrete`` policy to pick ``action`` with probability ``prob`` in every state.

    The actor's last layer (``action_net``) gets weight 0 and the bias whose softmax is
    ``prob`` at ``action`` and (1 − prob)/(n − 1) elsewhere, so the untrained policy is that
    constant action up to exploration; the hidden layers keep their initialisation, so the
    weight's gradient (hidden features × advantage) is non-zero and the policy can learn to
    depend on the state from the first update (issue #20 item 5: start from the best
    constant, then improve).
    """
    if not isinstance(policy.action_space, gym.spaces.Discrete):
        raise TypeError(f"start_at_action needs a Discrete action space, got {policy.action_space}")
    n = int(policy.action_space.n)
    if not 0 <= int(action) < n:
        raise ValueError(f"action must be in [0, {n}), got {action}")
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    rest = (1.0 - prob) / max(n - 1, 1)
    bias = torch.full((n,), float(np.log(rest)) if n > 1 else 0.0)
    bias[int(action)] = float(np.log(prob))
    net = policy.action_net
    net.weight.zero_()
    net.bias.copy_(bias.to(net.bias))
