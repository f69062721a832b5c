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
it writes the resolved ``config.yaml`` into ``out_dir`` (atomically) and calls ``run``.

A reused ``--out``: ``--resume`` continues the run stored there only when its
``config.yaml`` equals the requested config (config file + overrides; only the keys in
:data:`RESUME_FREE_KEYS` may differ, e.g. more ``rounds``), otherwise it is an error naming
the differing keys; without ``--resume`` an existing run is an error; ``--overwrite`` deletes
it and starts afresh. ``--resume`` on an empty ``--out`` starts afresh. SIGINT saves a
checkpoint and exits with 130 (:mod:`agents.checkpoint`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from types import ModuleType

from agents import art, irl
from agents.checkpoint import Interrupted, sigint_saves
from diffusion_gym.config import apply_overrides, load, read_yaml, to_dict
from diffusion_gym.io import atomic_write_yaml, check_writable_dir

__all__ = [
    "AGENTS",
    "RESUME_FREE_KEYS",
    "load_config",
    "config_to_dict",
    "config_diff",
    "apply_overrides",
    "main",
]

#: ``agent:`` value → trainer module (protocol in the module docstring).
AGENTS: dict[str, ModuleType] = {"irl": irl, "art": art}

#: A config as plain YAML-able data (tuples become lists): :func:`diffusion_gym.config.to_dict`.
config_to_dict = to_dict


def _read_yaml(path: Path) -> object:
    """YAML data of a config file; errors name the file (``ValueError``)."""
    return read_yaml(path)


def load_config(
    path_or_data: str | Path | dict, overrides: list[str] | None = None
) -> tuple[ModuleType, object]:
    """Read a YAML config (path or dict), apply overrides, return ``(module, Config)``."""
    if isinstance(path_or_data, dict):
        data = path_or_data
    else:
        data = _read_yaml(Path(path_or_data))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("the config must be a YAML mapping")
    data = apply_overrides(data, overrides or [])
    agent = data.get("agent")
    if agent not in AGENTS:
        raise ValueError(f"config key 'agent' must be one of {sorted(AGENTS)}, got {agent!r}")
    module = AGENTS[agent]
    return module, load(module.Config, data)


#: Keys a resumed run may change: display, threads and checkpoint spacing (they do not change
#: what is computed) and the training length (``rounds``, ``total_timesteps``,
#: ``actor_critic.iterations``: train on from the checkpoint; for IRL this equals a run that
#: long from the start, for ART not exactly, since its learning-rate and exploration
#: schedules are laid out over the total).
RESUME_FREE_KEYS = (
    "progress",
    "num_threads",
    "checkpoint_every",
    "rounds",
    "total_timesteps",
    "actor_critic.iterations",
)


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts (``key: a -> b``)."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


def _stored_run(out: Path) -> dict | None:
    """The plain config of the run stored in ``out`` (None if there is none)."""
    saved = out / "config.yaml"
    if not saved.exists():
        return None
    data = _read_yaml(saved)
    if not isinstance(data, dict) or data.get("agent") not in AGENTS:
        raise ValueError(
            f"{str(saved)!r} is not a diffusion-gym run config; use another --out or remove it"
        )
    return data


def _prepare_out(out: Path, requested: dict, resume: bool, overwrite: bool) -> bool:
    """Check ``--out`` against the run stored there; returns whether to resume.

    Resume only a run whose stored config equals the requested one (up to
    :data:`RESUME_FREE_KEYS`); an existing run without ``--resume`` or ``--overwrite`` is an
    error; ``--overwrite`` deletes it and starts afresh."""
    check_writable_dir(out)
    if overwrite:
        if not (out / "config.yaml").exists() and any(out.iterdir()):
            raise ValueError(
                f"--overwrite: {str(out)!r} is not empty and holds no diffusion-gym run "
                "(config.yaml); refusing to delete it"
            )
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        return False
    stored = _stored_run(out)
    if stored is None:
        return False  # nothing to resume: start afresh (also with --resume)
    if not resume:
        raise ValueError(
            f"--out {str(out)!r} already holds a run; pass --resume to continue it or "
            "--overwrite to start afresh"
        )
    diff = [d for d in config_diff(stored, requested) if d.split(":")[0] not in RESUME_FREE_KEYS]
    if diff:
        raise ValueError(
            f"--resume: the run in {str(out)!r} has a different config ({'; '.join(diff)}); "
            "resume it with the same config, or use --overwrite or another --out"
        )
    return True


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diffusion-gym train",
        description="Train an agent from a YAML config (agents/configs/*.yaml).",
    )
    p.add_argument("config", help="YAML config file (its 'agent:' key picks the trainer)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest complete checkpoint (its stored "
        "config must equal the requested one)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="delete the run in --out and start afresh"
    )
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. seed=1")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``diffusion-gym train``; returns the exit status (0; 2 for a bad
    config or ``--out``; 130 after SIGINT, with a checkpoint saved)."""
    args = _parser().parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    if args.resume and args.overwrite:
        print("diffusion-gym train: error: --resume and --overwrite exclude each other",
              file=sys.stderr)  # fmt: skip
        return 2
    out = Path(args.out)
    try:
        module, config = load_config(args.config, args.overrides)
        plain = config_to_dict(config)
        resume = _prepare_out(out, plain, args.resume, args.overwrite)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"diffusion-gym train: error: {e}", file=sys.stderr)
        return 2
    atomic_write_yaml(out / "config.yaml", plain)
    print(f"diffusion-gym train: {config.agent} run, writing into {out}/", flush=True)
    try:
        with sigint_saves():
            module.run(config, out, resume)
    except Interrupted as e:
        print(f"diffusion-gym train: interrupted: {e}; continue with --resume", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(
            "diffusion-gym train: interrupted; the newest complete checkpoint in "
            f"{str(out / 'checkpoints')!r} is kept (continue with --resume)",
            file=sys.stderr,
        )
        return 130
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
