"""The learned guidance policy, and the constant (w, γ) baselines, as evaluation strategies of
the harness (:class:`baselines.evaluate.Strategy`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from baselines.evaluate import FixedSchedule, Strategy, nfe_of
from diffusion_gym import steps as _steps

from ..policies import select_actions
from .config import EvalConfig

__all__ = ["PolicyStrategy", "baseline_strategies"]


class PolicyStrategy(Strategy):
    """Samples with the policy picking (w, γ) per step and per sample, as the env does.

    Rolls :func:`diffusion_gym.steps.step` over the env's schedule with the env's churn-noise
    convention (draw k+1 of each sample's stream) and observations from ``env.encode_obs``,
    so a sample equals the env's episode with the same x_T, label, noise and actions
    (``obs_mode="features"``: the denoiser features come from a call at the state itself).

    :param temperature: None = deterministic (argmax); τ > 0 samples softmax(logits/τ).
    :param seed: seed of the action draws when stochastic.
    """

    def __init__(self, name, env, policy, temperature: float | None = None, seed: int = 0):
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be None or > 0, got {temperature}")
        self.name, self.env, self.policy = name, env, policy
        self.temperature, self.seed = temperature, seed
        self.last_w: list[float] | None = None
        self.last_gamma: list[float] | None = None

    @property
    def nfe(self) -> int:
        return nfe_of(self.env.num_steps, self.env.solver)

    @property
    def deterministic(self) -> bool:
        return self.temperature is None and float(np.max(self.env.gammas)) == 0.0

    @torch.no_grad()
    def sample(self, preset, x_T, class_labels, streams):  # noqa: N803
        env, x = self.env, x_T.to(self.env.dtype)
        gen = torch.Generator().manual_seed(self.seed)
        w_t = torch.as_tensor(env.guidance_weights, dtype=x.dtype, device=x.device)
        g_t = torch.as_tensor(env.gammas, dtype=x.dtype, device=x.device)
        ws, gs = [], []
        for k in range(env.num_steps):
            obs = env.encode_obs(x, k, class_labels).to(self.policy.device)
            a = select_actions(
                self.policy,
                obs,
                temperature=self.temperature or 1.0,
                deterministic=self.temperature is None,
                generator=gen,
            ).to(x.device)
            if a.ndim == 1:
                wi, gi = a // len(env.gammas), a % len(env.gammas)
            else:
                wi, gi = a[:, 0], a[:, 1]
            w, gamma = w_t[wi], g_t[gi]
            noise = _steps.churn_noise(streams, k, x) if bool((gamma > 0).any()) else None
            x, _ = _steps.step(
                preset.denoiser,
                x,
                env._sigma_list[k],
                env._sigma_list[k + 1],
                class_labels=class_labels,
                guidance=w if class_labels is not None else None,
                gamma=gamma if noise is not None else 0.0,
                solver=env.solver,
                noise=noise,
                s_noise=env.s_noise,
            )
            ws.append(float(w.mean()))
            gs.append(float(gamma.mean()))
        self.last_w, self.last_gamma = ws, gs
        return x

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
