"""``diffusion-gym benchmark``: off-the-shelf RL algorithms × environment ids × seeds.

Every algorithm of stable-baselines3 (PPO, A2C, DQN, SAC, TD3) and sb3-contrib (MaskablePPO,
QR-DQN, TRPO, RecurrentPPO, TQC, CrossQ, ARS) runs on every environment whose action space it
supports, for a fixed budget of environment steps and several seeds. The environments run as
the native batched vector envs behind :class:`agents.vec_env.SB3VecEnv`; the guidance env is
trained with its built-in rewards (``reward="log_prob"``, ``"classifier"``) and with the
occupancy-matching IRL reward of :mod:`agents.irl` (the algorithm as the generator), the clock
env with its terminal error reward. An algorithm that does not fit an env is SKIPPED with the
reason in the table.

Modules: :mod:`.config` (the YAML config), :mod:`.algos` (algorithms, RL-Zoo hyperparameters,
fit reasons), :mod:`.evaluation` (the fixed evaluation batch, constant-action baselines),
:mod:`.runner` (one run, the benchmark loop), :mod:`.irl` (the IRL-reward column),
:mod:`.report` (summaries, scores, markdown, curves, merge), :mod:`.references` (the
stored 0/1 references of the normalised score), :mod:`.throughput` (env throughput).

Outputs in ``--out DIR``: ``benchmark.json`` (config, machine, every run, the summary),
``benchmark.md`` (one table per env: the normalised score of :mod:`.references` and the raw
metric, mean ± std over seeds, eval return, wall time,
env steps/s, skipped pairs with their reason), ``curves_<env>.png`` (metric and training
return against env steps), and TensorBoard logs under ``tb/`` (SB3's ``tensorboard_log``).

Usage::

    diffusion-gym benchmark baselines/configs/benchmark.yaml --out runs/bench
    diffusion-gym benchmark baselines/configs/benchmark-tiny.yaml --seeds 0 1 --steps 2000
    diffusion-gym benchmark --merge runs/part-a runs/part-b --out runs/bench  # one report
    diffusion-gym benchmark baselines/configs/benchmark.yaml --parallel --out runs/bench
    diffusion-gym benchmark --throughput --out runs/throughput   # env throughput tables
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agents.parallel import backend
from diffusion_gym.io import atomic_write_text, check_writable_dir

from . import throughput
from .algos import (
    ALGORITHMS,
    ZOO_DIR,
    AlgoSpec,
    algo_kwargs,
    algo_spec,
    fit_reason,
    load_hyperparams,
    parse_policy_kwargs,
    reward_normalization,
)
from .config import BenchmarkConfig, EnvConfig, EvalConfig, config_from_dict, load_config
from .evaluation import (
    ConstantPolicy,
    baseline_policies,
    eval_kwargs,
    evaluate_policy_batch,
    make_vector_env,
    rollout,
)
from .references import load_references, normalized_score, reference_for
from .report import (
    RunResult,
    machine_info,
    markdown_tables,
    merge_results,
    plot_curves,
    score_results,
    summarize,
    throughput_markdown,
    write_report,
)
from .report import jsonable as _jsonable
from .runner import CurveCallback, reference_rows, run_benchmark, run_benchmark_parts, run_one

__all__ = [
    "ALGORITHMS",
    "ZOO_DIR",
    "AlgoSpec",
    "BenchmarkConfig",
    "ConstantPolicy",
    "CurveCallback",
    "EnvConfig",
    "EvalConfig",
    "RunResult",
    "algo_kwargs",
    "algo_spec",
    "baseline_policies",
    "config_from_dict",
    "eval_kwargs",
    "evaluate_policy_batch",
    "fit_reason",
    "load_config",
    "load_hyperparams",
    "load_references",
    "normalized_score",
    "reference_for",
    "reference_rows",
    "machine_info",
    "main",
    "make_vector_env",
    "markdown_tables",
    "merge_results",
    "parse_policy_kwargs",
    "plot_curves",
    "reward_normalization",
    "rollout",
    "run_benchmark",
    "run_benchmark_parts",
    "score_results",
    "run_one",
    "run_throughput",
    "summarize",
    "throughput_markdown",
    "write_report",
]


def run_throughput(argv: list[str]) -> int:
    """``--throughput [--out DIR] [ARGS]``: :func:`agents.benchmark.throughput.main` of ARGS
    (its ``--device``, ``--batch-sizes``, ``--ids``, ...); with ``--out``, its rows are
    also written to ``DIR/throughput.json`` and ``DIR/throughput.md``."""
    out = None
    if "--out" in argv:
        i = argv.index("--out")
        if i + 1 >= len(argv):
            raise ValueError("--out needs a directory")
        out = Path(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    rows = throughput.main(argv)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "throughput.json", json.dumps(_jsonable(rows), indent=1))
        atomic_write_text(out / "throughput.md", throughput_markdown(rows))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diffusion-gym benchmark",
        description="RL algorithms x env ids x seeds (tables, curves, TensorBoard), "
        "or env throughput (--throughput).",
    )
    p.add_argument("config", nargs="?", help="benchmark YAML (baselines/configs/benchmark.yaml)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides of the config, e.g. steps=2000 eval.points=3",
    )
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
        "--parallel",
        action="store_true",
        help="one part per (env, algorithm), run as Ray tasks when Ray is installed (one "
        "CPU each; RAY_ADDRESS picks a cluster), one after another otherwise; then merged",
    )
    p.add_argument(
        "--throughput",
        action="store_true",
        help="measure env throughput instead (agents.benchmark.throughput; extra args go to it)",
    )
    return p


def _apply_flags(cfg: BenchmarkConfig, args: argparse.Namespace) -> BenchmarkConfig:
    """``--seeds``, ``--steps``, ``--algos``, ``--envs`` over the config, checked."""
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
    return cfg


def main(argv: list[str] | None = None) -> int:
    """``diffusion-gym benchmark CONFIG [KEY=VALUE ...] [--out DIR] [--seeds ...] [--steps N]``,
    ``diffusion-gym benchmark --merge DIR ... --out DIR`` or
    ``diffusion-gym benchmark --throughput [ARGS]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--throughput" in argv:
        argv.remove("--throughput")
        return run_throughput(argv)
    args = _parser().parse_args(argv)
    if args.merge:
        check_writable_dir(args.out)
        results = merge_results(args.merge)
        write_report(results, args.out)
        print(markdown_tables(results))
        return 0
    if args.config is None:
        _parser().error("CONFIG is required (or --throughput, --merge)")
    cfg = _apply_flags(load_config(args.config, args.overrides), args)
    check_writable_dir(args.out)
    if args.parallel:
        results = run_benchmark_parts(cfg, args.out, use=backend(prefer_ray=True))
    else:
        results = run_benchmark(cfg, args.out)
    print(markdown_tables(results))
    print(f"wrote {Path(args.out) / 'benchmark.md'}, benchmark.json, curves_*.png, tb/")
    return 1 if any(r["status"] == "failed" for r in results["runs"]) else 0
