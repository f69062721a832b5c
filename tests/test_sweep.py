"""Ray (the optional ``[ray]`` extra): ``diffusion-gym sweep`` on a local Ray equals the runs
done one by one; ART restarts and benchmark parts give the same results as Ray tasks and in
this process; a clear error names the extra when Ray is missing. The Ray tests skip cleanly
without Ray; one local Ray (2 CPUs, no dashboard) serves the module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agents import benchmark as B
from agents import parallel, sweep, train
from agents.art import ActorCriticConfig, Config, EvalConfig, run

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "baselines" / "configs" / "benchmark-tiny.yaml"
ART = ROOT / "agents" / "configs" / "art-ring8.yaml"
TINY_ART = [
    "total_timesteps=64", "num_envs=8", "bank_size=16", "reference_steps=8",
    "distill_samples=8", "algo_kwargs.n_steps=4", "algo_kwargs.batch_size=16",
    "algo_kwargs.n_epochs=1", "eval.num_samples=32", "eval.seeds=[0]", "eval.oracle=false",
    "eval.rho_grid=[7.0]", "eval.train_samples=8", "eval.reference_steps=8", "eval.budgets=[]",
    "eval.transfer_presets=[]", "progress=false", "num_threads=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_missing_ray_is_an_error_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel, "ray_available", lambda: False)
    with pytest.raises(ImportError, match=r"diffusion-gym\[ray\]"):
        sweep.run_sweep(ART, tmp_path / "s", seeds=2)
    monkeypatch.setenv(parallel.ENV_VAR, "ray")
    with pytest.raises(ImportError, match=r"diffusion-gym\[ray\]"):
        parallel.backend()
    monkeypatch.setenv(parallel.ENV_VAR, "auto")
    assert parallel.backend() == "local"  # without Ray every piece runs here
    assert parallel.backend(prefer_ray=True) == "local"
    monkeypatch.setenv(parallel.ENV_VAR, "cluster")
    with pytest.raises(ValueError, match=parallel.ENV_VAR):
        parallel.backend()


def test_sweep_plans_grid_times_seeds_and_checks_every_trial(tmp_path):
    kind, specs = sweep.plan_trials(ART, ["algo_kwargs.learning_rate=1e-3,3e-4"], 2, TINY_ART)
    assert kind == "train" and len(specs) == 4
    assert {s["name"] for s in specs} == {
        f"algo_kwargs.learning_rate={lr},seed={s}" for lr in ("1e-3", "3e-4") for s in (0, 1)
    }
    with pytest.raises(ValueError, match="num_envz"):
        sweep.plan_trials(ART, ["num_envz=1,2"])
    with pytest.raises(ValueError, match="--grid"):
        sweep.plan_trials(ART, ["seed"])
    kind, specs = sweep.plan_trials(TINY, None, 2, ["steps=64"])
    assert kind == "benchmark"
    # every fitting (env, algo) pair × 2 seeds; a non-fitting pair is no trial
    assert ("Clock-v0", "dqn") not in {(s["env"], s["algo"]) for s in specs}
    assert {s["seed"] for s in specs} == {0, 1}
    assert sweep.config_kind({"presets": ["gmm-ring8"]}) == "compare"


def test_two_trial_sweep_equals_the_runs_done_one_by_one(tmp_path, local_ray):
    torch.set_num_threads(1)
    rec = sweep.run_sweep(ART, tmp_path / "sweep", seeds=2, overrides=TINY_ART)
    assert [t["status"] for t in rec["trials"]] == ["ok", "ok"]
    one_by_one = []
    for s in (0, 1):
        out = tmp_path / f"seed{s}"
        assert train.main([str(ART), "--out", str(out), *TINY_ART, f"seed={s}"]) == 0
        one_by_one.append((f"seed={s}", {"seed": str(s)}, out))
    assert rec["rows"] == sweep.merged_rows(one_by_one)
    assert {r["trial"] for r in rec["rows"]} == {"seed=0", "seed=1"}
    files = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert files["rows"] == rec["rows"]
    assert "| seed | strategy |" in (tmp_path / "sweep" / "sweep.md").read_text()
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000
    # Running it again reuses the finished trials (their trial.json), nothing is retrained.
    before = (tmp_path / "sweep" / "trials" / "seed=0" / "trial.json").read_text()
    again = sweep.run_sweep(ART, tmp_path / "sweep", seeds=2, overrides=TINY_ART)
    assert again["rows"] == rec["rows"]
    assert (tmp_path / "sweep" / "trials" / "seed=0" / "trial.json").read_text() == before
    assert again["sweep"]["ran"] == 0 and again["sweep"]["reused"] == 2  # not handed to Ray
    # other override strings that resolve to the same trials reuse them too
    same = sweep.run_sweep(ART, tmp_path / "sweep", seeds=2, overrides=[*TINY_ART, "seed=0"])
    assert same["sweep"]["ran"] == 0 and same["rows"] == rec["rows"]
    # --collect merges the finished trials and lists the others as pending, running nothing
    (tmp_path / "sweep" / "trials" / "seed=1" / "trial.json").unlink()
    assert sweep.main([str(ART), "--out", str(tmp_path / "sweep"), "--seeds", "2",
                       *TINY_ART, "--collect"]) == 0  # fmt: skip
    part = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [t["status"] for t in part["trials"]] == ["ok", "pending"]
    assert part["rows"] == [r for r in rec["rows"] if r["trial"] == "seed=0"]
    assert not (tmp_path / "sweep" / "trials" / "seed=1" / "trial.json").exists()


def _tiny_art(**kw) -> Config:
    ev = EvalConfig(num_samples=64, seeds=[0], metrics=["rmse"], rho_grid=[7.0], oracle=False)
    base = dict(preset="art-gauss1d", budget=5, solver="euler", base="linear", num_envs=8,
                bank_size=32, reference_steps=16, distill_samples=16, total_timesteps=160,
                algo_kwargs={"n_steps": 4, "batch_size": 16, "n_epochs": 1},
                progress=False, num_threads=1, eval=ev)  # fmt: skip
    return Config(**{**base, **kw})


def test_art_restarts_as_ray_tasks_equal_the_local_ones(tmp_path, local_ray, monkeypatch):
    import agents.art.trainer as art_trainer

    monkeypatch.setattr(art_trainer, "RESTART_SELECT_SAMPLES", 64)
    cfg = _tiny_art(restarts=2)
    out = {}
    for mode in ("local", "ray"):
        monkeypatch.setenv(parallel.ENV_VAR, mode)
        run(cfg, tmp_path / mode)
        out[mode] = json.loads((tmp_path / mode / "distilled.json").read_text())
    assert out["ray"]["restart_train_rmse"] == out["local"]["restart_train_rmse"]
    assert out["ray"]["sigmas"] == out["local"]["sigmas"]
    assert out["local"]["restart_train_rmse"][0] != out["local"]["restart_train_rmse"][1]
    ac = _tiny_art(algo="art_ac", reward="local_error", reward_transform="none", restarts=2,
                   actor_critic=ActorCriticConfig(iterations=3, batch_size=16))  # fmt: skip
    monkeypatch.setenv(parallel.ENV_VAR, "ray")
    run(ac, tmp_path / "ac")
    sig = [json.loads((tmp_path / "ac" / f"restart{r}" / "distilled.json").read_text())["sigmas"]
           for r in range(2)]  # fmt: skip
    assert sig[0] != sig[1]  # each Ray task trained its own seed


def test_benchmark_parts_as_ray_tasks_equal_one_benchmark(tmp_path, local_ray):
    cfg = B.load_config(TINY, ["steps=64", "eval.points=1", "tensorboard=false"])
    cfg.algos = ["ppo", "a2c"]
    cfg.envs = [e for e in cfg.envs if e.label in ("Guidance-v0/log_prob", "Clock-v0")]
    whole = B.run_benchmark(cfg, tmp_path / "whole", log=lambda _m: None)
    parts = B.run_benchmark_parts(cfg, tmp_path / "parts", log=lambda _m: None, use="ray")

    def key(r):
        return (r["env"], r["algo"], r["seed"])

    drop = ("wall_s", "steps_per_s")
    a = [{k: v for k, v in r.items() if k not in drop} for r in sorted(whole["runs"], key=key)]
    b = [{k: v for k, v in r.items() if k not in drop} for r in sorted(parts["runs"], key=key)]
    assert json.dumps(a) == json.dumps(b) and len(a) == 4  # NaN-safe equality
    assert parts["baselines"] == whole["baselines"]
    assert (tmp_path / "parts" / "benchmark.md").read_text().count("| PPO |") == 2


IRL = ROOT / "agents" / "configs" / "irl-ring8.yaml"
TINY_IRL = [
    "checkpoint_every=1", "env.num_envs=16", "algo.batch_size=64", "algo.n_epochs=1",
    "eval.num_samples=64", "eval.seeds=[0]", "eval.every=1", "eval.train_samples=32",
    "progress=false", "num_threads=1",
]  # fmt: skip


def test_a_restarted_trial_resumes_from_the_packages_checkpoint(tmp_path):
    """What Ray does after a worker failure (it calls the trial again): the trial resumes
    its directory's newest checkpoint (``train --resume``) and ends where an uninterrupted
    run ends; a finished trial is not rerun."""
    torch.set_num_threads(1)
    _, (spec,) = sweep.plan_trials(IRL, None, None, [*TINY_IRL, "rounds=2"])
    trial = tmp_path / "trial"
    # The first attempt died after its round-1 checkpoint (a run of 1 round in that folder).
    assert train.main([str(IRL), "--out", str(trial), *TINY_IRL, "rounds=1"]) == 0
    first = sorted(p.name for p in (trial / "checkpoints").iterdir())
    rec = sweep.run_trial(spec, trial)
    assert rec["status"] == "ok" and (trial / "trial.json").is_file()
    assert set(first) < {p.name for p in (trial / "checkpoints").iterdir()}  # went on from it
    fresh = tmp_path / "fresh"
    assert train.main([str(IRL), "--out", str(fresh), *TINY_IRL, "rounds=2"]) == 0
    resumed = sweep.merged_rows([("t", {}, trial)])
    assert resumed == sweep.merged_rows([("t", {}, fresh)])
    mtime = (trial / "eval.json").stat().st_mtime_ns
    assert sweep.run_trial(spec, trial)["wall_s"] == rec["wall_s"]  # reused, not rerun
    assert (trial / "eval.json").stat().st_mtime_ns == mtime
