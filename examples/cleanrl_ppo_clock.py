"""CleanRL-style PPO (continuous actions) on Clock-v0 (gmm-64d, Heun K = 5), one file.

After CleanRL's ``ppo_continuous_action.py``: a typed ``Args`` dataclass, the env, the agent,
the loop. The env is the native batched vector env (``gym.make_vec(...,
vectorization_mode="vector_entry_point")``: one tensor batch, autoreset ``SAME_STEP``, so the
observation returned at the end of an episode is the next episode's first, as CleanRL's GAE
loop expects). The env options that make PPO learn without normalisation wrappers
(docs/clock_env.md, "Rewards for plain learners"): ``obs_mode="time"`` (log σ_k, k/K,
remaining clock: an open-loop policy whose mean actions are one schedule),
``reward="log_terminal_error"`` with ``reward_baseline="base"`` (terminal reward
log(mse_base / mse) on the same x_T).

    python examples/cleanrl_ppo_clock.py --total-timesteps 80000 --seed 0 --out runs/cleanrl.json

At the end the deterministic policy (the Gaussian's mean) is scored on held-out noise, a
reference bank built from another seed, against the base schedule (a = 0, EDM ρ = 7).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn, optim
from torch.distributions.normal import Normal

import diffusion_gym  # noqa: F401 - registers the ids
from diffusion_gym.envs import batch_of

ENV_ID = "diffusion_gym/Clock-v0"
ENV_KWARGS = dict(
    denoiser="gmm-64d", budget=5, solver="heun", obs_mode="time",
    reward="log_terminal_error", reward_baseline="base",
)  # fmt: skip


@dataclass
class Args:
    seed: int = 0
    """seed of the experiment (torch, and the env's episode streams)"""
    total_timesteps: int = 80_000
    """env steps, summed over the envs"""
    learning_rate: float = 3e-4
    """Adam step size"""
    num_envs: int = 64
    """trajectories in the batched env"""
    num_steps: int = 40
    """steps per env per rollout (8 episodes of K = 5)"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0"""
    gamma: float = 1.0
    """discount (episodes of K steps: undiscounted)"""
    gae_lambda: float = 1.0
    """GAE λ (1: Monte-Carlo returns)"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    update_epochs: int = 10
    """epochs per rollout"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """PPO clip ε"""
    ent_coef: float = 0.0
    """entropy bonus"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    log_std_init: float = -2.5
    """initial log std of the Gaussian policy (learned)"""
    bank_size: int = 1024
    """training reference bank (x_T, x_ref) entries"""
    eval_samples: int = 2048
    """held-out episodes of the final evaluation"""
    threads: int = 1
    """torch threads"""
    out: str = ""
    """write the result here (JSON) if set"""


def parse_args(argv: list[str] | None = None) -> Args:
    """``--field value`` for every field of :class:`Args` (``--anneal-lr false``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in dataclasses.fields(Args):
        kind = (lambda s: s.lower() in ("1", "true", "yes")) if f.type == "bool" else eval(f.type)  # noqa: S307
        ap.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    return Args(**vars(ap.parse_args(argv)))


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, log_std_init: float):
        super().__init__()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )  # fmt: skip
        self.actor_mean = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, act_dim), std=0.01),
        )  # fmt: skip
        self.actor_logstd = nn.Parameter(torch.full((1, act_dim), log_std_init))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        mean = self.actor_mean(x)
        probs = Normal(mean, self.actor_logstd.expand_as(mean).exp())
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action).sum(1), probs.entropy().sum(1), self.critic(x)


def heldout_rmse(policies: dict, *, num_samples: int, bank_seed: int = 12345) -> dict:
    """RMSE to the reference ODE solution of each ``act(obs) -> [B, 1]`` on a held-out bank
    (the same episodes for every policy)."""
    env = batch_of(
        gym.make_vec(
            ENV_ID, num_envs=num_samples, vectorization_mode="vector_entry_point",
            bank_size=num_samples, bank_seed=bank_seed, **ENV_KWARGS,
        )
    )  # fmt: skip
    out = {}
    for name, act in policies.items():
        ro = env.rollout(lambda obs, k, act=act: act(obs), seed=0)
        out[name] = float((ro.x0 - ro.x_ref).pow(2).reshape(num_samples, -1).mean().sqrt())
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = max(args.total_timesteps // batch_size, 1)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    envs = gym.make_vec(
        ENV_ID, num_envs=args.num_envs, vectorization_mode="vector_entry_point",
        bank_size=args.bank_size, **ENV_KWARGS,
    )  # fmt: skip
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    agent = Agent(obs_dim, act_dim, args.log_std_init)
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    obs = torch.zeros((args.num_steps, args.num_envs, obs_dim))
    actions = torch.zeros((args.num_steps, args.num_envs, act_dim))
    logprobs = torch.zeros((args.num_steps, args.num_envs))
    rewards = torch.zeros((args.num_steps, args.num_envs))
    dones = torch.zeros((args.num_steps, args.num_envs))
    values = torch.zeros((args.num_steps, args.num_envs))

    t0 = time.perf_counter()
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs, next_done = torch.Tensor(next_obs), torch.zeros(args.num_envs)
    returns_log = []
    for iteration in range(1, num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate
        for step in range(args.num_steps):
            obs[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            values[step], actions[step], logprobs[step] = value.flatten(), action, logprob
            # The env's Box is [-1, 1] (CleanRL's ClipAction wrapper, in one line).
            next_obs, reward, term, trunc, _ = envs.step(np.clip(action.numpy(), -1.0, 1.0))
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32)
            next_obs = torch.Tensor(next_obs)
            next_done = torch.as_tensor(np.logical_or(term, trunc), dtype=torch.float32)
            if term.any():
                returns_log.append(float(reward[term].mean()))

        # GAE (SAME_STEP autoreset: dones[t + 1] marks obs[t + 1] as a new episode's first).
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards)
            lastgaelam = 0
            for t in reversed(range(args.num_steps)):
                if t == args.num_steps - 1:
                    nextnonterminal, nextvalues = 1.0 - next_done, next_value
                else:
                    nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
                delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
                advantages[t] = lastgaelam
            returns = advantages + values

        b_obs, b_actions = obs.reshape(-1, obs_dim), actions.reshape(-1, act_dim)
        b_logprobs, b_advantages = logprobs.reshape(-1), advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_inds = np.arange(batch_size)
        for _epoch in range(args.update_epochs):
            np.random.default_rng(args.seed * 100_003 + iteration * 101 + _epoch).shuffle(b_inds)
            for start in range(0, batch_size, minibatch_size):
                mb = b_inds[start : start + minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    b_obs[mb], b_actions[mb]
                )
                ratio = (newlogprob - b_logprobs[mb]).exp()
                mb_adv = b_advantages[mb]
                if args.norm_adv:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss1 = -mb_adv * ratio
                pg_loss2 = -mb_adv * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()
                v_loss = 0.5 * ((newvalue.view(-1) - b_returns[mb]) ** 2).mean()
                loss = pg_loss - args.ent_coef * entropy.mean() + v_loss * args.vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
    train_s = time.perf_counter() - t0

    def act(o: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return np.clip(agent.actor_mean(o).numpy(), -1.0, 1.0)

    n = args.eval_samples
    result = {
        "learner": "cleanrl-ppo", "seed": args.seed, "total_timesteps": args.total_timesteps,
        "train_seconds": round(train_s, 1),
        "last_train_return": float(np.mean(returns_log[-20:])) if returns_log else None,
        **heldout_rmse(
            {"heldout_rmse": act, "base_rmse": lambda o: np.zeros((len(o), 1))}, num_samples=n
        ),
    }  # fmt: skip
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
