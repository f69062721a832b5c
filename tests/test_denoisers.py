"""The denoiser contract and the exact Gaussian-mixture denoisers."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_gym import metrics, presets, schedules, steps
from diffusion_gym.denoisers import NULL_LABEL, Denoiser, GaussianMixture, guided_denoise

SIGMAS = [1e-3, 1e-2, 0.3, 1.0, 5.0, 80.0]


def _mixture(kind: str, d: int, conditional: bool, seed: int = 0) -> GaussianMixture:
    """A random 4-component mixture in d dims with full, diagonal or isotropic covariances."""
    g = torch.Generator().manual_seed(seed + 17 * d)
    k = 4
    means = 2.0 * torch.randn(k, d, generator=g, dtype=torch.float64)
    if kind == "full":
        a = torch.randn(k, d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
        cov = a @ a.transpose(1, 2) + 0.05 * torch.eye(d, dtype=torch.float64)
    elif kind == "diagonal":
        cov = 0.05 + torch.rand(k, d, generator=g, dtype=torch.float64)
    else:
        cov = 0.05 + torch.rand(k, generator=g, dtype=torch.float64)
    weights = 0.2 + torch.rand(k, generator=g, dtype=torch.float64)
    classes = torch.tensor([0, 1, 1, 2]) if conditional else None
    return GaussianMixture(means, cov, weights, classes)


@pytest.mark.parametrize("kind", ["full", "diagonal", "isotropic"])
@pytest.mark.parametrize("d", [1, 2, 8, 64])
@pytest.mark.parametrize("conditional", [False, True])
def test_tweedie_identity(kind, d, conditional):
    """D(x, σ) = x + σ² ∇ log p_σ(x | c), the score taken by autograd of log_prob."""
    gm = _mixture(kind, d, conditional)
    g = torch.Generator().manual_seed(1)
    n = 6
    labels = torch.tensor([0, 1, 2, NULL_LABEL, 1, 0]) if conditional else None
    for sigma in SIGMAS:
        # Points where p_σ has its mass: x = x0 + σ n.
        x = gm.sample(n, generator=g) + sigma * torch.randn(n, d, generator=g, dtype=gm.dtype)
        x.requires_grad_(True)
        (score,) = torch.autograd.grad(gm.log_prob(x, sigma, labels).sum(), x)
        with torch.no_grad():
            den = gm(x, sigma, labels)
        tweedie = x.detach() + sigma**2 * score
        scale = max(1.0, float(den.abs().max()))
        err = float((den - tweedie).abs().max())
        assert err <= 1e-5 * scale, f"σ={sigma}: |D − Tweedie| = {err}"
        # The closed-form score agrees with autograd too.
        torch.testing.assert_close(gm.score(x.detach(), sigma, labels), score, rtol=1e-6, atol=0)


def test_denoiser_is_posterior_mean_in_one_dimension():
    """For N(μ, s²) data, D(x, σ) = μ + s²/(s² + σ²) (x − μ) exactly."""
    gm = GaussianMixture([[0.7]], 2.0)
    x = torch.linspace(-5, 5, 11, dtype=torch.float64)[:, None]
    for sigma in SIGMAS:
        expected = 0.7 + 2.0 / (2.0 + sigma**2) * (x - 0.7)
        torch.testing.assert_close(gm(x, sigma), expected, rtol=1e-12, atol=1e-12)


def test_conditional_restricts_to_class_components():
    """Conditioning on a class equals a mixture of that class's components alone."""
    gm = _mixture("full", 3, conditional=True)
    sub = GaussianMixture(gm.means[1:3], gm.covariances[1:3], gm.weights[1:3])
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    labels = torch.ones(5, dtype=torch.long)
    for sigma in [0.01, 1.0, 30.0]:
        torch.testing.assert_close(gm(x, sigma, labels), sub(x, sigma), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(
            gm.log_prob(x, sigma, labels), sub.log_prob(x, sigma), rtol=1e-10, atol=1e-12
        )
    # Label −1 (and no labels at all) is the unconditional model.
    null = torch.full((5,), NULL_LABEL)
    torch.testing.assert_close(gm(x, 0.5, null), gm(x, 0.5))


def test_log_prob_matches_independent_density():
    """log p_σ against torch.distributions (an independent implementation)."""
    gm = _mixture("full", 4, conditional=False)
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sigma = 0.4
    comps = torch.distributions.MultivariateNormal(
        gm.means, gm.covariances + sigma**2 * torch.eye(4, dtype=torch.float64)
    )
    mix = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(gm.weights), comps)
    torch.testing.assert_close(gm.log_prob(x, sigma), mix.log_prob(x), rtol=1e-10, atol=1e-10)


