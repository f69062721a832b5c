"""Results of the benchmark: one :class:`RunResult` per run, summaries over seeds, the
report files (``benchmark.json``, ``benchmark.md``, ``curves_<env>.png``) and the merge of
several partial runs.

The tables are the benchmark's own (one row per algorithm with its status, wall time and env
steps/s, then the constant-action reference rows); the harness's ``eval.md`` writer
(:func:`baselines.evaluate.markdown_table`) has one row per strategy and metric columns only,
so it is not used here, and the file names and table layout stay those of earlier reports.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import matplotlib
import numpy as np
import sb3_contrib
import stable_baselines3
import torch

from diffusion_gym.io import atomic_save_via, atomic_write_text

from .algos import ALGORITHMS
from .config import EnvConfig, EvalConfig
from .evaluation import is_clock
from .references import load_references, normalized_score, reference_for

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)

__all__ = [
    "RunResult",
    "machine_info",
    "markdown_tables",
    "merge_results",
    "plot_curves",
    "score_results",
    "summarize",
    "throughput_markdown",
    "write_report",
]


@dataclass
class RunResult:
    """One (algorithm, env, seed) run, or a skipped pair (``status="skipped"``)."""

    algo: str
    env: str
    seed: int | None
    status: str  # "ok", "skipped" or "failed"
    reason: str = ""
    metric: float = math.nan
    eval_return: float = math.nan
    train_return: float = math.nan
    wall_s: float = math.nan
    steps: int = 0
    steps_per_s: float = math.nan
    curve: list[dict] = field(default_factory=list)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize(runs: Sequence[RunResult]) -> list[dict]:
    """Per (env, algorithm): mean and std over seeds (sample std, ddof=1) of the final
    metric, eval return, training return, wall time and env steps/s; skipped and failed
    pairs carry their status and reason."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.env, r.algo), []).append(r)
    rows = []
    for (env, algo), rs in groups.items():
        ok = [r for r in rs if r.status == "ok"]
        row: dict[str, Any] = {"env": env, "algo": algo, "seeds": [r.seed for r in ok]}
        bad = [r for r in rs if r.status != "ok"]
        row["status"] = bad[0].status if bad else "ok"
        row["reason"] = "; ".join(sorted({r.reason for r in bad}))
        for key in ("metric", "eval_return", "train_return", "wall_s", "steps_per_s"):
            mean, std = _mean_std([getattr(r, key) for r in ok]) if ok else (math.nan, math.nan)
            row[key] = {"mean": mean, "std": std}
        rows.append(row)
    return rows


def score_results(results: dict, refs: dict | None = None) -> dict:
    """Add the normalised scores (:mod:`agents.benchmark.references`) to ``results`` in
    place: ``references`` (per env label: the stored entry, or None when no reference
    matches its id, kwargs and evaluation batch), ``score`` per run and ``score``
    (mean ± std over seeds) per summary row; returns ``results``."""
    refs = load_references() if refs is None else refs
    ev = EvalConfig(**results["config"]["eval"])
    fields = {f.name for f in dataclasses.fields(EnvConfig)}
    by_label = {}
    for e in results["config"]["envs"]:
        env_cfg = EnvConfig(**{k: v for k, v in e.items() if k in fields})
        by_label[e["label"]] = reference_for(env_cfg, ev, refs)
    results["references"] = by_label
    for r in results["runs"]:
        ref = by_label.get(r["env"])
        ok = ref is not None and r["status"] == "ok"
        r["score"] = normalized_score(r["metric"], ref) if ok else math.nan
    for row in results["summary"]:
        scores = [
            r["score"]
            for r in results["runs"]
            if r["env"] == row["env"] and r["algo"] == row["algo"] and r["status"] == "ok"
        ]
        ok = [v for v in scores if math.isfinite(v)]
        mean, std = _mean_std(ok) if ok else (math.nan, math.nan)
        row["score"] = {"mean": mean, "std": std}
    return results


def machine_info() -> dict:
    """CPU model and count, torch/SB3 versions, CUDA availability (for the report)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": _cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_contrib": sb3_contrib.__version__,
        "gymnasium": gymnasium.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def jsonable(obj: Any) -> Any:
    """``obj`` with every key a string and every leaf a JSON scalar (others as ``repr``)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    return repr(obj)


