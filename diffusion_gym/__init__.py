"""diffusion-gym: diffusion sampling as reinforcement-learning environments.

Importing the package registers the environments in the ``diffusion_gym/`` namespace:

>>> import gymnasium as gym, diffusion_gym  # noqa: F401
>>> env = gym.make("diffusion_gym/Guidance-v0")  # doctest: +SKIP
"""

import gymnasium as _gym

from . import presets, schedules, steps
from .denoisers import Denoiser, GaussianMixture
from .noise import SampleStreams

__version__ = "0.1.0"

# --- The environment ids: one table, id -> (env family, constructor defaults) --------------
_ENTRY_POINTS = {  # family -> (single-env view, native vector env) in diffusion_gym.envs.<family>
    "guidance": ("GuidanceEnv", "GuidanceVectorEnv"),
    "clock": ("ClockEnv", "ClockVectorEnv"),
}
_ENV_IDS = {
    "Guidance-v0": ("guidance", {"denoiser": "gmm-ring8-imperfect"}),
    "GuidanceRing8-v0": ("guidance", {"denoiser": "gmm-ring8"}),
    "GuidanceRing8Imperfect-v0": ("guidance", {"denoiser": "gmm-ring8-imperfect"}),
    "Guidance64D-v0": ("guidance", {"denoiser": "gmm-64d"}),
    "Guidance64DImperfect-v0": ("guidance", {"denoiser": "gmm-64d-imperfect"}),
    # A weak digits U-Net (8x8 images, 10 classes), the kind guidance exists for; 5 Heun steps.
    "GuidanceDigitsImperfect-v0": ("guidance", {"denoiser": "digits-imperfect"}),
    "Clock-v0": ("clock", {"denoiser": "gmm-ring8", "solver": "heun", "budget": 3}),
    "ClockRing8-v0": ("clock", {"denoiser": "gmm-ring8", "solver": "heun", "budget": 3}),
    "ClockGauss1D-v0": (
        "clock",
        {"denoiser": "art-gauss1d", "solver": "euler", "budget": 5, "base": "linear"},
    ),
    "Clock64D-v0": (
        "clock",
        {"denoiser": "gmm-64d", "solver": "heun", "budget": 5, "bank_size": 256},
    ),
    # A harder schedule problem where learning matters: a multistep solver (UniPC order 2,
    # one NFE per step) on the 64-d mixture, K = 5 (NFE 5).
    "Clock64DUniPC-v0": (
        "clock",
        {"denoiser": "gmm-64d", "solver": "unipc-2", "budget": 5, "bank_size": 256},
    ),
}
for _id, (_family, _kwargs) in _ENV_IDS.items():
    if f"diffusion_gym/{_id}" not in _gym.registry:
        _single, _vector = _ENTRY_POINTS[_family]
        _gym.register(
            id=f"diffusion_gym/{_id}",
            entry_point=f"diffusion_gym.envs.{_family}:{_single}",
            vector_entry_point=f"diffusion_gym.envs.{_family}:{_vector}",
            kwargs=_kwargs,
        )

__all__ = ["Denoiser", "GaussianMixture", "SampleStreams", "presets", "schedules", "steps"]
