"""Occupancy-matching inverse RL for diffusion sampling (after arXiv 2602.08689).

No hand-written reward: a policy choosing the guidance weight w and churn γ of every step of
the ``Guidance`` env learns to make its state occupancy p_π(s_k) match the expert's
p_E(s_k): real x_0 ~ data(c) noised to the same σ_k. One round:

1. collect a rollout of ``episodes_per_round`` episodes on the native vector env (through
   :class:`agents.vec_env.SB3VecEnv`);
2. relabel its rewards before the policy update (:class:`RelabelCallback`, on SB3's
   ``_on_rollout_end``): the transition s_k → s_{k+1} earns r = f*(f'(exp ℓ(s_{k+1}))) with
   ℓ the discriminator's logit (every state is matched, the terminal x_0 against clean data),
   then returns and GAE advantages are recomputed; the env's own reward goes to the logs;
3. the policy update (SB3 PPO / A2C / MaskablePPO, unchanged);
4. the discriminator update: logistic loss on this round's policy states against expert
   states drawn at the same σ_k and class (:func:`agents.discriminator.train_discriminator`).

``run(config, out_dir, resume)`` is the ``agent: irl`` trainer of ``diffusion-gym train``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from diffusion_gym import presets
from diffusion_gym import steps as _steps

from .discriminator import (
    Discriminator,
    DiscriminatorConfig,
    reward_from_logit,
    train_discriminator,
)
from .policies import DualHeadPolicy, select_actions

__all__ = [
    "Config",
    "EnvConfig",
    "AlgoConfig",
    "IRLDiscriminatorConfig",
    "EvalConfig",
    "IRLTrainer",
    "PolicyStrategy",
    "RelabelCallback",
    "run",
]

ALGOS = ("ppo", "a2c", "maskable_ppo")
POLICIES = ("mlp", "dual_head")
SOURCES = ("separate", "policy")
DISC_INPUTS = ("obs", "state")


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass
class EnvConfig:
    """The Guidance env (see :class:`diffusion_gym.envs.guidance.GuidanceVectorEnv`)."""

    preset: str = "gmm-ring8-imperfect"
    """preset name (``diffusion-gym presets``)"""
    preset_overrides: dict = field(default_factory=dict)
    """keyword overrides of the preset factory (e.g. ``variance_scale``)"""
    num_envs: int = 256
    """batch of parallel samplers"""
    num_steps: int = 4
    """sampler steps N"""
    solver: str = "heun"
    """``heun`` or ``euler``"""
    schedule: str = "karras"
    """σ schedule name"""
    guidance_weights: list[float] = field(default_factory=lambda: [0.0, 1.0, 1.5, 2.0, 3.0, 5.0])
    """table of CFG weights w"""
    gammas: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.4])
    """table of churn values γ"""
    obs_mode: str = "state"
    """``state`` or ``features``"""
    class_labels: int | None = None
    """fixed class for every env, or None: drawn per episode from the data's histogram"""
    device: str = "cpu"
    """torch device of the env and the networks"""


@dataclass
class AlgoConfig:
    """The on-policy SB3 learner."""

    name: str = "ppo"
    """``ppo``, ``a2c`` (stable-baselines3) or ``maskable_ppo`` (sb3-contrib)"""
    policy: str = "mlp"
    """``mlp`` (SB3's MlpPolicy) or ``dual_head`` (:class:`agents.policies.DualHeadPolicy`)"""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden widths (the trunk for ``dual_head``)"""
    learning_rate: float = 3e-4
    """Adam learning rate (constant)"""
    episodes_per_round: int = 1
    """episodes per env per rollout: n_steps = episodes_per_round * num_steps"""
    batch_size: int = 256
    """PPO minibatch size"""
    n_epochs: int = 4
    """PPO epochs per rollout"""
    gamma: float = 1.0
    """discount (episodes are N steps long)"""
    gae_lambda: float = 0.95
    """GAE λ"""
    ent_coef: float = 0.0
    """entropy bonus"""
    clip_range: float = 0.2
    """PPO clip range"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient clipping"""


