"""Property tests (hypothesis): random actions, random configurations and bad inputs.

Three families, each drawing cases and classifying every case as ``ok``, ``clear`` (a
``ValueError``/``TypeError`` that names what was wrong), ``crash`` (any other exception, or
an error that does not name the argument), ``silent`` (an invalid input accepted, or a
broken invariant: a non-finite observation or reward, a schedule that is not strictly
decreasing to 0 in K steps, a trajectory that changes with the run or with the batch) or
``rejected`` (a valid input refused). In CI (the default) every ``crash``, ``silent`` and
``rejected`` case fails the test, at a size of a few tens of seconds. The longer run is
``python benchmarks/fuzz.py`` (environment variables ``DG_FUZZ_EXAMPLES`` and
``DG_FUZZ_REPORT``: more examples, outcomes counted instead of raised, a JSON report); its
counts are in docs/reliability.md, "Inputs and property tests".
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffusion_gym import memory, presets
from diffusion_gym.envs import ClockVectorEnv, GuidanceVectorEnv, max_speed_scale

EXAMPLES = int(os.environ.get("DG_FUZZ_EXAMPLES", "0")) or None  # None: the CI sizes below
REPORT = os.environ.get("DG_FUZZ_REPORT")  # set: count outcomes instead of failing
SETTINGS = {
    "deadline": None,
    "database": None,
    "derandomize": REPORT is None,  # CI: the same cases every run
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
PRESETS = {name: presets.make(name) for name in ("gmm-ring8", "art-gauss1d", "gmm-ring8-imperfect")}
BANK = {"bank_size": 4, "reference_steps": 4}

COUNTS: dict[str, Counter] = defaultdict(Counter)
EXAMPLES_OF: dict[str, list[str]] = defaultdict(list)


def _record(family: str, outcome: str, detail: str) -> None:
    """Count a case; outside the report mode, fail on crash/silent/rejected."""
    COUNTS[family][outcome] += 1
    if outcome in ("crash", "silent", "rejected"):
        if len(EXAMPLES_OF[family]) < 20:
            EXAMPLES_OF[family].append(f"{outcome}: {detail}")
        if REPORT is None:
            pytest.fail(f"{family}: {outcome}: {detail}")


@pytest.fixture(scope="module", autouse=True)
def _write_report():
    yield
    if REPORT:
        with open(REPORT, "w") as f:
            json.dump({"counts": COUNTS, "examples": EXAMPLES_OF}, f, indent=1, default=dict)


def _n(ci: int) -> int:
    return EXAMPLES or ci


# ---------------------------------------------------------------------------------------------
# Family 1: random actions on random valid configurations

ACTION = st.one_of(
    st.floats(-1.0, 1.0, allow_nan=False),
    st.sampled_from([-1.0, 1.0, 0.0, 1e-300, -1e-300, 1 - 2**-53, -1 + 2**-53]),
)


def _clock_config(draw) -> dict:
    preset = draw(st.sampled_from(["gmm-ring8", "art-gauss1d"]))
    den = PRESETS[preset].denoiser
    base = draw(st.sampled_from(["edm", "linear"]))
    rho = draw(st.sampled_from([1.0, 3.0, 7.0, 15.0]))
    budget = draw(st.integers(1, 12))
    top = min(max_speed_scale(budget, base, den.sigma_min, den.sigma_max, rho), 40.0)
    beta = top * draw(st.floats(0.01, 1.0))
    return {
        "denoiser": PRESETS[preset], "budget": budget, "base": base, "rho": rho,
        "speed_scale": beta, "solver": draw(st.sampled_from(["euler", "heun"])),
        "obs_mode": draw(st.sampled_from(["state", "features"])),
        "reward": draw(st.sampled_from(["terminal_error", "local_error"])), **BANK,
    }  # fmt: skip


def _clock_episode(cfg: dict, acts: np.ndarray, seed: int):
    env = ClockVectorEnv(num_envs=acts.shape[1], **cfg)
    obs, _ = env.reset(seed=seed)
    seen, rewards = [obs], []
    for k in range(cfg["budget"]):
        obs, r, term, _, info = env.step(acts[k][:, None].astype(np.float32))
        seen.append(obs)
        rewards.append(r)
    return np.stack(seen), np.stack(rewards), term, info["final_info"]["schedule"]


@settings(max_examples=_n(40), **SETTINGS)
@given(data=st.data())
def test_clock_random_actions(data):
    cfg = _clock_config(data.draw)
    b = data.draw(st.integers(1, 4))
    acts = np.array(
        data.draw(st.lists(ACTION, min_size=cfg["budget"] * b, max_size=cfg["budget"] * b))
    )
    acts = acts.reshape(cfg["budget"], b)
    seed = data.draw(st.integers(0, 2**40))
    case = f"{ {k: v for k, v in cfg.items() if k != 'denoiser'} } actions={acts.tolist()}"
    try:
        obs, rew, term, sched = _clock_episode(cfg, acts, seed)
    except Exception as e:  # noqa: BLE001 - classified, not swallowed
        _record("random actions", "crash", f"{case}: {type(e).__name__}: {e}")
        return
    problems = []
    if not (np.isfinite(obs).all() and np.isfinite(rew).all()):
        problems.append("non-finite obs/reward")
    if not (term.all() and sched.shape[1] == cfg["budget"] + 1 and (sched[:, -1] == 0).all()):
        problems.append("episode did not end at sigma = 0 after K steps")
    if not (np.diff(sched, axis=1) < 0).all():
        problems.append("schedule not strictly decreasing")
    obs2, rew2, _, sched2 = _clock_episode(cfg, acts, seed)
    if not (
        np.array_equal(obs, obs2) and np.array_equal(rew, rew2) and np.array_equal(sched, sched2)
    ):
        problems.append("same seed, different trajectory")
    if b > 1:  # env 1 alone (base seed seed + 1) replays its trajectory in the batch
        alone = _clock_episode(cfg, acts[:, 1:2], seed + 1)
        if not np.array_equal(alone[3][0], sched[1]) or not np.array_equal(
            alone[0][:, 0], obs[:, 1]
        ):
            problems.append("env 1 depends on the batch")
    _record("random actions", "silent" if problems else "ok", f"{case}: {problems}")


@settings(max_examples=_n(30), **SETTINGS)
@given(data=st.data())
def test_guidance_random_actions(data):
    preset = data.draw(st.sampled_from(["gmm-ring8-imperfect", "gmm-ring8"]))
    cfg = {
        "denoiser": PRESETS[preset], "num_steps": data.draw(st.integers(1, 6)),
        "solver": data.draw(st.sampled_from(["euler", "heun"])),
        "schedule": data.draw(st.sampled_from(["karras", "uniform", "log_linear", "linear"])),
        "obs_mode": data.draw(st.sampled_from(["state", "features"])),
        "action_format": data.draw(st.sampled_from(["discrete", "multidiscrete"])),
        "reward": data.draw(st.sampled_from(["none", "log_prob", "classifier"])),
    }  # fmt: skip
    b = data.draw(st.integers(1, 4))
    seed = data.draw(st.integers(0, 2**40))
    n_act = cfg["num_steps"] * b
    raw = data.draw(st.lists(st.integers(0, 17), min_size=n_act, max_size=n_act))
    acts = np.array(raw).reshape(cfg["num_steps"], b)
    if cfg["action_format"] == "multidiscrete":
        acts = np.stack([acts // 3, acts % 3], -1)

    def episode(batch_acts, s):
        env = GuidanceVectorEnv(num_envs=batch_acts.shape[1], **cfg)
        obs, _ = env.reset(seed=s)
        seen, rewards = [obs], []
        for k in range(cfg["num_steps"]):
            obs, r, term, _, info = env.step(batch_acts[k])
            seen.append(obs)
            rewards.append(r)
        return np.stack(seen), np.stack(rewards), term, info["final_info"]["x0"]

    case = f"{ {k: v for k, v in cfg.items() if k != 'denoiser'} } preset={preset} b={b}"
    try:
        obs, rew, term, x0 = episode(acts, seed)
    except Exception as e:  # noqa: BLE001
        _record("random actions", "crash", f"{case}: {type(e).__name__}: {e}")
        return
    problems = []
    if not (np.isfinite(obs).all() and np.isfinite(rew).all() and np.isfinite(x0).all()):
        problems.append("non-finite obs/reward/x0")
    if not term.all():
        problems.append("not terminated after num_steps")
    again = episode(acts, seed)
    if not (np.array_equal(obs, again[0]) and np.array_equal(x0, again[3])):
        problems.append("same seed, different trajectory")
    if b > 1:
        alone = episode(acts[:, 1:2], seed + 1)
        if not np.array_equal(alone[3][0], x0[1]):
            problems.append("env 1 depends on the batch")
    _record("random actions", "silent" if problems else "ok", f"{case}: {problems}")


# ---------------------------------------------------------------------------------------------
# Family 2: random configurations (valid or not); an invalid one must be refused clearly

NUMBER = st.one_of(  # about half plausible, half anything
    st.floats(0.05, 30.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 300),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, 0.5, 2.0]),
)


def _clock_config_problems(cfg: dict) -> list[str]:
    """The invalid arguments of ``cfg`` (the oracle); ``["borderline"]`` within
    max_speed_scale's rounding (either answer is right); [] if valid."""
    b, s, r, k = cfg["budget"], cfg["speed_scale"], cfg["rho"], cfg["bank_size"]
    bad = [] if isinstance(b, int) and b >= 1 else ["budget"]
    bad += [] if isinstance(k, int) and k >= 1 else ["bank_size"]
    bad += [] if _is_real(r) and r > 0 else ["rho"]
    bad += [] if _is_real(s) and s > 0 else ["speed_scale"]
    if bad:
        return bad
    den = PRESETS[cfg["denoiser"]].denoiser
    try:
        top = max_speed_scale(b, cfg["base"], den.sigma_min, den.sigma_max, r)
    except ValueError:  # ρ cannot warp the range, or not even the base schedule fits
        return ["rho", "speed_scale"]
    if s > top * 1.0001:
        return ["speed_scale"]
    return ["borderline"] if s > top else []


