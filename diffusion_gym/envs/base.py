"""One base for both environments: a batched sampler as a native Gymnasium ``VectorEnv``, and
the single-env view over a batch of one.

:class:`BatchedSamplerEnv` holds what Guidance and Clock share: the preset and device, the
seeding contract (DESIGN.md: a reset with ``seed=s`` gives env ``i`` the base seed ``s + i``,
episode ``e`` of env ``i`` draws from ``derive_keys(s + i, salt=e)``, so env ``i``'s
trajectory does not depend on ``num_envs``), the three gymnasium autoreset modes
(``autoreset_mode``: ``SAME_STEP``, the default, with ``final_obs`` / ``final_info``;
``NEXT_STEP``; ``DISABLED``), rendering and closing. A subclass implements
:meth:`_begin_episodes`, its step and its observation. :class:`SingleEnvView` is the
``gym.make`` entry point of both families, written once: a batch of one with autoreset off;
everything else is read from the batch (:func:`batch_of`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

from .. import memory, presets
from ..checks import as_int, as_seed
from ..denoisers.base import Denoiser, denoiser_name
from ..hostpaths import on_host
from .common import base_seeds, check_seed, episode_keys, resolve_preset
from .rendering import render_batch

__all__ = [
    "AUTORESET_MODES",
    "BatchedSamplerEnv",
    "SingleEnvView",
    "batch_of",
    "check_autoreset_mode",
    "check_device",
    "to_host",
]

#: The autoreset modes both vector envs accept (gymnasium's ``AutoresetMode`` members).
AUTORESET_MODES = (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED)


def check_autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    """An ``AutoresetMode`` from the member, its value (``"SameStep"``) or its name in any
    case (``"same_step"``, ``"NEXT_STEP"``, ``"disabled"``); ``ValueError`` otherwise."""
    if isinstance(mode, AutoresetMode):
        return mode
    if isinstance(mode, str):
        for m in AUTORESET_MODES:
            if mode in (m.value, m.name) or mode.lower() == m.name.lower():
                return m
    names = ", ".join(m.name.lower() for m in AUTORESET_MODES)
    raise ValueError(
        f"autoreset_mode must be a gymnasium.vector.AutoresetMode or one of {names}, got {mode!r}"
    )


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

    def _init_batch(
        self, num_envs, denoiser, data, device, render_mode, autoreset_mode=AutoresetMode.SAME_STEP
    ) -> presets.Preset:
        num_envs = as_int("num_envs", num_envs, 1)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.num_envs = num_envs
        self.render_mode = render_mode
        self._device = check_device(device)
        self._preset = resolve_preset(denoiser, data, self._device)
        self._init_autoreset(autoreset_mode)
        self._seeds: torch.Tensor | None = None  # [B] base seeds
        self._episodes: torch.Tensor | None = None  # [B] episode counters
        self._episode_serial = 0  # host mirror of the counters' moves (see _next_episodes)
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
        self._ended = False
        if seed is not None or self._seeds is None:
            seed = check_seed(seed, self.num_envs)
            if isinstance(seed, int) or seed is None:
                self._np_random, self._np_random_seed = seeding.np_random(seed)
            self._seeds = base_seeds(seed, self.num_envs, self.np_random).to(self._device)
            self._episodes = torch.zeros(self.num_envs, dtype=torch.int64, device=self._device)
            self._episode_serial = 0
        else:
            self._next_episodes()

    def _next_episodes(self) -> None:
        """Every env to its next episode: the counters on the device + 1, and their host
        mirror :attr:`_episode_serial` (how many such moves since the counters were set),
        which tells a subclass on a device that they walked on by one without reading them."""
        self._episodes += 1
        self._episode_serial += 1

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
        seed = check_seed(seed, batch)
        rng = seeding.np_random(seed if isinstance(seed, int) else None)[0]
        seeds = base_seeds(seed, batch, rng).to(device)
        return episode_keys(seeds, torch.zeros(batch, dtype=torch.int64, device=device))

    # -- memory -------------------------------------------------------------------------------
    def memory_estimate(self) -> dict[str, int]:
        """A lower estimate of the bytes this configuration holds, by part (``"host arrays"``
        are the numpy outputs of a step; the rest lives on :attr:`device`)."""
        raise NotImplementedError

    def _check_memory(self) -> None:
        """Refuse (``ValueError``) a configuration whose :meth:`memory_estimate` exceeds the
        memory available (see :mod:`diffusion_gym.memory`; ``DIFFUSION_GYM_MEMORY_LIMIT``)."""
        parts = self.memory_estimate()
        what = f"{type(self).__name__}(num_envs={self.num_envs}, preset {self._preset.name!r})"
        hint = "lower num_envs (or the sizes named above)"
        if self._device.type == "cpu":
            memory.check_fits(what, parts, self._device, hint)
            return
        host = {"host arrays": parts.pop("host arrays")}
        memory.check_fits(what, parts, self._device, hint)
        memory.check_fits(what, host, "cpu", hint)

    # -- outputs ------------------------------------------------------------------------------
    def _check_outputs(self, obs, reward) -> None:
        """``ValueError`` if observations or rewards hold NaN or ±inf (a finite but huge
        denoiser output can overflow them although x stayed finite). The fast path is one
        sum of each (a sum is finite only if every term is; one that overflows falls through
        to the exact test): on a step's host arrays (no device sync) or a rollout's tensors
        (one sync per rollout). ``reward=None``: the caller knows the rewards are finite (a
        shared zero reward), only the observations are checked."""
        if isinstance(obs, torch.Tensor):  # a rollout's tensors: one reduction, one sync
            total = float(obs.sum(dtype=torch.float64) + reward.sum(dtype=torch.float64))
        elif reward is None:  # observations only: two C calls, no error-state context
            total = 0.0 if np.isfinite(obs).all() else math.nan
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                total = float(obs.sum()) + float(reward.sum())
        if math.isfinite(total):
            return
        pairs = (("observation", obs), ("reward", reward))
        bad = [n for n, v in pairs if v is not None and not _all_finite(v)]
        if bad:
            raise ValueError(
                f"NaN or inf in the {' and the '.join(bad)}: the denoiser "
                f"{denoiser_name(self.denoiser)} (preset {self._preset.name!r}) produced "
                "outputs too large for them (or a reward callable returned NaN or inf)"
            )

    @staticmethod
    def _to_host(parts) -> list[np.ndarray]:
        """:func:`to_host`: numpy copies of a step's tensors in one copy to the host."""
        return to_host(parts)

    # -- autoreset ----------------------------------------------------------------------------
    # Every env of a batch ends its episode at the same step, so the three modes differ only
    # in when the next episodes start: SAME_STEP in the step that ends them (the subclass's
    # step, ``_autoreset`` True), NEXT_STEP in the following step (its actions are ignored;
    # :meth:`_next_step_reset`), DISABLED at the caller's ``reset()``. Either way the next
    # episode is ``episode_index + 1`` of the same streams: the same trajectories in every mode.
    def _init_autoreset(self, mode) -> None:
        mode = check_autoreset_mode(mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}  # per instance
        self._autoreset = mode is AutoresetMode.SAME_STEP
        self._ended = False  # episodes over and not restarted (NEXT_STEP, DISABLED)

    @property
    def autoreset_mode(self) -> AutoresetMode:
        """This env's ``gymnasium.vector.AutoresetMode`` (also ``metadata["autoreset_mode"]``)."""
        return self.metadata["autoreset_mode"]

    def _set_autoreset(self, on: bool) -> None:
        """Off for the single-env view: an ended episode then needs ``reset()``."""
        self._autoreset = on
        if not on:
            self.metadata = {**self.metadata, "autoreset_mode": AutoresetMode.DISABLED}

    def _end_episodes(self) -> None:
        """Called by a subclass's step when the episodes ended and were not auto-reset."""
        self._ended = True

    def _next_step_reset(self) -> bool:
        """True when this step is NEXT_STEP's reset step: the subclass's step then returns
        ``self.reset()``'s observation with zero reward, no termination, the reset's info."""
        return self._ended and self.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP

    def _check_reset_options(self, options: dict[str, Any] | None) -> dict[str, Any] | None:
        """``options`` without ``"reset_mask"`` (gymnasium's DISABLED-mode partial reset),
        which must select every env: the batch's episodes all end at the same step."""
        if not options or "reset_mask" not in options:
            return options
        mask = np.asarray(options["reset_mask"])
        if mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
            raise ValueError(
                f"reset_mask must be a bool array of shape ({self.num_envs},), got "
                f"{mask.dtype} {mask.shape}"
            )
        if not mask.all():
            raise ValueError(
                "reset_mask must select every env: the envs of a batch step in lockstep and "
                f"their episodes end together (got {int(mask.sum())} of {self.num_envs})"
            )
        return {k: v for k, v in options.items() if k != "reset_mask"} or None

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