@dataclass
class IRLDiscriminatorConfig(DiscriminatorConfig):
    """The discriminator (:class:`agents.discriminator.DiscriminatorConfig`) and its reward."""

    source: str = "separate"
    """``separate`` (its own MLP) or ``policy`` (the dual-head policy's density head)"""
    divergence: str = "js"
    """reward: ``reverse_kl`` (AIRL), ``forward_kl``, ``js`` (GAIL), ``chi2``"""
    reward_scale: float = 1.0
    """multiplies the reward"""
    logit_clip: float | None = None
    """if set, logits are clipped to ±logit_clip before the reward (bounds exp rewards)"""
    input: str = "obs"
    """``obs``: the policy's observation; ``state``: the state encoding of x_k itself
    (x_k / sqrt(σ_k² + σ_data²), log σ_k, k/N, one-hot c), for ``env.obs_mode=features``
    where the observation only holds a few norms of x_k"""
    expert_seed: int = 12345
    """seed of the expert-state draws (combined with the round)"""


@dataclass
class EvalConfig:
    """Evaluation against constant-guidance baselines (:mod:`baselines.evaluate`)."""

    num_samples: int = 2048
    """samples per seed"""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """evaluation seeds (same x_T, labels and noise for every strategy)"""
    class_labels: str = "balanced"
    """``balanced`` or ``data`` (drawn from the data's class histogram)"""
    guidance_grid: list[float] | None = None
    """constant w of the baselines (None = the env's table)"""
    gamma_grid: list[float] | None = None
    """constant γ of the baselines (None = the env's table); baselines = product grid"""
    temperature: float | None = None
    """τ of the main policy row; None = deterministic (argmax)"""
    temperatures: list[float] = field(default_factory=list)
    """τ sweep: extra rows ``irl-tau{τ}`` (precision vs recall)"""
    metrics: list[str] = field(
        default_factory=lambda: ["energy", "frechet", "class_tv", "loglik", "nfe"]
    )
    """metric names of :data:`baselines.evaluate.METRICS`"""
    every: int = 0
    """quick evaluation (``eval/``) every this many rounds; 0 = only at the end"""
    train_samples: int = 512
    """samples of the quick evaluation"""


