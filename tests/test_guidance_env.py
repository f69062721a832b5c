"""Guidance environment: spaces, exact equality with the reference sampler, seeding, errors."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import diffusion_gym  # noqa: F401 - registers the ids
from diffusion_gym import presets, schedules, steps
from diffusion_gym.envs import batch_of
from diffusion_gym.envs.guidance import GuidanceEnv, GuidanceVectorEnv
from diffusion_gym.noise import SampleStreams, derive_keys, draw_normal

GUIDANCE_IDS = sorted(i for i in gym.registry if i.startswith("diffusion_gym/Guidance"))


def make_vec(num_envs=4, **kw) -> GuidanceVectorEnv:
    kw.setdefault("denoiser", "gmm-ring8-imperfect")
    return GuidanceVectorEnv(num_envs, **kw)


def rollout(env: GuidanceVectorEnv, actions: np.ndarray, seed: int):
    """Run one episode of fixed actions ``[N, B]``; returns observations and the final info."""
    obs, _ = env.reset(seed=seed)
    seen = [obs]
    for a in actions:
        obs, reward, term, trunc, info = env.step(a)
        seen.append(obs)
    return np.stack(seen), reward, term, trunc, info


@pytest.mark.parametrize("env_id", GUIDANCE_IDS)
def test_check_env_gymnasium_and_sb3(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded Box warnings
        gym_check_env(gym.make(env_id).unwrapped)
        sb3_check_env(gym.make(env_id), warn=False)
    assert len(GUIDANCE_IDS) >= 5


@pytest.mark.parametrize(
    "denoiser,solver,fmt",
    [("gmm-ring8-imperfect", "heun", "discrete"), ("gmm-grid", "euler", "multidiscrete")],
)
def test_fixed_actions_equal_reference_sampler(denoiser, solver, fmt):
    b, seed = 6, 11
    env = make_vec(b, denoiser=denoiser, solver=solver, num_steps=5, action_format=fmt)
    rng = np.random.default_rng(0)
    nw, ng = len(env.guidance_weights), len(env.gammas)
    wi = rng.integers(0, nw, size=(5, b))
    gi = rng.integers(0, ng, size=(5, b))
    gi[0] = 2  # churn in every env at the first step
    actions = wi * ng + gi if fmt == "discrete" else np.stack([wi, gi], -1)
    obs, _ = env.reset(seed=seed)
    labels = env.class_labels.clone()
    for a in actions:
        obs, _, term, _, info = env.step(a)
    assert term.all()
    x0_env = torch.as_tensor(info["final_info"]["x0"])
    # Independent computation: the reference sampler with the same keys and per-step tables.
    p = presets.make(denoiser)
    keys = derive_keys(torch.arange(b) + seed, salt=0)
    x_t = p.prior_std * draw_normal(keys, 0, p.denoiser.shape, torch.float64)
    sigmas = schedules.karras(5, p.sigma_min, p.sigma_max)
    ref = steps.sample(
        p.denoiser,
        x_t,
        sigmas,
        class_labels=labels,
        guidance=torch.as_tensor(env.guidance_weights[wi]),
        gamma=torch.as_tensor(env.gammas[gi]),
        solver=solver,
        generator=SampleStreams(keys),
    )
    torch.testing.assert_close(x0_env, ref, atol=1e-10, rtol=0)
    assert float((ref - x_t).abs().max()) > 1.0  # the sampler moved


def test_same_seed_identical_and_env_independent_of_num_envs():
    n = 4  # num_steps of gmm-ring8; two episodes exercise the auto-reset
    rng = np.random.default_rng(1)
    acts7 = rng.integers(0, 18, size=(2 * n, 7))
    runs = [rollout(make_vec(7), acts7, seed=5)[0] for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    single = rollout(make_vec(1), acts7[:, 4:5], seed=5 + 4)[0]
    np.testing.assert_array_equal(single[:, 0], runs[0][:, 4])
    other_seed = rollout(make_vec(7), acts7, seed=6)[0]
    assert not np.array_equal(other_seed[:, 4], runs[0][:, 4])
    # Drawn labels differ between episodes and envs (one-hot part of the observations).
    labels = runs[0][:, :, -8:].argmax(-1)
    assert len(np.unique(labels)) > 2


def test_single_env_is_a_view_of_the_vector_env():
    env = gym.make("diffusion_gym/GuidanceRing8-v0")
    vec = make_vec(1, denoiser="gmm-ring8")
    o1, _ = env.reset(seed=3)
    o2, _ = vec.reset(seed=3)
    np.testing.assert_array_equal(o1, o2[0])
    for a in [5, 17, 0, 9]:
        o1, r1, t1, _, info1 = env.step(a)
        o2, r2, t2, _, info2 = vec.step(np.array([a]))
    assert t1 and t2[0]
    np.testing.assert_array_equal(info1["x0"], info2["final_info"]["x0"][0])
    np.testing.assert_array_equal(o1, info2["final_obs"][0])
    with pytest.raises(ResetNeeded):
        env.step(0)  # the single env does not auto-reset
    assert batch_of(env).sigmas.shape == (5,)


def test_log_prob_and_classifier_rewards_are_exact():
    env = make_vec(5, reward="log_prob", class_labels=[0, 1, 2, 3, 4])
    obs, reward, term, _, info = rollout(env, np.full((4, 5), 4), seed=0)
    x0 = torch.as_tensor(info["final_info"]["x0"])
    expected = env.preset.data.log_prob(x0, 0.0, torch.arange(5))
    np.testing.assert_allclose(reward, expected.numpy(), rtol=1e-12)
    env = make_vec(5, reward="classifier", class_labels=3)
    obs, reward, term, _, info = rollout(env, np.full((4, 5), 10), seed=0)
    x0 = torch.as_tensor(info["final_info"]["x0"])
    post = env.preset.data.class_log_posterior(x0, 0.0)[:, 3]
    np.testing.assert_allclose(reward, post.numpy(), rtol=1e-12)
    assert (reward <= 0).all()


def test_callable_reward_and_intermediate_rewards_zero():
    seen = []

    def reward(t):
        seen.append((t["step"], t["sigma"], t["sigma_next"], t["guidance"].clone()))
        return -(t["x_next"] - t["denoised"]).pow(2).sum(1)

    env = make_vec(3, reward=reward)
    env.reset(seed=0)
    _, r, *_ = env.step(np.array([0, 1, 17]))
    assert r.shape == (3,) and (r <= 0).all()
    assert seen[0][0] == 0 and seen[0][1] == pytest.approx(80.0)
    torch.testing.assert_close(seen[0][3], torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64))
    env = make_vec(3, reward="log_prob")
    env.reset(seed=0)
    assert (env.step(np.zeros(3, dtype=int))[1] == 0).all()


def test_truncation_info_and_masks():
    env = make_vec(3, max_episode_steps=2)
    env.reset(seed=0)
    _, _, term, trunc, info = env.step(np.array([0, 1, 2]))
    assert not trunc.any() and info["step"].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(info["gamma"], [0.0, 0.1, 0.4])
    assert info["sigma"][0] == pytest.approx(80.0)
    _, _, term, trunc, info = env.step(np.array([3, 4, 5]))
    assert trunc.all() and not term.any() and info["_final_obs"].all()
    np.testing.assert_array_equal(info["final_info"]["guidance"], [1.0, 1.0, 1.0])
    assert env.action_masks().shape == (3, 18) and env.action_masks().all()
    masked = make_vec(2, mask_fn=lambda e: np.arange(18)[None].repeat(2, 0) < 3)
    assert masked.action_masks().sum() == 6
    bad = make_vec(2, mask_fn=lambda e: np.ones(18, bool))
    with pytest.raises(ValueError, match="mask_fn"):
        bad.action_masks()


def test_observations_state_and_features():
    env = make_vec(2, class_labels=[1, 6])
    obs, _ = env.reset(seed=2)
    sd = env.denoiser.sigma_data
    x = env.x.numpy()
    np.testing.assert_allclose(obs[:, :2], x / math.sqrt(80.0**2 + sd**2), rtol=1e-6)
    assert obs[0, 2] == pytest.approx(math.log(80.0)) and obs[0, 3] == 0.0
    assert obs[0, 4 + 1] == 1.0 and obs[1, 4 + 6] == 1.0 and obs[:, 4:].sum() == 2
    torch.testing.assert_close(env.encode_obs(env.x, 0, env.class_labels).numpy(), obs)
    feat = make_vec(3, denoiser="gmm-64d", obs_mode="features")
    assert feat.single_observation_space.shape == (2 + 8 + 4,)
    obs, _ = feat.reset(seed=0)
    assert (obs[:, -3:] == 0).all()  # no denoiser call yet
    obs, *_ = feat.step(np.array([15, 3, 0]))
    assert np.isfinite(obs).all() and (obs[:, -3:] > 0).all()
    assert obs[2, -3] > 0 and obs[2, -1] == pytest.approx(1.0, abs=0.5)  # w=0: D_c ≠ D_u


def test_expert_observations_match_an_independent_computation():
    env = make_vec(4, denoiser="gmm-ring8")
    k = torch.tensor([0, 1, 2, 4])
    c = torch.tensor([0, 3, 5, 7])
    obs = env.expert_observations(k, c, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    x0 = env.preset.data.sample(4, c, g)
    eps = torch.randn(4, 2, generator=g, dtype=torch.float64)
    sigma = env.sigmas[k]
    x = x0 + sigma[:, None] * eps
    scaled = x / (sigma**2 + env.denoiser.sigma_data**2).sqrt()[:, None]
    torch.testing.assert_close(obs[:, :2], scaled.float())
    torch.testing.assert_close(obs[:, 3], k.float() / 4)
    assert obs.shape == (4, env.obs_dim) and (obs[:, 4:].argmax(1) == c).all()
    again = env.expert_observations(k, c, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, obs, rtol=0, atol=0)  # the generator fixes x_0 and ε
    with pytest.raises(TypeError, match="torch.Generator"):  # streams would fix ε alone
        env.expert_observations(k, c, SampleStreams.from_seeds(torch.arange(4)))
    feat = make_vec(2, obs_mode="features")
    fo = feat.expert_observations(torch.tensor([0, 2]), torch.tensor([1, 2]))
    assert (fo[0, -3:] == 0).all() and (fo[1, -3:] > 0).all()


def test_errors():
    env = make_vec(3)
    with pytest.raises(ResetNeeded):
        env.step(np.zeros(3, dtype=int))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[0, 18\)"):
        env.step(np.array([0, 18, 1]))
    with pytest.raises(ValueError, match=r"\[0, 18\)"):
        env.step(np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="integral"):
        env.step(np.array([0.5, 1.0, 1.0]))
    with pytest.raises(TypeError):
        env.step(np.array(["a", "b", "c"]))
    md = make_vec(2, action_format="multidiscrete")
    md.reset(seed=0)
    with pytest.raises(ValueError, match="MultiDiscrete"):
        md.step(np.array([[0, 3], [0, 0]]))
    with pytest.raises(TypeError, match="unexpected keyword"):
        gym.make("diffusion_gym/Guidance-v0", not_an_argument=1)
    with pytest.raises(ValueError, match="unknown preset"):
        make_vec(2, denoiser="no-such-preset")
    with pytest.raises(ValueError, match="obs_mode"):
        make_vec(2, obs_mode="pixels")
    with pytest.raises(ValueError, match="class_labels"):
        make_vec(2, class_labels=[0, 8])
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_vec(2, max_episode_steps=10)
    with pytest.raises(ValueError, match="reward"):
        make_vec(2, reward="accuracy")
    with pytest.raises(ValueError, match="num_steps"):
        make_vec(2, schedule=[80.0, 1.0, 0.0], num_steps=3)
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"foo": 1})


def test_render_and_make_vec_and_cleanrl_sync_vector_env():
    env = gym.make("diffusion_gym/Guidance-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (400, 400, 3) and frame.dtype == np.uint8 and frame.std() > 0
    vec = gym.make_vec(
        "diffusion_gym/Guidance-v0", num_envs=32, vectorization_mode="vector_entry_point"
    )
    assert isinstance(vec.unwrapped, GuidanceVectorEnv) and vec.num_envs == 32
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (32, 12) and vec.observation_space.contains(obs)
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("diffusion_gym/Guidance-v0")] * 2)
    obs, _ = sync.reset(seed=0)
    ends = 0
    for _ in range(10):
        obs, r, term, trunc, _ = sync.step(sync.action_space.sample())
        ends += int(term.sum())
    assert ends == 4  # 10 steps, N = 4, next-step autoreset: episodes end at steps 4 and 9
    single = GuidanceEnv(denoiser="gmm-ring8", class_labels=2)
    o, _ = single.reset(seed=0)
    assert o[4 + 2] == 1.0


def test_guidance_improves_the_imperfect_model():
    """Something to learn: on the misspecified ring, w = 1.5 beats w = 1 in log-likelihood,
    and the unconditional model (w = 0) lands off its class (measured: −1.4, −0.3, −105)."""

    def mean_log_prob(action: int) -> float:
        env = make_vec(256, num_steps=16, reward="log_prob")
        env.reset(seed=0)
        for _ in range(16):
            _, r, *_ = env.step(np.full(256, action))
        return float(r.mean())

    w1, w15, w0 = mean_log_prob(3), mean_log_prob(6), mean_log_prob(0)
    assert w15 > w1 + 0.5 and w0 < w1 - 50


# ---------------------------------------------------------------------------------------------
# Public API: rollout, ActionTable, batch_of


@pytest.mark.parametrize("fmt,obs_mode", [("discrete", "state"), ("multidiscrete", "features")])
def test_rollout_equals_env_step_episodes_and_reference_sampler(fmt, obs_mode):
    b, n, seed = 5, 4, 21
    env = make_vec(b, num_steps=n, action_format=fmt, obs_mode=obs_mode, reward="log_prob")
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(n)]
    ro = env.rollout(lambda obs, k: actions[k], seed=seed)
    seen, reward, term, _, info = rollout(env, actions, seed)
    assert term.all()
    np.testing.assert_array_equal(ro.observations[:n].numpy(), seen[:n])
    np.testing.assert_array_equal(ro.observations[n].numpy(), np.stack(info["final_obs"]))
    np.testing.assert_array_equal(ro.x0.numpy(), info["final_info"]["x0"])
    np.testing.assert_array_equal(ro.rewards[-1].numpy(), reward)
    np.testing.assert_array_equal(ro.actions, np.stack(actions))
    wi, gi = env.action_table.decode(actions[0], b)
    np.testing.assert_array_equal(ro.guidance[0].numpy(), env.guidance_weights[wi])
    np.testing.assert_array_equal(ro.gamma[0].numpy(), env.gammas[gi])
    # The reference sampler with the same start, labels, streams and per-step tables.
    keys = derive_keys(torch.arange(b) + seed, salt=0)
    ref = steps.sample(
        env.denoiser,
        ro.x_T,
        env.sigmas,
        class_labels=ro.class_labels,
        guidance=ro.guidance,
        gamma=ro.gamma,
        solver=env.solver,
        generator=SampleStreams(keys),
    )
    torch.testing.assert_close(ro.x0, ref, atol=1e-10, rtol=0)


def test_rollout_with_given_x_T_of_another_batch_size():
    env = make_vec(4, num_steps=3)
    env.reset(seed=0)
    x_before = env.x.clone()
    gen = torch.Generator().manual_seed(0)
    x_T = 80.0 * torch.randn(7, 2, generator=gen, dtype=torch.float64)
    labels = torch.arange(7) % env.num_classes
    streams = SampleStreams(derive_keys(torch.arange(7) + 100, salt=0))
    ro = env.rollout(lambda obs, k: np.full(len(obs), 7), x_T=x_T, class_labels=labels,
                     streams=streams)  # fmt: skip
    assert ro.x0.shape == (7, 2) and ro.observations.shape == (4, 7, env.obs_dim)
    assert torch.equal(ro.x_T, x_T) and torch.equal(ro.class_labels, labels)
    assert torch.equal(env.x, x_before)  # the env's own episodes are untouched
    # The same batch as env episodes: a 7-env vector env with these x_T/labels/streams.
    big = make_vec(7, num_steps=3, class_labels=labels.tolist())
    again = big.rollout(lambda obs, k: np.full(len(obs), 7), x_T=x_T, streams=streams)
    assert torch.equal(again.x0, ro.x0)
    with pytest.raises(ValueError, match="x_T"):
        env.rollout(lambda obs, k: np.zeros(len(obs)), x_T=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="streams"):
        env.rollout(lambda obs, k: np.zeros(len(obs)), x_T=x_T, class_labels=labels,
                    streams=SampleStreams(derive_keys(torch.arange(2), salt=0)))  # fmt: skip
    with pytest.raises(ValueError, match="actions"):
        env.rollout(lambda obs, k: np.full(len(obs), 99), seed=0)


def test_action_table_round_trip_and_errors():
    from diffusion_gym.envs import ActionTable

    for fmt in ("discrete", "multidiscrete"):
        t = ActionTable([0.0, 1.0, 2.0], [0.0, 0.5], fmt)
        wi, gi = np.array([0, 1, 2, 2]), np.array([1, 0, 1, 0])
        a = t.encode(wi, gi)
        assert a.shape == ((4,) if fmt == "discrete" else (4, 2))
        w2, g2 = t.decode(a)
        np.testing.assert_array_equal(w2, wi)
        np.testing.assert_array_equal(g2, gi)
        w, g = t.values(torch.as_tensor(a))
        assert torch.equal(w, torch.tensor([0.0, 1.0, 2.0, 2.0], dtype=torch.float64))
        assert torch.equal(g, torch.tensor([0.5, 0.0, 0.5, 0.0], dtype=torch.float64))
        assert t.size == 6
    t = ActionTable([0.0, 1.0, 2.0], [0.0, 0.5])
    assert t.encode(np.array(2), np.array(1)) == 5
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        t.decode([6])
    with pytest.raises(ValueError, match="integral"):
        t.decode([0.5])
    with pytest.raises(TypeError, match="integers"):
        t.decode(["a"])
    with pytest.raises(ValueError, match="shape"):
        t.decode([1, 2], batch=3)
    with pytest.raises(ValueError, match="wi"):
        t.encode([3], [0])
    with pytest.raises(TypeError, match="integers"):
        t.encode([0.5], [0])
    with pytest.raises(ValueError, match="MultiDiscrete"):
        ActionTable([0.0, 1.0], [0.0], "multidiscrete").decode([[2, 0]])
    with pytest.raises(ValueError, match="action_format"):
        ActionTable([1.0], [0.0], "box")
    with pytest.raises(ValueError, match="gammas"):
        ActionTable([1.0], [-0.1])
    env = make_vec(2)
    assert env.action_table.size == env.single_action_space.n
    np.testing.assert_array_equal(env.action_table.weights, env.guidance_weights)


def test_batch_of_vector_env_single_view_and_wrappers():
    from gymnasium.wrappers import RecordEpisodeStatistics
    from gymnasium.wrappers.vector import RecordEpisodeStatistics as VectorRecord

    from agents.vec_env import SB3VecEnv
    from diffusion_gym.envs import batch_of

    vec = make_vec(3)
    assert batch_of(vec) is vec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = gym.make_vec(
            "diffusion_gym/Guidance-v0", num_envs=3, vectorization_mode="vector_entry_point"
        )
        single = gym.make("diffusion_gym/Guidance-v0")
    assert batch_of(VectorRecord(made)) is made.unwrapped
    assert isinstance(batch_of(single), GuidanceVectorEnv) and batch_of(single).num_envs == 1
    assert batch_of(RecordEpisodeStatistics(single)) is batch_of(single)
    assert batch_of(SB3VecEnv(vec)) is vec
    single.reset(seed=2)
    assert batch_of(single).x.shape == (1, 2)
    with pytest.raises(TypeError, match="batch_of"):
        batch_of(object())
