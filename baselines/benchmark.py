"""``diffusion-gym benchmark``: off-the-shelf RL algorithms × environment ids × seeds.

Every algorithm of stable-baselines3 (PPO, A2C, DQN, SAC, TD3) and sb3-contrib (MaskablePPO,
QR-DQN, TRPO, RecurrentPPO, TQC, CrossQ, ARS) runs on every environment whose action space it
supports, for a fixed budget of environment steps and several seeds. The environments run as
the native batched vector envs behind :class:`agents.vec_env.SB3VecEnv`; the guidance env is
trained with its built-in rewards (``reward="log_prob"``, ``"classifier"``) and with the
occupancy-matching IRL reward of :mod:`agents.irl` (the algorithm as the generator), the clock
env with its terminal error reward. An algorithm that does not fit an env is SKIPPED with the
reason in the table.

Hyperparameters come from RL-Zoo files (``agents/configs/zoo/<algo>.yml``, keyed by env id,
the same files ``python -m rl_zoo3.train -conf ...`` reads), with per-algorithm overrides in the
benchmark config. The benchmark config (YAML, see ``baselines/configs/benchmark.yaml``) maps
onto :class:`BenchmarkConfig`; an unknown key, algorithm or env id is a ``ValueError`` that
lists the valid ones.

Final metric, on a fixed evaluation batch with the deterministic policy:

- guidance: class-conditional energy distance between the policy's x_0 and true data of the
  same classes (``diffusion_gym.metrics.class_conditional(energy_distance, ...)``);
- clock: RMSE between the policy's x_K and the env's reference ODE solution x_ref.

Outputs in ``--out DIR``: ``benchmark.json`` (config, machine, every run, the summary),
``benchmark.md`` (one table per env: metric mean ± std over seeds, eval return, wall time,
env steps/s, skipped pairs with their reason), ``curves_<env>.png`` (metric and training
return against env steps), and TensorBoard logs under ``tb/`` (SB3's ``tensorboard_log``).

Usage::

    diffusion-gym benchmark baselines/configs/benchmark.yaml --out runs/bench
    diffusion-gym benchmark baselines/configs/benchmark-tiny.yaml --seeds 0 1 --steps 2000
    diffusion-gym benchmark --merge runs/part-a runs/part-b --out runs/bench  # one report
    diffusion-gym benchmark --throughput --out runs/throughput   # env throughput tables
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import importlib.util
import inspect
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

__all__ = [
    "ALGORITHMS",
    "AlgoSpec",
    "BenchmarkConfig",
    "EnvConfig",
    "EvalConfig",
    "RunResult",
    "algo_kwargs",
    "algo_spec",
    "baseline_policies",
    "config_from_dict",
    "evaluate_policy_batch",
    "fit_reason",
    "load_config",
    "load_hyperparams",
    "main",
    "make_vector_env",
    "markdown_tables",
    "merge_results",
    "reward_normalization",
    "run_benchmark",
    "run_one",
    "run_throughput",
    "summarize",
    "write_report",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
ZOO_DIR = REPO_ROOT / "agents" / "configs" / "zoo"


# ---------------------------------------------------------------------------------------------
# Algorithms


@dataclass(frozen=True)
class AlgoSpec:
    """One RL algorithm: where its class lives and what it supports.

    :param name: the RL-Zoo name (``--algo`` of ``rl_zoo3.train``; also the yml file name).
    :param module: ``"stable_baselines3"`` or ``"sb3_contrib"``.
    :param cls: class name in ``module``.
    :param action_spaces: names of the ``gymnasium.spaces`` classes it accepts (as declared by
        its ``supported_action_spaces``).
    :param on_policy: collects fresh rollouts per update (no replay buffer).
    :param zoo: ``rl_zoo3.train`` 2.9.2 knows it (MaskablePPO is not in its ``--algo`` list).
    """

    name: str
    module: str
    cls: str
    action_spaces: tuple[str, ...]
    on_policy: bool
    zoo: bool = True

    def load(self) -> type:
        """The algorithm class."""
        return getattr(importlib.import_module(self.module), self.cls)


_ON = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")
ALGORITHMS: dict[str, AlgoSpec] = {
    a.name: a
    for a in (
        AlgoSpec("ppo", "stable_baselines3", "PPO", _ON, True),
        AlgoSpec("a2c", "stable_baselines3", "A2C", _ON, True),
        AlgoSpec("dqn", "stable_baselines3", "DQN", ("Discrete",), False),
        AlgoSpec("sac", "stable_baselines3", "SAC", ("Box",), False),
        AlgoSpec("td3", "stable_baselines3", "TD3", ("Box",), False),
        AlgoSpec(
            "maskable_ppo",
            "sb3_contrib",
            "MaskablePPO",
            ("Discrete", "MultiDiscrete", "MultiBinary"),
            True,
            zoo=False,
        ),
        AlgoSpec("qrdqn", "sb3_contrib", "QRDQN", ("Discrete",), False),
        AlgoSpec("trpo", "sb3_contrib", "TRPO", _ON, True),
        AlgoSpec("ppo_lstm", "sb3_contrib", "RecurrentPPO", _ON, True),
        AlgoSpec("tqc", "sb3_contrib", "TQC", ("Box",), False),
        AlgoSpec("crossq", "sb3_contrib", "CrossQ", ("Box",), False),
        AlgoSpec("ars", "sb3_contrib", "ARS", ("Box", "Discrete"), True),
    )
}
# Other spellings accepted in configs (class names, lower case) -> RL-Zoo name.
_ALIASES = {spec.cls.lower(): name for name, spec in ALGORITHMS.items()} | {
    "recurrent_ppo": "ppo_lstm",
    "recurrentppo": "ppo_lstm",
    "qr_dqn": "qrdqn",
    "maskableppo": "maskable_ppo",
}


def algo_spec(name: str) -> AlgoSpec:
    """The :class:`AlgoSpec` of ``name`` (RL-Zoo name, or class name in any case)."""
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    if key not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; valid algorithms: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[key]


def fit_reason(spec: AlgoSpec, action_space: Any, *, irl: bool = False, env: Any = None):
    """Why ``spec`` cannot run on an env with ``action_space`` (and reward source), or None.

    :param irl: the env is trained with the IRL discriminator reward.
    :param env: the native vector env (checked for ``action_masks`` for MaskablePPO).
    """
    kind = type(action_space).__name__
    if kind not in spec.action_spaces:
        return f"{spec.cls} supports {'/'.join(spec.action_spaces)} actions, env has {kind}"
    if spec.name == "maskable_ppo" and env is not None and not hasattr(env, "action_masks"):
        return "MaskablePPO needs env.action_masks(), which this env does not expose"
    if irl:
        return _irl_fit_reason(spec)
    return None


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass
class EnvConfig:
    """One environment column of the benchmark.

    :param id: registered env id, e.g. ``"diffusion_gym/Guidance-v0"``.
    :param label: name in tables and file names (default: id without namespace + reward).
    :param kwargs: keyword arguments for the env constructor (``reward``, ``num_steps``, ...).
    :param num_envs: batch size of the native vector env (default: the config's ``num_envs``).
    :param irl: train with the occupancy-matching IRL reward of :mod:`agents.irl` instead of the
        env's reward; the mapping holds that reward's options (discriminator, divergence).
    """

    id: str
    label: str = ""
    kwargs: dict = field(default_factory=dict)
    num_envs: int | None = None
    irl: dict | None = None


@dataclass
class EvalConfig:
    """Evaluation of a policy: a fixed batch, the deterministic policy.

    :param num_samples: batch of episodes (envs) per evaluation.
    :param seed: reset seed of the evaluation batch (the same noise for every run).
    :param points: evaluations during training, evenly spaced (learning curves); the final
        evaluation is always made.
    """

    num_samples: int = 1024
    seed: int = 12345
    points: int = 5


@dataclass
class BenchmarkConfig:
    """The benchmark: ``algos`` × ``envs`` × ``seeds`` at ``steps`` env steps each.

    :param algos: algorithm names (see :data:`ALGORITHMS`).
    :param envs: :class:`EnvConfig` entries (YAML: a list of mappings).
    :param seeds: seeds of the algorithms and of the training envs.
    :param steps: env steps (summed over the vector env's batch) per run.
    :param num_envs: default batch size of the training vector envs.
    :param hyperparams: directory of RL-Zoo yml files (relative to the config file);
        default ``agents/configs/zoo``.
    :param overrides: per-algorithm hyperparameters put over the yml ones.
    :param eval: :class:`EvalConfig`.
    :param device: torch device of the algorithms' networks.
    :param env_device: torch device of the environments.
    :param num_threads: ``torch.set_num_threads`` during the benchmark.
    :param tensorboard: write TensorBoard logs under ``OUT/tb``.
    """

    algos: list[str]
    envs: list[EnvConfig]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: int = 20_000
    num_envs: int = 16
    hyperparams: str | None = None
    overrides: dict[str, dict] = field(default_factory=dict)
    eval: EvalConfig = field(default_factory=EvalConfig)
    device: str = "cpu"
    env_device: str = "cpu"
    num_threads: int = 1
    tensorboard: bool = True


def _from_mapping(cls: type, data: Any, where: str):
    """Build dataclass ``cls`` from a mapping; unknown keys are a ``ValueError``."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(names)}")
    try:
        return cls(**data)
    except TypeError as e:  # a required key is missing
        raise ValueError(f"{where}: {e}") from None


def config_from_dict(data: dict, base_dir: Path | None = None) -> BenchmarkConfig:
    """Typed :class:`BenchmarkConfig` from a plain mapping (a parsed YAML file), validated:
    algorithm names, env ids, seeds and budgets."""
    data = dict(data)
    data["envs"] = [
        _from_mapping(EnvConfig, e, f"envs[{i}]") for i, e in enumerate(data.get("envs", []))
    ]
    data["eval"] = _from_mapping(EvalConfig, data.get("eval", {}), "eval")
    cfg = _from_mapping(BenchmarkConfig, data, "benchmark config")
    cfg.algos = [algo_spec(a).name for a in cfg.algos]
    unknown = sorted(set(cfg.overrides) - set(ALGORITHMS) - set(_ALIASES))
    if unknown:
        raise ValueError(f"overrides for unknown algorithm(s) {unknown}; valid: {list(ALGORITHMS)}")
    cfg.overrides = {algo_spec(a).name: dict(v) for a, v in cfg.overrides.items()}
    if not cfg.envs or not cfg.algos:
        raise ValueError("a benchmark config needs at least one entry in 'algos' and in 'envs'")
    if not cfg.seeds or not all(isinstance(s, int) and s >= 0 for s in cfg.seeds):
        raise ValueError(f"seeds must be a non-empty list of ints >= 0, got {cfg.seeds!r}")
    for name, value in (("steps", cfg.steps), ("num_envs", cfg.num_envs)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    _check_env_ids(cfg.envs)
    labels = [_label(e) for e in cfg.envs]
    for e, lab in zip(cfg.envs, labels, strict=True):
        e.label = lab
    if len(set(labels)) != len(labels):
        raise ValueError(f"env labels must be unique, got {labels}; set 'label' per env")
    if cfg.hyperparams is not None and base_dir is not None:
        cfg.hyperparams = str((base_dir / cfg.hyperparams).resolve())
    return cfg


def load_config(path: str | Path) -> BenchmarkConfig:
    """Read a benchmark YAML file into a validated :class:`BenchmarkConfig`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark config {str(path)!r} does not exist")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    return config_from_dict(data, base_dir=path.parent)


def _registered_ids() -> list[str]:
    import gymnasium as gym

    import diffusion_gym  # noqa: F401  (registers the ids)

    return sorted(k for k in gym.registry if k.startswith("diffusion_gym/"))


def _check_env_ids(envs: Sequence[EnvConfig]) -> None:
    valid = _registered_ids()
    for e in envs:
        if e.id not in valid:
            raise ValueError(f"unknown env id {e.id!r}; valid env ids: {', '.join(valid)}")


def _label(e: EnvConfig) -> str:
    if e.label:
        return e.label
    name = e.id.split("/", 1)[-1]
    if e.irl is not None:
        return f"{name}/irl"
    return f"{name}/{e.kwargs['reward']}" if "reward" in e.kwargs else name


# ---------------------------------------------------------------------------------------------
# RL-Zoo hyperparameter files

# Keys of an RL-Zoo entry that are not algorithm arguments.
_ZOO_ONLY = {
    "n_envs", "n_timesteps", "policy", "env_kwargs", "noise_type", "noise_std", "normalize"
}  # fmt: skip
_ZOO_UNSUPPORTED = {"env_wrapper", "vec_env_wrapper", "frame_stack", "callback"}


def _literal(node: ast.AST) -> Any:
    """Evaluate the literal subset of Python RL-Zoo uses in ``policy_kwargs`` strings:
    constants, lists, tuples, dicts and ``dict(key=value, ...)`` calls; ``nn.ReLU``-style
    activation names from ``torch.nn``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if node.args:
            raise ValueError("dict(...) in policy_kwargs takes keyword arguments only")
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if node.value.id in ("nn", "th", "torch") and hasattr(torch.nn, node.attr):
            return getattr(torch.nn, node.attr)
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(x) for x in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}
    return ast.literal_eval(node)


def parse_policy_kwargs(text: str | dict) -> dict:
    """``policy_kwargs`` of an RL-Zoo file (a ``"dict(...)"`` string or a mapping) as a dict."""
    if isinstance(text, dict):
        return dict(text)
    try:
        value = _literal(ast.parse(str(text), mode="eval").body)
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"policy_kwargs {text!r} is not a literal dict(...): {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"policy_kwargs must give a dict, got {text!r}")
    return value


def _zoo_entry(data: dict, env_id: str, path: Path) -> dict:
    """The entry of ``env_id`` in a zoo file; else the entry of an id with the same
    ``entry_point`` (the same env class with other defaults)."""
    if env_id in data:
        return dict(data[env_id])
    import gymnasium as gym

    entry = gym.spec(env_id).entry_point
    for key, value in data.items():
        if key in gym.registry and gym.spec(key).entry_point == entry:
            return dict(value)
    raise ValueError(
        f"no hyperparameters for env id {env_id!r} in {path}; it has: {', '.join(data)}"
    )


def load_hyperparams(
    algo: str, env_id: str, directory: str | Path | None = None, overrides: dict | None = None
) -> dict:
    """Hyperparameters of ``algo`` on ``env_id`` from ``<directory>/<algo>.yml`` (RL-Zoo
    format), with ``overrides`` on top. Returns the raw entry (``policy``, ``policy_kwargs``
    still a string, ``n_envs`` ...); see :func:`algo_kwargs` for the constructor arguments."""
    spec = algo_spec(algo)
    path = Path(directory or ZOO_DIR) / f"{spec.name}.yml"
    if not path.is_file():
        raise FileNotFoundError(f"hyperparameter file {str(path)!r} does not exist")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    entry = _zoo_entry(data, env_id, path)
    entry.update(overrides or {})
    return entry


def algo_kwargs(spec: AlgoSpec, hp: dict, action_dim: int | None = None) -> tuple[str, dict]:
    """(policy, constructor kwargs) of ``spec`` from a zoo entry ``hp``; unknown keys are a
    ``ValueError`` listing the algorithm's arguments."""
    from stable_baselines3.common.utils import LinearSchedule

    bad = sorted(_ZOO_UNSUPPORTED & set(hp))
    if bad:
        raise ValueError(f"zoo keys {bad} are not supported by diffusion-gym benchmark")
    kwargs = {k: v for k, v in hp.items() if k not in _ZOO_ONLY}
    valid = set(inspect.signature(spec.load().__init__).parameters) - {"self", "env", "policy"}
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ValueError(f"unknown {spec.cls} hyperparameter(s) {unknown}; valid: {sorted(valid)}")
    if "policy_kwargs" in kwargs:
        kwargs["policy_kwargs"] = parse_policy_kwargs(kwargs["policy_kwargs"])
    for key in ("learning_rate", "clip_range", "clip_range_vf"):
        value = kwargs.get(key)
        if isinstance(value, str) and value.startswith("lin_"):
            kwargs[key] = LinearSchedule(float(value[4:]), 0.0, 1.0)  # zoo's "lin_x": x · p_rem
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    if "noise_type" in hp:
        kwargs["action_noise"] = _action_noise(hp["noise_type"], hp["noise_std"], action_dim)
    return hp.get("policy", "MlpPolicy"), kwargs


def reward_normalization(hp: dict) -> dict | None:
    """``VecNormalize`` kwargs from a zoo entry's ``normalize`` (None without one).

    Only reward normalisation is supported (``"dict(norm_obs=False, norm_reward=True)"``):
    the benchmark evaluates the policy on the raw env, so observations must stay raw.
    """
    value = hp.get("normalize")
    if value is None or value is False:
        return None
    kw = parse_policy_kwargs(value) if isinstance(value, (str, dict)) else None
    if kw is None or kw.get("norm_obs", True):
        raise ValueError(
            f"normalize={value!r}: the benchmark supports only reward normalisation, "
            'normalize: "dict(norm_obs=False, norm_reward=True)"'
        )
    return kw


def _action_noise(kind: str, std: float, dim: int | None):
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    if dim is None:
        raise ValueError("noise_type needs a Box action space")
    classes = {"normal": NormalActionNoise, "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise}
    if kind not in classes:
        raise ValueError(f"noise_type must be one of {list(classes)}, got {kind!r}")
    return classes[kind](np.zeros(dim), std * np.ones(dim))


# ---------------------------------------------------------------------------------------------
# Environments


def _env_kind(env: Any) -> str:
    """``"guidance"`` or ``"clock"``: which metric the native vector env ``env`` gets."""
    name = type(getattr(env, "unwrapped", env)).__name__
    if name.startswith("Guidance"):
        return "guidance"
    if name.startswith("Clock"):
        return "clock"
    raise ValueError(f"no benchmark metric for env class {name}; known: Guidance*, Clock*")


def make_vector_env(env_id: str, num_envs: int, kwargs: dict, device: str = "cpu"):
    """The native batched vector env of ``env_id`` (``vector_entry_point``)."""
    import gymnasium as gym

    import diffusion_gym  # noqa: F401  (registers the ids)

    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        device=device,
        **kwargs,
    )


def _eval_kwargs(kind: str, kwargs: dict) -> dict:
    """Env kwargs of the evaluation batch: the training ones with the metric's own reward."""
    out = dict(kwargs)
    if kind == "clock":
        out["reward"] = "terminal_error"  # its terminal reward is −‖x_K − x_ref‖²/dim
    elif callable(out.get("reward")) or out.get("reward") in (None, "none"):
        out["reward"] = "log_prob"  # a readable return for the IRL-trained policies
    return out


class _ConstantPolicy:
    """A policy that plays one fixed action in every env (the baselines of the tables)."""

    def __init__(self, action: Any):
        self.action = np.asarray(action)

    def predict(self, obs: np.ndarray, **_: Any) -> tuple[np.ndarray, None]:
        return np.broadcast_to(self.action, (len(obs), *self.action.shape)).copy(), None


def rollout(policy: Any, env: Any, seed: int, algo: str = "") -> tuple[np.ndarray, dict]:
    """One synchronous episode of every env of ``env`` with the deterministic ``policy``.

    :returns: the undiscounted returns ``[B]`` and the last step's ``final_info`` (plus
        ``"class_labels"``, the episode's labels read at reset, or None).
    """
    obs, _ = env.reset(seed=seed)
    labels = _episode_labels(env)
    n = env.num_envs
    returns, state, starts = np.zeros(n), None, np.ones(n, dtype=bool)
    for _ in range(10_000):
        kw: dict[str, Any] = {"deterministic": True}
        if algo == "maskable_ppo":
            kw["action_masks"] = env.action_masks()
        if algo == "ppo_lstm":
            kw.update(state=state, episode_start=starts)
        action, state = policy.predict(obs, **kw)
        obs, reward, terminated, truncated, info = env.step(action)
        returns += reward
        starts = terminated | truncated
        if starts.any():
            if not starts.all():
                raise RuntimeError("episodes of the batch ended at different steps")
            return returns, {**info["final_info"], "class_labels": labels}
    raise RuntimeError("evaluation episode did not end within 10000 steps")


def _episode_labels(env: Any) -> np.ndarray | None:
    """Class labels ``[B]`` of the episodes just reset (None for unconditional envs)."""
    u = env.unwrapped
    labels = u.core.labels if hasattr(u, "core") else getattr(u, "class_labels", None)
    return None if labels is None else labels.detach().cpu().numpy().copy()


def evaluate_policy_batch(policy: Any, env: Any, seed: int, algo: str = "") -> dict[str, float]:
    """Final metric and mean return of ``policy`` on the evaluation batch ``env``.

    guidance: ``metric`` = class-conditional energy distance between the final x_0 and true
    data of the same classes (drawn with ``seed``); clock: ``metric`` = RMSE of x_K to the
    reference solution x_ref, sqrt(mean ‖x_K − x_ref‖²/dim) over the batch.
    """
    returns, final = rollout(policy, env, seed, algo)
    out = {"return": float(returns.mean())}
    if _env_kind(env) == "clock":
        # terminal_error reward = −‖x_K − x_ref‖²/dim, the only non-zero one of an episode.
        out["metric"] = math.sqrt(max(-float(returns.mean()), 0.0))
    else:
        out["metric"] = _guidance_energy(env, final, seed)
    if not math.isfinite(out["metric"]):
        raise ValueError(f"evaluation metric is not finite: {out}")
    return out


def _guidance_energy(env: Any, final: dict, seed: int) -> float:
    from diffusion_gym import metrics

    x0 = torch.as_tensor(np.asarray(final["x0"])).reshape(len(final["x0"]), -1)
    labels = torch.as_tensor(np.asarray(final["class_labels"])).long()
    data = env.unwrapped.preset.data
    g = torch.Generator().manual_seed(seed)
    ref = data.sample(len(labels), class_labels=labels, generator=g)
    ref = ref.reshape(len(labels), -1).to(x0.dtype)
    return metrics.class_conditional(
        metrics.energy_distance, x0, ref, labels, labels, env.unwrapped.preset.num_classes
    )


def baseline_policies(env: Any) -> dict[str, _ConstantPolicy]:
    """Constant-action reference policies for an env's table.

    guidance: every entry of the action table (``const w=.. γ=..``); clock: a = 0 (the base
    schedule) and constant speeds a = ±0.5, ±1.
    """
    if _env_kind(env) == "clock":
        out = {"base schedule (a=0)": _ConstantPolicy(np.zeros(1, dtype=np.float32))}
        for a in (-1.0, -0.5, 0.5, 1.0):  # uniformly slower / faster clocks
            out[f"const a={a:g}"] = _ConstantPolicy(np.full(1, a, dtype=np.float32))
        return out
    u = env.unwrapped
    if type(u.single_action_space).__name__ != "Discrete":
        return {}
    out = {}
    for i, w in enumerate(u.guidance_weights):  # action a = i_w · len(gammas) + i_γ
        for j, gamma in enumerate(u.gammas):
            action = np.int64(i * len(u.gammas) + j)
            out[f"const w={float(w):g} γ={float(gamma):g}"] = _ConstantPolicy(action)
    return out


# ---------------------------------------------------------------------------------------------
# One run


@dataclass
class RunResult:
    """One (algorithm, env, seed) run, or a skipped pair (``status="skipped"``)."""

    algo: str
    env: str
    seed: int | None
    status: str  # "ok", "skipped" or "failed"
    reason: str = ""
    metric: float = math.nan
    eval_return: float = math.nan
    train_return: float = math.nan
    wall_s: float = math.nan
    steps: int = 0
    steps_per_s: float = math.nan
    curve: list[dict] = field(default_factory=list)


def _curve_callback(evaluate: Callable[[Any], dict], every: int):
    """A callback that evaluates every ``every`` env steps (also driven by hand: ``tick``)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class CurveCallback(BaseCallback):
        """Evaluates every ``every`` env steps; logs ``eval/metric``, ``eval/return``."""

        def __init__(self):
            super().__init__()
            self.points: list[dict] = []
            self.eval_seconds = 0.0
            self.next_at = every

        train_return_fn: Callable[[], float] | None = None
        # ARS counts num_envs timesteps per env per vector step (sb3-contrib's
        # _trigger_callback inside evaluate_policy): true env steps = num_timesteps / scale.
        scale = 1

        @property
        def env_steps(self) -> int:
            return int(self.num_timesteps // self.scale)

        def _on_step(self) -> bool:
            while self.env_steps >= self.next_at:
                self.next_at += every
                if self.env_steps < self.next_at:
                    self.record()
            return True

        def tick(self) -> None:
            """Catch up with ``model.num_timesteps`` outside ``learn`` (IRL rounds)."""
            self.num_timesteps = self.model.num_timesteps
            self._on_step()

        def record(self) -> dict:
            t0 = time.perf_counter()
            res = evaluate(self.model)
            self.eval_seconds += time.perf_counter() - t0
            if self.train_return_fn is not None:
                res["train_return"] = float(self.train_return_fn())
            else:
                buf = [e["r"] for e in self.model.ep_info_buffer or []]
                res["train_return"] = float(np.mean(buf)) if buf else math.nan
            res["steps"] = self.env_steps
            self.points.append(res)
            self.logger.record("eval/metric", res["metric"])
            self.logger.record("eval/return", res["return"])
            return res

    return CurveCallback()


def run_one(
    algo: str,
    env_cfg: EnvConfig,
    seed: int,
    cfg: BenchmarkConfig,
    eval_env: Any,
    tb_dir: Path | None = None,
) -> RunResult:
    """Train ``algo`` on ``env_cfg`` with ``seed`` for ``cfg.steps`` env steps; evaluate at
    ``cfg.eval.points`` points and at the end on ``eval_env`` (the fixed evaluation batch of
    this env, also used to check that the algorithm fits). Wall time and env steps/s exclude
    the evaluations."""
    spec = algo_spec(algo)
    result = RunResult(spec.name, env_cfg.label, seed, "ok")
    irl = env_cfg.irl is not None
    reason = fit_reason(spec, eval_env.single_action_space, irl=irl, env=eval_env.unwrapped)
    if reason:
        return dataclasses.replace(result, status="skipped", reason=reason, seed=None)
    tb_name = f"{env_cfg.label}/{spec.name}_s{seed}"
    curve = _curve_callback(
        lambda m: evaluate_policy_batch(m, eval_env, cfg.eval.seed, spec.name),
        max(cfg.steps // max(cfg.eval.points, 1), 1),
    )
    n = env_cfg.num_envs or cfg.num_envs
    hp = load_hyperparams(spec.name, env_cfg.id, cfg.hyperparams, cfg.overrides.get(spec.name))
    if spec.name == "ars":
        hp.setdefault("n_eval_episodes", n)  # one episode per env per candidate
        curve.scale = n  # its num_timesteps overcounts by num_envs (see _curve_callback)
    space = eval_env.single_action_space
    policy, kwargs = algo_kwargs(spec, hp, space.shape[0] if hasattr(space, "low") else None)
    kwargs.update(seed=seed, device=cfg.device, verbose=0)
    norm = reward_normalization(hp)  # env reward only: IRL rewards come from agents.irl
    if irl:
        trainer = _irl_trainer(spec, policy, kwargs, env_cfg, eval_env, n, cfg, tb_dir)
        model, learn = trainer.model, lambda: _irl_learn(trainer, cfg.steps, curve)
    else:
        model = _plain_model(spec, policy, kwargs, env_cfg, n, cfg, tb_dir, norm)
        learn = partial(_plain_learn, model, cfg.steps * curve.scale, curve, tb_name)
    t0 = time.perf_counter()  # construction (imports, networks) is not timed
    learn()
    wall = time.perf_counter() - t0 - curve.eval_seconds
    done = curve.points and curve.points[-1]["steps"] == curve.env_steps
    final = curve.points[-1] if done else curve.record()
    result.metric, result.eval_return = final["metric"], final["return"]
    result.train_return = final["train_return"]
    result.wall_s, result.steps = wall, curve.env_steps
    result.steps_per_s = result.steps / wall
    result.curve = curve.points
    return result


def _plain_model(spec, policy, kwargs, env_cfg, n, cfg, tb_dir, norm=None):
    """The algorithm on the native vector env (SB3 adapter + ``VecMonitor``, then
    ``VecNormalize`` of the reward if ``norm``), env reward."""
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    from agents.vec_env import SB3VecEnv

    native = make_vector_env(env_cfg.id, n, _train_kwargs(env_cfg), cfg.env_device)
    native.reset(seed=kwargs["seed"])  # builds the clock env's reference bank, untimed
    venv = VecMonitor(SB3VecEnv(native))  # raw returns for the curves
    if norm is not None:
        venv = VecNormalize(venv, gamma=kwargs.get("gamma", 0.99), **norm)
    tb = str(tb_dir) if tb_dir else None
    return spec.load()(policy, venv, tensorboard_log=tb, **kwargs)


def _plain_learn(model, steps: int, curve, tb_name: str) -> None:
    model.learn(steps, callback=curve, tb_log_name=tb_name)
    model.get_env().close()


def _train_kwargs(env_cfg: EnvConfig) -> dict:
    kwargs = dict(env_cfg.kwargs)
    if env_cfg.irl is not None:
        kwargs.setdefault("reward", "none")  # the discriminator supplies the reward
    return kwargs


# ---------------------------------------------------------------------------------------------
# The benchmark


def run_benchmark(
    cfg: BenchmarkConfig, out_dir: str | Path, log: Callable[[str], None] = print
) -> dict:
    """Run every (algorithm, env, seed) of ``cfg``; write the report into ``out_dir``.

    :returns: the JSON-able results: ``config``, ``machine``, ``baselines`` (constant-action
        policies per env), ``runs`` (every :class:`RunResult`) and ``summary`` (per algorithm
        and env: mean ± std over seeds).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.num_threads)
    try:
        runs, baselines = [], {}
        for env_cfg in cfg.envs:
            n_eval = cfg.eval.num_samples
            eval_env = make_vector_env(
                env_cfg.id, n_eval, _eval_kwargs_for(env_cfg), cfg.env_device
            )
            baselines[env_cfg.label] = {
                name: evaluate_policy_batch(p, eval_env, cfg.eval.seed)
                for name, p in baseline_policies(eval_env).items()
            }
            for algo in cfg.algos:
                for seed in cfg.seeds:
                    res = _run_guarded(algo, env_cfg, seed, cfg, eval_env, out, log)
                    runs.append(res)
                    if res.status == "skipped":
                        break  # the reason does not depend on the seed
            eval_env.close()
            results = {
                "config": _jsonable(dataclasses.asdict(cfg)),
                "machine": machine_info(),
                "baselines": baselines,
                "runs": [dataclasses.asdict(r) for r in runs],
                "summary": summarize(runs),
            }
            write_report(results, out)  # after every env: a partial report survives a kill
        return results
    finally:
        torch.set_num_threads(threads)


