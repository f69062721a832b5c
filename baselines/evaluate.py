"""The evaluation harness: run sampling strategies on the same noise, score them, report.

A :class:`Strategy` turns x_T (and class labels) into x_0 with some fixed NFE budget. Every
strategy in one :func:`evaluate` call sees the SAME x_T, labels and per-sample noise streams
(draw 0 of sample i's stream is its unit x_T noise, draw k+1 the churn noise of step k; see
:mod:`diffusion_gym.noise`), so differences between rows are the strategies' alone.
:func:`write_report` writes ``eval.json`` (keyed by strategy name), ``eval.md`` (mean ± std
over seeds, best in bold) and PNG plots. It is the one evaluation and reporting path of the
project: ``diffusion-gym evaluate`` / ``compare`` (:mod:`baselines.compare`), the digits
tables (:mod:`baselines.digits`) and the agents' final evaluations all call it.

Extension points (public, for callers outside this package):

- metrics (registry in :mod:`baselines.metrics`, re-exported here): :func:`register_metric`
  adds a metric by name to :data:`METRICS` (process-wide); ``evaluate(extra_metrics={name:
  fn})`` adds metrics for one call. A metric is ``fn(ctx) -> float | None`` on the dict
  ``ctx`` (keys ``x0, real, labels, preset, x_ref, strategy, seed, cache, seconds`` (wall time of
  the strategy's ``sample``); ``cache`` is a
  dict shared by the metrics of one sample set, for work they have in common).
- noise: ``evaluate(noise=fn)`` replaces :func:`make_noise` (``fn(preset, num_samples,
  seed) -> (x_T, streams)``), for callers whose figures were drawn on other noise.
- reports: ``write_report(..., fields=, summary=, extra_plots=)`` adds per-strategy fields to
  ``eval.json``, a markdown block after the table in ``eval.md`` and extra PNG files.

NFE convention: one denoiser evaluation of the batch counts 1, also when classifier-free
guidance evaluates the conditional and unconditional model in one batch of size 2B (as
EDM/AYS/GITS papers count). Heun with n steps ending at σ = 0 costs 2n − 1 (last step Euler).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from diffusion_gym import presets as _presets
from diffusion_gym import schedules as _schedules
from diffusion_gym import steps as _steps
from diffusion_gym.io import atomic_write_text
from diffusion_gym.noise import SampleStreams, make_labels, make_noise
from diffusion_gym.steps import REFERENCE_STEPS, nfe_of, reference_solution, steps_for_nfe

from . import plotting
from .metrics import (
    DEFAULT_METRICS,
    HIGHER_IS_BETTER,
    METRICS,
    UNRANKED,
    MetricFn,
    check_metrics_data,
    digits_metric_fns,
    register_metric,
    with_companions,
)

__all__ = [
    "Strategy",
    "FixedSchedule",
    "LAST_STEPS",
    "nfe_of",
    "steps_for_nfe",
    "make_noise",
    "make_labels",
    "reference_solution",
    "evaluate",
    "markdown_table",
    "write_report",
    "METRICS",
    "DEFAULT_METRICS",
    "HIGHER_IS_BETTER",
    "UNRANKED",
    "MetricFn",
    "register_metric",
    "digits_metric_fns",
]

# ---------------------------------------------------------------------------------------------
# Strategies


class Strategy:
    """A way to sample: x_T (at σ_max) and labels → x_0, at a fixed NFE.

    Subclasses set :attr:`name` and implement :meth:`sample` and :attr:`nfe`; they should
    override :meth:`describe` to expose per-step ``sigmas``, ``guidance`` and ``gamma`` for the
    plots. :attr:`deterministic` says whether the output is a function of x_T alone (then
    the RMSE to the reference ODE solution is reported).
    """

    name: str = "strategy"

    @property
    def nfe(self) -> int:
        """Denoiser evaluations per sample (see the module docstring for the convention)."""
        raise NotImplementedError

    @property
    def deterministic(self) -> bool:
        """True if no noise is injected after x_T (no churn, no stochastic policy)."""
        return False

    def sample(
        self,
        preset: _presets.Preset,
        x_T: torch.Tensor,  # noqa: N803 - the paper's name
        class_labels: torch.Tensor | None,
        streams: SampleStreams,
    ) -> torch.Tensor:
        """Return x_0 ``[B, *shape]`` from x_T ``[B, *shape]`` (already scaled by the prior
        std). ``streams`` supplies every further noise draw (counter k+1 for step k)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """``{"name", "nfe", "sigmas"?, "guidance"?, "gamma"?, ...}``: JSON-able facts; per-step
        lists where they exist (``guidance`` may be ``[n][C]`` per class)."""
        return {"name": self.name, "nfe": self.nfe}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, nfe={self.nfe})"