@settings(max_examples=_n(40), **SETTINGS)
@given(data=st.data())
def test_clock_random_config(data):
    cfg = {
        "denoiser": data.draw(st.sampled_from(["gmm-ring8", "art-gauss1d"])),
        "budget": data.draw(st.one_of(st.integers(1, 8), st.integers(-2, 60), st.just(2.5))),
        "base": data.draw(st.sampled_from(["edm", "linear"])),
        "rho": data.draw(NUMBER), "speed_scale": data.draw(NUMBER),
        "bank_size": data.draw(st.one_of(st.integers(-1, 6), st.just(4.0))),
    }  # fmt: skip
    bad = _clock_config_problems(cfg)
    kwargs = {**cfg, "denoiser": PRESETS[cfg["denoiser"]], "reference_steps": 4}
    try:
        env = ClockVectorEnv(num_envs=2, **kwargs)
    except (ValueError, TypeError) as e:
        named = bad == ["borderline"] or any(name in str(e) for name in bad)
        outcome = "rejected" if not bad else ("clear" if named else "crash")
        _record("random config", outcome, f"{cfg}: {e}")
        return
    except Exception as e:  # noqa: BLE001
        _record("random config", "crash", f"{cfg}: {type(e).__name__}: {e}")
        return
    if bad and bad != ["borderline"]:
        _record("random config", "silent", f"{cfg}: accepted although {bad} are invalid")
        return
    extremes = data.draw(
        st.lists(st.sampled_from([-1.0, 1.0, 0.0]), min_size=env.budget, max_size=env.budget)
    )
    try:
        env.reset(seed=0)
        for a in extremes:
            obs, r, *_ = env.step(np.full((2, 1), a, np.float32))
    except Exception as e:  # noqa: BLE001
        _record("random config", "crash", f"{cfg} actions {extremes}: {type(e).__name__}: {e}")
        return
    _record("random config", "ok", str(cfg))


