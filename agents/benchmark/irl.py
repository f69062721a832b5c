"""The benchmark's IRL column: an off-the-shelf algorithm as the generator of
:mod:`agents.irl`'s occupancy-matching reward.

:func:`irl_trainer` builds an :class:`agents.irl.IRLTrainer` on the Guidance env of the
evaluation batch and replaces its generator by the benchmarked algorithm; :func:`irl_learn`
runs the trainer's rounds (rollout, relabel, policy update, discriminator update) until the
budget is spent. Which algorithms fit: :func:`agents.benchmark.algos.irl_fit_reason`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from stable_baselines3.common.vec_env import VecMonitor

from agents import irl
from diffusion_gym.envs import GuidanceVectorEnv, batch_of

from .algos import AlgoSpec
from .config import BenchmarkConfig, EnvConfig, irl_discriminator

__all__ = ["irl_learn", "irl_trainer"]


def irl_trainer(
    spec: AlgoSpec,
    policy: str,
    kwargs: dict,
    env_cfg: EnvConfig,
    eval_env: Any,
    n: int,
    cfg: BenchmarkConfig,
    tb_dir: Path | None,
) -> irl.IRLTrainer:
    """An :class:`agents.irl.IRLTrainer` on the env of ``eval_env`` (``n`` envs) whose
    generator is replaced by ``spec``'s model (the trainer's discriminator, relabelling and
    rounds). ``kwargs`` are the algorithm's constructor arguments (``n_steps`` is rounded up
    to whole episodes here)."""
    u = batch_of(eval_env)
    if not isinstance(u, GuidanceVectorEnv):
        raise TypeError(f"the IRL reward needs a Guidance env, got {type(u).__name__}")
    env = irl.EnvConfig(
        preset=u.preset.name,
        num_envs=n,
        num_steps=u.num_steps,
        solver=u.solver,
        schedule=_irl_schedule(env_cfg),
        guidance_weights=[float(w) for w in u.action_table.weights],
        gammas=[float(g) for g in u.action_table.gammas],
        obs_mode=u.obs_mode,
        class_labels=env_cfg.kwargs.get("class_labels"),
        device=cfg.env_device,
    )
    disc = irl_discriminator(env_cfg)
    # The trainer's own PPO is replaced below; keep it small (batch = one rollout).
    algo = irl.AlgoConfig(net_arch=[8], batch_size=n * u.num_steps)
    trainer = irl.IRLTrainer(
        irl.Config(seed=kwargs["seed"], env=env, algo=algo, discriminator=disc)
    )
    if spec.on_policy and "n_steps" in kwargs:  # rollouts of whole episodes (rounds reset)
        kwargs["n_steps"] = -(-kwargs["n_steps"] // u.num_steps) * u.num_steps
    trainer.venv = VecMonitor(trainer.venv)
    tb = str(tb_dir / env_cfg.label / f"{spec.name}_s{kwargs['seed']}") if tb_dir else None
    trainer.model = spec.load()(policy, trainer.venv, tensorboard_log=tb, **kwargs)
    return trainer


def _irl_schedule(env_cfg: EnvConfig) -> str:
    schedule = env_cfg.kwargs.get("schedule", "karras")
    if not isinstance(schedule, str):
        raise ValueError("the IRL reward needs a named schedule (agents.irl.EnvConfig.schedule)")
    return schedule


def irl_learn(trainer: irl.IRLTrainer, steps: int, curve: Any) -> None:
    """IRL rounds (rollout, relabel, policy update, discriminator update) until ``steps``
    env steps, ticking the :class:`~agents.benchmark.runner.CurveCallback` ``curve`` after
    each; the train return is the IRL return per episode."""
    model, stats = trainer.model, {}
    curve.train_return_fn = lambda: stats.get("irl_reward", math.nan) * trainer.env.num_steps
    while model.num_timesteps < steps:
        stats = trainer.train_round()
        if getattr(curve, "model", None) is None:
            curve.init_callback(model)  # model.logger exists once learn() has run
        for key in ("irl_reward", "env_reward", "loss", "accuracy"):
            model.logger.record(f"irl/{key}", stats[key])
        curve.tick()
    trainer.venv.close()