@dataclass
class Config:
    """``agent: irl`` config (``agents/configs/irl-*.yaml``)."""

    agent: str = "irl"
    seed: int = 0
    """seed of everything (env, networks, expert draws)"""
    rounds: int = 60
    """rollout → relabel → policy update → discriminator update rounds"""
    checkpoint_every: int = 10
    """save a checkpoint every this many rounds (and at the end)"""
    progress: bool = True
    """show a progress bar"""
    num_threads: int = 1
    """torch CPU threads (small nets: 1 is fastest, more oversubscribe); 0 = torch's default"""
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    discriminator: IRLDiscriminatorConfig = field(default_factory=IRLDiscriminatorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        _choice("algo.name", self.algo.name, ALGOS)
        _choice("algo.policy", self.algo.policy, POLICIES)
        _choice("discriminator.source", self.discriminator.source, SOURCES)
        _choice("discriminator.input", self.discriminator.input, DISC_INPUTS)
        if self.discriminator.input == "state" and self.discriminator.source == "policy":
            raise ValueError("discriminator.input=state needs discriminator.source=separate")
        if self.discriminator.source == "policy" and self.algo.policy != "dual_head":
            raise ValueError("discriminator.source=policy needs algo.policy=dual_head")
        if self.algo.policy == "dual_head" and self.algo.name == "maskable_ppo":
            raise ValueError("algo.policy=dual_head works with ppo and a2c, not maskable_ppo")
        for name in ("rounds", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Env, model, discriminator


def make_env(cfg: EnvConfig, num_envs: int | None = None, preset=None):
    """The native :class:`GuidanceVectorEnv` of the config (on ``preset`` if given)."""
    from diffusion_gym.envs.guidance import GuidanceVectorEnv

    if preset is None:
        preset = presets.make(cfg.preset, device=cfg.device, **cfg.preset_overrides)
    return GuidanceVectorEnv(
        num_envs=num_envs or cfg.num_envs,
        denoiser=preset,
        num_steps=cfg.num_steps,
        solver=cfg.solver,
        schedule=cfg.schedule,
        guidance_weights=cfg.guidance_weights,
        gammas=cfg.gammas,
        obs_mode=cfg.obs_mode,
        class_labels=cfg.class_labels,
        device=cfg.device,
    )


def _algo_class(name: str):
    if name == "ppo":
        from stable_baselines3 import PPO

        return PPO
    if name == "a2c":
        from stable_baselines3 import A2C

        return A2C
    from sb3_contrib import MaskablePPO

    return MaskablePPO


def make_model(cfg: Config, venv):
    """The SB3 learner on the SB3 view ``venv`` of the env."""
    a = cfg.algo
    n_steps = a.episodes_per_round * cfg.env.num_steps
    kw: dict[str, Any] = dict(
        learning_rate=a.learning_rate,
        n_steps=n_steps,
        gamma=a.gamma,
        gae_lambda=a.gae_lambda,
        ent_coef=a.ent_coef,
        vf_coef=a.vf_coef,
        max_grad_norm=a.max_grad_norm,
        seed=cfg.seed,
        device=cfg.env.device,
        verbose=0,
    )
    if a.name != "a2c":
        kw.update(batch_size=a.batch_size, n_epochs=a.n_epochs, clip_range=a.clip_range)
    if a.policy == "dual_head":
        policy, pkw = DualHeadPolicy, {"trunk": tuple(a.net_arch)}
    else:
        policy, pkw = "MlpPolicy", {"net_arch": list(a.net_arch)}
    return _algo_class(a.name)(policy, venv, policy_kwargs=pkw, **kw)


def decode_step_class(env, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step index k ``[n]`` and class ``[n]`` (None if unconditional) read off observations
    (``k/N`` and the one-hot class; layout in the env's Observation Space table)."""
    head = env.denoiser.dim if env.obs_mode == "state" else 0
    k = torch.round(obs[:, head + 1].double() * env.num_steps).long()
    c = env.num_classes
    labels = obs[:, head + 2 : head + 2 + c].argmax(1) if c else None
    return k, labels


# ---------------------------------------------------------------------------------------------
# Reward relabelling


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


# ---------------------------------------------------------------------------------------------
# The trainer


class IRLTrainer:
    """Alternating policy / discriminator training on the Guidance env.

    :param config: :class:`Config`.
    """

    def __init__(self, config: Config):
        from .vec_env import SB3VecEnv

        self.cfg = config
        self.device = torch.device(config.env.device)
        self.env = make_env(config.env)
        self.venv = SB3VecEnv(self.env)
        self.model = make_model(config, self.venv)
        self.disc_env = None
        if config.discriminator.input == "state" and config.env.obs_mode != "state":
            self.disc_env = make_env(replace(config.env, obs_mode="state"), 1, self.env.preset)
        space = (self.disc_env or self.env).single_observation_space
        self.obs_dim = int(space.shape[0])
        self._build_discriminator()
        self.round = 0
        self.last_rollout: dict[str, Any] = {}

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

    def _round_seed(self, r: int) -> int:
        return int(self.cfg.seed) * 1_000_003 + r

    def train_round(self) -> dict[str, float]:
        """One round (module docstring); returns its statistics."""
        from stable_baselines3.common.utils import set_random_seed

        r, n_steps = self.round, self.model.n_steps
        set_random_seed(self._round_seed(r))
        self.venv.seed(self._round_seed(r))
        self.model._last_obs = self.venv.reset()
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

    def _update_discriminator(self, r: int) -> dict[str, float]:
        policy_states = self.last_rollout["states"].float()
        env = self.disc_env or self.env
        k, labels = decode_step_class(env, policy_states)
        g = torch.Generator().manual_seed(self.cfg.discriminator.expert_seed + r)
        expert = env.expert_observations(k, labels, g).float()
        if self.disc is not None:
            self.disc.update_normalizer(torch.cat([expert, policy_states]))
        stats = train_discriminator(
            self.logit, self.disc_opt, expert, policy_states, self.cfg.discriminator, g
        )
        # Drop the discriminator's gradients: stale ones would enter PPO's grad-norm clipping
        # (the dual head's density parameters are not in PPO's optimiser).
        self.disc_opt.zero_grad(set_to_none=True)
        return stats

    def chosen_per_step(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean w and γ chosen at each step k in the last rollout, ``[N]`` each."""
        a = self.last_rollout["actions"].reshape(-1, self.env.num_steps, self.env.num_envs, 1)
        wi, gi = self.env_action_indices(a[..., 0].astype(np.int64))
        w = self.env.guidance_weights[wi].mean(axis=(0, 2))
        g = self.env.gammas[gi].mean(axis=(0, 2))
        return w, g

    def env_action_indices(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ng = len(self.env.gammas)
        return a // ng, a % ng

    # -- checkpoints --------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Policy (with its optimiser), discriminator (+ optimiser), round, RNG states."""
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory / "policy.zip")
        state = {
            "round": self.round,
            "num_timesteps": self.model.num_timesteps,
            "disc": None if self.disc is None else self.disc.state_dict(),
            "disc_opt": self.disc_opt.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),  # noqa: NPY002 - SB3 uses the global RNG
                "python": random.getstate(),
            },
        }
        tmp = directory / "irl_state.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(directory / "irl_state.pt")

    def load(self, directory: Path) -> None:
        """Continue from :meth:`save`'s files."""
        algo = _algo_class(self.cfg.algo.name)
        self.model = algo.load(directory / "policy.zip", env=self.venv, device=self.device)
        state = torch.load(directory / "irl_state.pt", weights_only=False)
        self._build_discriminator()
        if self.disc is not None:
            self.disc.load_state_dict(state["disc"])
        self.disc_opt.load_state_dict(state["disc_opt"])
        self.round = int(state["round"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])  # noqa: NPY002
        random.setstate(state["rng"]["python"])

    def strategy(self, name: str = "irl-policy", temperature: float | None = None):
        """The learned policy as a :class:`baselines.evaluate.Strategy`."""
        return PolicyStrategy(name, self.env, self.model.policy, temperature)


# ---------------------------------------------------------------------------------------------
# The learned policy as an evaluation strategy


def _strategy_base():
    from baselines.evaluate import Strategy

    return Strategy


class PolicyStrategy(_strategy_base()):
    """Samples with the policy picking (w, γ) per step and per sample, as the env does.

    Rolls :func:`diffusion_gym.steps.step` over the env's schedule with the env's churn-noise
    convention (draw k+1 of each sample's stream) and observations from ``env.encode_obs``,
    so a sample equals the env's episode with the same x_T, label, noise and actions
    (``obs_mode="features"``: the denoiser features come from a call at the state itself).

    :param temperature: None = deterministic (argmax); τ > 0 samples softmax(logits/τ).
    :param seed: seed of the action draws when stochastic.
    """

    def __init__(self, name, env, policy, temperature: float | None = None, seed: int = 0):
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be None or > 0, got {temperature}")
        self.name, self.env, self.policy = name, env, policy
        self.temperature, self.seed = temperature, seed
        self.last_w: list[float] | None = None
        self.last_gamma: list[float] | None = None

    @property
    def nfe(self) -> int:
        from baselines.evaluate import nfe_of

        return nfe_of(self.env.num_steps, self.env.solver)

    @property
    def deterministic(self) -> bool:
        return self.temperature is None and float(np.max(self.env.gammas)) == 0.0

    @torch.no_grad()
    def sample(self, preset, x_T, class_labels, streams):  # noqa: N803
        env, x = self.env, x_T.to(self.env.dtype)
        gen = torch.Generator().manual_seed(self.seed)
        w_t = torch.as_tensor(env.guidance_weights, dtype=x.dtype, device=x.device)
        g_t = torch.as_tensor(env.gammas, dtype=x.dtype, device=x.device)
        ws, gs = [], []
        for k in range(env.num_steps):
            obs = env.encode_obs(x, k, class_labels).to(self.policy.device)
            a = select_actions(
                self.policy,
                obs,
                temperature=self.temperature or 1.0,
                deterministic=self.temperature is None,
                generator=gen,
            ).to(x.device)
            if a.ndim == 1:
                wi, gi = a // len(env.gammas), a % len(env.gammas)
            else:
                wi, gi = a[:, 0], a[:, 1]
            w, gamma = w_t[wi], g_t[gi]
            noise = _steps.churn_noise(streams, k, x) if bool((gamma > 0).any()) else None
            x, _ = _steps.step(
                preset.denoiser,
                x,
                env._sigma_list[k],
                env._sigma_list[k + 1],
                class_labels=class_labels,
                guidance=w if class_labels is not None else None,
                gamma=gamma if noise is not None else 0.0,
                solver=env.solver,
                noise=noise,
                s_noise=env.s_noise,
            )
            ws.append(float(w.mean()))
            gs.append(float(gamma.mean()))
        self.last_w, self.last_gamma = ws, gs
        return x

    def describe(self) -> dict[str, Any]:
        d = {"name": self.name, "nfe": self.nfe, "solver": self.env.solver}
        d["sigmas"] = [float(s) for s in self.env.sigmas]
        if self.last_w is not None:
            d["guidance"], d["gamma"] = self.last_w, self.last_gamma
        d["temperature"] = self.temperature
        return d


# ---------------------------------------------------------------------------------------------
# run(): the `agent: irl` entry point of `diffusion-gym train`


def _fmt_tau(t: float) -> str:
    return f"{t:g}"


def baseline_strategies(env, cfg: EvalConfig) -> list:
    """Constant (w, γ) strategies on the env's schedule: the product of the two grids."""
    from baselines.evaluate import FixedSchedule

    wg = cfg.guidance_grid if cfg.guidance_grid is not None else list(env.guidance_weights)
    gg = cfg.gamma_grid if cfg.gamma_grid is not None else list(env.gammas)
    return [
        FixedSchedule(f"const-w{w:g}-g{g:g}", env.sigmas.cpu(), env.solver, guidance=w, gamma=g)
        for w in wg
        for g in gg
    ]


def evaluate_trainer(trainer: IRLTrainer, out_dir: Path | None, progress: bool = True) -> dict:
    """Final evaluation: learned policy (+ τ sweep) vs constant baselines, same noise."""
    from baselines.evaluate import evaluate, markdown_table, write_report

    cfg = trainer.cfg.eval
    policy_rows = [trainer.strategy("irl-policy", cfg.temperature)]
    policy_rows += [trainer.strategy(f"irl-tau{_fmt_tau(t)}", t) for t in cfg.temperatures]
    baselines = baseline_strategies(trainer.env, cfg)
    samples: dict[str, torch.Tensor] = {}
    results = evaluate(
        policy_rows + baselines,
        trainer.env.preset,
        num_samples=cfg.num_samples,
        seeds=cfg.seeds,
        class_labels=cfg.class_labels,
        metrics=cfg.metrics,
        progress=progress,
        samples_out=samples,
    )
    summary = summarize(results, [s.name for s in baselines], cfg)
    if out_dir is not None:
        best = summary.get("best_constant")
        keep = {"__data__", "irl-policy"} | ({best} if best else set())
        write_report(
            results,
            out_dir,
            title=f"IRL policy vs constant guidance on {trainer.env.preset.name}",
            plots={
                "strategies": policy_rows[:1] + [s for s in baselines if s.name == best],
                "samples": {k: v for k, v in samples.items() if k in keep},
            },
        )
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        _plot_policy(trainer, policy_rows[0], out_dir / "policy_actions.png")
        if cfg.temperatures:
            _plot_temperature(results, policy_rows, out_dir / "temperature.png")
        with open(out_dir / "eval.md", "a") as f:
            f.write("\n" + summary_markdown(summary) + "\n")
    print(markdown_table(results, f"IRL policy vs constant guidance ({trainer.env.preset.name})"))
    print(summary_markdown(summary))
    return results


def summarize(results: dict, baseline_names: list[str], cfg: EvalConfig) -> dict:
    """The best constant baseline per metric and the policy's relative improvement."""
    from baselines.evaluate import HIGHER_IS_BETTER

    out: dict[str, Any] = {"metrics": {}}
    for m in cfg.metrics:
        rows = [(results[b][m]["mean"], b) for b in baseline_names if m in results[b]]
        if m == "nfe" or not rows or m not in results["irl-policy"]:
            continue
        pick = max if m in HIGHER_IS_BETTER else min
        best_v, best_name = pick(rows)
        pol = results["irl-policy"][m]["mean"]
        rel = (best_v - pol) / abs(best_v) if best_v != 0 else None
        if rel is not None and m in HIGHER_IS_BETTER:
            rel = -rel
        out["metrics"][m] = {
            "policy": pol,
            "best_constant": best_v,
            "best_constant_name": best_name,
            "relative_improvement": rel,
        }
    first = next(iter(out["metrics"].values()), None)
    out["best_constant"] = first["best_constant_name"] if first else None
    return out


def summary_markdown(summary: dict) -> str:
    lines = [
        "Learned policy against the best constant baseline of the grid, per metric "
        "(improvement = relative reduction of the distance, or gain of loglik).",
        "",
        "| metric | irl-policy | best constant | which | improvement |",
        "|---|---|---|---|---|",
    ]
    for m, s in summary["metrics"].items():
        rel = s["relative_improvement"]
        lines.append(
            f"| {m} | {s['policy']:.4g} | {s['best_constant']:.4g} | {s['best_constant_name']} "
            f"| {'–' if rel is None else f'{100 * rel:+.1f}%'} |"
        )
    return "\n".join(lines)


def _plot_policy(trainer: IRLTrainer, strategy: PolicyStrategy, path: Path) -> None:
    """Per step: the share of samples choosing each w and each γ (deterministic policy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from baselines.evaluate import make_labels, make_noise

    env, cfg = trainer.env, trainer.cfg.eval
    n = min(cfg.num_samples, 2048)
    x_T, streams = make_noise(env.preset, n, cfg.seeds[0])  # noqa: N806
    labels = make_labels(env.preset, n, cfg.seeds[0], cfg.class_labels)
    counts_w = np.zeros((env.num_steps, len(env.guidance_weights)))
    counts_g = np.zeros((env.num_steps, len(env.gammas)))
    x = x_T.to(env.dtype)
    with torch.no_grad():
        for k in range(env.num_steps):
            obs = env.encode_obs(x, k, labels).to(strategy.policy.device)
            a = select_actions(strategy.policy, obs, deterministic=True).cpu().numpy()
            wi, gi = (a // len(env.gammas), a % len(env.gammas)) if a.ndim == 1 else a.T
            counts_w[k] = np.bincount(wi, minlength=len(env.guidance_weights)) / n
            counts_g[k] = np.bincount(gi, minlength=len(env.gammas)) / n
            w = torch.as_tensor(env.guidance_weights[wi], dtype=x.dtype)
            g = torch.as_tensor(env.gammas[gi], dtype=x.dtype)
            noise = _steps.churn_noise(streams, k, x)
            x, _ = _steps.step(
                env.preset.denoiser,
                x,
                env._sigma_list[k],
                env._sigma_list[k + 1],
                class_labels=labels,
                guidance=w if labels is not None else None,
                gamma=g,
                solver=env.solver,
                noise=noise,
                s_noise=env.s_noise,
            )
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, counts, table, label in (
        (axes[0], counts_w, env.guidance_weights, "w"),
        (axes[1], counts_g, env.gammas, "γ"),
    ):
        bottom = np.zeros(env.num_steps)
        for j, v in enumerate(table):
            ax.bar(np.arange(env.num_steps), counts[:, j], bottom=bottom, label=f"{label}={v:g}")
            bottom += counts[:, j]
        ax.set_xlabel("step k")
        ax.set_ylabel("share of samples")
        ax.set_title(f"{label} chosen per step (deterministic policy)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_temperature(results: dict, rows: list, path: Path) -> None:
    """Metrics of the τ sweep (precision and recall if measured) against τ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = [(r.temperature, r.name) for r in rows if r.temperature is not None]
    taus.sort()
    names = ("precision", "recall", "energy", "digits_precision", "digits_recall", "fd_digits")
    metrics = [m for m in names if m in results[taus[0][1]]]
    if not metrics:
        return
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        ax.plot([t for t, _ in taus], [results[n][m]["mean"] for _, n in taus], "o-")
        ax.set_xscale("log")
        ax.set_xlabel("temperature τ")
        ax.set_title(m)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(config: Config, out_dir: Path, resume: bool = False) -> dict:
    """Train (or continue), checkpoint, log and evaluate; see the module docstring."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    ckpt = out_dir / "checkpoints" / "last"
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    trainer = IRLTrainer(config)
    if resume and (ckpt / "irl_state.pt").is_file():
        trainer.load(ckpt)
    from stable_baselines3.common.logger import configure

    trainer.model.set_logger(configure(str(out_dir / "tb" / "sb3"), ["tensorboard"]))
    writer = SummaryWriter(str(out_dir / "tb" / "irl"))
    bar = tqdm(total=config.rounds, initial=trainer.round, disable=not config.progress, desc="irl")
    while trainer.round < config.rounds:
        stats = trainer.train_round()
        r = trainer.round
        for key, v in stats.items():
            writer.add_scalar(f"train/{key}", v, r)
        writer.add_scalar("eval/discriminator_accuracy", stats["accuracy"], r)
        w, g = trainer.chosen_per_step()
        for k in range(len(w)):
            writer.add_scalar(f"charts/guidance_step{k}", w[k], r)
            writer.add_scalar(f"charts/gamma_step{k}", g[k], r)
        if config.eval.every and r % config.eval.every == 0:
            _quick_eval(trainer, writer, r)
        if r % config.checkpoint_every == 0 or r == config.rounds:
            trainer.save(ckpt)
        bar.update(1)
        bar.set_postfix(acc=f"{stats['accuracy']:.2f}", reward=f"{stats['irl_reward']:.3f}")
    bar.close()
    results = evaluate_trainer(trainer, out_dir, progress=config.progress)
    for m, v in results["irl-policy"].items():
        writer.add_scalar(f"eval/final_{m}", v["mean"], trainer.round)
    writer.close()
    return results


def _quick_eval(trainer: IRLTrainer, writer, r: int) -> None:
    from baselines.evaluate import evaluate

    cfg = trainer.cfg.eval
    res = evaluate(
        [trainer.strategy()],
        trainer.env.preset,
        num_samples=cfg.train_samples,
        seeds=cfg.seeds[:1],
        class_labels=cfg.class_labels,
        metrics=[m for m in cfg.metrics if m != "nfe"],
        progress=False,
    )
    for m, v in res["irl-policy"].items():
        writer.add_scalar(f"eval/{m}", v["mean"], r)
