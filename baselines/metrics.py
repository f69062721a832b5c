"""The evaluation harness's named metrics: ``name → fn(ctx) -> float | None``.

Each metric scores one strategy's samples of one seed; :func:`baselines.evaluate.evaluate`
calls them by name (``metrics=[...]``, or a YAML ``metrics:`` list). The distances
themselves are :mod:`diffusion_gym.metrics`; this module adapts them to the harness's
``ctx`` and holds the registry (:data:`METRICS`, :func:`register_metric`) and the ranking
direction of each metric (:data:`HIGHER_IS_BETTER`, :data:`UNRANKED`). Everything here is
re-exported by :mod:`baselines.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from diffusion_gym import metrics as _metrics
from diffusion_gym.data import check_data

__all__ = [
    "MetricFn",
    "METRICS",
    "DEFAULT_METRICS",
    "DIGITS_COMPANIONS",
    "with_companions",
    "HIGHER_IS_BETTER",
    "UNRANKED",
    "NEEDS_SAMPLES",
    "check_metrics_data",
    "register_metric",
    "digits_metric_fns",
    "aggregate_seeds",
    "format_mean_std",
]

#: Metrics where larger is better (all others: smaller is better). Extended by
#: :func:`register_metric`.
HIGHER_IS_BETTER: set[str] = {"loglik", "precision", "recall", "class_acc"} | {
    "digits_precision",
    "digits_recall",
    "digits_class_acc",
}
#: Metrics reported but never ranked (no bold, no ± in the table).
UNRANKED: set[str] = {"nfe", "sec_per_1k"}
#: Metrics that compare with fresh samples of the data (``ctx["real"]``): they need
#: ``preset.data.sample`` (the Data protocol, :mod:`diffusion_gym.data.protocol`); the
#: harness raises a ``ValueError`` naming it when the data lacks it. Other metrics need no
#: data (``rmse``, ``nfe``, ``sec_per_1k``, the digits metrics) or are left out of a row whose
#: data lacks their method (``loglik``: ``log_prob``; ``class_acc``/``class_tv``/``mode_tv``: a
#: mixture).
NEEDS_SAMPLES: set[str] = {"energy", "frechet", "sliced_w", "precision", "recall"}


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


#: A metric: ``fn(ctx) -> float | None`` (None = not defined for this preset or strategy; the
#: row leaves it out). ``ctx`` holds ``x0, real, labels, preset, x_ref, strategy, seed`` and
#: ``cache`` (a dict shared by the metrics of one sample set).
MetricFn = Callable[[dict], "float | None"]


def _per_class(fn, ctx) -> float:
    """Mean over classes of fn(samples of class c, real data of class c), or fn on all."""
    x, y = _flat(ctx["x0"]), _flat(ctx["real"])
    if ctx["labels"] is None:
        return float(fn(x, y))
    lab = ctx["labels"]
    return float(_metrics.class_conditional(fn, x, y, lab, lab, ctx["preset"].num_classes))


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
    m = _metrics
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
    m = _metrics
    k = p.data.num_components
    pred = p.data.component_log_posterior(x).argmax(1)
    expected = p.data._log_weights(x.shape[0], ctx["labels"]).exp().sum(0)
    return float(m.total_variation(m.class_histogram(pred, k), expected / expected.sum()))


def _loglik(ctx) -> float | None:
    p = ctx["preset"]
    if _is_mixture(p):
        return float(_metrics.mean_log_likelihood(p.data, _flat(ctx["x0"]), ctx["labels"]))
    if not callable(getattr(p.data, "log_prob", None)):
        return None
    return float(p.data.log_prob(ctx["x0"], 0.0, ctx["labels"]).double().mean())  # Data protocol


def _rmse(ctx) -> float | None:
    if ctx["x_ref"] is None or not ctx["strategy"].deterministic:
        return None
    return float(_metrics.rmse(_flat(ctx["x0"]), _flat(ctx["x_ref"])))


def _precision(ctx) -> float:
    return float(_metrics.precision_recall(_flat(ctx["real"]), _flat(ctx["x0"]))[0])


def _recall(ctx) -> float:
    return float(_metrics.precision_recall(_flat(ctx["real"]), _flat(ctx["x0"]))[1])


#: digits metric name → key of :func:`diffusion_gym.metrics.digits_metrics`' result.
_DIGITS_KEYS = {
    "fd_digits": "fd",
    "digits_precision": "precision",
    "digits_recall": "recall",
    "digits_class_acc": "class_accuracy",
    "digits_class_tv": "class_tv",
}


def digits_metric_fns(classifier=None, suffix: str = "") -> dict[str, MetricFn]:
    """The image metrics of :func:`diffusion_gym.metrics.digits_metrics` (classifier
    features, against the 450 test images) as harness metrics: ``fd_digits``,
    ``digits_precision``, ``digits_recall``, ``digits_class_acc``, ``digits_class_tv``; None
    for samples not shaped [N, 1, 8, 8]. ``digits_metrics`` runs once per sample set and
    classifier (cached in ``ctx["cache"]``).

    :param classifier: the classifier (None: the shipped one, loaded per sample set).
    :param suffix: appended to every name (``"_b"``: ``fd_digits_b``, ...), so metrics of a
        second classifier sit beside the first's.
    """

    def metric(key: str) -> MetricFn:
        def fn(ctx) -> float | None:
            if tuple(ctx["x0"].shape[1:]) != (1, 8, 8):
                return None
            cache = ctx.setdefault("cache", {})
            tag = "digits" + suffix
            if tag not in cache:
                x = ctx["x0"].float().cpu()
                cache[tag] = _metrics.digits_metrics(x, ctx["labels"], classifier=classifier)
            return float(cache[tag][key])

        return fn

    return {name + suffix: metric(key) for name, key in _DIGITS_KEYS.items()}


#: name → :data:`MetricFn`. Add to it with :func:`register_metric`.
METRICS: dict[str, MetricFn] = {
    "energy": lambda ctx: _per_class(_metrics.energy_distance, ctx),
    "frechet": lambda ctx: _per_class(_metrics.frechet_distance, ctx),
    "sliced_w": lambda ctx: float(
        _metrics.sliced_wasserstein(_flat(ctx["x0"]), _flat(ctx["real"]))
    ),
    "precision": _precision,
    "recall": _recall,
    "loglik": _loglik,
    "class_acc": _class_acc,
    "class_tv": _class_tv,
    "mode_tv": _mode_tv,
    "rmse": _rmse,
    "nfe": lambda ctx: float(ctx["strategy"].nfe),
    # Wall-clock seconds of the strategy's sample() per 1,000 samples (this process's threads).
    "sec_per_1k": lambda ctx: (
        1000.0 * ctx["seconds"] / ctx["x0"].shape[0] if "seconds" in ctx else None
    ),
    **digits_metric_fns(),
}
#: The harness's default metrics. The digits metrics among them are left out of every row whose
#: samples are not 8×8 digits (mixtures), and ``fd_digits`` brings its companions
#: (:data:`DIGITS_COMPANIONS`, :func:`with_companions`).
DEFAULT_METRICS = (
    "energy",
    "frechet",
    "sliced_w",
    "loglik",
    "class_acc",
    "mode_tv",
    "rmse",
    "nfe",
    "fd_digits",
    "digits_class_acc",
)
#: Metrics reported beside FD_digits wherever it is (issue 20 item 8): k-NN precision and
#: recall (Kynkäänniemi et al. 2019) in the same classifier features.
DIGITS_COMPANIONS = ("digits_precision", "digits_recall")


def with_companions(metrics) -> list[str]:
    """``metrics`` with :data:`DIGITS_COMPANIONS` inserted after ``fd_digits`` where it is
    listed and they are not (they reuse its one ``digits_metrics`` call: no extra cost)."""
    out = list(metrics)
    if "fd_digits" in out:
        at = out.index("fd_digits") + 1
        for m in reversed([m for m in DIGITS_COMPANIONS if m not in out]):
            out.insert(at, m)
    return out


def check_metrics_data(preset, metrics) -> None:
    """``ValueError`` naming ``data.sample`` when ``metrics`` hold one of
    :data:`NEEDS_SAMPLES` and the preset's data lacks it (called before any work)."""
    need = [m for m in metrics if m in NEEDS_SAMPLES]
    if need:
        check_data(preset.data, ["sample"], f"metric(s) {need} of preset {preset.name!r}")


