"""Precision/recall beside FD_digits on every digits evaluation path, and the seed aggregate."""

from __future__ import annotations

import statistics

import pytest
import torch

from baselines.evaluate import DEFAULT_METRICS, FixedSchedule, evaluate
from baselines.metrics import aggregate_seeds, format_mean_std, with_companions
from diffusion_gym import presets, schedules
from diffusion_gym.metrics import digits_metrics


def test_fd_digits_brings_precision_and_recall():
    assert with_companions(["rmse", "fd_digits", "nfe"]) == [
        "rmse",
        "fd_digits",
        "digits_precision",
        "digits_recall",
        "nfe",
    ]
    # Already listed: not duplicated, order kept; without fd_digits: unchanged.
    same = ["digits_recall", "fd_digits", "digits_precision"]
    assert with_companions(same) == same
    assert with_companions(["energy"]) == ["energy"]
    assert "fd_digits" in DEFAULT_METRICS


def test_digits_rows_get_precision_recall_by_default_and_mixtures_do_not():
    p = presets.make("digits-imperfect")
    sig = schedules.karras(3, p.sigma_min, p.sigma_max)
    samples: dict = {}
    res = evaluate(
        [FixedSchedule("w1", sig)], p, num_samples=40, seeds=[0], reference=0,
        progress=False, samples_out=samples,
    )  # fmt: skip
    row = res["w1"]
    m = digits_metrics(samples["w1"].float(), torch.arange(40) % 10)
    keys = {"fd_digits": "fd", "digits_precision": "precision", "digits_recall": "recall"}
    for name, key in {**keys, "digits_class_acc": "class_accuracy"}.items():
        assert row[name]["mean"] == pytest.approx(m[key], rel=1e-12)
    # An explicit list with fd_digits alone still reports the companions.
    res = evaluate([FixedSchedule("w1", sig)], p, num_samples=40, seeds=[0],
                   metrics=["fd_digits"], progress=False)  # fmt: skip
    assert set(res["w1"]) == {"fd_digits", "digits_precision", "digits_recall"}
    # Mixtures: the digits metrics are left out of the rows.
    ring = presets.make("gmm-ring8")
    res = evaluate([FixedSchedule("r", schedules.karras(3, ring.sigma_min, ring.sigma_max))],
                   ring, num_samples=32, seeds=[0], reference=0, progress=False)  # fmt: skip
    assert "energy" in res["r"] and not any(k.startswith(("fd_", "digits_")) for k in res["r"])


def test_aggregate_seeds_mean_and_sample_std():
    runs = {0: {"fd": 10.0, "acc": 0.9}, 1: {"fd": 12.0, "acc": 0.8}, 2: {"fd": 17.0, "acc": 0.7}}
    agg = aggregate_seeds(runs)
    assert agg["fd"]["mean"] == pytest.approx(13.0)
    assert agg["fd"]["std"] == pytest.approx(statistics.stdev([10.0, 12.0, 17.0]))
    assert agg["acc"]["n"] == 3 and agg["acc"]["seeds"] == [0, 1, 2]
    assert format_mean_std(agg["fd"], 2) == f"13.00 ± {statistics.stdev([10, 12, 17]):.2f}"
    one = aggregate_seeds({5: {"fd": 4.0}})
    assert one["fd"]["std"] == 0.0 and format_mean_std(one["fd"]) == "4.000 (1 seed)"
    assert set(aggregate_seeds(runs, ["acc"])) == {"acc"}
    with pytest.raises(ValueError, match=r"'acc' is missing for seed\(s\) \[1\]"):
        aggregate_seeds({0: {"fd": 1.0, "acc": 0.5}, 1: {"fd": 2.0}})
    with pytest.raises(ValueError, match="at least one seed"):
        aggregate_seeds({})
