"""Crash-safe checkpoints and exact resume (issue #17 items 1-4, 8).

The kill test forks ``diffusion-gym train`` (a fork of this process: no interpreter start per
kill), makes the n-th atomic write stall at a chosen phase through the test hook of
:mod:`diffusion_gym.io` (``DIFFUSION_GYM_IO_STALL``), SIGKILLs the child there, then runs
``--resume`` and compares the final ``eval.json`` (and ``mean_schedules.jsonl``) with an
uninterrupted run's, byte for byte.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml

from agents.train import main

PHASES = ("partial", "before_replace", "after_replace")

IRL = {
    "agent": "irl",
    "rounds": 2,
    "checkpoint_every": 1,
    "progress": False,
    "env": {"num_envs": 16, "num_steps": 3, "guidance_weights": [1.0, 2.0], "gammas": [0.0]},
    "algo": {"net_arch": [8], "batch_size": 24, "n_epochs": 1},
    "discriminator": {"hidden": [8], "epochs": 1, "batch_size": 24},
    "eval": {"num_samples": 32, "seeds": [0], "metrics": ["energy"]},
}
ART_EVAL = {"num_samples": 32, "seeds": [0], "metrics": ["rmse"], "rho_grid": [7.0],
            "oracle": False, "reference_steps": 8, "train_samples": 16}  # fmt: skip
ART = {
    "agent": "art", "preset": "art-gauss1d", "budget": 3, "solver": "euler", "base": "linear",
    "num_envs": 8, "total_timesteps": 144, "bank_size": 32, "reference_steps": 16,
    "distill_samples": 4, "progress": False, "checkpoint_every": 48, "net_arch": [8],
    "algo_kwargs": {"n_steps": 3, "batch_size": 24, "n_epochs": 2}, "eval": ART_EVAL,
}  # fmt: skip
ART_AC = {
    "agent": "art", "preset": "art-gauss1d", "budget": 3, "solver": "euler", "base": "linear",
    "algo": "art_ac", "progress": False, "checkpoint_every": 2,
    "actor_critic": {"iterations": 5, "batch_size": 8, "hidden": 8}, "eval": ART_EVAL,
}  # fmt: skip


@pytest.fixture(autouse=True)
def _quiet_one_thread(monkeypatch):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.delenv("DIFFUSION_GYM_IO_STALL", raising=False)
    yield
    torch.set_num_threads(n)


def _config(tmp: Path, data: dict) -> str:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _silent_main(argv: list[str]) -> int:
    """``main`` with stdout/stderr sent to /dev/null (the forked child's output)."""
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    return main(argv)


def killed_run(argv: list[str], n: int, phase: str, marker: Path, timeout: float = 60) -> bool:
    """Fork ``main(argv)`` with the n-th atomic write stalled at ``phase``; SIGKILL it there.
    Returns True if the kill landed inside that write, False if the run ended first."""
    marker.unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.environ["DIFFUSION_GYM_IO_STALL"] = f"{n}:{phase}:{marker}"
            code = _silent_main(argv)
        finally:
            os._exit(code)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if marker.exists():
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            return True
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WEXITSTATUS(status) == 0, f"the child failed with {status}"
            return False
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"no stall at write {n} ({phase}) within {timeout} s")


def _results(out: Path) -> tuple[str, str]:
    log = out / "mean_schedules.jsonl"
    return (out / "eval.json").read_text(), log.read_text() if log.exists() else ""


def _kill_and_resume(tmp_path: Path, data: dict, points: list[tuple[int, str]]) -> int:
    """Uninterrupted run, then for each point a killed run + ``--resume``; every resumed run
    must end with the uninterrupted run's eval.json (and mean-schedule log) bit for bit."""
    cfg = _config(tmp_path, data)
    ref_out = tmp_path / "ref"
    assert main([cfg, "--out", str(ref_out)]) == 0
    reference = _results(ref_out)
    kills = 0
    for i, (n, phase) in enumerate(points):
        out = tmp_path / f"run{i}"
        kills += killed_run([cfg, "--out", str(out)], n, phase, tmp_path / "marker")
        assert main([cfg, "--out", str(out), "--resume"]) == 0, (n, phase)
        assert _results(out) == reference, f"resume after a kill in write {n} ({phase}) differs"
    return kills


def test_irl_sigkill_inside_writes_then_resume_is_bit_identical(tmp_path):
    # writes: 1 config.yaml, 2-3 checkpoints round_1, round_2, 4.. eval.json, eval.md, ...
    points = [(n, p) for n in (1, 2, 3, 4, 5) for p in PHASES]
    assert _kill_and_resume(tmp_path, IRL, points) == len(points)


def test_art_ac_sigkill_inside_writes_then_resume_is_bit_identical(tmp_path):
    # writes: 1 config.yaml, 2-4 art_ac_2, art_ac_4, art_ac_5, then results
    points = [(n, p) for n in (2, 3, 4) for p in PHASES]
    assert _kill_and_resume(tmp_path, ART_AC, points) == len(points)


def test_art_ppo_sigkill_inside_writes_then_resume_is_bit_identical(tmp_path):
    # writes: 1 config.yaml, 2-4 step_48, step_96, step_144, then results
    points = [(n, p) for n in (2, 3, 4) for p in PHASES]
    assert _kill_and_resume(tmp_path, ART, points) == len(points)


def test_art_sac_sigkill_then_resume_restores_the_replay_buffer(tmp_path):
    data = {**ART, "algo": "sac", "reward_transform": "log",
            "algo_kwargs": {"learning_starts": 16, "batch_size": 16, "buffer_size": 1000}}  # fmt: skip
    points = [(3, "before_replace"), (4, "after_replace")]
    assert _kill_and_resume(tmp_path, data, points) == len(points)