def _per_step_list(value, n: int, name: str) -> list[float] | float:
    """A scalar stays a float; a sequence must have n entries."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    v = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if v.shape[0] != n:
        raise ValueError(
            f"{name} must be a scalar or have one value per step ({n}), got {v.numel()}"
        )
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} must be finite")
    return [float(a) for a in v]


#: Where the last NFE of a fixed schedule lands (:class:`FixedSchedule`'s ``last_step``).
LAST_STEPS = ("denoise", "sigma-min")


class FixedSchedule(Strategy):
    """A fixed schedule with (optionally per-step) guidance weight w and churn γ, run by
    :func:`diffusion_gym.steps.sample`.

    :param name: row name in the tables (e.g. ``"edm-rho7"``, ``"cfg-2.0"``).
    :param sigmas: n+1 descending σ ending in 0.
    :param solver: ``"heun"`` or ``"euler"``.
    :param guidance: CFG weight w: a scalar or one value per step (1 = plain conditional).
    :param gamma: churn γ ≥ 0: a scalar or one value per step.
    :param s_noise: EDM's S_noise.
    :param last_step: where the last NFE lands. ``"denoise"`` (k-diffusion / diffusers): the
        sampler runs the whole schedule, whose last step σ_min → 0 is a denoise.
        ``"sigma-min"`` (GITS / DEIS code): it stops at the last positive σ (σ_min) and
        returns x(σ_min) as the sample, one NFE fewer than ``"denoise"`` on the same σ's.
    """

    def __init__(
        self,
        name: str,
        sigmas,
        solver: str = "heun",
        guidance: float | Sequence[float] = 1.0,
        gamma: float | Sequence[float] = 0.0,
        s_noise: float = 1.0,
        last_step: str = "denoise",
    ):
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if solver not in _steps.SOLVERS:
            raise ValueError(f"solver must be one of {_steps.SOLVERS}, got {solver!r}")
        self.name = name
        self.sigmas = _schedules.validate(torch.as_tensor(sigmas, dtype=torch.float64)).clone()
        self.solver = solver
        n = self.num_steps
        self.guidance = _per_step_list(guidance, n, "guidance")
        self.gamma = _per_step_list(gamma, n, "gamma")
        if min(self._as_list(self.gamma)) < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        self.s_noise = float(s_noise)
        if last_step not in LAST_STEPS:
            raise ValueError(f"last_step must be one of {LAST_STEPS}, got {last_step!r}")
        if last_step == "sigma-min" and (n < 2 or not self.deterministic or self.guidance != 1.0):
            raise ValueError(
                "last_step 'sigma-min' needs >= 2 positive sigmas, no churn and no guidance"
            )
        self.last_step = last_step

    def _as_list(self, v) -> list[float]:
        return [v] * self.num_steps if isinstance(v, float) else list(v)

    @property
    def num_steps(self) -> int:
        return self.sigmas.shape[0] - 1

    @property
    def nfe(self) -> int:
        # The step σ_min → 0 is one denoiser call for every solver; "sigma-min" skips it.
        return nfe_of(self.num_steps, self.solver) - (self.last_step == "sigma-min")

    @property
    def deterministic(self) -> bool:
        return max(self._as_list(self.gamma)) == 0

    def sample(self, preset, x_T, class_labels, streams):  # noqa: N803
        guided = self._as_list(self.guidance) != [1.0] * self.num_steps
        if guided and (class_labels is None or preset.num_classes == 0):
            raise ValueError(f"strategy {self.name!r} uses guidance but the preset has no labels")
        as_t = lambda v: v if isinstance(v, float) else torch.tensor(v, dtype=torch.float64)  # noqa: E731
        return _steps.sample(
            preset.denoiser,
            x_T,
            self.sigmas.to(x_T.device),
            class_labels=class_labels,
            guidance=as_t(self.guidance),
            gamma=as_t(self.gamma),
            solver=self.solver,
            generator=streams,
            s_noise=self.s_noise,
            final_step=self.last_step != "sigma-min",  # GITS/DEIS: x(σ_min) is the sample
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nfe": self.nfe,
            "solver": self.solver,
            "last_step": self.last_step,
            "sigmas": [float(s) for s in self.sigmas],
            "guidance": self._as_list(self.guidance),
            "gamma": self._as_list(self.gamma),
        }


# ---------------------------------------------------------------------------------------------
# The harness


def _resolve_preset(preset) -> _presets.Preset:
    if isinstance(preset, str):
        return _presets.make(preset)
    if not isinstance(preset, _presets.Preset):
        raise TypeError(f"preset must be a preset name or a Preset, got {type(preset)}")
    return preset


def _check_strategies(strategies) -> list[Strategy]:
    strategies = list(strategies)
    if not strategies:
        raise ValueError("strategies must be a non-empty sequence of Strategy")
    for s in strategies:
        if not isinstance(s, Strategy):
            raise TypeError(f"every strategy must be a baselines.evaluate.Strategy, got {type(s)}")
    names = [s.name for s in strategies]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"strategy names must be unique, duplicated: {dup}")
    return strategies


def _summary(values: list[float]) -> dict[str, Any]:
    t = torch.tensor(values, dtype=torch.float64)
    std = float(t.std(unbiased=False)) if len(values) > 1 else 0.0
    return {"mean": float(t.mean()), "std": std, "values": [float(v) for v in values]}


def evaluate(
    strategies: Sequence[Strategy],
    preset: str | _presets.Preset,
    *,
    num_samples: int = 2048,
    seeds: Sequence[int] = (0, 1, 2),
    class_labels="balanced",
    reference: int | None = None,
    metrics: Sequence[str] | None = None,
    progress: bool = True,
    samples_out: dict[str, torch.Tensor] | None = None,
    extra_metrics: Mapping[str, MetricFn] | None = None,
    noise: Callable[[_presets.Preset, int, int], tuple[torch.Tensor, SampleStreams]] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Run every strategy on the same x_T/labels/streams per seed and score the samples.

    :param strategies: the rows; names must be unique.
    :param preset: a preset name or :class:`~diffusion_gym.presets.Preset`.
    :param num_samples: samples per seed (same count of fresh true data per seed).
    :param seeds: one evaluation per seed; the table shows mean ± std over them.
    :param class_labels: see :func:`make_labels`.
    :param reference: Heun steps of the reference ODE solve for ``rmse`` (None =
        :data:`REFERENCE_STEPS`, 0 = no rmse; Richardson-extrapolated, see
        :func:`reference_solution`). Only deterministic strategies get an rmse.
    :param metrics: names from :data:`METRICS` or ``extra_metrics`` (default
        :data:`DEFAULT_METRICS`). Metrics not defined for the preset or strategy are left out
        of that row. ``fd_digits`` brings ``digits_precision`` and ``digits_recall``
        (:func:`~baselines.metrics.with_companions`).
    :param progress: show a tqdm bar.
    :param samples_out: if given, filled with ``{name: x0}`` of the first seed (and
        ``"__data__"``: the true samples) for scatter plots.
    :param extra_metrics: ``{name: fn}`` metrics for this call only (see :data:`MetricFn`);
        they take precedence over :data:`METRICS` entries of the same name.
    :param noise: ``fn(preset, num_samples, seed) -> (x_T, streams)`` in place of
        :func:`make_noise` (called once for x_T and once per strategy for fresh streams).
    :returns: ``{strategy: {metric: {"mean", "std", "values"}}}``.
    """
    preset = _resolve_preset(preset)
    strategies = _check_strategies(strategies)
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an int >= 2, got {num_samples!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must be a non-empty sequence of ints")
    metrics = with_companions(DEFAULT_METRICS if metrics is None else metrics)
    table = {**METRICS, **(extra_metrics or {})}
    unknown = sorted(set(metrics) - set(table))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {sorted(table)}")
    noise = make_noise if noise is None else noise
    ref_steps = REFERENCE_STEPS if reference is None else int(reference)
    need_ref = "rmse" in metrics and ref_steps > 0 and any(s.deterministic for s in strategies)
    has_sample = callable(getattr(preset.data, "sample", None))
    check_metrics_data(preset, metrics)  # the Data protocol: which metric needs data.sample
    collected: dict[str, dict[str, list[float]]] = {s.name: {} for s in strategies}
    bar = _bar(len(seeds) * len(strategies), progress, preset.name)
    for si, seed in enumerate(seeds):
        x_T, _ = noise(preset, num_samples, seed)  # noqa: N806
        labels = make_labels(preset, num_samples, seed, class_labels)
        g = torch.Generator().manual_seed(1_000_003 + seed)
        real = None  # data-free metrics work without data (the Data protocol)
        if has_sample:
            real = preset.data.sample(num_samples, labels, generator=g).to(x_T.device)
        x_ref = reference_solution(preset, x_T, labels, ref_steps) if need_ref else None
        if samples_out is not None and si == 0:
            if real is not None:
                samples_out["__data__"] = real
        for s in strategies:
            _, streams = noise(preset, num_samples, seed)
            t0 = time.perf_counter()
            with torch.no_grad():
                x0 = s.sample(preset, x_T.clone(), labels, streams)
            seconds = time.perf_counter() - t0
            if not bool(torch.isfinite(x0).all()):
                raise ValueError(f"strategy {s.name!r} produced non-finite samples")
            if samples_out is not None and si == 0:
                samples_out[s.name] = x0
            ctx = dict(
                x0=x0,
                real=real,
                labels=labels,
                preset=preset,
                x_ref=x_ref,
                strategy=s,
                seed=seed,
                cache={},
                seconds=seconds,
            )
            for name in metrics:
                v = table[name](ctx)
                if v is not None:
                    collected[s.name].setdefault(name, []).append(v)
            bar.update(1)
    bar.close()
    return {s: {m: _summary(v) for m, v in ms.items()} for s, ms in collected.items()}


def _bar(total: int, progress: bool, desc: str):
    return tqdm(total=total, disable=not progress, desc=f"evaluate {desc}", leave=False)


# ---------------------------------------------------------------------------------------------
# Reports


def _fmt(v: float) -> str:
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.4g}"
    return f"{v:.3e}"