def test_stable_far_from_the_data_in_64d():
    """Far tails, tiny σ and 64 dims: finite outputs, and D picks the nearest component."""
    gm = presets.make("gmm-64d").data
    x = gm.means[:3] + 40.0
    for sigma in [1e-3, 80.0]:
        assert torch.isfinite(gm(x, sigma, torch.tensor([0, 1, NULL_LABEL]))).all()
        assert torch.isfinite(gm.log_prob(x, sigma)).all()
    x = gm.means[:4] + 1e-4
    den = gm(x, 1e-3)
    torch.testing.assert_close(den, gm.means[:4], atol=1e-3, rtol=0)


def test_sample_moments_and_classes():
    """Samples have the mixture's mean and covariance; labelled draws stay in their class."""
    gm = _mixture("full", 3, conditional=True)
    g = torch.Generator().manual_seed(3)
    x = gm.sample(40000, generator=g)
    mean = (gm.weights[:, None] * gm.means).sum(0)
    centred = gm.means - mean
    cov = (
        gm.weights[:, None, None] * (gm.covariances + centred[:, :, None] * centred[:, None])
    ).sum(0)
    torch.testing.assert_close(x.mean(0), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.1, rtol=0.05)
    # Class 0 has the single component 0.
    x0 = gm.sample(2000, torch.zeros(2000, dtype=torch.long), generator=g)
    torch.testing.assert_close(x0.mean(0), gm.means[0], atol=0.1, rtol=0)
    labels = gm.sample_labels(20000, g)
    hist = metrics.class_histogram(labels, gm.num_classes)
    assert metrics.total_variation(hist, gm.class_weights) < 0.02
    # The Bayes classifier recovers the class of well-separated samples at σ = 0.
    post = gm.class_log_posterior(x0).exp()
    torch.testing.assert_close(post.sum(1), torch.ones(2000, dtype=torch.float64))


def _reproduces(name: str, conditional: bool, seed: int, n: int = 1000, pairs: int = 8) -> None:
    p = presets.make(name)
    gm = p.data
    g = torch.Generator().manual_seed(seed)
    labels = gm.sample_labels(n, g) if conditional else None
    x_t = p.prior_std * torch.randn(n, *gm.shape, generator=g, dtype=gm.dtype)
    fine = schedules.karras(256, p.sigma_min, p.sigma_max, 7.0)
    coarse = schedules.karras(3, p.sigma_min, p.sigma_max, 7.0)
    x = steps.sample(gm, x_t, fine, class_labels=labels, solver="heun")
    x_bad = steps.sample(gm, x_t, coarse, class_labels=labels, solver="heun")
    fresh = gm.sample(n, generator=g)
    for metric in (metrics.frechet_distance, metrics.energy_distance):
        # Sampling noise: the metric between independent data sets of the same size.
        noise = [metric(gm.sample(n, generator=g), gm.sample(n, generator=g)) for _ in range(pairs)]
        bound = max(noise) + (max(noise) - min(noise))
        value = metric(x, fresh)
        assert value <= bound, f"{name} {metric.__name__}: {value} > noise bound {bound}"
        # The bound has power: a 3-step sampler is far outside it.
        assert metric(x_bad, fresh) > 2 * bound


