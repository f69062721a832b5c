"""diffusion-gym benchmark: every algorithm on every env it fits (tiny budgets), skip reasons,
config errors, output files, metrics against independent computations, RL Zoo on our ids."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import benchmark as B
from diffusion_gym import metrics, schedules, steps
from diffusion_gym.envs import batch_of

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "baselines" / "configs" / "benchmark-tiny.yaml"
FULL = ROOT / "baselines" / "configs" / "benchmark.yaml"
DISCRETE = ["ppo", "a2c", "dqn", "maskable_ppo", "qrdqn", "trpo", "ppo_lstm", "ars"]
BOX = ["ppo", "a2c", "sac", "td3", "tqc", "crossq", "trpo", "ppo_lstm", "ars"]
IRL = ["ppo", "a2c", "maskable_ppo", "trpo", "ppo_lstm"]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return B.load_config(TINY)


@pytest.fixture(scope="module")
def eval_envs(tiny):
    envs = {
        e.label: B.make_vector_env(e.id, tiny.eval.num_samples, B.eval_kwargs(e)) for e in tiny.envs
    }
    yield envs
    for env in envs.values():
        env.close()


def _env(cfg, label):
    return next(e for e in cfg.envs if e.label == label)


def _cases():
    return (
        [("Guidance-v0/log_prob", a) for a in DISCRETE]
        + [("Guidance-v0/irl", a) for a in IRL]
        + [("Clock-v0", a) for a in BOX]
    )


@pytest.mark.parametrize(("label", "algo"), _cases())
def test_algorithm_completes_tiny_budget(tiny, eval_envs, label, algo):
    res = B.run_one(algo, _env(tiny, label), 0, tiny, eval_envs[label])
    assert res.status == "ok", res.reason
    # The whole budget was spent, at most one rollout / ARS iteration past it.
    assert tiny.steps <= res.steps <= 4 * tiny.steps
    assert math.isfinite(res.metric) and res.metric >= -0.05
    assert math.isfinite(res.eval_return) and res.steps_per_s > 0
    assert res.curve and res.curve[-1]["steps"] == res.steps


def test_every_listed_algorithm_is_covered():
    assert sorted(set(DISCRETE) | set(BOX)) == sorted(B.ALGORITHMS)
    classes = {s.cls for s in B.ALGORITHMS.values()}
    assert classes == {
        "PPO", "A2C", "DQN", "SAC", "TD3", "MaskablePPO", "QRDQN", "TRPO", "RecurrentPPO",
        "TQC", "CrossQ", "ARS",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("label", "algo"),
    [("Guidance-v0/log_prob", a) for a in sorted(set(B.ALGORITHMS) - set(DISCRETE))]
    + [("Clock-v0", a) for a in sorted(set(B.ALGORITHMS) - set(BOX))],
)
def test_non_fitting_pair_is_skipped_and_would_crash(tiny, eval_envs, label, algo):
    from agents.vec_env import SB3VecEnv

    env = eval_envs[label]
    res = B.run_one(algo, _env(tiny, label), 0, tiny, env)
    assert res.status == "skipped"
    assert type(env.single_action_space).__name__ in res.reason
    # The skip is needed: the algorithm itself refuses this action space.
    spec = B.algo_spec(algo)
    policy = "LinearPolicy" if algo == "ars" else "MlpPolicy"
    with pytest.raises((AssertionError, ValueError)):
        spec.load()(policy, SB3VecEnv(env))


@pytest.mark.parametrize("algo", ["dqn", "qrdqn", "ars"])
def test_irl_reward_skips_algorithms_without_rollout_buffer(tiny, eval_envs, algo):
    res = B.run_one(algo, _env(tiny, "Guidance-v0/irl"), 0, tiny, eval_envs["Guidance-v0/irl"])
    assert res.status == "skipped" and "agents.irl" in res.reason


def test_clock_metric_equals_reference_sampler(eval_envs, tiny):
    """RMSE of the base schedule (a = 0) = Heun on karras(K) from the same x_T vs x_ref."""
    env = eval_envs["Clock-v0"]
    got = B.evaluate_policy_batch(B.ConstantPolicy(np.zeros(1, np.float32)), env, 7)["metric"]
    env.reset(seed=7)
    u = batch_of(env)
    den = u.denoiser
    sig = schedules.karras(u.budget, den.sigma_min, den.sigma_max, 7.0)
    x0 = steps.sample(den, u.x_T, sig, class_labels=u.class_labels, solver="heun")
    want = (x0 - u.x_ref).pow(2).mean().sqrt().item()
    assert got == pytest.approx(want, rel=1e-6)


def test_guidance_metric_equals_reference_sampler():
    """Energy distance of the constant w = 1, γ = 0 policy = that of the reference sampler
    from the same x_T (class-conditional, against data drawn with the eval seed); w = 5,
    γ = 0.4 is farther from the data."""
    env = B.make_vector_env("diffusion_gym/Guidance-v0", 256, {"reward": "log_prob"})
    base = B.baseline_policies(env)
    got = B.evaluate_policy_batch(base["const w=1 γ=0"], env, 3)["metric"]
    bad = B.evaluate_policy_batch(base["const w=5 γ=0.4"], env, 3)["metric"]
    env.reset(seed=3)
    u = batch_of(env)
    labels = u.class_labels.clone()
    x0 = steps.sample(u.denoiser, u.x.clone(), u.sigmas, class_labels=labels, solver=u.solver)
    ref = u.preset.data.sample(256, class_labels=labels, generator=torch.Generator().manual_seed(3))
    want = metrics.class_conditional(metrics.energy_distance, x0, ref, labels, labels, 8)
    assert got == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert bad > got


def test_unknown_algorithm_env_and_key_are_errors():
    env = {"id": "diffusion_gym/Clock-v0"}
    with pytest.raises(ValueError, match="valid algorithms: ppo, a2c"):
        B.config_from_dict({"algos": ["ppo", "dqnn"], "envs": [env]})
    with pytest.raises(ValueError, match="valid env ids: .*diffusion_gym/Guidance-v0"):
        B.config_from_dict({"algos": ["ppo"], "envs": [{"id": "diffusion_gym/Nope-v0"}]})
    with pytest.raises(ValueError, match="unknown key.*'stepz'.*valid"):
        B.config_from_dict({"algos": ["ppo"], "envs": [env], "stepz": 5})
    with pytest.raises(ValueError, match=r"unknown key.*envs\[0\]"):
        B.config_from_dict({"algos": ["ppo"], "envs": [{**env, "rewrd": "x"}]})
    with pytest.raises(ValueError, match="seeds"):
        B.config_from_dict({"algos": ["ppo"], "envs": [env], "seeds": []})
    with pytest.raises(FileNotFoundError):
        B.load_config("/nonexistent/bench.yaml")
    # Types, algorithm hyperparameters and IRL options are checked before any run starts.
    with pytest.raises(TypeError, match="steps: expected int"):
        B.config_from_dict({"algos": ["ppo"], "envs": [env], "steps": "many"})
    with pytest.raises(ValueError, match=r"unknown PPO hyperparameter.*'n_stepz'.*overrides\.ppo"):
        B.config_from_dict({"algos": ["ppo"], "envs": [env], "overrides": {"ppo": {"n_stepz": 3}}})
    irl_env = {"id": "diffusion_gym/Guidance-v0", "irl": {"hiden": [8]}}
    with pytest.raises(ValueError, match=r"'hiden'.*envs\[0\]\.irl; valid: .*'hidden'"):
        B.config_from_dict({"algos": ["ppo"], "envs": [irl_env]})
    # Dotted key=value overrides, as for `diffusion-gym train`.
    cfg = B.load_config(TINY, ["steps=64", "eval.points=3", "seeds=[4, 5]"])
    assert (cfg.steps, cfg.eval.points, cfg.seeds) == (64, 3, [4, 5])
    with pytest.raises(ValueError, match="unknown key.*'eval.pointz'"):
        B.load_config(TINY, ["eval.pointz=3"])
    # Aliases resolve to the RL-Zoo names.
    cfg = B.config_from_dict({"algos": ["RecurrentPPO", "QRDQN", "MaskablePPO"], "envs": [env]})
    assert cfg.algos == ["ppo_lstm", "qrdqn", "maskable_ppo"]


def test_reward_normalization_only_without_observation_normalization():
    assert B.reward_normalization({}) is None
    norm = B.reward_normalization({"normalize": "dict(norm_obs=False, norm_reward=True)"})
    assert norm == {"norm_obs": False, "norm_reward": True}
    for bad in (True, "dict(norm_reward=True)"):
        with pytest.raises(ValueError, match="only reward normalisation"):
            B.reward_normalization({"normalize": bad})


def test_shipped_configs_and_zoo_files_are_valid():
    for path in (TINY, FULL):
        cfg = B.load_config(path)
        assert set(cfg.algos) == set(B.ALGORITHMS)
    for spec in B.ALGORITHMS.values():
        for env_id in ("diffusion_gym/Guidance-v0", "diffusion_gym/Clock-v0"):
            space = "Discrete" if "Guidance" in env_id else "Box"
            if space not in spec.action_spaces:
                continue
            hp = B.load_hyperparams(spec.name, env_id)
            policy, kwargs = B.algo_kwargs(spec, hp, action_dim=1)
            assert isinstance(policy, str) and kwargs
            model = spec.load()  # every key is a constructor argument (checked above)
            assert set(kwargs) <= set(inspect.signature(model.__init__).parameters)


def test_zoo_entry_falls_back_to_same_env_class(tmp_path):
    (tmp_path / "ppo.yml").write_text("diffusion_gym/Guidance-v0:\n  n_steps: 7\n")
    hp = B.load_hyperparams("ppo", "diffusion_gym/Guidance64D-v0", tmp_path, {"gamma": 0.5})
    assert hp == {"n_steps": 7, "gamma": 0.5}
    with pytest.raises(ValueError, match="no hyperparameters for env id"):
        B.load_hyperparams("ppo", "diffusion_gym/Clock-v0", tmp_path)
    with pytest.raises(ValueError, match="unknown PPO hyperparameter"):
        B.algo_kwargs(B.algo_spec("ppo"), {"n_stepz": 3})
    assert B.parse_policy_kwargs("dict(net_arch=dict(pi=[8], qf=[4]), activation_fn=nn.Tanh)") == {
        "net_arch": {"pi": [8], "qf": [4]},
        "activation_fn": torch.nn.Tanh,
    }
    with pytest.raises(ValueError, match="policy_kwargs"):
        B.parse_policy_kwargs("dict(net_arch=__import__('os'))")


def test_main_writes_tables_json_curves_and_tensorboard(tmp_path):
    out = tmp_path / "bench"
    argv = [str(TINY), "steps=96", "--out", str(out), "--algos", "ppo", "dqn", "--envs", "Clock-v0"]
    rc = B.main([*argv, "--seeds", "0", "1"])
    assert rc == 0
    res = json.loads((out / "benchmark.json").read_text())
    rows = {r["algo"]: r for r in res["summary"]}
    assert rows["ppo"]["status"] == "ok" and rows["ppo"]["seeds"] == [0, 1]
    assert rows["dqn"]["status"] == "skipped" and "Discrete" in rows["dqn"]["reason"]
    assert all(r["steps"] >= 96 for r in res["runs"] if r["status"] == "ok")
    md = (out / "benchmark.md").read_text()
    assert "| PPO |" in md and "skipped: DQN supports Discrete" in md and "base schedule" in md
    assert (out / "curves_Clock-v0.png").stat().st_size > 1000
    assert list((out / "tb").rglob("events.out.tfevents.*"))
    # A second process's part (another env) merges into one report.
    argv = [str(TINY), "--out", str(tmp_path / "b"), "--algos", "a2c"]
    assert B.main([*argv, "--envs", "Guidance-v0/log_prob", "--seeds", "3", "--steps", "64"]) == 0
    assert B.main(["--merge", str(out), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    merged = json.loads((tmp_path / "m" / "benchmark.json").read_text())
    assert {(r["env"], r["algo"]) for r in merged["summary"]} == {
        ("Clock-v0", "ppo"), ("Clock-v0", "dqn"), ("Guidance-v0/log_prob", "a2c")
    }  # fmt: skip
    assert merged["config"]["seeds"] == [0, 1, 3]
    assert (tmp_path / "m" / "curves_Guidance-v0_log_prob.png").is_file()


@pytest.mark.parametrize(
    ("algo", "env_id", "params"),
    [
        ("ppo", "diffusion_gym/Guidance-v0", ["n_envs:4", "n_steps:16", "batch_size:32"]),
        ("sac", "diffusion_gym/Clock-v0", ["n_envs:2", "learning_starts:32", "batch_size:16"]),
    ],
)
def test_rl_zoo_trains_on_our_ids(tmp_path, algo, env_id, params):
    cmd = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", env_id,
        "--gym-packages", "diffusion_gym", "-n", "128",
        "-conf", str(ROOT / "agents" / "configs" / "zoo" / f"{algo}.yml"),
        "-f", str(tmp_path), "--seed", "0", "--num-threads", "1", "--eval-freq", "-1",
        "--verbose", "0", "-params", *params,
    ]  # fmt: skip
    if "Clock" in env_id:  # a small reference bank (the default 4096 x 128 Heun steps per env)
        cmd += ["--env-kwargs", "bank_size:64", "reference_steps:16"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name = env_id.replace("/", "-")
    assert list(tmp_path.glob(f"{algo}/{name}_1/{name}.zip"))


def test_throughput_delegates_to_throughput_module(tmp_path):
    argv = ["--throughput", "--out", str(tmp_path), "--ids", "Guidance-v0"]
    assert B.main([*argv, "--batch-sizes", "2", "--repeats", "1", "--min-time", "0.01"]) == 0
    rows = json.loads((tmp_path / "throughput.json").read_text())
    assert [(r["id"], r["batch"]) for r in rows] == [("Guidance-v0", 2)]
    assert rows[0]["env_steps_per_s"] > 0 and rows[0]["raw_ms"] > 0
    assert rows[0]["host_ms"] > 0 and rows[0]["host_share"] > 0
    assert "| Guidance-v0 | 2 |" in (tmp_path / "throughput.md").read_text()


def test_throughput_host_only_restores_the_sampler():
    """The host-only timing stubs steps.step / churn_noise for its block only: the env is
    stepped through the stubs (the state stays x_T) and the real functions are back after,
    also when the env raises."""
    from agents.benchmark import throughput as T

    real = (steps.step, steps.churn_noise)
    env = gym.make_vec(
        "diffusion_gym/Clock-v0", num_envs=2, vectorization_mode="vector_entry_point"
    )
    env.reset(seed=0)
    x_T = batch_of(env).x_T.clone()
    assert T._host_only(lambda i: env.step(np.zeros((2, 1), np.float32)), 2) > 0
    assert torch.equal(batch_of(env).x, x_T)  # the stub returned copies of its input
    assert (steps.step, steps.churn_noise) == real

    def boom(i):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        T._host_only(boom, 1)
    assert (steps.step, steps.churn_noise) == real
    env.close()


def test_reference_accuracy_script_reports_the_extrapolation_gain():
    """benchmarks/reference_accuracy.py: the extrapolated solve beats the plain one."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "reference_accuracy.py"), "--presets",
         "art-gauss1d", "--steps", "16", "32", "--fine", "512", "--num-samples", "32"],
        capture_output=True, text=True, check=True, cwd=root,
    ).stdout  # fmt: skip
    rows = [r.split("|") for r in out.splitlines() if r.startswith("| art-gauss1d")]
    assert len(rows) == 2
    for r in rows:
        plain, extrapolated = float(r[3]), float(r[4])
        assert extrapolated < plain / 5  # measured 13x at 16 steps, 24x at 32


def test_exact_schedules_script_finds_the_exact_ring8_curve(tmp_path):
    """benchmarks/exact_schedules.py: on gmm-ring8 a re-solved σ_2 makes 3-step Heun exact to
    round-off on held-out noise, where a σ_2 off by 1e-3 relative is not."""
    root = Path(__file__).resolve().parents[1]
    sig = [80.0, 4.809, 0.3634, 0.0]  # off the curve: σ_2* = 0.363102 for σ_1 = 4.809
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps({"sigmas": sig, "solver": "heun", "budget": 3,
                                "preset": "gmm-ring8"}))  # fmt: skip
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "exact_schedules.py"), "--sigma1", "2",
         "--schedule", str(path), "--train-samples", "64", "--num-samples", "128",
         "--seeds", "0"],
        capture_output=True, text=True, check=True, cwd=root,
    ).stdout  # fmt: skip
    rows = {r.split("|")[1].strip(): float(r.split("|")[2]) for r in out.splitlines()
            if r.startswith("| learned") or r.startswith("| σ1=")}  # fmt: skip
    assert len(rows) == 3 and rows["learned"] > 1e-4  # measured 3.4e-4
    assert all(v < 1e-10 for k, v in rows.items() if k != "learned")  # measured 1e-15–1e-14
