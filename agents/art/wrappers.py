"""SB3 VecEnv wrappers of the Clock env for ART-RL: policy inputs and reward transforms.

- :class:`TimeInputs`: keep the clock's time features only (an open-loop policy).
- :class:`RewardTransform`: the log error, or the reward over a running mean |r|.
- :class:`SelfCriticalReward`: the error minus the error of the policy's current mean
  schedule on the same (x_T, x_ref), optionally with error-proportional bank sampling.
- :class:`ResidualActions`: the policy acts around a fixed schedule (``residual_schedule``).

They read the Clock env only through its public API (``x_T``, ``x_ref``, ``class_labels``,
``bank_index``, ``bank``, ``bank_weight``, ``set_bank_probs``, ``denoiser``, ``guidance``,
``solver``, ``device``).
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from diffusion_gym import steps as _steps
from diffusion_gym.envs.clock import ClockVectorEnv

__all__ = ["TimeInputs", "RewardTransform", "SelfCriticalReward", "ResidualActions", "find_wrapper"]

#: Bank entries per batched baseline solve when the whole bank is scored.
_SCORE_CHUNK = 1024


class TimeInputs(VecEnvWrapper):
    """Keep the clock's time features (log σ, k/K, remaining clock): an open-loop policy."""

    def __init__(self, venv: VecEnv):
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


class ResidualActions(VecEnvWrapper):
    """The policy acts around a fixed schedule: step k sends clip(a + a*_k, −1, 1) to the env,
    a* the clock actions that realise the schedule
    (:meth:`~diffusion_gym.envs.ClockVectorEnv.actions_from_schedule`). A zero output samples
    with that schedule, so a state-dependent policy starts at it and learns per-sample
    deviations. The envs of a Clock batch step in lockstep (every episode has K steps), so
    the wrapper counts k; it restarts at 0 with every reset (and on resume, where the
    episodes restart).

    :param offsets: a* ``[K]`` (the last one is ignored by the env).
    """

    def __init__(self, venv: VecEnv, offsets):
        super().__init__(venv)
        self.offsets = np.asarray(offsets, dtype=np.float64).reshape(-1)
        self.k = 0

    def env_actions(self, actions: np.ndarray, k) -> np.ndarray:
        """What the env receives for the policy's ``actions`` ``[B, 1]`` at step(s) ``k``
        (an int, or one per row)."""
        a = np.asarray(actions, dtype=np.float64).reshape(-1, 1)
        off = self.offsets[np.asarray(k)].reshape(-1, 1)
        return np.clip(a + off, -1.0, 1.0).astype(np.float32)

    def reset(self):
        self.k = 0
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(self.env_actions(actions, self.k))

    def step_wait(self):
        out = self.venv.step_wait()
        self.k = (self.k + 1) % len(self.offsets)
        return out


class RewardTransform(VecEnvWrapper):
    """Terminal reward r = −mse → −log(mse + ε) (``"log"``) or r / running mean |r|
    (``"scale"``); the env's reward stays in ``info["env_reward"]``."""

    def __init__(self, venv: VecEnv, kind: str, eps: float = 1e-12):
        super().__init__(venv)
        self.kind, self.eps, self.scale = kind, eps, None

    def state(self) -> dict:
        """Running state for checkpoints (weights-only data)."""
        return {"scale": self.scale}

    def load_state(self, state: dict) -> None:
        self.scale = state["scale"]

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

    :param venv: the SB3 VecEnv to wrap (the chain around ``clock_env``).
    :param clock_env: the native :class:`~diffusion_gym.envs.clock.ClockVectorEnv` inside.
    """

    def __init__(
        self, venv: VecEnv, clock_env: ClockVectorEnv, log: bool = False, eps: float = 1e-12,
        sampling_mix: float | None = None,
    ):  # fmt: skip
        super().__init__(venv)
        if not isinstance(clock_env, ClockVectorEnv):
            raise TypeError(f"clock_env must be a ClockVectorEnv, got {type(clock_env)!r}")
        self.clock_env, self.log, self.eps, self.sampling_mix = clock_env, log, eps, sampling_mix
        self.sigmas, self.scale, self.errors = None, None, None
        self.probs: np.ndarray | None = None  # the bank probabilities last handed to the env

    def state(self) -> dict:
        """Running state for checkpoints (weights-only data): the baseline schedule, the
        running scale, the per-entry errors and the bank probabilities in use."""

        def t(v):
            return None if v is None else torch.from_numpy(np.array(v, dtype=np.float64))

        sig = None if self.sigmas is None else self.sigmas.detach().cpu()
        errors, probs = t(self.errors), t(self.probs)
        return {"sigmas": sig, "scale": self.scale, "errors": errors, "probs": probs}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` (and hand the env the bank probabilities that were in use)."""
        sig = state["sigmas"]
        self.sigmas = None if sig is None else sig.to(self.clock_env.device, torch.float64)
        self.scale = state["scale"]
        self.errors = None if state["errors"] is None else state["errors"].numpy().copy()
        self.probs = None if state["probs"] is None else state["probs"].numpy().copy()
        if self.probs is not None:
            self.clock_env.set_bank_probs(self.probs)

    def set_schedule(self, sigmas: torch.Tensor) -> None:
        """The baseline schedule (the policy's current mean); rescores sampling if asked."""
        self.sigmas = sigmas.to(self.clock_env.device, torch.float64)
        if self.sampling_mix is None:
            return
        if self.errors is None:  # score every bank entry once
            self.errors = self._bank_errors()
        n, mix = len(self.errors), self.sampling_mix
        e = np.maximum(self.errors, 1e-300)
        self.probs = mix / n + (1.0 - mix) * e / e.sum()
        self.clock_env.set_bank_probs(self.probs)

    def _mse_b(self, x_T, x_ref, labels) -> np.ndarray:  # noqa: N803
        env = self.clock_env
        with torch.no_grad():
            x_b = _steps.sample(
                env.denoiser, x_T, self.sigmas, class_labels=labels,
                guidance=env.guidance, solver=env.solver,
            )  # fmt: skip
        return (x_b - x_ref).reshape(len(x_T), -1).pow(2).mean(1).cpu().numpy()

    def _bank_errors(self) -> np.ndarray:
        bank = self.clock_env.bank
        if bank.x_T is None:
            bank.build()
        out = []
        for lo in range(0, bank.size, _SCORE_CHUNK):
            sl = slice(lo, lo + _SCORE_CHUNK)
            lab = None if bank.labels is None else bank.labels[sl]
            out.append(self._mse_b(bank.x_T[sl], bank.x_ref[sl], lab))
        return np.concatenate(out).astype(np.float64)

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        if self.sigmas is None:
            raise RuntimeError("SelfCriticalReward.set_schedule was not called")
        env = self.clock_env  # the episode's rows, read before the step autoresets them
        x_T, x_ref, labels, idx = env.x_T, env.x_ref, env.class_labels, env.bank_index  # noqa: N806
        weight = env.bank_weight
        obs, rew, done, infos = self.venv.step_wait()
        for info, r in zip(infos, rew, strict=True):
            info["env_reward"] = float(r)
        if done.any():
            sel = torch.as_tensor(np.flatnonzero(done), device=env.device)
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


def find_wrapper(env: VecEnv | None, cls: type[VecEnvWrapper]) -> VecEnvWrapper | None:
    """The outermost wrapper that is an instance of ``cls`` in a VecEnv wrapper chain, or
    None."""
    while env is not None:
        if isinstance(env, cls):
            return env
        env = env.venv if isinstance(env, VecEnvWrapper) else None
    return None