@settings(max_examples=_n(30), **SETTINGS)
@given(data=st.data())
def test_guidance_random_config(data):
    plausible = st.lists(st.floats(0.0, 6.0), min_size=1, max_size=4)
    ws = data.draw(st.one_of(plausible, st.lists(NUMBER, min_size=0, max_size=4)))
    gs = data.draw(st.one_of(plausible, st.lists(NUMBER, min_size=0, max_size=3)))
    cfg = {
        "num_steps": data.draw(st.one_of(st.integers(-1, 8), st.just(3.0))),
        "guidance_weights": ws, "gammas": gs,
        "s_noise": data.draw(st.one_of(st.floats(0.0, 2.0), NUMBER)),
    }  # fmt: skip
    fin = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
    reason = None
    if not (isinstance(cfg["num_steps"], int) and cfg["num_steps"] >= 1):
        reason = "num_steps"
    elif not (ws and all(fin(w) for w in ws)):
        reason = "guidance_weights"
    elif not (gs and all(fin(g) and g >= 0 for g in gs)):
        reason = "gammas"
    elif not (fin(cfg["s_noise"]) and cfg["s_noise"] >= 0):
        reason = "s_noise"
    try:
        env = GuidanceVectorEnv(num_envs=2, denoiser=PRESETS["gmm-ring8-imperfect"], **cfg)
    except (ValueError, TypeError) as e:
        outcome = "rejected" if reason is None else ("clear" if reason in str(e) else "crash")
        _record("random config", outcome, f"{cfg}: {e}")
        return
    except Exception as e:  # noqa: BLE001
        _record("random config", "crash", f"{cfg}: {type(e).__name__}: {e}")
        return
    if reason is not None:
        _record("random config", "silent", f"{cfg}: accepted although {reason} is invalid")
        return
    try:
        env.reset(seed=0)
        for _ in range(env.num_steps):
            obs, r, *_ = env.step(np.full(2, env.action_table.size - 1))
        ok = np.isfinite(obs).all() and np.isfinite(r).all()
    except ValueError as e:  # huge w or s_noise can overflow: refused with a clear error
        _record("random config", "clear" if "NaN or inf" in str(e) else "crash", f"{cfg}: {e}")
        return
    except Exception as e:  # noqa: BLE001
        _record("random config", "crash", f"{cfg}: {type(e).__name__}: {e}")
        return
    _record("random config", "ok" if ok else "silent", f"{cfg}: finite={ok}")


