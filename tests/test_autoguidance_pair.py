"""Autoguidance as the guided call (issue #20): ``AutoguidancePair``, ``presets.autoguided``,
the Guidance env's ``guide=`` and the IRL config's ``env.guide``."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import diffusion_gym  # noqa: F401 - registers the ids
from diffusion_gym import presets, schedules, steps
from diffusion_gym.denoisers import guided_denoise
from diffusion_gym.denoisers.autoguided import AutoguidancePair, AutoguidedDenoiser
from diffusion_gym.envs.guidance import GuidanceVectorEnv
from diffusion_gym.noise import derive_keys, draw_normal

# An imperfect mixture guided by the exact one: same shape, classes and σ range.
GOOD, BAD = "gmm-ring8-imperfect", "gmm-ring8"


def _pair() -> tuple[AutoguidancePair, torch.nn.Module, torch.nn.Module]:
    good, bad = presets.make(GOOD).denoiser, presets.make(BAD).denoiser
    return AutoguidancePair(good, bad), good, bad


@pytest.mark.parametrize("w", [0.0, 1.0, 1.75, torch.tensor([0.5, 1.0, 2.0, 3.0])])
def test_guided_call_is_autoguidance(w):
    """A guided call with weight w = D_bad(x; c) + w (D_good − D_bad) at the sample's own
    class: AutoguidedDenoiser(good, bad, w); w = 1 is the good model, w = 0 the weaker."""
    pair, good, bad = _pair()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, generator=g, dtype=torch.float64) * 3
    sigma, labels = torch.tensor([0.3, 1.0, 4.0, 20.0]), torch.tensor([0, 3, 5, 7])
    got = guided_denoise(pair, x, sigma, labels, w)
    torch.testing.assert_close(got, AutoguidedDenoiser(good, bad, w)(x, sigma, labels))
    if not isinstance(w, torch.Tensor) and w in (0.0, 1.0):
        torch.testing.assert_close(got, (good if w else bad)(x, sigma, labels))
    assert not torch.allclose(got, guided_denoise(good, x, sigma, labels, w)) or w == 1.0


def test_plain_and_unconditional_calls_are_the_good_model():
    pair, good, _ = _pair()
    x, sigma = torch.randn(3, 2, dtype=torch.float64), torch.full((3,), 2.0)
    labels = torch.tensor([1, -1, 6])  # -1: the good model's unconditional
    torch.testing.assert_close(pair(x, sigma, labels), good(x, sigma, labels))
    torch.testing.assert_close(pair(x, sigma, None), good(x, sigma, None))
    # The caller's labels are checked as the model's: the guiding half's encoding is internal.
    with pytest.raises(ValueError, match="class_labels must lie in"):
        guided_denoise(pair, x, sigma, torch.tensor([1, -3, 6]), 1.5)


def test_bad_guides_are_refused():
    good = presets.make(GOOD).denoiser
    with pytest.raises(ValueError, match="guiding model must match"):
        AutoguidancePair(good, presets.make("gmm-grid").denoiser)  # 16 classes, not 8
    with pytest.raises(TypeError, match="Denoisers"):
        AutoguidancePair(good, torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown preset"):
        presets.autoguided(presets.make(GOOD), "no-such-preset")
    with pytest.raises(TypeError, match="guide must be"):
        presets.autoguided(presets.make(GOOD), 3)
    with pytest.raises(ValueError, match="already autoguided"):
        presets.autoguided(presets.autoguided(presets.make(GOOD), BAD), BAD)


def test_env_guide_rollout_equals_the_autoguided_sampler():
    """Fixed per-step, per-sample actions of the env with ``guide=`` equal Heun steps of
    AutoguidedDenoiser(good, bad, w_k) written out step by step (independent: no pair)."""
    b, seed, n = 5, 3, 4
    env = GuidanceVectorEnv(
        b, denoiser=GOOD, guide=BAD, num_steps=n, guidance_weights=[0.0, 1.0, 2.0, 3.0],
        gammas=[0.0],
    )  # fmt: skip
    assert isinstance(env.denoiser, AutoguidancePair)
    acts = np.random.default_rng(0).integers(0, 4, size=(n, b))
    env.reset(seed=seed)
    labels = env.class_labels.clone()
    for a in acts:
        _, _, term, _, info = env.step(a)
    assert term.all()
    p = presets.make(GOOD)
    keys = derive_keys(torch.arange(b) + seed, salt=0)
    x = p.prior_std * draw_normal(keys, 0, p.denoiser.shape, torch.float64)
    sig = schedules.karras(n, p.sigma_min, p.sigma_max)
    den = AutoguidedDenoiser(p.denoiser, presets.make(BAD).denoiser)
    for k in range(n):
        den.weight = torch.as_tensor(env.guidance_weights[acts[k]], dtype=torch.float64)
        x, _ = steps.step(den, x, sig[k], sig[k + 1], class_labels=labels, solver="heun")
    torch.testing.assert_close(torch.as_tensor(info["final_info"]["x0"]), x, atol=1e-10, rtol=0)
    plain = GuidanceVectorEnv(b, denoiser=GOOD, num_steps=n, guidance_weights=[0.0, 1.0, 2.0, 3.0],
                              gammas=[0.0])  # fmt: skip
    plain.reset(seed=seed)
    for a in acts:
        _, _, _, _, info_cfg = plain.step(a)
    assert not np.allclose(info_cfg["final_info"]["x0"], info["final_info"]["x0"])


def test_env_guide_passes_the_env_checkers():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make("diffusion_gym/Guidance-v0", denoiser=GOOD, guide=BAD)
        gym_check_env(env.unwrapped)
        sb3_check_env(gym.make("diffusion_gym/Guidance-v0", denoiser=GOOD, guide=BAD), warn=False)


def test_irl_config_takes_a_guide():
    from agents.irl.config import Config, EnvConfig
    from agents.irl.trainer import make_env

    cfg = Config(env=EnvConfig(preset=GOOD, guide=BAD, num_envs=2, gammas=[0.0]))
    assert isinstance(make_env(cfg.env).denoiser, AutoguidancePair)
    with pytest.raises(ValueError, match="unknown preset"):
        Config(env=EnvConfig(preset=GOOD, guide="no-such-guide"))
