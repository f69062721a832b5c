"""Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of
itself") as a denoiser: D_w = w·D_good + (1 − w)·D_bad, both called with the same x, σ and
labels. w = 1 is exactly the good model, w = 0 exactly the weaker one.

The one implementation used by the autoguidance baseline (``baselines/autoguidance.py``) and
by Learn to Guide's autoguidance direction (``baselines/guidance.py``).
"""

from __future__ import annotations

import math

import torch

from .base import Denoiser

__all__ = ["AutoguidedDenoiser"]


class AutoguidedDenoiser(Denoiser):
    """D_w = w·D_good + (1 − w)·D_bad.

    :param good: the model being sampled.
    :param bad: its weaker version: same sample shape and number of classes.
    :param weight: w: a float (validated finite), or a tensor, scalar or one value per
        sample ``[B]``, which may carry a gradient (Learn to Guide trains through it). Change
        :attr:`weight` between calls for per-step weights.
    """

    def __init__(self, good: Denoiser, bad: Denoiser, weight: float | torch.Tensor = 1.0):
        if not isinstance(good, Denoiser) or not isinstance(bad, Denoiser):
            raise TypeError(
                f"good and bad must be Denoisers, got {type(good).__name__}, {type(bad).__name__}"
            )
        if good.shape != bad.shape or good.num_classes != bad.num_classes:
            raise ValueError(
                f"the guiding model must match the good one: shape {bad.shape} vs {good.shape}, "
                f"classes {bad.num_classes} vs {good.num_classes}"
            )
        super().__init__(
            good.shape, good.num_classes, good.sigma_min, good.sigma_max, good.sigma_data,
            good.dtype,
        )  # fmt: skip
        self.good, self.bad = good, bad
        self.weight = weight

    @property
    def weight(self) -> float | torch.Tensor:
        return self._weight

    @weight.setter
    def weight(self, w: float | torch.Tensor) -> None:
        if isinstance(w, torch.Tensor):
            if w.ndim > 1 or not w.is_floating_point():
                raise ValueError(
                    f"a tensor weight must be a float scalar or [B], got {w.dtype} "
                    f"of shape {tuple(w.shape)}"
                )
            self._weight = w
            return
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise TypeError(f"weight must be a float or a tensor, got {type(w).__name__}")
        if not math.isfinite(float(w)):
            raise ValueError(f"weight must be finite, got {w}")
        self._weight = float(w)

    def denoise(self, x, sigma, class_labels):
        d_good = self.good(x, sigma, class_labels)
        d_bad = self.bad(x.to(self.bad.dtype), sigma.to(self.bad.dtype), class_labels)
        w = self._weight
        if isinstance(w, torch.Tensor):
            w = w.to(device=x.device, dtype=d_good.dtype)
            w = w.reshape(-1, *[1] * (x.ndim - 1)) if w.ndim == 1 else w
        return w * d_good + (1 - w) * d_bad.to(d_good.dtype)  # exactly D_good at w = 1

    def workspace_bytes(self, batch: int) -> int:
        return self.good.workspace_bytes(batch) + self.bad.workspace_bytes(batch)
