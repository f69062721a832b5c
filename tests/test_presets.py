"""Named presets: the mixture toys and ART's 1-D Gaussian."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from diffusion_gym import metrics, presets, schedules, steps
from diffusion_gym.data import noised
from diffusion_gym.denoisers import NULL_LABEL, Denoiser

# The presets of the foundation (trained-model presets are tested with their models).
CORE = ["gmm-ring8", "gmm-grid", "gmm-64d", "art-gauss1d"]
ALL_CORE = CORE + [f"{n}-imperfect" for n in CORE]


@pytest.mark.parametrize("name", ALL_CORE)
def test_every_core_preset_builds_and_samples(name):
    p = presets.make(name)
    assert p.name == name and name in presets.names() and p.description
    assert isinstance(p.denoiser, Denoiser)
    assert 0 < p.sigma_min < p.sigma_max and p.prior_std >= p.sigma_max
    assert p.exact == (not name.endswith("-imperfect"))
    g = torch.Generator().manual_seed(0)
    labels = p.data.sample_labels(4, g) if p.num_classes else None
    x0 = p.data.sample(4, labels, generator=g)
    assert x0.shape == (4, *p.denoiser.shape)
    assert torch.isfinite(p.data.log_prob(x0, 0.0, labels)).all()
    # A short sampler run works end to end.
    x_t = p.prior_std * torch.randn(4, *p.denoiser.shape, generator=g, dtype=torch.float64)
    sig = schedules.karras(3, p.sigma_min, p.sigma_max)
    out = steps.sample(p.denoiser, x_t, sig, class_labels=labels)
    assert out.shape == x0.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("name", CORE)
def test_imperfect_variants_differ_from_the_truth(name):
    """The imperfect denoiser has the true data but a different denoiser, and its
    unconditional branch is not its conditional one (guidance has something to do)."""
    exact, imperfect = presets.make(name), presets.make(f"{name}-imperfect")
    g = torch.Generator().manual_seed(1)
    n = 64
    x = exact.data.sample(n, generator=g) + 0.5 * torch.randn(
        n, *exact.denoiser.shape, generator=g, dtype=torch.float64
    )
    labels = exact.data.sample_labels(n, g) if exact.num_classes else None
    d_true, d_model = exact.denoiser(x, 0.5, labels), imperfect.denoiser(x, 0.5, labels)
    assert metrics.rmse(d_model, d_true) > 0.01
    # Same truth.
    torch.testing.assert_close(imperfect.data.log_prob(x, 0.0), exact.data.log_prob(x, 0.0))
    if exact.num_classes:
        d_u = imperfect.denoiser(x, 0.5, torch.full((n,), NULL_LABEL))
        assert metrics.rmse(d_u, d_model) > 0.01


def test_unknown_name_and_keyword_list_valid_ones():
    with pytest.raises(ValueError, match="gmm-ring8.*") as e:
        presets.make("gmm-ring9")
    assert all(n in str(e.value) for n in ALL_CORE)
    with pytest.raises(TypeError, match="sigma_max") as e:
        presets.make("gmm-ring8", sigma_maxx=10.0)
    assert "sigma_maxx" in str(e.value)


def test_overrides_reach_the_denoiser():
    p = presets.make("gmm-ring8", sigma_min=0.01, sigma_max=20.0)
    assert (p.sigma_min, p.sigma_max) == (0.01, 20.0)
    q = presets.make("gmm-ring8-imperfect", variance_scale=1.0, weight_tilt=0.0)
    assert q.denoiser.conditional.num_components == 8


def test_art_gauss1d_matches_the_art_paper(gauss1d):
    """ART's 1-D toy: Euler on the uniform linear grid from T = 3, x_T ~ N(0, 1 + 3²).

    The sampler is linear, x_0 = a x_T, so the output is N(0, 10 a²) and its W2 to the data
    N(0, 1) is |√10 |a| − 1|. ART reports 0.468 / 0.215 / 0.114 at K = 2 / 5 / 10.
    """
    p = gauss1d
    assert p.prior_std == pytest.approx(math.sqrt(10.0))
    for k, paper in [(2, 0.468), (5, 0.215), (10, 0.114)]:
        one = torch.ones(1, 1, dtype=torch.float64)
        a = float(steps.sample(p.denoiser, one, schedules.linear(k, p.sigma_max), solver="euler"))
        w2 = metrics.gaussian_w2_1d(0.0, abs(a) * p.prior_std, 0.0, 1.0)
        assert w2 == pytest.approx(paper, abs=0.006), (k, w2)


def test_noised_expert_states(gauss1d, ring8):
    """x_σ = x_0 + σ n: per-sample σ, class labels, moments, reproducibility, errors."""
    gm = gauss1d.data  # N(0, 1)
    sig = torch.tensor([0.0, 2.0]).repeat_interleave(20000)
    x = noised(gm, sig, generator=torch.Generator().manual_seed(0))
    assert x.shape == (40000, 1)
    assert float(x[:20000].std()) == pytest.approx(1.0, abs=0.03)
    assert float(x[20000:].std()) == pytest.approx(math.sqrt(5.0), abs=0.05)
    again = noised(gm, sig, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    ring = ring8.data
    labels = torch.full((3000,), 2)
    xr = noised(ring, 0.1, labels, torch.Generator().manual_seed(1))
    torch.testing.assert_close(xr.mean(0), ring.means[2], atol=0.03, rtol=0)
    assert noised(ring, 0.5, num_samples=7).shape == (7, 2)
    with pytest.raises(ValueError, match="sigma"):
        noised(ring, -1.0, num_samples=3)
    with pytest.raises(ValueError, match="inconsistent"):
        noised(ring, torch.ones(4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="num_samples"):
        noised(ring, 0.5)
    with pytest.raises(TypeError, match="sample"):
        noised(object(), 0.5, num_samples=2)


def test_trained_presets_load_on_first_make_only():
    """``import diffusion_gym`` and ``presets.names()`` load neither the trained presets'
    module nor scikit-learn; the first ``make`` does."""
    code = (
        "import sys, diffusion_gym; from diffusion_gym import presets; presets.names();"
        "print('diffusion_gym.presets_trained' in sys.modules, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert presets.make("gmm-ring8-mlp").name == "gmm-ring8-mlp"
    assert "digits" in presets.names() and "gmm-ring8-mlp" in presets.describe()


def test_register_rejects_a_malformed_entry_point():
    with pytest.raises(TypeError, match="module:function"):
        presets.register("x", "diffusion_gym.presets_trained.digits")
    assert "x" not in presets.names()
