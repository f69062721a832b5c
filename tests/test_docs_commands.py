"""Every command in README.md and docs/*.md works as documented (issue #18 item 1).

Each ``diffusion-gym ...`` / ``python -m ...`` / ``python benchmarks/...`` command of the
docs (fenced shell blocks and inline code) must match one rule of :data:`RULES`, which says
what this test does with it:

- ``run``: runs it as a subprocess, as documented, with tiny overrides appended (the
  README's own commands: presets, the Quickstart, the ART command with its default
  ``progress: true``, which needs ``rich`` and ``tqdm``);
- ``load``: a run of minutes to hours (the documented figures): its config file and every
  ``key=value`` override are loaded and checked, nothing is trained;
- ``module`` / ``script``: long, or a tool: the module is importable / the script exists;
- ``covered``: run by another test (named);
- ``name``: the bare command name in prose (checked to be a command), ``setup``: the
  install and test commands themselves (CI's ``.ci/run`` runs them in a fresh venv).

A command no rule matches fails the test: a new command in the docs gets a rule here. The
runs share one interpreter: 70 s measured on the 2 shared cores at load average 13 (13 s of
it importing torch and SB3; the cost on an idle machine is a fraction of that). Also:
every third-party import at module level of the three packages, and what a documented
command needs at runtime (``rich``, ``tqdm`` for the progress bars), is a core dependency
of ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from agents.benchmark.config import load_config as load_benchmark
from agents.cli import COMMANDS
from agents.train import load_config as load_train
from baselines.compare import load_config as load_compare

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STARTS = ("diffusion-gym", "python -m ", "python3 -m ", "python benchmarks/", "python examples/")

TINY_IRL = ("rounds=2 checkpoint_every=2 env.num_envs=16 algo.batch_size=64 algo.n_epochs=1 "
            "eval.num_samples=64 eval.seeds=[0] eval.every=1 eval.train_samples=32")  # fmt: skip
TINY_ART = ("total_timesteps=64 num_envs=8 bank_size=16 reference_steps=8 distill_samples=8 "
            "algo_kwargs.n_steps=4 algo_kwargs.batch_size=16 algo_kwargs.n_epochs=1 "
            "eval.num_samples=32 "
            "eval.seeds=[0] eval.oracle=false eval.rho_grid=[7.0] eval.train_samples=8 "
            "eval.reference_steps=8 eval.budgets=[] eval.transfer_presets=[]")  # fmt: skip
TINY_COMPARE = ("--seeds 0 --num-samples 32 nfe=[5] presets=[gmm-ring8] reference_steps=16 "
                "strategies=[edm-rho7,uniform] --no-progress")  # fmt: skip
LONG = "a training run of minutes to hours behind a documented figure"

#: (pattern, kind, detail): the first rule whose pattern matches the whole command applies.
RULES: list[tuple[str, str, str]] = [
    (r"python3? -m venv .*", "setup", "creates the venv (.ci/run does, fresh)"),
    (r"python3? -m pytest.*", "setup", "the test suite itself"),
    (r"python3 -m pip download .*", "setup", "fetches wheels for the offline GPU machine"),
    (r"diffusion-gym evaluate .*--schedule .*", "covered",
     "tests/test_evaluate.py runs diffusion-gym evaluate with --schedule"),
    (r"diffusion-gym presets", "run", ""),
    (r"diffusion-gym train agents/configs/irl-ring8\.yaml --out runs/quickstart", "run",
     TINY_IRL),
    (r"diffusion-gym train agents/configs/art-ring8\.yaml --out runs/art", "run", TINY_ART),
    (r"diffusion-gym compare baselines/configs/compare-ring8\.yaml --out runs/compare\S*",
     "run", TINY_COMPARE),
    (r"diffusion-gym benchmark baselines/configs/benchmark-tiny\.yaml.*", "covered",
     "tests/test_benchmark.py runs benchmark-tiny.yaml"),
    (r"diffusion-gym benchmark --throughput.*", "covered",
     "tests/test_benchmark.py::test_throughput_delegates_to_throughput_module"),
    (r"diffusion-gym benchmark --merge.*", "covered", "tests/test_benchmark.py (merge)"),
    (r"diffusion-gym sweep .*", "covered",
     "tests/test_sweep.py runs a 2-trial sweep on a local Ray (skips without the [ray] extra)"),
    (r"diffusion-gym \w+ my-\S+\.yaml.*", "covered",
     "a user's own config (docs/own_model.md): tests/test_own_model.py runs one"),
    (r"diffusion-gym \w+ .*(CONFIG|<config>).*", "name", "a usage pattern with placeholders"),
    (r"diffusion-gym train agents/configs/irl-\S+\.yaml .*env\.schedule=runs/\S+.*", "covered",
     "trains on a schedule.json an earlier documented command writes; "
     "tests/test_irl_schedule_init.py trains on a schedule.json"),
    (r"diffusion-gym train \S+\.yaml.*", "load", LONG),
    (r"diffusion-gym compare \S+\.yaml.*", "load", LONG),
    (r"diffusion-gym benchmark \S+\.yaml.*", "load", LONG),
    (r"diffusion-gym( (train|compare|evaluate|benchmark|sweep|presets))?", "name", "prose"),
    (r"diffusion-gym train \| evaluate \| compare \| benchmark", "output", "prose"),
    (r"diffusion-gym (\w+|COMMAND): .*", "output", "a message the CLI prints, quoted"),
    (r"python -m rl_zoo3\.train .*", "covered",
     "tests/test_benchmark.py trains through rl_zoo3.train (RL Zoo, issue #18 item 8)"),
    (r"python -m diffusion_gym\.digits_eval", "name", "the retired name, mentioned as history"),
    (r"python -m cProfile", "name", "a Python tool"),
    (r"python -m (baselines\.digits(_guidance)?|diffusion_gym\.train_denoiser|agents\."
     r"benchmark\.(throughput|references))\b.*", "module", "minutes of sampling or training "
     "(digits figures, Learn to Guide on digits, trained checkpoints) or a throughput "
     "measurement"),
    (r"python -m baselines\.digits_baselines\b.*", "covered",
     "tests/test_digits_baselines.py runs it on a tiny grid (the documented run: minutes)"),
    (r"python -m agents\.irl\.(compare|diagnose|seeds|report)\b.*", "module",
     "minutes: IRL runs in the compare harness, the reward diagnosis or re-evaluation of a "
     "run (tests/test_irl_schedule_init.py runs them on tiny runs)"),
    (r"python benchmarks/claims\.py --quick.*", "covered",
     "tests/test_claims_quick.py runs python benchmarks/claims.py --quick (then --reuse)"),
    (r"python benchmarks/\S+\.py.*", "script", "a throughput / accuracy measurement"),
    (r"python examples/deploy_diffusers\.py --(schedule|policy) runs/\S+ .*", "covered",
     "tests/test_deploy_example.py runs both modes on a schedule.json and a tiny IRL run"),
    (r"python examples/\S+\.py.*", "script", "a learning script (its own tiny test runs it)"),
]  # fmt: skip


def documented_commands() -> list[tuple[str, str]]:
    """``(file, command)`` of every command in the docs, continuation lines joined."""
    out = []
    for path in DOCS:
        text = path.read_text()
        blocks = re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S)
        text_wo_blocks = re.sub(r"```.*?```", "", text, flags=re.S)
        lines = [ln for b in blocks for ln in b.replace("\\\n", " ").splitlines()]
        lines += [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", text_wo_blocks)]
        for line in lines:
            line = line.split(" #")[0].strip()
            for part in line.split("&&"):
                cmd = " ".join(part.split())
                if cmd.startswith(STARTS):
                    out.append((path.name, cmd))
    return sorted(set(out))


def rule_of(cmd: str) -> tuple[str, str, str]:
    for pattern, kind, detail in RULES:
        if re.fullmatch(pattern, cmd):
            return pattern, kind, detail
    raise LookupError(cmd)


def _kind(cmd: str) -> str:
    try:
        return rule_of(cmd)[1]
    except LookupError:  # reported by test_every_documented_command_has_a_rule
        return "unknown"


COMMANDS_FOUND = documented_commands()


def test_every_documented_command_has_a_rule():
    assert len(COMMANDS_FOUND) > 30  # the parser sees the docs' commands
    missing = []
    for name, cmd in COMMANDS_FOUND:
        try:
            rule_of(cmd)
        except LookupError:
            missing.append(f"{name}: {cmd}")
    assert not missing, "commands without a rule in tests/test_docs_commands.py:\n" + "\n".join(
        missing
    )
    kinds = {rule_of(c)[1] for _, c in COMMANDS_FOUND}
    assert {"run", "load", "covered", "module", "script"} <= kinds


def _args(cmd: str) -> list[str]:
    """The command's arguments with placeholders (S, N) as 0 and ``--out`` dropped."""
    args = [re.sub(r"=(S|N)$", "=0", a) for a in shlex.split(cmd)]
    keep, skip = [], False
    for a in args[2:]:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif a != "--resume":
            keep.append(a)
    return keep


