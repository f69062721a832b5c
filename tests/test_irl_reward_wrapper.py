"""agents.irl.DiscriminatorReward: the IRL reward as a vector-env wrapper for any learner."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import diffusion_gym  # noqa: F401  (registers the ids)
from agents.discriminator import reward_from_logit
from agents.irl import DiscriminatorReward, IRLDiscriminatorConfig
from agents.irl.trainer import decode_step_class
from agents.vec_env import SB3VecEnv

N = 32


def guidance(**kw):
    return gym.make_vec(
        "diffusion_gym/Guidance-v0", num_envs=N, vectorization_mode="vector_entry_point", **kw
    )


def test_reward_is_the_discriminator_reward_of_the_arrival_state():
    cfg = IRLDiscriminatorConfig(divergence="reverse_kl", logit_clip=2.0, reward_scale=0.5)
    env = DiscriminatorReward(guidance(reward="log_prob"), cfg, update_every=100, seed=1)
    env.reset(seed=0)
    a = np.full(N, 3)
    for _ in range(4):  # one episode (4 steps); the last one ends it (SAME_STEP)
        obs, r, term, trunc, info = env.step(a)
    assert term.all()
    final = torch.as_tensor(np.stack(info["final_obs"]), dtype=torch.float32)
    ell = env.disc(final).clamp(-2.0, 2.0)
    torch.testing.assert_close(torch.as_tensor(r, dtype=torch.float32), 0.5 * (ell - 1.0))
    assert np.isfinite(info["env_reward"]).all() and (info["env_reward"] != 0).any()
    # the arrival states are clean samples: k = N read off the final observation
    k, _ = decode_step_class(env.guidance_env, final)
    assert (k == env.guidance_env.num_steps).all()
    assert not np.array_equal(obs, info["final_obs"][0])  # obs is the next episode's first


def test_discriminator_learns_to_tell_expert_from_a_bad_constant_policy():
    cfg = IRLDiscriminatorConfig(lr=3e-3, epochs=5, batch_size=64)
    env = DiscriminatorReward(guidance(), cfg, update_every=8, seed=0)
    env.reset(seed=0)
    before = [p.detach().clone() for p in env.disc.parameters()]
    bad = np.full(N, 17)  # w = 5, γ = 0.4: far off the data at 4 steps
    for _ in range(80):
        env.step(bad)
    assert env.updates == 10
    assert any(not torch.equal(p, q) for p, q in zip(before, env.disc.parameters(), strict=True))
    # the final samples (k = N): expert x_0 ~ data earn more than the policy's
    env.reset(seed=5)
    for _ in range(4):
        *_, info = env.step(bad)
    s = torch.as_tensor(np.stack(info["final_obs"]), dtype=torch.float32)
    k, labels = decode_step_class(env.guidance_env, s)
    expert = env.guidance_env.expert_observations(k, labels, torch.Generator().manual_seed(0))
    assert float(env.reward(expert.float()).mean()) > float(env.reward(s).mean()) + 0.1
    assert env.last_stats["accuracy"] > 0.6


def test_sb3_adapter_accepts_the_wrapped_env_and_seeding_is_reproducible():
    def run(seed):
        v = SB3VecEnv(DiscriminatorReward(guidance(), update_every=2, seed=seed))
        v.seed(0)
        v.reset()
        out = [v.step(np.full(N, 1))[1] for _ in range(6)]
        return np.stack(out)

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))  # the discriminator's weights follow the seed


@pytest.mark.parametrize(
    "make, kw, err, match",
    [
        (lambda: guidance(obs_mode="features"), {}, ValueError, "obs_mode 'state'"),
        (
            lambda: gym.make_vec(
                "diffusion_gym/Clock-v0", num_envs=2, vectorization_mode="vector_entry_point",
                bank_size=8, reference_steps=4,
            ),
            {}, TypeError, "needs a Guidance env",
        ),
        (guidance, {"update_every": 0}, ValueError, "update_every"),
        (guidance, {"config": IRLDiscriminatorConfig(source="policy")}, ValueError, "separate"),
    ],
)  # fmt: skip
def test_bad_arguments_raise_clear_errors(make, kw, err, match):
    with pytest.raises(err, match=match):
        DiscriminatorReward(make(), **kw)


def test_reward_from_logit_is_the_trainers_function():
    env = DiscriminatorReward(guidance(), IRLDiscriminatorConfig(divergence="js"))
    s = torch.randn(5, env.single_observation_space.shape[0])
    torch.testing.assert_close(env.reward(s), reward_from_logit(env.disc(s), "js"))
