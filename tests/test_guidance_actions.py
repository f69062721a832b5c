"""Guidance env: the continuous (box) action, the renoise (restart) action and the
classifier-feature observations."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import stable_baselines3 as sb3
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import diffusion_gym  # noqa: F401 - registers the ids
from agents.vec_env import SB3VecEnv
from diffusion_gym import presets, schedules, steps
from diffusion_gym.denoisers.base import DenoiserWrapper
from diffusion_gym.denoisers.classifier import load_digits_classifier
from diffusion_gym.envs import batch_of
from diffusion_gym.envs.actions import ActionTable
from diffusion_gym.envs.guidance import GuidanceEnv, GuidanceVectorEnv
from diffusion_gym.noise import SampleStreams, derive_keys, draw_normal

PRESET = "gmm-ring8-imperfect"


class CountingDenoiser(DenoiserWrapper):
    """Counts denoiser evaluations per sample: a guided call of 2b rows is b evaluations."""

    def __init__(self, inner, guided: bool):
        super().__init__(inner)
        self.rows, self.guided = 0, guided

    def denoise(self, x, sigma, class_labels):
        self.rows += x.shape[0]
        return self.inner.denoise(x, sigma, class_labels)

    @property
    def evaluations(self) -> int:
        return self.rows // 2 if self.guided else self.rows


def episode(env: GuidanceVectorEnv, actions, seed: int):
    """One episode of fixed actions ``[N, B, ...]``; returns the x0 and the step infos."""
    env.reset(seed=seed)
    infos = []
    for a in actions:
        _, _, term, _, info = env.step(a)
        infos.append(info)
    assert term.all()
    return torch.as_tensor(infos[-1]["final_info"]["x0"]), infos


def reference_inputs(b: int, seed: int, n: int):
    p = presets.make(PRESET)
    keys = derive_keys(torch.arange(b) + seed, salt=0)
    x_t = p.prior_std * draw_normal(keys, 0, p.denoiser.shape, torch.float64)
    return p, keys, x_t, schedules.karras(n, p.sigma_min, p.sigma_max)


# ---------------------------------------------------------------------------------------
# Box action


def test_box_space_bounds_follow_the_tables_and_drop_empty_ranges():
    env = GuidanceVectorEnv(3, PRESET, action_format="box")
    space = env.single_action_space
    assert isinstance(space, gym.spaces.Box) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low, [0.0, 0.0])
    np.testing.assert_array_equal(space.high, np.float32([5.0, 0.4]))
    assert env.action_table.box_names == ("w", "gamma")
    env = GuidanceVectorEnv(
        3, PRESET, action_format="box", guidance_weights=(-1.0, 8.0), gammas=(0.0, 1.0)
    )
    np.testing.assert_array_equal(env.single_action_space.low, [-1.0, 0.0])
    np.testing.assert_array_equal(env.single_action_space.high, [8.0, 1.0])
    # A multistep solver without churn: γ_max = 0, so the box is w alone.
    env = GuidanceVectorEnv(3, PRESET, action_format="box", solver="unipc-2")
    assert env.action_table.box_names == ("w",) and env.single_action_space.shape == (1,)
    with pytest.raises(ValueError, match="nothing to choose"):
        GuidanceVectorEnv(3, PRESET, action_format="box", solver="unipc-2", guidance_weights=[2])


def test_box_fixed_actions_equal_reference_sampler_bit_exactly():
    b, n, seed = 6, 5, 3
    env = GuidanceVectorEnv(b, PRESET, action_format="box", num_steps=n)
    rng = np.random.default_rng(0)
    w, g = rng.uniform(0, 5, size=(n, b)), rng.uniform(0, 0.4, size=(n, b))
    acts = np.stack([w, g], -1).astype(np.float32)
    acts[0, :, 1] = 0.4  # the upper bound itself is valid
    x0, infos = episode(env, acts, seed)
    ro = env.rollout(lambda obs, k: acts[k], seed=seed)
    assert torch.equal(ro.x0, x0)  # rollout = env.step episodes
    labels = ro.class_labels
    p, keys, x_t, sigmas = reference_inputs(b, seed, n)
    ref = steps.sample(
        p.denoiser,
        x_t,
        sigmas,
        class_labels=labels,
        guidance=torch.as_tensor(acts[..., 0], dtype=torch.float64),
        gamma=torch.as_tensor(acts[..., 1], dtype=torch.float64),
        generator=SampleStreams(keys),
    )
    assert torch.equal(x0, ref)
    assert float((ref - x_t).abs().max()) > 1.0
    np.testing.assert_array_equal(infos[2]["guidance"], acts[2, :, 0].astype(np.float64))
    again, _ = episode(env, acts, seed)
    assert torch.equal(again, x0)  # same seed, same trajectory
    other, _ = episode(env, acts, seed + 1)
    assert not torch.equal(other, x0)


def test_box_table_points_equal_the_discrete_actions():
    """A box action at a table point (w, γ) gives the same step as the discrete index."""
    b, seed = 5, 8
    disc = GuidanceVectorEnv(b, PRESET)
    box = GuidanceVectorEnv(b, PRESET, action_format="box")
    n = disc.num_steps
    idx = np.random.default_rng(1).integers(0, 18, size=(n, b))
    wi, gi = disc.action_table.decode(idx.reshape(-1))
    vals = np.stack([disc.guidance_weights[wi], disc.gammas[gi]], -1).reshape(n, b, 2)
    x_disc, _ = episode(disc, idx, seed)
    x_box, _ = episode(box, vals, seed)
    assert torch.equal(x_disc, x_box)
    np.testing.assert_array_equal(box.action_table.encode(wi, gi).reshape(n, b, 2), vals)
    r_box = GuidanceVectorEnv(b, PRESET, action_format="box", renoise_steps=1).action_table
    np.testing.assert_array_equal(r_box.encode(np.int64(3), np.int64(1), True), [2.0, 0.1, 1.0])


@pytest.mark.parametrize("renoise", [None, 1])
def test_box_check_env_gymnasium_and_sb3(renoise):
    env = gym.make(
        "diffusion_gym/Guidance-v0", action_format="box", renoise_steps=renoise, max_renoises=2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded observation Box, asymmetric action Box
        gym_check_env(env.unwrapped)
        sb3_check_env(env, warn=False)


def test_box_action_errors():
    env = GuidanceVectorEnv(2, PRESET, action_format="box")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"column 0 \('w'\) must lie in \[0, 5\]"):
        env.step(np.array([[5.5, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"column 1 \('gamma'\)"):
        env.step(np.array([[1.0, -0.01], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([[np.nan, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        env.step(np.ones(2))
    with pytest.raises(TypeError, match="real numbers"):
        env.step(np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="not 'box'"):
        env.action_masks()
    with pytest.raises(ValueError, match="no table indices"):
        env.action_table.decode(np.ones((2, 2)))
    with pytest.raises(ValueError, match="action_format must be one of"):
        GuidanceVectorEnv(2, PRESET, action_format="continuous")
    assert env.step(np.array([[5.0, 0.4], [0.0, 0.0]]))[0].shape == (2, env.obs_dim)
    clipped = gym.wrappers.ClipAction(gym.make("diffusion_gym/Guidance-v0", action_format="box"))
    clipped.reset(seed=0)
    *_, info = clipped.step(np.array([9.0, -1.0]))  # gymnasium's wrapper clips for the agent
    assert info["guidance"] == 5.0 and info["gamma"] == 0.0


OFF_POLICY = {"learning_starts": 64, "batch_size": 64, "train_freq": 8}


@pytest.mark.parametrize(
    "algo,kwargs",
    [("SAC", OFF_POLICY), ("TD3", OFF_POLICY), ("PPO", {"n_steps": 16, "batch_size": 64})],
)
def test_sac_td3_ppo_smoke_on_the_box_action(algo, kwargs):
    """A few hundred steps of SAC, TD3 and Gaussian PPO on the box action (+ renoise)."""
    venv = SB3VecEnv(
        GuidanceVectorEnv(8, PRESET, action_format="box", reward="log_prob", renoise_steps=1)
    )
    model = getattr(sb3, algo)(
        "MlpPolicy", venv, seed=0, policy_kwargs={"net_arch": [32, 32]}, **kwargs
    )
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(320)
    assert any(
        not torch.equal(a, p) for a, p in zip(before, model.policy.parameters(), strict=True)
    )
    buf = model.replay_buffer if algo != "PPO" else model.rollout_buffer
    rewards = buf.rewards.reshape(-1)[: 8 * (buf.pos or buf.buffer_size)]
    assert np.isfinite(rewards).all() and (rewards != 0).any()  # terminal log p rewards
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    space = venv.action_space
    assert action.shape == (8, 3) and (action >= space.low).all() and (action <= space.high).all()


# ---------------------------------------------------------------------------------------
# Renoise (restart sampling)


def restart_reference(den, x_t, sigmas, labels, keys, w, gamma, renoise, r, max_renoises):
    """An independent restart sampler, one sample at a time: per step k, if asked (k >= 1,
    budget left) x += sqrt(σ_j² − σ_k²) ε (draw N + 1 + k), re-run steps j..k−1 (γ = 0),
    then the step k with (w, γ). Returns the samples and each sample's NFE."""
    n, b = len(sigmas) - 1, x_t.shape[0]
    out, nfes = [], []
    for i in range(b):
        x, used, nfe = x_t[i : i + 1], 0, 0
        key = keys[i : i + 1]
        lab = labels[i : i + 1]
        for k in range(n):
            wk = torch.tensor([w[k, i]], dtype=torch.float64)
            if renoise[k, i] and k >= 1 and used < max_renoises:
                used += 1
                j = max(k - r, 0)
                s_j, s_k = float(sigmas[j]), float(sigmas[k])
                x = x + math.sqrt(s_j**2 - s_k**2) * draw_normal(key, n + 1 + k, (2,), x.dtype)
                for m in range(j, k):
                    x, _ = steps.step(
                        den, x, float(sigmas[m]), float(sigmas[m + 1]), class_labels=lab,
                        guidance=wk,
                    )  # fmt: skip
                    nfe += 2
            noise = steps.churn_noise(SampleStreams(key), k, x) if gamma[k, i] > 0 else None
            x, _ = steps.step(
                den, x, float(sigmas[k]), float(sigmas[k + 1]), class_labels=lab, guidance=wk,
                gamma=float(gamma[k, i]), noise=noise,
            )  # fmt: skip
            nfe += 2 if k + 1 < n else 1
        out.append(x)
        nfes.append(nfe)
    return torch.cat(out), np.array(nfes)


