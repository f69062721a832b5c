"""One base for both environments: a batched sampler as a native Gymnasium ``VectorEnv``, and
the single-env view over a batch of one.

:class:`BatchedSamplerEnv` holds what Guidance and Clock share: the preset and device, the
seeding contract (DESIGN.md: a reset with ``seed=s`` gives env ``i`` the base seed ``s + i``,
episode ``e`` of env ``i`` draws from ``derive_keys(s + i, salt=e)``, so env ``i``'s
trajectory does not depend on ``num_envs``), ``SAME_STEP`` autoreset (``final_obs`` /
``final_info``), rendering and closing. A subclass implements :meth:`_begin_episodes`, its
step and its observation. :class:`SingleEnvView` is the ``gym.make`` entry point of both
families, written once: a batch of one with autoreset off; everything else is read from the
batch (:func:`batch_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

from .. import presets
from ..denoisers.base import Denoiser
from .common import base_seeds, episode_keys, resolve_preset
from .rendering import render_batch

__all__ = ["BatchedSamplerEnv", "SingleEnvView", "batch_of", "check_device"]


def check_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``; ``ValueError`` for a CUDA device torch cannot see."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}"
        ) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: torch {torch.__version__} sees no CUDA device")
    return dev


class BatchedSamplerEnv(VectorEnv):
    """A batch of ``num_envs`` diffusion samplers held as tensors on ``device``.

    Subclasses call :meth:`_init_batch` first in ``__init__`` and implement
    :meth:`_begin_episodes` (start the episodes of the current seeds/episode counters),
    ``step`` and :meth:`_render_state`.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "render_fps": 4,
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }
    render_size: ClassVar[tuple[int, int]] = (400, 400)

    def _init_batch(self, num_envs, denoiser, data, device, render_mode) -> presets.Preset:
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.num_envs = num_envs
        self.render_mode = render_mode
        self._device = check_device(device)
        self._preset = resolve_preset(denoiser, data, self._device)
        self._autoreset = True
        self._seeds: torch.Tensor | None = None  # [B] base seeds
        self._episodes: torch.Tensor | None = None  # [B] episode counters
        return self._preset

    # -- public, read-only -------------------------------------------------------------------
    @property
    def preset(self) -> presets.Preset:
        """The resolved preset (denoiser, data, σ range, prior std)."""
        return self._preset

    @property
    def denoiser(self) -> Denoiser:
        return self._preset.denoiser

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The denoiser's dtype (of the states x)."""
        return self._preset.denoiser.dtype

    @property
    def num_classes(self) -> int:
        """Classes of the denoiser (0: unconditional)."""
        return self._preset.denoiser.num_classes

    @property
    def base_seeds(self) -> torch.Tensor | None:
        """``[B]`` int64 base seeds of the envs (None before the first reset)."""
        return self._seeds

    @property
    def episode_index(self) -> torch.Tensor | None:
        """``[B]`` int64 episode counters since the last seeding (None before a reset)."""
        return self._episodes

    # -- seeding ------------------------------------------------------------------------------
    def _seed_episodes(self, seed: int | Sequence[int] | None) -> None:
        """Reseed (``seed`` given, or never seeded) or move every env to its next episode."""
        if seed is not None or self._seeds is None:
            if isinstance(seed, (int, np.integer)) or seed is None:
                self._np_random, self._np_random_seed = seeding.np_random(seed)
            self._seeds = base_seeds(seed, self.num_envs, self.np_random).to(self._device)
            self._episodes = torch.zeros(self.num_envs, dtype=torch.int64, device=self._device)
        else:
            self._episodes += 1

    def restore_episodes(self, base_seeds, episode_index) -> np.ndarray:
        """Start the episodes that ``base_seeds`` / ``episode_index`` (``[B]`` ints, as read
        from those properties, e.g. into a checkpoint) point at, exactly as the run that had
        them would have started them; returns the first observations (float32). Used by
        trainers to resume a run bit for bit."""
        seeds = torch.as_tensor(np.asarray(base_seeds, dtype=np.int64))
        episodes = torch.as_tensor(np.asarray(episode_index, dtype=np.int64))
        if seeds.shape != (self.num_envs,) or episodes.shape != (self.num_envs,):
            raise ValueError(
                f"base_seeds and episode_index must have shape ({self.num_envs},), got "
                f"{tuple(seeds.shape)} and {tuple(episodes.shape)}"
            )
        if bool((seeds < 0).any()) or bool((episodes < 0).any()):
            raise ValueError("base_seeds and episode_index must be >= 0")
        # one episode back, then a plain reset() moves every env to its next episode
        self._seeds, self._episodes = seeds.to(self._device), episodes.to(self._device) - 1
        obs, _ = self.reset()
        return obs

    def _episode_keys(self) -> torch.Tensor:
        """``[B]`` stream keys of the current episodes."""
        return episode_keys(self._seeds, self._episodes)

    @staticmethod
    def _rollout_keys(seed, batch: int, device) -> torch.Tensor:
        """Keys of episode 0 of a batch seeded like ``reset(seed=seed)`` (None: random)."""
        rng = seeding.np_random(seed if isinstance(seed, (int, np.integer)) else None)[0]
        seeds = base_seeds(seed, batch, rng).to(device)
        return episode_keys(seeds, torch.zeros(batch, dtype=torch.int64, device=device))

    # -- autoreset ----------------------------------------------------------------------------
    def _set_autoreset(self, on: bool) -> None:
        """Off for the single-env view: an ended episode then needs ``reset()``."""
        self._autoreset = on

    @staticmethod
    def _final_info(final_obs: np.ndarray, final_info: dict[str, Any]) -> dict[str, Any]:
        """The ``SAME_STEP`` info of a step that ended every episode: ``final_obs`` (one row
        per env, as SyncVectorEnv gives it) and ``final_info``, each with its mask."""
        b = len(final_obs)
        mask = np.ones(b, dtype=np.bool_)
        rows = np.fromiter(final_obs, dtype=object, count=b)
        return {"final_obs": rows, "_final_obs": mask, "final_info": final_info,
                "_final_info": mask}  # fmt: skip

    # -- rendering, closing -------------------------------------------------------------------
    def _render_state(self) -> tuple[torch.Tensor, torch.Tensor | None, str]:
        """``(x, class_labels, title)`` of the current batch (after a reset)."""
        raise NotImplementedError

    def render(self) -> np.ndarray | None:
        """The current batch drawn as an RGB array (``rgb_array`` mode; scatter for 2-D,
        histogram for 1-D, image grid for images)."""
        if self.render_mode != "rgb_array":
            gym.logger.warn("render() called without render_mode='rgb_array'")
            return None
        if self._episodes is None:
            raise ResetNeeded("call reset() before render()")
        x, labels, title = self._render_state()
        return render_batch(x.detach().cpu(), labels, size=self.render_size, title=title)


