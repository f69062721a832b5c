"""Guidance on digits in one harness: constant, limited-interval, ramps and Learn to Guide
(class-conditional, and its reward-tilted variant), scored by FD_digits, precision/recall and
class accuracy on the same noise.

    python -m baselines.digits_guidance --preset digits --nfe 9 --train-seeds 0 1 2 \\
        --tilts 1 2 4 --out runs/l2g-digits

Every row is sampled by :func:`baselines.evaluate.evaluate` on the x_T of
:func:`baselines.digits.digits_noise` (seed ``--seed``, class-balanced labels 0..9 repeated)
and scored with the harness's digits metrics (:func:`baselines.evaluate.digits_metric_fns`),
exactly as ``python -m baselines.digits`` scores its rows:

- ``cfg-<w>``: every constant w of ``--constants`` (all evaluated; the best of them by
  FD_digits on the evaluation noise is reported as ``best constant``: a conservative
  comparison, the baseline gets to pick on the test noise);
- ``interval``: limited-interval guidance (Kynkäänniemi et al. 2024), (w, σ_lo, σ_hi) picked by
  :func:`baselines.guidance.training_energy` on training noise among contiguous runs of the
  schedule's steps whose ends lie on every ``--interval-stride``-th step;
- ``ramp-linear`` / ``ramp-cosine``: w_max picked the same way (:func:`~baselines.guidance.
  search_ramp`);
- ``autoguidance`` (Karras et al. 2024): the model guided by its shipped weaker version
  (:data:`baselines.autoguidance.GUIDES`), w picked the same way
  (:func:`~baselines.autoguidance.search_autoguidance`); left out where no guide is shipped;
- ``learn-to-guide-s<k>``: :func:`baselines.guidance.train_learn_to_guide` with training seed
  k (energy loss, ``start="sampler"``, class embedding), one row per seed;
- ``learn-to-guide-auto-s<k>`` (with ``--auto-l2g``): the same loss with ω_φ weighting the
  autoguidance direction D_bad + (1 + ω)(D_good − D_bad) of the shipped guide
  (:attr:`~baselines.guidance.L2GConfig.guide`), started at the autoguidance row's w;
- ``learn-to-guide-tilt<λ>``: the same with the reward-tilted target p_λ(x|c) ∝
  p(x|c)·p(c|x)^λ (R = log p(c | x) of the shipped classifier; training seed of the first
  ``--train-seeds``).

``--space features`` trains every Learn to Guide row in the features of the shipped
*training* classifier (:attr:`~baselines.guidance.L2GConfig.space`); FD_digits and the other
metrics use the metric classifier, and ``FD (clf B)`` (``fd_digits_b``) is FD in the training
classifier's features, shown for every row.

Writes ``<out>/<preset>_nfe<N>.json`` and ``.md`` (table, per-step mean learned w, seconds),
``<out>/img/<preset>_nfe<N>_grids.png`` (best constant beside learn-to-guide and autoguidance,
same x_T) and,
with ``--tilts``, ``<out>/img/<preset>_nfe<N>_tilt.png`` (class accuracy against FD_digits for
λ and for the constants).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib
import torch

from diffusion_gym import presets, schedules
from diffusion_gym.denoisers.classifier import TRAINING_CLASSIFIER, load_digits_classifier
from diffusion_gym.io import atomic_save_via, atomic_write_text
from diffusion_gym.steps import steps_for_nfe

from .autoguidance import GUIDES, Autoguidance, search_autoguidance, search_strategies
from .digits import digits_noise
from .evaluate import FixedSchedule, digits_metric_fns, evaluate
from .guidance import (
    L2GConfig,
    LearnedGuidance,
    interval_weights,
    ramp_weights,
    train_learn_to_guide,
)
from .metrics import aggregate_seeds
from .plotting import plot_image_grids

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

__all__ = [
    "COLUMNS",
    "interval_candidates",
    "search_interval_coarse",
    "digits_l2g_config",
    "run",
    "summarize",
    "markdown",
    "plot_grids",
    "plot_tilt",
    "main",
]

#: Harness metric → short key, in table order.
COLUMNS = {
    "fd_digits": "fd",
    "digits_precision": "precision",
    "digits_recall": "recall",
    "digits_class_acc": "class_accuracy",
    "digits_class_tv": "class_tv",
    "fd_digits_b": "fd_b",
}


def interval_candidates(sigmas, weights, stride: int = 1) -> dict:
    """``{(w, σ_lo, σ_hi): per-step weights}`` for contiguous runs of the schedule's steps
    whose first and last step indices are multiples of ``stride`` or the last step."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    sig = schedules.validate(sigmas)[:-1].tolist()
    ends = sorted({*range(0, len(sig), stride), len(sig) - 1})
    out = {}
    for w in weights:
        for a in ends:
            for b in ends:
                if b >= a:
                    lo, hi = sig[b], sig[a]
                    out[(float(w), lo, hi)] = interval_weights(sigmas, w, lo, hi)
    return out


