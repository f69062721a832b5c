"""A small CNN classifier of 8×8 digits.

The classifier plays the role Inception plays for FID: its penultimate features
(``features(x)``, 64-D) give a Fréchet distance FD_digits and k-NN precision/recall between
samples and the held-out test set, and its predictions give the class accuracy of
class-conditional samples (does the classifier agree with the requested label) and their
class histogram. Those metrics are :func:`diffusion_gym.metrics.digits_metrics`.

A second classifier of the same design, trained with another seed
(:data:`TRAINING_CLASSIFIER`, ``python -m diffusion_gym.train_denoiser classifier --seed 1``),
gives the feature space that *losses* may use (``DigitsData.features``: Learn to Guide's
``space="features"``), so that a learner is still scored in features it never trained on.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from .networks import CHECKPOINT_DIR, load_checkpoint

__all__ = [
    "DigitsClassifier",
    "load_digits_classifier",
    "augment",
    "DEFAULT_CLASSIFIER",
    "TRAINING_CLASSIFIER",
]

#: The metric classifier (FD_digits, precision/recall, class accuracy).
DEFAULT_CLASSIFIER = CHECKPOINT_DIR / "digits_classifier.safetensors"
#: The same network trained with seed 1: the features losses may be taken in.
TRAINING_CLASSIFIER = CHECKPOINT_DIR / "digits_classifier_b.safetensors"


class DigitsClassifier(nn.Module):
    """conv(32)–conv(64)–pool–conv(64)–pool–fc(``feature_dim``)–fc(10) on ``[B, 1, 8, 8]``."""

    def __init__(self, num_classes: int = 10, feature_dim: int = 64, dropout: float = 0.3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 2 * 2, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[B, feature_dim]`` (after ReLU)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"x must have shape [B, 1, 8, 8], got {tuple(x.shape)}")
        h = F.relu(self.conv1(x.float()))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # 4×4
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)  # 2×2
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 10]``."""
        return self.head(self.dropout(self.features(x)))

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log p(c | x), ``[B, 10]``."""
        return F.log_softmax(self(x), dim=1)


def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random shifts by up to one pixel (padding with the background value −1)."""
    b = x.shape[0]
    pad = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dx = torch.randint(0, 3, (b,), generator=generator)
    dy = torch.randint(0, 3, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(8)[None]).to(x.device)  # [B, 8]
    cols = (dx[:, None] + torch.arange(8)[None]).to(x.device)
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    return pad[idx_b, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def load_digits_classifier(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> DigitsClassifier:
    """The shipped (or a given) classifier checkpoint, in eval mode, read from a local file.

    Raises ``FileNotFoundError`` naming the path if it is absent."""
    state, meta = load_checkpoint(DEFAULT_CLASSIFIER if path is None else path)
    clf = DigitsClassifier(**meta.get("arch_kwargs", {}))
    clf.load_state_dict(state)
    return clf.to(device).eval().requires_grad_(False)