def _eval_kwargs_for(env_cfg: EnvConfig) -> dict:
    kind = "clock" if "Clock" in env_cfg.id else "guidance"
    return _eval_kwargs(kind, _train_kwargs(env_cfg))


def _run_guarded(algo, env_cfg, seed, cfg, eval_env, out: Path, log) -> RunResult:
    """:func:`run_one`, with a failure recorded (status ``"failed"``) instead of raised."""
    tb = out / "tb" if cfg.tensorboard else None
    t0 = time.perf_counter()
    try:
        res = run_one(algo, env_cfg, seed, cfg, eval_env, tb)
    except Exception as e:  # noqa: BLE001  (a broken pair must not stop the benchmark)
        res = RunResult(algo, env_cfg.label, seed, "failed", reason=f"{type(e).__name__}: {e}")
    msg = f"[{time.perf_counter() - t0:6.1f}s] {env_cfg.label:28s} {algo:13s} "
    if res.status == "ok":
        msg += f"seed {seed}: metric {res.metric:.4g}  return {res.eval_return:.4g}"
        msg += f"  {res.steps_per_s:.0f} steps/s"
    else:
        msg += f"{res.status}: {res.reason}"
    log(msg)
    return res


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize(runs: Sequence[RunResult]) -> list[dict]:
    """Per (env, algorithm): mean and std over seeds (sample std, ddof=1) of the final
    metric, eval return, training return, wall time and env steps/s; skipped and failed
    pairs carry their status and reason."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.env, r.algo), []).append(r)
    rows = []
    for (env, algo), rs in groups.items():
        ok = [r for r in rs if r.status == "ok"]
        row: dict[str, Any] = {"env": env, "algo": algo, "seeds": [r.seed for r in ok]}
        bad = [r for r in rs if r.status != "ok"]
        row["status"] = bad[0].status if bad else "ok"
        row["reason"] = "; ".join(sorted({r.reason for r in bad}))
        for key in ("metric", "eval_return", "train_return", "wall_s", "steps_per_s"):
            mean, std = _mean_std([getattr(r, key) for r in ok]) if ok else (math.nan, math.nan)
            row[key] = {"mean": mean, "std": std}
        rows.append(row)
    return rows


def machine_info() -> dict:
    """CPU model and count, torch/SB3 versions, CUDA availability (for the report)."""
    import gymnasium
    import sb3_contrib
    import stable_baselines3

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": _cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_contrib": sb3_contrib.__version__,
        "gymnasium": gymnasium.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    return repr(obj)


# ---------------------------------------------------------------------------------------------
# Report

_METRIC_NAME = {"guidance": "energy distance ↓", "clock": "RMSE to ref ↓"}


def _kind_of_label(results: dict, env: str) -> str:
    for e in results["config"]["envs"]:
        if e["label"] == env:
            return "clock" if "Clock" in e["id"] else "guidance"
    return "guidance"


def _pm(stat: dict, digits: int = 4) -> str:
    if not math.isfinite(stat["mean"]):
        return "–"
    return f"{stat['mean']:.{digits}g} ± {stat['std']:.2g}"


def markdown_tables(results: dict) -> str:
    """One markdown table per env: every algorithm (mean ± std over seeds), skipped pairs
    with their reason, then the constant-action baselines on the same evaluation batch."""
    lines = []
    envs = list(dict.fromkeys(r["env"] for r in results["summary"]))
    for env in envs:
        kind = _kind_of_label(results, env)
        lines += [
            f"### {env}",
            "",
            f"| algorithm | {_METRIC_NAME[kind]} | eval return | train return | wall s "
            "| env steps/s | seeds | status |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in (r for r in results["summary"] if r["env"] == env):
            status = row["status"] if row["status"] == "ok" else f"{row['status']}: {row['reason']}"
            lines.append(
                f"| {ALGORITHMS[row['algo']].cls} | {_pm(row['metric'])} "
                f"| {_pm(row['eval_return'])} | {_pm(row['train_return'])} "
                f"| {_pm(row['wall_s'], 3)} | {_pm(row['steps_per_s'], 3)} "
                f"| {len(row['seeds'])} | {status} |"
            )
        base = results["baselines"].get(env, {})
        if base:
            lines += _baseline_lines(base)
        lines.append("")
    return "\n".join(lines)


_DEFAULT_BASELINES = ("const w=1 γ=0", "base schedule (a=0)")  # the env's default action


def _baseline_lines(base: dict) -> list[str]:
    """Reference rows: the default action (w=1 γ=0 / base schedule) and the best constant."""
    named = dict(base)
    best = min(named, key=lambda k: named[k]["metric"])
    keep = [k for k in named if k in _DEFAULT_BASELINES]
    keep += [best] if best not in keep else []
    return [
        f"| *{k}*{' (best constant)' if k == best and len(named) > 1 else ''} "
        f"| {named[k]['metric']:.4g} | {named[k]['return']:.4g} | | | | | reference |"
        for k in keep
    ]


def plot_curves(results: dict, out_dir: Path) -> list[Path]:
    """``curves_<env>.png`` per env: eval metric and training return against env steps,
    mean over seeds with a ±1 std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    envs = list(dict.fromkeys(r["env"] for r in results["runs"]))
    for env in envs:
        runs = [r for r in results["runs"] if r["env"] == env and r["status"] == "ok"]
        if not runs:
            continue
        kind = _kind_of_label(results, env)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for algo in dict.fromkeys(r["algo"] for r in runs):
            curves = [r["curve"] for r in runs if r["algo"] == algo]
            for ax, key in zip(axes, ("metric", "train_return"), strict=True):
                _band(ax, curves, key, ALGORITHMS[algo].cls)
        for name, res in results["baselines"].get(env, {}).items():
            if name in _DEFAULT_BASELINES:
                axes[0].axhline(res["metric"], color="k", ls="--", lw=1, label=name)
        axes[0].set(xlabel="env steps", ylabel=_METRIC_NAME[kind], title=f"{env}: eval metric")
        axes[1].set(xlabel="env steps", ylabel="episode return", title=f"{env}: training return")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"curves_{env.replace('/', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _band(ax, curves: list[list[dict]], key: str, label: str) -> None:
    n = min(len(c) for c in curves)
    if n == 0:
        return
    x = np.array([p["steps"] for p in curves[0][:n]], dtype=float)
    y = np.array([[p[key] for p in c[:n]] for c in curves], dtype=float)
    with warnings.catch_warnings():  # all-NaN columns: no episode finished yet
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(y, 0), np.nanstd(y, 0)
    (line,) = ax.plot(x, mean, label=label, marker=".")
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def write_report(results: dict, out_dir: str | Path) -> None:
    """``benchmark.json``, ``benchmark.md`` and ``curves_<env>.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(_jsonable(results), indent=1))
    m = results["machine"]
    head = [
        "# diffusion-gym benchmark",
        "",
        f"Machine: {m['cpu']} ({m['cpu_count']} cores), torch {m['torch']}, "
        f"SB3 {m['stable_baselines3']}, sb3-contrib {m['sb3_contrib']}, "
        f"CUDA: {m['cuda'] or 'none'}.",
        f"Budget: {results['config']['steps']} env steps per run, seeds "
        f"{results['config']['seeds']}; metric mean ± std over seeds on a fixed batch of "
        f"{results['config']['eval']['num_samples']} episodes (deterministic policy).",
        "",
    ]
    (out / "benchmark.md").write_text("\n".join(head) + markdown_tables(results) + "\n")
    plot_curves(results, out)


# ---------------------------------------------------------------------------------------------
# Command line


def merge_results(dirs: Sequence[str | Path]) -> dict:
    """One result from the ``benchmark.json`` of several runs of the same benchmark (split by
    ``--envs``, ``--algos`` or ``--seeds`` to use several processes): runs concatenated,
    env and algorithm lists united, summary recomputed."""
    parts = []
    for d in dirs:
        path = Path(d) / "benchmark.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        parts.append(json.loads(path.read_text()))
    first = parts[0]
    config = dict(first["config"])
    envs = {e["label"]: e for p in parts for e in p["config"]["envs"]}
    config["envs"] = list(envs.values())
    config["algos"] = list(dict.fromkeys(a for p in parts for a in p["config"]["algos"]))
    config["seeds"] = sorted({s for p in parts for s in p["config"]["seeds"]})
    runs = [r for p in parts for r in p["runs"]]
    fields = {f.name for f in dataclasses.fields(RunResult)}
    return {
        "config": config,
        "machine": first["machine"],
        "baselines": {k: v for p in parts for k, v in p["baselines"].items()},
        "runs": runs,
        "summary": summarize([RunResult(**{k: r[k] for k in fields}) for r in runs]),
    }


def _throughput_module():
    """``benchmarks/throughput.py`` of the source tree (it is a script, not a package)."""
    path = REPO_ROOT / "benchmarks" / "throughput.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --throughput needs the source checkout")
    spec = importlib.util.spec_from_file_location("diffusion_gym_throughput", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_throughput(argv: list[str]) -> int:
    """``--throughput [--out DIR] [ARGS]``: ``benchmarks/throughput.py``'s ``main(ARGS)``
    (its ``--device``, ``--batch-sizes``, ``--ids``, ...); with ``--out``, its rows are
    also written to ``DIR/throughput.json`` and ``DIR/throughput.md``."""
    out = None
    if "--out" in argv:
        i = argv.index("--out")
        if i + 1 >= len(argv):
            raise ValueError("--out needs a directory")
        out = Path(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    rows = _throughput_module().main(argv)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "throughput.json").write_text(json.dumps(_jsonable(rows), indent=1))
        (out / "throughput.md").write_text(throughput_markdown(rows))
    return 0


def throughput_markdown(rows: Sequence[dict]) -> str:
    """Markdown table of ``benchmarks/throughput.py`` rows."""
    lines = [
        "| env id | batch | env steps/s | vector steps/s | env ms | raw ms | overhead | in-run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['id']} | {r['batch']} | {r['env_steps_per_s']:.0f} "
            f"| {r['vector_steps_per_s']:.1f} | {r['env_ms']:.3f} | {r['raw_ms']:.3f} "
            f"| {100 * r['overhead']:.1f}% | {100 * r['overhead_in_run']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diffusion-gym benchmark",
        description="RL algorithms x env ids x seeds (tables, curves, TensorBoard), "
        "or env throughput (--throughput).",
    )
    p.add_argument("config", nargs="?", help="benchmark YAML (baselines/configs/benchmark.yaml)")
    p.add_argument("--out", default="runs/benchmark", help="output directory")
    p.add_argument("--seeds", type=int, nargs="+", help="override the config's seeds")
    p.add_argument("--steps", type=int, help="override the env steps per run")
    p.add_argument("--algos", nargs="+", help="only these algorithms")
    p.add_argument("--envs", nargs="+", help="only these env labels")
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="DIR",
        help="merge the benchmark.json of several runs (e.g. split by --envs) into --out",
    )
    p.add_argument(
        "--throughput",
        action="store_true",
        help="measure env throughput instead (benchmarks/throughput.py; extra args go to it)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """``diffusion-gym benchmark CONFIG [--out DIR] [--seeds ...] [--steps N]`` or
    ``diffusion-gym benchmark --throughput [ARGS]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--throughput" in argv:
        argv.remove("--throughput")
        return run_throughput(argv)
    args = _parser().parse_args(argv)
    if args.merge:
        results = merge_results(args.merge)
        write_report(results, args.out)
        print(markdown_tables(results))
        return 0
    if args.config is None:
        _parser().error("CONFIG is required (or --throughput, --merge)")
    cfg = load_config(args.config)
    if args.seeds is not None:
        cfg.seeds = list(args.seeds)
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        cfg.steps = args.steps
    if args.algos:
        cfg.algos = [algo_spec(a).name for a in args.algos]
    if args.envs:
        labels = [e.label for e in cfg.envs]
        unknown = sorted(set(args.envs) - set(labels))
        if unknown:
            raise ValueError(f"unknown env label(s) {unknown}; valid: {', '.join(labels)}")
        cfg.envs = [e for e in cfg.envs if e.label in args.envs]
    results = run_benchmark(cfg, args.out)
    print(markdown_tables(results))
    print(f"wrote {Path(args.out) / 'benchmark.md'}, benchmark.json, curves_*.png, tb/")
    return 1 if any(r["status"] == "failed" for r in results["runs"]) else 0


