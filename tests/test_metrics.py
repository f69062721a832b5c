"""Metrics against closed forms and independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusion_gym import metrics
from diffusion_gym.denoisers import GaussianMixture


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussian(n, mean, cov, seed):
    """n samples of N(mean, cov) (float64)."""
    mean, cov = torch.as_tensor(mean).double(), torch.as_tensor(cov).double()
    z = torch.randn(n, mean.numel(), generator=_gen(seed), dtype=torch.float64)
    return mean + z @ torch.linalg.cholesky(cov).T


def _sqrtm_numpy(a: np.ndarray) -> np.ndarray:
    """Matrix square root by Denman–Beavers iteration (independent of eigh)."""
    y, z = a.copy(), np.eye(a.shape[0])
    for _ in range(60):
        y, z = 0.5 * (y + np.linalg.inv(z)), 0.5 * (z + np.linalg.inv(y))
    return y


def _fd_closed(m1, s1, m2, s2) -> float:
    r1 = _sqrtm_numpy(s1)
    cross = _sqrtm_numpy(r1 @ s2 @ r1)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))


def test_frechet_distance_closed_form_and_moments():
    m1, m2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.5, 0.0])
    a = np.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.8]])
    b = np.array([[0.6, -0.2, 0.1], [-0.2, 1.2, 0.0], [0.1, 0.0, 0.4]])
    x, y = _gaussian(40000, m1, a, 0), _gaussian(40000, m2, b, 1)
    fd = metrics.frechet_distance(x, y)
    # The estimator equals the formula on the sample moments (independent sqrtm) ...
    xs, ys = x.numpy(), y.numpy()
    sample = _fd_closed(xs.mean(0), np.cov(xs.T), ys.mean(0), np.cov(ys.T))
    assert fd == pytest.approx(sample, rel=1e-8)
    # ... and the population closed form within sampling error.
    assert fd == pytest.approx(_fd_closed(m1, a, m2, b), abs=0.03)
    # Symmetric, zero for a set with itself, shift adds |Δμ|².
    assert metrics.frechet_distance(y, x) == pytest.approx(fd, rel=1e-9)
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    shift = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    assert metrics.frechet_distance(x, x + shift) == pytest.approx(5.0, rel=1e-9)


def test_frechet_distance_one_dimension_is_gaussian_w2_squared():
    x = torch.randn(500, 1, generator=_gen(21), dtype=torch.float64)
    y = 2.0 + 3.0 * torch.randn(700, 1, generator=_gen(22), dtype=torch.float64)
    w2 = metrics.gaussian_w2_1d(float(x.mean()), float(x.std()), float(y.mean()), float(y.std()))
    assert metrics.frechet_distance(x, y) == pytest.approx(w2**2, rel=1e-10)


def test_frechet_distance_singular_covariance():
    """Rank-deficient covariances (d > N − 1) stay real and finite."""
    x = torch.randn(5, 20, generator=_gen(2), dtype=torch.float64)
    fd = metrics.frechet_distance(x, x + 0.1)
    assert fd == pytest.approx(20 * 0.01, rel=1e-6)


def _energy_naive(x: np.ndarray, y: np.ndarray) -> float:
    def mean_dist(a, b, same):
        d = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
        n = a.shape[0]
        return d.sum() / (n * (n - 1)) if same else d.mean()

    return 2 * mean_dist(x, y, False) - mean_dist(x, x, True) - mean_dist(y, y, True)


def test_energy_distance_independent_and_chunked(monkeypatch):
    x = torch.randn(150, 3, generator=_gen(3), dtype=torch.float64)
    y = torch.randn(97, 3, generator=_gen(4), dtype=torch.float64) + 0.3
    naive = _energy_naive(x.numpy(), y.numpy())
    assert metrics.energy_distance(x, y) == pytest.approx(naive, rel=1e-10)
    monkeypatch.setattr(metrics, "_CHUNK", 16)  # many chunks, uneven last one
    assert metrics.energy_distance(x, y) == pytest.approx(naive, rel=1e-10)


def test_energy_distance_zero_in_expectation_and_closed_form_shift():
    """Same distribution: mean over pairs ≈ 0 (unbiased). 1-D shift δ: the closed form
    2 E|X − Y| − 2 E|X − X'| with X − Y ~ N(δ, 2)."""
    n = 400
    same = [
        metrics.energy_distance(
            torch.randn(n, 2, generator=_gen(10 + i), dtype=torch.float64),
            torch.randn(n, 2, generator=_gen(50 + i), dtype=torch.float64),
        )
        for i in range(10)
    ]
    spread = float(np.std(same))
    assert abs(float(np.mean(same))) < 3 * spread / math.sqrt(len(same)) + 1e-12
    assert min(same) < 0  # unbiased: not a squared norm of an estimate
    delta = 1.0
    x = torch.randn(4000, 1, generator=_gen(5), dtype=torch.float64)
    y = torch.randn(4000, 1, generator=_gen(6), dtype=torch.float64) + delta
    s = math.sqrt(2.0)
    e_xy = s * math.sqrt(2 / math.pi) * math.exp(-(delta**2) / (2 * s**2)) + delta * math.erf(
        delta / (s * math.sqrt(2))
    )
    e_xx = 2 / math.sqrt(math.pi)
    closed = 2 * e_xy - 2 * e_xx
    ed = metrics.energy_distance(x, y)
    assert ed == pytest.approx(closed, abs=0.02)
    assert ed > 10 * spread


