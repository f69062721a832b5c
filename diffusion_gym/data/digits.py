"""scikit-learn's digits: 1,797 real 8×8 grey-level images of 10 classes, shipped with sklearn.

Pixels (0..16) are scaled to [−1, 1] and stored as ``[N, 1, 8, 8]`` float32. The train/test
split is stratified by class and fixed by a seed, so every part of the package (the trained
denoiser, the classifier, the metrics) sees the same split. No download is involved.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits as _sk_load

from ..denoisers.classifier import TRAINING_CLASSIFIER, load_digits_classifier

__all__ = ["DigitsData", "load_digits", "SPLIT_SEED", "TEST_FRACTION"]

SPLIT_SEED = 0
TEST_FRACTION = 0.25


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images ``[N, 1, 8, 8]`` in [−1, 1] (float32) and labels ``[N]`` (long)."""
    d = _sk_load()
    x = torch.as_tensor(d.images, dtype=torch.float32).reshape(-1, 1, 8, 8)
    # Pixels 0..16 → [−1, 1].
    x = x / 8.0 - 1.0
    return x, torch.as_tensor(d.target, dtype=torch.long)


class DigitsData:
    """The digits data set with a fixed stratified train/test split.

    Serves as a preset's ``data``: :meth:`sample` returns real training images (drawn with
    replacement), optionally of given classes.

    :param test_fraction: fraction of each class held out for testing.
    :param seed: seed of the split (fixed by default so the split never changes).
    :param device: device of the returned tensors.

    Attributes: ``train_images``/``train_labels``, ``test_images``/``test_labels``,
    ``num_classes`` (10), ``shape`` ``(1, 8, 8)``, ``sigma_data`` (pixel std of the train set).
    """

    num_classes = 10
    shape = (1, 8, 8)

    def __init__(
        self,
        test_fraction: float = TEST_FRACTION,
        seed: int = SPLIT_SEED,
        device: str | torch.device = "cpu",
    ):
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        x, y = load_digits()
        g = torch.Generator().manual_seed(int(seed))
        test = torch.zeros(len(y), dtype=torch.bool)
        for c in range(self.num_classes):
            # Stratified: hold out the same fraction of every class.
            idx = (y == c).nonzero().squeeze(1)
            idx = idx[torch.randperm(len(idx), generator=g)]
            test[idx[: round(test_fraction * len(idx))]] = True
        self.device = torch.device(device)
        self.train_images, self.train_labels = x[~test].to(device), y[~test].to(device)
        self.test_images, self.test_labels = x[test].to(device), y[test].to(device)
        self._classifier = None
        self._train_classifier = None
        self._by_class = [
            (self.train_labels == c).nonzero().squeeze(1) for c in range(self.num_classes)
        ]

    @property
    def sigma_data(self) -> float:
        """Standard deviation of the training pixels (EDM's σ_data)."""
        return float(self.train_images.std())

    def to(self, device) -> DigitsData:
        self.device = torch.device(device)
        for name in ("train_images", "train_labels", "test_images", "test_labels"):
            setattr(self, name, getattr(self, name).to(device))
        self._by_class = [i.to(device) for i in self._by_class]
        for clf in (self._classifier, self._train_classifier):
            if clf is not None:
                clf.to(device)
        return self

    def sample(
        self,
        n: int,
        class_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` training images ``[n, 1, 8, 8]`` drawn uniformly with replacement.

        With ``class_labels`` (``[n]`` ints in 0..9, or −1 for any class) row i is an image of
        class ``class_labels[i]``.
        """
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        dev = generator.device if generator is not None else torch.device("cpu")
        if class_labels is None:
            idx = torch.randint(len(self.train_labels), (n,), generator=generator, device=dev)
            return self.train_images[idx.to(self.device)]
        labels = torch.as_tensor(class_labels).long().to(self.device)
        if labels.ndim == 0:
            labels = labels.expand(n)
        if labels.shape != (n,):
            raise ValueError(f"class_labels must have shape [{n}], got {tuple(labels.shape)}")
        if labels.numel() and not bool(((labels >= -1) & (labels < self.num_classes)).all()):
            raise ValueError("class_labels must lie in [0, 10) (or -1 for any class)")
        u = torch.rand(n, generator=generator, device=dev, dtype=torch.float64).to(self.device)
        idx = torch.empty(n, dtype=torch.long, device=self.device)
        any_class = labels < 0
        idx[any_class] = (u[any_class] * len(self.train_labels)).long()
        for c in range(self.num_classes):
            m = labels == c
            pool = self._by_class[c]
            idx[m] = pool[(u[m] * len(pool)).long()]
        return self.train_images[idx]

    def class_log_posterior(self, x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """log p(c | x) ``[B, 10]`` of clean images from the shipped digits classifier (the
        stand-in for the Bayes classifier that mixtures have exactly). Only σ = 0 is
        supported: the classifier was trained on clean images."""
        if float(sigma) != 0.0:
            raise ValueError(f"sigma must be 0 (the classifier sees clean images), got {sigma}")
        if self._classifier is None:
            self._classifier = load_digits_classifier(device=self.device)
        with torch.no_grad():
            return self._classifier.log_probs(x.to(self.device, torch.float32)).to(x.device)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[B, 64]`` (float64) of images ``x [B, 1, 8, 8]`` from the
        shipped *training* classifier (:data:`~diffusion_gym.denoisers.classifier.
        TRAINING_CLASSIFIER`: the metric classifier's design trained with another seed),
        differentiable in ``x`` (its parameters are frozen), for losses taken in a feature
        space (:attr:`baselines.guidance.L2GConfig.space`). FD_digits, precision and recall
        use the other classifier, so a learner is scored in features it never trained on."""
        if self._train_classifier is None:
            self._train_classifier = load_digits_classifier(TRAINING_CLASSIFIER, self.device)
        return self._train_classifier.features(x.to(self.device)).to(x.device, torch.float64)

    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` labels drawn uniformly over the 10 classes."""
        dev = generator.device if generator is not None else torch.device("cpu")
        return torch.randint(self.num_classes, (n,), generator=generator, device=dev).to(
            self.device
        )
