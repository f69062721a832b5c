"""SB3 actor-critic (PPO, A2C, SAC with Gaussian policies) on the batched Clock env.

:func:`make_env` builds the SB3 view of ``ClockVectorEnv`` with ART's input and reward
wrappers, :func:`make_model` the algorithm (``policy_inputs: asymmetric`` uses
:class:`TimeActorPolicy`), :class:`ArtCallback` anneals exploration, logs and checkpoints,
and :func:`distill` turns the learned policy into a fixed schedule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import A2C, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from agents.vec_env import SB3VecEnv
from diffusion_gym.envs.clock import ClockVectorEnv
from diffusion_gym.io import append_line

from ..checkpoint import (
    Interrupted,
    fit_seed,
    interrupt_requested,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import Config, residual_sigmas
from .wrappers import (
    ResidualActions,
    RewardTransform,
    SelfCriticalReward,
    TimeInputs,
    find_wrapper,
)

__all__ = [
    "SB3_ALGOS",
    "make_env",
    "make_model",
    "algo_defaults",
    "SplitExtractor",
    "TimeActorPolicy",
    "ArtCallback",
    "sb3_state",
    "restore_sb3",
    "distill",
    "mean_schedule",
]

#: The SB3 algorithm class of each ``algo`` name.
SB3_ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "sac": SAC}


def make_env(
    cfg: Config,
    num_envs: int | None = None,
    bank_size: int | None = None,
    reward_transform: bool = True,
) -> tuple[VecEnv, ClockVectorEnv]:
    """The SB3 view of the batched ``ClockVectorEnv`` for ``cfg`` (+ input/reward wrappers;
    ``reward_transform=False`` leaves the env's own reward, as distillation needs).
    Returns ``(SB3 env, native env)``."""
    venv = ClockVectorEnv(
        cfg.preset, budget=cfg.budget, solver=cfg.solver, base=cfg.base, rho=cfg.rho,
        speed_scale=cfg.speed_scale, reward=cfg.reward, reference_steps=cfg.reference_steps,
        bank_size=bank_size or cfg.bank_size, bank_seed=fit_seed(cfg.seed), device=cfg.device,
        num_envs=num_envs or cfg.num_envs, obs_history=cfg.obs_history,
    )  # fmt: skip
    env: VecEnv = SB3VecEnv(venv)
    env.seed(fit_seed(cfg.seed))
    if cfg.residual_schedule is not None:
        env = ResidualActions(env, residual_offsets(cfg, venv))
    if cfg.policy_inputs == "time":
        env = TimeInputs(env)
    if reward_transform and cfg.reward_transform.endswith("self_critical"):
        mix = cfg.bank_sampling_mix if cfg.bank_sampling == "error" else None
        log = cfg.reward_transform.startswith("log")
        env = SelfCriticalReward(env, venv, log=log, sampling_mix=mix)
    elif reward_transform and cfg.reward_transform != "none":
        env = RewardTransform(env, cfg.reward_transform)
    return env, venv


def residual_offsets(cfg: Config, venv: ClockVectorEnv) -> np.ndarray:
    """The clock actions ``[K]`` of ``cfg.residual_schedule`` on ``venv``'s clock:
    ``"published"`` (the package's schedule of the preset × solver × NFE) or a
    ``schedule.json`` path (its ``sigmas``; :func:`.config.residual_sigmas`)."""
    return venv.actions_from_schedule(residual_sigmas(cfg)).numpy()


def algo_defaults(cfg: Config) -> dict[str, Any]:
    """Sensible defaults per algorithm: undiscounted episodes of K steps (γ = 1)."""
    K, n = cfg.budget, cfg.num_envs
    if cfg.algo == "ppo":  # 8 episodes per env per rollout, 4 minibatches, GAE λ = 1
        return dict(n_steps=8 * K, batch_size=max(8 * K * n // 4, 2), n_epochs=10,
                    gamma=1.0, gae_lambda=1.0, ent_coef=0.0, clip_range=0.2)  # fmt: skip
    if cfg.algo == "a2c":  # one episode per env per update, Monte-Carlo returns
        return dict(n_steps=K, gamma=1.0, gae_lambda=1.0, ent_coef=0.0, normalize_advantage=True)
    return dict(gamma=1.0, learning_starts=10 * n, batch_size=256, train_freq=1,
                gradient_steps=max(n // 16, 1), buffer_size=200_000)  # fmt: skip


def _mlp(n_in: int, sizes: list[int], activation_fn: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in sizes:
        layers += [nn.Linear(n_in, h), activation_fn()]
        n_in = h
    return nn.Sequential(*layers)


class SplitExtractor(nn.Module):
    """Actor MLP on features[:, :3], critic MLP on all features (no shared layers)."""

    def __init__(self, feature_dim: int, net_arch, activation_fn, device=None):
        super().__init__()
        sizes = list(net_arch.get("pi", [])) if isinstance(net_arch, dict) else list(net_arch)
        self.policy_net = _mlp(3, sizes, activation_fn)
        self.value_net = _mlp(feature_dim, sizes, activation_fn)
        self.latent_dim_pi = self.latent_dim_vf = sizes[-1] if sizes else 3

    def forward(self, features: torch.Tensor):
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy_net(features[:, :3])  # time features only: open loop

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(features)  # (time, x): a per-sample baseline


class TimeActorPolicy(ActorCriticPolicy):
    """SB3 ``ActorCriticPolicy`` whose actor reads only the first 3 (time) features and whose
    critic reads all of them (``policy_inputs: asymmetric``)."""

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = SplitExtractor(
            self.features_dim, self.net_arch, self.activation_fn, self.device
        )


def make_model(cfg: Config, env: VecEnv, tensorboard_log: str | None = None) -> BaseAlgorithm:
    """The SB3 algorithm (PPO, A2C or SAC, Gaussian policy ``MlpPolicy``) for ``cfg``, on
    ``cfg.device``."""
    cls = SB3_ALGOS[cfg.algo]
    kwargs = {**algo_defaults(cfg), **cfg.algo_kwargs}
    policy_kwargs = dict(net_arch=list(cfg.net_arch), log_std_init=cfg.log_std_init)
    policy: Any = "MlpPolicy"
    lr: Any = cfg.learning_rate
    if cfg.learning_rate_final is not None:  # SB3 passes progress_remaining: 1 → 0
        lr0, lr1 = cfg.learning_rate, cfg.learning_rate_final
        if not (lr1 >= 0 and lr0 > 0):
            raise ValueError(f"learning_rate_final must be >= 0, got {lr1!r}")
        lr = lambda remaining: lr1 + (lr0 - lr1) * remaining  # noqa: E731
    if cfg.policy_inputs == "asymmetric":
        if cfg.algo == "sac":
            raise ValueError("policy_inputs 'asymmetric' needs algo 'ppo' or 'a2c', got 'sac'")
        policy = TimeActorPolicy
    return cls(
        policy, env, learning_rate=lr, policy_kwargs=policy_kwargs,
        seed=fit_seed(cfg.seed), device=cfg.device, tensorboard_log=tensorboard_log, verbose=0,
        **kwargs,
    )  # fmt: skip


def mean_schedule(
    model: BaseAlgorithm, env: VecEnv, venv: ClockVectorEnv, budget: int
) -> tuple[torch.Tensor, np.ndarray]:
    """One deterministic episode of ``model`` on ``env``: the schedule of the batch-mean
    action per step, and those actions [K]."""
    obs = env.reset()
    actions = []
    residual = find_wrapper(env, ResidualActions)
    for k in range(budget):
        a, _ = model.predict(obs, deterministic=True)  # the policy's mean, squashed/clipped
        sent = a if residual is None else residual.env_actions(a, k)  # what the env gets
        actions.append(np.clip(sent[:, 0], -1.0, 1.0))
        obs, _, _, _ = env.step(a)
    mean = np.stack(actions, 1).mean(0)
    return venv.schedule_from_actions(torch.as_tensor(mean, dtype=torch.float64)), mean


@torch.no_grad()
def distill(model: BaseAlgorithm, cfg: Config) -> tuple[torch.Tensor, np.ndarray]:
    """The learned policy → fixed schedule: the mean (deterministic) action of every step,
    averaged over ``distill_samples`` trajectories, mapped by the env's
    ``schedule_from_actions``. Returns ``(sigmas [K+1], mean actions [K])``."""
    env, venv = make_env(
        cfg, num_envs=cfg.distill_samples, bank_size=cfg.distill_samples, reward_transform=False
    )
    sigmas, mean = mean_schedule(model, env, venv, cfg.budget)
    env.close()
    return sigmas, mean


class ArtCallback(BaseCallback):
    """Anneal log std; log terminal MSE and mean actions; checkpoint at rollout starts.

    At every rollout start of an open-loop policy it reads the policy's mean schedule on a
    one-env probe, hands it to a :class:`SelfCriticalReward` in the training env's chain (the
    baseline follows the policy's current mean), logs its σ and appends it to
    ``out_dir/mean_schedules.jsonl`` (one line per rollout start; :func:`trim_log` drops the
    lines after a checkpoint when a run resumes, so each step appears once).

    Checkpoints (``out_dir/checkpoints/step_<n>/``, :func:`agents.checkpoint.save_checkpoint`)
    are written at the first rollout start at least ``checkpoint_every`` steps after the last
    one, and on SIGINT (then :class:`agents.checkpoint.Interrupted` is raised): at a rollout
    start the rollout buffer is empty, so the state is the networks, the optimisers, the step
    counters, the env's episode streams, the wrappers' running state and the RNG states
    (:func:`sb3_state`), from which :func:`restore_sb3` continues bit for bit.

    :param start: the step count training starts from (checkpoints count from there).
    :param restore: the checkpoint state a resumed run starts from (its RNG states are set
        at the first rollout start, after the probe env is built).
    """

    def __init__(self, cfg: Config, out_dir: Path | None, start: int, restore: dict | None = None):
        super().__init__()
        self.cfg, self.out_dir = cfg, out_dir
        self.last_ckpt, self.errors = start, []
        self.restore = restore
        self.probe: tuple[VecEnv, ClockVectorEnv] | None = None

    def _on_rollout_start(self) -> None:
        cfg, out_dir = self.cfg, self.out_dir
        if self.restore is not None:
            set_rng_state(self.restore["rng"])
            self.restore = None
        n = self.model.num_timesteps
        stop = interrupt_requested()
        if out_dir is not None and (stop or n - self.last_ckpt >= cfg.checkpoint_every):
            self.checkpoint()
        if stop:
            raise Interrupted(f"checkpoint at step {n} in {out_dir / 'checkpoints'}")
        if cfg.policy_inputs != "full":  # open loop: the policy's mean is one schedule
            if self.probe is None:  # one env is enough to read it (RNG states untouched)
                saved = rng_state()
                self.probe = make_env(cfg, num_envs=1, bank_size=1, reward_transform=False)
                set_rng_state(saved)
            sigmas, acts = mean_schedule(self.model, *self.probe, cfg.budget)
            critic = find_wrapper(self.model.get_env(), SelfCriticalReward)
            if critic is not None:  # the baseline follows the policy's current mean
                critic.set_schedule(sigmas)
            for k, sig in enumerate(sigmas[1:-1].tolist(), start=1):
                self.logger.record(f"charts/sigma_{k}", sig)
            if out_dir is not None:  # the mean schedule along training, one line a rollout
                line = {"step": n, "actions": acts.tolist(), "sigmas": sigmas.tolist()}
                append_line(out_dir / "mean_schedules.jsonl", json.dumps(line))
        pol = self.model.policy
        if cfg.log_std_final is not None and hasattr(pol, "log_std"):
            frac = min(n / cfg.total_timesteps, 1.0)
            v = cfg.log_std_init + frac * (cfg.log_std_final - cfg.log_std_init)
            with torch.no_grad():
                pol.log_std.fill_(v)
            self.logger.record("train/log_std_annealed", v)

    def checkpoint(self) -> Path | None:
        """Write ``checkpoints/step_<n>/`` (``state.pt`` + the SB3 ``model.zip``)."""
        n = self.model.num_timesteps
        state = sb3_state(self.model, self.errors, n)

        def model_zip(d: Path) -> None:
            self.model.save(d / "model.zip")

        self.last_ckpt = n
        return save_checkpoint(self.out_dir / "checkpoints", "step_", n, state, model_zip)

    def _on_step(self) -> bool:
        cfg = self.cfg
        for info, done in zip(self.locals["infos"], self.locals["dones"], strict=True):
            if done and "env_reward" in info:
                self.errors.append(-info["env_reward"])
            elif done:
                self.errors.append(-float(self.locals.get("rewards", [0])[0]))
        if self.errors and len(self.errors) >= cfg.num_envs:
            e = np.asarray(self.errors)
            self.logger.record("charts/terminal_rmse", float(np.sqrt(e.mean())))
            self.logger.record("charts/log_terminal_mse", float(np.log(e + 1e-12).mean()))
            self.errors = []
        return True


def _clock_env(env: VecEnv) -> ClockVectorEnv:
    inner = find_wrapper(env, SB3VecEnv)
    assert inner is not None and isinstance(inner.venv, ClockVectorEnv)
    return inner.venv


def sb3_state(model: BaseAlgorithm, errors: list[float], step: int) -> dict[str, Any]:
    """The state of an SB3 ART run at a rollout start, as weights-only data (see
    :class:`ArtCallback`; ``torch.load(weights_only=True)`` reads it)."""
    env = model.get_env()
    clock = _clock_env(env)
    wrappers = {}
    for cls in (RewardTransform, SelfCriticalReward):
        w = find_wrapper(env, cls)
        if w is not None:
            wrappers[cls.__name__] = w.state()
    state: dict[str, Any] = {
        "num_timesteps": int(step),
        "n_updates": int(model._n_updates),
        "episode_num": int(model._episode_num),
        "params": model.get_parameters(),
        "last_obs": torch.as_tensor(np.array(model._last_obs, copy=True)),
        "last_episode_starts": torch.as_tensor(np.array(model._last_episode_starts, copy=True)),
        "env": {"base_seeds": clock.base_seeds.cpu(), "episode_index": clock.episode_index.cpu()},
        "wrappers": wrappers,
        "errors": [float(e) for e in errors],
        "rng": rng_state(),
    }
    ent = getattr(model, "log_ent_coef", None)  # SAC's learned entropy coefficient
    if isinstance(ent, torch.Tensor):
        state["log_ent_coef"] = ent.detach().cpu().clone()
    rb = getattr(model, "replay_buffer", None)  # off-policy (SAC): the replay buffer
    if rb is not None:
        upto = rb.buffer_size if rb.full else rb.pos
        state["replay"] = {"pos": int(rb.pos), "full": bool(rb.full)}
        for name in _REPLAY_FIELDS:
            arr = getattr(rb, name, None)
            if arr is not None:
                state["replay"][name] = torch.from_numpy(np.array(arr[:upto], copy=True))
        # SAC samples warm-up actions from the action space's own generator
        bitgen = model.action_space.np_random.bit_generator.state
        state["action_space_rng"] = json.dumps(bitgen)
    return state


#: Replay-buffer arrays saved with an off-policy checkpoint.
_REPLAY_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _restore_replay(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    rb = model.replay_buffer
    rec = state["replay"]
    for name in _REPLAY_FIELDS:
        if name in rec:
            arr = getattr(rb, name)
            arr[: len(rec[name])] = rec[name].numpy()
    rb.pos, rb.full = int(rec["pos"]), bool(rec["full"])
    model.action_space.np_random.bit_generator.state = json.loads(state["action_space_rng"])


def restore_sb3(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    """Continue a freshly built model (same config) from :func:`sb3_state`'s state: networks,
    optimisers, counters, the env's episodes, the wrappers' state and the next observation.
    The RNG states are restored by :class:`ArtCallback` at the first rollout start."""
    model.set_parameters(state["params"], exact_match=True, device=model.device)
    if "log_ent_coef" in state:
        with torch.no_grad():
            model.log_ent_coef.copy_(state["log_ent_coef"].to(model.device))
    if "replay" in state:
        _restore_replay(model, state)
    model.num_timesteps = int(state["num_timesteps"])
    model._n_updates = int(state["n_updates"])
    model._episode_num = int(state["episode_num"])
    env = model.get_env()
    for cls in (RewardTransform, SelfCriticalReward):
        w = find_wrapper(env, cls)
        if w is not None and cls.__name__ in state["wrappers"]:
            w.load_state(state["wrappers"][cls.__name__])
    residual = find_wrapper(env, ResidualActions)
    if residual is not None:  # the episodes restart below, at k = 0
        residual.k = 0
    obs = _clock_env(env).restore_episodes(
        state["env"]["base_seeds"].numpy(), state["env"]["episode_index"].numpy()
    )
    saved = state["last_obs"].numpy()
    if find_wrapper(env, TimeInputs) is not None:
        obs = obs[:, :3]
    if obs.shape == saved.shape and np.array_equal(obs, saved):  # a rollout start at k = 0
        model._last_obs = saved
        model._last_episode_starts = state["last_episode_starts"].numpy()
    else:  # checkpoint inside episodes (n_steps not a multiple of the budget): restart them
        model._last_obs = obs
        model._last_episode_starts = np.ones(env.num_envs, dtype=bool)
