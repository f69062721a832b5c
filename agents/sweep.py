"""``diffusion-gym sweep CONFIG --out DIR [--grid key=v1,v2 ...] [--seeds N] [--address ADDR]
[--cpus-per-trial F] [--gpus-per-trial F]``: trials of ``train``, ``compare`` or ``benchmark``
as Ray Tune trials, and one merged table over them.

Needs the optional extra ``[ray]`` (``pip install "diffusion-gym[ray]"``); without it the
command stops with an error naming the extra.

CONFIG's kind is read from its keys: ``agent:`` → a ``train`` config (``agents/configs``),
``algos:`` + ``envs:`` → a ``benchmark`` config, otherwise a ``compare`` config. The trials:

- train / compare: the product of the ``--grid`` values (dotted keys of the config, values
  parsed as YAML, ``--grid algo_kwargs.learning_rate=1e-3,3e-4``) × ``--seeds N`` seeds
  (train: ``seed=0..N-1``; compare: ``seeds=[0]`` … ``[N-1]``; without ``--seeds`` the
  config's own), each one ``diffusion-gym train|compare CONFIG --out DIR/trials/<name>`` with
  those overrides;
- benchmark: the grid × every (env, algorithm, seed) the config names (``--seeds N`` gives
  seeds 0..N-1), each trial one run (``run_benchmark`` of a one-env, one-algorithm,
  one-seed config, without the reference rows); pairs where the algorithm does not fit the
  env's action space are skipped before any trial starts; the constant-action reference
  rows of each env are computed once, in the driver.

Each trial runs in a Ray worker with ``--cpus-per-trial`` CPUs and ``--gpus-per-trial``
GPUs (fractions allowed: ``0.25`` packs four trials on a GPU), on a local Ray started for
the sweep (``--num-cpus``) or on the running cluster at ``--address`` (``auto`` or
``ray://host:10001``; the package must be installed on its nodes and ``--out`` must be on
storage every node sees). Checkpoints: a train trial is ``train --resume`` on its own
directory, so when a worker dies Ray restarts the trial (``--max-failures``, default 2) and
it continues from the newest complete checkpoint of the package (``checkpoints/``);
running the same ``sweep`` command again reuses every finished trial (a ``trial.json`` with
the same spec; such trials are not handed to Ray at all, so a rerun costs no Ray start-up per
finished trial) and resumes the others. ``--collect`` runs nothing: it merges the finished
trials and lists the others as ``pending`` (a report of a sweep still running or stopped).

Outputs in ``--out``: ``trials/<name>/`` (each trial's own outputs), ``sweep.json`` (the
trials with their overrides, status and wall time, and the merged rows: one per trial ×
strategy with every metric's mean and std), ``sweep.md`` (that table), ``sweep.png`` (the
first metric per trial and strategy); for a benchmark config also the merged
``benchmark.json`` / ``benchmark.md`` / ``curves_<env>.png`` (the benchmark's own report,
normalised scores included); Ray Tune's own files under ``ray/``. Every file is written
atomically (:mod:`diffusion_gym.io`).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib
import torch

from agents import benchmark as bench
from agents import parallel, train
from agents.benchmark.report import jsonable
from baselines import compare
from diffusion_gym.config import read_yaml, to_dict
from diffusion_gym.io import (
    atomic_save_via,
    atomic_write_json,
    atomic_write_text,
    check_writable_dir,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)

__all__ = [
    "KINDS",
    "collect",
    "config_kind",
    "main",
    "merged_rows",
    "plan_trials",
    "plot_sweep",
    "run_sweep",
    "run_trial",
    "sweep_markdown",
    "write_sweep",
]

KINDS = ("train", "compare", "benchmark")


def config_kind(data: Any) -> str:
    """``"train"``, ``"benchmark"`` or ``"compare"`` from a parsed YAML config."""
    if not isinstance(data, dict):
        raise ValueError("a sweep config must be a YAML mapping (train, compare or benchmark)")
    if "agent" in data:
        return "train"
    if "algos" in data and "envs" in data:
        return "benchmark"
    return "compare"


def _parse_grid(items: list[str] | None) -> list[tuple[str, list[str]]]:
    """``key=v1,v2`` → ``(key, ["v1", "v2"])`` (values kept as text: YAML-parsed by the
    commands' own override loader). A value with a comma inside brackets stays whole."""
    out = []
    for item in items or []:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--grid takes key=v1,v2,...; got {item!r}")
        parts, depth, cur = [], 0, ""
        for ch in values:
            depth += ch in "[{("
            depth -= ch in "]})"
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        if any(not p for p in parts):
            raise ValueError(f"--grid {item!r} has an empty value")
        out.append((key, parts))
    keys = [k for k, _ in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"--grid names a key twice: {keys}")
    return out


def _name(overrides: list[str]) -> str:
    """A directory name from ``key=value`` overrides (``seed=0,lr=1e-3``)."""
    text = ",".join(o.replace("/", "_").replace(" ", "") for o in overrides) or "default"
    return text[:180]


def plan_trials(config: str | Path, grid: list[str] | None = None, seeds: int | None = None,
                overrides: list[str] | None = None) -> tuple[str, list[dict]]:  # fmt: skip
    """``(kind, trial specs)`` of a sweep; each spec: ``name``, ``kind``, ``config`` (absolute
    path), ``overrides`` (the trial's, after the sweep's own ``overrides``), ``params`` (the
    grid values and seed of the trial, for the table). Every trial's config is loaded and
    checked here, before any trial starts."""
    path = Path(config).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"sweep config {str(config)!r} does not exist")
    data = read_yaml(path)
    kind = config_kind(data)
    if seeds is not None and seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    axes = _parse_grid(grid)
    combos = list(itertools.product(*[[f"{k}={v}" for v in vs] for k, vs in axes]))
    base = list(overrides or [])
    specs = []
    for combo in combos:
        if kind == "benchmark":
            specs += _benchmark_trials(path, base + list(combo), seeds, list(combo))
            continue
        seed_overrides = [[]] if seeds is None else [
            [f"seed={s}"] if kind == "train" else [f"seeds=[{s}]"] for s in range(seeds)
        ]  # fmt: skip
        for extra in seed_overrides:
            over = base + list(combo) + extra
            resolved = _resolved(_load(kind, path, over))  # bad keys: an error now
            params = dict(o.split("=", 1) for o in list(combo) + extra)
            specs.append({"name": _name(list(combo) + extra), "kind": kind,
                          "config": str(path), "overrides": over, "params": params,
                          "resolved": resolved})  # fmt: skip
    names = [s["name"] for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("two trials got the same name; make the --grid values distinct")
    return kind, specs


def _resolved(cfg: Any) -> Any:
    """The trial's resolved config as plain JSON data: a finished trial is reused only when
    it equals the requested one (a changed config file reruns the trial)."""
    return json.loads(json.dumps(jsonable(to_dict(cfg))))


def _load(kind: str, path: Path, overrides: list[str]) -> Any:
    if kind == "train":
        return train.load_config(path, overrides)[1]
    if kind == "compare":
        return compare.load_config(str(path), overrides)
    return bench.load_config(path, overrides)


def _benchmark_trials(path: Path, over: list[str], seeds: int | None, combo: list[str]):
    cfg = bench.load_config(path, over)
    seed_list = list(range(seeds)) if seeds is not None else list(cfg.seeds)
    specs = []
    for env_cfg in cfg.envs:
        space = _action_space(env_cfg)
        for algo in cfg.algos:
            irl = env_cfg.irl is not None
            if bench.fit_reason(bench.algo_spec(algo), space, irl=irl, env=None):
                continue  # no trial: collect() lists the pair as skipped, with the reason
            for s in seed_list:
                params = {**dict(o.split("=", 1) for o in combo), "env": env_cfg.label,
                          "algo": algo, "seed": str(s)}  # fmt: skip
                name = _name([*combo, env_cfg.label, algo, f"seed={s}"])
                one = dataclasses.replace(cfg, envs=[env_cfg], algos=[algo], seeds=[s])
                specs.append({"name": name, "kind": "benchmark", "config": str(path),
                              "overrides": over, "params": params, "env": env_cfg.label,
                              "algo": algo, "seed": s, "resolved": _resolved(one)})  # fmt: skip
    return specs


def _action_space(env_cfg: bench.EnvConfig):
    env = bench.make_vector_env(env_cfg.id, 1, bench.eval_kwargs(env_cfg))
    try:
        return env.single_action_space
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------
# One trial (in a Ray worker or here)


def same_trial(a: dict | None, b: dict | None) -> bool:
    """Whether two trial specs run the same trial: equal in everything but the override
    strings that produced them (``resolved``, the loaded config, is compared), so a sweep
    whose overrides changed (e.g. ``algos=[...]`` narrowing a benchmark config) still reuses
    the trials whose own config did not change."""
    if a is None or b is None:
        return False
    return {k: v for k, v in a.items() if k != "overrides"} == {
        k: v for k, v in b.items() if k != "overrides"
    }


def finished(spec: dict, trial_dir: str | Path) -> bool:
    """Whether ``trial_dir`` holds a finished trial of ``spec`` (``trial.json``, status ok,
    :func:`same_trial`)."""
    marker = Path(trial_dir) / "trial.json"
    if not marker.is_file():
        return False
    rec = json.loads(marker.read_text())
    return same_trial(rec.get("spec"), spec) and rec.get("status") == "ok"


def run_trial(spec: dict, trial_dir: str | Path, num_threads: int = 1) -> dict:
    """Run one trial into ``trial_dir`` (resuming what is there) and write ``trial.json``
    (the spec, status, wall time) last; a finished trial with the same spec is not rerun.

    :returns: the ``trial.json`` record.
    """
    out = Path(trial_dir)
    marker = out / "trial.json"
    if finished(spec, out):
        return json.loads(marker.read_text())
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    before = os.environ.get(parallel.ENV_VAR)
    os.environ[parallel.ENV_VAR] = "local"  # nested work stays in this trial's worker
    t0 = time.perf_counter()
    try:
        _run_kind(spec, out)
    finally:
        torch.set_num_threads(threads)
        if before is None:
            os.environ.pop(parallel.ENV_VAR, None)
        else:
            os.environ[parallel.ENV_VAR] = before
    rec = {"spec": spec, "status": "ok", "wall_s": time.perf_counter() - t0,
           "num_threads": num_threads}  # fmt: skip
    atomic_write_json(marker, rec)
    return rec


def _run_kind(spec: dict, out: Path) -> None:
    over = list(spec["overrides"])
    if spec["kind"] == "train":
        argv = [spec["config"], "--out", str(out), "--resume", *over]
        if "progress=false" not in over:
            argv.append("progress=false")
        rc = train.main(argv)
    elif spec["kind"] == "compare":
        rc = compare.main_compare([spec["config"], "--out", str(out), "--no-progress", *over])
    else:
        cfg = bench.load_config(spec["config"], over)
        cfg.envs = [e for e in cfg.envs if e.label == spec["env"]]
        cfg.algos, cfg.seeds = [spec["algo"]], [int(spec["seed"])]
        res = bench.run_benchmark(cfg, out, baselines=False)
        rc = 1 if any(r["status"] == "failed" for r in res["runs"]) else 0
    if rc:
        raise RuntimeError(f"trial {spec['name']} failed (exit status {rc}); see {out}")


def _tune_trial(config: dict) -> None:
    """The Ray Tune trainable: one trial, then its first metric reported to Tune."""
    config = config["trial"]
    spec, out = config["spec"], config["dir"]
    os.chdir(config["cwd"])  # relative paths inside configs resolve as for the CLI
    rec = run_trial(spec, out, config["num_threads"])
    from ray import tune  # optional extra

    tune.report({"wall_s": rec["wall_s"], "done": 1})


# ---------------------------------------------------------------------------------------------
# The sweep


def run_sweep(
    config: str | Path,
    out_dir: str | Path,
    *,
    grid: list[str] | None = None,
    seeds: int | None = None,
    overrides: list[str] | None = None,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    num_cpus: int | None = None,
    max_failures: int = 2,
    num_threads: int = 1,
    collect_only: bool = False,
) -> dict:
    """Plan the trials, run the unfinished ones as Ray Tune trials, write the merged table;
    returns the ``sweep.json`` record. See the module docstring for the arguments.

    Trials already finished in ``out_dir`` (:func:`finished`) are not handed to Ray at all.
    ``collect_only``: run nothing (Ray is not needed); merge the finished trials and list the
    others as ``pending``."""
    if not collect_only:
        parallel.require_ray("diffusion-gym sweep")

    if cpus_per_trial <= 0 or gpus_per_trial < 0 or max_failures < 0 or num_threads < 1:
        raise ValueError(
            "--cpus-per-trial must be > 0, --gpus-per-trial >= 0, --max-failures >= 0, "
            f"--threads >= 1; got {cpus_per_trial}, {gpus_per_trial}, {max_failures}, "
            f"{num_threads}"
        )
    out = Path(out_dir).resolve()
    check_writable_dir(out)
    kind, specs = plan_trials(config, grid, seeds, overrides)
    if not specs:
        raise ValueError("the sweep has no trial (every algorithm skipped on every env?)")
    t0 = time.perf_counter()
    todo = [] if collect_only else [s for s in specs if not finished(s, out / "trials" / s["name"])]
    if todo:
        _tune(todo, out, address, cpus_per_trial, gpus_per_trial, num_cpus, max_failures,
              num_threads)  # fmt: skip
    record = collect(out, kind, specs, missing="pending" if collect_only else "failed")
    record["sweep"] = {"config": str(config), "grid": grid or [], "seeds": seeds,
                       "overrides": overrides or [], "address": address,
                       "cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial,
                       "num_threads": num_threads, "wall_s": time.perf_counter() - t0,
                       "ran": len(todo), "reused": len(specs) - len(todo),
                       "collect_only": collect_only,
                       "machine": bench.machine_info()}  # fmt: skip
    write_sweep(record, out)
    return record


def _tune(specs, out, address, cpus_per_trial, gpus_per_trial, num_cpus, max_failures,
          num_threads) -> None:  # fmt: skip
    """Run ``specs`` as Ray Tune trials (a local Ray unless ``address``)."""
    import ray  # optional extra
    from ray import tune  # optional extra

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else num_cpus,
                 include_dashboard=False, log_to_driver=False)  # fmt: skip
    try:
        trainable = tune.with_resources(_tune_trial, {"cpu": cpus_per_trial,
                                                       "gpu": gpus_per_trial})  # fmt: skip
        space = {"trial": tune.grid_search([{
            "spec": s, "dir": str(out / "trials" / s["name"]), "cwd": os.getcwd(),
            "num_threads": num_threads} for s in specs])}  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            # one worker process serves trial after trial (no re-import of torch and SB3)
            tune_config=tune.TuneConfig(trial_dirname_creator=_trial_dirname, reuse_actors=True),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(out / "ray"),
                verbose=1,
                failure_config=tune.FailureConfig(max_failures=max_failures),
            ),  # fmt: skip
        )
        tuner.fit()
    finally:
        if started:
            ray.shutdown()


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def collect(out: Path, kind: str, specs: list[dict], missing: str = "failed") -> dict:
    """The trials' records and merged rows from ``out/trials/<name>`` (a benchmark sweep
    also gets its merged benchmark report, with the reference rows computed here); a trial
    without a finished record gets the status ``missing``."""
    trials, dirs = [], []
    for s in specs:
        d = out / "trials" / s["name"]
        marker = d / "trial.json"
        rec = json.loads(marker.read_text()) if marker.is_file() else {}
        ok = rec.get("status") == "ok" and same_trial(rec.get("spec"), s)
        trials.append({"name": s["name"], "params": s["params"], "status": "ok" if ok else
                       missing, "wall_s": rec.get("wall_s", math.nan)})  # fmt: skip
        if ok:
            dirs.append((s, d))
    record: dict[str, Any] = {"kind": kind, "trials": trials}
    if kind == "benchmark":
        record["rows"] = []
        if dirs:
            merged = bench.merge_results([d for _, d in dirs])
            cfg = bench.load_config(specs[0]["config"], specs[0]["overrides"])
            labels = {r["env"] for r in merged["runs"]}
            merged["baselines"] = bench.reference_rows(cfg, sorted(labels))
            merged["config"]["envs"] = [dataclasses.asdict(e) for e in cfg.envs
                                        if e.label in labels]  # fmt: skip
            merged["config"]["algos"] = list(cfg.algos)
            merged["runs"] += _skipped_runs(cfg, labels)
            fields = {f.name for f in dataclasses.fields(bench.RunResult)}
            merged["summary"] = bench.summarize(
                [bench.RunResult(**{k: r[k] for k in fields}) for r in merged["runs"]]
            )
            bench.score_results(merged)
            bench.write_report(merged, out)
            record["rows"] = [{"trial": s["name"], "params": s["params"], "strategy": s["algo"],
                               "metrics": _bench_metrics(d)} for s, d in dirs]  # fmt: skip
    else:
        record["rows"] = merged_rows([(s["name"], s["params"], d) for s, d in dirs])
    return record