def _mmd_naive(x: np.ndarray, y: np.ndarray, h: float) -> float:
    def k(a, b):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * h * h))

    kxx, kyy = k(x, x), k(y, y)
    n, m = len(x), len(y)
    np.fill_diagonal(kxx, 0)
    np.fill_diagonal(kyy, 0)
    return kxx.sum() / (n * (n - 1)) + kyy.sum() / (m * (m - 1)) - 2 * k(x, y).mean()


def test_mmd_independent_and_median_heuristic():
    x = torch.randn(120, 2, generator=_gen(7), dtype=torch.float64)
    y = torch.randn(80, 2, generator=_gen(8), dtype=torch.float64) * 1.5
    assert metrics.mmd(x, y, bandwidth=0.7) == pytest.approx(
        _mmd_naive(x.numpy(), y.numpy(), 0.7), rel=1e-10
    )
    z = np.concatenate([x.numpy(), y.numpy()])
    d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))[np.triu_indices(len(z), 1)]
    h = float(torch.tensor(d).median())  # torch's median: the lower middle value
    assert metrics.mmd(x, y) == pytest.approx(_mmd_naive(x.numpy(), y.numpy(), h), rel=1e-10)
    assert metrics.mmd(x, y) > 0
    same = metrics.mmd(x, torch.randn(80, 2, generator=_gen(9), dtype=torch.float64))
    assert abs(same) < metrics.mmd(x, y) / 5
    with pytest.raises(ValueError, match="bandwidth"):
        metrics.mmd(x, y, bandwidth=-1.0)


def test_empirical_w2_1d_exact():
    x = torch.tensor([0.0, 1.0, 5.0, 2.0])
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # Sorted coupling: (0,1), (1,2), (2,3), (5,4).
    assert metrics.empirical_w2_1d(x, y) == pytest.approx(1.0)
    # Unequal sizes: replicate to a common size (2 vs 3 → 6) and couple sorted.
    a, b = torch.tensor([0.0, 3.0]), torch.tensor([1.0, -1.0, 2.0])
    ar, br = a.repeat_interleave(3).sort().values, b.repeat_interleave(2).sort().values
    expected = math.sqrt(float((ar - br).square().mean()))
    assert metrics.empirical_w2_1d(a, b) == pytest.approx(expected, rel=1e-12)
    # Large samples of two Gaussians → the closed form.
    u = torch.randn(20000, generator=_gen(11), dtype=torch.float64)
    v = 0.5 + 2.0 * torch.randn(30000, generator=_gen(12), dtype=torch.float64)
    assert metrics.empirical_w2_1d(u, v) == pytest.approx(
        metrics.gaussian_w2_1d(0.0, 1.0, 0.5, 2.0), abs=0.03
    )


