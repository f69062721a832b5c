"""Evaluation of a policy on the benchmark's fixed batch, and the constant-action baselines.

Final metric, on a fixed evaluation batch with the deterministic policy:

- guidance: class-conditional energy distance between the policy's x_0 and true data of the
  same classes (``diffusion_gym.metrics.class_conditional(energy_distance, ...)``);
- clock: RMSE between the policy's x_K and the env's reference ODE solution x_ref.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.registration import load_env_creator

import diffusion_gym  # noqa: F401  (registers the env ids)
from diffusion_gym import metrics
from diffusion_gym.envs import ClockVectorEnv, GuidanceVectorEnv, Rollout, batch_of

from .config import EnvConfig, train_kwargs

__all__ = [
    "ConstantPolicy",
    "PredictPolicy",
    "StepPolicy",
    "baseline_policies",
    "eval_kwargs",
    "evaluate_policy_batch",
    "is_clock",
    "make_vector_env",
    "rollout",
]


def make_vector_env(env_id: str, num_envs: int, kwargs: dict, device: str = "cpu"):
    """The native batched vector env of ``env_id`` (``vector_entry_point``)."""
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        device=device,
        **kwargs,
    )


def is_clock(env_id: str) -> bool:
    """Whether the registered ``env_id`` is a Clock env (its vector entry point is a
    :class:`~diffusion_gym.envs.clock.ClockVectorEnv`); otherwise a Guidance env."""
    creator = load_env_creator(gym.spec(env_id).vector_entry_point)
    return isinstance(creator, type) and issubclass(creator, ClockVectorEnv)


def eval_kwargs(env_cfg: EnvConfig) -> dict:
    """Env kwargs of the evaluation batch: the training ones with the metric's own reward."""
    out = train_kwargs(env_cfg)
    if is_clock(env_cfg.id):
        out["reward"] = "terminal_error"  # its terminal reward is −‖x_K − x_ref‖²/dim
    elif callable(out.get("reward")) or out.get("reward") in (None, "none"):
        out["reward"] = "log_prob"  # a readable return for the IRL-trained policies
    return out


class ConstantPolicy:
    """A policy that plays one fixed action in every env (the baselines of the tables)."""

    def __init__(self, action: Any):
        self.action = np.asarray(action)

    def predict(self, obs: np.ndarray, **_: Any) -> tuple[np.ndarray, None]:
        """``action`` for every row of ``obs`` (SB3's ``predict`` signature)."""
        return np.broadcast_to(self.action, (len(obs), *self.action.shape)).copy(), None


class PredictPolicy:
    """An SB3-style policy (``predict(obs, deterministic=True, ...)``) as the
    ``policy(obs, k) -> actions`` of the envs' ``rollout``: numpy observations, MaskablePPO's
    action masks, RecurrentPPO's LSTM state carried over the steps of the episode.

    :param policy: an SB3 model or a :class:`ConstantPolicy`.
    :param algo: the RL-Zoo name (``maskable_ppo`` and ``ppo_lstm`` get their extra inputs).
    :param batch: the native vector env (its ``action_masks()`` for MaskablePPO: the
        benchmark's envs come from YAML, so they have no state-dependent ``mask_fn``).
    """

    def __init__(self, policy: Any, algo: str, batch: Any):
        self.policy, self.algo, self.batch = policy, algo, batch
        self.state: Any = None

    def __call__(self, obs: torch.Tensor, k: int) -> np.ndarray:
        kw: dict[str, Any] = {"deterministic": True}
        if self.algo == "maskable_ppo":
            kw["action_masks"] = self.batch.action_masks()
        if self.algo == "ppo_lstm":
            if k == 0:
                self.state = None
            kw.update(state=self.state, episode_start=np.full(len(obs), k == 0))
        if isinstance(self.policy, StepPolicy):
            return self.policy.step_action(k, len(obs))
        action, self.state = self.policy.predict(obs.cpu().numpy(), **kw)
        return action


