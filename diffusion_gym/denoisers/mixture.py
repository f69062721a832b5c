"""Gaussian mixtures: a data distribution together with its exact denoiser.

For p_0 = Σ_k π_k N(μ_k, Σ_k), the noisy marginal is p_σ = Σ_k π_k N(μ_k, Σ_k + σ²I), and the
ideal denoiser is the posterior mean (Tweedie)

    D(x, σ) = E[x_0 | x_σ = x] = Σ_k r_k(x) [x − σ² (Σ_k + σ²I)⁻¹ (x − μ_k)],

with responsibilities r_k ∝ π_k N(x; μ_k, Σ_k + σ²I), computed by log-sum-exp in the
eigenbasis of each Σ_k, so it is stable from σ = 1e-3 to σ = 80 and in many dimensions.
Conditioning on a class restricts the sum to that class's components (weights renormalised).
"""

from __future__ import annotations

import math

import torch

from ..hostpaths import on_host
from .base import NULL_LABEL, Denoiser

__all__ = ["GaussianMixture", "SplitMixture", "EXACT_ROTATION_MAX_DIM"]


def _as_covariance(covariances, k: int, d: int, dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return eigenvalues ``[K, d]`` and eigenvectors ``[K, d, d]`` (None if diagonal)."""
    cov = torch.as_tensor(covariances, dtype=dtype)
    if cov.ndim == 0 or cov.shape == (k,):
        # isotropic: one variance per component (or one for all)
        lam = cov.reshape(-1, 1).expand(k, d).clone()
        return lam, None
    if cov.shape == (k, d):
        return cov.clone(), None
    if cov.shape == (k, d, d):
        if not torch.allclose(cov, cov.transpose(1, 2), atol=1e-10, rtol=1e-8):
            raise ValueError("full covariances must be symmetric")
        lam, vec = torch.linalg.eigh(cov)
        return lam, vec
    raise ValueError(
        f"covariances must be a scalar, [K]={k} (isotropic), [K, d]=[{k}, {d}] (diagonal) or "
        f"[K, d, d] (full), got shape {tuple(cov.shape)}"
    )


#: Up to this dimension the eigenbasis rotations are written as ordered sums of products, so
#: a sample's denoised value is bit for bit the same in any batch (a batched matmul's kernel,
#: hence its rounding, depends on the batch size: up to 2e-15 per call on gmm-ring8-imperfect,
#: 3e-13 after a Guidance episode). Above it: one batched matmul (gmm-64d: the ordered sum is
#: 1.7x slower already at d = 8), whose results may differ by a few ulps between batch sizes.
EXACT_ROTATION_MAX_DIM = 4


def _rotate(a: torch.Tensor, vecs: torch.Tensor, axis: int) -> torch.Tensor:
    """Per component k, ``a [B, K, d] @ vecs[k]`` (``axis=1``: into the eigenbasis,
    Σ_d a_d V_de) or ``a @ vecs[k]ᵀ`` (``axis=2``: back, Σ_e a_e V_de). For d <=
    :data:`EXACT_ROTATION_MAX_DIM` an ordered sum of elementwise products (the same rounding
    for every batch size); above, a batched matmul."""
    d = a.shape[-1]
    if d > EXACT_ROTATION_MAX_DIM:
        spec = "bkd,kde->bke" if axis == 1 else "bke,kde->bkd"
        return torch.einsum(spec, a, vecs)
    rows = vecs if axis == 1 else vecs.transpose(1, 2)  # rows[:, j] multiplies a[..., j]
    out = a[..., 0:1] * rows[:, 0]
    for j in range(1, d):
        out = out + a[..., j : j + 1] * rows[:, j]
    return out


class GaussianMixture(Denoiser):
    """A Gaussian mixture as data distribution and as its exact denoiser.

    :param means: ``[K, d]`` component means.
    :param covariances: a scalar or ``[K]`` (isotropic variances), ``[K, d]`` (diagonal) or
        ``[K, d, d]`` (full, symmetric positive definite).
    :param weights: ``[K]`` non-negative mixture weights (normalised here).
    :param component_classes: ``[K]`` class of each component (0..C-1), or None for an
        unconditional mixture.
    :param sigma_min, sigma_max: σ range for samplers (EDM's defaults).
    :param dtype: computation dtype (float64 keeps the toys exact).
    """

    def __init__(
        self,
        means,
        covariances,
        weights=None,
        component_classes=None,
        *,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        dtype: torch.dtype = torch.float64,
    ):
        means = torch.as_tensor(means, dtype=dtype)
        if means.ndim != 2:
            raise ValueError(f"means must have shape [K, d], got {tuple(means.shape)}")
        k, d = means.shape
        weights = torch.ones(k, dtype=dtype) if weights is None else torch.as_tensor(weights)
        weights = weights.to(dtype)
        if weights.shape != (k,) or not bool((weights >= 0).all()) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be [K]={k} non-negative values with a positive sum")
        lam, vec = _as_covariance(covariances, k, d, dtype)
        if not bool((lam > 0).all()):
            raise ValueError("covariances must be positive definite")
        if component_classes is None:
            classes = torch.full((k,), NULL_LABEL, dtype=torch.long)
            num_classes = 0
        else:
            classes = torch.as_tensor(component_classes, dtype=torch.long)
            if classes.shape != (k,) or int(classes.min()) < 0:
                raise ValueError(f"component_classes must be [K]={k} labels >= 0")
            num_classes = int(classes.max()) + 1
            missing = set(range(num_classes)) - set(classes.tolist())
            if missing:
                raise ValueError(f"classes {sorted(missing)} have no component")
        weights = weights / weights.sum()
        centred = means - (weights[:, None] * means).sum(0)
        sigma_data = float(((lam.mean(1) + (centred**2).mean(1)) * weights).sum().sqrt())
        super().__init__((d,), num_classes, sigma_min, sigma_max, sigma_data, dtype)
        self.register_buffer("means", means)
        self.register_buffer("weights", weights)
        self.register_buffer("eigvals", lam)
        self.register_buffer("eigvecs", vec)
        self.register_buffer("component_classes", classes)

    def workspace_bytes(self, batch: int) -> int:
        """Five ``[B, K, d]`` terms (x − μ, y, v, y²/v, the score's) and three ``[B, K]``."""
        k, d = self.num_components, self.dim
        return batch * k * (5 * d + 3) * self.itemsize

    # ----------------------------------------------------------------------------------------
    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def covariances(self) -> torch.Tensor:
        """Full ``[K, d, d]`` covariance matrices."""
        if self.eigvecs is None:
            return torch.diag_embed(self.eigvals)
        return self.eigvecs @ torch.diag_embed(self.eigvals) @ self.eigvecs.transpose(1, 2)

    @property
    def class_weights(self) -> torch.Tensor:
        """``[C]`` total weight of each class (the data's class histogram)."""
        if self.num_classes == 0:
            raise ValueError("an unconditional mixture has no classes")
        return torch.zeros(
            self.num_classes, dtype=self.weights.dtype, device=self.device
        ).index_add_(0, self.component_classes, self.weights)

    def _log_weights(self, batch: int, class_labels: torch.Tensor | None) -> torch.Tensor:
        """``[B, K]`` log mixture weights, restricted to each sample's class and renormalised."""
        logw = self.weights.log().expand(batch, -1)
        if class_labels is None:
            return logw
        keep = (self.component_classes[None, :] == class_labels[:, None]) | (
            class_labels[:, None] == NULL_LABEL
        )
        logw = logw.masked_fill(~keep, -math.inf)
        return logw - torch.logsumexp(logw, dim=1, keepdim=True)

    def _components(self, x: torch.Tensor, sigma: torch.Tensor):
        """Per component: eigen-coordinates y of x − μ_k, variances v = λ + σ², log N."""
        diff = x[:, None, :] - self.means[None]  # [B, K, d]
        y = diff if self.eigvecs is None else _rotate(diff, self.eigvecs, 1)
        v = self.eigvals[None] + (sigma**2)[:, None, None]  # [B, K, d]
        d = x.shape[1]
        log_n = -0.5 * ((y * y / v).sum(-1) + v.log().sum(-1) + d * math.log(2 * math.pi))
        return y, v, log_n

    def _score(self, x, sigma, class_labels) -> torch.Tensor:
        """∇_x log p_σ(x | c) = −Σ_k r_k (Σ_k + σ²I)⁻¹ (x − μ_k), in the mixture's dtype."""
        y, v, log_n = self._components(x, sigma)
        r = torch.softmax(self._log_weights(x.shape[0], class_labels) + log_n, dim=1)
        g = r[..., None] * y / v  # [B, K, d] in eigen-coordinates
        if self.eigvecs is not None:
            g = _rotate(g, self.eigvecs, 2)
        return -g.sum(1)

    def denoise(self, x, sigma, class_labels):
        x64, s64 = x.to(self.dtype), sigma.to(self.dtype)
        d = x64 + (s64**2)[:, None] * self._score(x64, s64, class_labels)
        return d.to(x.dtype)

    # ----------------------------------------------------------------------------------------
    def score(self, x, sigma=0.0, class_labels=None) -> torch.Tensor:
        """Exact score ∇_x log p_σ(x | c), ``[B, d]``."""
        x, sigma, class_labels = self.check_inputs(x, sigma, class_labels)
        return self._score(x.to(self.dtype), sigma.to(self.dtype), class_labels).to(x.dtype)

    def log_prob(self, x, sigma=0.0, class_labels=None) -> torch.Tensor:
        """Exact log density log p_σ(x | c) of the σ-smoothed mixture, ``[B]``."""
        x, sigma, class_labels = self.check_inputs(x, sigma, class_labels)
        x64, s64 = x.to(self.dtype), sigma.to(self.dtype)
        _, _, log_n = self._components(x64, s64)
        return torch.logsumexp(self._log_weights(x.shape[0], class_labels) + log_n, dim=1)

    def component_log_posterior(self, x, sigma=0.0, class_labels=None) -> torch.Tensor:
        """``[B, K]`` log p(component k | x_σ, c): which mode a sample belongs to."""
        x, sigma, class_labels = self.check_inputs(x, sigma, class_labels)
        _, _, log_n = self._components(x.to(self.dtype), sigma.to(self.dtype))
        return torch.log_softmax(self._log_weights(x.shape[0], class_labels) + log_n, dim=1)

    def class_log_posterior(self, x, sigma=0.0) -> torch.Tensor:
        """``[B, C]`` exact log p(c | x_σ): the Bayes classifier of a conditional mixture."""
        if self.num_classes == 0:
            raise ValueError("an unconditional mixture has no classes to classify")
        logp = self.component_log_posterior(x, sigma)
        out = torch.full(
            (x.shape[0], self.num_classes), -math.inf, dtype=logp.dtype, device=logp.device
        )
        for c in range(self.num_classes):
            out[:, c] = torch.logsumexp(logp[:, self.component_classes == c], dim=1)
        return out

    def sample(self, n: int, class_labels=None, generator: torch.Generator | None = None):
        """Draw ``n`` samples ``[n, d]`` (from class ``class_labels[i]`` if given)."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator)}")
        dev = generator.device if generator is not None else self.device
        labels = None
        if class_labels is not None:
            labels = self.check_labels(class_labels, n, self.device)
        probs = self._log_weights(n, labels).exp().to(dev)
        comp = (
            torch.multinomial(probs, 1, generator=generator).squeeze(1) if n else probs[:, 0].long()
        )
        eps = torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=dev)
        comp = comp.to(self.device)
        z = eps.to(self.device) * self.eigvals[comp].sqrt()
        if self.eigvecs is not None:
            z = torch.einsum("bkd,bd->bk", self.eigvecs[comp], z)
        return self.means[comp] + z

    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Class labels ``[n]`` drawn from the data's class histogram."""
        dev = generator.device if generator is not None else self.device
        probs = self.class_weights.to(dev)
        return torch.multinomial(probs, n, replacement=True, generator=generator).to(self.device)

    # ----------------------------------------------------------------------------------------
    def misspecified(
        self,
        variance_scale: float = 1.0,
        weights=None,
        mean_scale: float = 1.0,
        unconditional_variance_scale: float | None = None,
    ) -> GaussianMixture:
        """An imperfect ("pretrained-like") copy: what an under-trained model would learn.

        :param variance_scale: multiply every component covariance (> 1 = over-dispersed
            samples, the typical failure that guidance corrects).
        :param weights: replacement mixture weights (a wrong class balance), or None.
        :param mean_scale: scale the means about their centroid (< 1 = modes pulled together).
        :param unconditional_variance_scale: if set, the unconditional model (label -1) uses
            this scale instead (unconditional models are usually worse than conditional ones).
        """
        centroid = (self.weights[:, None] * self.means).sum(0)
        means = centroid + mean_scale * (self.means - centroid)
        cls = None if self.num_classes == 0 else self.component_classes
        w = self.weights if weights is None else weights
        kw = dict(sigma_min=self.sigma_min, sigma_max=self.sigma_max, dtype=self.dtype)
        cond = GaussianMixture(means, variance_scale * self.covariances, w, cls, **kw)
        if unconditional_variance_scale is None:
            return cond
        uncond = GaussianMixture(
            means, unconditional_variance_scale * self.covariances, w, cls, **kw
        )
        return SplitMixture(cond, uncond)


class SplitMixture(Denoiser):
    """Two mixtures behind one denoiser: one answers labelled samples, the other label −1.

    Models a network whose conditional and unconditional branches learned different things.
    """

    def __init__(self, conditional: GaussianMixture, unconditional: GaussianMixture):
        if conditional.shape != unconditional.shape:
            raise ValueError("conditional and unconditional mixtures must share a shape")
        super().__init__(
            conditional.shape,
            conditional.num_classes,
            conditional.sigma_min,
            conditional.sigma_max,
            conditional.sigma_data,
            conditional.dtype,
        )
        self.conditional = conditional
        self.unconditional = unconditional

    def workspace_bytes(self, batch: int) -> int:  # the two calls run one after the other
        return max(
            self.conditional.workspace_bytes(batch), self.unconditional.workspace_bytes(batch)
        )

    def denoise(self, x, sigma, class_labels):
        if class_labels is None:
            return self.unconditional.denoise(x, sigma, None)
        out = self.conditional.denoise(x, sigma, class_labels)
        null = class_labels == NULL_LABEL
        if not on_host(null) or bool(null.any()):  # a device: no sync, where() selects
            out = torch.where(null[:, None], self.unconditional.denoise(x, sigma, None), out)
        return out
