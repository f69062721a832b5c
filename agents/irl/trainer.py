"""The IRL trainer: the Guidance env, the SB3 learner, reward relabelling, the discriminator.

One round of :meth:`IRLTrainer.train_round` is the loop of :mod:`agents.irl`: rollout →
relabel (:class:`RelabelCallback`) → policy update → discriminator update.

Seeding: ``config.seed`` (any int in [0, 2**63 − 1]) seeds the SB3 learner at construction
(SB3's ``seed=``, 32 bits: :func:`agents.checkpoint.fit_seed`; Python, NumPy and torch's
global RNGs, then the policy's and the discriminator's initial weights); every round then
starts from :meth:`IRLTrainer.seed_round`: the global RNGs and one base seed per env, all
drawn from numpy's ``SeedSequence(seed, spawn_key=(round,))``, so rounds and envs get
independent noise (every x_T distinct) and a resumed run repeats an uninterrupted one; the
expert draws of round r use a generator seeded ``discriminator.expert_seed + r``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import set_random_seed

from baselines.evaluate import HIGHER_IS_BETTER, UNRANKED, evaluate
from diffusion_gym import presets
from diffusion_gym.data import check_data
from diffusion_gym.envs import batch_of
from diffusion_gym.envs.guidance import GuidanceVectorEnv

from ..checkpoint import fit_seed, load_state, rng_state, save_checkpoint, set_rng_state
from ..discriminator import Discriminator, reward_from_logit, train_discriminator
from ..policies import DualHeadPolicy, start_at_action, start_gaussian_at
from ..vec_env import SB3VecEnv
from .config import Config, EnvConfig, EvalConfig, resolve_schedule
from .strategy import PolicyStrategy, baseline_strategies

__all__ = [
    "IRLTrainer",
    "RelabelCallback",
    "algo_class",
    "decode_step_class",
    "make_env",
    "make_model",
]

#: Sampler steps of a named schedule when ``env.num_steps`` is not given.
DEFAULT_NUM_STEPS = 4

#: ``algo.name`` → SB3 / sb3-contrib class.
_ALGO_CLASSES: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "a2c": A2C,
    "maskable_ppo": MaskablePPO,
}


def make_env(cfg: EnvConfig, num_envs: int | None = None, preset=None) -> GuidanceVectorEnv:
    """The native :class:`GuidanceVectorEnv` of the config (on ``preset`` if given)."""
    if preset is None:
        preset = presets.make(cfg.preset, device=cfg.device, **cfg.preset_overrides)
        if cfg.guide is not None:  # a given preset (the trainer's own env's) already is
            preset = presets.autoguided(preset, cfg.guide, cfg.device)
    schedule = resolve_schedule(cfg)
    named = isinstance(schedule, str)
    return GuidanceVectorEnv(
        num_envs=num_envs or cfg.num_envs,
        denoiser=preset,
        num_steps=(cfg.num_steps or DEFAULT_NUM_STEPS) if named else None,
        solver=cfg.solver,
        schedule=schedule,
        guidance_weights=cfg.guidance_weights,
        gammas=cfg.gammas,
        action_format=cfg.action_format,
        obs_mode=cfg.obs_mode,
        class_labels=cfg.class_labels,
        device=cfg.device,
    )


def algo_class(name: str) -> type[BaseAlgorithm]:
    """The SB3 class of ``algo.name`` (one of :data:`agents.irl.config.ALGOS`)."""
    return _ALGO_CLASSES[name]


def make_model(cfg: Config, venv) -> BaseAlgorithm:
    """The SB3 learner on the SB3 view ``venv`` of the env, on ``env.device``."""
    a = cfg.algo
    n_steps = a.episodes_per_round * batch_of(venv.venv).num_steps
    kw: dict[str, Any] = dict(
        learning_rate=a.learning_rate,
        n_steps=n_steps,
        gamma=a.gamma,
        gae_lambda=a.gae_lambda,
        ent_coef=a.ent_coef,
        vf_coef=a.vf_coef,
        max_grad_norm=a.max_grad_norm,
        seed=fit_seed(cfg.seed, 2**32),
        device=cfg.env.device,
        verbose=0,
    )
    if a.name != "a2c":
        kw.update(batch_size=a.batch_size, n_epochs=a.n_epochs, clip_range=a.clip_range)
    if a.policy == "dual_head":
        policy, pkw = DualHeadPolicy, {"trunk": tuple(a.net_arch)}
    else:
        policy, pkw = "MlpPolicy", {"net_arch": list(a.net_arch)}
    return algo_class(a.name)(policy, venv, policy_kwargs=pkw, **kw)


def decode_step_class(env, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step index k ``[n]`` and class ``[n]`` (None if unconditional) read off observations
    (``k/N`` and the one-hot class; layout in the env's Observation Space table)."""
    head = env.denoiser.dim if env.obs_mode == "state" else 0
    k = torch.round(obs[:, head + 1].double() * env.num_steps).long()
    c = env.num_classes
    labels = obs[:, head + 2 : head + 2 + c].argmax(1) if c else None
    return k, labels


