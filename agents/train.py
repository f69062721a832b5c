"""``diffusion-gym train CONFIG.yaml --out DIR [--resume] [key=value ...]`` (also
``python -m agents.train``).

The YAML file's ``agent:`` key picks the trainer module from :data:`AGENTS`. Every trainer
module follows one small protocol, so a new agent plugs in with two names:

``Config``
    a ``@dataclass`` whose fields (nested dataclasses allowed) are the YAML's keys, with
    defaults; it must have an ``agent: str`` field.
``run(config: Config, out_dir: pathlib.Path, resume: bool) -> dict``
    trains, writes checkpoints, TensorBoard logs and ``eval.json``/``eval.md``/PNGs into
    ``out_dir``, continues from the last checkpoint in ``out_dir`` when ``resume`` is true,
    and returns the evaluation results (``{strategy: {metric: {"mean", "std"}}}``).

This module loads the YAML into ``Config`` (:func:`load_config`: unknown keys are a
``ValueError`` listing the valid ones, values are type-checked), applies dotted ``key=value``
overrides (values parsed as YAML: ``discriminator.lr=3e-4``, ``env.gammas=[0,0.2]``), writes
the resolved ``config.yaml`` into ``out_dir`` and calls ``run``. On ``--resume`` the
``config.yaml`` already in ``out_dir`` is the base, so a resumed run keeps its settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml

__all__ = ["AGENTS", "load_config", "config_to_dict", "apply_overrides", "main"]

#: ``agent:`` value → trainer module (protocol in the module docstring).
AGENTS: dict[str, str] = {"irl": "agents.irl", "art": "agents.art"}


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (dataclass, list/tuple, union, scalar)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"{where} must be a mapping, got {type(value).__name__}")
        return _build(tp, value, where + ".")
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arm, where)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise TypeError(f"{where}={value!r} matches none of {tp}: {'; '.join(errors)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(tp)
        elem = args[0] if args else Any
        items = [_coerce(v, elem, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            return float(value)
        except ValueError:
            raise TypeError(f"{where} must be float, got {value!r}") from None
    if tp in (int, float, str, bool) and not (
        isinstance(value, tp) and not (tp is not bool and isinstance(value, bool))
    ):
        raise TypeError(f"{where} must be {tp.__name__}, got {value!r}")
    return value


def _build(cls, data: dict, prefix: str = ""):
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {[prefix + k for k in unknown]}; "
            f"valid keys{' under ' + prefix.rstrip('.') if prefix else ''}: {sorted(types_)}"
        )
    kwargs = {k: _coerce(v, types_[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def config_to_dict(config) -> dict:
    """A dataclass config as plain YAML-able data (tuples become lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(a) for a in v]
        if isinstance(v, dict):
            return {k: plain(a) for k, a in v.items()}
        return v

    return plain(config)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set dotted ``key=value`` pairs (values parsed as YAML) in a nested dict (a copy)."""
    data = yaml.safe_load(yaml.safe_dump(data))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. seed=3)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {key!r}: {p!r} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_config(path_or_data: str | Path | dict, overrides: list[str] | None = None):
    """Read a YAML config (path or dict), apply overrides, return ``(module, Config)``."""
    if isinstance(path_or_data, dict):
        data = path_or_data
    else:
        path = Path(path_or_data)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError("the config must be a YAML mapping")
    data = apply_overrides(data, overrides or [])
    agent = data.get("agent")
    if agent not in AGENTS:
        raise ValueError(f"config key 'agent' must be one of {sorted(AGENTS)}, got {agent!r}")
    module = importlib.import_module(AGENTS[agent])
    return module, _build(module.Config, data)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diffusion-gym train",
        description="Train an agent from a YAML config (agents/configs/*.yaml).",
    )
    p.add_argument("config", help="YAML config file (its 'agent:' key picks the trainer)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. seed=1")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``diffusion-gym train``; returns the exit status."""
    args = _parser().parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    saved = out / "config.yaml"
    base: str | Path | dict = args.config
    if args.resume and saved.is_file():
        base = yaml.safe_load(saved.read_text())
    try:
        module, config = load_config(base, args.overrides)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"diffusion-gym train: error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    module.run(config, out, args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
