"""The CUDA path: envs and sampler on ``device="cuda"`` give the numbers of ``device="cpu"``.

Every test is skipped unless ``torch.cuda.is_available()`` (CI is CPU only). On a GPU machine:
``python -m pytest tests/test_cuda.py -q`` (``bash benchmarks/gpu.sh`` runs it first).

Tolerances (CPU against CUDA, same seeds and actions):

- float64 (the mixtures: every registered env id): both devices do the same float64 ops,
  but reductions (einsum, logsumexp, softmax) and exp/log/ndtri round differently in the
  last bits (~1e-16 relative per op). A few hundred ops over 3-6 solver steps stay far
  below 1e-9, while a device bug (noise, labels, schedule or σ on the wrong device or
  stream) moves samples by O(0.1-1). So states, rewards and x0 agree to rtol = atol = 1e-9.
- Observations are float32 roundings of those float64 states: agreeing float64 values can
  round one float32 ulp apart (6e-8 relative), so obs use rtol = atol = 1e-6.
- float32 networks (``gmm-ring8-mlp``, ``digits``): cuBLAS/cuDNN and the CPU kernels sum in
  different orders (a few float32 ulps per layer). Measured on CPU: scaling every weight
  by 1 + 1e-6·N(0, 1) (about 8 ulps) moves the final x0 of a 16-sample guided Heun run by
  3.5e-5 (MLP) and 1.5e-5 (U-Net); 1e-5 moves it by 2e-4. rtol = atol = 1e-3 is 5x above
  the latter and still 100x below a device bug. TF32 is switched off for that comparison
  (cuDNN enables it for convolutions by default: ~1e-3 relative per conv).
- The same seed twice on CUDA: bit-identical (no atomics in these kernels).
"""

from __future__ import annotations

import contextlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import diffusion_gym  # noqa: F401 - registers the ids
from diffusion_gym import presets, schedules, steps
from diffusion_gym.envs import batch_of
from diffusion_gym.noise import SampleStreams, derive_keys, draw_normal, draw_uniform_int

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

IDS = sorted(i for i in gym.registry if i.startswith("diffusion_gym/"))
N_ENVS = 8
SEED, ACTION_SEED = 123, 7
CLOCK_KW = {"bank_size": 64, "reference_steps": 16}  # a fast reference bank
F64_TOL = {"rtol": 1e-9, "atol": 1e-9}
OBS_TOL = {"rtol": 1e-6, "atol": 1e-6}
F32_TOL = {"rtol": 1e-3, "atol": 1e-3}


def _make(env_id: str, device: str, num_envs: int = N_ENVS, **kwargs):
    extra = dict(CLOCK_KW) if "Clock" in env_id else {"reward": "log_prob"}
    extra.update(kwargs)
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        device=device,
        **extra,
    )


def _state(env) -> torch.Tensor:
    """The env's batch x_k (the tensor that must live on the device)."""
    return batch_of(env).x


def _rollout(env_id: str, device: str, episodes: int = 2, **kwargs) -> dict[str, np.ndarray]:
    """Observations, rewards and final x0 of ``episodes`` episodes with fixed actions."""
    env = _make(env_id, device, **kwargs)
    try:
        obs, _ = env.reset(seed=SEED)
        # The env really computes on ``device`` (else CPU == CUDA would hold trivially).
        assert batch_of(env).denoiser.device.type == torch.device(device).type
        assert _state(env).device.type == torch.device(device).type
        env.action_space.seed(ACTION_SEED)  # the same actions on both devices
        out: dict[str, list] = {"obs": [obs], "reward": [], "x0": [], "final_obs": []}
        for _ in range(50 * episodes):
            obs, reward, term, trunc, info = env.step(env.action_space.sample())
            out["obs"].append(obs)
            out["reward"].append(reward)
            if "final_info" in info:
                out["x0"].append(info["final_info"]["x0"])
                out["final_obs"].append(np.stack(list(info["final_obs"])))
                if len(out["x0"]) == episodes:
                    break
        assert len(out["x0"]) == episodes, "episodes did not end"
    finally:
        env.close()
    return {k: np.stack(v) for k, v in out.items()}


