"""``diffusion-gym compare CONFIG --out DIR`` and ``diffusion-gym evaluate``.

A comparison config (YAML, mapped onto :class:`CompareConfig` by the project's one loader,
:func:`diffusion_gym.config.load`: unknown keys are errors listing the valid ones, every value
is checked before any work starts; dotted ``key=value`` overrides such as
``oracle.iterations=60``) names presets, NFE budgets and strategies. Strategy names say what
they are:

============================  ================================================================
``edm-rho<ρ>``                EDM schedule with that ρ (``edm-rho7``)
``edm-best``                  EDM with ρ grid-searched by RMSE to the reference (training noise)
``uniform``, ``log-linear``,  the classic schedules of :mod:`diffusion_gym.schedules`
``ddim``
``ays``, ``gits-dp``          Align-Your-Steps-style / GITS-style DP (:mod:`baselines.schedules`)
``oracle``                    σ's optimised through the sampler on training noise
``learned``                   the published learned schedule of (preset, solver, NFE)
                              (:func:`diffusion_gym.schedules.load_published`), or from
                              ``learned_dir``; skipped where there is none
``cfg-<w>``, ``cfg-best``     constant guidance w / grid-searched w (on the guidance schedule)
``interval``                  limited-interval guidance, (w, σ_lo, σ_hi) grid-searched
``ramp-linear``,              guidance ramps, w_max grid-searched
``ramp-cosine``
``churn-<S>``                 EDM churn with S_churn = S (stochastic; no rmse)
``autoguidance``              autoguidance (Karras et al. 2024) by ``search.guide`` (default
                              the preset's weaker version, :data:`baselines.autoguidance.GUIDES`),
                              w grid-searched on ``search.autoguidance``
``learn-to-guide``            Learn to Guide ω_φ(c, s, t), energy loss; ``-l2``: ℓ2 loss;
                              ``-reward``: reward-tilted (exact log p(c | x̂_0));
                              ``-forward``: energy loss from forward-noised x_t
============================  ================================================================

With ``solvers: [...]`` every schedule row runs with every solver on the same noise (row
``<solver>/<schedule>``, each fitted row fitted for its solver, NFE from
:func:`steps_for_nfe`); ``last_step: [denoise, sigma-min]`` adds the hand-made rows in the
GITS/DEIS convention (``@smin``: n + 1 σ down to σ_min, no final denoise). The
``sec_per_1k`` metric is the wall time of a row's sampler per 1,000 samples.

Guidance rows run on the ``guidance_schedule`` (a schedule row name, default ``oracle``), so
their differences are the guidance's alone. Output: ``DIR/<preset>/nfe<N>/`` holds that
section's ``eval.json`` (keyed by strategy name), ``eval.md`` and plots;
``DIR/<preset>/metric_vs_nfe.png``; ``DIR/eval.md`` all tables; ``DIR/eval.json``
``{"<preset>/nfe<N>": {strategy: {metric: {mean, std, values}}}}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from diffusion_gym import presets as _presets
from diffusion_gym import schedules as _sched
from diffusion_gym import steps as _steps
from diffusion_gym.config import load, to_dict
from diffusion_gym.io import atomic_write_text, check_writable_dir

from . import autoguidance as AG  # noqa: N812
from . import guidance as G  # noqa: N812
from . import schedules as B  # noqa: N812
from .evaluate import (
    DEFAULT_METRICS,
    LAST_STEPS,
    METRICS,
    FixedSchedule,
    Strategy,
    evaluate,
    markdown_table,
    nfe_of,
    steps_for_nfe,
    write_report,
)
from .metrics import check_metrics_data
from .plotting import plot_metric_vs_nfe
from .schedules import OracleConfig

__all__ = [
    "OracleConfig",
    "AYSConfig",
    "GITSConfig",
    "SearchConfig",
    "CompareConfig",
    "load_config",
    "check_config",
    "build_strategies",
    "run_compare",
    "main_compare",
    "main_evaluate",
]

SCHEDULE_NAMES = ("edm-best", "uniform", "log-linear", "ddim", "ays", "gits-dp", "oracle")
#: Schedule rows read from files: the best learned schedule per preset × solver × NFE.
LEARNED_NAMES = ("learned",)
_SCHEDULE_ROWS = SCHEDULE_NAMES + LEARNED_NAMES
#: Hand-made rows that also run in the ``"sigma-min"`` last-step convention.
_HAND_MADE = ("uniform", "log-linear", "ddim")
GUIDANCE_NAMES = (
    "cfg-best",
    "interval",
    "ramp-linear",
    "ramp-cosine",
    "learn-to-guide",
    "learn-to-guide-l2",
    "learn-to-guide-reward",
    "learn-to-guide-forward",
    "autoguidance",
)


@dataclass
class AYSConfig:
    """:func:`baselines.schedules.ays` settings."""

    num_samples: int = 512
    sweeps: int = 3
    candidates: int = 24
    start_steps: int = 3
    tol: float = 0.01


@dataclass
class GITSConfig:
    """:func:`baselines.schedules.gits_dp` settings."""

    grid_size: int = 48
    num_samples: int = 128
    substeps: int = 4


@dataclass
class SearchConfig:
    """Grid searches of the guidance baselines (training energy distance)."""

    num_samples: int = 512
    constant: list[float] = field(
        default_factory=lambda: [0.0, 0.5, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0]
    )
    interval: list[float] = field(default_factory=lambda: [1.5, 2.0, 3.0, 4.0, 6.0])
    ramp: list[float] = field(default_factory=lambda: [1.5, 2.0, 3.0, 4.0, 6.0])
    rho: list[float] = field(
        default_factory=lambda: [0.5, 0.7, 0.88, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 30.0]
    )
    autoguidance: list[float] = field(default_factory=lambda: list(AG.AUTOGUIDANCE_GRID))
    guide: str | None = None
    """Guiding preset of ``autoguidance`` rows (None: the preset's shipped weaker version)."""


@dataclass
class CompareConfig:
    """A comparison: presets × NFE budgets × strategies, scored on the same noise.

    :param presets: preset names.
    :param nfe: NFE budgets (Heun: odd, 2n − 1).
    :param strategies: strategy names (see the module docstring).
    :param solver: the solver of every row (any of :data:`diffusion_gym.steps.SOLVERS`),
        unless ``solvers`` is set.
    :param solvers: several solvers: every schedule row runs with each of them (row names
        ``<solver>/<schedule>``; each solver's steps from :func:`steps_for_nfe`; the oracle,
        GITS-DP and ``edm-best`` are fitted per solver, AYS per step count).
    :param last_step: conventions of where the last NFE lands, ``"denoise"`` (n σ then 0,
        the last NFE a denoise: k-diffusion, diffusers) and/or ``"sigma-min"`` (n + 1 σ
        down to σ_min, output x(σ_min): GITS/DEIS code). ``"sigma-min"`` rows (suffix
        ``@smin``) exist for the hand-made schedules (``edm-rho<r>``, ``uniform``,
        ``log-linear``, ``ddim``), with as many steps as fit the NFE.
    :param learned_dir: where ``learned`` rows read ``<preset>/<solver>/nfe<N>/schedule.json``;
        None = the published schedules (:func:`diffusion_gym.schedules.load_published`).
    :param guidance_schedule: schedule row the guidance rows run on.
    :param seeds: evaluation seeds (mean ± std over them).
    :param num_samples: samples per seed.
    :param reference_steps: Heun steps of the reference solve (rmse).
    :param metrics: metric names (None = the harness default).
    :param title: heading of the report.
    """

    presets: list[str] = field(default_factory=lambda: ["gmm-ring8"])
    nfe: list[int] = field(default_factory=lambda: [5, 9])
    strategies: list[str] = field(default_factory=lambda: ["edm-rho7", "oracle"])
    solver: str = "heun"
    solvers: list[str] = field(default_factory=list)
    last_step: list[str] = field(default_factory=lambda: ["denoise"])
    learned_dir: str | None = None
    guidance_schedule: str = "oracle"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    num_samples: int = 2048
    reference_steps: int = 256
    metrics: list[str] | None = None
    title: str = "comparison"
    oracle: OracleConfig = field(default_factory=OracleConfig)
    ays: AYSConfig = field(default_factory=AYSConfig)
    gits: GITSConfig = field(default_factory=GITSConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    l2g: G.L2GConfig = field(default_factory=G.L2GConfig)


def load_config(source: str | Path | dict, overrides: list[str] | None = None) -> CompareConfig:
    """A comparison config (YAML path or dict) as a validated :class:`CompareConfig`, with
    dotted ``key=value`` overrides (values parsed as YAML: ``nfe=[5]``,
    ``oracle.iterations=60``), through the project's one loader
    (:func:`diffusion_gym.config.load`): unknown keys are a ``ValueError`` listing the valid
    ones, wrongly typed values a ``TypeError``/``ValueError``, before any work starts."""
    cfg = load(CompareConfig, source, overrides)
    check_config(cfg)
    return cfg


def check_config(cfg: CompareConfig) -> None:
    """Values the types do not catch, checked before any work: strategy names, solver, NFE
    budgets (Heun: odd), presets, metrics and the guidance schedule row."""
    _check_names(cfg.strategies)
    for sv in _solvers(cfg):
        if sv not in _steps.SOLVERS:
            raise ValueError(f"solver must be one of {_steps.SOLVERS}, got {sv!r}")
        for nfe in cfg.nfe:
            steps_for_nfe(nfe, sv)
    bad_last = sorted(set(cfg.last_step) - set(LAST_STEPS))
    if bad_last or not cfg.last_step:
        raise ValueError(f"last_step must be a non-empty list of {LAST_STEPS}, got {cfg.last_step}")
    if len(cfg.solvers) > 1 and any(n not in _SCHEDULE_ROWS and not n.startswith("edm-rho")
                                    for n in cfg.strategies):  # fmt: skip
        raise ValueError("several solvers take schedule rows only (no guidance rows)")
    for name in cfg.presets:  # a registered name or a user's "package.module:function"
        _presets.check_name(name)
    bad = sorted(set(cfg.metrics or ()) - set(METRICS))
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; valid: {sorted(METRICS)}")
    if "autoguidance" in cfg.strategies:
        if cfg.search.guide is not None:
            _presets.check_name(cfg.search.guide)
        else:
            for name in cfg.presets:
                AG.default_guide(name)  # ValueError: no weaker version shipped
    g = cfg.guidance_schedule
    if not (g in SCHEDULE_NAMES or re.fullmatch(r"edm-rho[0-9.]+", g)):
        raise ValueError(
            f"guidance_schedule must be a schedule row (edm-rho<r>, {', '.join(SCHEDULE_NAMES)}),"
            f" got {g!r}"
        )


# ---------------------------------------------------------------------------------------------
# Building strategies


def _solvers(cfg: CompareConfig) -> list[str]:
    """The solvers of the rows: ``solvers`` if set, else ``[solver]``."""
    return list(cfg.solvers) or [cfg.solver]


def _check_names(names: list[str]) -> None:
    for n in names:
        ok = (
            n in _SCHEDULE_ROWS
            or n in GUIDANCE_NAMES
            or re.fullmatch(r"edm-rho[0-9.]+|cfg-[0-9.]+|churn-[0-9.]+", n)
        )
        if not ok:
            raise ValueError(
                f"unknown strategy {n!r}; valid: edm-rho<r>, cfg-<w>, churn-<S>, "
                f"{', '.join(_SCHEDULE_ROWS + GUIDANCE_NAMES)}"
            )


def _schedule(
    name: str, preset, n: int, cfg: CompareConfig, cache: dict, solver: str | None = None
) -> torch.Tensor:
    """The σ's of a schedule row for ``solver`` (default ``cfg.solver``) at ``n`` steps.
    ``cache`` is per (preset, NFE) section: fitted rows are keyed by solver, AYS by n."""
    solver = solver or cfg.solver
    key = (name, solver, n)
    if key in cache:
        return cache[key]
    if m := re.fullmatch(r"edm-rho([0-9.]+)", name):
        sig = B.classic("edm", n, preset, rho=float(m.group(1)))
    elif name in _HAND_MADE:
        sig = B.classic(name, n, preset)
    elif name == "edm-best":
        rho, _ = B.best_rho(preset, n, solver, cfg.search.rho, _train(preset, cfg, cache))
        sig = B.classic("edm", n, preset, rho=rho)
    elif name == "ays":
        a = cfg.ays
        if ("ays", n) not in cache:  # KLUB has no solver term: one fit per step count
            cache["ays", n] = B.ays(
                preset, n, a.num_samples, a.sweeps, a.candidates,
                start_steps=a.start_steps, tol=a.tol,
            )  # fmt: skip
        sig = cache["ays", n]
    elif name == "gits-dp":
        g = cfg.gits
        sig = B.gits_dp(preset, n, solver, g.grid_size, g.num_samples, g.substeps)
    elif name == "oracle":
        o = cfg.oracle
        extra = [cache[k, solver, n] for k in ("edm-best", "gits-dp", "ays")
                 if (k, solver, n) in cache]  # fmt: skip
        sig = B.oracle(
            preset,
            n,
            solver,
            data=_train(preset, cfg, cache),
            iterations=o.iterations,
            lr=o.lr,
            restarts=o.restarts,
            extra_inits=extra,
            num_random=o.num_random,
        ).sigmas
    else:
        raise ValueError(f"{name!r} is not a schedule row")
    cache[key] = sig
    return sig


def _train(preset, cfg: CompareConfig, cache: dict) -> B.TrainingSet:
    """The training noise and reference of a section (shared by every solver)."""
    if "__train__" not in cache:
        cache["__train__"] = B.training_set(preset, cfg.oracle.num_samples, 0, cfg.reference_steps)
    return cache["__train__"]


def _learned(preset, solver: str, nfe: int, cfg: CompareConfig) -> torch.Tensor | None:
    """The learned schedule of (preset, solver, NFE): from ``cfg.learned_dir`` or the
    published ones; None where there is none."""
    if cfg.learned_dir is None:
        rec = _sched.find_published(preset.name, solver, nfe)
    else:
        path = Path(cfg.learned_dir) / preset.name / solver / f"nfe{nfe}" / "schedule.json"
        rec = _sched.load_schedule(path) if path.is_file() else None
    return None if rec is None else rec["sigmas"]


def _sigma_min_steps(nfe: int, solver: str) -> int:
    """Most steps to σ_min (n + 1 positive σ, no final denoise) that fit ``nfe``: the step
    σ_min → 0 is one NFE for every solver, so the cost is nfe_of(n + 1) − 1."""
    n = 1
    while nfe_of(n + 2, solver) - 1 <= nfe:
        n += 1
    return n


def _schedule_rows(preset, nfe: int, cfg: CompareConfig, cache: dict, log) -> list[Strategy]:
    """Every schedule row of the config for every solver (and last-step convention)."""
    names = [n for n in cfg.strategies if n in _SCHEDULE_ROWS or n.startswith("edm-rho")]
    multi = len(cfg.solvers) > 1
    out: list[Strategy] = []
    for sv in _solvers(cfg):
        n = steps_for_nfe(nfe, sv)
        for name in names:
            t0 = time.perf_counter()
            row = f"{sv}/{name}" if multi else name
            if name in LEARNED_NAMES:
                sig = _learned(preset, sv, nfe, cfg)
                if sig is None:
                    log(f"  skip {row}: no learned schedule for {preset.name} {sv} NFE {nfe}")
                    continue
            else:
                sig = _schedule(name, preset, n, cfg, cache, sv)
            if "denoise" in cfg.last_step:
                out.append(FixedSchedule(row, sig, sv))
            if "sigma-min" in cfg.last_step and (name in _HAND_MADE or name.startswith("edm-")):
                if name != "edm-best":
                    m = _sigma_min_steps(nfe, sv)
                    smin = _schedule(name, preset, m + 1, cfg, cache, sv)
                    out.append(FixedSchedule(f"{row}@smin", smin, sv, last_step="sigma-min"))
            log(f"  built {row:28s} ({time.perf_counter() - t0:.1f} s)")
    return out


def _guidance(name: str, preset, sig, cfg: CompareConfig, cache: dict) -> Strategy:
    s, sv = cfg.search, cfg.solver
    if m := re.fullmatch(r"cfg-([0-9.]+)", name):
        return FixedSchedule(name, sig, sv, guidance=float(m.group(1)))
    if m := re.fullmatch(r"churn-([0-9.]+)", name):
        return FixedSchedule(name, sig, sv, gamma=G.edm_churn(sig, float(m.group(1))))
    if name == "cfg-best":
        w, _ = G.search_constant(preset, sig, sv, s.constant, s.num_samples)
        return FixedSchedule(name, sig, sv, guidance=w)
    if name == "interval":
        (w, lo, hi), _ = G.search_interval(preset, sig, sv, s.interval, s.num_samples)
        return FixedSchedule(name, sig, sv, guidance=G.interval_weights(sig, w, lo, hi))
    if name.startswith("ramp-"):
        kind = name.split("-", 1)[1]
        w, _ = G.search_ramp(preset, sig, kind, sv, s.ramp, s.num_samples)
        return FixedSchedule(name, sig, sv, guidance=G.ramp_weights(sig, w, kind))
    if name == "autoguidance":
        w, _ = AG.search_autoguidance(preset, sig, s.guide, sv, s.autoguidance, s.num_samples)
        return AG.Autoguidance(name, sig, s.guide, w, sv)
    variant = {
        "learn-to-guide": {},
        "learn-to-guide-l2": {"loss": "l2", "start": "forward"},  # ℓ2 needs x_t's own x_0
        "learn-to-guide-forward": {"start": "forward"},  # the paper's x_t = x_0 + tε
    }.get(name)
    if variant is None:  # learn-to-guide-reward
        variant = {"reward_weight": cfg.l2g.reward_weight or 0.05}
    net, _ = G.train_learn_to_guide(preset, sig, sv, dataclasses.replace(cfg.l2g, **variant))
    return G.LearnedGuidance(name, sig, net, sv)


def build_strategies(
    preset: _presets.Preset, nfe: int, cfg: CompareConfig, log=print
) -> list[Strategy]:
    """The config's strategies for one preset and budget (schedules first, for every solver,
    then guidance rows on ``cfg.guidance_schedule``). Guidance rows are skipped on
    unconditional presets."""
    _check_names(cfg.strategies)
    cache: dict = {}
    out = _schedule_rows(preset, nfe, cfg, cache, log)
    n = steps_for_nfe(nfe, cfg.solver)
    for name in cfg.strategies:
        if name in _SCHEDULE_ROWS or name.startswith("edm-rho"):
            continue
        t0 = time.perf_counter()
        if preset.num_classes == 0 and not name.startswith("churn-"):
            log(f"  skip {name}: {preset.name} is unconditional")
            continue
        sig = _schedule(cfg.guidance_schedule, preset, n, cfg, cache)
        out.append(_guidance(name, preset, sig, cfg, cache))
        log(f"  built {name:24s} ({time.perf_counter() - t0:.1f} s)")
    return out


# ---------------------------------------------------------------------------------------------
# Running


def run_compare(cfg: CompareConfig, out: str | Path, progress: bool = True) -> dict:
    """Run every (preset, NFE) section of ``cfg`` and write the reports under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(to_dict(cfg), indent=2))
    everything, md = {}, [f"# {cfg.title}", ""]
    for pname in cfg.presets:
        preset = _presets.make(pname)
        check_metrics_data(preset, cfg.metrics or DEFAULT_METRICS)  # before any work
        by_nfe: dict[str, dict[int, dict]] = {}
        for nfe in cfg.nfe:
            key = f"{pname}/nfe{nfe}"
            print(f"[compare] {key}: building strategies", file=sys.stderr)
            strategies = build_strategies(preset, nfe, cfg, log=lambda m: print(m, file=sys.stderr))
            samples: dict = {}
            res = evaluate(
                strategies,
                preset,
                num_samples=cfg.num_samples,
                seeds=cfg.seeds,
                reference=cfg.reference_steps,
                metrics=cfg.metrics or DEFAULT_METRICS,
                progress=progress,
                samples_out=samples,
            )
            title = f"{pname}, NFE {nfe} ({', '.join(_solvers(cfg))})"
            write_report(
                res,
                out / pname / f"nfe{nfe}",
                title=title,
                plots={"strategies": strategies, "samples": samples},
            )
            everything[key] = res
            md.append(markdown_table(res, title))
            for s, row in res.items():
                by_nfe.setdefault(s, {})[nfe] = row
        if len(cfg.nfe) > 1:
            metric = "rmse" if "rmse" in (cfg.metrics or DEFAULT_METRICS) else "energy"
            plot_metric_vs_nfe(by_nfe, metric, out / pname / "metric_vs_nfe.png", pname)
    atomic_write_text(out / "eval.json", json.dumps(everything, indent=2, allow_nan=False))
    atomic_write_text(out / "eval.md", "\n".join(md))
    return everything


def main_compare(argv: list[str] | None = None) -> int:
    """``diffusion-gym compare CONFIG --out DIR [--seeds 0 1 2] [--num-samples N]
    [key=value ...]``."""
    ap = argparse.ArgumentParser(prog="diffusion-gym compare", description=__doc__.split("\n")[0])
    ap.add_argument("config", help="comparison YAML (see baselines/configs/compare-ring8.yaml)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seeds", type=int, nargs="+", help="evaluation seeds")
    ap.add_argument("--num-samples", type=int, help="samples per seed")
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    ap.add_argument(
        "overrides", nargs="*", help="dotted key=value overrides (YAML values): oracle.lr=0.1"
    )
    a = ap.parse_intermixed_args(argv)
    over = list(a.overrides)
    if a.seeds:
        over.append(f"seeds={a.seeds}")
    if a.num_samples:
        over.append(f"num_samples={a.num_samples}")
    try:
        cfg = load_config(a.config, over)
        check_writable_dir(a.out)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"diffusion-gym compare: error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    run_compare(cfg, a.out, progress=not a.no_progress)
    print((Path(a.out) / "eval.md").read_text())
    print(f"[compare] wrote {a.out} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


def _load_schedule_file(path: str) -> tuple[str, torch.Tensor, str]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"schedule file not found: {p}")
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"schedule file {str(p)!r} is not valid JSON: {e}") from None
    if not isinstance(d, dict) or "sigmas" not in d:
        raise ValueError(f"{p} must hold a JSON object with 'sigmas' (and 'solver')")
    return p.stem, torch.tensor(d["sigmas"], dtype=torch.float64), d.get("solver", "heun")


def main_evaluate(argv: list[str] | None = None) -> int:
    """``diffusion-gym evaluate --preset P --nfe N [--strategies ...] [--schedule F.json ...]
    --out DIR``: named strategies and exported schedules on one preset, one table."""
    ap = argparse.ArgumentParser(prog="diffusion-gym evaluate")
    ap.add_argument("--preset", default="gmm-ring8", help="preset name")
    ap.add_argument("--nfe", type=int, default=5, help="NFE budget of the named strategies")
    ap.add_argument("--solver", default="heun", choices=["heun", "euler"])
    ap.add_argument("--strategies", nargs="*", default=["edm-rho7"], help="strategy names")
    ap.add_argument("--schedule", nargs="*", default=[], help="schedule.json files")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--num-samples", type=int, default=2048)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    data = {
        "presets": [a.preset],
        "nfe": [a.nfe],
        "strategies": a.strategies,
        "solver": a.solver,
        "seeds": a.seeds,
        "num_samples": a.num_samples,
    }
    try:  # every input checked before any work
        cfg = load_config(data)
        files = [FixedSchedule(*_load_schedule_file(f)) for f in a.schedule]
        check_writable_dir(a.out)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"diffusion-gym evaluate: error: {e}", file=sys.stderr)
        return 2
    preset = _presets.make(a.preset)
    strategies = build_strategies(preset, a.nfe, cfg, log=lambda m: print(m, file=sys.stderr))
    strategies += files
    samples: dict = {}
    res = evaluate(
        strategies,
        preset,
        num_samples=a.num_samples,
        seeds=a.seeds,
        progress=not a.no_progress,
        samples_out=samples,
    )
    title = f"{a.preset}, NFE {a.nfe} ({a.solver})"
    write_report(res, a.out, title=title, plots={"strategies": strategies, "samples": samples})
    print(markdown_table(res, title))
    return 0