@pytest.mark.parametrize("fmt", ["discrete", "multidiscrete", "box"])
def test_renoise_equals_an_independent_restart_sampler(fmt):
    b, n, seed, r, budget = 6, 6, 4, 2, 2
    counting = CountingDenoiser(presets.make(PRESET).denoiser, guided=True)
    env = GuidanceVectorEnv(
        b, counting, data=presets.make(PRESET).data, num_steps=n, action_format=fmt,
        renoise_steps=r, max_renoises=budget,
    )  # fmt: skip
    rng = np.random.default_rng(2)
    wi = rng.integers(0, 6, size=(n, b))
    gi = rng.integers(0, 3, size=(n, b))
    ri = rng.random((n, b)) < 0.5
    ri[0, 0] = ri[1, 0] = ri[2, 0] = ri[3, 0] = True  # k = 0 ignored, then over budget
    ri[:, 1] = False  # env 1 never renoises
    if fmt == "box":
        acts = np.stack([env.guidance_weights[wi], env.gammas[gi], ri * 0.9 + 0.05], -1)
    else:
        acts = env.action_table.encode(wi, gi, ri)
    counting.rows = 0
    x0, infos = episode(env, acts, seed)
    nfe_env = infos[-1]["final_info"]["nfe"]
    renoised = np.stack([info["renoised"] for info in infos[:-1]])
    assert counting.evaluations == nfe_env.sum()
    ro = env.rollout(lambda obs, k: acts[k], seed=seed)
    assert torch.equal(ro.x0, x0)
    np.testing.assert_array_equal(ro.nfe, nfe_env)
    np.testing.assert_array_equal(ro.renoised[:-1], renoised)
    p, keys, x_t, sigmas = reference_inputs(b, seed, n)
    w, g = env.guidance_weights[wi], env.gammas[gi]
    ref, nfe_ref = restart_reference(
        p.denoiser, x_t, sigmas, ro.class_labels, keys, w, g, ri, r, budget
    )
    torch.testing.assert_close(x0, ref, atol=1e-10, rtol=0)
    np.testing.assert_array_equal(nfe_env, nfe_ref)
    assert ro.renoised[:, 0].tolist() == [False, True, True, False, False, False]
    assert not ro.renoised[:, 1].any() and nfe_env[1] == steps.nfe_of(n, "heun")
    assert (nfe_env <= env.nfe_budget).all() and nfe_env.max() > steps.nfe_of(n, "heun")
    # Without the renoise the trajectory is the plain sampler's: renoise changed env 0.
    plain = steps.sample(
        p.denoiser, x_t, sigmas, class_labels=ro.class_labels, guidance=torch.as_tensor(w),
        gamma=torch.as_tensor(g), generator=SampleStreams(keys),
    )  # fmt: skip
    torch.testing.assert_close(x0[1], plain[1], atol=1e-10, rtol=0)
    assert float((x0[0] - plain[0]).abs().max()) > 1e-3


