"""Schedules per solver: the compare-solvers path (tiny config), the last-step conventions,
Align Your Steps' refinement + subdivision, and the published schedule.json files."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from agents.art import Config as ArtConfig
from agents.art import EvalConfig
from agents.art import run as art_run
from baselines import compare as C  # noqa: N812
from baselines import schedules as B
from baselines.evaluate import FixedSchedule, evaluate
from diffusion_gym import presets, schedules, steps
from diffusion_gym.noise import make_noise

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "baselines" / "configs" / "compare-solvers-tiny.yaml"


def test_solver_names_mirror_the_registry():
    assert tuple(steps.SOLVERS) == schedules.SOLVER_NAMES


def test_sigma_min_convention_stops_at_sigma_min(ring8):
    """``last_step="sigma-min"`` returns x(σ_min) (hand-written Euler, no final denoise) and
    costs one NFE less than the same σ's run to 0."""
    sig = schedules.karras(4, ring8.sigma_min, ring8.sigma_max, 7.0)
    x_T, streams = make_noise(ring8, 16, 0)  # noqa: N806
    smin = FixedSchedule("s", sig, "euler", last_step="sigma-min")
    full = FixedSchedule("d", sig, "euler")
    assert (smin.nfe, full.nfe) == (3, 4)
    assert FixedSchedule("h", sig, "heun", last_step="sigma-min").nfe == 6  # 2 per Heun step
    x = x_T.clone()
    for s, t in zip(sig[:3].tolist(), sig[1:4].tolist(), strict=True):
        x = x + (t - s) * (x - ring8.denoiser(x, torch.full((16,), s, dtype=x.dtype))) / s
    got = smin.sample(ring8, x_T.clone(), None, streams)
    assert torch.allclose(got, x, atol=1e-12)
    assert float((full.sample(ring8, x_T.clone(), None, streams) - x).abs().max()) > 1e-6
    with pytest.raises(ValueError, match="last_step"):
        FixedSchedule("bad", sig, "euler", last_step="zero")


def test_sigma_min_steps_fit_the_budget():
    for sv in steps.SOLVERS:
        for nfe in (3, 5, 9):
            m = C._sigma_min_steps(nfe, sv)
            assert steps.nfe_of(m + 1, sv) - 1 <= nfe < steps.nfe_of(m + 2, sv) - 1


def test_ays_subdivision_and_refinement(ring8):
    """Refine at 2 steps, subdivide to 3 and refine: endpoints fixed, KLUB below the
    log-linear start at the same n (the objective the paper minimises)."""
    n = 3
    sig = B.ays(ring8, n, num_samples=64, sweeps=2, candidates=12, start_steps=2)
    assert sig.shape == (n + 1,) and float(sig[-1]) == 0.0
    assert float(sig[0]) == pytest.approx(ring8.sigma_max)
    assert float(sig[-2]) == pytest.approx(ring8.sigma_min)
    g = torch.Generator().manual_seed(B.TRAIN_SALT)
    labels = torch.arange(64) % 8
    x0 = ring8.data.sample(64, labels, generator=g)
    eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    start = B.classic("log-linear", n, ring8)[:-1].tolist()
    assert B._klub_total(ring8, x0, eps, labels, sig[:-1].tolist(), 8) < B._klub_total(
        ring8, x0, eps, labels, start, 8
    )
    assert B._subdivide([4.0, 1.0]) == [4.0, 2.0, 1.0]
    # n below start_steps and a finer start than n (interpolated, then refined) both work
    assert B.ays(ring8, 4, num_samples=32, sweeps=1, candidates=4, start_steps=3).shape == (5,)


