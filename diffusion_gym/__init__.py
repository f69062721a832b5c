"""diffusion-gym: diffusion sampling as reinforcement-learning environments.

Importing the package registers the environments in the ``diffusion_gym/`` namespace:

>>> import gymnasium as gym, diffusion_gym  # noqa: F401
>>> env = gym.make("diffusion_gym/Guidance-v0")  # doctest: +SKIP
"""

from . import presets, schedules, steps
from .denoisers import Denoiser, GaussianMixture
from .noise import SampleStreams

__version__ = "0.1.0"

__all__ = ["Denoiser", "GaussianMixture", "SampleStreams", "presets", "schedules", "steps"]
