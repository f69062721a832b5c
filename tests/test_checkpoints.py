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
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from agents.train import main

PHASES = ("partial", "before_replace", "after_replace")

#: The long kill test (2-3 min) runs only with DIFFUSION_GYM_LONG_TESTS=1 (CI runs -m slow too).
LONG = pytest.mark.skipif(
    not os.environ.get("DIFFUSION_GYM_LONG_TESTS"), reason="set DIFFUSION_GYM_LONG_TESTS=1"
)

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


def _fork_main(argv: list[str], stall: str, stderr: str = os.devnull) -> int:
    """Fork ``main(argv)`` with ``DIFFUSION_GYM_IO_STALL=stall``, its stdout sent to
    /dev/null and its stderr to ``stderr``; returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.environ["DIFFUSION_GYM_IO_STALL"] = stall
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the child ends with _exit
            sys.stderr = open(stderr, "w", buffering=1)  # noqa: SIM115
            code = main(argv)
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def _wait_for(path: Path, pid: int, timeout: float = 60) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert time.monotonic() - t0 < timeout and os.waitpid(pid, os.WNOHANG)[0] == 0
        time.sleep(0.02)


def killed_run(argv: list[str], n: int, phase: str, marker: Path, timeout: float = 60) -> bool:
    """Fork ``main(argv)`` with the n-th atomic write stalled at ``phase``; SIGKILL it there.
    Returns True if the kill landed inside that write, False if the run ended first."""
    marker.unlink(missing_ok=True)
    pid = _fork_main(argv, f"{n}:{phase}:{marker}")
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


@pytest.mark.parametrize(
    "writes",
    [(1, 2, 3), pytest.param((1, 2, 3, 4, 5, 6, 7, 8), marks=[pytest.mark.slow, LONG])],
    ids=["ci", "long"],
)
def test_irl_sigkill_inside_writes_then_resume_is_bit_identical(tmp_path, writes):
    # writes: 1 config.yaml, 2-3 checkpoints round_1, round_2, then eval.json, eval.md,
    # strategies.json, plots, summary.json
    points = [(n, p) for n in writes for p in PHASES]
    assert _kill_and_resume(tmp_path, IRL, points) == len(points)


def test_art_ac_sigkill_inside_writes_then_resume_is_bit_identical(tmp_path):
    # writes: 1 config.yaml, 2-4 art_ac_2, art_ac_4, art_ac_5, then results
    points = [(n, p) for n in (2, 3, 4) for p in PHASES]
    assert _kill_and_resume(tmp_path, ART_AC, points) == len(points)


def test_art_ppo_sigkill_inside_writes_then_resume_is_bit_identical(tmp_path):
    # writes: 1 config.yaml, 2-4 step_48, step_96, step_144, then results
    points = [(n, p) for n in (2, 3, 4) for p in PHASES]
    assert _kill_and_resume(tmp_path, ART, points) == len(points)


def test_art_closed_loop_residual_sigkill_then_resume_is_bit_identical(tmp_path):
    """A state-dependent policy acting around a fixed schedule (ResidualActions): killed in a
    checkpoint write and resumed, the run ends with the same eval.json and closed_loop.json."""
    from diffusion_gym import schedules
    from diffusion_gym.envs.clock import schedule_from_actions

    start = tmp_path / "start.json"
    schedules.save_schedule(start, schedule_from_actions([0.3, -0.4, 0.0]), "unipc-2", 3,
                            "gmm-ring8")  # fmt: skip
    data = {**ART, "preset": "gmm-ring8", "solver": "unipc-2", "base": "edm",
            "policy_inputs": "full", "obs_history": True, "reward_transform": "scale",
            "residual_schedule": str(start)}  # fmt: skip
    cfg = _config(tmp_path, data)
    assert main([cfg, "--out", str(tmp_path / "ref")]) == 0
    want = [(tmp_path / "ref" / f).read_text() for f in ("eval.json", "closed_loop.json")]
    out = tmp_path / "run"
    assert killed_run([cfg, "--out", str(out)], 3, PHASES[0], tmp_path / "marker")
    assert main([cfg, "--out", str(out), "--resume"]) == 0
    got = [(out / f).read_text() for f in ("eval.json", "closed_loop.json")]
    assert got[0] == want[0]
    # closed_loop.json names the model file it scored: the runs' own directories differ
    assert got[1] == want[1].replace(str(tmp_path / "ref"), str(out))


def test_art_sac_sigkill_then_resume_restores_the_replay_buffer(tmp_path):
    sac = {"learning_starts": 16, "batch_size": 16, "buffer_size": 1000}
    data = {**ART, "algo": "sac", "reward_transform": "log", "algo_kwargs": sac}
    points = [(3, "before_replace"), (4, "after_replace")]
    assert _kill_and_resume(tmp_path, data, points) == len(points)


@pytest.mark.parametrize(
    ("data", "saved", "where"),
    [({**IRL, "rounds": 3}, "round_2", "checkpoint of round 2"),
     (ART, "step_72", "checkpoint at step 72")],
    ids=["irl", "art-ppo"],
)  # fmt: skip
def test_sigint_saves_a_checkpoint_exits_130_and_resume_finishes_the_same_run(
    tmp_path, monkeypatch, data, saved, where
):
    cfg, marker, err = _config(tmp_path, data), tmp_path / "marker", tmp_path / "stderr"
    assert main([cfg, "--out", str(tmp_path / "ref")]) == 0
    out = tmp_path / "run"
    # stall 1 s inside the first checkpoint and press Ctrl-C there: the trainer goes on to its
    # next safe point (the end of round 2; the next rollout start), saves it and stops
    monkeypatch.setenv("DIFFUSION_GYM_IO_STALL_SECONDS", "1")
    pid = _fork_main([cfg, "--out", str(out)], f"2:after_replace:{marker}", str(err))
    _wait_for(marker, pid)
    os.kill(pid, signal.SIGINT)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 130
    lines = [ln for ln in err.read_text().splitlines() if ln.strip()]
    assert "Traceback" not in err.read_text()
    assert lines[-1].startswith(f"diffusion-gym train: interrupted: {where}")
    assert "--resume" in lines[-1]
    assert (out / "checkpoints" / saved / "MANIFEST.json").is_file()
    assert not (out / "eval.json").exists()
    monkeypatch.delenv("DIFFUSION_GYM_IO_STALL_SECONDS")
    assert main([cfg, "--out", str(out), "--resume"]) == 0
    assert _results(out) == _results(tmp_path / "ref")


# ---------------------------------------------------------------------------------------------
# Reused --out, safe state files, stray names


def test_reused_out_resumes_only_the_same_config_and_overwrite_starts_afresh(tmp_path, capsys):
    cfg, out = _config(tmp_path, ART_AC), str(tmp_path / "run")
    assert main([cfg, "--out", out]) == 0
    first = (tmp_path / "run" / "eval.json").read_text()
    capsys.readouterr()
    assert main([cfg, "--out", out, "seed=1"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([cfg, "--out", out, "seed=1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "seed: 0 -> 1" in err
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["seed"] == 0
    assert main([cfg, "--out", out, "--resume", "progress=false"]) == 0  # same run: fine
    assert (tmp_path / "run" / "eval.json").read_text() == first
    assert main([cfg, "--out", out, "seed=1", "--overwrite"]) == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["seed"] == 1
    assert main([cfg, "--out", str(tmp_path / "other"), "seed=1"]) == 0
    assert (tmp_path / "run" / "eval.json").read_text() == _results(tmp_path / "other")[0]
    (tmp_path / "run" / "config.yaml").write_text("")  # e.g. written by hand: not a run
    assert main([cfg, "--out", out, "--resume"]) == 2
    assert "not a diffusion-gym run config" in capsys.readouterr().err
    assert main([cfg, "--out", out, "--overwrite"]) == 0
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "notes.txt").write_text("mine")
    assert main([cfg, "--out", str(tmp_path / "stranger"), "--overwrite"]) == 2
    assert (tmp_path / "stranger" / "notes.txt").read_text() == "mine"


class _Payload:
    """Unpickling this runs code (it touches a file): what a crafted checkpoint would do."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_resume_never_unpickles_code_and_ignores_stray_checkpoint_names(tmp_path, capsys):
    from agents import cli
    from diffusion_gym.io import atomic_dir

    cfg, out = _config(tmp_path, IRL), tmp_path / "run"
    assert main([cfg, "--out", str(out)]) == 0
    ckpts = out / "checkpoints"
    # stray names next to the checkpoints are ignored by --resume
    (ckpts / "model_best.zip").write_bytes(b"")
    (ckpts / "round_x").mkdir()
    (ckpts / "round_7").mkdir()  # no manifest: incomplete, skipped
    assert main([cfg, "--out", str(out), "--resume"]) == 0
    # a crafted state.pt (with a valid manifest) is refused, and its code never runs
    ran = tmp_path / "code-ran"
    with atomic_dir(ckpts / "round_9") as d:
        torch.save({"round": 1, "x": _Payload(ran)}, d / "state.pt")
    capsys.readouterr()
    assert cli.main(["train", cfg, "--out", str(out), "--resume"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # (after a note on the stray round_7)
    assert last.startswith("diffusion-gym train: error: cannot read checkpoint state")
    assert "round_9" in last
    assert not ran.exists()


# ---------------------------------------------------------------------------------------------
# Seeds


def test_irl_rounds_and_envs_draw_independent_noise():
    from agents.irl import IRLTrainer
    from agents.train import load_config

    cfg = load_config({**IRL, "env": {**IRL["env"], "num_envs": 32}})[1]
    tr = IRLTrainer(cfg)
    dim = tr.env.denoiser.dim
    starts = [tuple(row) for r in range(3) for row in tr.seed_round(r)[:, :dim].tolist()]
    assert len(set(starts)) == 3 * 32  # was 34 of 96 with seed * 1_000_003 + r
    assert tr.env_seeds(1) == tr.env_seeds(1) and tr.env_seeds(1) != tr.env_seeds(2)


@pytest.mark.parametrize("seed", [4295, 2**32, 2**63 - 1])
def test_seeds_over_the_whole_range_train(seed):
    from agents.art import make_env, make_model
    from agents.irl import IRLTrainer
    from agents.train import load_config

    tr = IRLTrainer(load_config(IRL, [f"seed={seed}"])[1])
    tr.train_round()
    _, cfg = load_config(ART, [f"seed={seed}"])
    env, _ = make_env(cfg)
    model = make_model(cfg, env)
    model.learn(cfg.num_envs * cfg.budget)
    env.close()


@pytest.mark.parametrize("data", [IRL, ART, ART_AC], ids=["irl", "art", "art_ac"])
def test_bad_seeds_and_settings_fail_before_any_work(data, tmp_path, capsys):
    cfg = _config(tmp_path, data)
    bad = ["seed=-1", f"seed={2**63}", "eval.metrics=[nope]", "eval.num_samples=0",
           "eval.seeds=[]", "eval.seeds=[-3]", "checkpoint_every=0"]  # fmt: skip
    for i, override in enumerate(bad):
        out = tmp_path / f"o{i}"
        t0 = time.monotonic()
        assert main([cfg, "--out", str(out), override]) == 2, override
        assert time.monotonic() - t0 < 5
        key = override.split("=")[0].split(".")[-1]
        assert key in capsys.readouterr().err, override
        assert not (out / "config.yaml").exists()


@pytest.mark.parametrize("kind", ["clock", "guidance"])
def test_restore_episodes_continues_the_env_streams_bit_for_bit(kind, make_clock, make_guidance):
    import numpy as np

    make = make_clock if kind == "clock" else make_guidance
    env, twin = make(num_envs=4), make(num_envs=4)
    act = (lambda: np.zeros((4, 1), np.float32)) if kind == "clock" else (lambda: np.ones(4, int))
    obs, _ = env.reset(seed=3)
    done = False
    while not done:  # the first episode ends; SAME_STEP autoreset begins episode 1
        obs, _, term, trunc, _ = env.step(act())
        done = bool(term.all() or trunc.all())
    assert env.episode_index.tolist() == [1] * 4
    restored = twin.restore_episodes(env.base_seeds.cpu().numpy(), env.episode_index.cpu().numpy())
    np.testing.assert_array_equal(restored, obs)
    for _ in range(3):
        a, b = env.step(act()), twin.step(act())
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="shape"):
        twin.restore_episodes([1, 2], [0, 0])
    with pytest.raises(ValueError, match=">= 0"):
        twin.restore_episodes([-1] * 4, [0] * 4)
