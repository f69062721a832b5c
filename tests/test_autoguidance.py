"""Autoguidance (baselines/autoguidance.py): exact reductions, per-step weights, search, harness."""

from __future__ import annotations

import pytest
import torch

from baselines import autoguidance as AG  # noqa: N812
from baselines.compare import build_strategies, load_config
from baselines.evaluate import FixedSchedule, evaluate
from baselines.guidance import search_constant
from diffusion_gym import presets, schedules, steps
from diffusion_gym.noise import make_labels, make_noise


@pytest.fixture(scope="module")
def ring():
    """A class-conditional good model (exact ring) and a weaker version (misspecified ring)."""
    return presets.make("gmm-ring8"), presets.make("gmm-ring8-imperfect")


def _run(strategy, preset, n=64, seed=3):
    x_T, streams = make_noise(preset, n, seed)  # noqa: N806
    labels = make_labels(preset, n, seed)
    return strategy.sample(preset, x_T, labels, streams)


def test_denoiser_reduces_exactly_at_w0_and_w1(ring):
    good, bad = ring
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(32, 2, generator=g, dtype=torch.float64)
    sigma = torch.rand(32, generator=g, dtype=torch.float64) * 5 + 0.01
    labels = torch.arange(32) % 8
    d_good = good.denoiser(x, sigma, labels)
    d_bad = bad.denoiser(x, sigma, labels)
    assert not torch.equal(d_good, d_bad)
    den = AG.AutoguidedDenoiser(good.denoiser, bad.denoiser, 1.0)
    assert torch.equal(den(x, sigma, labels), d_good)
    den.weight = 0.0
    assert torch.equal(den(x, sigma, labels), d_bad)
    den.weight = 2.0  # the extrapolation D_bad + w (D_good − D_bad)
    assert torch.allclose(den(x, sigma, labels), d_bad + 2 * (d_good - d_bad), atol=1e-12)


def test_strategy_reduces_to_good_and_bad_samplers(ring):
    good, bad = ring
    sig = schedules.karras(4, good.sigma_min, good.sigma_max)
    plain_good = _run(FixedSchedule("good", sig), good)
    plain_bad = _run(FixedSchedule("bad", sig), bad)
    assert torch.equal(_run(AG.Autoguidance("ag1", sig, bad, 1.0), good), plain_good)
    assert torch.equal(
        _run(AG.Autoguidance("ag0", sig, "gmm-ring8-imperfect", 0.0), good), plain_bad
    )
    # w = 2 is neither; NFE is the sampler's (Heun, 4 steps: 7), two network passes each.
    ag2 = AG.Autoguidance("ag2", sig, bad, 2.0)
    out = _run(ag2, good)
    assert not torch.equal(out, plain_good) and torch.isfinite(out).all()
    assert ag2.nfe == steps.nfe_of(4, "heun") == 7
    d = ag2.describe()
    assert d["network_passes"] == 14 and d["autoguidance"] == [2.0] * 4
    assert d["guide"] == "gmm-ring8-imperfect"


def test_per_step_weights_follow_the_steps(ring):
    good, bad = ring
    sig = schedules.karras(3, good.sigma_min, good.sigma_max)
    w = [2.0, 1.0, 0.5]
    out = _run(AG.Autoguidance("ps", sig, bad, w), good)
    # By hand: one step at a time, each with its own weight.
    x_T, _ = make_noise(good, 64, 3)  # noqa: N806
    labels = make_labels(good, 64, 3)
    x = x_T
    den = AG.AutoguidedDenoiser(good.denoiser, bad.denoiser)
    for i in range(3):
        den.weight = w[i]
        x, _ = steps.step(den, x, float(sig[i]), float(sig[i + 1]), class_labels=labels)
    assert torch.equal(out, x)
    assert not torch.equal(out, _run(AG.Autoguidance("c", sig, bad, 2.0), good))


def test_churn_follows_the_harness_streams(ring):
    """``gamma``: the same churn as the step-by-step autoguided sampler with the harness's
    per-sample streams; at w = 1 exactly the plain model's FixedSchedule with that γ."""
    good, bad = ring
    sig = schedules.karras(3, good.sigma_min, good.sigma_max)
    g = [0.3, 0.0, 0.2]
    ag = AG.Autoguidance("ch", sig, bad, 2.0, gamma=g)
    assert not ag.deterministic and ag.describe()["gamma"] == g
    assert AG.Autoguidance("d", sig, bad, 2.0).deterministic
    out = _run(ag, good)
    x_T, streams = make_noise(good, 64, 3)  # noqa: N806
    labels = make_labels(good, 64, 3)
    den = AG.AutoguidedDenoiser(good.denoiser, bad.denoiser, 2.0)
    x = steps.sample(den, x_T, sig, class_labels=labels, gamma=g, generator=streams)
    assert torch.equal(out, x)
    assert not torch.equal(out, _run(AG.Autoguidance("n", sig, bad, 2.0), good))
    one = _run(AG.Autoguidance("w1", sig, bad, 1.0, gamma=0.3), good)
    # (FixedSchedule hands γ over as a tensor: equal up to its round-off)
    assert torch.allclose(one, _run(FixedSchedule("f", sig, gamma=0.3), good), atol=1e-6)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        AG.Autoguidance("x", sig, bad, 2.0, gamma=-0.1)
    with pytest.raises(ValueError, match="gamma must be a scalar or have one value per step"):
        AG.Autoguidance("x", sig, bad, 2.0, gamma=[0.1, 0.2])


