"""Denoisers in the EDM convention: the contract, exact mixtures, trained networks, adapters."""

from .base import NULL_LABEL, Denoiser, DenoiserWrapper, check_finite, guided_denoise
from .mixture import GaussianMixture, SplitMixture

__all__ = [
    "NULL_LABEL",
    "Denoiser",
    "DenoiserWrapper",
    "GaussianMixture",
    "SplitMixture",
    "check_finite",
    "guided_denoise",
]

# Trained networks and adapters (image-scale engineer); cheap imports (torch only).
from .adapters import DiffusersUNetDenoiser, EDMNetDenoiser, EpsilonDenoiser  # noqa: E402

__all__ += ["DiffusersUNetDenoiser", "EDMNetDenoiser", "EpsilonDenoiser"]
