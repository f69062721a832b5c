"""Gymnasium environments over a frozen denoiser.

- :mod:`.guidance`: discrete guidance-weight / churn actions (``diffusion_gym/Guidance-v0``);
  :mod:`.actions`: its (w, γ) :class:`ActionTable`.
- :mod:`.clock`: continuous clock-speed actions, i.e. the timestep schedule of a fixed budget
  (``diffusion_gym/Clock-v0``); :mod:`.clock_spec`: :class:`ClockSpec` and the warped
  :class:`Clock`; :mod:`.bank`: the :class:`ReferenceBank`.
- :mod:`.rendering`: drawing helpers shared by the environments.

:func:`batch_of` gives the native batched vector env behind any of them (a vector env, a
single-env view from ``gym.make``, or any wrapper around them); its public properties are the
API consumers read (see docs/guidance_env.md and docs/clock_env.md).
"""

from __future__ import annotations

from typing import Any

from .actions import ActionTable
from .bank import ReferenceBank
from .clock import ClockEnv, ClockRollout, ClockVectorEnv
from .clock_spec import Clock, ClockSpec, schedule_from_actions
from .guidance import GuidanceEnv, GuidanceVectorEnv, Rollout

__all__ = [
    "batch_of",
    "ActionTable",
    "Clock",
    "ClockEnv",
    "ClockRollout",
    "ClockSpec",
    "ClockVectorEnv",
    "GuidanceEnv",
    "GuidanceVectorEnv",
    "ReferenceBank",
    "Rollout",
    "schedule_from_actions",
]

_NATIVE = (GuidanceVectorEnv, ClockVectorEnv)
_VIEWS = (GuidanceEnv, ClockEnv)


def batch_of(env: Any) -> GuidanceVectorEnv | ClockVectorEnv:
    """The native batched vector env behind ``env``: the env itself, the vector env of a
    single-env view (``gym.make``), or the one inside any chain of gymnasium wrappers
    (``env.unwrapped``) or SB3 ``VecEnv`` wrappers (``.venv``). ``TypeError`` otherwise."""
    seen = env
    for _ in range(64):
        if isinstance(seen, _NATIVE):
            return seen
        if isinstance(seen, _VIEWS):
            return seen.vec
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