def test_gaussian_w2_1d_closed_form():
    assert metrics.gaussian_w2_1d(0, 1, 3, 5) == pytest.approx(5.0)
    assert metrics.gaussian_w2_1d(1, 2, 1, 2) == 0.0
    with pytest.raises(ValueError, match="std"):
        metrics.gaussian_w2_1d(0, -1, 0, 1)
    with pytest.raises(ValueError, match="finite"):
        metrics.gaussian_w2_1d(0, math.nan, 0, 1)


def test_sliced_wasserstein():
    x = torch.randn(300, 1, generator=_gen(13), dtype=torch.float64)
    y = 1.0 + 0.5 * torch.randn(200, 1, generator=_gen(14), dtype=torch.float64)
    # In 1-D every slice is ±x: SW = W2.
    assert metrics.sliced_wasserstein(x, y) == pytest.approx(metrics.empirical_w2_1d(x, y))
    # A pure shift v: SW² = mean over θ of ⟨θ, v⟩² ≈ |v|²/d.
    z = torch.randn(500, 4, generator=_gen(15), dtype=torch.float64)
    v = torch.tensor([2.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    sw = metrics.sliced_wasserstein(z, z + v, num_projections=2000)
    assert sw == pytest.approx(1.0, rel=0.05)
    assert metrics.sliced_wasserstein(z, z) == 0.0
    assert metrics.sliced_wasserstein(z, z + v, seed=3) == metrics.sliced_wasserstein(
        z, z + v, seed=3
    )


def test_precision_recall():
    g = _gen(16)
    real = torch.randn(400, 2, generator=g, dtype=torch.float64)
    assert metrics.precision_recall(real, real.clone()) == (1.0, 1.0)
    far = real + 100.0
    assert metrics.precision_recall(real, far) == (0.0, 0.0)
    # Fakes cover only the right half-plane: precision high, recall about one half.
    fake = torch.randn(4000, 2, generator=g, dtype=torch.float64).abs() * torch.tensor([1.0, 0.0])
    fake = fake + torch.tensor([0.0, 1.0]) * torch.randn(4000, 1, generator=g, dtype=torch.float64)
    p, r = metrics.precision_recall(real, fake)
    assert p > 0.9 and 0.4 < r < 0.65
    # Brute-force recount of precision with explicit loops.
    k = 3
    d_rr = torch.cdist(real, real)
    radii = d_rr.sort(1).values[:, k]
    inside = [bool((torch.linalg.norm(real - f, dim=1) <= radii).any()) for f in fake[:300]]
    p_sub, _ = metrics.precision_recall(real, fake[:300])
    assert p_sub == pytest.approx(sum(inside) / 300)


def test_histograms_and_total_variation():
    h = metrics.class_histogram(torch.tensor([0, 0, 1, 3]), 4)
    torch.testing.assert_close(h, torch.tensor([0.5, 0.25, 0.0, 0.25], dtype=torch.float64))
    assert metrics.total_variation(h, torch.full((4,), 0.25)) == pytest.approx(0.25)
    assert metrics.total_variation(torch.tensor([1.0, 0]), torch.tensor([0.0, 1])) == 1.0
    with pytest.raises(ValueError, match="lie in"):
        metrics.class_histogram(torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="integer"):
        metrics.class_histogram(torch.tensor([0.0, 1.0]), 4)
    with pytest.raises(ValueError, match="empty"):
        metrics.class_histogram(torch.tensor([], dtype=torch.long), 4)
    with pytest.raises(ValueError, match="sum to 1"):
        metrics.total_variation(torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="same length"):
        metrics.total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.25, 0.25]))


