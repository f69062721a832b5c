"""Shared test settings and fixtures.

Settings: one torch thread per test process (CI runs the suite with ``pytest -n 2`` on 2
cores; more intra-op threads per worker only oversubscribe the cores: a 256-step sampler run
measured 31 s with 2 threads against 3.5 s with 1 on the shared machine), and a guard that
fails the test which leaves autograd globally disabled.

Fixtures (use them instead of building the same objects in every file):

- ``ring8``, ``gauss1d``: the ``gmm-ring8`` and ``art-gauss1d`` presets (exact mixture
  denoisers, built once per session; treat them as read-only).
- ``make_guidance``, ``make_clock``: factories of small native vector envs,
  ``make_guidance(num_envs=4, **kwargs)`` (``GuidanceRing8-v0``, 4 steps) and
  ``make_clock(num_envs=4, **kwargs)`` (``ClockGauss1D-v0``, 16-row bank); each env made is
  closed at the end of the test.
- ``run_dir``: an empty run directory under pytest's ``tmp_path``.
"""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import diffusion_gym  # noqa: F401  (registers the env ids)
from diffusion_gym import presets

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _grad_mode_is_left_alone():
    """Fail the test that leaves autograd globally disabled (it breaks later tests)."""
    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("the test left torch's grad mode disabled (use a scoped torch.no_grad())")


@pytest.fixture(scope="session")
def ring8() -> presets.Preset:
    """The ``gmm-ring8`` preset: 2-D ring of 8 Gaussians, 8 classes, exact denoiser."""
    return presets.make("gmm-ring8")


@pytest.fixture(scope="session")
def gauss1d() -> presets.Preset:
    """The ``art-gauss1d`` preset: ART's 1-D toy, unconditional, exact denoiser."""
    return presets.make("art-gauss1d")


def _vector_env_factory(env_id: str, defaults: dict):
    made = []

    def make(num_envs: int = 4, **kwargs):
        env = gym.make_vec(env_id, num_envs=num_envs, **{**defaults, **kwargs})
        made.append(env)
        return env

    return make, made


@pytest.fixture
def make_guidance():
    """``make_guidance(num_envs=4, **kwargs)``: a native ``diffusion_gym/GuidanceRing8-v0``
    vector env (exact ring8 denoiser, 4 steps)."""
    make, made = _vector_env_factory("diffusion_gym/GuidanceRing8-v0", {"num_steps": 4})
    yield make
    for env in made:
        env.close()


@pytest.fixture
def make_clock():
    """``make_clock(num_envs=4, **kwargs)``: a native ``diffusion_gym/ClockGauss1D-v0`` vector
    env (ART's 1-D toy, Euler, budget 5, a 16-row reference bank)."""
    make, made = _vector_env_factory("diffusion_gym/ClockGauss1D-v0", {"bank_size": 16})
    yield make
    for env in made:
        env.close()


@pytest.fixture
def run_dir(tmp_path):
    """An empty directory for one run's outputs."""
    path = tmp_path / "run"
    path.mkdir()
    return path
