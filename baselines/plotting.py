"""PNG plots of the evaluation reports: schedules, guidance curves, samples, metric vs NFE,
digit grids.

matplotlib with the Agg backend (no display needed); every function returns the path(s)
it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

from diffusion_gym.io import atomic_save_via  # noqa: E402

__all__ = ["plot_strategies", "plot_samples", "plot_metric_vs_nfe", "plot_digit_grid"]


def _mean_guidance(g) -> list[float]:
    """Per-step w; a per-class ``[n][C]`` list is averaged over classes."""
    return [sum(v) / len(v) if isinstance(v, (list, tuple)) else float(v) for v in g]


def plot_strategies(descriptions: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """``schedules.png`` (σ_i vs step, log σ axis) and ``guidance.png`` (w against σ, log σ
    axis; per-class curves averaged; only rows with some w ≠ 1) from descriptions."""
    files: dict[str, Path] = {}
    with_sig = [d for d in descriptions if d.get("sigmas")]
    if with_sig:
        fig, ax = plt.subplots(figsize=(6, 4))
        for d in with_sig:
            s = [v for v in d["sigmas"] if v > 0]
            ax.plot(range(len(s)), s, marker="o", ms=3, label=d["name"])
        ax.set(yscale="log", xlabel="step i", ylabel="σ_i (final 0 not shown)", title="schedules")
        ax.legend(fontsize=7)
        fig.tight_layout()
        files["schedules"] = out / "schedules.png"
        atomic_save_via(files["schedules"], lambda tmp: fig.savefig(tmp, dpi=110))
        plt.close(fig)
    with_w = [
        d
        for d in descriptions
        if d.get("guidance")
        and d.get("sigmas")
        and any(w != 1 for w in _mean_guidance(d["guidance"]))
    ]
    if with_w:
        fig, ax = plt.subplots(figsize=(6, 4))
        for d in with_w:
            w = _mean_guidance(d["guidance"])
            sig = d["sigmas"][: len(w)]
            ax.step(sig, w, where="post", marker="o", ms=3, label=d["name"])
        ax.set(xscale="log", xlabel="σ (step start)", ylabel="guidance w", title="w(σ)")
        ax.invert_xaxis()
        ax.legend(fontsize=7)
        fig.tight_layout()
        files["guidance"] = out / "guidance.png"
        atomic_save_via(files["guidance"], lambda tmp: fig.savefig(tmp, dpi=110))
        plt.close(fig)
    return files


def plot_samples(samples: dict[str, torch.Tensor], path: Path, title: str = "") -> Path | None:
    """Scatter of 2-D samples, one panel per strategy (``"__data__"`` = the true data)."""
    items = [(k, v) for k, v in samples.items() if v.reshape(v.shape[0], -1).shape[1] == 2]
    if not items:
        return None
    cols = min(4, len(items))
    rows = (len(items) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax, (k, v) in zip(axes.flat, items, strict=False):
        x = v.reshape(v.shape[0], -1).detach().cpu().double().numpy()[:2000]
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
        ax.set_title("data" if k == "__data__" else k, fontsize=8)
        ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), aspect="equal")
    for ax in list(axes.flat)[len(items) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_save_via(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return path


def plot_image_grids(
    samples: dict[str, torch.Tensor],
    labels: torch.Tensor,
    names: list[str],
    titles: list[str],
    path: Path,
    per_class: int = 10,
) -> Path:
    """Side-by-side grids of image samples ``[B, 1, H, W]`` in [−1, 1], one panel per named
    row, each panel one row of ``per_class`` samples per class (``labels [B]``: the requested
    classes, shared by the rows: the harness samples every row on the same x_T and labels)."""
    labels = torch.as_tensor(labels).cpu()
    classes = sorted(int(c) for c in labels.unique())
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.6), dpi=100, squeeze=False)
    for ax, name, title in zip(axes[0], names, titles, strict=True):
        x = samples[name].detach().cpu().float()
        cells = torch.nn.functional.pad(x[:, 0].clamp(-1, 1), (1, 1, 1, 1), value=-1.0)
        blank = torch.full_like(cells[0], -1.0)  # a class with fewer samples: blank cells
        rows = [list(cells[labels == c][:per_class]) for c in classes]
        rows = [r + [blank] * (per_class - len(r)) for r in rows]
        img = torch.cat([torch.cat(r, dim=1) for r in rows], dim=0)
        ax.imshow(img.numpy(), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_save_via(path, lambda tmp: fig.savefig(tmp, bbox_inches="tight", pad_inches=0.05))
    plt.close(fig)
    return Path(path)


def plot_metric_vs_nfe(
    by_nfe: dict[str, dict[int, dict]], metric: str, path: Path, title: str = ""
) -> Path:
    """``metric`` (mean ± std) against NFE, one line per strategy name, log y axis."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in by_nfe.items():
        pts = sorted((n, r[metric]) for n, r in rows.items() if metric in r)
        if not pts:
            continue
        xs = [n for n, _ in pts]
        ax.errorbar(
            xs,
            [m["mean"] for _, m in pts],
            yerr=[m["std"] for _, m in pts],
            marker="o",
            ms=3,
            capsize=2,
            label=name,
        )
    ax.set(yscale="log", xlabel="NFE", ylabel=metric, title=title or f"{metric} vs NFE")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_via(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def plot_digit_grid(
    x: torch.Tensor, labels: torch.Tensor, path: str | Path, per_class: int = 10
) -> Path:
    """A 10 × ``per_class`` PNG grid of 8×8 digits ``[N, 1, 8, 8]`` (one row per class)."""
    # One-pixel background (−1) border around every 8×8 digit.
    cells = torch.nn.functional.pad(x[:, 0].clamp(-1, 1), (1, 1, 1, 1), value=-1.0)
    rows = [cells[labels == c][:per_class] for c in range(10)]
    img = torch.cat([torch.cat(list(r), dim=1) for r in rows], dim=0)
    fig, ax = plt.subplots(figsize=(per_class * 0.6, 10 * 0.6), dpi=100)
    ax.imshow(img.clamp(-1, 1).numpy(), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_save_via(path, lambda tmp: fig.savefig(tmp, bbox_inches="tight", pad_inches=0.05))
    plt.close(fig)
    return Path(path)