# ---------------------------------------------------------------------------------------------
# IRL reward (agents.irl)

# Algorithms whose rollouts agents.irl.RelabelCallback can relabel: it rewrites an on-policy
# ``rollout_buffer`` at the end of each rollout and recomputes GAE.
_IRL_ALGOS = ("ppo", "a2c", "maskable_ppo", "trpo", "ppo_lstm")


def _irl_fit_reason(spec: AlgoSpec) -> str | None:
    if spec.name in _IRL_ALGOS:
        return None
    if not spec.on_policy:
        return (
            "agents.irl relabels an on-policy rollout buffer (RelabelCallback); "
            "replay-buffer relabelling is not provided"
        )
    return f"{spec.cls} has no rollout buffer for agents.irl to relabel (episode returns only)"


def _irl_trainer(spec, policy, kwargs, env_cfg, eval_env, n, cfg, tb_dir):
    """An :class:`agents.irl.IRLTrainer` on the env of ``eval_env`` whose generator is
    replaced by ``spec``'s model (the trainer's discriminator, relabelling and rounds)."""
    from stable_baselines3.common.vec_env import VecMonitor

    from agents import irl

    u = eval_env.unwrapped
    env = irl.EnvConfig(
        preset=u.preset.name,
        num_envs=n,
        num_steps=u.num_steps,
        solver=u.solver,
        schedule=_irl_schedule(env_cfg),
        guidance_weights=[float(w) for w in u.guidance_weights],
        gammas=[float(g) for g in u.gammas],
        obs_mode=u.obs_mode,
        class_labels=env_cfg.kwargs.get("class_labels"),
        device=cfg.env_device,
    )
    options = dict(env_cfg.irl or {})
    _from_mapping(irl.IRLDiscriminatorConfig, options, f"envs[{env_cfg.label}].irl")
    disc = irl.IRLDiscriminatorConfig(**options)
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


def _irl_learn(trainer, steps: int, curve) -> None:
    """IRL rounds (rollout, relabel, policy update, discriminator update) until ``steps``
    env steps; the train return is the IRL return per episode."""
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
