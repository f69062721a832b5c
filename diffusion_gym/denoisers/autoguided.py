"""Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of
itself") as a denoiser: D_w = w·D_good + (1 − w)·D_bad, both called with the same x, σ and
labels. w = 1 is exactly the good model, w = 0 exactly the weaker one.

The one implementation used by the autoguidance baseline (``baselines/autoguidance.py``) and
by Learn to Guide's autoguidance direction (``baselines/guidance.py``).

:class:`AutoguidancePair` is the same guidance with the weight left to the caller: the guided
calls of the package (``guided_denoise``, ``steps.step(guidance=w)``, the Guidance env's
action w) run the good model and the weaker one at the sample's class in place of CFG's
conditional and unconditional halves, so every guidance strategy and agent built for CFG
weights (per-step or per-sample w, IRL, the harness's constants and intervals) picks
autoguidance weights instead.
"""

from __future__ import annotations

import math

import torch

from .base import Denoiser

__all__ = ["AutoguidedDenoiser", "AutoguidancePair"]


def _check_pair(good, bad) -> None:
    """``TypeError`` / ``ValueError`` unless ``bad`` can guide ``good`` (both Denoisers, the
    same sample shape and number of classes)."""
    if not isinstance(good, Denoiser) or not isinstance(bad, Denoiser):
        raise TypeError(
            f"good and bad must be Denoisers, got {type(good).__name__}, {type(bad).__name__}"
        )
    if good.shape != bad.shape or good.num_classes != bad.num_classes:
        raise ValueError(
            f"the guiding model must match the good one: shape {bad.shape} vs {good.shape}, "
            f"classes {bad.num_classes} vs {good.num_classes}"
        )


class AutoguidedDenoiser(Denoiser):
    """D_w = w·D_good + (1 − w)·D_bad.

    :param good: the model being sampled.
    :param bad: its weaker version: same sample shape and number of classes.
    :param weight: w: a float (validated finite), or a tensor, scalar or one value per
        sample ``[B]``, which may carry a gradient (Learn to Guide trains through it). Change
        :attr:`weight` between calls for per-step weights.
    """

    def __init__(self, good: Denoiser, bad: Denoiser, weight: float | torch.Tensor = 1.0):
        _check_pair(good, bad)
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


#: The guiding half of a guided call to an :class:`AutoguidancePair` carries the class c as
#: label ``_GUIDE_OFFSET - c`` (≤ −2, disjoint from the classes and from NULL_LABEL = −1).
_GUIDE_OFFSET = -2


class AutoguidancePair(Denoiser):
    """The good model, with a weaker version of it as the guiding model of guided calls.

    A plain call (a label c or None) is the good model's. A guided call with weight w
    (:func:`~diffusion_gym.denoisers.base.guided_denoise`, ``steps.step(guidance=w)``)
    gives D_bad(x; c) + w (D_good(x; c) − D_bad(x; c)): autoguidance (Karras et al. 2024),
    equal to ``AutoguidedDenoiser(good, bad, w)``; w = 1 is the good model, w = 0 the weaker
    one. The unconditional model is not used. :meth:`guide_labels` marks the guiding half
    (class c as label −2 − c); :meth:`denoise` sends those rows to ``bad`` and the others to
    ``good`` (two calls of B rows each, as autoguidance costs: one NFE is one guided call).

    :param good: the model being sampled (class-conditional).
    :param bad: its weaker version: same sample shape, classes and σ range as ``good``.
    """

    def __init__(self, good: Denoiser, bad: Denoiser):
        _check_pair(good, bad)
        if good.num_classes < 1:
            raise ValueError(
                "an AutoguidancePair needs a class-conditional model: a guided call needs "
                "class labels (the package's unconditional path takes no guidance weight)"
            )
        super().__init__(
            good.shape, good.num_classes, good.sigma_min, good.sigma_max, good.sigma_data,
            good.dtype,
        )  # fmt: skip
        self.good, self.bad = good, bad

    def guide_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The guiding half: the weaker model at each sample's own class (a NULL label, an
        unconditional sample, stays the good model's unconditional call)."""
        return torch.where(labels >= 0, _GUIDE_OFFSET - labels, labels)

    def denoise(self, x, sigma, class_labels):
        if class_labels is None:
            return self.good(x, sigma, None, checked=True)
        guide = class_labels <= _GUIDE_OFFSET
        if not bool(guide.any()):  # a plain call (one sync on a device: the split needs it)
            return self.good(x, sigma, class_labels, checked=True)
        own = ~guide
        out = torch.empty_like(x, dtype=self.dtype)
        out[own] = self.good(x[own], sigma[own], class_labels[own], checked=True).to(out.dtype)
        labels = _GUIDE_OFFSET - class_labels[guide]
        d_bad = self.bad(
            x[guide].to(self.bad.dtype), sigma[guide].to(self.bad.dtype), labels, checked=True
        )
        out[guide] = d_bad.to(out.dtype)
        return out

    def workspace_bytes(self, batch: int) -> int:
        return self.good.workspace_bytes(batch) + self.bad.workspace_bytes(batch)
