"""The benchmark config: YAML (``baselines/configs/benchmark*.yaml``) → :class:`BenchmarkConfig`.

Read by the project's one config loader, :func:`diffusion_gym.config.load` (dotted
``key=value`` overrides; an unknown key is a ``ValueError`` listing the valid ones, a value of
the wrong type a ``TypeError``); an unknown algorithm, override key or env id is a
``ValueError`` that lists the valid ones. Every value is checked here, before any run starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym

import diffusion_gym  # noqa: F401  (registers the env ids)
from agents import irl
from diffusion_gym.config import load

from .algos import ALGORITHMS, ALIASES, algo_spec, check_hyperparam_keys

__all__ = ["BenchmarkConfig", "EnvConfig", "EvalConfig", "config_from_dict", "load_config"]


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

    :param algos: algorithm names (see :data:`~agents.benchmark.algos.ALGORITHMS`).
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


def config_from_dict(
    data: dict, base_dir: Path | None = None, overrides: Sequence[str] | None = None
) -> BenchmarkConfig:
    """Typed :class:`BenchmarkConfig` from a plain mapping (a parsed YAML file) and dotted
    ``key=value`` ``overrides``, read by :func:`diffusion_gym.config.load` (unknown keys
    listed with the valid ones, types checked) and validated: algorithm names and their
    override keys, env ids and labels, each env's IRL options, seeds and budgets."""
    return _validated(load(BenchmarkConfig, data, overrides, where="benchmark config"), base_dir)


def load_config(path: str | Path, overrides: Sequence[str] | None = None) -> BenchmarkConfig:
    """Read a benchmark YAML file (with dotted ``key=value`` ``overrides``) into a validated
    :class:`BenchmarkConfig`; ``hyperparams`` is relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark config {str(path)!r} does not exist")
    return _validated(load(BenchmarkConfig, path, overrides), path.parent)


def _validated(cfg: BenchmarkConfig, base_dir: Path | None) -> BenchmarkConfig:
    """The checks beyond types, on a freshly loaded config (labels filled in, algorithm
    names resolved to their RL-Zoo names, ``hyperparams`` made absolute)."""
    cfg.algos = [algo_spec(a).name for a in cfg.algos]
    unknown = sorted(set(cfg.overrides) - set(ALGORITHMS) - set(ALIASES))
    if unknown:
        raise ValueError(f"overrides for unknown algorithm(s) {unknown}; valid: {list(ALGORITHMS)}")
    cfg.overrides = {algo_spec(a).name: dict(v) for a, v in cfg.overrides.items()}
    for name, hp in cfg.overrides.items():
        check_hyperparam_keys(ALGORITHMS[name], hp, f"overrides.{name}")
    if not cfg.envs or not cfg.algos:
        raise ValueError("a benchmark config needs at least one entry in 'algos' and in 'envs'")
    if not cfg.seeds or not all(s >= 0 for s in cfg.seeds):
        raise ValueError(f"seeds must be a non-empty list of ints >= 0, got {cfg.seeds!r}")
    for name, value in (("steps", cfg.steps), ("num_envs", cfg.num_envs)):
        if value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    _check_env_ids(cfg.envs)
    labels = [_label(e) for e in cfg.envs]
    for e, lab in zip(cfg.envs, labels, strict=True):
        e.label = lab
    if len(set(labels)) != len(labels):
        raise ValueError(f"env labels must be unique, got {labels}; set 'label' per env")
    for i, e in enumerate(cfg.envs):
        if e.irl is not None:
            irl_discriminator(e, where=f"envs[{i}].irl")
    if cfg.hyperparams is not None and base_dir is not None:
        cfg.hyperparams = str((base_dir / cfg.hyperparams).resolve())
    return cfg


def irl_discriminator(env_cfg: EnvConfig, where: str = "") -> irl.IRLDiscriminatorConfig:
    """The :class:`agents.irl.IRLDiscriminatorConfig` of ``env_cfg.irl`` (checked by
    :func:`diffusion_gym.config.load`)."""
    where = where or f"envs[{env_cfg.label}].irl"
    return load(irl.IRLDiscriminatorConfig, dict(env_cfg.irl or {}), where=where)


def registered_ids() -> list[str]:
    """The env ids of the ``diffusion_gym/`` namespace."""
    return sorted(k for k in gym.registry if k.startswith("diffusion_gym/"))


def _check_env_ids(envs: Sequence[EnvConfig]) -> None:
    valid = registered_ids()
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


def train_kwargs(env_cfg: EnvConfig) -> dict:
    """Env kwargs of the training envs: the config's, with ``reward="none"`` for the IRL
    reward (the discriminator supplies it)."""
    kwargs = dict(env_cfg.kwargs)
    if env_cfg.irl is not None:
        kwargs.setdefault("reward", "none")
    return kwargs