def _skipped_runs(cfg: Any, labels: set[str]) -> list[dict]:
    """The (env, algorithm) pairs that got no trial because the algorithm does not fit the
    env, as the benchmark's ``skipped`` runs with their reason."""
    out = []
    for env_cfg in cfg.envs:
        if env_cfg.label not in labels:
            continue
        space = _action_space(env_cfg)
        for algo in cfg.algos:
            spec = bench.algo_spec(algo)
            reason = bench.fit_reason(spec, space, irl=env_cfg.irl is not None, env=None)
            if reason:
                run = bench.RunResult(spec.name, env_cfg.label, None, "skipped", reason=reason)
                out.append(dataclasses.asdict(run))
    return out


def _bench_metrics(d: Path) -> dict:
    run = json.loads((d / "benchmark.json").read_text())["runs"][0]
    return {k: {"mean": run[k], "std": 0.0} for k in ("metric", "eval_return", "train_return")}


def merged_rows(trials: list[tuple[str, dict, Path]]) -> list[dict]:
    """One row per trial × strategy (× section of a compare run) from each trial
    directory's ``eval.json``: ``{"trial", "params", "strategy", "metrics": {m: {mean,
    std}}}``; the same function merges runs made one by one (the sweep's test)."""
    rows = []
    for name, params, d in trials:
        data = json.loads((Path(d) / "eval.json").read_text())
        for key, entry in data.items():
            if _is_row(entry):
                rows.append(_row(name, params, key, entry))
            elif isinstance(entry, dict):  # compare: {section: {strategy: row}}
                for strat, sub in entry.items():
                    if _is_row(sub):
                        rows.append(_row(name, params, f"{key}/{strat}", sub))
    return rows


