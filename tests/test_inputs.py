"""Bad and borderline inputs to the envs and the sampler (issue 17, items 7, 9, 12, 13, 14).

Every action inside an action space is valid for every configuration a constructor accepts
(item 7); denoiser outputs are checked for shape, dtype and overflow (item 9); numbers may be
numpy scalars but never bools, complex numbers, NaN or inf (item 12); a configuration that
cannot fit in memory is refused up front (item 13); a Guidance env's trajectory does not
depend on the other envs of its batch (item 14). The random families are in
``test_properties.py``.
"""

from __future__ import annotations

import math
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

from diffusion_gym import memory, presets, steps
from diffusion_gym.denoisers.base import Denoiser
from diffusion_gym.envs import (
    Clock,
    ClockEnv,
    ClockVectorEnv,
    GuidanceEnv,
    GuidanceVectorEnv,
    max_speed_scale,
    schedule_from_actions,
)

SMALL = {"bank_size": 8, "reference_steps": 8}


# ---------------------------------------------------------------------------------------------
# Item 7: every action in the Clock's action space is valid for every accepted configuration


@pytest.mark.parametrize(
    "env_id, kwargs, bound",
    [
        ("diffusion_gym/ClockGauss1D-v0", {"budget": 45}, 2.824),
        ("diffusion_gym/Clock-v0", {"budget": 10, "speed_scale": 6.0}, 5.315),
        ("diffusion_gym/Clock-v0", {"budget": 5, "rho": 1.0, "speed_scale": 8.0}, 6.578),
    ],
)
def test_issue_reproducers_are_rejected_with_the_bound(env_id, kwargs, bound):
    """The issue's configurations crashed mid-episode on action +1; the constructor now
    refuses them and names the largest speed_scale that works."""
    with pytest.raises(ValueError, match=rf"speed_scale <= {bound}\b") as err:
        gym.make(env_id, **SMALL, **kwargs)
    assert f"budget={kwargs['budget']}" in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"denoiser": "art-gauss1d", "base": "linear", "solver": "euler", "budget": 45},
        {"budget": 10},
        {"budget": 5, "rho": 1.0},
        {"budget": 2},
    ],
)
def test_at_the_bound_every_extreme_action_sequence_runs(kwargs):
    """At β = max_speed_scale the all +1, all −1 and switching sequences (the extremes of
    the clock: smallest remaining clock, smallest move) all run to σ = 0 in K steps."""
    den = kwargs.get("denoiser", "gmm-ring8")
    lo, hi = (0.002, 3.0) if den == "art-gauss1d" else (0.002, 80.0)
    k = kwargs["budget"]
    beta = max_speed_scale(k, kwargs.get("base", "edm"), lo, hi, kwargs.get("rho", 7.0))
    seqs = [np.ones(k), -np.ones(k)] + [np.r_[np.ones(j), -np.ones(k - j)] for j in range(k)]
    seqs += [np.r_[np.zeros(j), np.ones(k - j)] for j in range(k)]  # leave the base late
    acts = np.array(seqs)
    env = ClockVectorEnv(num_envs=len(acts), speed_scale=beta, **SMALL, **kwargs)
    env.reset(seed=0)
    for t in range(k):
        _, _, term, _, info = env.step(acts[:, t : t + 1].astype(np.float32))
    assert term.all()
    sched = info["final_info"]["schedule"]
    assert (np.diff(sched, axis=1) < 0).all() and (sched[:, :-1] > 1e-250).all()
    assert torch.equal(env.schedule_from_actions(torch.as_tensor(acts)), torch.as_tensor(sched))
    with pytest.raises(ValueError, match="speed_scale"):
        ClockVectorEnv(num_envs=1, speed_scale=beta * 1.001, **SMALL, **kwargs)


def test_max_speed_scale_is_monotone_and_clock_checks_itself():
    assert max_speed_scale(1) == math.inf
    bounds = [max_speed_scale(k) for k in (2, 3, 5, 10, 45, 100)]
    assert all(a > b for a, b in zip(bounds, bounds[1:], strict=False))
    assert bounds[-1] > 3.0  # the default β is valid on the EDM base up to K = 100
    with pytest.raises(ValueError, match="speed_scale"):
        Clock(100, speed_scale=3.2)
    with pytest.raises(ValueError, match="speed_scale"):
        schedule_from_actions(np.ones(10), speed_scale=6.0)


# ---------------------------------------------------------------------------------------------
# Item 9: denoiser outputs