def _mixture() -> GaussianMixture:
    means = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
    return GaussianMixture(means, torch.tensor([0.3, 0.5, 0.2]), [0.5, 0.3, 0.2], [0, 0, 1])


def test_mean_log_likelihood_and_mode_histogram():
    gm = _mixture()
    x = gm.sample(3000, generator=_gen(17))
    # Independent density: Σ_k π_k N(x; μ_k, v_k I) in numpy.
    xs, mu = x.numpy(), gm.means.numpy()
    v = np.array([0.3, 0.5, 0.2])
    w = np.array([0.5, 0.3, 0.2])
    sq = ((xs[:, None] - mu[None]) ** 2).sum(-1)
    dens = (w * np.exp(-sq / (2 * v)) / (2 * np.pi * v)).sum(1)
    assert metrics.mean_log_likelihood(gm, x) == pytest.approx(np.log(dens).mean(), rel=1e-10)
    # Conditional: class 0 = components 0 and 1 with weights 5/8, 3/8.
    lab = torch.zeros(3000, dtype=torch.long)
    dens0 = ((w[:2] / 0.8) * np.exp(-sq[:, :2] / (2 * v[:2])) / (2 * np.pi * v[:2])).sum(1)
    assert metrics.mean_log_likelihood(gm, x, lab) == pytest.approx(np.log(dens0).mean())
    # Modes are well separated: the histogram is the weights within sampling error.
    hist = metrics.mode_histogram(gm, x)
    assert metrics.total_variation(hist, gm.weights) < 0.03
    with pytest.raises(TypeError, match="GaussianMixture"):
        metrics.mean_log_likelihood(object(), x)


def test_class_conditional():
    x = torch.randn(60, 2, generator=_gen(18), dtype=torch.float64)
    y = torch.randn(50, 2, generator=_gen(19), dtype=torch.float64)
    lx, ly = torch.arange(60) % 3, torch.arange(50) % 2  # class 2 only in x
    expected = 0.5 * sum(metrics.energy_distance(x[lx == c], y[ly == c]) for c in (0, 1))
    got = metrics.class_conditional(metrics.energy_distance, x, y, lx, ly, 3)
    assert got == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="share no class"):
        metrics.class_conditional(metrics.rmse, x, y, lx * 0 + 2, ly, 3)
    with pytest.raises(ValueError, match="class 0"):
        one = torch.tensor([0] + [1] * 59)
        metrics.class_conditional(metrics.frechet_distance, x, y, one, ly, 3)
    with pytest.raises(ValueError, match="one entry per sample"):
        metrics.class_conditional(metrics.energy_distance, x, y, lx[:10], ly, 3)


def test_rmse():
    x = torch.zeros(4, 3, dtype=torch.float64)
    assert metrics.rmse(x, x + 2.0) == pytest.approx(2.0)
    assert metrics.rmse(torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        metrics.rmse(x, torch.zeros(4, 2))


ALL_PAIRS = [
    metrics.frechet_distance,
    metrics.energy_distance,
    metrics.mmd,
    metrics.sliced_wasserstein,
    metrics.precision_recall,
]


@pytest.mark.parametrize("fn", ALL_PAIRS, ids=lambda f: f.__name__)
def test_sample_metrics_validate_inputs(fn):
    good = torch.randn(10, 2, generator=_gen(20), dtype=torch.float64)
    bad_nan = good.clone()
    bad_nan[3, 1] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(good, bad_nan)
    with pytest.raises(ValueError, match="same dimension"):
        fn(good, torch.randn(10, 3))
    with pytest.raises(ValueError, match=r"\[N, d\]"):
        fn(good[:, 0], good)
    with pytest.raises(ValueError, match="at least"):
        fn(good, good[:0])
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn(good.numpy(), good)
    # Trailing dimensions are flattened: images work.
    img = good.reshape(10, 1, 1, 2)
    assert fn(img, img + 1.0) == fn(good, good + 1.0)
