"""examples/: every script runs end to end at a tiny budget (subprocess, as a user runs it),
and the RL Zoo command of docs/benchmarks.md trains the Clock-v0 recipe of agents/configs/zoo."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_CLOCK = ["--total-timesteps", "640", "--num-envs", "16", "--bank-size", "32",
              "--eval-samples", "32"]  # fmt: skip


def run_script(name: str, args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("script", ["cleanrl_ppo_clock.py", "sb3_clock.py"])
def test_clock_examples_run_and_report_heldout_rmse(script, tmp_path):
    res = run_script(script, TINY_CLOCK, tmp_path)
    assert res["total_timesteps"] == 640
    # the base schedule (a = 0, EDM rho = 7) on gmm-64d Heun K = 5 is ~0.7 RMSE off
    assert 0.3 < res["base_rmse"] < 1.5
    assert math.isfinite(res["heldout_rmse"]) and res["heldout_rmse"] > 0


def test_cleanrl_guidance_example_runs_with_the_irl_reward(tmp_path):
    args = ["--total-timesteps", "1024", "--num-envs", "64", "--eval-samples", "128"]
    res = run_script("cleanrl_ppo_guidance.py", args, tmp_path)
    assert res["reward"] == "irl" and res["best_constant"].startswith("const w=")
    assert math.isfinite(res["energy"]) and res["best_constant_energy"] > 0


def test_examples_reject_bad_arguments(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "cleanrl_ppo_guidance.py"), "--reward", "x"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and "--reward must be 'irl' or 'log_prob'" in proc.stderr


def test_rl_zoo_trains_the_clock_recipe(tmp_path):
    """The docs' RL Zoo command with the zoo file; its Clock-v0 entry is the recipe of
    examples/sb3_clock.py (env options and PPO hyperparameters)."""
    entry = yaml.safe_load((ROOT / "agents/configs/zoo/ppo.yml").read_text())[
        "diffusion_gym/Clock-v0"
    ]
    sys.path.insert(0, str(ROOT / "examples"))
    import sb3_clock

    assert {k: entry["env_kwargs"][k] for k in sb3_clock.ENV_KWARGS} == sb3_clock.ENV_KWARGS
    assert entry["n_envs"] * entry["n_steps"] == 64 * 8 * sb3_clock.ENV_KWARGS["budget"]
    # rl_zoo3's --env-kwargs replaces the file's dict: the recipe with a tiny bank
    kw = {**entry["env_kwargs"], "bank_size": 16, "reference_steps": 8}
    cmd = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "diffusion_gym/Clock-v0",
        "--gym-packages", "diffusion_gym", "-conf", str(ROOT / "agents/configs/zoo/ppo.yml"),
        "-n", "320", "-f", str(tmp_path), "--seed", "0", "--num-threads", "1",
        "--eval-freq", "-1", "--verbose", "0", "-params", "n_envs:2",
        "--env-kwargs", *[f"{k}:{v!r}" for k, v in kw.items()],
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "ppo" / "diffusion_gym-Clock-v0_1"
    assert (run / "diffusion_gym-Clock-v0.zip").exists()
    args = (run / "diffusion_gym-Clock-v0" / "args.yml").read_text()
    assert "log_terminal_error" in args and "gmm-64d" in args


def test_plain_rl_benchmark_table_ratios_against_the_art_mean():
    """benchmarks/plain_rl.py's table: mean over seeds and the ratio to ART's mean."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import plain_rl

    res = {
        "art": {0: {"heldout_rmse": 0.1, "total_timesteps": 8}, 1: {"heldout_rmse": 0.3}},
        "sb3-ppo": {0: {"heldout_rmse": 0.3, "base_rmse": 0.8, "train_seconds": 1.0}},
        "guidance-irl": {
            0: {"total_timesteps": 9, "energy": 0.2, "best_constant": "const w=1 γ=0",
                "best_constant_energy": 0.5, "train_seconds": 2.0}
        },
    }  # fmt: skip
    lines = [r for r in plain_rl.table(res).splitlines() if r.startswith("|")]
    rows = {r.split("|")[1].strip(): r.split("|") for r in lines}
    assert rows["art"][3].strip() == "0.2000" and rows["art"][5].strip() == "1.00"
    assert rows["sb3-ppo"][5].strip() == "1.50"
    assert rows["*base schedule (a = 0, EDM ρ = 7)*"][5].strip() == "4.00"
    assert rows["cleanrl-ppo s0"][3].strip() == "0.2000"
