"""Mean ± std over training seeds of IRL runs, and the temperature trade-off plot.

``python -m agents.irl.seeds RUN_DIR ... [--png F] [--metrics m ...]`` reads each run's
``eval.json`` (the final evaluation: ``irl-policy``, ``irl-tau{τ}`` and the constant rows, all
on the same evaluation noise) and prints one table: per row, every metric's mean ± std over the
runs (each run's value is its mean over evaluation seeds). With ``--png`` it draws precision,
recall and the first other metric against τ (τ → 0 = the argmax policy), mean ± std over the
runs, with the best constant of the first metric as a horizontal line.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from baselines.evaluate import HIGHER_IS_BETTER
from diffusion_gym.io import atomic_save_via

__all__ = ["load_evals", "over_seeds", "seeds_markdown", "plot_temperature", "main"]

_TAU = re.compile(r"irl-tau([0-9.e+-]+)")


def load_evals(run_dirs: list[str | Path]) -> list[dict[str, Any]]:
    """Each run's ``eval.json``; a missing one is a ``FileNotFoundError`` naming it."""
    out = []
    for d in run_dirs:
        p = Path(d) / "eval.json"
        if not p.is_file():
            raise FileNotFoundError(f"no eval.json in {str(d)!r}: not a finished IRL run")
        out.append(json.loads(p.read_text()))
    return out


def over_seeds(evals: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{row: {metric: {"mean", "std", "values"}}}`` over runs, for the rows and metrics
    every run has (a value per run: its mean over evaluation seeds)."""
    rows = set.intersection(*(set(e) for e in evals))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in sorted(rows):
        metrics = set.intersection(*(set(e[row]) for e in evals))
        out[row] = {}
        for m in sorted(metrics):
            if not all(isinstance(e[row][m], dict) and "mean" in e[row][m] for e in evals):
                continue
            v = np.array([float(e[row][m]["mean"]) for e in evals])
            std = float(v.std(ddof=1)) if len(v) > 1 and np.ptp(v) > 0 else 0.0  # sample std, as
            # baselines.aggregate_seeds (before 2026-12-01 evening: the population std)
            out[row][m] = {"mean": float(v.mean()), "std": std, "values": v.tolist()}
    return out


def _taus(table: dict) -> list[tuple[float, str]]:
    taus = [(float(m.group(1)), r) for r in table if (m := _TAU.fullmatch(r))]
    return sorted(taus)


def _best_constant(table: dict, metric: str) -> str | None:
    consts = [r for r in table if r.startswith("const-") and metric in table[r]]
    if not consts:
        return None
    pick = max if metric in HIGHER_IS_BETTER else min
    return pick(consts, key=lambda r: table[r][metric]["mean"])


def seeds_markdown(table: dict, metrics: list[str], n_runs: int) -> str:
    """The policy rows (argmax, then by τ) and the best constant of each metric."""
    rows = ["irl-policy", *(r for _, r in _taus(table))]
    best = {m: _best_constant(table, m) for m in metrics}
    rows += [b for b in dict.fromkeys(best.values()) if b is not None]
    head = "| row | " + " | ".join(metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 1)]
    for r in rows:
        if r not in table:
            continue
        cells = []
        for m in metrics:
            v = table[r].get(m)
            cells.append("–" if v is None else f"{v['mean']:.4g} ± {v['std']:.2g}")
        label = r + (" (best constant: " + ", ".join(m for m in metrics if best[m] == r) + ")"
                     if r in best.values() else "")  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Mean ± std over {n_runs} training seeds (each: mean over evaluation seeds).")
    return "\n".join(lines)


def plot_temperature(table: dict, metrics: list[str], path: str | Path, title: str = "") -> None:
    """``metrics`` against τ (mean ± std over runs), argmax at the left, the best constant as
    a dashed line."""
    taus = _taus(table)
    if not taus:
        raise ValueError("no irl-tau rows: train with eval.temperatures set")
    x0 = taus[0][0] / 3  # where the argmax policy (τ → 0) is drawn
    fig = Figure(figsize=(4 * len(metrics), 3.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics, strict=True):
        pts = [(x0, "irl-policy"), *taus]
        xs = [t for t, r in pts if m in table.get(r, {})]
        mu = np.array([table[r][m]["mean"] for t, r in pts if m in table.get(r, {})])
        sd = np.array([table[r][m]["std"] for t, r in pts if m in table.get(r, {})])
        ax.errorbar(xs, mu, yerr=sd, fmt="o-", capsize=3, label="IRL policy (argmax at left)")
        best = _best_constant(table, m)
        if best is not None and math.isfinite(table[best][m]["mean"]):
            ax.axhline(table[best][m]["mean"], ls="--", c="gray", label=best)
        ax.set_xscale("log")
        ax.set_xlabel("temperature τ")
        ax.set_title(m)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_save_via(Path(path), lambda tmp: fig.savefig(tmp, dpi=100))


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.irl.seeds RUN_DIR ... [--metrics ...] [--png F] [--title T]``."""
    ap = argparse.ArgumentParser(
        prog="python -m agents.irl.seeds", description=__doc__.split("\n")[0]
    )
    ap.add_argument("runs", nargs="+", help="finished IRL run directories (one per seed)")
    ap.add_argument("--metrics", nargs="+", default=["energy", "precision", "recall"])
    ap.add_argument("--png", help="write the temperature plot here")
    ap.add_argument("--title", default="")
    a = ap.parse_args(argv)
    try:
        table = over_seeds(load_evals(a.runs))
        unknown = [m for m in a.metrics if m not in table.get("irl-policy", {})]
        if unknown:
            raise ValueError(f"metric(s) {unknown} not in the runs' eval.json")
    except (ValueError, FileNotFoundError) as e:
        print(f"agents.irl.seeds: error: {e}", file=sys.stderr)
        return 2
    print(seeds_markdown(table, a.metrics, len(a.runs)))
    if a.png:
        plot_temperature(table, a.metrics, a.png, a.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