@pytest.mark.parametrize("name, conditional", [("gmm-ring8", True), ("gmm-grid", False)])
def test_reference_sampler_reproduces_the_data(name, conditional):
    """256 Heun steps on the exact mixture: FD and energy distance to fresh data lie within
    the noise between two data sets of the same size (measured here: the largest value over
    8 independent pairs plus the pairs' range), while a 3-step sampler lies far outside."""
    _reproduces(name, conditional, seed=0)


# ---------------------------------------------------------------------------------------------
# Guided denoiser


class CountingDenoiser(Denoiser):
    """Wraps a denoiser and records the batch size of every call."""

    def __init__(self, inner: Denoiser):
        super().__init__(inner.shape, inner.num_classes, inner.sigma_min, inner.sigma_max, 1.0)
        self.inner = inner
        self.calls: list[int] = []

    def denoise(self, x, sigma, class_labels):
        self.calls.append(x.shape[0])
        return self.inner.denoise(x, sigma, class_labels)


def test_guided_denoise_one_call_and_formula():
    model = presets.make("gmm-ring8-imperfect").denoiser  # distinct cond / uncond branches
    wrapped = CountingDenoiser(model)
    g = torch.Generator().manual_seed(0)
    b = 5
    x = 3.0 * torch.randn(b, 2, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64)
    labels = torch.tensor([0, 3, 7, 1, 5])
    w = torch.tensor([0.0, 1.0, 1.5, 3.0, 5.0], dtype=torch.float64)
    out = guided_denoise(wrapped, x, sigma, labels, w)
    assert wrapped.calls == [2 * b]
    d_c = model(x, sigma, labels)
    d_u = model(x, sigma, torch.full((b,), NULL_LABEL))
    torch.testing.assert_close(out, d_u + w[:, None] * (d_c - d_u), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(d_c, d_u)
    # w = 1 is the conditional model, w = 0 the unconditional one.
    torch.testing.assert_close(guided_denoise(model, x, sigma, labels, 1.0), d_c)
    torch.testing.assert_close(guided_denoise(model, x, sigma, labels, 0.0), d_u)
    # No labels or guidance=None: one plain call of size B.
    wrapped.calls.clear()
    guided_denoise(wrapped, x, sigma, labels, None)
    guided_denoise(wrapped, x, sigma, None, 2.0)
    assert wrapped.calls == [b, b]


# ---------------------------------------------------------------------------------------------
# Bad input


class NaNDenoiser(Denoiser):
    """A broken model: NaN wherever σ < 1."""

    def __init__(self):
        super().__init__((2,), 0, 0.002, 80.0, 1.0, torch.float64)

    def denoise(self, x, sigma, class_labels):
        return torch.where(sigma[:, None] < 1, torch.full_like(x, math.nan), 0.5 * x)


def test_nan_from_a_denoiser_raises_in_the_sampler():
    x_t = torch.ones(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="non-finite"):
        steps.sample(NaNDenoiser(), x_t, schedules.karras(4, 0.002, 80.0))
    with pytest.raises(ValueError, match="non-finite"):
        steps.step(NaNDenoiser(), x_t, 0.5, 0.1)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda gm: gm(torch.zeros(3, 3, dtype=torch.float64), 1.0), ValueError, "shape"),
        (lambda gm: gm(torch.zeros(3, 2, dtype=torch.float64), -0.1), ValueError, "sigma"),
        (lambda gm: gm(torch.zeros(3, 2, dtype=torch.float64), math.nan), ValueError, "sigma"),
        (lambda gm: gm(torch.zeros(3, 2, dtype=torch.float64), math.inf), ValueError, "sigma"),
        (lambda gm: gm(torch.zeros(3, 2), torch.ones(4)), ValueError, r"shape \[3\]"),
        (lambda gm: gm(torch.zeros(3, 2), 1.0, torch.tensor([0, 1, 8])), ValueError, "0, 8"),
        (lambda gm: gm(torch.zeros(3, 2), 1.0, torch.tensor([0, 1, -2])), ValueError, "-1"),
        (lambda gm: gm(torch.zeros(3, 2), 1.0, torch.tensor([0.0, 1, 2])), TypeError, "integer"),
        (lambda gm: gm(torch.zeros(3, 2), 1.0, torch.tensor([0, 1])), ValueError, "labels"),
        (lambda gm: gm(torch.zeros(3, 2, dtype=torch.long), 1.0), TypeError, "floating"),
        (lambda gm: gm([[0.0, 0.0]], 1.0), TypeError, "torch.Tensor"),
        (lambda gm: gm.sample(-1), ValueError, "non-negative"),
        (lambda gm: gm.sample(2, generator=7), TypeError, "generator"),
        (lambda gm: gm.sample(2, torch.tensor([0, 9])), ValueError, "class_labels"),
        (
            lambda gm: guided_denoise(gm, torch.zeros(3, 2), 1.0, torch.zeros(3).long(), [1, 2]),
            ValueError,
            "guidance",
        ),
    ],
)
def test_bad_input_raises_clear_errors(call, error, match, ring8):
    gm = ring8.data
    with pytest.raises(error, match=match):
        call(gm)


