"""Clock env step path (issue 19): the CPU host fast paths (numpy observation writer, numpy
terminal error, host clock update, known-finite zero reward) give bit for bit what the tensor
code and rollout() give, for a single-step and two multistep solvers (the sampler equality
per env is tests/test_env_solvers.py's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion_gym.envs.clock import ClockVectorEnv

SMALL = {"bank_size": 32, "reference_steps": 8}


@pytest.mark.parametrize("solver", ["heun", "dpmpp-2m", "ipndm"])
def test_step_path_equals_tensor_code_and_rollout(solver):
    b, k_steps = 37, 3  # odd batch: vectorised bodies and scalar tails
    env = ClockVectorEnv("gmm-ring8", solver=solver, num_envs=b, budget=k_steps, **SMALL)
    rng = np.random.default_rng(4)
    acts = rng.uniform(-1, 1, (2 * k_steps, b, 1)).astype(np.float32)
    acts[k_steps + 1, ::3] = 0.0  # a step with some zero actions (the select path)
    obs, _ = env.reset(seed=11)
    first = [obs]
    x_T, x_ref = env.x_T.clone(), env.x_ref.clone()  # noqa: N806
    for t, a in enumerate(acts):
        obs, r, term, _, info = env.step(a)
        if not term.all():
            # the host observation = the float64 tensor writer's buffer rounded to float32
            np.testing.assert_array_equal(obs, env._observation64().to(torch.float32).numpy())
            assert (r == 0).all() and r.dtype == np.float64
            if t < k_steps:
                first.append(obs)
            continue
        fin = info["final_info"]
        x0 = torch.from_numpy(fin["x0"])
        # the terminal reward = −mean squared error, computed here by torch
        expect = -(x0 - x_ref).reshape(b, -1).pow(2).mean(1)
        assert torch.equal(torch.from_numpy(r), expect)
        if t == k_steps - 1:  # the first episode: rollout() and the sampler replay it
            first.append(np.stack(info["final_obs"]))
            ro = env.rollout(lambda o, k: acts[k], seed=11)
            assert torch.equal(ro.observations, torch.from_numpy(np.stack(first)))
            assert torch.equal(ro.rewards[-1], torch.from_numpy(r))
            assert torch.equal(ro.x0, x0) and torch.equal(ro.x_T, x_T)
            assert torch.equal(ro.schedule, torch.from_numpy(fin["schedule"]))
        x_ref = env.x_ref.clone()  # the next episode's (autoreset)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_nonfinite_observation_still_raises_on_a_zero_reward_step():
    """A non-terminal step checks only the observation (its zero reward is known finite):
    a huge state that overflows the float32 observation still raises."""
    env = ClockVectorEnv("gmm-ring8", num_envs=4, **SMALL)
    env.reset(seed=0)
    env._x = torch.full_like(env._x, 1e300)  # finite, but x/scale overflows float32
    env._k = 1
    env._sigma = env._sigma.clone()
    with pytest.raises(ValueError, match="observation"):
        env._check_outputs(env._observe().numpy(), None)
