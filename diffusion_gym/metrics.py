"""Distribution distances and per-sample errors between generated and real samples.

Every function takes torch tensors of samples ``[N, d]`` (trailing dimensions are flattened,
so ``[N, 1, 8, 8]`` images work too), computes in float64 and returns a python ``float``
(``precision_recall`` a pair, ``class_histogram`` / ``mode_histogram`` a tensor). Inputs are
validated: a wrong shape, an empty set, a NaN or a mismatched dimension raises ``ValueError``
naming the argument. Pairwise computations run in row chunks so memory stays bounded
(about ``chunk × M`` floats) for tens of thousands of samples.

References: Fréchet distance (Heusel et al. 2017, "FID"); energy distance (Székely & Rizzo
2013); MMD (Gretton et al. 2012); sliced Wasserstein (Bonneel et al. 2015); k-NN precision and
recall (Kynkäänniemi et al. 2019); W2 between 1-D Gaussians (Dowson & Landau 1982).

:func:`digits_metrics` scores 8×8 digit samples in the features of the shipped digits
classifier (:mod:`diffusion_gym.denoisers.classifier`), as FID does in Inception's.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

import torch

from .data.digits import DigitsData
from .denoisers.classifier import DigitsClassifier, load_digits_classifier

__all__ = [
    "frechet_distance",
    "energy_distance",
    "mmd",
    "sliced_wasserstein",
    "precision_recall",
    "class_histogram",
    "mode_histogram",
    "total_variation",
    "mean_log_likelihood",
    "rmse",
    "gaussian_w2_1d",
    "empirical_w2_1d",
    "class_conditional",
    "digits_metrics",
]

_CHUNK = 2048  # rows per block of pairwise distances


# ---------------------------------------------------------------------------------------------
# Input checks


def _samples(x, name: str, min_n: int = 1) -> torch.Tensor:
    """Validate a sample set and return it as float64 ``[N, d]`` (trailing dims flattened)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of samples [N, d], got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have shape [N, d] (use x[:, None] for 1-D data), got {tuple(x.shape)}"
        )
    if x.shape[0] < min_n:
        raise ValueError(f"{name} needs at least {min_n} samples, got {x.shape[0]}")
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    if x.shape[1] == 0:
        raise ValueError(f"{name} has zero features per sample, shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _pair(x, y, min_n: int = 1, names=("x", "y")) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two sample sets of the same dimension (``y`` moved to ``x``'s device)."""
    x, y = _samples(x, names[0], min_n), _samples(y, names[1], min_n)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same dimension, "
            f"got {x.shape[1]} and {y.shape[1]}"
        )
    return x, y.to(x.device)


def _pairwise_sum(a: torch.Tensor, b: torch.Tensor, fn, exclude_diagonal: bool) -> float:
    """Σ_ij fn(|a_i − b_j|) in row chunks; ``exclude_diagonal`` drops i = j (a is b)."""
    total = 0.0
    for start in range(0, a.shape[0], _CHUNK):
        blk = a[start : start + _CHUNK]
        # |a − b|² = |a|² + |b|² − 2 a·b by matmul (float64: error ~1e-16 |a|², and the
        # exact zeros of i = j are handled below).
        val = fn(torch.cdist(blk, b, compute_mode="use_mm_for_euclid_dist"))
        if exclude_diagonal:
            rows = torch.arange(blk.shape[0], device=a.device)
            val[rows, rows + start] = 0.0
        total += float(val.sum())
    return total


# ---------------------------------------------------------------------------------------------
# Distribution distances