def _assert_same(a: dict, b: dict, exact: bool = False) -> None:
    for key in ("obs", "final_obs", "reward", "x0"):
        assert a[key].shape == b[key].shape, key
        if exact:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            tol = OBS_TOL if key.endswith("obs") else F64_TOL
            np.testing.assert_allclose(a[key], b[key], err_msg=key, **tol)


@contextlib.contextmanager
def _no_tf32():
    """Full float32 on CUDA (cuDNN uses TF32 for convolutions by default)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# ---------------------------------------------------------------------------------------------
# Envs: CUDA == CPU, and CUDA reproducible


@pytest.mark.parametrize("env_id", IDS)
def test_env_cuda_matches_cpu(env_id):
    cpu, cuda = _rollout(env_id, "cpu"), _rollout(env_id, "cuda")
    assert np.abs(cpu["x0"]).max() > 0.1  # a real sample, not zeros
    _assert_same(cuda, cpu)


@pytest.mark.parametrize("env_id", IDS)
def test_env_cuda_same_seed_twice_is_identical(env_id):
    _assert_same(_rollout(env_id, "cuda"), _rollout(env_id, "cuda"), exact=True)


@pytest.mark.parametrize("env_id", ["diffusion_gym/Guidance-v0", "diffusion_gym/Clock-v0"])
def test_env_features_obs_cuda_matches_cpu(env_id):
    _assert_same(
        _rollout(env_id, "cuda", obs_mode="features"), _rollout(env_id, "cpu", obs_mode="features")
    )


def test_guidance_multidiscrete_and_classifier_reward_cuda_matches_cpu():
    kw = {"action_format": "multidiscrete", "reward": "classifier"}
    env_id = "diffusion_gym/Guidance-v0"
    _assert_same(_rollout(env_id, "cuda", **kw), _rollout(env_id, "cpu", **kw))


def test_clock_local_error_reward_cuda_matches_cpu():
    env_id = "diffusion_gym/Clock-v0"
    kw = {"reward": "local_error"}
    _assert_same(_rollout(env_id, "cuda", **kw), _rollout(env_id, "cpu", **kw))


def test_expert_observations_cuda_match_cpu():
    """Expert states: data drawn with a CPU generator, noised and encoded on the device."""
    out = {}
    for device in ("cpu", "cuda"):
        env = _make("diffusion_gym/Guidance-v0", device, obs_mode="features")
        env.reset(seed=SEED)
        k = torch.arange(16) % (batch_of(env).num_steps + 1)
        labels = torch.arange(16) % batch_of(env).num_classes
        gen = torch.Generator().manual_seed(3)
        obs = batch_of(env).expert_observations(k, labels, gen)
        assert obs.device.type == device
        out[device] = obs.cpu().numpy()
        env.close()
    np.testing.assert_allclose(out["cuda"], out["cpu"], **OBS_TOL)


# ---------------------------------------------------------------------------------------------
# Noise and the reference sampler


def test_noise_streams_cuda_match_cpu():
    seeds = torch.arange(64, dtype=torch.int64) * 7919
    keys = derive_keys(seeds, salt=5)
    keys_cuda = derive_keys(seeds.cuda(), salt=5)
    # Integer hashing: bit-identical on both devices.
    assert torch.equal(keys_cuda.cpu(), keys)
    # Broadcast seeds [1, B] x episode salts [M, 1], as the clock env draws bank entries ahead.
    salts = torch.arange(3, dtype=torch.int64)[:, None]
    ahead = derive_keys(seeds[None, :], salt=salts)
    assert ahead.shape == (3, 64)
    assert torch.equal(derive_keys(seeds.cuda()[None, :], salt=salts.cuda()).cpu(), ahead)
    assert torch.equal(
        draw_uniform_int(ahead.cuda(), 0, 4096).cpu(), draw_uniform_int(ahead, 0, 4096)
    )
    assert torch.equal(draw_uniform_int(keys_cuda, 3, 1000).cpu(), draw_uniform_int(keys, 3, 1000))
    # The normals go through float64 ndtri, whose last bits may differ between devices.
    z, z_cuda = (
        draw_normal(keys, 2, (5,), torch.float64),
        draw_normal(keys_cuda, 2, (5,), torch.float64),
    )
    torch.testing.assert_close(z_cuda.cpu(), z, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", ["gmm-ring8", "gmm-64d", "gmm-ring8-mlp", "digits"])
def test_sample_cuda_matches_cpu(name):
    """``steps.sample`` with labels, CFG w = 2 and churn γ = 0.1 from per-sample streams."""
    out = {}
    for device in ("cpu", "cuda"):
        p = presets.make(name, device=device)
        den = p.denoiser.eval()
        b, n = 16, int(p.defaults.get("num_steps", 4))
        streams = SampleStreams.from_seeds(range(b), device=device)
        x_T = p.prior_std * draw_normal(streams.keys, 0, den.shape, den.dtype)
        labels = (torch.arange(b) % den.num_classes).to(device)
        sigmas = schedules.karras(n, p.sigma_min, p.sigma_max)
        with _no_tf32():
            x0 = steps.sample(
                den, x_T, sigmas, class_labels=labels, guidance=2.0, gamma=0.1, generator=streams
            )
        assert x0.device.type == device and x0.dtype == den.dtype
        out[device] = x0.cpu()
    tol = F64_TOL if out["cpu"].dtype == torch.float64 else F32_TOL
    torch.testing.assert_close(out["cuda"], out["cpu"], **tol)


# ---------------------------------------------------------------------------------------------
# SB3 on a CUDA env


@pytest.mark.parametrize("env_id", ["diffusion_gym/Guidance-v0", "diffusion_gym/Clock-v0"])
def test_sb3_vec_env_over_cuda_env_matches_cpu(env_id):
    from agents.vec_env import SB3VecEnv

    runs = {}
    for device in ("cpu", "cuda"):
        venv = SB3VecEnv(_make(env_id, device))
        venv.seed(SEED)
        obs = [venv.reset()]
        space = venv.action_space
        space.seed(ACTION_SEED)
        rewards, terminal = [], None
        for _ in range(20):
            o, r, dones, infos = venv.step(np.stack([space.sample() for _ in range(N_ENVS)]))
            assert isinstance(o, np.ndarray) and o.dtype == np.float32
            assert o.shape == (N_ENVS, *venv.observation_space.shape)
            obs.append(o)
            rewards.append(r)
            if dones.all():
                terminal = np.stack([i["terminal_observation"] for i in infos])
                assert all("x0" in i for i in infos)
                break
        assert terminal is not None, "the episode did not end"
        venv.close()
        runs[device] = (np.stack(obs), np.stack(rewards), terminal)
    for a, b in zip(runs["cuda"], runs["cpu"], strict=True):
        np.testing.assert_allclose(a, b, **OBS_TOL)  # float32 obs, float32 SB3 rewards


def test_ppo_learns_on_cuda_clock_env():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    from agents.vec_env import SB3VecEnv

    venv = VecMonitor(SB3VecEnv(_make("diffusion_gym/Clock-v0", "cuda")))
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=32,
        batch_size=64,
        n_epochs=2,
        policy_kwargs={"net_arch": [16]},
        device="cuda",
        seed=0,
    )
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(256)
    assert model.num_timesteps >= 256
    params = list(model.policy.parameters())
    assert all(p.device.type == "cuda" and bool(torch.isfinite(p).all()) for p in params)
    assert any(not torch.equal(a, b) for a, b in zip(before, params, strict=True))  # updated
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (N_ENVS, 1) and np.isfinite(action).all()
    venv.close()


def test_clock_step_makes_one_device_sync():
    """The Clock step's only device sync is its one copy to the host (tests/test_host_syncs.py
    counts the same on CPU with the host paths off): torch's sync debug mode warns at every
    synchronizing CUDA call. Up to 2 per step leaves room for the scalar copies of the bank
    draws made ahead (every 64 episodes at 8 envs)."""
    env = _make("diffusion_gym/Clock-v0", "cuda", solver="dpmpp-2m")
    env.reset(seed=SEED)
    acts = np.random.default_rng(ACTION_SEED).uniform(-1, 1, (10, N_ENVS, 1)).astype(np.float32)
    env.step(acts[0])  # warm-up: lazy CUDA initialisation
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for a in acts[1:]:
                env.step(a)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    msgs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(msgs) <= 2 * (len(acts) - 1), msgs[:6]