def test_unconditional_model_rejects_labels():
    gm = _mixture("isotropic", 2, conditional=False)
    with pytest.raises(ValueError, match="unconditional"):
        gm(torch.zeros(2, 2, dtype=torch.float64), 1.0, torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="no classes"):
        gm.class_weights  # noqa: B018
    with pytest.raises(ValueError, match="no classes"):
        gm.class_log_posterior(torch.zeros(2, 2, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(means=torch.zeros(3), covariances=1.0), r"\[K, d\]"),
        (dict(means=torch.zeros(2, 2), covariances=torch.ones(3)), "covariances"),
        (dict(means=torch.zeros(2, 2), covariances=-torch.ones(2)), "positive definite"),
        (dict(means=torch.zeros(1, 2), covariances=torch.tensor([[[1.0, 2], [0, 1]]])), "symm"),
        (dict(means=torch.zeros(1, 2), covariances=torch.tensor([[[1.0, 2], [2, 1]]])), "definite"),
        (dict(means=torch.zeros(2, 2), covariances=1.0, weights=[1.0, -1.0]), "weights"),
        (dict(means=torch.zeros(2, 2), covariances=1.0, weights=[1.0]), "weights"),
        (dict(means=torch.zeros(2, 2), covariances=1.0, component_classes=[0, 2]), "no component"),
        (dict(means=torch.zeros(2, 2), covariances=1.0, component_classes=[0, -1]), ">= 0"),
    ],
)
def test_bad_mixture_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


def test_sigma_range_validated():
    with pytest.raises(ValueError, match="sigma_min"):
        GaussianMixture(torch.zeros(1, 1), 1.0, sigma_min=1.0, sigma_max=0.5)


def test_misspecified_and_split_mixture():
    """misspecified() scales covariances / means as asked; SplitMixture routes label −1 (and
    no labels) to the unconditional mixture and real labels to the conditional one."""
    gm = _mixture("full", 3, conditional=True)
    bad = gm.misspecified(variance_scale=2.0, mean_scale=0.5)
    torch.testing.assert_close(bad.covariances, 2.0 * gm.covariances)
    centroid = (gm.weights[:, None] * gm.means).sum(0)
    torch.testing.assert_close(bad.means - centroid, 0.5 * (gm.means - centroid))
    split = gm.misspecified(variance_scale=1.5, unconditional_variance_scale=3.0)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    labels = torch.tensor([0, NULL_LABEL, 2, NULL_LABEL])
    out = split(x, 0.7, labels)
    torch.testing.assert_close(out[[0, 2]], split.conditional(x[[0, 2]], 0.7, labels[[0, 2]]))
    torch.testing.assert_close(out[[1, 3]], split.unconditional(x[[1, 3]], 0.7))
    torch.testing.assert_close(split(x, 0.7), split.unconditional(x, 0.7))
    assert split.num_classes == gm.num_classes
