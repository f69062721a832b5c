"""The IRL reward as a gymnasium vector-env wrapper, for any learner (CleanRL, SB3, ...).

:class:`agents.irl.IRLTrainer` relabels an SB3 rollout buffer with the discriminator; this
wrapper gives the same occupancy-matching reward to a learner that only sees
``env.step``: every step pays r = scale · f*(f'(exp ℓ(s_{k+1}))) of the state the
transition arrives in (the terminal observation where an episode ends), with ℓ the logit of
the *current* discriminator, and every ``update_every`` steps the discriminator takes
``config.epochs`` passes of logistic loss on the states seen since the last update against
expert states (real x_0 ~ data(c) noised to the same σ_k, class c;
``GuidanceVectorEnv.expert_observations``). The env's own reward goes to
``info["env_reward"]``.

Differences from the trainer: the reward is computed when the step happens (with the
discriminator of that moment) instead of relabelled after the rollout, as in GAIL
implementations that wrap the env; it needs ``obs_mode="state"`` (the discriminator reads
the observation). Works with any autoreset mode that gives ``info["final_obs"]`` (SAME_STEP)
or returns the final observation itself (NEXT_STEP, DISABLED).

    env = DiscriminatorReward(gym.make_vec("diffusion_gym/Guidance-v0", num_envs=64,
                                           vectorization_mode="vector_entry_point"))
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from diffusion_gym.envs import batch_of

from ..discriminator import Discriminator, reward_from_logit, train_discriminator
from .config import IRLDiscriminatorConfig
from .trainer import decode_step_class

__all__ = ["DiscriminatorReward"]


class DiscriminatorReward(gym.vector.VectorWrapper):
    """Replace a Guidance vector env's reward by the online-trained IRL reward.

    :param env: a Guidance vector env (``obs_mode="state"``), or a wrapper chain around one.
    :param config: the discriminator and its reward (:class:`IRLDiscriminatorConfig`;
        default: JS/GAIL reward, a 64-64 MLP, ``logit_clip`` 10); ``source`` must be
        ``"separate"`` and ``input`` ``"obs"``.
    :param update_every: env steps (of the whole batch) between discriminator updates.
    :param seed: seed of the discriminator's weights and of the expert draws.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        config: IRLDiscriminatorConfig | None = None,
        *,
        update_every: int = 16,
        seed: int = 0,
    ):
        super().__init__(env)
        cfg = config or IRLDiscriminatorConfig(logit_clip=10.0)
        if cfg.source != "separate" or cfg.input != "obs":
            raise ValueError(
                "DiscriminatorReward needs config.source 'separate' and config.input 'obs', "
                f"got source={cfg.source!r}, input={cfg.input!r}"
            )
        if not isinstance(update_every, int) or isinstance(update_every, bool) or update_every < 1:
            raise ValueError(f"update_every must be an int >= 1, got {update_every!r}")
        self.guidance_env = batch_of(env)
        if not hasattr(self.guidance_env, "expert_observations"):
            raise TypeError(
                "DiscriminatorReward needs a Guidance env (expert_observations), got "
                f"{type(self.guidance_env).__name__}"
            )
        if self.guidance_env.obs_mode != "state":
            raise ValueError(
                "DiscriminatorReward reads x from the observation: needs obs_mode 'state', "
                f"got {self.guidance_env.obs_mode!r}"
            )
        self.config, self.update_every = cfg, update_every
        self.device = self.guidance_env.device
        obs_dim = int(self.guidance_env.single_observation_space.shape[0])
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # the weights from `seed`, global RNG untouched
            torch.manual_seed(int(torch.randint(2**31, (), generator=g)))
            self.disc = Discriminator(obs_dim, cfg).to(self.device)
        self.optimizer = torch.optim.Adam(
            self.disc.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.seed, self.updates, self.last_stats = seed, 0, {}
        self._states: list[torch.Tensor] = []

    @torch.no_grad()
    def reward(self, s: torch.Tensor) -> torch.Tensor:
        """IRL reward of arriving in observations ``s [n, obs_dim]``: scale · f*(f'(e^ℓ))."""
        ell = self.disc(s.float())
        if self.config.logit_clip is not None:
            ell = ell.clamp(-self.config.logit_clip, self.config.logit_clip)
        return self.config.reward_scale * reward_from_logit(ell, self.config.divergence)

    def step(self, actions) -> tuple[Any, np.ndarray, Any, Any, dict[str, Any]]:
        obs, env_reward, term, trunc, info = self.env.step(actions)
        nxt = np.array(obs, dtype=np.float32, copy=True)
        if "final_obs" in info:  # SAME_STEP: the arrival state of an ended episode
            for i in np.flatnonzero(info.get("_final_obs", np.logical_or(term, trunc))):
                nxt[i] = info["final_obs"][i]
        s = torch.as_tensor(nxt, device=self.device)
        self._states.append(s)
        reward = self.reward(s).cpu().numpy().astype(np.float64)
        info = {**info, "env_reward": env_reward}
        if len(self._states) >= self.update_every:
            self.last_stats = self.update()
        return obs, reward, term, trunc, info

    def update(self) -> dict[str, float]:
        """One discriminator update on the states since the last one (logistic loss, paired
        with expert states at the same σ_k and class). Returns its loss and accuracy."""
        policy = torch.cat(self._states).float()
        self._states = []
        env = self.guidance_env
        k, labels = decode_step_class(env, policy)
        g = torch.Generator().manual_seed(
            self.config.expert_seed + 1_000_003 * self.seed + self.updates
        )
        expert = env.expert_observations(k, labels, g).float()
        self.disc.update_normalizer(torch.cat([expert, policy]))
        stats = train_discriminator(self.disc, self.optimizer, expert, policy, self.config, g)
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1
        return stats