class StepPolicy:
    """An open-loop policy: the same action for every env at step k, ``actions[k]`` (a fixed
    schedule of clock speeds, or of (w, γ) table entries: constant and interval guidance).

    :param actions: one action per step, each in the env's action format.
    """

    def __init__(self, actions: Any):
        self.actions = [np.asarray(a) for a in actions]
        if not self.actions:
            raise ValueError("StepPolicy needs at least one action")

    def step_action(self, k: int, n: int) -> np.ndarray:
        """The action of step ``k`` for ``n`` envs."""
        if k >= len(self.actions):
            raise ValueError(f"StepPolicy has {len(self.actions)} actions, asked for step {k}")
        a = self.actions[k]
        return np.broadcast_to(a, (n, *a.shape)).copy()

    def predict(self, obs: np.ndarray, **_: Any) -> tuple[np.ndarray, None]:
        """SB3's signature; an open-loop policy needs the step index, see :class:`PredictPolicy`."""
        raise TypeError("StepPolicy is open-loop: evaluate it with rollout()/PredictPolicy")


def rollout(policy: Any, env: Any, seed: int, algo: str = "") -> tuple[np.ndarray, Any]:
    """One episode of every env of the batch ``env`` with the deterministic ``policy``, run
    by the env's own ``rollout`` (seeded like ``reset(seed=seed)``; the env's episodes are
    not touched).

    :returns: the undiscounted returns ``[B]`` (float64, summed step by step) and the env's
        :class:`~diffusion_gym.envs.Rollout` / :class:`~diffusion_gym.envs.ClockRollout`.
    """
    batch = batch_of(env)
    run = batch.rollout(PredictPolicy(policy, algo, batch), seed=seed)
    returns = np.zeros(batch.num_envs)
    for reward in run.rewards.cpu().numpy():
        returns += reward
    return returns, run


def evaluate_policy_batch(policy: Any, env: Any, seed: int, algo: str = "") -> dict[str, float]:
    """Final metric and mean return of ``policy`` on the evaluation batch ``env``.

    guidance: ``metric`` = class-conditional energy distance between the final x_0 and true
    data of the same classes (drawn with ``seed``); clock: ``metric`` = RMSE of x_K to the
    reference solution x_ref, sqrt(mean ‖x_K − x_ref‖²/dim) over the batch.
    """
    batch = batch_of(env)
    if not isinstance(batch, (ClockVectorEnv, GuidanceVectorEnv)):
        raise TypeError(f"no benchmark metric for {type(batch).__name__}; known: Guidance, Clock")
    returns, run = rollout(policy, env, seed, algo)
    out = {"return": float(returns.mean())}
    if isinstance(batch, ClockVectorEnv):
        # terminal_error reward = −‖x_K − x_ref‖²/dim, the only non-zero one of an episode.
        out["metric"] = math.sqrt(max(-float(returns.mean()), 0.0))
    else:
        out["metric"] = _guidance_energy(batch, run, seed)
    if not math.isfinite(out["metric"]):
        raise ValueError(f"evaluation metric is not finite: {out}")
    return out


def _guidance_energy(batch: GuidanceVectorEnv, run: Rollout, seed: int) -> float:
    x0 = run.x0.cpu().reshape(len(run.x0), -1)
    labels = run.class_labels.cpu().long()
    g = torch.Generator().manual_seed(seed)
    ref = batch.preset.data.sample(len(labels), class_labels=labels, generator=g)
    ref = ref.reshape(len(labels), -1).to(x0.dtype)
    return metrics.class_conditional(
        metrics.energy_distance, x0, ref, labels, labels, batch.preset.num_classes
    )


def baseline_policies(env: Any) -> dict[str, ConstantPolicy]:
    """Constant-action reference policies for an env's table.

    guidance: every entry of the action table (``const w=.. γ=..``, encoded by its
    :class:`~diffusion_gym.envs.ActionTable` in the env's action format); clock: a = 0 (the
    base schedule) and constant speeds a = ±0.5, ±1.
    """
    u = batch_of(env)
    if isinstance(u, ClockVectorEnv):
        out = {"base schedule (a=0)": ConstantPolicy(np.zeros(1, dtype=np.float32))}
        for a in (-1.0, -0.5, 0.5, 1.0):  # uniformly slower / faster clocks
            out[f"const a={a:g}"] = ConstantPolicy(np.full(1, a, dtype=np.float32))
        return out
    table = u.action_table
    out = {}
    for i, w in enumerate(table.weights):
        for j, gamma in enumerate(table.gammas):
            action = table.encode(np.int64(i), np.int64(j))
            out[f"const w={float(w):g} γ={float(gamma):g}"] = ConstantPolicy(action)
    return out
