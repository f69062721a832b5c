"""Presets built on the shipped trained networks: ``digits``, ``digits-imperfect``,
``digits-imperfect-guide`` and ``gmm-ring8-mlp``.

:mod:`diffusion_gym.presets` registers both by entry point (``"diffusion_gym.presets_trained:
digits"``) and imports this module on the first ``presets.make`` of one of them, so
``presets.names()`` loads neither this module nor the networks; weights are read from the
package's local checkpoints inside each factory.

- ``digits``: the class-conditional U-Net trained on scikit-learn's digits (8×8, 10 classes,
  label dropout 0.15 for classifier-free guidance); ``data`` = :class:`DigitsData` (real
  training images), prior x_T ~ N(0, σ_max² I) with σ_max = 20 by default (as good as 80 at
  35 NFE, far better at 9 NFE: see docs/image_scale.md); defaults to the small budget
  ``num_steps=5`` Heun steps (NFE 9), where schedules and guidance matter.
- ``digits-imperfect``: a deliberately weak digits model, the kind guidance exists for: the
  same U-Net design with half the channels (16/32, 0.11 M parameters), trained 200 steps
  instead of 2,500 (``python -m diffusion_gym.train_denoiser digits-imperfect``). Same data,
  σ range and defaults as ``digits``; FD_digits several times that of ``digits``, best
  constant CFG weight above 1 (docs/image_scale.md).
- ``digits-imperfect-guide``: the same small U-Net trained 100 steps, weaker still: the
  "bad version" that guides ``digits-imperfect`` in the autoguidance baseline
  (:mod:`baselines.autoguidance`).
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

__all__ = [
    "DIGITS_CHECKPOINT",
    "DIGITS_IMPERFECT_CHECKPOINT",
    "DIGITS_IMPERFECT_GUIDE_CHECKPOINT",
    "RING8_MLP_CHECKPOINT",
    "digits",
    "digits_imperfect",
    "digits_imperfect_guide",
    "gmm_ring8_mlp",
]

_CKPT = Path(__file__).resolve().parent / "checkpoints"
DIGITS_CHECKPOINT = _CKPT / "digits_unet.safetensors"
DIGITS_IMPERFECT_CHECKPOINT = _CKPT / "digits_imperfect.safetensors"
DIGITS_IMPERFECT_GUIDE_CHECKPOINT = _CKPT / "digits_imperfect_guide.safetensors"
RING8_MLP_CHECKPOINT = _CKPT / "ring8_mlp.safetensors"


def _load(path, device, sigma_min: float, sigma_max: float):
    den = load_trained_denoiser(path, device)
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    den.sigma_min, den.sigma_max = float(sigma_min), float(sigma_max)
    return den


def _digits_preset(name, default_ckpt, description, device, sigma_min, sigma_max, checkpoint):
    den = _load(default_ckpt if checkpoint is None else checkpoint, device, sigma_min, sigma_max)
    return Preset(
        name,
        den,
        DigitsData(device=device),
        float(sigma_max),
        {"num_steps": 5, "solver": "heun", "budget": 5, "guidance": 1.0},
        description,
    )


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
    desc = "trained 8x8 digits U-Net (EDM, CFG label dropout), 10 classes; data: sklearn digits"
    return _digits_preset(
        "digits", DIGITS_CHECKPOINT, desc, device, sigma_min, sigma_max, checkpoint
    )


def digits_imperfect(
    device: str | torch.device = "cpu",
    sigma_min: float = 0.002,
    sigma_max: float = 20.0,
    checkpoint: str | Path | None = None,
) -> Preset:
    """The deliberately weak digits U-Net (16/32 channels, 200 steps; module docstring).

    :param checkpoint: a local safetensors file from ``python -m diffusion_gym.train_denoiser
        digits-imperfect``; default the shipped one.
    """
    desc = "weak 8x8 digits U-Net (16/32 channels, 200 training steps); data: sklearn digits"
    return _digits_preset(
        "digits-imperfect",
        DIGITS_IMPERFECT_CHECKPOINT,
        desc,
        device,
        sigma_min,
        sigma_max,
        checkpoint,
    )


def digits_imperfect_guide(
    device: str | torch.device = "cpu",
    sigma_min: float = 0.002,
    sigma_max: float = 20.0,
    checkpoint: str | Path | None = None,
) -> Preset:
    """The guiding model of ``digits-imperfect`` in autoguidance (same U-Net, 100 steps)."""
    desc = "weaker 8x8 digits U-Net (16/32 channels, 100 steps): autoguidance's bad model"
    return _digits_preset(
        "digits-imperfect-guide",
        DIGITS_IMPERFECT_GUIDE_CHECKPOINT,
        desc,
        device,
        sigma_min,
        sigma_max,
        checkpoint,
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
