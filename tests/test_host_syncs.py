"""Host syncs on the env step path (issue 22, item 2), counted on CPU.

On a GPU every read of a tensor's value on the host (``.item()``, ``.cpu()``, ``.tolist()``,
``bool(t)``, ``float(t)``, ``int(t)``, ``torch.equal``, ``nonzero``) waits for the device. With
``diffusion_gym.hostpaths.ENABLED = False`` the CPU runs the code a device runs (no numpy
shortcuts), so counting those calls here counts the syncs of a CUDA step. (``.numpy()`` is
not counted: on a device it raises, so device code only calls it on host copies.)

Before this change a Clock step made 14-15 of them (Heun and DPM-Solver++(2M), gmm-ring8;
checks of σ, γ, labels and w in every step and denoiser call, Heun's landing test, the
finiteness check, the clock's zero test, separate copies of the outputs, the schedule and
x0), a Guidance step 17-21. Now: one per Clock step (its single copy to the host), at most
two per Guidance step plus its per-episode copies. The same runs are compared bit for bit
with the host paths, and the errors the removed syncs used to raise at once (NaN from the
denoiser, actions out of range, a reward callable's NaN) still raise, from the deferred flags.
"""

from __future__ import annotations

import collections
import contextlib
import math
import traceback

import numpy as np
import pytest
import torch

from diffusion_gym import hostpaths, steps
from diffusion_gym.denoisers.base import (
    Denoiser,
    check_step_finite,
    finite_flag,
    raise_step_not_finite,
)
from diffusion_gym.envs import ClockVectorEnv, GuidanceVectorEnv

SYNC_METHODS = ("item", "cpu", "tolist", "__bool__", "__float__", "__int__", "__index__",
                "nonzero")  # fmt: skip
SMALL = {"bank_size": 32, "reference_steps": 8}


class SyncCounter:
    """Counts the host-sync calls on tensors while :attr:`on` (by call site)."""

    def __init__(self):
        self.on = False
        self.sites: collections.Counter = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.sites.values())

    def _wrap(self, name, fn):
        def counted(*args, **kwargs):
            if self.on:
                frame = traceback.extract_stack(limit=2)[0]
                self.sites[f"{name} {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"] += 1
            return fn(*args, **kwargs)

        return counted

    @contextlib.contextmanager
    def counting(self):
        self.on = True
        try:
            yield self
        finally:
            self.on = False


