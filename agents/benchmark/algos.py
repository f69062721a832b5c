"""The algorithms of the benchmark and their hyperparameters.

:data:`ALGORITHMS` lists every stable-baselines3 / sb3-contrib algorithm the benchmark runs,
with the action spaces it supports; :func:`fit_reason` says why one cannot run on an env.
Hyperparameters come from RL-Zoo files (``agents/configs/zoo/<algo>.yml``, keyed by env id,
the same files ``python -m rl_zoo3.train -conf ...`` reads): :func:`load_hyperparams` reads
an entry, :func:`algo_kwargs` turns it into constructor arguments.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import sb3_contrib
import stable_baselines3
import torch
import yaml
from gymnasium import spaces
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule

import diffusion_gym  # noqa: F401  (registers the env ids the zoo files are keyed by)

__all__ = [
    "ALGORITHMS",
    "IRL_ALGOS",
    "ZOO_DIR",
    "AlgoSpec",
    "algo_kwargs",
    "algo_spec",
    "check_hyperparam_keys",
    "fit_reason",
    "load_hyperparams",
    "parse_policy_kwargs",
    "reward_normalization",
]

ZOO_DIR = Path(__file__).resolve().parents[1] / "configs" / "zoo"


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
        return getattr(_MODULES[self.module], self.cls)


_MODULES = {"stable_baselines3": stable_baselines3, "sb3_contrib": sb3_contrib}
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
ALIASES = {spec.cls.lower(): name for name, spec in ALGORITHMS.items()} | {
    "recurrent_ppo": "ppo_lstm",
    "recurrentppo": "ppo_lstm",
    "qr_dqn": "qrdqn",
    "maskableppo": "maskable_ppo",
}
# Algorithms whose rollouts agents.irl.RelabelCallback can relabel: it rewrites an on-policy
# ``rollout_buffer`` at the end of each rollout and recomputes GAE.
IRL_ALGOS = ("ppo", "a2c", "maskable_ppo", "trpo", "ppo_lstm")
# The gymnasium space classes an AlgoSpec names in ``action_spaces``.
_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def algo_spec(name: str) -> AlgoSpec:
    """The :class:`AlgoSpec` of ``name`` (RL-Zoo name, or class name in any case)."""
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; valid algorithms: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[key]


def _space_name(action_space: Any) -> str:
    """The name of the ``gymnasium.spaces`` class of ``action_space`` (as in ``action_spaces``)."""
    for cls in _SPACES:
        if isinstance(action_space, cls):
            return cls.__name__
    return repr(action_space)


def fit_reason(spec: AlgoSpec, action_space: Any, *, irl: bool = False, env: Any = None):
    """Why ``spec`` cannot run on an env with ``action_space`` (and reward source), or None.

    :param irl: the env is trained with the IRL discriminator reward.
    :param env: the native vector env (checked for ``action_masks`` for MaskablePPO).
    """
    kind = _space_name(action_space)
    if kind not in spec.action_spaces:
        return f"{spec.cls} supports {'/'.join(spec.action_spaces)} actions, env has {kind}"
    if spec.name == "maskable_ppo" and env is not None and not hasattr(env, "action_masks"):
        return "MaskablePPO needs env.action_masks(), which this env does not expose"
    if irl:
        return irl_fit_reason(spec)
    return None


def irl_fit_reason(spec: AlgoSpec) -> str | None:
    """Why ``spec`` cannot be the generator of :mod:`agents.irl`'s reward, or None."""
    if spec.name in IRL_ALGOS:
        return None
    if not spec.on_policy:
        return (
            "agents.irl relabels an on-policy rollout buffer (RelabelCallback); "
            "replay-buffer relabelling is not provided"
        )
    return f"{spec.cls} has no rollout buffer for agents.irl to relabel (episode returns only)"


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


def check_hyperparam_keys(spec: AlgoSpec, hp: dict, where: str = "") -> None:
    """``ValueError`` for a key of the zoo entry ``hp`` that is neither an RL-Zoo key nor an
    argument of ``spec``'s constructor (listing the valid ones), or an unsupported zoo key."""
    bad = sorted(_ZOO_UNSUPPORTED & set(hp))
    if bad:
        raise ValueError(f"zoo keys {bad} are not supported by diffusion-gym benchmark")
    valid = set(inspect.signature(spec.load().__init__).parameters) - {"self", "env", "policy"}
    unknown = sorted(set(hp) - _ZOO_ONLY - valid)
    if unknown:
        at = f" in {where}" if where else ""
        raise ValueError(
            f"unknown {spec.cls} hyperparameter(s) {unknown}{at}; valid: {sorted(valid)}"
        )


def algo_kwargs(spec: AlgoSpec, hp: dict, action_dim: int | None = None) -> tuple[str, dict]:
    """(policy, constructor kwargs) of ``spec`` from a zoo entry ``hp``; unknown keys are a
    ``ValueError`` listing the algorithm's arguments."""
    check_hyperparam_keys(spec, hp)
    kwargs = {k: v for k, v in hp.items() if k not in _ZOO_ONLY}
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
    if dim is None:
        raise ValueError("noise_type needs a Box action space")
    classes = {"normal": NormalActionNoise, "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise}
    if kind not in classes:
        raise ValueError(f"noise_type must be one of {list(classes)}, got {kind!r}")
    return classes[kind](np.zeros(dim), std * np.ones(dim))
