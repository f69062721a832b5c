"""Classifier-feature observations of the Guidance env (``obs_mode="classifier"``).

The state of an image sampler is the image; four norms (``obs_mode="features"``) say little
about it. This mode adds the shipped digits classifier's penultimate features (the 64-D
embedding behind FD_digits and precision/recall, :mod:`diffusion_gym.denoisers.classifier`)
of x̂_0 = D_w, the guided denoised estimate of the step's own denoiser call: what the
sampler currently expects the final image to be, in the space the metrics judge it.

Normalisation: each feature is standardised by its mean and std over the preset's training
images (z = (f − μ) / s, computed once when the env is built; features whose std is below
1e-6, dead ReLUs, keep s = 1), so a real clean image has features of mean 0 and std 1.
"""

from __future__ import annotations

import sys

import torch

from ..denoisers.classifier import load_digits_classifier

__all__ = ["ClassifierFeatures", "has_classifier"]


def has_classifier(preset) -> bool:
    """Whether ``preset`` has a shipped classifier for ``obs_mode="classifier"`` (its data
    are the digits: ``digits`` and the digits presets built on them). Read from
    ``sys.modules``: data of that class exist only once its module is imported, and importing
    it here would load scikit-learn with every env."""
    module = sys.modules.get("diffusion_gym.data.digits")
    return module is not None and isinstance(preset.data, module.DigitsData)


class ClassifierFeatures:
    """Standardised penultimate classifier features of images ``[B, 1, 8, 8]``.

    :param preset: a preset with :func:`has_classifier` (else ``ValueError``).
    :param device: where the classifier runs.
    """

    def __init__(self, preset, device: torch.device | str = "cpu"):
        if not has_classifier(preset):
            raise ValueError(
                f"obs_mode='classifier' needs an image preset with a shipped classifier (the "
                f"digits presets); preset {preset.name!r} has none: use obs_mode='state' or "
                "'features'"
            )
        self.device = torch.device(device)
        self.net = load_digits_classifier(device=self.device)
        with torch.no_grad():
            f = self.net.features(preset.data.train_images.to(self.device, torch.float32))
        self.mean = f.mean(0)
        std = f.std(0)
        self.std = torch.where(std > 1e-6, std, torch.ones_like(std))
        self.dim = int(f.shape[1])

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` float32 standardised features of ``images``."""
        f = self.net.features(images.to(self.device, torch.float32))
        return (f - self.mean) / self.std
