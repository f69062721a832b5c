"""The evaluation harness: run sampling strategies on the same noise, score them, report.

A :class:`Strategy` turns x_T (and class labels) into x_0 with some fixed NFE budget. Every
strategy in one :func:`evaluate` call sees the SAME x_T, labels and per-sample noise streams
(draw 0 of sample i's stream is its unit x_T noise, draw k+1 the churn noise of step k; see
:mod:`diffusion_gym.noise`), so differences between rows are the strategies' alone.
:func:`write_report` writes ``eval.json`` (keyed by strategy name), ``eval.md`` (mean ± std
over seeds, best in bold) and PNG plots. ``diffusion-gym evaluate`` / ``diffusion-gym
compare`` (:func:`main_evaluate`, :func:`main_compare`) wrap both.

NFE convention: one denoiser evaluation of the batch counts 1, also when classifier-free
guidance evaluates the conditional and unconditional model in one batch of size 2B (as
EDM/AYS/GITS papers count). Heun with n steps ending at σ = 0 costs 2n − 1 (last step Euler).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from diffusion_gym import presets as _presets
from diffusion_gym import schedules as _schedules
from diffusion_gym import steps as _steps
from diffusion_gym.noise import SampleStreams, make_labels, make_noise
from diffusion_gym.steps import REFERENCE_STEPS, nfe_of, reference_solution, steps_for_nfe

__all__ = [
    "Strategy",
    "FixedSchedule",
    "nfe_of",
    "steps_for_nfe",
    "make_noise",
    "make_labels",
    "reference_solution",
    "evaluate",
    "write_report",
    "METRICS",
    "HIGHER_IS_BETTER",
    "main_evaluate",
    "main_compare",
]

#: Metrics where larger is better (all others: smaller is better; ``nfe`` is not ranked).
HIGHER_IS_BETTER = frozenset(
    {"loglik", "precision", "recall", "class_acc"}
    | {"digits_precision", "digits_recall", "digits_class_acc"}
)
_UNRANKED = frozenset({"nfe"})


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


class FixedSchedule(Strategy):
    """A fixed schedule with (optionally per-step) guidance weight w and churn γ, run by
    :func:`diffusion_gym.steps.sample`.

    :param name: row name in the tables (e.g. ``"edm-rho7"``, ``"cfg-2.0"``).
    :param sigmas: n+1 descending σ ending in 0.
    :param solver: ``"heun"`` or ``"euler"``.
    :param guidance: CFG weight w: a scalar or one value per step (1 = plain conditional).
    :param gamma: churn γ ≥ 0: a scalar or one value per step.
    :param s_noise: EDM's S_noise.
    """

    def __init__(
        self,
        name: str,
        sigmas,
        solver: str = "heun",
        guidance: float | Sequence[float] = 1.0,
        gamma: float | Sequence[float] = 0.0,
        s_noise: float = 1.0,
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

    def _as_list(self, v) -> list[float]:
        return [v] * self.num_steps if isinstance(v, float) else list(v)

    @property
    def num_steps(self) -> int:
        return self.sigmas.shape[0] - 1

    @property
    def nfe(self) -> int:
        return nfe_of(self.num_steps, self.solver)

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
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nfe": self.nfe,
            "solver": self.solver,
            "sigmas": [float(s) for s in self.sigmas],
            "guidance": self._as_list(self.guidance),
            "gamma": self._as_list(self.gamma),
        }


# ---------------------------------------------------------------------------------------------
# Metrics


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _m():
    from diffusion_gym import metrics

    return metrics


def _per_class(fn, ctx) -> float:
    """Mean over classes of fn(samples of class c, real data of class c), or fn on all."""
    x, y = _flat(ctx["x0"]), _flat(ctx["real"])
    if ctx["labels"] is None:
        return float(fn(x, y))
    lab = ctx["labels"]
    return float(_m().class_conditional(fn, x, y, lab, lab, ctx["preset"].num_classes))


def _is_mixture(preset) -> bool:
    return hasattr(preset.data, "component_log_posterior") and hasattr(preset.data, "log_prob")


def _class_acc(ctx) -> float | None:
    if ctx["labels"] is None or not _is_mixture(ctx["preset"]):
        return None
    pred = ctx["preset"].data.class_log_posterior(_flat(ctx["x0"])).argmax(1)
    return float((pred == ctx["labels"]).double().mean())


def _class_tv(ctx) -> float | None:
    """TV between the histogram of Bayes-classified classes and that of the target labels."""
    p = ctx["preset"]
    if ctx["labels"] is None or not _is_mixture(p):
        return None
    m = _m()
    pred = p.data.class_log_posterior(_flat(ctx["x0"])).argmax(1)
    return float(
        m.total_variation(
            m.class_histogram(pred, p.num_classes), m.class_histogram(ctx["labels"], p.num_classes)
        )
    )


def _mode_tv(ctx) -> float | None:
    """TV between the histogram of the sample's most likely component and the expected one
    (true component weights within each sample's class): mode balance and mode dropping."""
    p = ctx["preset"]
    if not _is_mixture(p):
        return None
    x = _flat(ctx["x0"])
    m = _m()
    k = p.data.num_components
    pred = p.data.component_log_posterior(x).argmax(1)
    expected = p.data._log_weights(x.shape[0], ctx["labels"]).exp().sum(0)
    return float(m.total_variation(m.class_histogram(pred, k), expected / expected.sum()))


def _loglik(ctx) -> float | None:
    p = ctx["preset"]
    if not _is_mixture(p):
        return None
    return float(_m().mean_log_likelihood(p.data, _flat(ctx["x0"]), ctx["labels"]))


def _rmse(ctx) -> float | None:
    if ctx["x_ref"] is None or not ctx["strategy"].deterministic:
        return None
    return float(_m().rmse(_flat(ctx["x0"]), _flat(ctx["x_ref"])))


def _precision(ctx) -> float:
    return float(_m().precision_recall(_flat(ctx["real"]), _flat(ctx["x0"]))[0])


def _recall(ctx) -> float:
    return float(_m().precision_recall(_flat(ctx["real"]), _flat(ctx["x0"]))[1])


def _digits(key: str):
    """Image metric ``key`` of :func:`diffusion_gym.denoisers.classifier.digits_metrics`
    (classifier features, against the 450 test images), for [N, 1, 8, 8] samples; else None.
    Computed once per sample set (cached in ctx)."""

    def fn(ctx) -> float | None:
        if tuple(ctx["x0"].shape[1:]) != (1, 8, 8):
            return None
        if "_digits" not in ctx:
            from diffusion_gym.denoisers.classifier import digits_metrics

            ctx["_digits"] = digits_metrics(ctx["x0"].float().cpu(), ctx["labels"])
        return float(ctx["_digits"][key])

    return fn


#: name → fn(ctx) -> float | None (None = not defined for this preset/strategy; omitted).
#: ctx holds ``x0, real, labels, preset, x_ref, strategy``.
METRICS: dict[str, Callable[[dict], float | None]] = {
    "energy": lambda ctx: _per_class(_m().energy_distance, ctx),
    "frechet": lambda ctx: _per_class(_m().frechet_distance, ctx),
    "sliced_w": lambda ctx: float(_m().sliced_wasserstein(_flat(ctx["x0"]), _flat(ctx["real"]))),
    "precision": _precision,
    "recall": _recall,
    "loglik": _loglik,
    "class_acc": _class_acc,
    "class_tv": _class_tv,
    "mode_tv": _mode_tv,
    "rmse": _rmse,
    "nfe": lambda ctx: float(ctx["strategy"].nfe),
    "fd_digits": _digits("fd"),
    "digits_precision": _digits("precision"),
    "digits_recall": _digits("recall"),
    "digits_class_acc": _digits("class_accuracy"),
}
DEFAULT_METRICS = ("energy", "frechet", "sliced_w", "loglik", "class_acc", "mode_tv", "rmse", "nfe")


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
    :param metrics: names from :data:`METRICS` (default :data:`DEFAULT_METRICS`). Metrics not
        defined for the preset or strategy are left out of that row.
    :param progress: show a tqdm bar.
    :param samples_out: if given, filled with ``{name: x0}`` of the first seed (and
        ``"__data__"``: the true samples) for scatter plots.
    :returns: ``{strategy: {metric: {"mean", "std", "values"}}}``.
    """
    preset = _resolve_preset(preset)
    strategies = _check_strategies(strategies)
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an int >= 2, got {num_samples!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must be a non-empty sequence of ints")
    metrics = list(DEFAULT_METRICS if metrics is None else metrics)
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {sorted(METRICS)}")
    ref_steps = REFERENCE_STEPS if reference is None else int(reference)
    need_ref = "rmse" in metrics and ref_steps > 0 and any(s.deterministic for s in strategies)
    collected: dict[str, dict[str, list[float]]] = {s.name: {} for s in strategies}
    bar = _bar(len(seeds) * len(strategies), progress, preset.name)
    for si, seed in enumerate(seeds):
        x_T, _ = make_noise(preset, num_samples, seed)  # noqa: N806
        labels = make_labels(preset, num_samples, seed, class_labels)
        g = torch.Generator().manual_seed(1_000_003 + seed)
        real = preset.data.sample(num_samples, labels, generator=g).to(x_T.device)
        x_ref = reference_solution(preset, x_T, labels, ref_steps) if need_ref else None
        if samples_out is not None and si == 0:
            samples_out["__data__"] = real
        for s in strategies:
            _, streams = make_noise(preset, num_samples, seed)
            with torch.no_grad():
                x0 = s.sample(preset, x_T.clone(), labels, streams)
            if not bool(torch.isfinite(x0).all()):
                raise ValueError(f"strategy {s.name!r} produced non-finite samples")
            if samples_out is not None and si == 0:
                samples_out[s.name] = x0
            ctx = dict(x0=x0, real=real, labels=labels, preset=preset, x_ref=x_ref, strategy=s)
            for name in metrics:
                v = METRICS[name](ctx)
                if v is not None:
                    collected[s.name].setdefault(name, []).append(v)
            bar.update(1)
    bar.close()
    return {s: {m: _summary(v) for m, v in ms.items()} for s, ms in collected.items()}


def _bar(total: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

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
        if m in _UNRANKED or len(vals) < 2:
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
            cell = _fmt(mean) if m in _UNRANKED else f"{_fmt(mean)} ± {_fmt(std)}"
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
) -> dict[str, Path]:
    """Write ``eval.json`` (keyed by strategy name), ``eval.md`` and PNG plots into out_dir.

    :param plots: optional inputs of the plots: ``"strategies"`` (list of :class:`Strategy`:
        ``schedules.png`` σ per step on a log axis, ``guidance.png`` w(σ)), ``"samples"``
        (``{name: x0}`` from ``evaluate(samples_out=...)``: ``samples.png`` for 2-D data),
        ``"by_nfe"`` (``{name: {nfe: results_row}}``: ``metric_vs_nfe.png``),
        ``"metric"`` (the metric of that plot, default ``"energy"``).
    With ``"strategies"``, ``strategies.json`` holds each one's :meth:`Strategy.describe`
    (σ's, per-step w, γ: the learned schedules and weights themselves).
    :returns: ``{kind: path}`` of the files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "eval.json", "md": out / "eval.md"}
    files["json"].write_text(json.dumps(results, indent=2, allow_nan=False))
    files["md"].write_text(markdown_table(results, title))
    plots = plots or {}
    from . import plotting

    strategies = plots.get("strategies") or []
    if strategies:
        files["strategies"] = out / "strategies.json"
        desc = {s.name: s.describe() for s in strategies}
        files["strategies"].write_text(json.dumps(desc, indent=1, allow_nan=False))
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
    return files


# ---------------------------------------------------------------------------------------------
# Command line (implemented in baselines.compare to keep this module about the harness)


def main_evaluate(argv: list[str] | None = None) -> int:
    """``diffusion-gym evaluate``: see :func:`baselines.compare.main_evaluate`."""
    from .compare import main_evaluate as run

    return run(argv)


def main_compare(argv: list[str] | None = None) -> int:
    """``diffusion-gym compare CONFIG --out DIR``: see :func:`baselines.compare.main_compare`."""
    from .compare import main_compare as run

    return run(argv)