class SingleEnvView(gym.Env):
    """A single environment: a batch of one of ``vector_class`` with autoreset off (after the
    episode's last step, call :meth:`reset`). Same arguments as the vector env except
    ``num_envs``; same spaces unbatched; the reward is a float and the info holds env 0's
    values (``"x0"`` and, for Clock, ``"schedule"`` at the last step). Everything else is
    read from :attr:`batch` (or ``diffusion_gym.envs.batch_of(env)``)."""

    vector_class: ClassVar[type[BatchedSamplerEnv]]  # set by each family's view
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs):
        if "num_envs" in kwargs:
            raise TypeError(
                f"{type(self).__name__} is a single env: use {self.vector_class.__name__} "
                "for num_envs"
            )
        self._batch = self.vector_class(num_envs=1, render_mode=render_mode, **kwargs)
        self._batch._set_autoreset(False)
        self.render_mode = render_mode
        self.observation_space = self._batch.single_observation_space
        self.action_space = self._batch.single_action_space

    @property
    def batch(self) -> BatchedSamplerEnv:
        """The vector env of one behind this view (all public properties live there)."""
        return self._batch

    @property
    def preset(self) -> presets.Preset:
        return self._batch.preset

    @property
    def denoiser(self) -> Denoiser:
        return self._batch.denoiser

    @property
    def device(self) -> torch.device:
        return self._batch.device

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, _ = self._batch.reset(seed=seed, options=options)
        return obs[0], {}

    def step(self, action):
        a = action if isinstance(action, torch.Tensor) else np.asarray(action)
        shape = self.action_space.shape
        if tuple(a.shape) != shape and not (shape == () and tuple(a.shape) == (1,)):
            raise ValueError(f"action must have shape {shape}, got {tuple(a.shape)}")
        obs, reward, terminated, truncated, info = self._batch.step(a.reshape(1, *shape))
        info = {k: v[0] for k, v in info.items() if not k.startswith("_")}
        info = {k: (v.item() if np.ndim(v) == 0 else v) for k, v in info.items()}
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def render(self):
        return self._batch.render()

    def close(self):
        self._batch.close()


def batch_of(env: Any) -> BatchedSamplerEnv:
    """The native batched vector env behind ``env``: the env itself, the batch of a
    :class:`SingleEnvView` (``gym.make``), or the one inside any chain of gymnasium
    wrappers (``env.unwrapped``) or SB3 ``VecEnv`` wrappers (``.venv``). ``TypeError``
    otherwise."""
    seen = env
    for _ in range(64):
        if isinstance(seen, BatchedSamplerEnv):
            return seen
        if isinstance(seen, SingleEnvView):
            return seen.batch
        nxt = getattr(seen, "unwrapped", None)
        if nxt is None or nxt is seen:
            nxt = getattr(seen, "venv", None)
        if nxt is None or nxt is seen:
            break
        seen = nxt
    raise TypeError(
        f"batch_of needs a diffusion_gym env (vector env, gym.make view or a wrapper of "
        f"one), got {type(env).__name__}"
    )
