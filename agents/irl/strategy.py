"""The learned guidance policy, and the constant (w, γ) baselines, as evaluation strategies of
the harness (:class:`baselines.evaluate.Strategy`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from baselines.evaluate import FixedSchedule, Strategy
from diffusion_gym.envs import Rollout, batch_of
from diffusion_gym.steps import nfe_of

from ..policies import select_actions
from .config import EvalConfig

__all__ = ["PolicyStrategy", "baseline_strategies"]


class PolicyStrategy(Strategy):
    """Samples with the policy picking (w, γ) per step and per sample: the env's own episodes.

    :meth:`sample` is :meth:`GuidanceVectorEnv.rollout
    <diffusion_gym.envs.guidance.GuidanceVectorEnv.rollout>` on the harness's x_T, labels and
    streams (churn noise = draw k+1 of each sample's stream), so a sample equals the env's
    episode with the same x_T, label, noise and actions, also with ``obs_mode="features"``
    (the policy sees the observations it was trained on). Samples come from the env's
    denoiser (the harness passes the env's preset).

    :param env: the native Guidance vector env (:func:`diffusion_gym.envs.batch_of`).
    :param policy: an SB3 policy with categorical actions.
    :param temperature: None = deterministic (argmax); τ > 0 samples softmax(logits/τ).
    :param seed: seed of the action draws when stochastic (one generator per rollout).
    """

    def __init__(self, name, env, policy, temperature: float | None = None, seed: int = 0):
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be None or > 0, got {temperature}")
        self.name, self.env, self.policy = name, batch_of(env), policy
        self.temperature, self.seed = temperature, seed
        self.last_w: list[float] | None = None
        self.last_gamma: list[float] | None = None

    @property
    def nfe(self) -> int:
        return nfe_of(self.env.num_steps, self.env.solver)

    @property
    def deterministic(self) -> bool:
        return self.temperature is None and float(np.max(self.env.gammas)) == 0.0

    def actor(self) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """``act(obs, k) -> actions``: the policy at this temperature, with a fresh action
        generator seeded ``seed`` on the policy's device (the callable
        :meth:`GuidanceVectorEnv.rollout` takes)."""
        gen = torch.Generator(device=self.policy.device).manual_seed(self.seed)

        def act(obs: torch.Tensor, k: int) -> torch.Tensor:
            return select_actions(
                self.policy,
                obs.to(self.policy.device),
                temperature=self.temperature or 1.0,
                deterministic=self.temperature is None,
                generator=gen,
            )

        return act

    @torch.no_grad()
    def rollout(self, x_T, class_labels, streams) -> Rollout:  # noqa: N803
        """The env's rollout of the policy from ``x_T`` (actions, per-step w and γ, x_0)."""
        return self.env.rollout(self.actor(), x_T=x_T, class_labels=class_labels, streams=streams)

    def sample(self, preset, x_T, class_labels, streams):  # noqa: N803
        r = self.rollout(x_T, class_labels, streams)
        self.last_w = [float(w.mean()) for w in r.guidance]
        self.last_gamma = [float(g.mean()) for g in r.gamma]
        return r.x0

    def describe(self) -> dict[str, Any]:
        d = {"name": self.name, "nfe": self.nfe, "solver": self.env.solver}
        d["sigmas"] = [float(s) for s in self.env.sigmas]
        if self.last_w is not None:
            d["guidance"], d["gamma"] = self.last_w, self.last_gamma
        d["temperature"] = self.temperature
        return d


def baseline_strategies(env, cfg: EvalConfig) -> list[FixedSchedule]:
    """Constant (w, γ) strategies on the env's schedule: the product of the two grids."""
    wg = cfg.guidance_grid if cfg.guidance_grid is not None else list(env.guidance_weights)
    gg = cfg.gamma_grid if cfg.gamma_grid is not None else list(env.gammas)
    return [
        FixedSchedule(f"const-w{w:g}-g{g:g}", env.sigmas.cpu(), env.solver, guidance=w, gamma=g)
        for w in wg
        for g in gg
    ]
