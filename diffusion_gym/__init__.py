"""diffusion-gym: diffusion sampling as reinforcement-learning environments.

Importing the package registers the environments in the ``diffusion_gym/`` namespace:

>>> import gymnasium as gym, diffusion_gym  # noqa: F401
>>> env = gym.make("diffusion_gym/Guidance-v0")  # doctest: +SKIP
"""

from . import presets, schedules, steps
from .denoisers import Denoiser, GaussianMixture
from .noise import SampleStreams

__version__ = "0.1.0"

# --- Guidance environment ids (diffusion_gym.envs.guidance) ----------------------------------
import gymnasium as _gym  # noqa: E402

_GUIDANCE_IDS = {
    "Guidance-v0": "gmm-ring8-imperfect",
    "GuidanceRing8-v0": "gmm-ring8",
    "GuidanceRing8Imperfect-v0": "gmm-ring8-imperfect",
    "Guidance64D-v0": "gmm-64d",
    "Guidance64DImperfect-v0": "gmm-64d-imperfect",
}
for _id, _preset in _GUIDANCE_IDS.items():
    if f"diffusion_gym/{_id}" not in _gym.registry:
        _gym.register(
            id=f"diffusion_gym/{_id}",
            entry_point="diffusion_gym.envs.guidance:GuidanceEnv",
            vector_entry_point="diffusion_gym.envs.guidance:GuidanceVectorEnv",
            kwargs={"denoiser": _preset},
        )
# --- end Guidance environment ids -------------------------------------------------------------

__all__ = ["Denoiser", "GaussianMixture", "SampleStreams", "presets", "schedules", "steps"]

# Clock (continuous clock-speed) environments: diffusion_gym/envs/clock.py.
from gymnasium.envs.registration import register as _register  # noqa: E402

_CLOCK_IDS = {
    "Clock-v0": {"denoiser": "gmm-ring8", "solver": "heun", "budget": 3},
    "ClockRing8-v0": {"denoiser": "gmm-ring8", "solver": "heun", "budget": 3},
    "ClockGauss1D-v0": {
        "denoiser": "art-gauss1d",
        "solver": "euler",
        "budget": 5,
        "base": "linear",
    },
    "Clock64D-v0": {"denoiser": "gmm-64d", "solver": "heun", "budget": 5, "bank_size": 256},
}
for _id, _kwargs in _CLOCK_IDS.items():
    _register(
        id=f"diffusion_gym/{_id}",
        entry_point="diffusion_gym.envs.clock:ClockEnv",
        vector_entry_point="diffusion_gym.envs.clock:ClockVectorEnv",
        kwargs=_kwargs,
    )