class RelabelCallback(BaseCallback):
    """Rewrites the rollout buffer's rewards with the discriminator before the policy update.

    ``_on_step`` records each transition's next state s_{k+1} (the terminal observation where
    the episode ended) and the env's own reward; ``_on_rollout_end`` sets
    ``rewards[t, i] = reward(s_{k+1})`` and recomputes returns and GAE advantages with SB3's
    ``compute_returns_and_advantage`` (the last values and dones of the rollout).
    """

    def __init__(self, trainer: IRLTrainer):
        super().__init__()
        self.trainer = trainer
        self.next_obs: list[np.ndarray] = []
        self.env_rewards: list[np.ndarray] = []

    def _on_rollout_start(self) -> None:
        self.next_obs, self.env_rewards = [], []

    def _on_step(self) -> bool:
        nxt = np.array(self.locals["new_obs"], dtype=np.float32, copy=True)
        dones = np.flatnonzero(self.locals["dones"])
        for i in dones:
            nxt[i] = self.locals["infos"][i]["terminal_observation"]
        if self.trainer.disc_env is not None:
            nxt = self._state_encoding(nxt, dones)
        self.next_obs.append(nxt)
        self.env_rewards.append(np.asarray(self.locals["rewards"], dtype=np.float64).copy())
        return True

    def _state_encoding(self, obs: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """State encoding of x_{k+1} (the env's x, or the final x_0 of ended episodes)."""
        env = self.trainer.env
        x = env.x.clone()
        for i in dones:
            x[i] = torch.as_tensor(self.locals["infos"][i]["x0"], device=x.device)
        k, labels = decode_step_class(env, torch.as_tensor(obs))
        return self.trainer.disc_env.encode_obs(x, k, labels).cpu().numpy()

    def _on_rollout_end(self) -> None:
        buf = self.model.rollout_buffer
        states = torch.as_tensor(np.stack(self.next_obs), device=self.trainer.device)
        rewards = self.trainer.reward(states.reshape(-1, states.shape[-1]))
        if self.trainer.cfg.discriminator.reward_steps == "last":  # only x_0 is rewarded
            rewards = rewards * self.trainer.is_final(states.reshape(-1, states.shape[-1]))
        kl = self.trainer.kl_to_start(buf.log_probs, buf.actions)
        if kl is not None:
            kl = kl.reshape(rewards.shape).to(rewards)
            rewards = rewards - self.trainer.cfg.policy.kl_coef * kl
        buf.rewards[:] = rewards.reshape(buf.rewards.shape).cpu().numpy()
        buf.compute_returns_and_advantage(
            last_values=self.locals["values"], dones=self.locals["dones"]
        )
        self.trainer.last_rollout = dict(
            states=states.reshape(-1, states.shape[-1]),
            actions=np.array(buf.actions, copy=True),
            irl_reward=float(rewards.mean()),
            env_reward=float(np.sum(self.env_rewards) / buf.n_envs),
        )


class IRLTrainer:
    """Alternating policy / discriminator training on the Guidance env.

    Attributes other code uses: ``env`` (the native env), ``venv`` (its SB3 view),
    ``model`` (the SB3 learner), ``disc`` (the discriminator, None when it is the
    dual-head policy's density head), ``round``, ``last_rollout``.

    :param config: :class:`agents.irl.config.Config`.
    """

    def __init__(self, config: Config):
        self.cfg = config
        self.device = torch.device(config.env.device)
        self.env = make_env(config.env)
        # The expert states are real x_0 noised to σ_k: the preset's data must sample.
        check_data(self.env.preset.data, ["sample"], "IRL's expert states (real x_0 at σ_k)")
        self.venv = SB3VecEnv(self.env)
        self.model = make_model(config, self.venv)
        self.disc_env = None
        disc_mode = config.discriminator.input  # "state"/"classifier": that env encoding
        if disc_mode != "obs" and config.env.obs_mode != disc_mode:
            self.disc_env = make_env(replace(config.env, obs_mode=disc_mode), 1, self.env.preset)
        space = (self.disc_env or self.env).single_observation_space
        self.obs_dim = int(space.shape[0])
        self._build_discriminator()
        self.round = 0
        self.last_rollout: dict[str, Any] = {}
        self.start: dict[str, Any] = {}
        self.best: dict[str, Any] = {}
        self._init_policy()

    def _init_policy(self) -> None:
        """``policy.init``: start at a constant action (the best one of the harness for
        ``best_constant``); the global RNGs are restored afterwards, so the search leaves the
        run's random stream as it was. ``self.start`` records what was chosen and why."""
        p = self.cfg.policy
        if p.init == "default":
            return
        saved = rng_state()
        if p.init == "best_constant":
            self.start = self.best_constant()
            w, g = self.start["action"]
        else:
            w, g = p.init_action
            self.start = {"action": [float(w), float(g)]}
        table = self.env.action_table
        wi = int(np.flatnonzero(table.weights == w)[0])
        gi = int(np.flatnonzero(table.gammas == g)[0])
        if table.action_format == "box":  # a Gaussian at the constant's box action
            mean = table.encode(np.array(wi), np.array(gi))
            start_gaussian_at(self.model.policy, mean, p.init_std)
            self.start.update(mean=[float(v) for v in mean], std=p.init_std)
        else:
            index = wi * len(table.gammas) + gi
            start_at_action(self.model.policy, index, p.init_prob)
            self.start.update(index=index, prob=p.init_prob)
        set_rng_state(saved)

    def metric(self) -> str:
        """The metric of the best-constant search and of ``keep_best``."""
        ev = self.cfg.eval
        return self.cfg.policy.init_metric or next(m for m in ev.metrics if m not in UNRANKED)

    def validate(self) -> float:
        """The argmax policy's :meth:`metric` on validation noise (``policy.init_seed``,
        ``policy.init_samples`` samples; never an evaluation seed)."""
        p, m = self.cfg.policy, self.metric()
        res = evaluate([self.strategy()], self.env.preset, num_samples=p.init_samples,
                       seeds=[p.init_seed], class_labels=self.cfg.eval.class_labels,
                       metrics=[m], progress=False)  # fmt: skip
        return float(res["irl-policy"][m]["mean"])

    def select(self) -> bool:
        """``keep_best``: validate now and keep the parameters if they are the best so far
        (ties keep the earlier); returns whether they were kept. The global RNGs are left as
        they were (validation does not change the run's random stream)."""
        saved = rng_state()
        score = self.validate()
        set_rng_state(saved)
        better = self.metric() in HIGHER_IS_BETTER
        best = self.best.get("score")
        history = [*self.best.get("history", []), [self.round, score]]
        if best is None or (score > best if better else score < best):
            params = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}
            self.best = {"score": score, "round": self.round, "policy": params}
        self.best["history"] = history
        return self.best["round"] == self.round

    def use_best(self) -> None:
        """Load the best validated policy parameters (``keep_best``) into the model."""
        if self.best:
            self.model.policy.load_state_dict(self.best["policy"])

    def best_constant(self) -> dict[str, Any]:
        """The constant (w, γ) of the action table that scores best in the harness on
        ``policy.init_samples`` samples of noise seed ``policy.init_seed`` (not an evaluation
        seed): ``{"action": [w, γ], "metric", "scores": {row: value}}``."""
        p, ev = self.cfg.policy, self.cfg.eval
        metric = self.metric()
        rows = baseline_strategies(self.env, EvalConfig())
        res = evaluate(rows, self.env.preset, num_samples=p.init_samples, seeds=[p.init_seed],
                       class_labels=ev.class_labels, metrics=[metric], progress=False)  # fmt: skip
        scores = {r.name: float(res[r.name][metric]["mean"]) for r in rows}
        pick = max if metric in HIGHER_IS_BETTER else min
        best = pick(rows, key=lambda r: scores[r.name])
        return {"action": [float(best.guidance), float(best.gamma)], "row": best.name,
                "metric": metric, "scores": scores}  # fmt: skip

    def _build_discriminator(self) -> None:
        d = self.cfg.discriminator
        if d.source == "policy":
            self.disc = None
            params = self.model.policy.density_parameters()
        else:
            self.disc = Discriminator(self.obs_dim, d).to(self.device)
            params = list(self.disc.parameters())
        self.disc_opt = torch.optim.Adam(params, lr=d.lr, weight_decay=d.weight_decay)

    def logit(self, s: torch.Tensor) -> torch.Tensor:
        """Discriminator logit ℓ(s) ≈ log p_E/p_π of observations ``s [n, obs_dim]``."""
        if self.disc is None:
            return self.model.policy.density_logit(s)
        return self.disc(s)

    @torch.no_grad()
    def reward(self, s: torch.Tensor) -> torch.Tensor:
        """IRL reward of arriving in states ``s``: scale · f*(f'(exp ℓ(s)))."""
        d = self.cfg.discriminator
        ell = self.logit(s.float())
        if d.logit_clip is not None:
            ell = ell.clamp(-d.logit_clip, d.logit_clip)
        return d.reward_scale * reward_from_logit(ell, d.divergence)

    def round_seed(self, r: int) -> int:
        """The seed of the global RNGs in round ``r`` (a function of ``config.seed`` and r
        only; 32 bits, as SB3 and numpy take)."""
        return int(self._round_sequence(r).generate_state(1, np.uint32)[0])

    def env_seeds(self, r: int) -> list[int]:
        """Base seeds of the envs' episodes in round ``r``: one independent 62-bit seed per
        env (envs and rounds never share a noise stream)."""
        ss = self._round_sequence(r).spawn(1)[0]
        return [int(v) for v in ss.generate_state(self.env.num_envs, np.uint64) >> np.uint64(2)]

    def _round_sequence(self, r: int) -> np.random.SeedSequence:
        return np.random.SeedSequence(entropy=int(self.cfg.seed), spawn_key=(int(r),))

    def seed_round(self, r: int) -> np.ndarray:
        """Seed everything round ``r`` draws from: the global RNGs (SB3's minibatch order,
        the policy's action samples) and the env's episodes; returns the reset
        observations."""
        set_random_seed(self.round_seed(r))
        obs, _ = self.env.reset(seed=self.env_seeds(r))
        return obs

    def train_round(self) -> dict[str, float]:
        """One round (module docstring); returns its statistics."""
        r, n_steps = self.round, self.model.n_steps
        # Every round starts fresh episodes: hand SB3 the reset observations.
        self.model._last_obs = self.seed_round(r)
        self.model._last_episode_starts = np.ones(self.env.num_envs, dtype=bool)
        self.model.learn(
            n_steps * self.env.num_envs,
            callback=RelabelCallback(self),
            reset_num_timesteps=False,
            progress_bar=False,
        )
        stats = self._update_discriminator(r)
        stats.update(
            irl_reward=self.last_rollout["irl_reward"],
            env_reward=self.last_rollout["env_reward"],
        )
        self.round += 1
        return stats

    def kl_to_start(self, log_probs: np.ndarray, actions: np.ndarray) -> torch.Tensor | None:
        """Per-sample log π(a|s) − log π_0(a) of a rollout (``policy.kl_coef`` > 0), π_0 the
        start distribution of ``policy.init``; None without the penalty."""
        if not self.cfg.policy.kl_coef > 0:
            return None
        if "mean" in self.start:  # box: π_0 = N(mean, std² I)
            a = torch.as_tensor(
                actions.reshape(len(log_probs.reshape(-1)), -1), dtype=torch.float64
            )
            pi0 = torch.distributions.Normal(
                torch.as_tensor(self.start["mean"], dtype=torch.float64), self.start["std"]
            )
            log_pi0 = pi0.log_prob(a).sum(-1)
            return torch.as_tensor(log_probs.reshape(-1), dtype=torch.float64) - log_pi0
        n = int(self.env.single_action_space.n)  # the discrete table
        prob = self.start["prob"]
        log_pi0 = torch.full((n,), float(np.log((1 - prob) / (n - 1))), dtype=torch.float64)
        log_pi0[self.start["index"]] = float(np.log(prob))
        a = torch.as_tensor(actions.reshape(-1).astype(np.int64))
        return torch.as_tensor(log_probs.reshape(-1), dtype=torch.float64) - log_pi0[a]

    def is_final(self, states: torch.Tensor) -> torch.Tensor:
        """1.0 where an (encoded) state is a final x_0 (k = N), else 0.0; ``[n]``."""
        k, _ = decode_step_class(self.disc_env or self.env, states)
        return (k == self.env.num_steps).to(states.dtype)

    def _update_discriminator(self, r: int) -> dict[str, float]:
        policy_states = self.last_rollout["states"].float()
        if self.cfg.discriminator.reward_steps == "last":
            policy_states = policy_states[self.is_final(policy_states) > 0]
        env = self.disc_env or self.env
        k, labels = decode_step_class(env, policy_states)
        g = torch.Generator().manual_seed(self.cfg.discriminator.expert_seed + r)
        expert = env.expert_observations(k, labels, g).float()
        if self.disc is not None:
            self.disc.update_normalizer(torch.cat([expert, policy_states]))
        d = self.cfg.discriminator
        weight = None
        if d.grad_penalty_final is not None and d.grad_penalty > 0:  # x_0's R1 weight / the rest's
            ratio = d.grad_penalty_final / d.grad_penalty
            weight = torch.where(self.is_final(expert) > 0, ratio, 1.0).to(expert)
        stats = train_discriminator(self.logit, self.disc_opt, expert, policy_states, d, g, weight)
        # Drop the discriminator's gradients: stale ones would enter PPO's grad-norm clipping
        # (the dual head's density parameters are not in PPO's optimiser).
        self.disc_opt.zero_grad(set_to_none=True)
        return stats

    def chosen_per_step(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean w and γ chosen at each step k in the last rollout, ``[N]`` each."""
        n, b = self.env.num_steps, self.env.num_envs
        table = self.env.action_table
        acts = self.last_rollout["actions"]
        if table.action_format == "box":  # the values the env stepped with (SB3 clips)
            space = self.env.single_action_space
            acts = np.clip(acts.reshape(-1, space.shape[0]), space.low, space.high)
            w, g = (t.cpu().numpy() for t in table.values(acts.astype(np.float32), len(acts)))
        else:
            wi, gi = table.decode(acts.reshape(-1).astype(np.int64))
            w, g = table.weights[wi], table.gammas[gi]
        return w.reshape(-1, n, b).mean(axis=(0, 2)), g.reshape(-1, n, b).mean(axis=(0, 2))

    # -- checkpoints --------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything :meth:`load_state` needs, as weights-only data (tensors, numbers,
        lists, dicts): policy and its optimiser, discriminator and its optimiser, round,
        step counters, RNG states."""
        return {
            "round": self.round,
            "num_timesteps": int(self.model.num_timesteps),
            "n_updates": int(self.model._n_updates),
            "params": self.model.get_parameters(),
            "disc": None if self.disc is None else self.disc.state_dict(),
            "disc_opt": self.disc_opt.state_dict(),
            "rng": rng_state(),
            "best": self.best,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` (the same config: the networks are built from it)."""
        self.model.set_parameters(state["params"], exact_match=True, device=self.device)
        self.model.num_timesteps = int(state["num_timesteps"])
        self.model._n_updates = int(state["n_updates"])
        if self.disc is not None:
            self.disc.load_state_dict(state["disc"])
        self.disc_opt.load_state_dict(state["disc_opt"])
        self.round = int(state["round"])
        self.best = state.get("best") or {}
        set_rng_state(state["rng"])

    def save(self, checkpoints: Path, keep: int = 2) -> Path | None:
        """Checkpoint ``checkpoints/round_<r>/`` (one atomic directory: ``state.pt`` for
        ``--resume`` and the SB3 ``policy.zip`` for people); keeps the newest ``keep``."""

        def policy_zip(d: Path) -> None:
            self.model.save(d / "policy.zip")

        return save_checkpoint(Path(checkpoints), "round_", self.round, self.state(),
                               policy_zip, keep)  # fmt: skip

    def load(self, directory: Path) -> None:
        """Continue from a checkpoint directory written by :meth:`save` (its ``state.pt``;
        no pickled code is read)."""
        self.load_state(load_state(directory))

    def strategy(self, name: str = "irl-policy", temperature: float | None = None):
        """The learned policy as a :class:`baselines.evaluate.Strategy`."""
        return PolicyStrategy(name, self.env, self.model.policy, temperature)