def register_metric(
    name: str,
    fn: MetricFn,
    *,
    higher_is_better: bool = False,
    ranked: bool = True,
    replace: bool = False,
) -> None:
    """Add metric ``name`` to :data:`METRICS` so every :func:`evaluate` call (and YAML
    ``metrics:`` lists) can name it.

    :param fn: ``fn(ctx) -> float | None`` (see :data:`MetricFn`).
    :param higher_is_better: rank larger values best in :func:`markdown_table`.
    :param ranked: False: report the value without ranking (like ``nfe``).
    :param replace: allow replacing an existing metric of that name.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"metric name must be a non-empty str, got {name!r}")
    if not callable(fn):
        raise TypeError(f"metric {name!r}: fn must be callable, got {type(fn).__name__}")
    if name in METRICS and not replace:
        raise ValueError(f"metric {name!r} already exists (pass replace=True to replace it)")
    METRICS[name] = fn
    HIGHER_IS_BETTER.discard(name)
    UNRANKED.discard(name)
    if higher_is_better:
        HIGHER_IS_BETTER.add(name)
    if not ranked:
        UNRANKED.add(name)


def aggregate_seeds(
    runs: Mapping[int, Mapping[str, float]], metrics: Sequence[str] | None = None
) -> dict[str, dict]:
    """A metric over training seeds as mean ± std: ``{seed: {metric: value}}`` →
    ``{metric: {"mean", "std", "n", "values", "seeds"}}``.

    ``std`` is the sample standard deviation (n − 1 in the denominator; 0.0 for one seed),
    the spread one expects between independent training runs. Every seed must report every
    metric asked for (``metrics``; default those of the first seed): a missing one is a
    ``ValueError`` naming it and the seed, so a mean never silently covers fewer seeds.
    """
    if not runs:
        raise ValueError("runs must map at least one seed to its metrics")
    seeds = list(runs)
    names = list(runs[seeds[0]] if metrics is None else metrics)
    out: dict[str, dict] = {}
    for m in names:
        missing = [s for s in seeds if m not in runs[s]]
        if missing:
            raise ValueError(f"metric {m!r} is missing for seed(s) {missing}")
        vals = [float(runs[s][m]) for s in seeds]
        t = torch.tensor(vals, dtype=torch.float64)
        std = float(t.std(unbiased=True)) if len(vals) > 1 else 0.0
        out[m] = {"mean": float(t.mean()), "std": std, "n": len(vals), "values": vals,
                  "seeds": seeds}  # fmt: skip
    return out


def format_mean_std(stat: Mapping, digits: int = 3) -> str:
    """``"mean ± std"`` of an :func:`aggregate_seeds` entry with ``digits`` decimals
    (``"mean (1 seed)"`` when n = 1)."""
    if stat.get("n", 2) == 1:
        return f"{stat['mean']:.{digits}f} (1 seed)"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