def test_renoise_keeps_the_plain_actions_and_reports_the_budget():
    b, seed = 4, 1
    plain = GuidanceVectorEnv(b, PRESET)
    env = GuidanceVectorEnv(b, PRESET, renoise_steps=1, max_renoises=1)
    assert env.single_action_space.n == 36 and env.obs_dim == plain.obs_dim + 1
    n = env.num_steps
    acts = np.random.default_rng(0).integers(0, 18, size=(n, b))
    x_plain, _ = episode(plain, acts, seed)
    x_env, infos = episode(env, acts, seed)  # indices < 18 never renoise
    assert torch.equal(x_plain, x_env)
    assert (infos[-1]["final_info"]["nfe"] == steps.nfe_of(n, "heun")).all()
    obs, _ = env.reset(seed=seed)
    assert (obs[:, -1] == 1.0).all()
    masks = env.action_masks()
    assert masks[:, :18].all() and not masks[:, 18:].any()  # k = 0: nothing to go back to
    obs, *_ = env.step(np.full(b, 18 + 4))
    assert env.action_masks()[:, 18:].all()
    obs, *_, info = env.step(np.full(b, 18 + 4))
    assert info["renoised"].all() and (obs[:, -1] == 0.0).all()
    assert not env.action_masks()[:, 18:].any()  # budget spent
    *_, info = env.step(np.full(b, 18 + 4))
    assert not info["renoised"].any()  # asked for, ignored: no budget left
    md = GuidanceVectorEnv(b, PRESET, renoise_steps=1, action_format="multidiscrete")
    assert md.single_action_space.nvec.tolist() == [6, 3, 2]
    md.reset(seed=0)
    assert md.action_masks().shape == (b, 6 + 3 + 2)


