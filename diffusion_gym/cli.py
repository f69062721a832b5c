"""The ``diffusion-gym`` command: ``train``, ``evaluate``, ``compare``, ``benchmark``, ``presets``.

Each sub-command lives with the code it runs and is imported only when called, so the
environments never import the agents.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("agents.train", "main", "train an agent from a YAML config"),
    "evaluate": ("baselines.evaluate", "main_evaluate", "evaluate strategies on a preset"),
    "compare": ("baselines.evaluate", "main_compare", "run a comparison config"),
    "benchmark": ("agents.benchmark", "main", "RL algorithms x envs x seeds, throughput"),
    "presets": ("diffusion_gym.cli", "list_presets", "list the denoiser presets"),
}


def list_presets(argv: list[str] | None = None) -> int:
    from diffusion_gym import presets

    for name, desc in presets.describe().items():
        print(f"{name:28s} {desc}")
    return 0


def _usage() -> str:
    lines = ["usage: diffusion-gym COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:10s} {desc}" for name, (_, _, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
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
    module, func, _ = COMMANDS[name]
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
