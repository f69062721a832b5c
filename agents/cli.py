"""The ``diffusion-gym`` command: ``train``, ``evaluate``, ``compare``, ``benchmark``, ``sweep``,
``presets``
(console script ``diffusion-gym = "agents.cli:main"``; also ``python -m agents.cli``).

The dispatcher lives in the top layer (``agents``), so it may import every command's module:
the environments (``diffusion_gym``) never import the layers above them.

Errors: every command's error is one line on stderr, ``diffusion-gym COMMAND: error: ...``,
no traceback; the exit status is 2 for usage errors (a bad argument, config, file or output
directory: ``ValueError``, ``TypeError``, ``FileNotFoundError``, ``PermissionError``, YAML
and JSON errors), 1 for anything else, 130 after Ctrl-C. ``--debug`` (anywhere on the line,
or ``DIFFUSION_GYM_DEBUG=1``) lets the exception through with its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

import yaml

from agents import benchmark, sweep, train
from baselines import compare
from diffusion_gym import presets

__all__ = ["COMMANDS", "USAGE_ERRORS", "list_presets", "main"]

#: Exceptions that mean "bad input" (exit status 2).
USAGE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    ImportError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    yaml.YAMLError,
    json.JSONDecodeError,
)


def list_presets(argv: list[str] | None = None) -> int:
    """``diffusion-gym presets``: the preset names and one line about each."""
    for name, desc in presets.describe().items():
        print(f"{name:28s} {desc}")
    return 0


#: command → (function taking argv, one-line description).
COMMANDS: dict[str, tuple[Callable[[list[str]], int | None], str]] = {
    "train": (train.main, "train an agent from a YAML config"),
    "evaluate": (compare.main_evaluate, "evaluate strategies on a preset"),
    "compare": (compare.main_compare, "run a comparison config"),
    "benchmark": (benchmark.main, "RL algorithms x envs x seeds, throughput"),
    "sweep": (sweep.main, "train/compare/benchmark trials on Ray Tune ([ray] extra)"),
    "presets": (list_presets, "list the denoiser presets"),
}


def _usage() -> str:
    lines = ["usage: diffusion-gym COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:10s} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``diffusion-gym``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("DIFFUSION_GYM_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"unknown command {name!r}; valid: {', '.join(COMMANDS)}\n\n{_usage()}", file=sys.stderr
        )
        return 2
    func, _ = COMMANDS[name]
    if debug:
        return int(func(rest) or 0)
    try:
        return int(func(rest) or 0)
    except KeyboardInterrupt:
        print(f"diffusion-gym {name}: interrupted", file=sys.stderr)
        return 130
    except USAGE_ERRORS as e:
        print(f"diffusion-gym {name}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - one line instead of a traceback (--debug shows it)
        print(
            f"diffusion-gym {name}: error: {type(e).__name__}: {_one_line(e)} "
            "(--debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(e: BaseException) -> str:
    """The exception's message on one line."""
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
