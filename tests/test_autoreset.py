"""Autoreset modes of both vector envs, the SB3 adapter in every mode, and gymnasium's
vector and single-env wrappers (every one that applies; the single-env ones are those of
CleanRL's PPO scripts) on both envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import vector as vw
from stable_baselines3 import PPO

import diffusion_gym  # noqa: F401 - registers the ids
from agents.vec_env import SB3VecEnv
from diffusion_gym.envs import ClockVectorEnv, GuidanceVectorEnv
from diffusion_gym.envs.base import check_autoreset_mode

MODES = [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED]
CLOCK = {"bank_size": 16, "reference_steps": 8, "budget": 3}
GUIDE = {"num_steps": 3}


def make(kind: str, mode, num_envs: int = 3, **kw):
    if kind == "clock":
        return ClockVectorEnv(num_envs=num_envs, autoreset_mode=mode, **{**CLOCK, **kw})
    return GuidanceVectorEnv(num_envs, autoreset_mode=mode, **{**GUIDE, **kw})


def actions(env, t: int) -> np.ndarray:
    """A deterministic action batch for global step t (differs per env and per step)."""
    b = env.num_envs
    if isinstance(env.single_action_space, gym.spaces.Box):
        return np.sin(np.arange(b) + 0.7 * t).astype(np.float32)[:, None]
    return (np.arange(b) * 5 + t) % env.single_action_space.n


def transitions(env, episodes: int = 3):
    """(obs, reward, next obs or final obs, done) of every real step, mode-independently."""
    obs, _ = env.reset(seed=11)
    out, t, mode = [], 0, env.metadata["autoreset_mode"]
    for _ in range(episodes):
        while True:
            nxt, r, term, trunc, info = env.step(actions(env, t))
            t += 1
            done = bool(term.all() or trunc.all())
            assert term.all() == term.any() and trunc.all() == trunc.any()  # lockstep
            last = np.stack(info["final_obs"]) if done and mode is AutoresetMode.SAME_STEP else nxt
            out.append((obs.copy(), r.copy(), last.copy(), done))
            obs = nxt
            if done:
                break
        if mode is AutoresetMode.NEXT_STEP:
            obs, r, term, trunc, _ = env.step(actions(env, 10_000))  # the reset step
            assert not r.any() and not term.any() and not trunc.any()
        elif mode is AutoresetMode.DISABLED:
            with pytest.raises(gym.error.ResetNeeded):
                env.step(actions(env, 0))
            obs, _ = env.reset(options={"reset_mask": np.ones(env.num_envs, bool)})
    return out


@pytest.mark.parametrize("kind", ["clock", "guidance"])
def test_same_trajectories_in_every_mode(kind):
    kw = {"reward": "log_prob"} if kind == "guidance" else {}
    runs = {m: transitions(make(kind, m, **kw)) for m in MODES}
    ref = runs[AutoresetMode.SAME_STEP]
    assert len(ref) == 9 and sum(d for *_, d in ref) == 3
    assert any(r.any() for _, r, _, _ in ref)  # the rewards compared are not all zero
    for m in MODES[1:]:
        assert len(runs[m]) == len(ref)
        for (o1, r1, n1, d1), (o2, r2, n2, d2) in zip(ref, runs[m], strict=True):
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(n1, n2)
            assert d1 == d2
    # Episodes differ from each other (the next episode really is a new one).
    assert not np.array_equal(ref[0][0], ref[3][0])


def test_mode_names_metadata_per_instance_and_errors():
    assert check_autoreset_mode("next_step") is AutoresetMode.NEXT_STEP
    assert check_autoreset_mode("SameStep") is AutoresetMode.SAME_STEP
    assert check_autoreset_mode("DISABLED") is AutoresetMode.DISABLED
    with pytest.raises(ValueError, match="autoreset_mode must be"):
        check_autoreset_mode("sometimes")
    a, b = make("clock", "next_step"), make("clock", "same_step")
    assert a.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP is a.autoreset_mode
    assert b.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert ClockVectorEnv.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP  # the default
    made = gym.make_vec(
        "diffusion_gym/Guidance-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        autoreset_mode="next_step",
    )
    assert made.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    with pytest.raises(TypeError, match="single env"):
        gym.make("diffusion_gym/Clock-v0", autoreset_mode="next_step")
    single = gym.make("diffusion_gym/Guidance-v0")
    assert single.unwrapped.batch.metadata["autoreset_mode"] is AutoresetMode.DISABLED
    env = make("guidance", "disabled", num_envs=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="every env"):
        env.reset(options={"reset_mask": np.array([True, False])})
    with pytest.raises(ValueError, match="shape"):
        env.reset(options={"reset_mask": np.ones(3, bool)})
    with pytest.raises(ValueError, match="reset option"):
        make("clock", "disabled").reset(options={"class_labels": 1})


def _sb3_run(venv: SB3VecEnv, steps: int = 8):
    venv.seed(3)
    obs, out = venv.reset(), []
    for t in range(steps):
        venv.step_async(actions(venv.venv, t))
        nobs, r, d, infos = venv.step_wait()
        term = [i.get("terminal_observation") for i in infos]
        x0 = [i.get("x0") for i in infos]
        out.append((obs, r, d, term, x0))
        obs = nobs
    return out


@pytest.mark.parametrize("kind", ["clock", "guidance"])
def test_sb3_adapter_same_transitions_and_learning_in_every_mode(kind):
    runs = [_sb3_run(SB3VecEnv(make(kind, m))) for m in MODES]
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
            np.testing.assert_array_equal(a[2], b[2])
            for ta, tb in zip(a[3] + a[4], b[3] + b[4], strict=True):
                assert (ta is None) == (tb is None)
                if ta is not None:
                    np.testing.assert_array_equal(ta, tb)
    assert sum(d.all() for _, _, d, _, _ in runs[0]) == 2  # two episode ends were compared
    if kind == "clock":  # PPO on each mode learns the same parameters, bit for bit
        params = []
        for m in MODES:
            torch.manual_seed(0)
            model = PPO("MlpPolicy", SB3VecEnv(make(kind, m, num_envs=4)), n_steps=6,
                        batch_size=12, n_epochs=1, policy_kwargs={"net_arch": [8]}, seed=0,
                        device="cpu")  # fmt: skip
            model.learn(48)
            params.append(torch.cat([p.detach().flatten() for p in model.policy.parameters()]))
        assert torch.equal(params[0], params[1]) and torch.equal(params[0], params[2])


# -- gymnasium's vector wrappers ------------------------------------------------------------
# Every wrapper of gymnasium.wrappers.vector that applies to a flat Box observation, a float
# reward and a Box (Clock) or Discrete (Guidance) action. Not applicable: FilterObservation
# (Dict observations), GrayscaleObservation and ResizeObservation (images),
# RescaleObservation (needs finite observation bounds; ours are unbounded), HumanRendering
# and RecordVideo (pygame / moviepy, a display), JaxToNumpy / JaxToTorch (jax).
VECTOR_WRAPPERS = {
    "TransformObservation": lambda e: vw.TransformObservation(e, lambda o: np.clip(o, -5, 5)),
    "VectorizeTransformObservation": lambda e: vw.VectorizeTransformObservation(
        e, gym.wrappers.TransformObservation, func=lambda o: o * 2.0, observation_space=None
    ),
    "DtypeObservation": lambda e: vw.DtypeObservation(e, np.float64),
    "NormalizeObservation": lambda e: vw.NormalizeObservation(e),
    "FlattenObservation": lambda e: vw.FlattenObservation(e),
    "ReshapeObservation": lambda e: vw.ReshapeObservation(
        e, (1, *e.single_observation_space.shape)
    ),
    "TransformReward": lambda e: vw.TransformReward(e, lambda r: 2.0 * r),
    "VectorizeTransformReward": lambda e: vw.VectorizeTransformReward(
        e, gym.wrappers.TransformReward, func=lambda r: r + 1.0
    ),
    "ClipReward": lambda e: vw.ClipReward(e, -1.0, 1.0),
    "NormalizeReward": lambda e: vw.NormalizeReward(e),
    "RecordEpisodeStatistics": lambda e: vw.RecordEpisodeStatistics(e),
    "DictInfoToList": lambda e: vw.DictInfoToList(e),
    "NumpyToTorch": lambda e: vw.NumpyToTorch(e),
    "ClipAction": lambda e: vw.ClipAction(e),  # Box actions only
    "RescaleAction": lambda e: vw.RescaleAction(e, 0.0, 1.0),
    "TransformAction": lambda e: vw.TransformAction(e, lambda a: a),
    "VectorizeTransformAction": lambda e: vw.VectorizeTransformAction(
        e, gym.wrappers.TransformAction, func=lambda a: a, action_space=None
    ),
}
BOX_ONLY = {"ClipAction", "RescaleAction"}
NEEDS_NEXT_STEP = {"NormalizeObservation", "TransformObservation", "DtypeObservation",
    "VectorizeTransformObservation", "FlattenObservation", "ReshapeObservation"}  # fmt: skip


def test_every_applicable_vector_wrapper_is_listed():
    listed = set(VECTOR_WRAPPERS) | {"FilterObservation", "GrayscaleObservation",
        "ResizeObservation", "RescaleObservation", "HumanRendering", "RecordVideo",
        "JaxToNumpy", "JaxToTorch", "ArrayConversion"}  # fmt: skip
    assert set(vw.__all__) == listed  # a new gymnasium wrapper makes this fail: decide on it


@pytest.mark.parametrize("kind", ["clock", "guidance"])
@pytest.mark.parametrize("name", sorted(VECTOR_WRAPPERS))
def test_gymnasium_vector_wrappers(kind, name):
    if name in BOX_ONLY and kind == "guidance":
        pytest.skip("Box-action wrapper; Guidance's actions are Discrete")
    if name == "NumpyToTorch":
        pytest.importorskip("array_api_compat", reason="gymnasium's optional array-api extra")
    kw = {"reward": "log_prob"} if kind == "guidance" else {}
    env = VECTOR_WRAPPERS[name](make(kind, "next_step", **kw))
    assert env.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    obs, _ = env.reset(seed=0)
    ends = 0
    for t in range(9):  # 2 episodes of 3 steps + their NEXT_STEP reset steps + 1
        a = actions(make(kind, "next_step", num_envs=3), t)
        if name == "NumpyToTorch":
            a = torch.as_tensor(a)
        elif name == "RescaleAction":
            a = (a + 1.0) / 2.0
        obs, r, term, trunc, info = env.step(a)
        ends += int(np.asarray(term).all())
        assert np.isfinite(np.asarray(obs, dtype=np.float64)).all()
    assert ends == 2
    if name == "RecordEpisodeStatistics":
        assert len(env.return_queue) == 2 * 3 and list(env.length_queue)[0] == 3
    if name in NEEDS_NEXT_STEP:  # SAME_STEP (the default) is refused by gymnasium itself
        with pytest.raises(ValueError, match="autoreset_mode"):
            VECTOR_WRAPPERS[name](make(kind, "same_step", **kw))


# -- single-env wrappers of CleanRL's PPO scripts ---------------------------------------------
def cleanrl_env(env_id: str, gamma: float = 0.99):
    """``make_env`` of CleanRL's ppo_continuous_action.py (and ppo.py's subset), verbatim."""
    env = gym.make(env_id)
    env = gym.wrappers.FlattenObservation(env)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if isinstance(env.action_space, gym.spaces.Box):
        env = gym.wrappers.ClipAction(env)
    env = gym.wrappers.NormalizeObservation(env)
    env = gym.wrappers.TransformObservation(
        env, lambda obs: np.clip(obs, -10, 10), env.observation_space
    )
    env = gym.wrappers.NormalizeReward(env, gamma=gamma)
    env = gym.wrappers.TransformReward(env, lambda reward: np.clip(reward, -10, 10))
    return env


@pytest.mark.parametrize("env_id", ["diffusion_gym/Clock-v0", "diffusion_gym/Guidance-v0"])
def test_cleanrl_single_env_wrappers(env_id):
    envs = gym.vector.SyncVectorEnv([lambda: cleanrl_env(env_id) for _ in range(2)])
    envs.action_space.seed(0)
    obs, _ = envs.reset(seed=1)
    episodes = []
    for _ in range(12):
        obs, r, term, trunc, info = envs.step(envs.action_space.sample())
        assert np.isfinite(obs).all() and np.abs(obs).max() <= 10 and np.isfinite(r).all()
        if "episode" in info:
            episodes.extend(info["episode"]["l"][info["_episode"]].tolist())
    n = 3 if "Clock" in env_id else 4  # Clock-v0: K = 3; Guidance-v0: 4 steps
    assert episodes and set(episodes) == {n}