def to_host(parts: Sequence[torch.Tensor | tuple[torch.Tensor, torch.dtype]]) -> list[np.ndarray]:
    """Numpy copies of tensors of one device in ONE device-to-host copy (a device sync): each
    part (or ``(tensor, dtype)``: cast to ``dtype`` on the device) is written into one fresh
    byte buffer on the device (8-byte aligned slots), the buffer is copied to the host once,
    and typed views of it are returned (fresh memory: they stay valid). CPU tensors are
    converted on the host (``.numpy()`` of a cast copy, or of the tensor itself: shared;
    with the host paths off, :mod:`diffusion_gym.hostpaths`, they are packed like a device's)."""
    items = [p if isinstance(p, tuple) else (p, p.dtype) for p in parts]
    if not items:
        return []
    device = items[0][0].device
    if on_host(device):
        return [(t if t.dtype == dt else t.to(dt)).numpy() for t, dt in items]
    slots, size = [], 0
    for t, dt in items:
        n = t.numel() * torch.empty((), dtype=dt).element_size()
        slots.append((size, n))
        size += n + (-n) % 8
    buf = torch.empty(size, dtype=torch.uint8, device=device)
    for (t, dt), (lo, n) in zip(items, slots, strict=True):
        buf[lo : lo + n].view(dt).view(t.shape).copy_(t)
    host = buf.cpu().numpy()
    out = []
    for (t, dt), (lo, n) in zip(items, slots, strict=True):
        np_dt = torch.empty((), dtype=dt).numpy().dtype
        out.append(host[lo : lo + n].view(np_dt).reshape(tuple(t.shape)))
    return out


def _all_finite(v: np.ndarray | torch.Tensor) -> bool:
    if isinstance(v, torch.Tensor):
        return bool(torch.isfinite(v).all())
    return bool(np.isfinite(v).all())


class SingleEnvView(gym.Env):
    """A single environment: a batch of one of ``vector_class`` with autoreset off (after the
    episode's last step, call :meth:`reset`). Same arguments as the vector env except
    ``num_envs``; same spaces unbatched; the reward is a float and the info holds env 0's
    values (``"x0"`` and, for Clock, ``"schedule"`` at the last step). Everything else is
    read from :attr:`batch` (or ``diffusion_gym.envs.batch_of(env)``)."""

    vector_class: ClassVar[type[BatchedSamplerEnv]]  # set by each family's view
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs):
        for key in ("num_envs", "autoreset_mode"):
            if key in kwargs:
                raise TypeError(
                    f"{type(self).__name__} is a single env (no autoreset: call reset() after "
                    f"the last step): use {self.vector_class.__name__} for {key}"
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
        seed = None if seed is None else as_seed("seed", seed)
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
