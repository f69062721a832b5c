"""Guidance baselines on a digits model: best constant (w, γ), best guidance interval and
autoguidance, searched on training noise, then scored on the same evaluation noise.

    python -m baselines.digits_baselines --preset digits-imperfect --nfe 9 35 \\
        --num-samples 1000 --train-seeds 0 1 2 --out runs/digits-baselines

For each NFE (Heun, EDM ρ = 7, ``steps_for_nfe``) and each *training seed* s (the seed of
the searches' noise, salt ``TRAIN_SALT + s``; the searches are these baselines' training):

- constant: every (w, γ) of ``--w-grid`` × ``--gamma-grid`` (γ: EDM churn at every step);
- interval: guidance w of ``--interval-w`` on a contiguous run of steps, 1 elsewhere
  (Kynkäänniemi et al. 2024); runs of the schedule's steps (grouped into at most
  ``--interval-groups`` contiguous blocks when there are more steps);
- autoguidance: w of ``--ag-grid``, the preset guided by its weaker version (``--guide``,
  default :data:`baselines.autoguidance.GUIDES`);

each candidate scored by FD_digits of ``--search-samples`` samples against training images
(:func:`baselines.autoguidance.training_score`, ``metric="fd_digits"``). The chosen rows
and the unguided model (w = 1) then run through the evaluation harness on ONE evaluation
noise (``--eval-seed``, ``--num-samples`` class-balanced samples, metrics against the 450
test images): FD_digits, precision, recall, class accuracy. With several training seeds
the table shows mean ± std over them (:func:`baselines.metrics.aggregate_seeds`).

Writes ``<out>/digits_baselines.json`` (every score of every search, the chosen parameters,
the metrics) and ``<out>/digits_baselines.md``, and a PNG grid per row of the first seed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diffusion_gym import presets as _presets
from diffusion_gym import schedules
from diffusion_gym.io import atomic_write_text
from diffusion_gym.steps import steps_for_nfe

from . import autoguidance as AG  # noqa: N812
from .evaluate import FixedSchedule, evaluate
from .guidance import interval_weights
from .metrics import aggregate_seeds, format_mean_std
from .plotting import plot_digit_grid

__all__ = ["interval_candidates", "search_all", "run", "main"]

#: Harness metrics of the table (FD_digits brings precision and recall).
METRICS = ["fd_digits", "digits_precision", "digits_recall", "digits_class_acc"]
ROWS = ("no guidance (w=1)", "best constant", "best interval", "autoguidance")
SEARCHES = ("constant", "interval", "autoguidance")


def interval_candidates(sigmas, weights, max_groups: int = 6) -> dict[tuple, list[float]]:
    """``{(w, σ_lo, σ_hi): per-step weights}``: w on every contiguous run of steps (of at
    most ``max_groups`` contiguous blocks of steps when the schedule has more steps)."""
    sig = schedules.validate(torch.as_tensor(sigmas, dtype=torch.float64))[:-1].tolist()
    n = len(sig)
    g = min(n, max_groups)
    bounds = [round(i * n / g) for i in range(g + 1)]  # block j: steps bounds[j]..bounds[j+1]-1
    out = {}
    for w in weights:
        for a in range(g):
            for b in range(a, g):
                hi, lo = sig[bounds[a]], sig[bounds[b + 1] - 1]
                out[(float(w), lo, hi)] = interval_weights(sigmas, w, lo, hi)
    return out


def search_all(preset, sigmas, a: argparse.Namespace, seed: int, log=print) -> dict:
    """The searches of ``a.searches`` on training seed ``seed``: ``{kind: (best key, {key:
    score})}``."""
    cands = {
        "constant": lambda: {
            (float(w), float(g)): FixedSchedule("c", sigmas, guidance=float(w), gamma=float(g))
            for w in a.w_grid
            for g in a.gamma_grid
        },
        "interval": lambda: {
            k: FixedSchedule("i", sigmas, guidance=v)
            for k, v in interval_candidates(sigmas, a.interval_w, a.interval_groups).items()
        },
        "autoguidance": lambda: {
            float(w): AG.Autoguidance("a", sigmas, a.guide, float(w)) for w in a.ag_grid
        },
    }
    found = {}
    for kind in a.searches:
        t0 = time.perf_counter()
        c = cands[kind]()
        found[kind] = AG.search_strategies(preset, c, a.search_samples, seed, "fd_digits")
        dt = time.perf_counter() - t0
        log(f"  seed {seed} {kind}: best {found[kind][0]} of {len(c)} ({dt:.0f} s)")
    return found


def _rows(sigmas, found: dict, guide) -> dict:
    """``{row name: (strategy, chosen parameters)}``: w = 1 and the best of each search."""
    rows = {ROWS[0]: (FixedSchedule(ROWS[0], sigmas), "w = 1")}
    if "constant" in found:
        (w, g), _ = found["constant"]
        s = FixedSchedule(ROWS[1], sigmas, guidance=w, gamma=g)
        rows[ROWS[1]] = (s, f"w = {w:g}, γ = {g:g}")
    if "interval" in found:
        (wi, lo, hi), _ = found["interval"]
        s = FixedSchedule(ROWS[2], sigmas, guidance=interval_weights(sigmas, wi, lo, hi))
        rows[ROWS[2]] = (s, f"w = {wi:g} for σ ∈ [{lo:.3g}, {hi:.3g}]")
    if "autoguidance" in found:
        wa, _ = found["autoguidance"]
        rows[ROWS[3]] = (AG.Autoguidance(ROWS[3], sigmas, guide, wa), f"w = {wa:g}")
    return rows


def run(a: argparse.Namespace) -> dict:
    """Every NFE × training seed (see the module docstring); returns the JSON written (also
    written after each NFE, so a long run keeps its finished sections)."""
    preset = _presets.make(a.preset)
    guide = a.guide or AG.default_guide(a.preset)
    a.guide = guide
    out = Path(a.out)
    report: dict = {"settings": dict(vars(a)), "nfe": {}}
    md = [f"# Guidance baselines on `{a.preset}` (autoguidance by `{guide}`)", ""]
    for nfe in a.nfe:
        n = steps_for_nfe(nfe, "heun")
        sig = schedules.karras(n, preset.sigma_min, preset.sigma_max)
        per_seed, params, searches = {}, {}, {}
        t0 = time.perf_counter()
        for seed in tqdm(a.train_seeds, desc=f"NFE {nfe}", disable=a.no_progress):
            found = search_all(preset, sig, a, seed)
            rows = _rows(sig, found, guide)
            samples: dict = {}
            res = evaluate([s for s, _ in rows.values()], preset, num_samples=a.num_samples,
                           seeds=[a.eval_seed], metrics=METRICS, progress=False,
                           samples_out=samples)  # fmt: skip
            per_seed[seed] = {f"{r}|{m}": res[r][m]["mean"] for r in rows for m in METRICS}
            params[seed] = {r: p for r, (_, p) in rows.items()}
            searches[seed] = {k: {str(kk): v for kk, v in sc.items()}
                              for k, (_, sc) in found.items()}  # fmt: skip
            if seed == a.train_seeds[0]:
                labels = torch.arange(a.num_samples) % 10
                for i, r in enumerate(ROWS):
                    if r in samples:
                        path = out / f"nfe{nfe}_row{i}.png"
                        plot_digit_grid(samples[r].float().cpu(), labels, path)
        agg = aggregate_seeds(per_seed)
        report["nfe"][str(nfe)] = {"steps": n, "sigmas": sig.tolist(), "params": params,
                                   "searches": searches, "metrics": agg,
                                   "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        head = (
            "| strategy | chosen (per training seed) | FD_digits | precision | recall | class acc."
        )
        head += " |"
        md += [f"## NFE {nfe} (Heun, {n} steps, EDM ρ = 7)", "", head, "|---|---|---|---|---|---|"]
        for r in params[a.train_seeds[0]]:
            chosen = "; ".join(params[s][r] for s in a.train_seeds)
            cells = [
                format_mean_std(agg[f"{r}|{m}"], 2 if m == "fd_digits" else 3) for m in METRICS
            ]
            md.append(f"| {r} | {chosen} | " + " | ".join(cells) + " |")
        md.append("")
        atomic_write_text(out / "digits_baselines.json", json.dumps(report, indent=2))
        atomic_write_text(out / "digits_baselines.md", "\n".join(md))
        print("\n".join(md[-len(ROWS) - 5 :]), flush=True)
    return report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m baselines.digits_baselines", description=__doc__)
    p.add_argument("--preset", default="digits-imperfect")
    p.add_argument("--guide", default=None, help="guiding preset (default: the shipped pair)")
    p.add_argument("--nfe", type=int, nargs="+", default=[9, 35], help="odd Heun budgets")
    p.add_argument("--num-samples", type=int, default=1000, help="evaluation samples")
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0], help="search seeds")
    p.add_argument("--search-samples", type=int, default=256)
    p.add_argument("--w-grid", type=float, nargs="+", default=[1.0, 1.25, 1.5, 1.75, 2.0, 2.5])
    p.add_argument("--gamma-grid", type=float, nargs="+", default=[0.0, 0.1, 0.3])
    p.add_argument("--interval-w", type=float, nargs="+", default=[1.5, 2.0, 3.0])
    p.add_argument("--interval-groups", type=int, default=6)
    p.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=SEARCHES)
    p.add_argument("--ag-grid", type=float, nargs="+", default=list(AG.AUTOGUIDANCE_GRID))
    p.add_argument("--out", default="runs/digits-baselines")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    a = _parser().parse_args(argv)
    for nfe in a.nfe:
        try:
            steps_for_nfe(nfe, "heun")
        except ValueError as e:
            raise SystemExit(f"--nfe: {e}") from None
    if min(a.num_samples, a.search_samples) < 4 or a.interval_groups < 1:
        raise SystemExit("--num-samples and --search-samples must be >= 4, --interval-groups >= 1")
    _presets.check_name(a.preset)
    if a.guide is not None:
        _presets.check_name(a.guide)
    else:
        AG.default_guide(a.preset)
    torch.set_num_threads(a.threads)
    run(a)


if __name__ == "__main__":
    main()