# ---------------------------------------------------------------------------------------------
# Markdown

_METRIC_NAME = {"guidance": "energy distance ↓", "clock": "RMSE to ref ↓"}
_DEFAULT_BASELINES = ("const w=1 γ=0", "base schedule (a=0)")  # the env's default action


def _kind_of_label(results: dict, env: str) -> str:
    for e in results["config"]["envs"]:
        if e["label"] == env:
            return "clock" if is_clock(e["id"]) else "guidance"
    return "guidance"


def _pm(stat: dict, digits: int = 4) -> str:
    if not math.isfinite(stat["mean"]):
        return "–"
    return f"{stat['mean']:.{digits}g} ± {stat['std']:.2g}"


def markdown_tables(results: dict) -> str:
    """One markdown table per env: every algorithm (mean ± std over seeds), skipped pairs
    with their reason, then the constant-action baselines on the same evaluation batch."""
    lines = []
    envs = list(dict.fromkeys(r["env"] for r in results["summary"]))
    for env in envs:
        kind = _kind_of_label(results, env)
        lines += [
            f"### {env}",
            "",
            f"| algorithm | score | {_METRIC_NAME[kind]} | eval return | train return "
            "| wall s | env steps/s | seeds | status |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in (r for r in results["summary"] if r["env"] == env):
            status = row["status"] if row["status"] == "ok" else f"{row['status']}: {row['reason']}"
            lines.append(
                f"| {ALGORITHMS[row['algo']].cls} | {_pm(row.get('score', _NAN), 3)} "
                f"| {_pm(row['metric'])} "
                f"| {_pm(row['eval_return'])} | {_pm(row['train_return'])} "
                f"| {_pm(row['wall_s'], 3)} | {_pm(row['steps_per_s'], 3)} "
                f"| {len(row['seeds'])} | {status} |"
            )
        ref = (results.get("references") or {}).get(env)
        base = results["baselines"].get(env, {})
        if base:
            lines += _baseline_lines(base, ref)
        if ref is not None:
            lines += _reference_lines(ref)
        lines.append("")
    return "\n".join(lines)


_NAN = {"mean": math.nan, "std": math.nan}


def _baseline_lines(base: dict, ref: dict | None = None) -> list[str]:
    """Reference rows: the default action (w=1 γ=0 / base schedule) and the best constant,
    with their normalised score when the env has a stored reference."""
    named = dict(base)
    best = min(named, key=lambda k: named[k]["metric"])
    keep = [k for k in named if k in _DEFAULT_BASELINES]
    keep += [best] if best not in keep else []
    out = []
    for k in keep:
        score = f"{normalized_score(named[k]['metric'], ref):.3g}" if ref else ""
        out.append(
            f"| *{k}*{' (best constant)' if k == best and len(named) > 1 else ''} | {score} "
            f"| {named[k]['metric']:.4g} | {named[k]['return']:.4g} | | | | | reference |"
        )
    return out


def _reference_lines(ref: dict) -> list[str]:
    """The stored best fixed strategy (score 1 by definition) with how it was found."""
    b = ref["best"]
    return [f"| *best fixed: {b['policy']}* | 1 | {b['metric']:.4g} | | | | | | "
            f"score reference ({ref['date'] if 'date' in ref else ''}) |"]  # fmt: skip


def throughput_markdown(rows: Sequence[dict]) -> str:
    """Markdown table of the throughput benchmark's rows."""
    lines = [
        "| env id | batch | env steps/s | vector steps/s | env ms | raw ms | overhead | in-run "
        "| host ms | host |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['id']} | {r['batch']} | {r['env_steps_per_s']:.0f} "
            f"| {r['vector_steps_per_s']:.1f} | {r['env_ms']:.3f} | {r['raw_ms']:.3f} "
            f"| {100 * r['overhead']:.1f}% | {100 * r['overhead_in_run']:.1f}% "
            f"| {r['host_ms']:.3f} | {100 * r['host_share']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Learning curves


def plot_curves(results: dict, out_dir: Path) -> list[Path]:
    """``curves_<env>.png`` per env: eval metric and training return against env steps,
    mean over seeds with a ±1 std band."""
    paths = []
    envs = list(dict.fromkeys(r["env"] for r in results["runs"]))
    for env in envs:
        runs = [r for r in results["runs"] if r["env"] == env and r["status"] == "ok"]
        if not runs:
            continue
        kind = _kind_of_label(results, env)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for algo in dict.fromkeys(r["algo"] for r in runs):
            curves = [r["curve"] for r in runs if r["algo"] == algo]
            for ax, key in zip(axes, ("metric", "train_return"), strict=True):
                _band(ax, curves, key, ALGORITHMS[algo].cls)
        for name, res in results["baselines"].get(env, {}).items():
            if name in _DEFAULT_BASELINES:
                axes[0].axhline(res["metric"], color="k", ls="--", lw=1, label=name)
        axes[0].set(xlabel="env steps", ylabel=_METRIC_NAME[kind], title=f"{env}: eval metric")
        axes[1].set(xlabel="env steps", ylabel="episode return", title=f"{env}: training return")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"curves_{env.replace('/', '_')}.png"
        atomic_save_via(path, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110))
        plt.close(fig)
        paths.append(path)
    return paths


def _band(ax, curves: list[list[dict]], key: str, label: str) -> None:
    n = min(len(c) for c in curves)
    if n == 0:
        return
    x = np.array([p["steps"] for p in curves[0][:n]], dtype=float)
    y = np.array([[p[key] for p in c[:n]] for c in curves], dtype=float)
    with warnings.catch_warnings():  # all-NaN columns: no episode finished yet
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(y, 0), np.nanstd(y, 0)
    (line,) = ax.plot(x, mean, label=label, marker=".")
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)


