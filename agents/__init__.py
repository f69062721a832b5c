"""Agents that learn samplers from a frozen denoiser, on top of stable-baselines3.

- :mod:`agents.vec_env`: the SB3 ``VecEnv`` adapter over the package's native vector envs.

Submodules are imported on demand (``from agents.vec_env import SB3VecEnv``).
"""