class _Broken(Denoiser):
    """A 2-D unconditional denoiser whose output is broken in a chosen way."""

    def __init__(self, mode: str):
        super().__init__((2,), 0, 0.002, 80.0, 0.5, torch.float64)
        self.mode = mode

    def denoise(self, x, sigma, class_labels):
        return {
            "huge": lambda: torch.full_like(x, 1e308),
            "big": lambda: torch.full_like(x, 1e200),
            "col": lambda: torch.zeros_like(x[:, :1]),
            "row": lambda: torch.zeros(1, 2, dtype=x.dtype),
            "int": lambda: torch.zeros(x.shape, dtype=torch.int64),
            "complex": lambda: torch.zeros(x.shape, dtype=torch.complex128),
        }[self.mode]()


def _episode(env):
    env.reset(seed=0)
    for _ in range(4):
        env.step(env.action_space.sample() * 0)


@pytest.mark.parametrize("mode", ["huge", "big"])
def test_finite_but_huge_outputs_raise_before_inf_reaches_the_agent(mode):
    """1e308 (and 1e200) are finite, but overflow x, the float32 observation or the reward:
    every path raises a ValueError naming the denoiser instead of returning inf."""
    for env in (
        ClockEnv(denoiser=_Broken(mode), budget=4, **SMALL),
        GuidanceEnv(denoiser=_Broken(mode), num_steps=4),
    ):
        with pytest.raises(ValueError, match="_Broken"):
            _episode(env)
    x = torch.ones(3, 2, dtype=torch.float64)
    if mode == "huge":  # x_next = x + (0.1 − 0.5)/0.5 (x − 1e308) overflows float64
        with pytest.raises(ValueError, match="_Broken.*non-finite"):
            steps.step(_Broken(mode), x, 0.05, 0.01)


@pytest.mark.parametrize(
    "mode, err, match",
    [("col", ValueError, r"shape \(\d, 1\)"), ("row", ValueError, r"shape \(1, 2\)"),
     ("int", TypeError, "int64"), ("complex", TypeError, "complex128")],
)  # fmt: skip
def test_wrong_shape_or_dtype_is_never_broadcast_or_cast(mode, err, match):
    """[B, 1] and [1, d] outputs would broadcast against x [B, d]; int would truncate,
    complex drop its imaginary part. Clock, Guidance (single env) and steps.step raise."""
    with pytest.raises(err, match=match):
        steps.step(_Broken(mode), torch.ones(3, 2, dtype=torch.float64), 0.5, 0.1)
    with pytest.raises(err, match=match):
        _episode(ClockEnv(denoiser=_Broken(mode), budget=4, **SMALL))
    if mode != "row":  # a [1, d] output is x's own shape for a batch of one
        with pytest.raises(err, match=match):
            _episode(GuidanceEnv(denoiser=_Broken(mode), num_steps=4))
    with pytest.raises(err, match=match):
        _episode(GuidanceVectorEnv(num_envs=3, denoiser=_Broken(mode), num_steps=4))