def test_compare_solvers_tiny(tmp_path):
    """The tiny compare-solvers config: every solver × schedule row (and the σ_min
    convention) on the same noise; NFE per row; a learned row read from ``learned_dir``."""
    learned = tmp_path / "learned" / "gmm-ring8" / "euler" / "nfe5"
    learned.mkdir(parents=True)
    ring = schedules.karras(5, 0.002, 80.0, 5.0)
    schedules.save_schedule(learned / "schedule.json", ring, "euler", 5, "gmm-ring8", nfe=5)
    cfg = C.load_config(TINY, [f"learned_dir={tmp_path / 'learned'}", "seeds=[0]"])
    res = C.run_compare(cfg, tmp_path / "out", progress=False)
    assert set(res) == {"gmm-ring8/nfe3", "gmm-ring8/nfe5"}
    rows = res["gmm-ring8/nfe5"]
    for sv in ("euler", "heun"):
        for name in ("edm-rho7", "edm-best", "log-linear", "ays", "gits-dp", "oracle"):
            assert rows[f"{sv}/{name}"]["nfe"]["mean"] == 5
            assert rows[f"{sv}/{name}"]["sec_per_1k"]["mean"] > 0
        assert rows[f"{sv}/edm-rho7@smin"]["nfe"]["mean"] <= 5
    assert "euler/learned" in rows and "heun/learned" not in rows
    assert "euler/learned" not in res["gmm-ring8/nfe3"]
    # the learned row is that file's schedule, scored on the same noise as the others
    again = evaluate([FixedSchedule("x", ring, "euler")], "gmm-ring8", num_samples=64,
                     seeds=[0], reference=16, metrics=["rmse"], progress=False)  # fmt: skip
    assert rows["euler/learned"]["rmse"]["mean"] == pytest.approx(again["x"]["rmse"]["mean"])
    # the oracle is fitted per solver: Heun's beats Heun on EDM ρ=7 by a wide margin here
    assert rows["heun/oracle"]["rmse"]["mean"] < 0.5 * rows["heun/edm-rho7"]["rmse"]["mean"]
    saved = json.loads((tmp_path / "out" / "gmm-ring8" / "nfe5" / "strategies.json").read_text())
    assert saved["euler/edm-rho7@smin"]["last_step"] == "sigma-min"


def test_compare_solvers_config_errors():
    with pytest.raises(ValueError, match="solver"):
        C.load_config(TINY, ["solvers=[euler, rk4]"])
    with pytest.raises(ValueError, match="last_step"):
        C.load_config(TINY, ["last_step=[zero]"])
    with pytest.raises(ValueError, match="schedule rows only"):
        C.load_config(TINY, ["strategies=[edm-rho7, cfg-2.0]"])


def test_headline_config_loads():
    cfg = C.load_config(ROOT / "baselines" / "configs" / "compare-solvers.yaml")
    assert set(cfg.solvers) == set(steps.SOLVERS) and cfg.nfe == [3, 5, 7, 9]
    assert cfg.oracle.num_samples >= 1024 and cfg.num_samples * len(cfg.seeds) == 8 * 1024


def test_published_schedules_load_and_are_valid():
    shipped = schedules.published()
    assert shipped, "no schedule.json files shipped in diffusion_gym/schedules_data"
    for preset, solver, nfe in shipped:
        sig = schedules.load_published(preset, solver, nfe)
        rec = schedules.find_published(preset, solver, nfe)
        assert rec["solver"] == solver and rec["preset"] == preset and rec["nfe"] == nfe
        assert solver in steps.SOLVERS and steps.nfe_of(sig.shape[0] - 1, solver) == nfe
        top = rec.get("sigma_max") or presets.make(preset).sigma_max  # the preset's σ_max
        assert math.isclose(float(sig[0]), top) and float(sig[-1]) == 0.0 and rec["source"]
        assert bool((sig[1:] < sig[:-1]).all())
    with pytest.raises(ValueError, match="published:"):
        schedules.load_published("gmm-64d", "euler", 10_000)


