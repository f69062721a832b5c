"""Presets built on the shipped trained networks: ``digits`` and ``gmm-ring8-mlp``.

:mod:`diffusion_gym.presets` registers both by entry point (``"diffusion_gym.presets_trained:
digits"``) and imports this module on the first ``presets.make`` of one of them, so
``presets.names()`` loads neither this module nor the networks; weights are read from the
package's local checkpoints inside each factory.

- ``digits``: the class-conditional U-Net trained on scikit-learn's digits (8×8, 10 classes,
  label dropout 0.15 for classifier-free guidance); ``data`` = :class:`DigitsData` (real
  training images), prior x_T ~ N(0, σ_max² I) with σ_max = 20 by default (as good as 80 at
  35 NFE, far better at 9 NFE: see docs/image_scale.md); defaults to the small budget
  ``num_steps=5`` Heun steps (NFE 9), where schedules and guidance matter.
- ``gmm-ring8-mlp``: an MLP denoiser trained on samples of the ``gmm-ring8`` mixture with
  class dropout; ``data`` = the exact ring mixture, so its metrics stay exact while the
  model's errors are those of real training.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .data.digits import DigitsData
from .denoisers.adapters import load_trained_denoiser
from .presets import Preset, ring8

__all__ = ["DIGITS_CHECKPOINT", "RING8_MLP_CHECKPOINT", "digits", "gmm_ring8_mlp"]

_CKPT = Path(__file__).resolve().parent / "checkpoints"
DIGITS_CHECKPOINT = _CKPT / "digits_unet.safetensors"
RING8_MLP_CHECKPOINT = _CKPT / "ring8_mlp.safetensors"


def _load(path, device, sigma_min: float, sigma_max: float):
    den = load_trained_denoiser(path, device)
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    den.sigma_min, den.sigma_max = float(sigma_min), float(sigma_max)
    return den


def digits(
    device: str | torch.device = "cpu",
    sigma_min: float = 0.002,
    sigma_max: float = 20.0,
    checkpoint: str | Path | None = None,
) -> Preset:
    """The trained digits U-Net with the digits data set (see module docstring).

    :param checkpoint: a local safetensors file from ``python -m diffusion_gym.train_denoiser
        digits``; default the shipped one.
    """
    den = _load(
        DIGITS_CHECKPOINT if checkpoint is None else checkpoint, device, sigma_min, sigma_max
    )
    return Preset(
        "digits",
        den,
        DigitsData(device=device),
        float(sigma_max),
        {"num_steps": 5, "solver": "heun", "budget": 5, "guidance": 1.0},
        "trained 8x8 digits U-Net (EDM, CFG label dropout), 10 classes; data: sklearn digits",
    )


def gmm_ring8_mlp(
    device: str | torch.device = "cpu",
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    checkpoint: str | Path | None = None,
) -> Preset:
    """The MLP trained on ``gmm-ring8`` samples, judged against the exact ring mixture."""
    path = RING8_MLP_CHECKPOINT if checkpoint is None else checkpoint
    den = _load(path, device, sigma_min, sigma_max)
    gm = ring8(sigma_min=sigma_min, sigma_max=sigma_max).to(device)
    return Preset(
        "gmm-ring8-mlp",
        den,
        gm,
        float(sigma_max),
        {"num_steps": 4, "budget": 3},
        "2-D ring of 8 Gaussians; MLP denoiser trained on its samples with class dropout",
    )