def test_errors(ring):
    good, _ = ring
    sig = schedules.karras(3, good.sigma_min, good.sigma_max)
    with pytest.raises(ValueError, match="one value per step"):
        AG.Autoguidance("x", sig, "gmm-ring8-imperfect", [1.0, 2.0])
    with pytest.raises(ValueError, match="no guiding model"):
        AG.default_guide("gmm-ring8")
    with pytest.raises(ValueError, match="must match"):
        AG.AutoguidedDenoiser(good.denoiser, presets.make("gmm-64d").denoiser)
    with pytest.raises(TypeError, match="guide"):
        AG.Autoguidance("x", sig, 3, 2.0)
    with pytest.raises(ValueError, match="metric"):
        AG.training_score(good, FixedSchedule("a", sig), 16, metric="fid")
    assert AG.default_guide("digits") == "digits-imperfect"
    assert AG.default_guide("digits-imperfect") == "digits-imperfect-guide"


def test_search_returns_the_best_of_its_grid(ring):
    good, bad = ring
    sig = schedules.karras(4, good.sigma_min, good.sigma_max)
    grid = [0.0, 1.0, 1.5, 3.0]
    w, scores = AG.search_autoguidance(good, sig, bad, grid=grid, num_samples=128)
    assert set(scores) == set(grid) and scores[w] == min(scores.values())
    # Each score is the training score of that candidate, recomputed independently, and
    # w = 1 scores as the plain good model (search_constant's w = 1 on the same noise).
    for v in grid:
        cand = AG.Autoguidance("again", sig, bad, v)
        assert AG.training_score(good, cand, 128) == pytest.approx(scores[v], rel=1e-12)
    _, const = search_constant(good, sig, grid=[1.0], num_samples=128)
    assert scores[1.0] == pytest.approx(const[1.0], rel=1e-12)
    # Guiding the exact model by a misspecified one away from it: w = 0 (the bad model)
    # is the worst of the grid.
    assert max(scores, key=scores.get) == 0.0


def test_compare_builds_an_autoguidance_row(ring):
    cfg = load_config(
        {
            "presets": ["gmm-ring8"],
            "strategies": ["edm-rho7", "autoguidance"],
            "guidance_schedule": "edm-rho7",
            "search": {
                "guide": "gmm-ring8-imperfect",
                "autoguidance": [1.0, 2.0],
                "num_samples": 64,
            },
        }
    )
    rows = build_strategies(ring[0], 5, cfg, log=lambda m: None)
    ag = next(r for r in rows if r.name == "autoguidance")
    assert isinstance(ag, AG.Autoguidance) and ag.weights[0] in (1.0, 2.0) and ag.nfe == 5
    res = evaluate(
        rows, ring[0], num_samples=64, seeds=[0], metrics=["energy", "nfe"], progress=False
    )
    assert res["autoguidance"]["nfe"]["mean"] == 5
    with pytest.raises(ValueError, match="no guiding model"):
        load_config({"presets": ["gmm-ring8"], "strategies": ["autoguidance"]})


def test_digits_autoguidance_in_the_harness():
    """digits-imperfect guided by digits-imperfect-guide, in the harness with the digits metrics
    (FD, precision, recall, class accuracy); w = 1 equals the plain model's row."""
    p = presets.make("digits-imperfect")
    sig = schedules.karras(3, p.sigma_min, p.sigma_max)
    rows = [FixedSchedule("plain", sig), AG.Autoguidance("ag-1", sig, None, 1.0)]
    rows.append(AG.Autoguidance("ag-2", sig, None, 2.0))
    metrics = ["fd_digits", "digits_precision", "digits_recall", "digits_class_acc"]
    res = evaluate(rows, p, num_samples=60, seeds=[0], metrics=metrics, progress=False)
    for m in metrics:
        assert res["ag-1"][m]["mean"] == res["plain"][m]["mean"]
    assert res["ag-2"]["fd_digits"]["mean"] != res["plain"]["fd_digits"]["mean"]
    assert AG.training_score(p, rows[2], 40, metric="fd_digits") > 0