def test_load_commands_configs_and_overrides_are_valid():
    checked = 0
    for _, cmd in COMMANDS_FOUND:
        kind = _kind(cmd)
        words = shlex.split(cmd)
        if kind == "name" and len(words) > 1 and words[0] == "diffusion-gym":
            assert words[1] in COMMANDS, cmd
        if kind not in ("load", "run") or words[0] != "diffusion-gym" or ".yaml" not in cmd:
            continue
        args = _args(cmd)
        cfg, overrides = args[0], [a for a in args[1:] if "=" in a and not a.startswith("-")]
        assert (ROOT / cfg).is_file(), f"{cmd}: no file {cfg}"
        loader = {"train": load_train, "compare": load_compare, "benchmark": load_benchmark}
        loader[words[1]](str(ROOT / cfg), overrides)  # raises on a bad key or value
        checked += 1
    assert checked >= 15


def test_module_and_script_commands_exist():
    for _, cmd in COMMANDS_FOUND:
        kind = _kind(cmd)
        words = shlex.split(cmd)
        if kind == "module":
            assert importlib.util.find_spec(words[2]) is not None, cmd
        elif kind == "script":
            assert (ROOT / words[1]).is_file(), cmd


RUNS = sorted({c for _, c in COMMANDS_FOUND if _kind(c) == "run"})


