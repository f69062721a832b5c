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

This module reads the YAML, applies dotted ``key=value`` overrides (values parsed as YAML:
``discriminator.lr=3e-4``, ``env.gammas=[0,0.2]``) and maps the result onto ``Config`` with
the project's one config loader, :func:`diffusion_gym.config.load` (unknown keys are a
``ValueError`` listing the valid ones, every value is type-checked before any work starts);
it writes the resolved ``config.yaml`` into ``out_dir`` and calls ``run``. On ``--resume``
the ``config.yaml`` already in ``out_dir`` is the base, so a resumed run keeps its settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType

import yaml

from agents import art, irl
from diffusion_gym.config import apply_overrides, load, to_dict

__all__ = ["AGENTS", "load_config", "config_to_dict", "apply_overrides", "main"]

#: ``agent:`` value → trainer module (protocol in the module docstring).
AGENTS: dict[str, ModuleType] = {"irl": irl, "art": art}

#: A config as plain YAML-able data (tuples become lists): :func:`diffusion_gym.config.to_dict`.
config_to_dict = to_dict


def load_config(
    path_or_data: str | Path | dict, overrides: list[str] | None = None
) -> tuple[ModuleType, object]:
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
    module = AGENTS[agent]
    return module, load(module.Config, data)


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
    print(f"diffusion-gym train: {config.agent} run, writing into {out}/", flush=True)
    module.run(config, out, args.resume)
    print(output_note(out))
    return 0


def output_note(out: Path) -> str:
    """The closing line of a run: where its outputs are and what they are."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
    return (
        f"outputs in {out}/: {', '.join(names)} (eval.md = the table above; "
        f"TensorBoard: tensorboard --logdir {out / 'tb'})"
    )


if __name__ == "__main__":
    sys.exit(main())