def test_renoise_errors():
    with pytest.raises(ValueError, match="single-step solver"):
        GuidanceVectorEnv(2, PRESET, renoise_steps=1, solver="dpmpp-2m")
    with pytest.raises(ValueError, match="renoise_steps must be an int"):
        GuidanceVectorEnv(2, PRESET, renoise_steps=0)
    with pytest.raises(ValueError, match="max_renoises must be an int"):
        GuidanceVectorEnv(2, PRESET, renoise_steps=1, max_renoises=-1)
    table = ActionTable(action_format="multidiscrete")
    with pytest.raises(ValueError, match="no renoise switch"):
        table.encode(np.int64(0), np.int64(0), np.int64(1))
    env = batch_of(gym.make("diffusion_gym/Guidance-v0", renoise_steps=1))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"Discrete\(36\)"):
        env.step(np.array([36]))


# ---------------------------------------------------------------------------------------
# Classifier-feature observations


def test_classifier_observations_are_the_standardised_features_of_the_denoised_estimate():
    b, seed = 3, 5
    env = GuidanceVectorEnv(b, "digits", obs_mode="classifier", num_steps=3)
    feats = GuidanceVectorEnv(b, "digits", obs_mode="features", num_steps=3)
    c = env.num_classes
    assert env.obs_dim == 2 + c + 4 + 64 == feats.obs_dim + 64
    # Independent: the shipped classifier, standardised over the training images.
    clf = load_digits_classifier()
    train = env.preset.data.train_images.float()
    f_train = clf.features(train)
    mu, sd = f_train.mean(0), f_train.std(0)
    sd = torch.where(sd > 1e-6, sd, torch.ones_like(sd))
    obs, _ = env.reset(seed=seed)
    obs_f, _ = feats.reset(seed=seed)
    assert (obs[:, -64:] == 0).all()  # k = 0: no call yet
    acts = np.array([[3, 9, 0], [6, 12, 15], [3, 3, 3]])  # γ = 0: no churn to replay
    for k, a in enumerate(acts):
        x, labels = env.x.clone(), env.class_labels
        w = torch.as_tensor(env.guidance_weights[a // 3])
        _, denoised = steps.step(
            env.denoiser, x, float(env.sigmas[k]), float(env.sigmas[k + 1]),
            class_labels=labels, guidance=w, gamma=0.0,
        )  # fmt: skip
        if k == 2:
            break  # the last step ends the episode (auto-reset): checked through rollout
        obs, *_ = env.step(a)
        obs_f, *_ = feats.step(a)
        want = (clf.features(denoised.float()) - mu) / sd
        torch.testing.assert_close(torch.as_tensor(obs[:, -64:]), want, atol=1e-4, rtol=1e-4)
        np.testing.assert_array_equal(obs[:, : feats.obs_dim], obs_f)  # the rest: features
    # rollout() builds the same observations as env.step (the last one: final_obs).
    ro = env.rollout(lambda o, k: np.full(len(o), 3), seed=seed)
    seen = [env.reset(seed=seed)[0]]
    for _ in range(env.num_steps):
        obs, *_, info = env.step(np.full(b, 3))
        seen.append(obs)
    seen[-1] = np.stack(info["final_obs"])
    np.testing.assert_array_equal(ro.observations.cpu().numpy(), np.stack(seen))
    assert (ro.observations[-1, :, -64:] != 0).any()
    exp = env.expert_observations(torch.tensor([1, 2]), torch.tensor([0, 7]))
    assert exp.shape == (2, env.obs_dim) and (exp[:, -64:] != 0).any()


def test_classifier_observations_need_a_classifier_and_pass_check_env():
    with pytest.raises(ValueError, match="obs_mode='classifier' needs an image preset"):
        GuidanceVectorEnv(2, PRESET, obs_mode="classifier")
    with pytest.raises(ValueError, match="obs_mode must be one of"):
        GuidanceVectorEnv(2, PRESET, obs_mode="pixels")
    env = GuidanceEnv(denoiser="digits", obs_mode="classifier", num_steps=2, action_format="box")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(env)
        sb3_check_env(env, warn=False)


def test_renoise_with_features_and_autoreset():
    """The observation mode does not change the renoise dynamics; counters restart with
    every episode (auto-reset), and the features come from the step after the re-run."""
    b, seed = 4, 2
    kw = {"num_steps": 5, "renoise_steps": 2, "max_renoises": 1}
    state = GuidanceVectorEnv(b, PRESET, **kw)
    feats = GuidanceVectorEnv(b, PRESET, obs_mode="features", **kw)
    acts = np.array([[4, 22, 5, 7]] * 5)  # env 1 renoises at k = 1 (then out of budget)
    x_s, infos = episode(state, acts, seed)
    x_f, _ = episode(feats, acts, seed)
    assert torch.equal(x_s, x_f)
    assert infos[1]["renoised"].tolist() == [False, True, False, False]
    ro = feats.rollout(lambda o, k: acts[k], seed=seed)
    assert torch.equal(ro.x0, x_f) and ro.renoised[1].tolist() == [False, True, False, False]
    nfe = infos[-1]["final_info"]["nfe"]
    assert nfe.tolist() == [9, 9 + 2, 9, 9]  # Heun N = 5: 9 NFE; re-running step 0: 2
    # Second episode by auto-reset: the budget and the NFE count start again.
    for k, a in enumerate(acts):
        obs, *_, info = state.step(a)
        if k == 1:
            assert info["renoised"].tolist() == [False, True, False, False]
            assert info["nfe"].tolist() == [4, 6, 4, 4]
    assert info["final_info"]["nfe"].tolist() == nfe.tolist()


@pytest.mark.parametrize("fmt,solver", [("box", "heun"), ("discrete", "euler")])
def test_renoise_env_does_not_depend_on_its_batch(fmt, solver):
    """Env i alone (base seed s + i) replays its trajectory in a batch of 5 whose other envs
    renoise at other steps (the re-run sub-batch does not change env i's numbers)."""
    b, n, seed = 5, 6, 9
    kw = {"num_steps": n, "solver": solver, "renoise_steps": 2, "max_renoises": 2}
    env = GuidanceVectorEnv(b, PRESET, action_format=fmt, **kw)
    rng = np.random.default_rng(4)
    if fmt == "box":
        acts = np.stack(
            [rng.uniform(0, 5, (n, b)), rng.uniform(0, 0.4, (n, b)), rng.random((n, b))], -1
        )
    else:
        acts = rng.integers(0, env.action_table.size, size=(n, b))
    x0, infos = episode(env, acts, seed)
    assert np.stack([i["renoised"] for i in infos[:-1]]).any(0).sum() >= 2
    for i in (1, 3):
        alone = GuidanceVectorEnv(1, PRESET, action_format=fmt, **kw)
        x_i, infos_i = episode(alone, acts[:, i : i + 1], seed + i)
        assert torch.equal(x_i[0], x0[i])
        assert infos_i[-1]["final_info"]["nfe"][0] == infos[-1]["final_info"]["nfe"][i]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_box_renoise_and_classifier_observations_on_cuda_match_cpu():
    """Box + renoise (the re-run sub-batch and its noise on the device) and the classifier
    features on CUDA give the CPU's numbers (tolerances of tests/test_cuda.py: float64
    mixtures 1e-9, float32 networks 1e-3 with TF32 off)."""
    b, n, seed = 6, 5, 7
    rng = np.random.default_rng(3)
    acts = np.stack(
        [rng.uniform(0, 5, (n, b)), rng.uniform(0, 0.4, (n, b)), rng.random((n, b))], -1
    )
    kw = {"num_steps": n, "action_format": "box", "renoise_steps": 2, "max_renoises": 2}
    runs = [
        episode(GuidanceVectorEnv(b, PRESET, device=d, **kw), acts, seed) for d in ("cpu", "cuda")
    ]
    torch.testing.assert_close(runs[1][0], runs[0][0], rtol=1e-9, atol=1e-9)
    nfe = [r[1][-1]["final_info"]["nfe"] for r in runs]
    assert (nfe[0] == nfe[1]).all() and nfe[0].max() > steps.nfe_of(n, "heun")
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        obs = []
        for d in ("cpu", "cuda"):
            env = GuidanceVectorEnv(2, "digits", device=d, obs_mode="classifier", num_steps=3)
            env.reset(seed=seed)
            obs.append(env.step(np.array([6, 9]))[0])
        np.testing.assert_allclose(obs[1], obs[0], rtol=1e-3, atol=1e-3)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def test_box_and_renoise_in_every_autoreset_mode():
    """Two episodes of fixed box + renoise actions give the same samples and NFE whether the
    env resets in the same step, the next step, or on an explicit reset()."""
    b, n, seed = 3, 4, 6
    rng = np.random.default_rng(5)
    acts = np.stack(
        [rng.uniform(0, 5, (2, n, b)), rng.uniform(0, 0.4, (2, n, b)), rng.random((2, n, b))], -1
    )
    out = {}
    for mode in ("same_step", "next_step", "disabled"):
        env = GuidanceVectorEnv(
            b, PRESET, num_steps=n, action_format="box", renoise_steps=1, autoreset_mode=mode
        )
        env.reset(seed=seed)
        ends = []
        for e in range(2):
            for k in range(n):
                _, _, term, _, info = env.step(acts[e, k])
            info = info["final_info"] if mode == "same_step" else info
            ends.append((info["x0"], info["nfe"]))
            if mode == "next_step":
                env.step(acts[e, 0])  # the reset step (actions ignored)
            elif mode == "disabled":
                env.reset()
        out[mode] = ends
    for mode in ("next_step", "disabled"):
        for (x_a, n_a), (x_b, n_b) in zip(out["same_step"], out[mode], strict=True):
            np.testing.assert_array_equal(np.asarray(x_a), np.asarray(x_b))
            np.testing.assert_array_equal(n_a, n_b)
    assert not np.array_equal(out["same_step"][0][0], out["same_step"][1][0])