def markdown_table(results: dict[str, dict[str, dict[str, Any]]], title: str = "") -> str:
    """A markdown table: one row per strategy, ``mean ± std`` per metric, best in bold."""
    metrics: list[str] = []
    for ms in results.values():
        metrics += [m for m in ms if m not in metrics]
    best = {}
    for m in metrics:
        vals = [(ms[m]["mean"], s) for s, ms in results.items() if m in ms]
        if m in UNRANKED or len(vals) < 2:
            continue
        pick = max if m in HIGHER_IS_BETTER else min
        best[m] = pick(v for v, _ in vals)
    lines = [f"## {title}", ""] if title else []
    lines.append("| strategy | " + " | ".join(metrics) + " |")
    lines.append("|---|" + "---|" * len(metrics))
    for s, ms in results.items():
        cells = []
        for m in metrics:
            if m not in ms:
                cells.append("–")
                continue
            mean, std = ms[m]["mean"], ms[m]["std"]
            cell = _fmt(mean) if m in UNRANKED else f"{_fmt(mean)} ± {_fmt(std)}"
            cells.append(f"**{cell}**" if m in best and mean == best[m] else cell)
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    arrows = ", ".join(f"{m} {'↑' if m in HIGHER_IS_BETTER else '↓'}" for m in best)
    lines += ["", f"Best in bold ({arrows}); mean ± std over seeds."]
    return "\n".join(lines) + "\n"


