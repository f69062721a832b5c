"""The ``diffusion-gym`` command: ``train``, ``evaluate``, ``compare``, ``benchmark``, ``presets``
(console script ``diffusion-gym = "agents.cli:main"``; also ``python -m agents.cli``).

The dispatcher lives in the top layer (``agents``), so it may import every command's module:
the environments (``diffusion_gym``) never import the layers above them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from agents import benchmark, train
from baselines import compare
from diffusion_gym import presets

__all__ = ["COMMANDS", "list_presets", "main"]


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
    "presets": (list_presets, "list the denoiser presets"),
}


def _usage() -> str:
    lines = ["usage: diffusion-gym COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:10s} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``diffusion-gym``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
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
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
