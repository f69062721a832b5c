"""Measure the shipped digits model: FD_digits / precision / recall / class accuracy tables
and a sample grid.

    python -m diffusion_gym.digits_eval --out docs --num-samples 1000

writes ``<out>/img/digits_samples.png`` (``--grid-only``: only that, from 100 samples) and
``<out>/digits_eval.json``, and prints markdown tables: (1) the model at 35 Heun NFE
(18 steps, EDM ρ = 7) against the real-data reference FD(train subset vs test) with the same
number of images; (2) at NFE 9 (5 Heun steps) EDM ρ = 7 against uniform-in-σ and
log-linear, and the guidance weight w ∈ {1, 1.5, 2, 3}. All samples share the same x_T
(fixed seed) and class labels (balanced, 0..9 repeated).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from . import presets, schedules, steps
from .denoisers.classifier import digits_metrics, load_digits_classifier

__all__ = ["sample_digits", "reference_metrics", "save_grid", "main"]


def sample_digits(
    preset, num_samples: int, sigmas: torch.Tensor, guidance: float = 1.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_samples`` class-balanced samples (labels i mod 10) with a deterministic Heun
    sampler from x_T = prior_std · N(0, I) drawn with ``seed``; returns ``(x0, labels)``."""
    labels = torch.arange(num_samples) % 10
    g = torch.Generator().manual_seed(seed)
    x_t = preset.prior_std * torch.randn(num_samples, 1, 8, 8, generator=g)
    w = None if guidance == 1.0 else guidance
    x0 = steps.sample(preset.denoiser, x_t, sigmas, class_labels=labels, guidance=w)
    return x0, labels


def reference_metrics(preset, num_samples: int, classifier, seed: int = 0) -> dict:
    """Metrics of ``num_samples`` real training images (without replacement when possible)
    against the test set: the floor a perfect model would reach at this sample size."""
    data = preset.data
    g = torch.Generator().manual_seed(seed)
    n_train = len(data.train_labels)
    if num_samples <= n_train:
        idx = torch.randperm(n_train, generator=g)[:num_samples]
    else:
        idx = torch.randint(n_train, (num_samples,), generator=g)
    return digits_metrics(data.train_images[idx], data.train_labels[idx], classifier=classifier)


def save_grid(x: torch.Tensor, labels: torch.Tensor, path: str | Path, per_class: int = 10):
    """A 10 × ``per_class`` PNG grid of digits (one row per class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One-pixel background (−1) border around every 8×8 digit.
    cells = torch.nn.functional.pad(x[:, 0].clamp(-1, 1), (1, 1, 1, 1), value=-1.0)
    rows = [cells[labels == c][:per_class] for c in range(10)]
    img = torch.cat([torch.cat(list(r), dim=1) for r in rows], dim=0)
    fig, ax = plt.subplots(figsize=(per_class * 0.6, 10 * 0.6), dpi=100)
    ax.imshow(img.clamp(-1, 1).numpy(), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)


def _row(name: str, nfe: int, m: dict) -> str:
    return (
        f"| {name} | {nfe} | {m['fd']:.2f} | {m['precision']:.3f} | {m['recall']:.3f} | "
        f"{m['class_accuracy']:.3f} | {m['class_tv']:.3f} |"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m diffusion_gym.digits_eval", description=__doc__)
    p.add_argument("--out", default="docs", help="folder for digits_eval.json and img/")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--sigma-max", type=float, default=None, help="override the preset's σ_max")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--grid-only", action="store_true", help="only write the sample grid")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    kw = {} if a.sigma_max is None else {"sigma_max": a.sigma_max}
    preset = presets.make("digits", **kw)
    clf = load_digits_classifier()
    lo, hi = preset.sigma_min, preset.sigma_max
    if a.grid_only:
        x0, labels = sample_digits(preset, 100, schedules.karras(18, lo, hi), 1.0, a.seed)
        save_grid(x0, labels, Path(a.out) / "img" / "digits_samples.png")
        return
    runs = [("real train images (reference)", 0, None, None)]
    runs += [
        (f"EDM rho=7, Heun 18 steps, w={w}", 35, schedules.karras(18, lo, hi), w)
        for w in (1.0, 2.0)
    ]
    runs += [
        ("EDM rho=7, Heun 5 steps, w=1", 9, schedules.karras(5, lo, hi), 1.0),
        ("uniform, Heun 5 steps, w=1", 9, schedules.uniform(5, lo, hi), 1.0),
        ("log-linear, Heun 5 steps, w=1", 9, schedules.log_linear(5, lo, hi), 1.0),
    ]
    runs += [
        (f"EDM rho=7, Heun 5 steps, w={w}", 9, schedules.karras(5, lo, hi), w)
        for w in (1.5, 2.0, 3.0)
    ]
    results, lines = {}, []
    head = "| strategy | NFE | FD_digits | precision | recall | class acc. | class TV |"
    lines += [head, "|---|---|---|---|---|---|---|"]
    for name, nfe, sigmas, w in runs:
        t0 = time.time()
        if sigmas is None:
            m = reference_metrics(preset, a.num_samples, clf, a.seed)
        else:
            x0, labels = sample_digits(preset, a.num_samples, sigmas, w, a.seed)
            m = digits_metrics(x0, labels, classifier=clf)
            if nfe == 35 and w == 1.0:
                save_grid(x0, labels, Path(a.out) / "img" / "digits_samples.png")
        m["seconds"] = round(time.time() - t0, 1)
        results[name] = {"nfe": nfe, **m}
        lines.append(_row(name, nfe, m))
        print(lines[-1], flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    meta = {"num_samples": a.num_samples, "sigma_max": hi, "seed": a.seed}
    (Path(a.out) / "digits_eval.json").write_text(
        json.dumps({"settings": meta, **results}, indent=2)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