def write_report(
    results: dict[str, dict[str, dict[str, Any]]],
    out_dir: str | Path,
    *,
    title: str = "",
    plots: dict[str, Any] | None = None,
    fields: Mapping[str, Mapping[str, Any]] | None = None,
    summary: str | None = None,
    extra_plots: Mapping[str, Callable[[Path], Any]] | None = None,
) -> dict[str, Path]:
    """Write ``eval.json`` (keyed by strategy name), ``eval.md`` and PNG plots into out_dir.

    :param plots: optional inputs of the plots: ``"strategies"`` (list of :class:`Strategy`:
        ``schedules.png`` σ per step on a log axis, ``guidance.png`` w(σ)), ``"samples"``
        (``{name: x0}`` from ``evaluate(samples_out=...)``: ``samples.png`` for 2-D data),
        ``"by_nfe"`` (``{name: {nfe: results_row}}``: ``metric_vs_nfe.png``),
        ``"metric"`` (the metric of that plot, default ``"energy"``).
    With ``"strategies"``, ``strategies.json`` holds each one's :meth:`Strategy.describe`
    (σ's, per-step w, γ: the learned schedules and weights themselves).
    :param fields: ``{strategy: {key: value}}`` extra JSON-able per-strategy fields merged
        into that strategy's ``eval.json`` entry (a key may not shadow a metric).
    :param summary: a markdown block written after the table in ``eval.md``.
    :param extra_plots: ``{file name: fn(path)}``: each fn writes that file into out_dir
        (after the standard plots); the key's stem names it in the returned dict.
    :returns: ``{kind: path}`` of the files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "eval.json", "md": out / "eval.md"}
    data: dict[str, Any] = dict(results)
    for name, extra in (fields or {}).items():
        if name not in results:
            raise ValueError(f"fields for unknown strategy {name!r}; rows: {list(results)}")
        clash = sorted(set(extra) & set(results[name]))
        if clash:
            raise ValueError(f"fields {clash} of {name!r} would shadow its metrics")
        data[name] = {**results[name], **extra}
    atomic_write_text(files["json"], json.dumps(data, indent=2, allow_nan=False))
    md = markdown_table(results, title)
    if summary:
        md += "\n" + summary + "\n"
    atomic_write_text(files["md"], md)
    plots = plots or {}
    strategies = plots.get("strategies") or []
    if strategies:
        files["strategies"] = out / "strategies.json"
        desc = {s.name: s.describe() for s in strategies}
        atomic_write_text(files["strategies"], json.dumps(desc, indent=1, allow_nan=False))
        files.update(plotting.plot_strategies([s.describe() for s in strategies], out))
    if plots.get("samples"):
        p = plotting.plot_samples(plots["samples"], out / "samples.png", title)
        if p is not None:
            files["samples"] = p
    if plots.get("by_nfe"):
        metric = plots.get("metric", "energy")
        files["metric_vs_nfe"] = plotting.plot_metric_vs_nfe(
            plots["by_nfe"], metric, out / "metric_vs_nfe.png", title
        )
    for fname, fn in (extra_plots or {}).items():
        path = out / fname
        fn(path)
        if path.is_file():
            files[Path(fname).stem] = path
    return files