# ---------------------------------------------------------------------------------------------
# Files


def write_report(results: dict, out_dir: str | Path) -> None:
    """``benchmark.json``, ``benchmark.md`` and ``curves_<env>.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    score_results(results)
    atomic_write_text(out / "benchmark.json", json.dumps(jsonable(results), indent=1))
    m = results["machine"]
    head = [
        "# diffusion-gym benchmark",
        "",
        f"Machine: {m['cpu']} ({m['cpu_count']} cores), torch {m['torch']}, "
        f"SB3 {m['stable_baselines3']}, sb3-contrib {m['sb3_contrib']}, "
        f"CUDA: {m['cuda'] or 'none'}.",
        f"Budget: {results['config']['steps']} env steps per run, seeds "
        f"{results['config']['seeds']}; metric mean ± std over seeds on a fixed batch of "
        f"{results['config']['eval']['num_samples']} episodes (deterministic policy). "
        "Score: 0 = the env's default policy, 1 = the best known fixed strategy "
        "(agents/benchmark/references.json), mean ± std over seeds; – = no stored reference "
        "for this env config and evaluation batch.",
        "",
    ]
    atomic_write_text(out / "benchmark.md", "\n".join(head) + markdown_tables(results) + "\n")
    plot_curves(results, out)


def merge_results(dirs: Sequence[str | Path]) -> dict:
    """One result from the ``benchmark.json`` of several runs of the same benchmark (split by
    ``--envs``, ``--algos`` or ``--seeds`` to use several processes): runs concatenated,
    env and algorithm lists united, summary recomputed."""
    parts = []
    for d in dirs:
        path = Path(d) / "benchmark.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        parts.append(json.loads(path.read_text()))
    first = parts[0]
    config = dict(first["config"])
    envs = {e["label"]: e for p in parts for e in p["config"]["envs"]}
    config["envs"] = list(envs.values())
    config["algos"] = list(dict.fromkeys(a for p in parts for a in p["config"]["algos"]))
    config["seeds"] = sorted({s for p in parts for s in p["config"]["seeds"]})
    runs = [r for p in parts for r in p["runs"]]
    fields = {f.name for f in dataclasses.fields(RunResult)}
    return {
        "config": config,
        "machine": first["machine"],
        "baselines": {k: v for p in parts for k, v in p["baselines"].items()},
        "runs": runs,
        "summary": summarize([RunResult(**{k: r[k] for k in fields}) for r in runs]),
    }
