"""Measure the shipped digits model: FD_digits / precision / recall / class accuracy tables
and a sample grid.

    python -m baselines.digits --out docs --num-samples 1000

writes ``<out>/img/digits_samples.png`` (``--grid-only``: only that, from 100 samples) and
``<out>/digits_eval.json``, and prints markdown tables: (1) the model at 35 Heun NFE
(18 steps, EDM ρ = 7) against the real-data reference FD(train subset vs test) with the same
number of images; (2) at NFE 9 (5 Heun steps) EDM ρ = 7 against uniform-in-σ and
log-linear, and the guidance weight w ∈ {1, 1.5, 2, 3}. All samples share the same x_T
(fixed seed) and class labels (balanced, 0..9 repeated).

The sampled rows run through the evaluation harness (:func:`baselines.evaluate.evaluate`,
one call, one seed): each row is a :class:`~baselines.evaluate.FixedSchedule`, the digits
metrics are the harness's :func:`~baselines.evaluate.digits_metric_fns` with the loaded
classifier, and x_T comes from :func:`digits_noise` (``prior_std · torch.randn`` from a
generator seeded with ``--seed``, the noise these figures were always drawn on). The
real-data reference row is not a sampler and is measured beside the harness.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffusion_gym import presets, schedules
from diffusion_gym.denoisers.classifier import load_digits_classifier
from diffusion_gym.io import atomic_write_text
from diffusion_gym.metrics import digits_metrics
from diffusion_gym.noise import SampleStreams, derive_keys

from .evaluate import FixedSchedule, digits_metric_fns, evaluate
from .plotting import plot_digit_grid

__all__ = ["digits_noise", "digits_strategies", "reference_metrics", "save_grid", "main"]

#: Harness metric → key of the ``digits_eval.json`` row, in the order of that file.
_COLUMNS = {
    "fd_digits": "fd",
    "digits_precision": "precision",
    "digits_recall": "recall",
    "digits_class_acc": "class_accuracy",
    "digits_class_tv": "class_tv",
}
#: Name of the row whose samples are drawn as the grid.
GRID_ROW = "EDM rho=7, Heun 18 steps, w=1.0"

save_grid = plot_digit_grid


def digits_noise(preset, num_samples: int, seed: int) -> tuple[torch.Tensor, SampleStreams]:
    """x_T = prior_std · N(0, I) ``[N, 1, 8, 8]`` from ``torch.Generator().manual_seed(seed)``
    and the standard per-sample streams of ``seed`` (unused: every row is deterministic)."""
    g = torch.Generator().manual_seed(seed)
    x_T = preset.prior_std * torch.randn(num_samples, *preset.denoiser.shape, generator=g)  # noqa: N806
    return x_T, SampleStreams(derive_keys(torch.arange(num_samples), salt=int(seed)))


def digits_strategies(preset) -> list[FixedSchedule]:
    """The sampled rows: Heun 18 steps (NFE 35) at w ∈ {1, 2}; Heun 5 steps (NFE 9) EDM ρ = 7,
    uniform and log-linear at w = 1, and EDM ρ = 7 at w ∈ {1.5, 2, 3}."""
    lo, hi = preset.sigma_min, preset.sigma_max
    rows = [
        FixedSchedule(f"EDM rho=7, Heun 18 steps, w={w}", schedules.karras(18, lo, hi), guidance=w)
        for w in (1.0, 2.0)
    ]
    rows += [
        FixedSchedule("EDM rho=7, Heun 5 steps, w=1", schedules.karras(5, lo, hi)),
        FixedSchedule("uniform, Heun 5 steps, w=1", schedules.uniform(5, lo, hi)),
        FixedSchedule("log-linear, Heun 5 steps, w=1", schedules.log_linear(5, lo, hi)),
    ]
    rows += [
        FixedSchedule(f"EDM rho=7, Heun 5 steps, w={w}", schedules.karras(5, lo, hi), guidance=w)
        for w in (1.5, 2.0, 3.0)
    ]
    return rows


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


def _row(name: str, nfe: int, m: dict) -> str:
    return (
        f"| {name} | {nfe} | {m['fd']:.2f} | {m['precision']:.3f} | {m['recall']:.3f} | "
        f"{m['class_accuracy']:.3f} | {m['class_tv']:.3f} |"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m baselines.digits", description=__doc__)
    p.add_argument("--out", default="docs", help="folder for digits_eval.json and img/")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--sigma-max", type=float, default=None, help="override the preset's σ_max")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--grid-only", action="store_true", help="only write the sample grid")
    return p


def main(argv: list[str] | None = None) -> None:
    a = _parser().parse_args(argv)
    torch.set_num_threads(a.threads)
    kw = {} if a.sigma_max is None else {"sigma_max": a.sigma_max}
    preset = presets.make("digits", **kw)
    clf = load_digits_classifier()
    grid_path = Path(a.out) / "img" / "digits_samples.png"
    rows = digits_strategies(preset)
    grid_row = next(s for s in rows if s.name == GRID_ROW)
    seeds = [a.seed]  # the one place the seed is set: x_T, labels and reference subset
    if a.grid_only:
        samples: dict[str, torch.Tensor] = {}
        evaluate(
            [grid_row], preset, num_samples=100, seeds=seeds, metrics=["nfe"],
            progress=False, samples_out=samples, noise=digits_noise,
        )  # fmt: skip
        save_grid(samples[GRID_ROW], torch.arange(100) % 10, grid_path)
        return
    head = "| strategy | NFE | FD_digits | precision | recall | class acc. | class TV |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    t0 = time.time()
    ref = reference_metrics(preset, a.num_samples, clf, a.seed)
    ref["seconds"] = round(time.time() - t0, 1)
    results = {"real train images (reference)": {"nfe": 0, **ref}}
    lines.append(_row("real train images (reference)", 0, ref))
    print(lines[-1], flush=True)
    samples = {}
    t0 = time.time()
    res = evaluate(
        rows,
        preset,
        num_samples=a.num_samples,
        seeds=seeds,
        metrics=list(_COLUMNS),
        progress=False,
        samples_out=samples,
        extra_metrics=digits_metric_fns(clf),
        noise=digits_noise,
    )
    seconds = round((time.time() - t0) / len(rows), 1)  # the harness times the batch
    for s in rows:
        m = {key: res[s.name][metric]["mean"] for metric, key in _COLUMNS.items()}
        m["seconds"] = seconds
        results[s.name] = {"nfe": s.nfe, **m}
        lines.append(_row(s.name, s.nfe, m))
        print(lines[-1], flush=True)
    labels = torch.arange(a.num_samples) % 10
    save_grid(samples[GRID_ROW], labels, grid_path)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    meta = {"num_samples": a.num_samples, "sigma_max": preset.sigma_max, "seed": a.seed}
    atomic_write_text(
        Path(a.out) / "digits_eval.json", json.dumps({"settings": meta, **results}, indent=2)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