def test_publish_picks_the_best_learned_on_validation(tmp_path):
    """benchmarks/publish_schedules.py on a tiny compare run: one file per solver × NFE,
    recording the solver and NFE, whose validation RMSE is at most the compare oracle's."""
    spec = importlib.util.spec_from_file_location(
        "publish_schedules", ROOT / "benchmarks" / "publish_schedules.py"
    )
    pub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pub)
    cfg = C.load_config(
        TINY,
        [
            "nfe=[5]",
            "solvers=[euler, dpmpp-2m]",
            "seeds=[0]",
            "last_step=[denoise]",
            "strategies=[edm-rho7, oracle]",
        ],  # fmt: skip
    )
    C.run_compare(cfg, tmp_path / "run", progress=False)
    args = ["--from", str(tmp_path / "run"), "--presets", "gmm-ring8", "--solvers", "euler",
            "dpmpp-2m", "--nfe", "5", "--iterations", "3", "--train-samples", "64",
            "--val-samples", "32", "--reference-steps", "16"]  # fmt: skip
    args += ["--out", str(tmp_path / "pub")]
    assert pub.main(args) == 0
    for sv in ("euler", "dpmpp-2m"):
        rec = schedules.load_schedule(tmp_path / "pub" / "gmm-ring8" / sv / "nfe5.json")
        assert rec["solver"] == sv and rec["nfe"] == 5 and "validation RMSE" in rec["source"]
        rows = pub._rows(tmp_path / "run", "gmm-ring8", 5, sv)
        ring = presets.make("gmm-ring8")
        val = B.training_set(ring, 32, 1, 16)
        assert B.schedule_rmse(ring, rec["sigmas"], sv, val) <= B.schedule_rmse(
            ring, rows["oracle"], sv, val
        )
    # a compare run of ONE solver names its rows without the "<solver>/" prefix; they are
    # found by the records' solver, and a solver the run does not have is an error (not an
    # unvalidated oracle published from scratch)
    over = ["nfe=[5]", "solvers=[heun]", "seeds=[0]", "last_step=[denoise, sigma-min]",
            "strategies=[edm-rho7, oracle]"]  # fmt: skip
    one = C.load_config(TINY, over)
    C.run_compare(one, tmp_path / "one", progress=False)
    rows = pub._rows(tmp_path / "one", "gmm-ring8", 5, "heun", smin=True)
    assert {"edm-rho7", "oracle"} <= set(rows)
    with pytest.raises(ValueError, match="no euler rows"):
        pub._rows(tmp_path / "one", "gmm-ring8", 5, "euler")
    args1 = ["--from", str(tmp_path / "one"), "--presets", "gmm-ring8", "--solvers", "heun",
             "--nfe", "5", "--iterations", "3", "--train-samples", "64", "--val-samples", "32",
             "--reference-steps", "16", "--out", str(tmp_path / "pub1")]  # fmt: skip
    assert pub.main(args1) == 0
    rec = schedules.load_schedule(tmp_path / "pub1" / "gmm-ring8" / "heun" / "nfe5.json")
    assert "validation RMSE" in rec["source"]


@pytest.mark.parametrize("solver", ["ipndm"])
def test_art_learns_for_a_multistep_solver(tmp_path, solver):
    """ART's PPO path takes ``solver``: it trains on the Clock env with that solver, exports a
    schedule.json recording it (budget K = NFE for a multistep solver), and the harness scores
    the distilled schedule with that solver (rows at other budgets: transfer across NFE)."""
    ev = EvalConfig(num_samples=64, seeds=[0], metrics=["rmse", "nfe"], rho_grid=[7.0],
                    oracle=False, budgets=[3])  # fmt: skip
    kw = dict(total_timesteps=128, bank_size=32, reference_steps=16, distill_samples=8)
    algo_kwargs = {"n_steps": 4, "batch_size": 32}
    cfg = ArtConfig(preset="art-gauss1d", budget=4, solver=solver, base="edm", num_envs=16,
                    progress=False, eval=ev, algo_kwargs=algo_kwargs, **kw)  # fmt: skip
    res = art_run(cfg, tmp_path)
    rec = schedules.load_schedule(tmp_path / "schedule.json")
    assert rec["solver"] == solver and rec["budget"] == 4 and rec["nfe"] == 4
    assert res["art-ppo"]["nfe"]["mean"] == 4
    p = presets.make("art-gauss1d")
    x_T, streams = make_noise(p, 64, 0)  # noqa: N806
    want = steps.sample(p.denoiser, x_T, rec["sigmas"], solver=solver)
    got = FixedSchedule("a", rec["sigmas"], solver).sample(p, x_T.clone(), None, streams)
    assert torch.equal(want, got)
    moved = json.loads((tmp_path / "transfer.json").read_text())
    assert moved["art-ppo@K3"]["nfe"]["mean"] == 3