def search_interval_coarse(
    preset,
    sigmas,
    weights=(1.5, 2.0, 3.0),
    stride: int = 1,
    num_samples: int = 256,
    seed=0,
    metric: str = "energy",
) -> tuple[tuple[float, float, float], dict]:
    """Best (w, σ_lo, σ_hi) of :func:`interval_candidates` by ``metric`` on training noise
    (:func:`~baselines.autoguidance.search_strategies`: ``"energy"``, the rule of
    :func:`baselines.guidance.search_interval`, or ``"fd_digits"``)."""
    cands = {
        key: FixedSchedule("cand", sigmas, "heun", w)
        for key, w in interval_candidates(sigmas, weights, stride).items()
    }
    return search_strategies(preset, cands, num_samples, seed, metric)


def digits_l2g_config(**overrides) -> L2GConfig:
    """The Learn to Guide settings used on digits (sampler start, class embedding of size 8,
    8 conditionings × 16 particles, 32 real targets per conditioning)."""
    base = dict(
        start="sampler",
        iterations=100,
        conditions=8,
        particles=16,
        targets=32,
        lr=3e-3,
        init_omega=0.1,
        embed_dim=8,
    )
    base.update(overrides)
    return L2GConfig(**base)


def _rows_of(res: dict, name: str) -> dict:
    return {key: res[name][metric]["mean"] for metric, key in COLUMNS.items()}