# ---------------------------------------------------------------------------------------------
# Family 3: bad inputs at every entry point (the valid ones must still work)

JUNK = [
    math.nan, math.inf, -math.inf, -1, 0, 1.5, True, False, "3", None, 1 + 2j, [1, 2],
    np.float32("nan"), np.int64(-3), np.int64(4), np.float32(3.0), 2**70, torch.tensor(1.5),
    torch.tensor(3), object(), (), 2.0, 4,
]  # fmt: skip


def _is_int(v) -> bool:
    if isinstance(v, (bool, np.bool_)) or (isinstance(v, torch.Tensor) and v.dtype == torch.bool):
        return False
    if isinstance(v, torch.Tensor):
        return v.ndim == 0 and not v.is_floating_point() and not v.is_complex()
    return isinstance(v, (int, np.integer))


def _is_real(v) -> bool:
    if isinstance(v, (bool, np.bool_, complex)) or isinstance(v, (str, list, tuple, type(None))):
        return False
    if isinstance(v, torch.Tensor):
        return (
            v.ndim == 0 and v.dtype != torch.bool and not v.is_complex() and math.isfinite(float(v))
        )
    return isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(float(v))


def _seed_ok(v) -> bool:  # None, an int in [0, 2**62) or a list of 2 (num_envs) such ints
    if isinstance(v, (list, tuple)):
        return len(v) == 2 and all(_seed_ok(s) and s is not None for s in v)
    return v is None or (_is_int(v) and 0 <= int(v) < 2**62)