def test_reward_callable_inf_is_caught():
    env = GuidanceVectorEnv(
        num_envs=2, denoiser="gmm-ring8", reward=lambda t: torch.full((2,), -math.inf)
    )
    env.reset(seed=0)
    with pytest.raises(ValueError, match="reward"):
        env.step(np.zeros(2, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# Item 12: loose types


@pytest.mark.parametrize(
    "seed, match",
    [(1.5, "seed"), (True, "seed"), ("3", "seed"), ([-1, -1, -1], r"seed\[0\]"),
     ([0, 2**62, 1], r"seed\[1\]"), ([1, 2], "3 ints"), (2**62, "2\\*\\*62"), (-1, "seed")],
)  # fmt: skip
def test_bad_seeds_are_rejected_by_both_families(seed, match):
    for env in (ClockVectorEnv(num_envs=3, **SMALL), GuidanceVectorEnv(num_envs=3)):
        with pytest.raises(ValueError, match=match):
            env.reset(seed=seed)
    with pytest.raises(ValueError, match="seed"):
        GuidanceVectorEnv(num_envs=3).rollout(lambda o, k: np.zeros(3, int), seed=1.5)


def test_integer_scalars_of_any_kind_are_seeds():
    """A numpy int, a 0-d integer tensor and a list of numpy ints seed like the Python int."""
    env = ClockVectorEnv(num_envs=3, **SMALL)
    want = env.reset(seed=5)[0]
    for seed in (np.int64(5), torch.tensor(5), [np.int64(5), 6, 7], np.array([5, 6, 7])):
        assert np.array_equal(env.reset(seed=seed)[0], want)
    single = ClockEnv(**SMALL)
    assert np.array_equal(single.reset(seed=np.int64(6))[0], want[1])
    with pytest.raises(ValueError, match="seed"):
        single.reset(seed=1.5)


def test_numpy_scalars_are_accepted_where_python_numbers_are():
    a = ClockVectorEnv(num_envs=np.int64(4), speed_scale=np.float32(3), budget=np.int32(3), **SMALL)
    b = ClockVectorEnv(num_envs=4, speed_scale=3.0, budget=3, **SMALL)
    assert a.num_envs == 4 and type(a.num_envs) is int
    assert a.clock_spec == b.clock_spec and type(a.clock_spec.speed_scale) is float
    assert np.array_equal(a.reset(seed=1)[0], b.reset(seed=1)[0])
    g = GuidanceVectorEnv(num_envs=np.int64(2), num_steps=np.int64(3), s_noise=np.float32(1))
    assert g.num_envs == 2 and g.num_steps == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [({"bank_seed": 1.5}, "bank_seed"), ({"bank_seed": -1}, "bank_seed"),
     ({"rho": math.inf}, "rho"), ({"rho": math.nan}, "rho"), ({"speed_scale": True}, "speed"),
     ({"prior_std": math.inf}, "prior_std"), ({"prior_std": 0.0}, "prior_std"),
     ({"guidance": math.nan}, "guidance"), ({"num_envs": 2.0}, "num_envs"),
     ({"num_envs": True}, "num_envs"), ({"bank_size": np.float64(8)}, "bank_size"),
     ({"speed_scale": 1 + 2j}, "speed_scale"),
     ({"budget": 2**70}, "budget"),  # found by benchmarks/fuzz.py: a RuntimeError before
     ({"rho": 0.0039}, "rho"),  # found by the property tests: OverflowError before
     ({"rho": 1.1e17}, "rho")],  # found by the property tests: ZeroDivisionError before
)  # fmt: skip
def test_clock_constructor_rejects_non_numbers_and_non_finite(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClockVectorEnv(**{**SMALL, **kwargs})


@pytest.mark.parametrize(
    "kwargs, match",
    [({"s_noise": math.nan}, "s_noise"), ({"s_noise": -1.0}, "s_noise"),
     ({"num_steps": 2.5}, "num_steps"), ({"max_episode_steps": True}, "max_episode_steps"),
     ({"num_steps": 2**70}, "num_steps")],
)  # fmt: skip
def test_guidance_constructor_rejects_non_numbers_and_non_finite(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GuidanceVectorEnv(num_envs=2, **kwargs)


def test_bool_and_complex_actions_are_rejected():
    clock = ClockVectorEnv(num_envs=2, **SMALL)
    clock.reset(seed=0)
    bool_t, complex_t = torch.ones(2, 1, dtype=torch.bool), torch.full((2, 1), 0.5 + 0.5j)
    for bad in (np.ones((2, 1), bool), np.full((2, 1), 0.5 + 1j), bool_t, complex_t):
        with pytest.raises(TypeError, match="real numbers"):
            clock.step(bad)
    guidance = GuidanceVectorEnv(num_envs=2)
    guidance.reset(seed=0)
    for bad in (np.ones(2, bool), np.ones(2, complex), torch.zeros(2, dtype=torch.bool)):
        with pytest.raises(TypeError, match="integers"):
            guidance.step(bad)
    with pytest.raises(TypeError, match="real numbers"):
        schedule_from_actions([True, False])


# ---------------------------------------------------------------------------------------------
# Item 14: a Guidance env's trajectory does not depend on the other envs of its batch


def _guidance_episode(preset, env_ids, **kwargs):
    """Env i of a batch (base seed 100 + i) takes actions depending on (i, k) only: every
    (w, γ) pair appears, so neighbours differ in w and churn. Returns x0, obs, rewards."""
    env = GuidanceVectorEnv(num_envs=len(env_ids), denoiser=preset, num_steps=5, **kwargs)
    obs, _ = env.reset(seed=[100 + i for i in env_ids])
    n = env.action_table.size
    seen, rewards = [obs], []
    for k in range(env.num_steps):
        acts = np.array([(7 * i + 5 * k + i * k) % n for i in env_ids])
        obs, r, _, _, info = env.step(acts)
        seen.append(obs)
        rewards.append(r)
    seen[-1] = np.stack(info["final_obs"])
    x0 = info["final_info"]["x0"]
    return x0, np.stack(seen, 1), np.stack(rewards, 1)


def _batch_spread(preset, **kwargs) -> float:
    """Largest difference of any env's x0, observations or rewards between batches of 1, 7
    and 64 envs (each env i compared with itself)."""
    ref = {i: _guidance_episode(preset, [i], **kwargs) for i in (0, 3, 6, 40, 63)}
    worst = 0.0
    for ids in ([0, 1, 2, 3, 4, 5, 6], list(range(64))):
        x0, obs, rew = _guidance_episode(preset, ids, **kwargs)
        for j, i in enumerate(ids):
            if i in ref:
                mine = (x0[j : j + 1], obs[j : j + 1], rew[j : j + 1])
                for a, b in zip(ref[i], mine, strict=True):
                    worst = max(worst, float(np.abs(a - b).max()))
    return worst


@pytest.mark.parametrize("preset", ["gmm-ring8-imperfect", "gmm-grid-imperfect"])
@pytest.mark.parametrize("kwargs", [{}, {"obs_mode": "features", "reward": "log_prob"}])
def test_guidance_env_is_bit_exact_across_batch_compositions(preset, kwargs):
    """Mixtures up to EXACT_ROTATION_MAX_DIM dimensions: env i's x0, observations and
    rewards are bit for bit the same alone, among 7 or among 64 envs taking other actions
    (before: up to 3e-13 in x0 from the batched matmul of the full-covariance rotation)."""
    assert _batch_spread(preset, **kwargs) == 0.0


@pytest.mark.parametrize("preset, bound", [("gmm-64d-imperfect", 1e-11), ("gmm-ring8-mlp", 1e-4)])
def test_guidance_env_batch_dependence_stays_within_the_documented_bound(preset, bound):
    """Where a batched matmul stays (mixtures above 4 dimensions: 5e-13 measured; float32
    networks: 1.1e-5 measured), env i's outputs differ between batch sizes only by the
    bound documented in docs/reliability.md."""
    assert _batch_spread(preset) < bound


def test_mixture_denoiser_row_is_independent_of_its_batch():
    den = presets.make("gmm-ring8-imperfect").denoiser
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g, dtype=torch.float64) * 3
    sigma = torch.rand(64, generator=g, dtype=torch.float64) * 10
    labels = torch.randint(-1, 8, (64,), generator=g)
    full = den(x, sigma, labels)
    for b in (1, 3, 7):
        parts = [den(x[i : i + b], sigma[i : i + b], labels[i : i + b]) for i in range(0, 64, b)]
        assert torch.equal(torch.cat(parts)[:64], full)


# ---------------------------------------------------------------------------------------------
# Item 13: configurations that cannot fit are refused up front


def test_impossible_sizes_are_refused_at_once(monkeypatch):
    """2**30 envs (≈ 1.7 TiB for Clock-v0) fail in the constructor, before any per-env
    allocation, with the estimate and the override in the message."""
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    for make in (lambda: ClockVectorEnv(num_envs=2**30), lambda: GuidanceVectorEnv(2**30)):
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=r"needs about .*TiB.*DIFFUSION_GYM_MEMORY_LIMIT=off"):
            make()
        assert time.perf_counter() - t0 < 5.0


def test_memory_limit_override(monkeypatch):
    monkeypatch.setenv(memory.ENV_VAR, "1M")
    with pytest.raises(ValueError, match=r"batch .* bank .* denoiser call .*1 MiB is available"):
        ClockVectorEnv(num_envs=4096, **SMALL)
    with pytest.raises(ValueError, match="GuidanceVectorEnv"):
        GuidanceVectorEnv(num_envs=4096)
    GuidanceVectorEnv(num_envs=64)  # small enough for 1 MiB
    monkeypatch.setenv(memory.ENV_VAR, "off")
    assert ClockVectorEnv(num_envs=4096, **SMALL).num_envs == 4096
    monkeypatch.setenv(memory.ENV_VAR, "lots")
    with pytest.raises(ValueError, match="DIFFUSION_GYM_MEMORY_LIMIT='lots'"):
        ClockVectorEnv(num_envs=4, **SMALL)


def test_memory_estimate_scales_with_the_configuration():
    small = ClockVectorEnv(num_envs=64, **SMALL).memory_estimate()
    big = ClockVectorEnv(num_envs=128, **SMALL).memory_estimate()
    assert big["batch"] == 2 * small["batch"] and big["bank"] == small["bank"]
    more_bank = ClockVectorEnv(num_envs=64, bank_size=64, reference_steps=8).memory_estimate()
    assert more_bank["bank"] > small["bank"] and more_bank["batch"] == small["batch"]
    # gmm-64d: 16 components × 64 dims per sample in the denoiser's workspace
    den = presets.make("gmm-64d").denoiser
    assert den.workspace_bytes(10) == 10 * 16 * (5 * 64 + 3) * 8
    assert memory.format_bytes(1536 * 2**20) == "1.5 GiB"
    net = presets.make("gmm-ring8-mlp").denoiser  # probed once: its layers' outputs / 3
    assert net.workspace_bytes(4) == 4 * net.workspace_bytes(1) > 4 * 2 * 2 * 4
