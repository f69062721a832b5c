"""ART-RL: actor-critic timestep schedules for the Clock env, distillation, export, transfer.

ART (Huang, Tang & Zhou, arXiv 2601.18681) treats the speed θ = dψ/du of a reparameterised
clock ψ(u), u ∈ [0, 1], as a control: a uniform grid on u becomes an uneven grid in diffusion
time, and the learned speed decides where the K solver steps of a fixed budget land. Two
learners live here:

1. **SB3 actor-critic with Gaussian policies** (PPO, A2C, SAC) on the batched
   ``ClockVectorEnv`` through ``agents.vec_env.SB3VecEnv``; the reward is the env's
   (``"terminal_error"`` by default), optionally transformed (log error, see
   :class:`RewardTransform`) since per-sample terminal errors span orders of magnitude.
2. **ART's own continuous-time actor-critic** (:class:`ContinuousActorCritic`) for the
   local-error surrogate on the linear clock σ = T − ψ: a critic V(u, x, ψ), TD increments
   with the running reward −|Q|θ² + γθ (the multiplier term), a Gaussian policy on θ, and the
   Lagrange multiplier γ updated on the terminal-time constraint ψ(1) = T.

Distillation: the learned policy's mean action per step becomes a fixed schedule (zero
inference overhead), exported as ``schedule.json`` (``diffusion_gym.schedules.save_schedule``)
that ``steps.sample`` and the harness (``FixedSchedule``) load; ``interpolate`` moves it to
other budgets. :func:`run` is the ``diffusion-gym train`` entry (``agent: art``).

Modules: ``config`` (the dataclasses), ``actor_critic`` (ART's learner), ``wrappers`` (the
VecEnv wrappers), ``sb3`` (env, model, callback, distillation), ``schedules`` (W2 of the
1-D toy, transfer), ``report`` (evaluation through the harness), ``trainer`` (:func:`run`).
"""

from .actor_critic import ContinuousActorCritic, clock_schedule, local_error_coefficient
from .config import ALGOS, POLICY_INPUTS, REWARD_TRANSFORMS, ActorCriticConfig, Config, EvalConfig
from .report import evaluate_schedule
from .sb3 import (
    SB3_ALGOS,
    ArtCallback,
    SplitExtractor,
    TimeActorPolicy,
    algo_defaults,
    distill,
    make_env,
    make_model,
    mean_schedule,
)
from .schedules import gaussian_1d_w2, transfer_schedule
from .trainer import RESTART_SELECT_SAMPLES, run
from .wrappers import RewardTransform, SelfCriticalReward, TimeInputs, find_wrapper

__all__ = [
    "Config",
    "EvalConfig",
    "ActorCriticConfig",
    "ContinuousActorCritic",
    "local_error_coefficient",
    "clock_schedule",
    "ALGOS",
    "REWARD_TRANSFORMS",
    "POLICY_INPUTS",
    "RESTART_SELECT_SAMPLES",
    "SB3_ALGOS",
    "make_env",
    "make_model",
    "algo_defaults",
    "distill",
    "mean_schedule",
    "gaussian_1d_w2",
    "transfer_schedule",
    "evaluate_schedule",
    "run",
    "TimeInputs",
    "RewardTransform",
    "SelfCriticalReward",
    "find_wrapper",
    "SplitExtractor",
    "TimeActorPolicy",
    "ArtCallback",
]
