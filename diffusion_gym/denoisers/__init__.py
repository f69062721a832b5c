"""Denoisers in the EDM convention: the contract, exact mixtures, trained networks, adapters."""

from .base import NULL_LABEL, Denoiser, check_finite, guided_denoise
from .mixture import GaussianMixture, SplitMixture

__all__ = [
    "NULL_LABEL",
    "Denoiser",
    "GaussianMixture",
    "SplitMixture",
    "check_finite",
    "guided_denoise",
]
