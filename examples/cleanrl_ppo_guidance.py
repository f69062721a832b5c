"""CleanRL-style PPO (discrete actions) on Guidance-v0 with the IRL reward, one file.

After CleanRL's ``ppo.py``: a typed ``Args`` dataclass, the env, the agent, the loop. The env
is the native batched vector env (``gym.make_vec(..., vectorization_mode="vector_entry_point")``,
autoreset ``SAME_STEP``: the observation returned at the end of an episode is the next
episode's first, as CleanRL's GAE loop expects) of Guidance-v0 (the imperfect 8-Gaussian
ring, 4 Heun steps; an action picks (w, γ) from 18 pairs), wrapped by
:class:`agents.irl.DiscriminatorReward`: every step pays the occupancy-matching IRL reward
of the state it arrives in, and the discriminator is trained online against real data
noised to the same σ (``--reward log_prob`` uses the env's terminal log-likelihood instead).

    python examples/cleanrl_ppo_guidance.py --total-timesteps 300000 --seed 0 --out runs/g.json

At the end the deterministic policy (argmax) is scored on a fixed evaluation batch (class-
conditional energy distance to true data, ``agents.benchmark.evaluation``) against every
constant (w, γ) of the action table.
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
from torch.distributions.categorical import Categorical

import diffusion_gym  # noqa: F401 - registers the ids
from agents.benchmark.evaluation import baseline_policies, evaluate_policy_batch
from agents.irl import DiscriminatorReward, IRLDiscriminatorConfig

ENV_ID = "diffusion_gym/Guidance-v0"


@dataclass
class Args:
    seed: int = 0
    """seed of the experiment (torch, the env's episode streams, the discriminator)"""
    total_timesteps: int = 300_000
    """env steps, summed over the envs"""
    reward: str = "irl"
    """``irl`` (DiscriminatorReward) or ``log_prob`` (the env's terminal log p(x_0|c))"""
    learning_rate: float = 1e-3
    """Adam step size"""
    num_envs: int = 256
    """trajectories in the batched env"""
    num_steps: int = 8
    """steps per env per rollout (2 episodes of 4 steps)"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0"""
    gamma: float = 1.0
    """discount (episodes of 4 steps: undiscounted)"""
    gae_lambda: float = 0.95
    """GAE λ"""
    num_minibatches: int = 8
    """minibatches per epoch"""
    update_epochs: int = 4
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
    divergence: str = "reverse_kl"
    """IRL reward's f-divergence (AIRL ``reverse_kl``, GAIL ``js``, ...)"""
    disc_update_every: int = 8
    """env steps between discriminator updates (one rollout)"""
    eval_samples: int = 2048
    """episodes of the final evaluation batch"""
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
    def __init__(self, obs_dim: int, n_actions: int):
        super().__init__()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )  # fmt: skip
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, 64)), nn.Tanh(),
            layer_init(nn.Linear(64, n_actions), std=0.01),
        )  # fmt: skip

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        probs = Categorical(logits=self.actor(x))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)

    def predict(self, obs: np.ndarray, deterministic: bool = True, **_):
        """SB3's ``predict`` signature (the evaluation's policy interface): argmax action."""
        with torch.no_grad():
            return self.actor(torch.as_tensor(obs, dtype=torch.float32)).argmax(1).numpy(), None


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.reward not in ("irl", "log_prob"):
        raise ValueError(f"--reward must be 'irl' or 'log_prob', got {args.reward!r}")
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = max(args.total_timesteps // batch_size, 1)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    env_reward = "none" if args.reward == "irl" else "log_prob"
    envs = gym.make_vec(
        ENV_ID, num_envs=args.num_envs, vectorization_mode="vector_entry_point", reward=env_reward
    )
    if args.reward == "irl":
        disc = IRLDiscriminatorConfig(divergence=args.divergence, logit_clip=10.0, grad_penalty=1.0)
        envs = DiscriminatorReward(envs, disc, update_every=args.disc_update_every, seed=args.seed)
    obs_dim = envs.single_observation_space.shape[0]
    agent = Agent(obs_dim, int(envs.single_action_space.n))
    optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    obs = torch.zeros((args.num_steps, args.num_envs, obs_dim))
    actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long)
    logprobs = torch.zeros((args.num_steps, args.num_envs))
    rewards = torch.zeros((args.num_steps, args.num_envs))
    dones = torch.zeros((args.num_steps, args.num_envs))
    values = torch.zeros((args.num_steps, args.num_envs))

    t0 = time.perf_counter()
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs, next_done = torch.Tensor(next_obs), torch.zeros(args.num_envs)
    for iteration in range(1, num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate
        for step in range(args.num_steps):
            obs[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            values[step], actions[step], logprobs[step] = value.flatten(), action, logprob
            next_obs, reward, term, trunc, _ = envs.step(action.numpy())
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32)
            next_obs = torch.Tensor(next_obs)
            next_done = torch.as_tensor(np.logical_or(term, trunc), dtype=torch.float32)

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

        b_obs, b_actions = obs.reshape(-1, obs_dim), actions.reshape(-1)
        b_logprobs, b_advantages = logprobs.reshape(-1), advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_inds = np.arange(batch_size)
        for epoch in range(args.update_epochs):
            np.random.default_rng(args.seed * 100_003 + iteration * 101 + epoch).shuffle(b_inds)
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

    # Evaluation: class-conditional energy distance on a fixed batch, policy vs constants.
    ev = gym.make_vec(
        ENV_ID, num_envs=args.eval_samples, vectorization_mode="vector_entry_point",
        reward="log_prob",
    )  # fmt: skip
    consts = {
        name: evaluate_policy_batch(p, ev, seed=12345)["metric"]
        for name, p in baseline_policies(ev).items()
    }
    best = min(consts, key=consts.get)
    result = {
        "learner": "cleanrl-ppo", "reward": args.reward, "seed": args.seed,
        "total_timesteps": args.total_timesteps, "train_seconds": round(train_s, 1),
        "energy": evaluate_policy_batch(agent, ev, seed=12345)["metric"],
        "best_constant": best, "best_constant_energy": consts[best],
    }  # fmt: skip
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
