"""Evaluation of a trained :class:`~agents.irl.trainer.IRLTrainer` through the harness
(:mod:`baselines.evaluate`): the learned policy (and its τ sweep) against every constant
(w, γ) on the same noise → ``eval.json``, ``eval.md``, ``summary.json`` and PNGs (image
presets: ``samples_grid.png``, the best constant beside the policy on the same x_T).

``python -m agents.irl.report RUN_DIR --out DIR`` re-evaluates a finished run (its config's
``eval`` section, the policy its own evaluation used) into ``DIR``: the same figures, and
the files of a run made before a report file existed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from baselines.evaluate import HIGHER_IS_BETTER, evaluate, markdown_table, write_report
from baselines.plotting import plot_image_grids
from diffusion_gym.io import atomic_save_via, atomic_write_json
from diffusion_gym.noise import make_labels, make_noise

from .config import EvalConfig
from .diagnose import load_run
from .strategy import baseline_strategies
from .trainer import IRLTrainer

__all__ = ["evaluate_trainer", "quick_eval", "summarize", "summary_markdown", "table_legend"]


def _fmt_tau(t: float) -> str:
    return f"{t:g}"


def evaluate_trainer(trainer: IRLTrainer, out_dir: Path | None, progress: bool = True) -> dict:
    """Final evaluation: learned policy (+ τ sweep) vs constant baselines, same noise."""
    cfg = trainer.cfg.eval
    policy_rows = [trainer.strategy("irl-policy", cfg.temperature)]
    policy_rows += [trainer.strategy(f"irl-tau{_fmt_tau(t)}", t) for t in cfg.temperatures]
    baselines = baseline_strategies(trainer.env, cfg)
    samples: dict[str, torch.Tensor] = {}
    results = evaluate(
        policy_rows + baselines,
        trainer.env.preset,
        num_samples=cfg.num_samples,
        seeds=cfg.seeds,
        class_labels=cfg.class_labels,
        metrics=cfg.metrics,
        progress=progress,
        samples_out=samples,
    )
    summary = summarize(results, [s.name for s in baselines], cfg)
    if out_dir is not None:
        best = summary.get("best_constant")
        keep = {"__data__", "irl-policy"} | ({best} if best else set())
        write_report(
            results,
            out_dir,
            title=f"IRL policy vs constant guidance on {trainer.env.preset.name}",
            plots={
                "strategies": policy_rows[:1] + [s for s in baselines if s.name == best],
                "samples": {k: v for k, v in samples.items() if k in keep},
            },
            summary=summary_markdown(summary),
        )
        atomic_write_json(out_dir / "summary.json", summary)
        _plot_policy(trainer, out_dir / "policy_actions.png")
        pol = samples.get("irl-policy")
        if best and pol is not None and pol.ndim == 4:  # images: the best constant beside
            # the policy, same x_T and labels (the first evaluation seed)
            labels = make_labels(trainer.env.preset, cfg.num_samples, cfg.seeds[0],
                                 cfg.class_labels)  # fmt: skip
            plot_image_grids(samples, labels, [best, "irl-policy"],
                             [f"best constant ({best})", "IRL policy"],
                             out_dir / "samples_grid.png")  # fmt: skip
        if cfg.temperatures:
            _plot_temperature(results, policy_rows, out_dir / "temperature.png")
    print(markdown_table(results, f"IRL policy vs constant guidance ({trainer.env.preset.name})"))
    print(table_legend(cfg.metrics))
    print()
    print(summary_markdown(summary))
    return results


#: One-line meanings of the columns the IRL evaluation can show (``table_legend``).
METRIC_MEANINGS = {
    "energy": "energy distance to the data",
    "frechet": "Fréchet distance",
    "class_tv": "class-histogram total variation",
    "loglik": "mean exact log-likelihood under the data",
    "nfe": "denoiser calls per sample",
    "precision": "k-NN precision",
    "recall": "k-NN recall",
    "fd_digits": "Fréchet distance in the digits classifier's features",
}


def table_legend(metrics) -> str:
    """The line under the results table: what its rows and columns are."""
    cols = "; ".join(f"{m} = {METRIC_MEANINGS[m]}" for m in metrics if m in METRIC_MEANINGS)
    return (
        "Rows: irl-policy = the learned policy (irl-tauT: sampled at temperature T); "
        "const-wW-gG = the constant guidance weight w = W and churn γ = G at every step. "
        f"Columns: {cols}."
    )


def summarize(results: dict, baseline_names: list[str], cfg: EvalConfig) -> dict:
    """The best constant baseline per metric and the policy's relative improvement."""
    out: dict[str, Any] = {"metrics": {}}
    for m in cfg.metrics:
        rows = [(results[b][m]["mean"], b) for b in baseline_names if m in results[b]]
        if m == "nfe" or not rows or m not in results["irl-policy"]:
            continue
        pick = max if m in HIGHER_IS_BETTER else min
        best_v, best_name = pick(rows)
        pol = results["irl-policy"][m]["mean"]
        rel = (best_v - pol) / abs(best_v) if best_v != 0 else None
        if rel is not None and m in HIGHER_IS_BETTER:
            rel = -rel
        out["metrics"][m] = {
            "policy": pol,
            "best_constant": best_v,
            "best_constant_name": best_name,
            "relative_improvement": rel,
        }
    first = next(iter(out["metrics"].values()), None)
    out["best_constant"] = first["best_constant_name"] if first else None
    return out


def _improvement(s: dict, metric: str) -> str:
    """The relative improvement in %, or the absolute one where the best constant is 0 (a
    relative change is undefined there); negative = the policy is worse."""
    rel = s["relative_improvement"]
    if rel is not None:
        return f"{100 * rel:+.1f}%"
    gain = s["policy"] - s["best_constant"]
    gain = gain if metric in HIGHER_IS_BETTER else -gain
    return f"{gain:+.4g} (absolute; best constant is 0)"