def run(
    preset_name: str = "digits",
    nfe: int = 9,
    *,
    constants=(1.0, 1.25, 1.5, 2.0, 3.0),
    interval_w=(1.5, 2.0, 3.0),
    interval_stride: int = 1,
    ramp_w=(1.5, 2.0, 3.0),
    auto_w=(1.0, 1.5, 2.0, 2.5, 3.0),
    search_samples: int = 256,
    train_seeds=(0,),
    tilts=(),
    auto_l2g: bool = False,
    l2g: dict | None = None,
    num_samples: int = 1000,
    seed: int = 0,
    progress: bool = True,
    samples_out: dict | None = None,
    select_every: int = 0,
    select_samples: int = 500,
    select_seed: int = 7919,
    cfg_l2g: bool = True,
    gammas=(0.0,),
    auto_constants=(),
    search_metric: str = "energy",
) -> dict:
    """Train, pick and evaluate every row (see the module docstring); returns the results
    ``{"settings", "rows": {name: {metrics, nfe, weights, seconds}}, "summary"}``.

    ``select_every`` k ≥ 1: every Learn to Guide row keeps its best parameters by FD_digits
    of ``select_samples`` samples on the validation noise ``select_seed`` (neither the
    evaluation seed nor training noise), scored at the start and every k iterations.
    ``cfg_l2g=False`` leaves out the Learn to Guide rows on classifier-free guidance.
    ``gammas``: the constant rows are every (w, γ) of ``constants`` × ``gammas`` (EDM churn
    at every step; ``cfg-<w>-g<γ>``, ``cfg-<w>`` where γ = 0); ``auto_constants``: every
    autoguidance (w, γ) of those × ``gammas`` is a row too (``auto-<w>[-g<γ>]``), all
    evaluated like the CFG constants. ``search_metric``: what the interval, ramp and
    autoguidance searches minimise on training noise (``"energy"`` or ``"fd_digits"``,
    :func:`~baselines.autoguidance.training_score`). ``l2g["gamma"]``: the Learn to Guide
    rows' churn (:attr:`~baselines.guidance.L2GConfig.gamma`)."""
    if nfe < 3 or nfe % 2 == 0:
        raise ValueError(f"nfe must be odd and >= 3 (Heun), got {nfe}")
    if not train_seeds:
        raise ValueError("train_seeds must name at least one training seed")
    if select_every and seed == select_seed:
        raise ValueError(f"select_seed {select_seed} is the evaluation seed: pick another")
    preset = presets.make(preset_name)
    n = steps_for_nfe(nfe, "heun")
    sig = schedules.karras(n, preset.sigma_min, preset.sigma_max)
    rows, info = [], {}
    guide = GUIDES.get(preset_name)
    if auto_constants and guide is None:
        raise ValueError(f"auto_constants need a shipped guide for {preset_name!r}")
    for tag, ws in (("cfg", constants), ("auto", auto_constants)):
        for w in ws:
            for gm in gammas:
                name = f"{tag}-{w:g}" + (f"-g{gm:g}" if gm else "")
                if tag == "cfg":
                    rows.append(FixedSchedule(name, sig, "heun", float(w), float(gm)))
                else:
                    rows.append(Autoguidance(name, sig, None, float(w), "heun", float(gm)))
                info[name] = {"w": float(w), "gamma": float(gm), "seconds_fit": 0.0}
    t0 = time.time()
    (w_i, lo, hi), _ = search_interval_coarse(
        preset, sig, interval_w, interval_stride, search_samples, seed, search_metric
    )
    rows.append(FixedSchedule("interval", sig, "heun", interval_weights(sig, w_i, lo, hi)))
    info["interval"] = {"pick": [w_i, lo, hi], "seconds_fit": round(time.time() - t0, 1)}
    for kind in ("linear", "cosine"):
        t0 = time.time()
        cands = {
            float(w): FixedSchedule("cand", sig, "heun", ramp_weights(sig, w, kind)) for w in ramp_w
        }
        w_max, _ = search_strategies(preset, cands, search_samples, seed, search_metric)
        rows.append(FixedSchedule(f"ramp-{kind}", sig, "heun", ramp_weights(sig, w_max, kind)))
        info[f"ramp-{kind}"] = {"pick": w_max, "seconds_fit": round(time.time() - t0, 1)}
    if preset_name in GUIDES and auto_w:
        t0 = time.time()
        w_a, _ = search_autoguidance(
            preset, sig, None, "heun", auto_w, search_samples, seed, search_metric
        )
        rows.append(Autoguidance("autoguidance", sig, None, w_a, "heun"))
        info["autoguidance"] = {
            "pick": w_a,
            "guide": GUIDES[preset_name],
            "seconds_fit": round(time.time() - t0, 1),
        }
    cfg = dict(l2g or {})
    l2g_gamma = float(cfg.get("gamma", 0.0))
    runs = [(f"learn-to-guide-s{k}", {"seed": int(k)}) for k in train_seeds if cfg_l2g]
    runs += [(f"learn-to-guide-tilt{lam:g}", {"seed": int(train_seeds[0]), "tilt": float(lam)})
             for lam in tilts if lam != 0]  # fmt: skip
    if auto_l2g:
        if "autoguidance" not in info:
            raise ValueError(f"auto_l2g needs a shipped guide for {preset_name!r} and auto_w")
        w0 = max(float(info["autoguidance"]["pick"]) - 1, 0.05)
        runs += [(f"learn-to-guide-auto-s{k}", {"seed": int(k), "guide": GUIDES[preset_name],
                  "init_omega": w0}) for k in train_seeds]  # fmt: skip
    clf = load_digits_classifier()
    for name, extra in runs:
        t0 = time.time()
        picked: dict = {}
        net, hist = train_learn_to_guide(
            preset, sig, "heun", digits_l2g_config(**{**cfg, **extra}), progress=progress,
            select=_fd_select(preset, sig, extra.get("guide"), clf, select_samples, select_seed,
                              l2g_gamma) if select_every else None,
            select_every=select_every, selection=picked,
        )  # fmt: skip
        rows.append(LearnedGuidance(name, sig, net, "heun", extra.get("guide"), l2g_gamma))
        k = max(len(hist) // 10, 1)
        info[name] = {
            "seconds_fit": round(time.time() - t0, 1),
            "loss_first": sum(hist[:k]) / k,
            "loss_last": sum(hist[-k:]) / k,
            **extra,
        }
        if select_every:
            info[name]["selected"] = picked
    samples = {} if samples_out is None else samples_out
    t0 = time.time()
    res = evaluate(
        rows,
        preset,
        num_samples=num_samples,
        seeds=[seed],
        metrics=list(COLUMNS),
        progress=progress,
        samples_out=samples,
        extra_metrics={
            **digits_metric_fns(clf),
            **digits_metric_fns(load_digits_classifier(TRAINING_CLASSIFIER), "_b"),
        },
        noise=digits_noise,
    )
    sec = round((time.time() - t0) / len(rows), 1)
    out_rows = {}
    for s in rows:
        d = s.describe()
        key = "autoguidance" if "autoguidance" in d else "guidance"
        g = torch.as_tensor(d[key], dtype=torch.float64).reshape(s.num_steps, -1)
        out_rows[s.name] = {
            "nfe": s.nfe,
            **_rows_of(res, s.name),
            "w_per_step": [round(float(v), 4) for v in g.mean(1)],
            "seconds_eval": sec,
            **info[s.name],
        }
        if g.shape[1] > 1:  # per class
            out_rows[s.name]["w_per_class"] = [[round(float(v), 4) for v in r] for r in g.T]
    settings = {
        "preset": preset_name,
        "nfe": nfe,
        "solver": "heun",
        "sigmas": [float(v) for v in sig],
        "num_samples": num_samples,
        "seed": seed,
        "search_samples": search_samples,
        "search_rule": f"training {search_metric} (TRAIN_SALT noise), except the constant "
        "rows cfg-* and auto-*: all shown",
        "gammas": list(gammas),
        "train_seeds": list(train_seeds),
        "tilts": list(tilts),
        "auto_l2g": auto_l2g,
        "l2g": vars(digits_l2g_config(**cfg)),
        "select": {"every": select_every, "samples": select_samples, "seed": select_seed}
        if select_every
        else None,
        "threads": torch.get_num_threads(),
    }
    return {"settings": settings, "rows": out_rows, "summary": summarize(out_rows)}


def _fd_select(preset, sig, guide, clf, num_samples: int, seed: int, gamma: float = 0.0):
    """``select(net)`` of :func:`~baselines.guidance.train_learn_to_guide`: FD_digits of the
    deployed sampler (the row as it would be evaluated, churn ``gamma``) on ``num_samples``
    samples of the validation noise ``seed``."""

    def score(net) -> float:
        row = LearnedGuidance("select", sig, net, "heun", guide, gamma)
        res = evaluate([row], preset, num_samples=num_samples, seeds=[seed],
                       metrics=["fd_digits"], progress=False,
                       extra_metrics=digits_metric_fns(clf), noise=digits_noise)  # fmt: skip
        return res["select"]["fd_digits"]["mean"]

    return score


def summarize(rows: dict) -> dict:
    """Best CFG constant (by FD_digits), best autoguidance constant (``auto-*`` rows, if
    any) and mean ± std of the learn-to-guide seeds."""
    cfg = {k: v for k, v in rows.items() if k.startswith("cfg-")}
    best = min(cfg, key=lambda k: cfg[k]["fd"])
    out = {"best_constant": best}
    auto = {k: v for k, v in rows.items() if k.startswith("auto-")}
    if auto:
        out["best_auto_constant"] = min(auto, key=lambda k: auto[k]["fd"])
    for prefix, tag in (("learn-to-guide-s", "l2g"), ("learn-to-guide-auto-s", "l2g_auto")):
        seeds = [v for k, v in rows.items() if k.startswith(prefix)]
        if seeds:
            stats = aggregate_seeds(dict(enumerate(seeds)), list(COLUMNS.values()))
            for key, st in stats.items():
                out[f"{tag}_{key}"] = [st["mean"], st["std"]]
            out[f"{tag}_fd_ratio_vs_best_constant"] = out[f"{tag}_fd"][0] / rows[best]["fd"]
    return out


def markdown(result: dict) -> str:
    """The result as a markdown table (+ the summary line)."""
    st, rows, sm = result["settings"], result["rows"], result["summary"]
    lines = [
        f"#### {st['preset']}, NFE {st['nfe']} (Heun, EDM ρ = 7), {st['num_samples']} samples",
        "",
        "| strategy | FD_digits | precision | recall | class acc. | class TV | FD (clf B) | "
        "w per step (mean over classes) | fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        w = ", ".join(f"{v:.3g}" for v in r["w_per_step"])
        b = "**" if name in (sm["best_constant"], sm.get("best_auto_constant")) else ""
        lines.append(
            f"| {b}{name}{b} | {r['fd']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['class_accuracy']:.3f} | {r['class_tv']:.3f} | {r['fd_b']:.2f} | [{w}] | "
            f"{r['seconds_fit']:.0f} |"
        )
    lines.append("")
    for tag, label in (("l2g", "learn-to-guide"), ("l2g_auto", "learn-to-guide-auto")):
        if f"{tag}_fd" not in sm:
            continue
        m = {k: sm[f"{tag}_{k}"] for k in COLUMNS.values()}
        lines.append(
            f"{label} over {len(st['train_seeds'])} training seed(s): FD_digits "
            f"{m['fd'][0]:.2f} ± {m['fd'][1]:.2f}, precision {m['precision'][0]:.3f} ± "
            f"{m['precision'][1]:.3f}, recall {m['recall'][0]:.3f} ± {m['recall'][1]:.3f}, "
            f"class acc. {m['class_accuracy'][0]:.3f} ± {m['class_accuracy'][1]:.3f}; FD ratio "
            f"to the best constant ({sm['best_constant']}) "
            f"{sm[f'{tag}_fd_ratio_vs_best_constant']:.3f}."
        )
    return "\n".join(lines) + "\n"


def plot_grids(samples: dict, names: list[str], titles: list[str], path: Path) -> Path:
    """Side-by-side 10 × 10 digit grids (row = requested class) of the named rows (the
    labels of :func:`~baselines.digits.digits_noise`: i mod 10)."""
    labels = torch.arange(next(iter(samples.values())).shape[0]) % 10
    return plot_image_grids(samples, labels, names, titles, path)


def plot_tilt(result: dict, path: Path) -> Path:
    """Class accuracy against FD_digits: the tilted learn-to-guide rows (λ) and the constants."""
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=100)
    cfg = sorted(
        (k for k in rows if k.startswith("cfg-") and not rows[k].get("gamma")),
        key=lambda k: rows[k].get("w", float(k[4:])),
    )
    ax.plot([rows[k]["fd"] for k in cfg], [rows[k]["class_accuracy"] for k in cfg], "s--",
            color="grey", label="constant w")  # fmt: skip
    for k in cfg:
        label = f"{rows[k]['w']:g}" if "w" in rows[k] else k[4:]  # older results: no "w"
        ax.annotate(label, (rows[k]["fd"], rows[k]["class_accuracy"]), fontsize=7)
    seed0 = f"learn-to-guide-s{result['settings']['train_seeds'][0]}"
    tilt = [(0.0, seed0)] + sorted(
        (float(k[len("learn-to-guide-tilt") :]), k)
        for k in rows
        if k.startswith("learn-to-guide-tilt")
    )
    ax.plot([rows[k]["fd"] for _, k in tilt], [rows[k]["class_accuracy"] for _, k in tilt], "o-",
            color="C0", label="learn to guide, tilt λ")  # fmt: skip
    for lam, k in tilt:
        ax.annotate(f"λ={lam:g}", (rows[k]["fd"], rows[k]["class_accuracy"]), fontsize=7)
    st = result["settings"]
    ax.set_xlabel("FD_digits (lower is better)")
    ax.set_ylabel("class accuracy")
    ax.set_title(f"{st['preset']}, NFE {st['nfe']}: reward tilt", fontsize=9)
    ax.legend(fontsize=7)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_save_via(path, lambda tmp: fig.savefig(tmp, bbox_inches="tight"))
    plt.close(fig)
    return Path(path)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m baselines.digits_guidance", description=__doc__)
    p.add_argument("--preset", default="digits")
    p.add_argument("--nfe", type=int, default=9, help="Heun NFE (odd)")
    p.add_argument("--out", default="runs/l2g-digits")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (x_T, labels)")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--tilts", type=float, nargs="*", default=[], help="λ of the tilted rows")
    p.add_argument("--auto-l2g", action="store_true",
                   help="also learn ω of the autoguidance direction (-auto-s<k> rows)")  # fmt: skip
    p.add_argument("--constants", type=float, nargs="+", default=[1.0, 1.25, 1.5, 2.0, 3.0])
    p.add_argument("--gammas", type=float, nargs="+", default=[0.0],
                   help="churn γ of the constant rows: every (w, γ) is a row")  # fmt: skip
    p.add_argument("--auto-constants", type=float, nargs="*", default=[],
                   help="autoguidance weights shown as rows auto-<w>, × --gammas")  # fmt: skip
    p.add_argument("--search-metric", choices=["energy", "fd_digits"], default="energy",
                   help="what the searches minimise on training noise")  # fmt: skip
    p.add_argument("--l2g-gamma", type=float, default=0.0,
                   help="churn γ of the Learn to Guide rows (L2GConfig.gamma)")  # fmt: skip
    p.add_argument("--interval-w", type=float, nargs="+", default=[1.5, 2.0, 3.0])
    p.add_argument("--interval-stride", type=int, default=1)
    p.add_argument("--ramp-w", type=float, nargs="+", default=[1.5, 2.0, 3.0])
    p.add_argument("--autoguidance-w", type=float, nargs="*", default=[1.0, 1.5, 2.0, 2.5, 3.0])
    p.add_argument("--search-samples", type=int, default=256)
    p.add_argument("--iterations", type=int, default=100, help="Learn to Guide Adam steps")
    p.add_argument("--conditions", type=int, default=8)
    p.add_argument("--particles", type=int, default=16)
    p.add_argument("--targets", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--start", choices=["sampler", "forward"], default="sampler",
                   help="where x_t comes from (L2GConfig.start)")  # fmt: skip
    p.add_argument("--init-omega", type=float, default=0.1)
    p.add_argument("--space", choices=["pixel", "features"], default="pixel",
                   help="where the energy distance is taken (L2GConfig.space): pixels, or the "
                   "classifier's features of the denoised estimate")  # fmt: skip
    p.add_argument("--select-every", type=int, default=0,
                   help="keep each Learn to Guide row's best parameters by validation FD_digits, "
                   "scored every this many iterations (0: the last iterate)")  # fmt: skip
    p.add_argument("--select-samples", type=int, default=500)
    p.add_argument("--select-seed", type=int, default=7919, help="validation noise seed")
    p.add_argument("--no-cfg-l2g", action="store_true",
                   help="no Learn to Guide rows on CFG (with --auto-l2g: auto only)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    a = _parser().parse_args(argv)
    torch.set_num_threads(a.threads)
    l2g = dict(
        iterations=a.iterations,
        conditions=a.conditions,
        particles=a.particles,
        targets=a.targets,
        lr=a.lr,
        start=a.start,
        init_omega=a.init_omega,
        space=a.space,
        gamma=a.l2g_gamma,
    )
    samples: dict[str, torch.Tensor] = {}
    t0 = time.time()
    result = run(
        a.preset,
        a.nfe,
        constants=a.constants,
        interval_w=a.interval_w,
        interval_stride=a.interval_stride,
        ramp_w=a.ramp_w,
        auto_w=a.autoguidance_w,
        search_samples=a.search_samples,
        train_seeds=a.train_seeds,
        tilts=a.tilts,
        auto_l2g=a.auto_l2g,
        l2g=l2g,
        num_samples=a.num_samples,
        seed=a.seed,
        progress=not a.no_progress,
        samples_out=samples,
        select_every=a.select_every,
        select_samples=a.select_samples,
        select_seed=a.select_seed,
        cfg_l2g=not a.no_cfg_l2g,
        gammas=a.gammas,
        auto_constants=a.auto_constants,
        search_metric=a.search_metric,
    )
    result["settings"]["seconds_total"] = round(time.time() - t0, 1)
    out, stem = Path(a.out), f"{a.preset}_nfe{a.nfe}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.json", json.dumps(result, indent=2))
    md = markdown(result)
    atomic_write_text(out / f"{stem}.md", md)
    best, l2g_row = result["summary"]["best_constant"], f"learn-to-guide-s{a.train_seeds[0]}"
    names, titles = [best], [f"best constant ({best})"]
    if l2g_row in samples:
        names.append(l2g_row)
        titles.append(l2g_row)
    if "autoguidance" in samples:
        names.append("autoguidance")
        titles.append(f"autoguidance (w = {result['rows']['autoguidance']['pick']:g})")
    auto_row = f"learn-to-guide-auto-s{a.train_seeds[0]}"
    if auto_row in samples:
        names.append(auto_row)
        titles.append(auto_row)
    plot_grids(samples, names, titles, out / "img" / f"{stem}_grids.png")
    if a.tilts:
        plot_tilt(result, out / "img" / f"{stem}_tilt.png")
    print(md)
    return result


if __name__ == "__main__":
    main()
