"""Gymnasium environments over a frozen denoiser.

- :mod:`.guidance`: discrete guidance-weight / churn actions (``diffusion_gym/Guidance-v0``);
  :mod:`.actions`: its (w, γ) :class:`ActionTable`.
- :mod:`.clock`: continuous clock-speed actions, i.e. the timestep schedule of a fixed budget
  (``diffusion_gym/Clock-v0``); :mod:`.clock_spec`: :class:`ClockSpec` and the warped
  :class:`Clock`; :mod:`.bank`: the :class:`ReferenceBank`.
- :mod:`.base`: the shared base (:class:`BatchedSamplerEnv`: seeding, autoreset, device,
  render) and the single-env view (:class:`SingleEnvView`) of both families.
- :mod:`.rendering`: drawing helpers shared by the environments.

:func:`batch_of` gives the native batched vector env behind any of them (a vector env, a
single-env view from ``gym.make``, or any wrapper around them); its public properties are the
API consumers read (see docs/guidance_env.md and docs/clock_env.md).
"""

from __future__ import annotations

from .actions import ActionTable
from .bank import ReferenceBank
from .base import BatchedSamplerEnv, SingleEnvView, batch_of
from .clock import ClockEnv, ClockRollout, ClockVectorEnv
from .clock_spec import Clock, ClockSpec, max_speed_scale, schedule_from_actions
from .guidance import GuidanceEnv, GuidanceVectorEnv, Rollout

__all__ = [
    "batch_of",
    "ActionTable",
    "BatchedSamplerEnv",
    "SingleEnvView",
    "Clock",
    "ClockEnv",
    "ClockRollout",
    "ClockSpec",
    "ClockVectorEnv",
    "GuidanceEnv",
    "GuidanceVectorEnv",
    "ReferenceBank",
    "Rollout",
    "max_speed_scale",
    "schedule_from_actions",
]
