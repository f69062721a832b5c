"""Clock env reward/observation options for plain learners (diffusion_gym/envs/rewards.py):
log terminal error, the per-x_T base-schedule baseline, the base-error scale, obs_mode time."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import diffusion_gym  # noqa: F401  (registers the ids)
from diffusion_gym import steps
from diffusion_gym.envs import batch_of
from diffusion_gym.envs.clock import ClockVectorEnv
from diffusion_gym.envs.rewards import LOG_EPS, schedule_errors

SMALL = {"bank_size": 48, "reference_steps": 8}
B = 24


def env(**kw) -> ClockVectorEnv:
    return ClockVectorEnv(num_envs=B, **{**SMALL, **kw})


def terminal(venv: ClockVectorEnv, a: float, seed: int = 3):
    ro = venv.rollout(lambda obs, k: np.full((B, 1), a), seed=seed)
    return ro, ro.rewards[-1]


def base_errors(ro, venv) -> torch.Tensor:
    """mse of the base schedule on the rollout's x_T, by the reference sampler itself."""
    x0 = steps.sample(
        venv.denoiser, ro.x_T, venv.base_schedule, class_labels=ro.class_labels,
        solver=venv.solver,
    )  # fmt: skip
    return (x0 - ro.x_ref).reshape(B, -1).pow(2).mean(1)


@pytest.mark.parametrize("reward", ["terminal_error", "log_terminal_error"])
def test_base_baseline_zero_for_base_schedule_and_relative_otherwise(reward):
    plain, rel = env(), env(reward=reward, reward_baseline="base")
    ro0, r0 = terminal(rel, 0.0)
    assert torch.equal(r0, torch.zeros(B, dtype=torch.float64))  # a = 0 is the base: exactly 0
    ro_p, r_plain = terminal(plain, -0.4)
    ro_r, r_rel = terminal(rel, -0.4)
    assert torch.equal(ro_p.bank_index, ro_r.bank_index)
    mse, mse_b = -r_plain, base_errors(ro_p, plain)
    if reward == "terminal_error":
        expected = mse_b - mse
    else:
        expected = torch.log(mse_b + LOG_EPS) - torch.log(mse + LOG_EPS)
    torch.testing.assert_close(r_rel, expected, rtol=1e-9, atol=1e-14)
    assert (r_rel != 0).all() and (ro_r.rewards[:-1] == 0).all()  # terminal only


def test_log_terminal_error_is_minus_log_mse():
    _, r_plain = terminal(env(), 0.3)
    _, r_log = terminal(env(reward="log_terminal_error"), 0.3)
    torch.testing.assert_close(r_log, -torch.log(-r_plain + LOG_EPS), rtol=1e-12, atol=0)


def test_reward_scale_base_is_the_mean_base_error_over_the_bank():
    plain, scaled = env(), env(reward_scale="base")
    _, r_plain = terminal(plain, 0.5)
    _, r_scaled = terminal(scaled, 0.5)
    bank = scaled.bank
    m = schedule_errors(
        scaled.denoiser, bank.x_T, bank.x_ref, bank.labels, scaled.base_schedule,
        solver=scaled.solver, guidance=None,
    ).mean()  # fmt: skip
    torch.testing.assert_close(r_scaled, r_plain / m, rtol=1e-12, atol=0)
    assert 0.05 < float(m) < 20  # O(1) on ring8: the base's mean error, not 1
    _, r_num = terminal(env(reward_scale=4), 0.5)  # an int too
    torch.testing.assert_close(r_num, r_plain / 4.0, rtol=1e-12, atol=0)


def test_time_obs_mode_is_the_first_three_columns_plus_class():
    state, time_ = env(), env(obs_mode="time")
    n_cls = state.denoiser.num_classes
    assert time_.obs_dim == 3 + n_cls
    a = np.full((B, 1), 0.2, np.float32)
    ro_s = state.rollout(lambda obs, k: a, seed=1)
    ro_t = time_.rollout(lambda obs, k: a, seed=1)
    o_s, o_t = ro_s.observations, ro_t.observations
    assert torch.equal(o_t[..., :3], o_s[..., :3])
    assert torch.equal(o_t[..., 3:], o_s[..., state.obs_dim - n_cls :])
    # reset/step agree with rollout (the env's own hot path)
    obs, _ = time_.reset(seed=1)
    np.testing.assert_array_equal(obs, o_t[0].numpy())
    obs, *_ = time_.step(a)
    np.testing.assert_array_equal(obs, o_t[1].numpy())


def test_single_env_checkers_with_the_plain_learner_options():
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    kw = dict(obs_mode="time", reward="log_terminal_error", reward_baseline="base", **SMALL)
    e = gym.make("diffusion_gym/Clock-v0", **kw)
    gym_check(e.unwrapped, skip_render_check=True)
    sb3_check(e.unwrapped)
    assert batch_of(e).clock_spec.reward_baseline == "base"


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(reward_baseline="policy"), ValueError, "reward_baseline must be one of"),
        (dict(reward="local_error", reward_baseline="base"), ValueError, "needs a terminal"),
        (dict(reward="log_terminal_error", reward_scale="base"), ValueError, "raw error"),
        (dict(reward_scale="auto"), ValueError, "number > 0 or 'base'"),
        (dict(reward_scale=-1.0), TypeError, "number > 0"),
        (dict(reward_scale=True), TypeError, "number > 0"),
        (dict(reward="local_error", reward_scale=2.0), ValueError, "terminal reward"),
        (dict(obs_mode="x"), ValueError, "obs_mode must be one of"),
    ],
)
def test_bad_options_raise_clear_errors(kw, err, match):
    with pytest.raises(err, match=match):
        env(**kw)