@pytest.fixture
def syncs(monkeypatch):
    """The device code on CPU (host paths off) with every sync call counted."""
    monkeypatch.setattr(hostpaths, "ENABLED", False)
    counter = SyncCounter()
    for name in SYNC_METHODS:
        monkeypatch.setattr(torch.Tensor, name, counter._wrap(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch, "equal", counter._wrap("equal", torch.equal))
    return counter


def _clock(solver, b=8, **kw):
    return ClockVectorEnv("gmm-ring8", solver=solver, num_envs=b, budget=3, **SMALL, **kw)


def _run_clock(env, acts, counter=None):
    """reset + every action batch; returns the outputs and the syncs of the steps."""
    out = [env.reset(seed=5)[0]]
    ctx = counter.counting() if counter is not None else contextlib.nullcontext()
    with ctx:
        for a in acts:
            obs, r, term, trunc, info = env.step(a)
            out += [obs, r, term, trunc]
            if term.all():
                fin = info["final_info"]
                out += [np.stack(info["final_obs"]), fin["schedule"], fin["x0"]]
    return out


@pytest.mark.parametrize("solver", ["heun", "dpmpp-2m", "unipc-3", "ipndm"])
@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_clock_step_makes_one_sync_and_equals_the_host_path(syncs, solver, kind):
    rng = np.random.default_rng(1)
    acts = rng.uniform(-1, 1, (7, 8, 1)).astype(np.float32)
    acts[4, ::2] = 0.0  # zero actions: the clock's select path
    if kind == "tensor":
        acts = [torch.from_numpy(a) for a in acts]
    device_path = _run_clock(_clock(solver), acts, syncs)
    per_step = syncs.total / len(acts)
    assert per_step <= 1.0, dict(syncs.sites)  # before: 14-15 per step
    hostpaths.ENABLED = True  # the fixture's monkeypatch restores it afterwards
    host_path = _run_clock(_clock(solver), acts)
    assert len(device_path) == len(host_path)
    for got, want in zip(device_path, host_path, strict=True):
        np.testing.assert_array_equal(got, want)


def test_clock_importance_sampled_bank_draws_agree(syncs):
    probs = np.linspace(0.0, 1.0, SMALL["bank_size"])
    acts = np.zeros((7, 8, 1), dtype=np.float32)
    env = _clock("heun")
    env.set_bank_probs(probs)
    device_path = _run_clock(env, acts, syncs)
    assert syncs.total / len(acts) <= 1.0, dict(syncs.sites)
    hostpaths.ENABLED = True
    env = _clock("heun")
    env.set_bank_probs(probs)
    for got, want in zip(device_path, _run_clock(env, acts), strict=True):
        np.testing.assert_array_equal(got, want)


class _NaNAt(Denoiser):
    """A 2-D denoiser whose output is NaN below ``sigma_nan``."""

    def __init__(self, sigma_nan: float):
        super().__init__((2,), 0, 0.002, 80.0, 0.5, torch.float64)
        self.sigma_nan = sigma_nan

    def denoise(self, x, sigma, class_labels):
        out = 0.5 * x / (1 + sigma[:, None] ** 2)
        return torch.where(sigma[:, None] < self.sigma_nan, torch.nan, out)


def test_deferred_checks_still_raise_clear_errors(syncs):
    den = _NaNAt(0.0)  # finite while the bank is built
    env = ClockVectorEnv(den, num_envs=4, budget=3, **SMALL)
    env.reset(seed=0)
    den.sigma_nan = 5.0  # then NaN below σ = 5 (the second step)
    with pytest.raises(ValueError, match="non-finite"):
        for _ in range(3):
            env.step(np.zeros((4, 1), dtype=np.float32))
    env = _clock("dpmpp-2m", b=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        env.step(torch.full((4, 1), 1.5))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(torch.tensor([[0.0], [math.nan], [0.0], [0.0]]))
    env = _clock("heun", b=4, reward=lambda tr: torch.full((4,), math.nan, dtype=torch.float64))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="reward callable"):
        env.step(np.zeros((4, 1), dtype=np.float32))


def test_guidance_step_syncs(syncs):
    for solver in ("heun", "dpmpp-2m"):
        env = GuidanceVectorEnv(8, "gmm-ring8-imperfect", solver=solver, reward="log_prob")
        env.action_space.seed(0)
        acts = [env.action_space.sample() for _ in range(2 * env.num_steps)]
        env.reset(seed=0)
        with syncs.counting():
            for a in acts:
                env.step(a)
        # before: 17-21 per step; now 2 per step (the step's check, one copy of obs and
        # reward) and, per episode, the final observation, x0 and log_prob's input checks
        assert syncs.total <= 2 * len(acts) + 4 * 2, dict(syncs.sites)
        syncs.sites.clear()


def test_sampler_step_checks_inputs_in_one_sync(syncs):
    den = _clock("heun").denoiser
    x = torch.randn(16, 2, dtype=torch.float64)
    sig = torch.full((16,), 2.0, dtype=torch.float64)
    with syncs.counting():
        steps.step(den, x, 2.0, 1.0, solver="heun")
    assert syncs.total <= 1, dict(syncs.sites)  # Python σ: host checks + the finiteness one
    syncs.sites.clear()
    with syncs.counting():
        steps.step(den, x, sig, sig / 2, solver="heun")
    assert syncs.total <= 2, dict(syncs.sites)  # the inputs' sync and the output's
    syncs.sites.clear()
    checks = steps.DeferredChecks()
    with syncs.counting():
        steps.step(den, x, sig, sig / 2, solver="heun", final=False, checks=checks)
    assert syncs.total == 0, dict(syncs.sites)
    checks.resolve()
    for bad, match in (((-sig, sig / 2), "sigma must be > 0"), ((sig, sig * math.nan), "finite")):
        with pytest.raises(ValueError, match=match):
            steps.step(den, x, *bad)
        checks = steps.DeferredChecks()
        steps.step(den, x, *bad, final=False, checks=checks)
        with pytest.raises(ValueError, match=match):
            checks.resolve()
    with pytest.raises(ValueError, match="final=True"):
        steps.step(den, x, sig, sig / 2, final=True)


def test_a_cheap_finiteness_flag_never_rejects_finite_values():
    """The step's finiteness flag is a sum (one reduction); a sum that overflows on finite
    values is a false alarm that the exact re-test clears, and a NaN still raises."""
    den = _clock("heun").denoiser
    huge = torch.full((4, 2), 1e308, dtype=torch.float64)
    assert not bool(finite_flag(huge))  # the sum overflows ...
    check_step_finite(huge, huge, den)  # ... but the values are finite: no error
    checks = steps.DeferredChecks()
    checks.require(finite_flag(huge), lambda: raise_step_not_finite(huge, huge, den))
    checks.resolve()
    nan = huge.clone()
    nan[1, 0] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        check_step_finite(nan, nan, den)


@pytest.mark.parametrize(
    "kw",
    [
        {"obs_mode": "features", "obs_history": True, "solver": "unipc-2"},
        {"obs_mode": "time", "reward": "local_error", "solver": "euler"},
        {"guidance": 2.0, "class_labels": [1, 3], "reward": "log_terminal_error"},
        {"max_episode_steps": 2, "autoreset_mode": "next_step", "solver": "ipndm"},
        {"autoreset_mode": "disabled", "reward_baseline": "base", "reward_scale": "base"},
    ],
    ids=["features-history", "time-local", "guided", "truncated-next-step", "disabled-base"],
)
def test_clock_device_path_equals_host_path_across_options(syncs, kw):
    """The device code (host paths off) gives the host paths' outputs bit for bit for the
    options whose device code differs: observation modes and history columns, the local-error
    and shaped rewards, guidance with labels, truncation and the other autoreset modes."""
    acts = np.random.default_rng(2).uniform(-1, 1, (7, 8, 1)).astype(np.float32)

    def run():
        env = ClockVectorEnv("gmm-ring8", num_envs=8, budget=3, **SMALL, **kw)
        out = [env.reset(seed=3)[0]]
        for a in acts:
            obs, r, term, trunc, info = env.step(a)
            out += [obs, r, term, trunc, info.get("sigma"), info.get("x0")]
            if "final_obs" in info:
                out.append(np.stack(info["final_obs"]))
            if (term | trunc).all() and env.autoreset_mode.name == "DISABLED":
                out.append(env.reset()[0])
        return out

    device_path = run()
    hostpaths.ENABLED = True
    for got, want in zip(device_path, run(), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "w", [math.nan, np.array([1.0, math.nan, 1.0, 1.0]), torch.tensor([1.0, 2.0, math.inf, 1.0])]
)
def test_guidance_weight_checked_once_per_step(w):
    """w is checked in ``steps.step`` (not in every denoiser call): a NaN/inf weight, as a
    number, an array or a tensor, is still a clear error, with and without deferral."""
    den = GuidanceVectorEnv(4, "gmm-ring8").denoiser
    x, labels = torch.randn(4, 2, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match="guidance must be finite"):
        steps.step(den, x, 2.0, 1.0, class_labels=labels, guidance=w)
    checks = steps.DeferredChecks()
    try:  # a NaN number raises at once; tensors and arrays at resolve()
        steps.step(den, x, 2.0, 1.0, class_labels=labels, guidance=w, checks=checks)
    except ValueError as e:
        assert "guidance must be finite" in str(e)
        return
    with pytest.raises(ValueError, match="guidance must be finite"):
        checks.resolve()