def _run_argv(cmd: str, out: Path) -> list[str]:
    """The command's ``diffusion-gym`` arguments, ``--out`` in ``out``, tiny overrides added."""
    words = shlex.split(cmd)
    if "--out" in words:
        words[words.index("--out") + 1] = str(out)
    return [*words[1:], *shlex.split(rule_of(cmd)[2])]


# One interpreter runs every cheap command in turn through the console script's function
# (agents.cli:main), from the repository root as the docs have it.
DRIVER = """
import json, sys
from agents.cli import main
for argv in json.loads(sys.argv[1]):
    print("@@ RUN", argv[0], flush=True)
    rc = main(argv)
    print("@@ RC", rc, flush=True)
    if rc:
        sys.exit(rc)
"""


def test_cheap_documented_commands_run(tmp_path):
    assert RUNS, "no command to run: the README's commands moved?"
    unique = {}  # a command differing only in --out runs once
    for cmd in RUNS:
        unique.setdefault(tuple(_run_argv(cmd, Path("OUT"))), cmd)
    argvs = [_run_argv(cmd, tmp_path / f"run{i}") for i, cmd in enumerate(unique.values())]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}  # fmt: skip
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argvs)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert r.stdout.count("@@ RC 0") == len(argvs)
    assert "gmm-ring8" in r.stdout  # presets
    for i, cmd in enumerate(unique.values()):
        if "--out" in cmd:
            assert (tmp_path / f"run{i}" / "eval.json").is_file(), cmd
    assert r.stdout.count("outputs in") == sum("train" in c for c in unique.values())
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("diffusion-gym") == "agents.cli:main"  # what `diffusion-gym` runs


# -- dependencies ------------------------------------------------------------------------------
#: Needed at runtime by a documented command but not imported by our code at module level.
RUNTIME_ONLY = {"rich": "SB3 learn(progress_bar=True): art-*.yaml default progress: true",
                "tqdm": "progress bars (also SB3's)"}  # fmt: skip


def _core_deps() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-")
            for d in meta["dependencies"]}  # fmt: skip


def _module_level_imports() -> set[str]:
    names = set()
    for pkg in ("diffusion_gym", "agents", "baselines"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.parse(path.read_text()).body:  # module level only
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"diffusion_gym", "agents", "baselines"}


def test_runtime_dependencies_are_core_dependencies():
    core = _core_deps()
    dists = importlib.metadata.packages_distributions()
    needed = {}
    for mod in _module_level_imports():
        for dist in dists.get(mod, [mod]):
            needed[dist.lower().replace("_", "-")] = f"imported as {mod}"
    needed.update(RUNTIME_ONLY)
    missing = {d: why for d, why in needed.items() if d not in core}
    assert not missing, f"not core dependencies in pyproject.toml: {missing}"
    assert {"rich", "tqdm"} <= core
