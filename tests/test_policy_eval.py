"""baselines.evaluate_policy: any policy on held-out noise against base and constants."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

import diffusion_gym  # noqa: F401
from agents.vec_env import SB3VecEnv
from baselines import evaluate_policy
from baselines.evaluate import FixedSchedule, evaluate
from baselines.policy_eval import HELD_OUT_SEED
from diffusion_gym import metrics, presets, steps
from diffusion_gym.envs import ClockVectorEnv, GuidanceVectorEnv

CLOCK = {"bank_size": 32, "reference_steps": 16, "budget": 3}


def test_clock_constant_policy_equals_its_constant_row_and_rmse_is_independent():
    env = ClockVectorEnv(num_envs=2, **CLOCK)
    ev = evaluate_policy(env, lambda obs: np.full((len(obs), 1), 0.5), num_samples=64)
    assert ev.seeds == [HELD_OUT_SEED] and ev.metric == "rmse"
    assert ev.mean("policy") == ev.mean("const-a0.5")  # same draws, same actions
    assert ev["policy"]["nfe"]["mean"] == 5  # Heun K = 3
    # base row = a = 0: recompute its RMSE independently from a held-out env's rollout
    held = ClockVectorEnv(num_envs=64, **{**CLOCK, "bank_size": 64, "bank_seed": HELD_OUT_SEED})
    run = held.rollout(lambda o, k: np.zeros((len(o), 1)), seed=HELD_OUT_SEED)
    want = metrics.rmse(run.x0.reshape(64, -1), run.x_ref.reshape(64, -1))
    assert ev.mean("base") == pytest.approx(float(want), rel=1e-12)
    best = min((r for r in ev.results if r != "policy"), key=ev.mean)
    assert ev.best_constant == best
    with pytest.raises(ValueError, match="bank_seed"):
        evaluate_policy(env, lambda o: np.zeros((len(o), 1)), num_samples=8, seed=0)


@pytest.mark.parametrize("solver", ["heun", "unipc-2"])
def test_clock_fixed_schedule_rows_run_on_the_policy_rows_bank_entries(solver):
    env = ClockVectorEnv(num_envs=2, **{**CLOCK, "solver": solver})

    def per_sample(obs):  # a closed-loop policy: the action depends on the sample's state
        return np.tanh(obs[:, -2:-1] * 3.0).astype(np.float32)

    base, other = env.base_schedule.cpu(), env.base_schedule.cpu().clone()
    other[1:-1] *= 0.5
    ev = evaluate_policy(env, per_sample, num_samples=64, seed=[3, 4],
                         schedules={"fixed-base": base, "fixed-other": other})  # fmt: skip
    # the env's base schedule through steps.sample = the env's a = 0 rollout, bit for bit
    assert ev["fixed-base"]["rmse"]["values"] == ev["base"]["rmse"]["values"]
    assert ev["fixed-other"]["rmse"]["mean"] != ev["base"]["rmse"]["mean"]
    assert ev["fixed-other"]["nfe"]["mean"] == ev["base"]["nfe"]["mean"]
    # the policy's realised schedules, one [64, K+1] array per seed, differ across samples
    assert [s.shape for s in ev.policy_schedules] == [(64, 4), (64, 4)]
    assert float(ev.policy_schedules[0][:, 1].std()) > 0
    # a fixed row scored independently: x_T, labels and x_ref of the policy row's entries
    held = ClockVectorEnv(num_envs=64, **{**CLOCK, "solver": solver, "bank_size": 64,
                                          "bank_seed": 3})  # fmt: skip
    run = held.rollout(lambda o, k: per_sample(o.numpy()), seed=3)
    assert np.array_equal(run.schedule.numpy(), ev.policy_schedules[0])
    x0 = steps.sample(held.denoiser, run.x_T, other, class_labels=run.class_labels,
                      solver=solver)  # fmt: skip
    want = metrics.rmse(x0.reshape(64, -1), run.x_ref.reshape(64, -1))
    assert ev["fixed-other"]["rmse"]["values"][0] == pytest.approx(float(want), rel=1e-12)
    with pytest.raises(ValueError, match="budget is 3"):
        evaluate_policy(env, per_sample, num_samples=8, seed=3, schedules={"s": base[1:]})
    with pytest.raises(ValueError, match="taken"):
        evaluate_policy(env, per_sample, num_samples=8, seed=3, schedules={"base": base})
    with pytest.raises(TypeError, match="Clock"):
        evaluate_policy(GuidanceVectorEnv(2, num_steps=3), lambda o: np.zeros(len(o), int),
                        num_samples=8, schedules={"s": base})  # fmt: skip


def test_guidance_policy_rows_match_the_harness_and_sb3_model_works():
    env = gym.make("diffusion_gym/Guidance-v0", num_steps=3)  # a gym.make view works too
    table = env.unwrapped.batch.action_table
    idx = int(table.encode(np.int64(1), np.int64(0)))  # w = 1, γ = 0: the base
    ev = evaluate_policy(env, lambda obs: np.full(len(obs), idx), num_samples=64, seed=5)
    assert ev.metric == "energy" and len(ev.results) == 2 + 18
    for m in ("energy", "frechet", "class_tv", "loglik"):
        assert ev["base"][m]["mean"] == ev["const-w1-g0"][m]["mean"]
        # the env's rollout and the harness's sampler agree to round-off (tested to 1e-10)
        assert ev["policy"][m]["mean"] == pytest.approx(ev["base"][m]["mean"], rel=1e-9)
    # the base row is the harness's own FixedSchedule on the same noise
    batch = env.unwrapped.batch
    ref = evaluate([FixedSchedule("b", batch.sigmas.cpu(), batch.solver)], batch.preset,
                   num_samples=64, seeds=[5], metrics=["energy"], progress=False)  # fmt: skip
    assert ev.mean("base") == ref["b"]["energy"]["mean"]
    assert ev.best_constant == min((r for r in ev.results if r != "policy"), key=ev.mean)
    # an SB3 model, untrained, goes in as it is; the markdown table has every row
    venv = GuidanceVectorEnv(4, num_steps=3)
    model = PPO("MlpPolicy", SB3VecEnv(venv), n_steps=3, batch_size=12, seed=0, device="cpu")
    ev2 = evaluate_policy(venv, model, num_samples=32, metrics=["energy", "nfe"])
    assert np.isfinite(ev2.mean("policy")) and "| policy |" in ev2.markdown()


def test_errors_and_data_free_metrics():
    den = presets.make("gmm-ring8").denoiser
    env = ClockVectorEnv(num_envs=1, **CLOCK)
    mine = presets.Preset(name="mine", denoiser=den, data=None, prior_std=den.sigma_max)
    env_nodata = ClockVectorEnv(mine, num_envs=1, **CLOCK)
    ev = evaluate_policy(env_nodata, lambda o: np.zeros((len(o), 1)), num_samples=16)
    assert "rmse" in ev["policy"]  # rmse needs no data
    with pytest.raises(ValueError, match="needs data.sample"):
        evaluate_policy(env_nodata, lambda o: o, num_samples=16, metrics=["energy"])
    with pytest.raises(TypeError, match="predict"):
        evaluate_policy(env, object(), num_samples=16)
    with pytest.raises(ValueError, match="num_samples"):
        evaluate_policy(env, lambda o: o, num_samples=1)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_policy(env, lambda o: o, num_samples=16, metrics=["bogus"])
    with pytest.raises(TypeError, match="env_kwargs"):
        evaluate_policy(env, lambda o: o, env_kwargs={"budget": 3})
    ev = evaluate_policy("diffusion_gym/Clock-v0", lambda o: torch.zeros(len(o), 1),
                         num_samples=16, env_kwargs=CLOCK)  # fmt: skip
    assert ev.mean("policy") == ev.mean("base")