def _is_row(entry: Any) -> bool:
    return isinstance(entry, dict) and any(
        isinstance(v, dict) and "mean" in v for v in entry.values()
    )


def _row(trial: str, params: dict, strategy: str, entry: dict) -> dict:
    metrics = {k: {"mean": v["mean"], "std": v.get("std", 0.0)} for k, v in entry.items()
               if isinstance(v, dict) and "mean" in v}  # fmt: skip
    return {"trial": trial, "params": params, "strategy": strategy, "metrics": metrics}


def _fmt(stat: dict) -> str:
    m, s = stat["mean"], stat["std"]
    if m is None or (isinstance(m, float) and not math.isfinite(m)):
        return "–"
    return f"{m:.4g} ± {s:.2g}"


def sweep_markdown(record: dict) -> str:
    """The merged table (one row per trial × strategy, every metric as mean ± std) and the
    trials' status and wall time."""
    rows = record["rows"]
    metrics = list(dict.fromkeys(k for r in rows for k in r["metrics"]))
    keys = list(dict.fromkeys(k for t in record["trials"] for k in t["params"]))
    lines = [f"# diffusion-gym sweep ({record['kind']}, {len(record['trials'])} trials)", ""]
    lines += ["| " + " | ".join([*keys, "strategy", *metrics]) + " |",
              "|" + "---|" * (len(keys) + 1 + len(metrics))]  # fmt: skip
    for r in rows:
        cells = [r["params"].get(k, "") for k in keys] + [r["strategy"]]
        cells += [_fmt(r["metrics"][m]) if m in r["metrics"] else "–" for m in metrics]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "| trial | status | wall s |", "|---|---|---|"]
    for t in record["trials"]:
        lines.append(f"| {t['name']} | {t['status']} | {t['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def plot_sweep(record: dict, path: Path) -> Path | None:
    """``sweep.png``: the first metric of the rows, per trial, one marker per strategy."""
    rows = record["rows"]
    if not rows:
        return None
    metric = next(iter(rows[0]["metrics"]))
    trials = list(dict.fromkeys(r["trial"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(trials) + 3), 3.5))
    for strat in dict.fromkeys(r["strategy"] for r in rows):
        pts = [(trials.index(r["trial"]), r["metrics"].get(metric)) for r in rows
               if r["strategy"] == strat and metric in r["metrics"]]  # fmt: skip
        ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts],
                    yerr=[p[1]["std"] for p in pts], fmt="o", label=strat, capsize=2)  # fmt: skip
    ax.set_xticks(range(len(trials)), trials, rotation=60, ha="right", fontsize=6)
    ax.set(ylabel=metric, title=f"sweep: {metric} per trial")
    ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_save_via(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def write_sweep(record: dict, out: Path) -> None:
    """``sweep.json``, ``sweep.md`` and ``sweep.png`` in ``out`` (atomic writes)."""
    atomic_write_text(out / "sweep.json", json.dumps(jsonable(record), indent=1))
    atomic_write_text(out / "sweep.md", sweep_markdown(record))
    plot_sweep(record, out / "sweep.png")


# ---------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diffusion-gym sweep",
        description="Trials of train / compare / benchmark as Ray Tune trials, one merged "
        "table (needs the [ray] extra).",
    )
    p.add_argument("config", help="a train, compare or benchmark YAML")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of every trial")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--grid", nargs="+", metavar="KEY=V1,V2", help="values to sweep per key")
    p.add_argument("--seeds", type=int, help="N seeds per grid point (0..N-1)")
    p.add_argument("--address", help="an existing Ray cluster (auto, ray://host:10001)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (0.25 ok)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--max-failures", type=int, default=2, help="restarts of a failed trial")
    p.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    p.add_argument(
        "--collect",
        action="store_true",
        help="run nothing: merge the finished trials, list the others as pending",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``diffusion-gym sweep``; returns the exit status (1 if a trial failed)."""
    args = _parser().parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    record = run_sweep(
        args.config, args.out, grid=args.grid, seeds=args.seeds, overrides=args.overrides,
        address=args.address, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, num_cpus=args.num_cpus,
        max_failures=args.max_failures, num_threads=args.threads, collect_only=args.collect,
    )  # fmt: skip
    print(sweep_markdown(record))
    print(f"wrote {Path(args.out) / 'sweep.md'}, sweep.json, sweep.png, trials/")
    return 1 if any(t["status"] == "failed" for t in record["trials"]) else 0