def _steps_ok(v) -> bool:
    return v is None or (_is_int(v) and 1 <= v <= 64)


def _clock_step(v):
    env = ClockVectorEnv(num_envs=2, **BANK)
    env.reset(seed=0)
    batch = v.reshape(1, 1).expand(2, 1) if isinstance(v, torch.Tensor) else [[v], [v]]
    return env.step(batch)


def _guidance_step(v):
    env = GuidanceVectorEnv(2)
    env.reset(seed=0)
    return env.step(v.reshape(1).expand(2) if isinstance(v, torch.Tensor) else [v, v])


def _action_ok(v) -> bool:
    return _is_real(v) and -1 <= float(v) <= 1


def _index_ok(v) -> bool:
    return _is_real(v) and float(v).is_integer() and 0 <= float(v) < 18


def _clock(**kw):
    return ClockVectorEnv(**{**BANK, **kw})


def _in(lo, hi, kind=_is_real):
    return lambda v: kind(v) and lo <= v <= hi


SITES = {  # name -> (call, is the value valid?)
    "num_envs": (lambda v: _clock(num_envs=v), _in(1, 64, _is_int)),
    "budget": (lambda v: _clock(budget=v), _in(1, 10, _is_int)),
    "speed_scale": (lambda v: _clock(speed_scale=v), lambda v: _is_real(v) and 0 < v <= 16),
    "rho": (lambda v: _clock(rho=v), lambda v: _is_real(v) and 0 < v < 100),
    "prior_std": (lambda v: _clock(prior_std=v), lambda v: v is None or (_is_real(v) and v > 0)),
    "bank_seed": (lambda v: _clock(bank_seed=v), _in(0, 2**62 - 1, _is_int)),
    "guidance": (lambda v: _clock(guidance=v), lambda v: v is None or _is_real(v)),
    "s_noise": (lambda v: GuidanceVectorEnv(2, s_noise=v), _in(0, math.inf)),
    "num_steps": (lambda v: GuidanceVectorEnv(2, num_steps=v), _steps_ok),
    "seed": (lambda v: _clock(num_envs=2).reset(seed=v), _seed_ok),
    "seed ": (lambda v: GuidanceVectorEnv(2).reset(seed=v), _seed_ok),
    "action": (_clock_step, _action_ok),
    "actions": (_guidance_step, _index_ok),
}  # fmt: skip


@settings(max_examples=_n(60), **SETTINGS)
@given(site=st.sampled_from(sorted(SITES)), value=st.sampled_from(JUNK))
def test_bad_inputs(site, value):
    call, valid = SITES[site]
    case = f"{site.strip()}={value!r}"
    expect_ok = valid(value)
    name = site.strip().rstrip("s")  # "actions" -> "action"
    try:
        call(value)
    except (ValueError, TypeError) as e:
        if expect_ok:
            _record("bad inputs", "rejected", f"{case}: {e}")
        else:
            _record("bad inputs", "clear" if name in str(e) else "crash", f"{case}: {e}")
        return
    except Exception as e:  # noqa: BLE001
        _record("bad inputs", "crash", f"{case}: {type(e).__name__}: {e}")
        return
    _record("bad inputs", "ok" if expect_ok else "silent", f"{case}: accepted")


def test_memory_limit_is_honoured_by_random_sizes(monkeypatch):
    """A random-size sweep under a 64 MiB limit: every size is either built or refused by the
    memory check, never by a MemoryError."""
    monkeypatch.setenv(memory.ENV_VAR, "64M")
    for n in (1, 100, 10_000, 1_000_000, 2**24):
        try:
            env = GuidanceVectorEnv(n, denoiser=PRESETS["gmm-ring8-imperfect"])
        except ValueError as e:
            assert "needs about" in str(e) and n >= 10_000
        else:
            assert sum(env.memory_estimate().values()) <= 64 * 2**20