def summary_markdown(summary: dict) -> str:
    lines = [
        "Learned policy against the best constant baseline of the grid, per metric "
        "(improvement = relative reduction of the distance, or gain of loglik; negative = "
        "the policy is worse).",
        "",
        "| metric | irl-policy | best constant | which | improvement |",
        "|---|---|---|---|---|",
    ]
    for m, s in summary["metrics"].items():
        lines.append(
            f"| {m} | {s['policy']:.4g} | {s['best_constant']:.4g} | {s['best_constant_name']} "
            f"| {_improvement(s, m)} |"
        )
    return "\n".join(lines)


def _plot_policy_values(roll, num_steps: int, path: Path) -> None:
    """Box actions: per step, the median and the 5–95 % and 25–75 % bands of the w and γ
    the deterministic policy chose over the samples."""
    fig = Figure(figsize=(10, 3.5))
    axes = fig.subplots(1, 2)
    ks = np.arange(num_steps)
    for ax, per_step, label in ((axes[0], roll.guidance, "w"), (axes[1], roll.gamma, "γ")):
        v = np.stack([t.detach().cpu().double().numpy() for t in per_step])  # [N, B]
        q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1)
        ax.fill_between(ks, q[0], q[4], alpha=0.2, label="5–95 %")
        ax.fill_between(ks, q[1], q[3], alpha=0.4, label="25–75 %")
        ax.plot(ks, q[2], "o-", label="median")
        ax.set_xlabel("step k")
        ax.set_ylabel(label)
        ax.set_title(f"{label} chosen per step (deterministic policy)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_via(path, lambda tmp: fig.savefig(tmp, dpi=100))


def _plot_policy(trainer: IRLTrainer, path: Path) -> None:
    """Per step: the share of samples choosing each w and each γ (deterministic policy), on
    the evaluation's first seed (at most 2048 samples)."""
    env, cfg = trainer.env, trainer.cfg.eval
    n = min(cfg.num_samples, 2048)
    x_T, streams = make_noise(env.preset, n, cfg.seeds[0])  # noqa: N806
    labels = make_labels(env.preset, n, cfg.seeds[0], cfg.class_labels)
    roll = trainer.strategy().rollout(x_T, labels, streams)
    table = env.action_table
    if table.action_format == "box":
        _plot_policy_values(roll, env.num_steps, path)
        return
    actions = roll.actions
    counts_w = np.zeros((env.num_steps, len(table.weights)))
    counts_g = np.zeros((env.num_steps, len(table.gammas)))
    for k in range(env.num_steps):
        wi, gi = table.decode(actions[k], n)
        counts_w[k] = np.bincount(wi, minlength=len(table.weights)) / n
        counts_g[k] = np.bincount(gi, minlength=len(table.gammas)) / n
    fig = Figure(figsize=(10, 3.5))
    axes = fig.subplots(1, 2)
    for ax, counts, values, label in (
        (axes[0], counts_w, table.weights, "w"),
        (axes[1], counts_g, table.gammas, "γ"),
    ):
        bottom = np.zeros(env.num_steps)
        for j, v in enumerate(values):
            ax.bar(np.arange(env.num_steps), counts[:, j], bottom=bottom, label=f"{label}={v:g}")
            bottom += counts[:, j]
        ax.set_xlabel("step k")
        ax.set_ylabel("share of samples")
        ax.set_title(f"{label} chosen per step (deterministic policy)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_via(path, lambda tmp: fig.savefig(tmp, dpi=100))


def _plot_temperature(results: dict, rows: list, path: Path) -> None:
    """Metrics of the τ sweep (precision and recall if measured) against τ."""
    taus = [(r.temperature, r.name) for r in rows if r.temperature is not None]
    taus.sort()
    names = ("precision", "recall", "energy", "digits_precision", "digits_recall", "fd_digits")
    metrics = [m for m in names if m in results[taus[0][1]]]
    if not metrics:
        return
    fig = Figure(figsize=(4 * len(metrics), 3.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        ax.plot([t for t, _ in taus], [results[n][m]["mean"] for _, n in taus], "o-")
        ax.set_xscale("log")
        ax.set_xlabel("temperature τ")
        ax.set_title(m)
    fig.tight_layout()
    atomic_save_via(path, lambda tmp: fig.savefig(tmp, dpi=100))


def quick_eval(trainer: IRLTrainer, writer, r: int) -> dict[str, float]:
    """The policy alone on ``eval.train_samples`` samples of the first seed → ``eval/``;
    returns ``{metric: mean}``."""
    cfg = trainer.cfg.eval
    res = evaluate(
        [trainer.strategy()],
        trainer.env.preset,
        num_samples=cfg.train_samples,
        seeds=cfg.seeds[:1],
        class_labels=cfg.class_labels,
        metrics=[m for m in cfg.metrics if m != "nfe"],
        progress=False,
    )
    for m, v in res["irl-policy"].items():
        writer.add_scalar(f"eval/{m}", v["mean"], r)
    return {m: v["mean"] for m, v in res["irl-policy"].items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.irl.report RUN_DIR --out DIR``: re-evaluate a finished run."""
    ap = argparse.ArgumentParser(prog="python -m agents.irl.report", description=__doc__)
    ap.add_argument("run", help="an IRL run directory (config.yaml, checkpoints/)")
    ap.add_argument("--out", required=True, help="directory of the new report files")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    try:
        trainer = load_run(a.run)
    except FileNotFoundError as e:
        print(f"agents.irl.report: error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    evaluate_trainer(trainer, out, progress=not a.no_progress)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