def _psd_eigvals(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a symmetric PSD matrix; eigenvalues below the numerical rank
    threshold d·eps·λ_max (roundoff, possibly negative) are set to 0, as in ``pinv``."""
    lam, vec = torch.linalg.eigh(0.5 * (a + a.T))
    tol = a.shape[0] * torch.finfo(a.dtype).eps * lam.abs().max().clamp(min=1e-300)
    return torch.where(lam > tol, lam, torch.zeros_like(lam)), vec


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix via eigh."""
    lam, vec = _psd_eigvals(a)
    return (vec * lam.sqrt()) @ vec.T


def frechet_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of two sample sets (FID's formula):

    ``|μ_x − μ_y|² + tr Σ_x + tr Σ_y − 2 tr (Σ_x^½ Σ_y Σ_x^½)^½``

    (unbiased covariances). The matrix square roots come from ``eigh`` of symmetric
    matrices, so the result is real and stable even for singular covariances. Squared
    units of the data; 0 for identical fits.
    """
    x, y = _pair(x, y, min_n=2)
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = torch.cov(x.T).reshape(x.shape[1], -1), torch.cov(y.T).reshape(y.shape[1], -1)
    root_x = _sqrtm_psd(cov_x)
    # tr (Σ_x^½ Σ_y Σ_x^½)^½ = Σ sqrt(eigenvalues) of a symmetric PSD matrix.
    lam, _ = _psd_eigvals(root_x @ cov_y @ root_x)
    cross = lam.sqrt().sum()
    fd = (mu_x - mu_y).square().sum() + cov_x.trace() + cov_y.trace() - 2 * cross
    return max(float(fd), 0.0)  # tiny negative values are roundoff


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance 2 E|X − Y| − E|X − X'| − E|Y − Y'| (Székely & Rizzo 2013).

    Unbiased: the within-set terms are U-statistics (i ≠ j), so the estimate is zero in
    expectation when both sets come from one distribution (and may then be slightly
    negative). Units of the data; computed in chunks (memory O(chunk × N)).
    """
    x, y = _pair(x, y, min_n=2)
    n, m = x.shape[0], y.shape[0]
    xy = _pairwise_sum(x, y, torch.clone, exclude_diagonal=False) / (n * m)
    xx = _pairwise_sum(x, x, torch.clone, exclude_diagonal=True) / (n * (n - 1))
    yy = _pairwise_sum(y, y, torch.clone, exclude_diagonal=True) / (m * (m - 1))
    return 2 * xy - xx - yy


def _median_distance(z: torch.Tensor, max_points: int = 1000) -> float:
    """Median pairwise distance of (an evenly strided subset of) ``z``."""
    if z.shape[0] > max_points:
        z = z[torch.linspace(0, z.shape[0] - 1, max_points, device=z.device).long()]
    d = torch.pdist(z)
    return float(d.median()) if d.numel() else 0.0


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None) -> float:
    """Squared maximum mean discrepancy with the RBF kernel exp(−|a − b|²/(2h²)), unbiased
    U-statistic estimate (Gretton et al. 2012, eq. 3); zero in expectation for equal
    distributions.

    :param bandwidth: kernel width h; None = the median heuristic (median pairwise distance
        of the pooled samples, at most 1000 of them).
    """
    x, y = _pair(x, y, min_n=2)
    if bandwidth is None:
        bandwidth = _median_distance(torch.cat([x, y]))
        if bandwidth <= 0:
            raise ValueError("all samples coincide: the median-heuristic bandwidth is 0")
    elif not 0 < float(bandwidth) < math.inf:
        raise ValueError(f"bandwidth must be a finite number > 0 or None, got {bandwidth!r}")
    scale = -0.5 / float(bandwidth) ** 2

    def kernel(d):
        return torch.exp(scale * d.square())

    n, m = x.shape[0], y.shape[0]
    kxx = _pairwise_sum(x, x, kernel, exclude_diagonal=True) / (n * (n - 1))
    kyy = _pairwise_sum(y, y, kernel, exclude_diagonal=True) / (m * (m - 1))
    kxy = _pairwise_sum(x, y, kernel, exclude_diagonal=False) / (n * m)
    return kxx + kyy - 2 * kxy


def _quantile_pairs(n: int, m: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact coupling of two sorted empirical 1-D measures of sizes n and m: for each piece
    of the merged quantile grid, its width and the order statistics it pairs."""
    edges = torch.cat(
        [
            torch.arange(1, n + 1, dtype=torch.float64, device=device) / n,
            torch.arange(1, m + 1, dtype=torch.float64, device=device) / m,
        ]
    )
    edges = torch.unique(torch.cat([edges.new_zeros(1), edges]))
    # Rounding can leave two near-equal edges (i/n vs j/m); zero-width pieces are harmless.
    width = edges[1:] - edges[:-1]
    mid = 0.5 * (edges[1:] + edges[:-1])
    i = (mid * n).floor().long().clamp(max=n - 1)
    j = (mid * m).floor().long().clamp(max=m - 1)
    return width, i, j


def _w2_sorted(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """W2² between 1-D empirical measures, columns of sorted ``xs [n, P]`` and ``ys [m, P]``."""
    if xs.shape[0] == ys.shape[0]:
        return (xs - ys).square().mean(0)
    width, i, j = _quantile_pairs(xs.shape[0], ys.shape[0], xs.device)
    return (width[:, None] * (xs[i] - ys[j]).square()).sum(0)


def empirical_w2_1d(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact Wasserstein-2 distance between two 1-D empirical distributions (``[N]`` or
    ``[N, 1]``; sizes may differ): sqrt(∫₀¹ (F_x⁻¹(u) − F_y⁻¹(u))² du). Units of the data."""
    x = x[:, None] if isinstance(x, torch.Tensor) and x.ndim == 1 else x
    y = y[:, None] if isinstance(y, torch.Tensor) and y.ndim == 1 else y
    x, y = _pair(x, y)
    if x.shape[1] != 1:
        raise ValueError(f"x and y must be 1-D samples ([N] or [N, 1]), got {x.shape[1]} dims")
    return float(_w2_sorted(x.sort(0).values, y.sort(0).values).sqrt())


def sliced_wasserstein(
    x: torch.Tensor, y: torch.Tensor, num_projections: int = 256, seed: int = 0
) -> float:
    """Sliced Wasserstein-2 distance: sqrt of the mean over random unit directions θ of the
    exact 1-D W2² between the projections ⟨θ, x⟩ and ⟨θ, y⟩ (Bonneel et al. 2015). The
    directions come from ``seed`` only, so two calls with one seed use the same slices."""
    x, y = _pair(x, y)
    if not isinstance(num_projections, int) or num_projections < 1:
        raise ValueError(f"num_projections must be an int >= 1, got {num_projections!r}")
    g = torch.Generator().manual_seed(int(seed))
    theta = torch.randn(x.shape[1], num_projections, generator=g, dtype=torch.float64)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(x.device)
    xs, ys = (x @ theta).sort(0).values, (y @ theta).sort(0).values
    return float(_w2_sorted(xs, ys).mean().sqrt())


def _knn_radii(z: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point of ``z`` to its k-th nearest other point."""
    radii = []
    for start in range(0, z.shape[0], _CHUNK):
        d = torch.cdist(z[start : start + _CHUNK], z)
        # The 0 distance to itself is the first of the k + 1 smallest.
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _coverage(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of ``queries`` inside at least one ball (centre_j, radius_j)."""
    inside = 0
    for start in range(0, queries.shape[0], _CHUNK):
        d = torch.cdist(queries[start : start + _CHUNK], centres)
        inside += int((d <= radii[None, :]).any(1).sum())
    return inside / queries.shape[0]


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its points with radius = distance to
    the k-th nearest neighbour in the same set. Precision = fraction of ``fake`` inside the
    real manifold (quality); recall = fraction of ``real`` inside the fake manifold
    (coverage). Both in [0, 1].
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    real, fake = _pair(real, fake, min_n=k + 1, names=("real", "fake"))
    precision = _coverage(fake, real, _knn_radii(real, k))
    recall = _coverage(real, fake, _knn_radii(fake, k))
    return precision, recall


# ---------------------------------------------------------------------------------------------
# Histograms and mixtures


def _labels(labels, num_classes: int, name: str = "labels") -> torch.Tensor:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D integer tensor, got {labels.dtype} {labels.shape}")
    if labels.numel() == 0:
        raise ValueError(f"{name} is empty")
    if bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    return labels.long()


def class_histogram(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Normalised histogram ``[num_classes]`` (float64, sums to 1) of integer labels."""
    labels = _labels(labels, num_classes)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    return counts / counts.sum()


def _distribution(p, name: str) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float64)
    if p.ndim != 1 or p.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D probability vector, got {tuple(p.shape)}")
    if not bool(torch.isfinite(p).all()) or bool((p < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative")
    if abs(float(p.sum()) - 1.0) > 1e-6:
        raise ValueError(f"{name} must sum to 1, sums to {float(p.sum())}")
    return p


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total variation distance ½ Σ |p_i − q_i| between two probability vectors, in [0, 1]."""
    p, q = _distribution(p, "p"), _distribution(q, "q").to(torch.as_tensor(p).device)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same length, got {p.numel()} and {q.numel()}")
    return 0.5 * float((p - q).abs().sum())


def _check_mixture(mixture) -> None:
    if not (hasattr(mixture, "log_prob") and hasattr(mixture, "component_log_posterior")):
        raise TypeError(
            "mixture must be a GaussianMixture (with log_prob and component_log_posterior), "
            f"got {type(mixture).__name__}"
        )


def mean_log_likelihood(mixture, x: torch.Tensor, class_labels: torch.Tensor | None = None):
    """Exact mean log-density (1/N) Σ log p_0(x_i | c_i) of samples under a mixture (nats per
    sample; higher is better). ``class_labels`` None = the unconditional density."""
    _check_mixture(mixture)
    x = _samples(x, "x").to(mixture.means.device)
    logp = mixture.log_prob(x, 0.0, class_labels)
    return float(logp.mean())


def mode_histogram(mixture, x: torch.Tensor) -> torch.Tensor:
    """Histogram ``[K]`` (float64, sums to 1) of each sample's most likely mixture component
    (argmax of the exact component posterior at σ = 0): mode coverage and balance."""
    _check_mixture(mixture)
    x = _samples(x, "x").to(mixture.means.device)
    comp = mixture.component_log_posterior(x, 0.0).argmax(1)
    return class_histogram(comp.cpu(), mixture.num_components)


# ---------------------------------------------------------------------------------------------
# Per-sample errors and closed forms


def rmse(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Root mean squared error sqrt(mean((x − ref)²)) over all samples and coordinates (the
    square root of the clock env's −reward ‖x − x_ref‖²/dim, averaged). Units of the data."""
    if not isinstance(x, torch.Tensor) or not isinstance(ref, torch.Tensor):
        raise TypeError("x and ref must be torch tensors")
    if x.shape != ref.shape:
        raise ValueError(
            f"x and ref must have the same shape, got {tuple(x.shape)} and {tuple(ref.shape)}"
        )
    x, ref = _pair(x, ref, names=("x", "ref"))
    return float((x - ref).square().mean().sqrt())


def gaussian_w2_1d(mu1: float, std1: float, mu2: float, std2: float) -> float:
    """Closed-form W2 between N(μ1, σ1²) and N(μ2, σ2²): sqrt((μ1 − μ2)² + (σ1 − σ2)²)."""
    vals = [float(v) for v in (mu1, std1, mu2, std2)]
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"means and stds must be finite, got {vals}")
    if vals[1] < 0 or vals[3] < 0:
        raise ValueError(f"std1 and std2 must be >= 0, got {vals[1]} and {vals[3]}")
    return math.hypot(vals[0] - vals[2], vals[1] - vals[3])


def class_conditional(
    metric: Callable[[torch.Tensor, torch.Tensor], float],
    x: torch.Tensor,
    y: torch.Tensor,
    labels_x: torch.Tensor,
    labels_y: torch.Tensor,
    num_classes: int,
) -> float:
    """Mean over classes of ``metric(x[labels_x == c], y[labels_y == c])``.

    Averages over the classes present in both sets (a class missing from one side has no
    distance to measure; the class histogram metrics capture that). Raises if no class is
    shared, or names the class whose subset the metric rejected (e.g. too few samples).
    """
    if not callable(metric):
        raise TypeError(f"metric must be callable, got {type(metric).__name__}")
    for name, v in (("x", x), ("y", y)):
        if not isinstance(v, torch.Tensor) or v.ndim < 2:
            raise ValueError(f"{name} must be a tensor of samples [N, d]")
    lx = _labels(labels_x, num_classes, "labels_x").to(x.device)
    ly = _labels(labels_y, num_classes, "labels_y").to(y.device)
    if lx.shape[0] != x.shape[0] or ly.shape[0] != y.shape[0]:
        raise ValueError(
            f"labels must have one entry per sample: labels_x {lx.shape[0]} vs x {x.shape[0]}, "
            f"labels_y {ly.shape[0]} vs y {y.shape[0]}"
        )
    shared = sorted(set(lx.tolist()) & set(ly.tolist()))
    if not shared:
        raise ValueError("x and y share no class: nothing to compare")
    values = []
    for c in shared:
        try:
            values.append(float(metric(x[lx == c], y[ly == c])))
        except ValueError as e:
            raise ValueError(f"class {c}: {e}") from e
    return sum(values) / len(values)


# ---------------------------------------------------------------------------------------------
# Digits: classifier features against the held-out test set (FID-like)


_REFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _test_features(classifier: DigitsClassifier) -> torch.Tensor:
    """Features of the test set (cached per classifier object)."""
    key = classifier
    if key not in _REFERENCE:
        data = DigitsData()
        dev = next(classifier.parameters()).device
        with torch.no_grad():
            _REFERENCE[key] = classifier.features(data.test_images.to(dev)).double().cpu()
    return _REFERENCE[key]


@torch.no_grad()
def digits_metrics(
    samples: torch.Tensor,
    class_labels: torch.Tensor | None = None,
    *,
    classifier: DigitsClassifier | None = None,
    reference: torch.Tensor | None = None,
    k: int = 3,
) -> dict[str, float]:
    """Quality of digit samples ``[N, 1, 8, 8]`` (in [−1, 1]) against real images.

    :param class_labels: ``[N]`` requested classes, −1 (or None) for unconditional samples.
    :param classifier: defaults to the shipped one.
    :param reference: real images to compare with; defaults to the test set (450 images).
    :param k: neighbours for k-NN precision/recall (Kynkäänniemi et al. 2019).
    :returns: ``fd`` (Fréchet distance of classifier features), ``precision``, ``recall``,
        ``class_accuracy`` (fraction classified as the requested label; NaN without labels),
        ``class_tv`` (total variation between the predicted class histogram and the requested
        one, or uniform without labels).
    """
    if samples.ndim != 4 or tuple(samples.shape[1:]) != (1, 8, 8):
        raise ValueError(f"samples must have shape [N, 1, 8, 8], got {tuple(samples.shape)}")
    clf = load_digits_classifier() if classifier is None else classifier
    dev = next(clf.parameters()).device
    x = samples.to(dev, torch.float32)
    feats = clf.features(x).double().cpu()
    pred = clf.head(clf.features(x)).argmax(1).cpu()
    ref = _test_features(clf) if reference is None else clf.features(reference.to(dev)).double()
    ref = ref.cpu()
    precision, recall = precision_recall(ref, feats, k=k)
    hist = class_histogram(pred, 10)
    if class_labels is None:
        target = torch.full((10,), 0.1, dtype=hist.dtype)
        accuracy = float("nan")
    else:
        labels = torch.as_tensor(class_labels).long().cpu()
        if labels.shape != (x.shape[0],):
            raise ValueError(f"class_labels must have shape [{x.shape[0]}]")
        known = labels >= 0  # label −1: an unconditional sample
        if not bool(known.any()):
            return digits_metrics(samples, None, classifier=clf, reference=reference, k=k)
        # Requested histogram: the labels, uniform for the unconditional rows.
        counts = torch.bincount(labels[known], minlength=10).double() + 0.1 * (~known).sum()
        target = counts / counts.sum()
        accuracy = float((pred[known] == labels[known]).double().mean())
    return {
        "fd": float(frechet_distance(feats, ref)),
        "precision": float(precision),
        "recall": float(recall),
        "class_accuracy": accuracy,
        "class_tv": float(total_variation(hist, target)),
    }
