"""Plain stable-baselines3 PPO or SAC on Clock-v0 (gmm-64d, Heun K = 5): learn a timestep schedule.

Nothing project-specific in the learner: SB3's ``PPO("MlpPolicy")`` / ``SAC("MlpPolicy")``
with the hyperparameters below, on the batched env through ``agents.vec_env.SB3VecEnv``.
What makes it learn are env options (docs/clock_env.md, "Rewards for plain learners"):

- ``obs_mode="time"``: the policy sees log σ_k, k/K and the remaining clock (+ one-hot class),
  so its mean action per step is one schedule (an open-loop policy);
- ``reward="log_terminal_error"``, ``reward_baseline="base"``: the terminal reward is
  log(mse_base / mse), the log-ratio of the base schedule's error on the same x_T to the
  episode's: scale-free, 0 for the base schedule, no reward normalisation needed.

At the end the deterministic policy is scored on held-out noise (a reference bank with
another ``bank_seed``) against the base schedule (a = 0, EDM ρ = 7) and the result written to
``--out`` as JSON::

    python examples/sb3_clock.py --algo ppo --total-timesteps 80000 --seed 0 --out runs/ppo.json
    python examples/sb3_clock.py --algo sac --total-timesteps 80000 --seed 0 --out runs/sac.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm

import diffusion_gym  # noqa: F401 - registers the ids
from agents.vec_env import SB3VecEnv
from diffusion_gym.envs import batch_of

ENV_ID = "diffusion_gym/Clock-v0"
ENV_KWARGS = dict(
    denoiser="gmm-64d", budget=5, solver="heun", obs_mode="time",
    reward="log_terminal_error", reward_baseline="base",
)  # fmt: skip


def heldout_rmse(
    policies: dict[str, Callable], *, num_samples: int, bank_size: int, bank_seed: int = 12345
) -> dict[str, float]:
    """RMSE to the reference ODE solution of each ``act(obs [B, d] float32 tensor) -> [B, 1]``
    on held-out noise: one bank built from another seed than training's (bank_seed 0), the
    same episodes (``rollout(seed=0)``) for every policy."""
    env = batch_of(
        gym.make_vec(
            ENV_ID, num_envs=num_samples, vectorization_mode="vector_entry_point",
            bank_size=bank_size, bank_seed=bank_seed, **ENV_KWARGS,
        )
    )  # fmt: skip
    out = {}
    for name, act in policies.items():
        ro = env.rollout(lambda obs, k, act=act: act(obs), seed=0)
        out[name] = float((ro.x0 - ro.x_ref).pow(2).reshape(num_samples, -1).mean().sqrt())
    return out


def make_model(algo: str, env: SB3VecEnv, seed: int, log_std_init: float) -> BaseAlgorithm:
    """PPO or SAC with the documented hyperparameters (episodes of K steps: γ = 1)."""
    K, n = ENV_KWARGS["budget"], env.num_envs
    if algo == "ppo":
        return PPO(
            "MlpPolicy", env, seed=seed, device="cpu", verbose=0,
            n_steps=8 * K,  # 8 episodes of K steps per env per rollout
            batch_size=8 * K * n // 4, n_epochs=10, learning_rate=3e-4,
            gamma=1.0, gae_lambda=1.0, clip_range=0.2, ent_coef=0.0,
            policy_kwargs=dict(net_arch=[64, 64], log_std_init=log_std_init),
        )  # fmt: skip
    if algo == "sac":
        return SAC(
            "MlpPolicy", env, seed=seed, device="cpu", verbose=0,
            learning_rate=1e-3, buffer_size=100_000, learning_starts=10 * n, batch_size=256,
            gamma=1.0, tau=0.02, train_freq=1,
            gradient_steps=max(n // 4, 1),  # one gradient step per 4 transitions
            policy_kwargs=dict(net_arch=[64, 64]),
        )  # fmt: skip
    raise ValueError(f"--algo must be 'ppo' or 'sac', got {algo!r}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algo", default="ppo", help="ppo or sac")
    ap.add_argument("--total-timesteps", type=int, default=80_000)
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--bank-size", type=int, default=1024)
    ap.add_argument("--eval-samples", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-std-init", type=float, default=-2.5, help="PPO's initial log std")
    ap.add_argument(
        "--reward",
        default="log_terminal_error",
        help="log_terminal_error (log-ratio to the base) or terminal_error "
        "(improvement over the base / the base's mean error)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the result here (JSON)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.reward == "terminal_error":
        ENV_KWARGS.update(reward="terminal_error", reward_scale="base")
    elif args.reward != "log_terminal_error":
        raise ValueError(
            f"--reward must be log_terminal_error or terminal_error, got {args.reward!r}"
        )

    env = SB3VecEnv(
        gym.make_vec(
            ENV_ID, num_envs=args.num_envs, vectorization_mode="vector_entry_point",
            bank_size=args.bank_size, **ENV_KWARGS,
        )
    )  # fmt: skip
    model = make_model(args.algo, env, args.seed, args.log_std_init)
    t0 = time.perf_counter()
    model.learn(args.total_timesteps)
    train_s = time.perf_counter() - t0

    def act(obs: torch.Tensor) -> np.ndarray:
        a, _ = model.predict(obs.numpy(), deterministic=True)
        return np.clip(a, -1.0, 1.0)

    n, bank = args.eval_samples, args.eval_samples
    result = {
        "learner": f"sb3-{args.algo}", "seed": args.seed, "reward": args.reward,
        "total_timesteps": args.total_timesteps,
        "train_seconds": round(train_s, 1),
        **heldout_rmse(
            {"heldout_rmse": act, "base_rmse": lambda o: np.zeros((len(o), 1))},
            num_samples=n, bank_size=bank,
        ),
    }  # fmt: skip
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
