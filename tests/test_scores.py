"""Normalised benchmark scores (issue #22 item 3): the reference search, the score formula,
the scores in the benchmark's results and table, and the stored references against a fresh
measurement of the same policies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents import benchmark as B
from agents.benchmark import references as R
from agents.benchmark.evaluation import StepPolicy
from diffusion_gym.envs import batch_of

TINY_EVAL = B.EvalConfig(num_samples=64, seed=123, points=1)


def _clock():
    return B.EnvConfig(id="diffusion_gym/Clock-v0", label="Clock-v0",
                       kwargs={"bank_size": 64, "reference_steps": 16})  # fmt: skip


def _guidance():
    return B.EnvConfig(id="diffusion_gym/Guidance-v0", label="Guidance-v0/log_prob",
                       kwargs={"reward": "log_prob"})  # fmt: skip


@pytest.mark.parametrize("make", [_clock, _guidance])
def test_reference_search_beats_the_default_and_is_measured_on_the_eval_batch(make):
    torch.set_num_threads(1)
    env_cfg = make()
    ref = R.find_reference(env_cfg, TINY_EVAL, search_seed=7, grid=5, sweeps=1)
    env = B.make_vector_env(env_cfg.id, TINY_EVAL.num_samples, B.eval_kwargs(env_cfg))
    cfg = B.BenchmarkConfig(algos=["ppo"], envs=[env_cfg], eval=TINY_EVAL)
    rows = {k: v["metric"] for k, v in B.reference_rows(cfg)[env_cfg.label].items()}
    # The default policy is the table's default row, on the same evaluation batch.
    assert ref["default"]["metric"] == pytest.approx(rows[ref["default"]["policy"]], rel=1e-12)
    # The best fixed strategy: its stored actions replayed give the stored metric, and on the
    # search batch it is at least as good as the default (a candidate of the search).
    best = StepPolicy([np.asarray(a, dtype=np.float32 if "Clock" in env_cfg.id else np.int64)
                       for a in ref["best"]["actions"]])  # fmt: skip
    assert B.evaluate_policy_batch(best, env, TINY_EVAL.seed)["metric"] == pytest.approx(
        ref["best"]["metric"], rel=1e-12
    )
    if "Clock" in env_cfg.id:
        default = B.ConstantPolicy(np.zeros(1, np.float32))
    else:  # w = 1, γ = 0 of the action table
        table = batch_of(env).action_table
        w1, g0 = np.argmin(np.abs(table.weights - 1)), np.argmin(table.gammas)
        assert table.weights[w1] == 1.0 and table.gammas[g0] == 0.0
        default = B.ConstantPolicy(table.encode(np.int64(w1), np.int64(g0)))
    default_on_search = B.evaluate_policy_batch(default, env, 7)["metric"]
    assert ref["best"]["search_metric"] <= default_on_search + 1e-12
    assert ref["best"]["search_metric"] < default_on_search  # the search found better
    env.close()
    with pytest.raises(ValueError, match="search_seed"):
        R.find_reference(env_cfg, TINY_EVAL, search_seed=TINY_EVAL.seed)


def test_references_cli_updates_only_the_named_envs(tmp_path, monkeypatch):
    calls = []

    def fake(env_cfg, eval_cfg, device="cpu"):
        calls.append(env_cfg.label)
        return {"key": R._key(env_cfg, eval_cfg), "default": {"metric": 2.0},
                "best": {"metric": 1.0, "policy": "p"}, "seconds": 0.0}  # fmt: skip

    monkeypatch.setattr(R, "find_reference", fake)
    cfg = B.BenchmarkConfig(algos=["ppo"], envs=[_clock(), _guidance()], eval=TINY_EVAL)
    got = R.compute_references(cfg, log=lambda *_: None, labels=["Guidance-v0/log_prob"])
    assert calls == ["Guidance-v0/log_prob"] and len(got) == 1
    with pytest.raises(ValueError, match="unknown env label"):
        R.compute_references(cfg, labels=["Guidance-v9"])
    # the CLI merges into the JSON it is given: other stored entries stay as they were
    out = tmp_path / "refs.json"
    out.write_text('{"references": {"kept": {"x": 1}}}')
    monkeypatch.setattr(R, "load_config", lambda path: cfg)
    assert R.main(["any.yaml", "--out", str(out), "--envs", "Clock-v0"]) == 0
    refs = R.load_references(out)
    assert refs["kept"] == {"x": 1} and len(refs) == 2 and calls[-1] == "Clock-v0"
    assert next(e for k, e in refs.items() if k != "kept")["command"].endswith("--envs Clock-v0")


def test_clock_search_starts_from_the_published_schedule_where_one_is_shipped():
    from diffusion_gym import schedules
    from diffusion_gym.envs import ClockVectorEnv

    env = ClockVectorEnv("gmm-64d", solver="unipc-2", budget=5, bank_size=4, num_envs=1)
    a = R._published_actions(env)
    pub = schedules.load_published("gmm-64d", "unipc-2", 5)
    torch.testing.assert_close(env.schedule_from_actions(torch.as_tensor(a)), pub,
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    assert R._published_actions(ClockVectorEnv("gmm-ring8", bank_size=4, num_envs=1)) is None
    # a budget the published NFE-5 schedule does not have: none either
    assert R._published_actions(ClockVectorEnv("gmm-64d", solver="unipc-2", budget=4,
                                                bank_size=4, num_envs=1)) is None  # fmt: skip


def test_score_formula_and_results_table():
    ref = {"default": {"policy": "d", "metric": 2.0}, "best": {"policy": "b", "metric": 1.0,
           "actions": []}, "date": "today"}  # fmt: skip
    assert R.normalized_score(2.0, ref) == 0.0 and R.normalized_score(1.0, ref) == 1.0
    assert R.normalized_score(0.5, ref) == 1.5 and R.normalized_score(3.0, ref) == -1.0
    assert math.isnan(R.normalized_score(float("nan"), ref))
    env_cfg = _clock()
    refs = {R._key_text(R._key(env_cfg, TINY_EVAL)): ref}
    runs = [B.RunResult("ppo", "Clock-v0", s, "ok", metric=m) for s, m in ((0, 1.5), (1, 1.0))]
    results = {
        "config": {"envs": [vars(env_cfg)], "eval": vars(TINY_EVAL), "steps": 1, "seeds": [0, 1]},
        "baselines": {"Clock-v0": {"base schedule (a=0)": {"metric": 2.0, "return": -4.0}}},
        "runs": [vars(r) for r in runs],
        "summary": B.summarize(runs),
    }
    B.score_results(results, refs)
    assert [r["score"] for r in results["runs"]] == [0.5, 1.0]
    assert results["summary"][0]["score"]["mean"] == 0.75
    md = B.markdown_tables(results)
    assert "| PPO | 0.75 ± 0.35 | 1.25 ± 0.35 |" in md
    assert "| *base schedule (a=0)* | 0 | 2 |" in md and "*best fixed: b* | 1 |" in md
    # Another evaluation batch or other env kwargs: no stored reference, no score.
    other = B.EvalConfig(num_samples=128, seed=123)
    assert R.reference_for(env_cfg, other, refs) is None
    assert R.reference_for(_guidance(), TINY_EVAL, refs) is None


def test_stored_references_match_a_fresh_measurement():
    refs = R.load_references()
    assert refs, "agents/benchmark/references.json is missing"
    for entry in refs.values():
        assert {"command", "date", "search_seed", "how"} <= set(entry)
        assert entry["best"]["metric"] < entry["default"]["metric"]
    # Re-measure the cheapest stored entry (the ring8 clock) on its evaluation batch.
    key = next(k for k, e in refs.items() if e["key"]["id"] == "diffusion_gym/Clock-v0")
    entry = refs[key]
    torch.set_num_threads(1)
    env_cfg = B.EnvConfig(id=entry["key"]["id"], kwargs=dict(entry["key"]["kwargs"]))
    n, seed = entry["key"]["eval"]["num_samples"], entry["key"]["eval"]["seed"]
    env = B.make_vector_env(env_cfg.id, n, B.eval_kwargs(env_cfg))
    default = B.evaluate_policy_batch(B.ConstantPolicy(np.zeros(1, np.float32)), env, seed)
    best = StepPolicy([np.asarray(a, np.float32) for a in entry["best"]["actions"]])
    assert default["metric"] == pytest.approx(entry["default"]["metric"], rel=1e-9)
    assert B.evaluate_policy_batch(best, env, seed)["metric"] == pytest.approx(
        entry["best"]["metric"], rel=1e-9
    )
    env.close()
