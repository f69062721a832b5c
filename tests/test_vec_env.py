"""SB3 adapter over the native vector env: SB3 semantics, wrappers and every algorithm."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import QRDQN, MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

import diffusion_gym  # noqa: F401 - registers the ids
from agents.vec_env import SB3VecEnv
from diffusion_gym.envs.guidance import GuidanceVectorEnv

N = 4  # steps of an episode on gmm-ring8


def make(num_envs=8, **kw) -> SB3VecEnv:
    kw.setdefault("denoiser", "gmm-ring8-imperfect")
    return SB3VecEnv(GuidanceVectorEnv(num_envs, **kw))


def test_step_semantics_terminal_observation_and_time_limit():
    venv = make(5, max_episode_steps=3)
    venv.seed(7)
    obs = venv.reset()
    assert obs.shape == (5, 12) and obs.dtype == np.float32
    for t in range(3):
        obs, rew, dones, infos = venv.step(np.arange(5))
        assert rew.dtype == np.float32 and len(infos) == 5
        assert dones.all() == (t == 2)
    assert all(info["TimeLimit.truncated"] for info in infos)
    term = np.stack([info["terminal_observation"] for info in infos])
    assert term[0, 3] == pytest.approx(3 / N) and obs[0, 3] == 0.0  # auto-reset
    assert infos[0]["x0"].shape == (2,)
    # Terminated (not truncated) episodes.
    venv = make(2)
    venv.reset()
    for _ in range(N):
        _, _, dones, infos = venv.step(np.zeros(2, dtype=int))
    assert dones.all() and not infos[1]["TimeLimit.truncated"]


def test_seed_reproduces_and_matches_native_seeding():
    a, b, c = make(3), make(3), make(3)
    a.seed(11)
    b.seed(11)
    c.seed(12)
    obs = a.reset()
    np.testing.assert_array_equal(obs, b.reset())
    assert not np.array_equal(obs, c.reset())
    native = GuidanceVectorEnv(3, denoiser="gmm-ring8-imperfect")
    np.testing.assert_array_equal(native.reset(seed=11)[0], obs)  # SB3's s + i = ours


def test_attributes_methods_and_render():
    venv = make(4, render_mode="rgb_array")
    venv.reset()
    assert venv.get_attr("num_steps") == [N] * 4
    assert venv.get_attr("num_steps", indices=[1, 2]) == [N, N]
    venv.set_attr("s_noise", 1.0)
    assert venv.get_attr("s_noise")[0] == 1.0
    with pytest.raises(ValueError, match="subset"):
        venv.set_attr("s_noise", 1.0, indices=[0])
    masks = venv.env_method("action_masks")
    assert len(masks) == 4 and masks[0].shape == (18,)
    assert get_action_masks(venv).shape == (4, 18)
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * 4
    frame = venv.render()
    assert frame.shape == (400, 400, 3) and frame.dtype == np.uint8
    with pytest.raises(TypeError, match="VectorEnv"):
        SB3VecEnv(gym.make("diffusion_gym/Guidance-v0"))
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("diffusion_gym/Guidance-v0")])
    assert SB3VecEnv(sync).autoreset_mode is gym.vector.AutoresetMode.NEXT_STEP


def test_vec_monitor_and_vec_normalize_count_episodes():
    venv = VecNormalize(VecMonitor(make(8, reward="log_prob")))
    venv.reset()
    episodes = []
    for _ in range(3 * N):
        _, _, dones, infos = venv.step(np.random.default_rng(0).integers(0, 18, 8))
        episodes += [i["episode"] for i in infos if "episode" in i]
    assert len(episodes) == 3 * 8 and all(e["l"] == N for e in episodes)
    assert all(np.isfinite(e["r"]) and e["r"] != 0 for e in episodes)


@pytest.mark.parametrize(
    "algo,kwargs",
    [
        (PPO, dict(n_steps=16, batch_size=64, n_epochs=2)),
        (A2C, dict(n_steps=4)),
        (DQN, dict(learning_starts=64, buffer_size=2000, train_freq=4, batch_size=32)),
        (QRDQN, dict(learning_starts=64, buffer_size=2000, train_freq=4, batch_size=32)),
    ],
)
def test_sb3_algorithms_run(algo, kwargs):
    torch.manual_seed(0)
    venv = VecMonitor(make(16, reward="log_prob"))
    model = algo("MlpPolicy", venv, policy_kwargs=dict(net_arch=[16]), seed=0, **kwargs)
    model.learn(2048)
    assert model.num_timesteps >= 2048
    assert venv.episode_count == model.num_timesteps // N  # every episode is N steps
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (16,) and venv.action_space.contains(action[0])


def test_maskable_ppo_respects_masks():
    allowed = np.zeros(18, dtype=bool)
    allowed[[3, 4, 5]] = True  # w = 1 with any γ
    used = []

    def reward(t):
        used.append(t["guidance"].clone())
        return torch.zeros(t["x"].shape[0])

    venv = make(16, reward=reward, mask_fn=lambda e: np.tile(allowed, (e.num_envs, 1)))
    model = MaskablePPO(
        "MlpPolicy", venv, n_steps=16, batch_size=64, n_epochs=1, policy_kwargs=dict(net_arch=[16])
    )
    model.learn(2048)
    used = torch.cat(used)
    assert len(used) >= 2048 and bool((used == 1.0).all())
    # Without the mask the same policy picks other weights too (the check above can fail).
    used = []
    MaskablePPO(
        "MlpPolicy", make(16, reward=reward), n_steps=4, policy_kwargs=dict(net_arch=[16])
    ).learn(64)
    assert not bool((torch.cat(used) == 1.0).all())
