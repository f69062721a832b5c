"""SB3 adapter: a native gymnasium vector env as a stable-baselines3 ``VecEnv``.

The package's envs are native :class:`gymnasium.vector.VectorEnv` s that hold the whole batch
as tensors and auto-reset in the same step by default (``AutoresetMode.SAME_STEP``; the
adapter takes any mode). SB3 has its own
``VecEnv`` API (dones instead of terminated/truncated, one info dict per env,
``terminal_observation``, ``TimeLimit.truncated``); :class:`SB3VecEnv` translates, so every
SB3 / sb3-contrib algorithm (PPO, A2C, DQN, MaskablePPO, QR-DQN, ...) and wrapper
(``VecMonitor``, ``VecNormalize``) runs on the batched env without Dummy/SubprocVecEnv.

>>> import gymnasium as gym, diffusion_gym  # noqa: F401
>>> from agents.vec_env import SB3VecEnv
>>> venv = SB3VecEnv(gym.make_vec("diffusion_gym/Guidance-v0", num_envs=16,
...                               vectorization_mode="vector_entry_point"))
>>> venv.reset().shape
(16, 12)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

__all__ = ["SB3VecEnv"]


class SB3VecEnv(VecEnv):
    """Wrap a gymnasium ``VectorEnv`` (any ``AutoresetMode``) as an SB3 ``VecEnv``.

    Per step: one host copy of the batched observation (the vector env's ``step``), dones =
    terminated | truncated, and for finished envs ``infos[i]["terminal_observation"]``,
    ``infos[i]["TimeLimit.truncated"]`` and the env's final info (e.g. ``"x0"``). Other
    step infos are not copied into the per-env dicts (they stay cheap); the last batched
    info dict is kept in :attr:`last_info`.

    SB3 wants the next episode's first observation in the step that ends an episode. The
    vector env's ``metadata["autoreset_mode"]`` says how to get it: ``SAME_STEP`` gives it
    (the final observation is in ``info["final_obs"]``); ``NEXT_STEP`` gives it one step
    later, so the adapter takes that reset step at once (its actions are ignored; every env
    must end at the same step, as in this package's envs); ``DISABLED`` needs
    ``reset(options={"reset_mask": dones})``, which the adapter calls. The three give the
    same transitions, so learning is identical in each mode.

    ``env_method("action_masks")`` returns one mask per env (``sb3_contrib``'s
    ``get_action_masks``); other methods and attributes are those of the single vector env,
    repeated once per requested index. ``seed(s)`` makes the next ``reset`` use seeds
    ``s + i`` (SB3's convention, which is also the vector env's).

    :param vector_env: a vector env, e.g. ``gym.make_vec(id, num_envs=...,
        vectorization_mode="vector_entry_point")``.
    """

    def __init__(self, vector_env: gym.vector.VectorEnv):
        if not isinstance(vector_env, gym.vector.VectorEnv):
            raise TypeError(
                f"vector_env must be a gymnasium.vector.VectorEnv, got {type(vector_env).__name__}"
            )
        mode = vector_env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        try:
            self.autoreset_mode = AutoresetMode(mode)
        except ValueError:
            raise ValueError(
                "vector_env.metadata['autoreset_mode'] must be a gymnasium.vector.AutoresetMode, "
                f"got {mode!r}"
            ) from None
        self.venv = vector_env
        self.last_info: dict[str, Any] = {}
        self._actions: np.ndarray | None = None
        super().__init__(
            vector_env.num_envs,
            vector_env.single_observation_space,
            vector_env.single_action_space,
        )

    # ------------------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        seeds = None if all(s is None for s in self._seeds) else self._seeds
        if seeds is not None and any(s is None for s in seeds):
            raise ValueError("seed the SB3VecEnv for all envs at once (seed(s)), not a subset")
        options = self._options[0] or None
        obs, info = self.venv.reset(seed=seeds, options=options)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self.last_info = info
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        self.last_info = info
        dones = np.logical_or(terminated, truncated)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            if self.autoreset_mode is AutoresetMode.SAME_STEP:
                final_obs, final_info = info.get("final_obs"), info.get("final_info", {})
            else:
                final_obs, final_info = obs, info
                obs = self._restart(dones)
            self._fill_final(infos, dones, terminated, truncated, final_obs, final_info)
        self._actions = None
        return obs, np.asarray(reward, dtype=np.float32), dones, infos

    def _restart(self, dones: np.ndarray) -> np.ndarray:
        """The next episodes' first observations under NEXT_STEP (the reset step, taken now)
        or DISABLED (a masked reset)."""
        if self.autoreset_mode is AutoresetMode.DISABLED:
            obs, _ = self.venv.reset(options={"reset_mask": dones})
            return obs
        if not dones.all():
            raise RuntimeError(
                "SB3VecEnv: a NEXT_STEP vector env ended only some episodes; SB3 needs the "
                "next observation now: use autoreset_mode SAME_STEP or DISABLED"
            )
        obs, *_ = self.venv.step(self._actions)  # NEXT_STEP's reset step: actions ignored
        return obs

    def _fill_final(self, infos, dones, terminated, truncated, final_obs, final_info) -> None:
        """``terminal_observation``, ``TimeLimit.truncated`` and the final info per done env."""
        keys = [k for k in final_info if not k.startswith("_")]
        for i in np.flatnonzero(dones):
            d = infos[i]
            for k in keys:
                mask = final_info.get("_" + k)
                if mask is None or mask[i]:
                    d[k] = final_info[k][i]
            if final_obs is not None:
                d["terminal_observation"] = final_obs[i]
            d["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])

    def close(self) -> None:
        self.venv.close()

    # ------------------------------------------------------------------------------------
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        idx = list(self._get_indices(indices))
        if len(idx) != self.num_envs:
            raise ValueError("set_attr on a subset of envs is not supported by a batched env")
        setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        idx = list(self._get_indices(indices))
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        if method_name == "action_masks":
            return [result[i] for i in idx]
        return [result for _ in idx]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        # A native vector env has no per-env gymnasium wrappers.
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [self.venv.render()]

    def render(self, mode: str | None = None) -> np.ndarray | None:
        """The vector env's own drawing of the whole batch (``rgb_array``)."""
        if mode not in (None, "rgb_array"):
            raise ValueError(f"only mode='rgb_array' is supported, got {mode!r}")
        return self.venv.render()
