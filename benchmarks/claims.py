"""Re-run every published figure from the configs in the repo and compare it with the docs.

One registry (:data:`CLAIMS`) lists each claim of README.md's results section and of the docs'
headline tables: an id, where the figure is documented, the commands that produce it (the
``diffusion-gym`` CLI or ``python -m baselines.digits``, with the repo's configs and
overrides), the documented values with a tolerance, and reduced budgets for ``--quick``.
Every reported figure is measured on the test seeds of :mod:`diffusion_gym.splits` (never
used for a tuning decision; configs ship with validation seeds). docs/claims.md holds the
split, the registry and the last full report.

    python benchmarks/claims.py --list                      # the registry
    python benchmarks/claims.py --quick --out runs/claims-quick   # reduced budgets, ~2 min
    python benchmarks/claims.py --only art-ring8 art-gauss1d --out runs/claims
    nice -n 10 python benchmarks/claims.py --out runs/claims --reuse   # the full run

Each run writes into ``OUT/<claim>/<run>/``; ``--reuse`` keeps a finished run there (a
``train`` run only if its stored config equals the requested one) instead of re-running it.
The report, ``OUT/claims.json`` and ``OUT/claims.md`` (atomic writes, ``diffusion_gym.io``),
holds every claim ever run into ``OUT`` in that mode (``--only`` updates its claims and keeps
the others): per figure the documented and the reproduced value, the tolerance and whether
it holds; per claim the commands, the wall time, the torch thread count and the machine.
``--quick`` compares only the figures that a reduced budget can reproduce (coarse
tolerances) and checks the relations each claim states (e.g. learned < best ρ) where the
reduced budget still shows them; the full run checks every figure. Exit status 1 if any
claim errors or a checked figure is outside its tolerance.

Threads: ``--threads N`` (default 1) sets ``torch.set_num_threads`` for the whole process and
``num_threads=N`` in every training config, so a figure does not depend on the machine's core
count; the count is recorded in the report.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from agents import cli
from agents.train import config_diff, config_to_dict, load_config
from baselines import digits as digits_eval
from diffusion_gym.config import read_yaml
from diffusion_gym.io import atomic_write_json, atomic_write_text
from diffusion_gym.splits import TEST_SEEDS, check_test_seeds, test_seeds

__all__ = ["CLAIMS", "Claim", "Figure", "Run", "Tol", "main", "run_claim"]


@dataclass(frozen=True)
class Tol:
    """A tolerance: ``rel`` (|m − d| ≤ v·|d|), ``abs`` (|m − d| ≤ v) or ``factor``
    (m and d of one sign and max(m/d, d/m) ≤ v, for errors that span decades)."""

    kind: str
    value: float

    def holds(self, measured: float, documented: float) -> bool:
        if not math.isfinite(measured):
            return False
        if self.kind == "rel":
            return abs(measured - documented) <= self.value * abs(documented)
        if self.kind == "abs":
            return abs(measured - documented) <= self.value
        if self.kind == "factor":  # same sign, ratio of magnitudes
            if measured * documented <= 0:
                return False
            q = measured / documented
            return max(q, 1 / q) <= self.value
        raise ValueError(f"Tol.kind must be 'rel', 'abs' or 'factor', got {self.kind!r}")

    def __str__(self) -> str:
        if self.kind == "rel":
            return f"±{100 * self.value:g} %"
        if self.kind == "abs":
            return f"±{self.value:g}"
        return f"×/÷ {self.value:g}"


def rel(v: float) -> Tol:
    return Tol("rel", v)


def absolute(v: float) -> Tol:
    return Tol("abs", v)


def factor(v: float) -> Tol:
    return Tol("factor", v)


#: A figure's value from the claim's run folders: ``get({run name: Path}) -> float``.
Getter = Callable[[dict[str, Path]], float]


@dataclass(frozen=True)
class Figure:
    """One documented figure.

    :param key: short name, unique within the claim (e.g. ``"learned seed 0"``).
    :param documented: the value the docs state.
    :param get: reads the reproduced value from the claim's run folders.
    :param tol: tolerance of the full run.
    :param quick_tol: tolerance at ``--quick`` budgets (None: reported, not checked).
    """

    key: str
    documented: float
    get: Getter
    tol: Tol
    quick_tol: Tol | None = None


@dataclass(frozen=True)
class Run:
    """One command of a claim: ``argv`` for the ``diffusion-gym`` CLI (``train``, ``compare``)
    or ``["baselines.digits", ...]`` for ``python -m baselines.digits``; ``{out}`` is the
    run's folder, ``{testN}`` the first N test seeds as a YAML list and ``{test0}`` the first
    test seed. ``quick`` is appended at ``--quick`` (later overrides win); a run with
    ``in_quick=False`` is skipped there (the first seed of a claim checks the machinery)."""

    name: str
    argv: tuple[str, ...]
    quick: tuple[str, ...] = ()
    in_quick: bool = True


@dataclass(frozen=True)
class Claim:
    """A claim: where it is documented, the runs that measure it, its figures, and the
    relations (``checks``: description → predicate on {figure key: value}) it states."""

    id: str
    where: str
    title: str
    runs: tuple[Run, ...]
    figures: tuple[Figure, ...]
    checks: tuple[tuple[str, Callable[[dict[str, float]], bool]], ...] = ()
    quick_checks: bool = True
    note: str = ""


# ---------------------------------------------------------------- readers of run outputs


def _load(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"expected result file {path} (did its run finish?)")
    return json.loads(path.read_text())


def _pick(table: dict, row: str) -> dict:
    """``table[row]``; a row ending in ``*`` is a prefix (exactly one match)."""
    if not row.endswith("*"):
        if row not in table:
            raise KeyError(f"row {row!r} not in results; rows: {sorted(table)}")
        return table[row]
    hits = [k for k in table if k.startswith(row[:-1])]
    if len(hits) != 1:
        raise KeyError(f"row prefix {row!r} matches {hits}; rows: {sorted(table)}")
    return table[hits[0]]


def row(run: str, name: str, metric: str, file: str = "eval.json", section: str = "") -> Getter:
    """Mean of ``metric`` for strategy ``name`` in ``<run>/<file>`` (``section``: the
    ``preset/nfeN`` key of a ``compare`` report)."""

    def get(dirs: dict[str, Path]) -> float:
        table = _load(dirs[run] / file)
        if section:
            table = table[section]
        return float(_pick(table, name)[metric]["mean"])

    return get


def summary(run: str, metric: str, key: str) -> Getter:
    """``summary.json[metrics][metric][key]`` of an IRL run."""
    return lambda dirs: float(_load(dirs[run] / "summary.json")["metrics"][metric][key])


def digits_row(run: str, name: str, key: str) -> Getter:
    """A row of ``digits_eval.json`` (``python -m baselines.digits``)."""
    return lambda dirs: float(_pick(_load(dirs[run] / "digits_eval.json"), name)[key])


# ---------------------------------------------------------------- the registry

_THREADS = "num_threads={threads}"


def _train(config: str, *over: str) -> tuple[str, ...]:
    return ("train", config, "--out", "{out}", "progress=false", _THREADS, *over)


def _irl_ring8() -> Claim:
    runs = tuple(
        Run(
            f"seed{s}",
            _train("agents/configs/irl-ring8.yaml", f"seed={s}", "eval.seeds={test2}"),
            (
                "rounds=4",
                "eval.num_samples=256",
                "eval.seeds={test1}",
                "eval.train_samples=64",
                "eval.every=0",
            ),
            in_quick=s == 0,
        )
        for s in range(4)
    )
    docs = {
        0: (0.168, 0.697, 0.361, -7.28),  # test seeds (docs/claims.md)
        1: (0.160, 0.710, 0.244, -4.97),
        2: (0.161, 0.709, 2.089, -30.45),
        3: (0.156, 0.718, 0.254, -5.27),
    }
    figs = [
        Figure(
            "best constant energy (const-w1-g0)",
            0.553,
            summary("seed0", "energy", "best_constant"),
            rel(0.05),
            rel(0.5),
        ),
        Figure(
            "best constant Fréchet",
            2.026,
            summary("seed0", "frechet", "best_constant"),
            rel(0.1),
            rel(0.5),
        ),
        Figure(
            "best constant loglik",
            -34.89,
            summary("seed0", "loglik", "best_constant"),
            rel(0.1),
            rel(0.5),
        ),
    ]
    for s, (energy, gain, frechet, loglik) in docs.items():
        figs += [
            Figure(
                f"policy energy, seed {s}",
                energy,
                summary(f"seed{s}", "energy", "policy"),
                rel(0.15),
            ),
            Figure(
                f"energy below best constant, seed {s}",
                gain,
                summary(f"seed{s}", "energy", "relative_improvement"),
                absolute(0.05),
            ),
            # off-ring outliers of a few samples move these (docs/irl_agent.md, seed 2)
            Figure(
                f"policy Fréchet, seed {s}",
                frechet,
                summary(f"seed{s}", "frechet", "policy"),
                factor(4),
            ),
            Figure(
                f"policy loglik, seed {s}",
                loglik,
                summary(f"seed{s}", "loglik", "policy"),
                factor(4),
            ),
        ]
    return Claim(
        "irl-ring8",
        "README.md (IRL table); docs/irl_agent.md (three training seeds)",
        "IRL argmax policy vs the best of 18 constant (w, γ), gmm-ring8-imperfect, Heun NFE 7",
        runs,
        tuple(figs),
        checks=(
            (
                "every seed's policy is below the best constant",
                lambda f: all(
                    f[f"policy energy, seed {s}"] < f["best constant energy (const-w1-g0)"]
                    for s in range(4)
                ),
            ),
        ),
        quick_checks=False,
    )


def _irl_bias() -> Claim:
    run = Run(
        "seed0",
        _train("agents/configs/irl-ring8-bias.yaml", "eval.seeds={test2}"),
        ("rounds=4", "eval.num_samples=256", "eval.seeds={test1}", "eval.train_samples=64"),
    )
    return Claim(
        "irl-bias",
        "README.md (IRL, bias correction); docs/irl_agent.md (Bias correction)",
        "IRL bias correction: class-histogram TV of unconditional sampling vs the IRL policy",
        (run,),
        (
            Figure(
                "TV, unconditional (const-w0-g0)",
                0.2422,
                row("seed0", "const-w0-g0", "class_tv"),
                rel(0.15),
                rel(0.5),
            ),
            Figure(
                "TV, IRL policy", 0.0293, row("seed0", "irl-policy", "class_tv"), absolute(0.015)
            ),
        ),
        checks=(
            (
                "policy TV below unconditional TV",
                lambda f: f["TV, IRL policy"] < f["TV, unconditional (const-w0-g0)"],
            ),
        ),
        quick_checks=False,
    )


def _irl_digits() -> Claim:
    run = Run(
        "seed0",
        _train("agents/configs/irl-digits.yaml", "eval.seeds={test1}"),
        (
            "rounds=1",
            "env.num_envs=8",
            "algo.episodes_per_round=1",
            "algo.batch_size=16",
            "eval.num_samples=32",
            "eval.temperatures=[]",
            "eval.train_samples=16",
        ),
    )
    return Claim(
        "irl-digits",
        "README.md (IRL, digits); docs/irl_agent.md (Digits)",
        "IRL on the digits U-Net, NFE 9: FD_digits of the policy vs constant w = 1",
        (run,),
        (
            Figure(
                "FD_digits, IRL policy", 29.55, row("seed0", "irl-policy", "fd_digits"), rel(0.25)
            ),
            Figure(
                "FD_digits, const-w1-g0", 20.76, row("seed0", "const-w1-g0", "fd_digits"), rel(0.15)
            ),
        ),
        checks=(
            (
                "the policy does not beat w = 1 (the documented negative result)",
                lambda f: f["FD_digits, IRL policy"] > f["FD_digits, const-w1-g0"],
            ),
        ),
        quick_checks=False,
    )


_ART_QUICK = (
    "eval.oracle=false",
    "eval.budgets=[]",
    "eval.transfer_presets=[]",
    "eval.num_samples=256",
    "eval.seeds={test1}",
    "eval.train_samples=64",
)


def _art_gauss1d() -> Claim:
    ppo = [
        Run(
            f"ppo-seed{s}",
            _train("agents/configs/art-gauss1d-ppo.yaml", f"seed={s}", "eval.seeds={test2}"),
            ("total_timesteps=4096", *_ART_QUICK),
            in_quick=s == 0,
        )
        for s in range(3)
    ]
    ac = Run(
        "art-ac",
        _train("agents/configs/art-gauss1d.yaml", "eval.seeds={test2}"),
        ("actor_critic.iterations=20", *_ART_QUICK),
    )
    figs = [
        Figure(f"PPO W2, seed {s}", v, row(f"ppo-seed{s}", "art-ppo", "w2"), rel(0.005))
        for s, v in enumerate((0.14596, 0.14599, 0.14595))
    ]
    figs += [
        Figure("ART actor-critic W2", 0.14745, row("art-ac", "art-art_ac", "w2"), rel(0.01)),
        Figure("EDM ρ = 7 W2", 0.2648, row("ppo-seed0", "edm-rho7", "w2"), rel(0.001), rel(0.001)),
        Figure(
            "best ρ W2", 0.1998, row("ppo-seed0", "edm-best-rho*", "w2"), rel(0.001), rel(0.001)
        ),
        Figure("oracle W2", 0.1459, row("ppo-seed0", "oracle", "w2"), rel(0.002)),
    ]
    return Claim(
        "art-gauss1d",
        "README.md (ART table, art-gauss1d row); docs/art_agent.md (1-D toy)",
        "ART-RL on the 1-D Gaussian toy, Euler K = 5: closed-form W2 of the learned schedule",
        (*ppo, ac),
        tuple(figs),
        checks=(
            (
                "PPO seed 0 within 1 % of the oracle",
                lambda f: f["PPO W2, seed 0"] <= 1.01 * f.get("oracle W2", math.inf),
            ),
            ("PPO seed 0 below the best ρ", lambda f: f["PPO W2, seed 0"] < f["best ρ W2"]),
        ),
        quick_checks=False,
    )


def _art_ring8() -> Claim:
    runs = [
        Run(
            f"seed{s}",
            _train("agents/configs/art-ring8.yaml", f"seed={s}", "eval.seeds={test3}"),
            ("total_timesteps=2048", "bank_size=256", *_ART_QUICK),
            in_quick=s == 0,
        )
        for s in range(3)
    ]
    runs[1:] = [
        Run(
            r.name,
            (*r.argv, "eval.oracle=false", "eval.budgets=[]", "eval.transfer_presets=[]"),
            r.quick,
            False,
        )
        for r in runs[1:]
    ]
    figs = [
        Figure(f"PPO RMSE, seed {s}", v, row(f"seed{s}", "art-ppo", "rmse"), factor(3))
        for s, v in enumerate((5.9e-5, 9.3e-5, 1.2e-4))
    ]
    figs += [
        Figure("EDM ρ = 7 RMSE", 1.174, row("seed0", "edm-rho7", "rmse"), rel(0.05), rel(0.2)),
        Figure("best ρ RMSE", 0.899, row("seed0", "edm-best-rho*", "rmse"), rel(0.05), rel(0.3)),
        Figure("oracle RMSE", 1.26e-7, row("seed0", "oracle", "rmse"), factor(10)),
        Figure(
            "transfer to gmm-grid",
            0.0516,
            row("seed0", "art-ppo@gmm-grid", "rmse", "transfer.json"),
            rel(0.25),
        ),
        Figure(
            "transfer to gmm-ring8-imperfect",
            0.245,
            row("seed0", "art-ppo@gmm-ring8-imperfect", "rmse", "transfer.json"),
            rel(0.25),
        ),
        Figure(
            "interpolated to K = 4",
            0.0717,
            row("seed0", "art-ppo@K4", "rmse", "transfer.json"),
            rel(0.25),
        ),
    ]
    return Claim(
        "art-ring8",
        "README.md (ART table, gmm-ring8 row); docs/art_agent.md (gmm-ring8)",
        "ART-RL PPO on gmm-ring8, Heun K = 3 (NFE 5): RMSE to the reference",
        tuple(runs),
        tuple(figs),
        checks=(
            (
                "every seed ≤ 0.5× the best ρ",
                lambda f: all(f[f"PPO RMSE, seed {s}"] <= 0.5 * f["best ρ RMSE"] for s in range(3)),
            ),
        ),
        quick_checks=False,
    )


def _art_gmm64d() -> Claim:
    over = (
        "eval.seeds={test8}",
        "eval.num_samples=1024",
        "eval.metrics=[rmse]",
        "eval.oracle=false",
    )
    quick = (
        "total_timesteps=1024",
        "num_envs=16",
        "restarts=1",
        "bank_size=128",
        "reference_steps=16",
        "eval.reference_steps=16",
        "eval.oracle=false",
        "eval.budgets=[]",
        "eval.num_samples=128",
        "eval.seeds={test1}",
        "eval.train_samples=64",
    )
    cfg = "agents/configs/art-gmm64d-long.yaml"
    base = Run(
        "baselines",
        (
            "compare",
            "baselines/configs/compare-solvers.yaml",
            "--out",
            "{out}",
            "--no-progress",
            "presets=[gmm-64d]",
            "nfe=[9]",
            "solvers=[heun]",
            "last_step=[denoise]",
            "strategies=[edm-rho7, edm-best, oracle]",
            "metrics=[rmse, nfe]",
            "seeds={test8}",
        ),
        (
            "seeds={test1}",
            "num_samples=128",
            "reference_steps=16",
            "oracle.iterations=3",
            "oracle.num_random=1",
            "oracle.num_samples=64",
        ),
    )
    runs = (
        Run("seed0", _train(cfg, "seed=0", *over, "eval.budgets=[3,4,6,8]"), quick),
        Run("seed10", _train(cfg, "seed=10", *over), quick, False),
        Run("seed20", _train(cfg, "seed=20", *over), quick, False),
        base,
    )
    figs = [
        Figure(f"PPO RMSE, base seed {s}", v, row(f"seed{s}", "art-ppo", "rmse"), rel(0.05))
        for s, v in ((0, 0.1024), (10, 0.1032), (20, 0.0991))
    ]
    sec = "gmm-64d/nfe9"
    figs += [
        Figure(
            "EDM ρ = 7 RMSE",
            0.698,
            row("baselines", "edm-rho7", "rmse", section=sec),
            rel(0.03),
            rel(0.2),
        ),
        Figure(
            "best ρ RMSE",
            0.661,
            row("baselines", "edm-best", "rmse", section=sec),
            rel(0.03),
            rel(0.2),
        ),
        Figure(
            "oracle RMSE (1,024 training x_T)",
            0.1447,
            row("baselines", "oracle", "rmse", section=sec),
            rel(0.05),
        ),
    ]
    for k, learned, edm in (
        (3, 0.757, 4.067),
        (4, 0.213, 1.749),
        (6, 0.101, 0.344),
        (8, 0.105, 0.154),
    ):
        figs += [
            Figure(
                f"interpolated to K = {k}",
                learned,
                row("seed0", f"art-ppo@K{k}", "rmse", "transfer.json"),
                rel(0.25),
            ),
            Figure(
                f"EDM ρ = 7 at K = {k}",
                edm,
                row("seed0", f"edm-rho7@K{k}", "rmse", "transfer.json"),
                rel(0.05),
            ),
        ]
    return Claim(
        "art-gmm64d",
        "README.md (ART table, gmm-64d row; budget transfer); docs/art_agent.md "
        "(gmm-64d, importance-sampled bank, restarts)",
        "ART-RL PPO on gmm-64d (art-gmm64d-long.yaml), Heun K = 5 (NFE 9), 8 × 1,024 test x_T",
        runs,
        tuple(figs),
        checks=(
            (
                "every base seed below the best ρ",
                lambda f: all(
                    f[f"PPO RMSE, base seed {s}"] < f["best ρ RMSE"] for s in (0, 10, 20)
                ),
            ),
        ),
        quick_checks=False,
        note="EDM ρ = 7, the best ρ and the oracle (fitted on 1,024 training x_T with "
        "compare-solvers.yaml's oracle budget) come from one compare run on the same test noise; "
        "the docs' former 'refined oracle' started from a schedule.json of a config no longer "
        "in the repo.",
    )


def _art_digits() -> Claim:
    run = Run(
        "seed0",
        _train("agents/configs/art-digits.yaml", "eval.seeds={test2}"),
        (
            "total_timesteps=128",
            "num_envs=8",
            "bank_size=8",
            "distill_samples=8",
            "reference_steps=8",
            "eval.reference_steps=8",
            "eval.num_samples=32",
            "eval.seeds={test1}",
            "eval.train_samples=8",
            "eval.rho_grid=[7.0]",
            "eval.budgets=[]",
        ),
    )
    m = "fd_digits"
    return Claim(
        "art-digits",
        "README.md (Digits, the NFE 9 row); docs/art_agent.md (digits)",
        "ART-RL on the digits U-Net, Heun K = 5 (NFE 9): every NFE-9 schedule in one run, "
        "same test noise (2 × 512)",
        (run,),
        (
            Figure("FD_digits, ART-RL", 7.28, row("seed0", "art-ppo", m), rel(0.2)),
            Figure("FD_digits, EDM ρ = 7", 23.66, row("seed0", "edm-rho7", m), rel(0.1)),
            Figure("FD_digits, best ρ", 27.45, row("seed0", "edm-best-rho*", m), rel(0.15)),
            Figure("FD_digits, log-linear", 79.84, row("seed0", "log-linear", m), rel(0.1)),
            Figure("FD_digits, uniform", 7213, row("seed0", "uniform", m), rel(0.1)),
            Figure("RMSE, ART-RL", 0.0737, row("seed0", "art-ppo", "rmse"), rel(0.2)),
            Figure("RMSE, EDM ρ = 7", 0.2125, row("seed0", "edm-rho7", "rmse"), rel(0.05)),
        ),
        checks=(
            (
                "ART-RL FD below EDM ρ = 7's",
                lambda f: f["FD_digits, ART-RL"] < f["FD_digits, EDM ρ = 7"],
            ),
        ),
        quick_checks=False,
    )


def _digits_nfe35() -> Claim:
    run = Run(
        "seed0",
        (
            "baselines.digits",
            "--out",
            "{out}",
            "--num-samples",
            "1000",
            "--seed",
            "{test0}",
            "--threads",
            "{threads}",
        ),
        ("--num-samples", "40"),
    )
    ref, heun18 = "real train images (reference)", "EDM rho=7, Heun 18 steps, w=1.0"
    return Claim(
        "digits-nfe35",
        "README.md (Digits, 35 NFE); docs/image_scale.md (Digits: measured)",
        "The shipped digits U-Net at 35 Heun NFE against real images (1,000 samples)",
        (run,),
        (
            Figure("FD_digits, 35 NFE", 5.09, digits_row("seed0", heun18, "fd"), rel(0.1)),
            Figure("FD_digits, real train images", 4.00, digits_row("seed0", ref, "fd"), rel(0.1)),
            Figure(
                "class accuracy, 35 NFE",
                0.980,
                digits_row("seed0", heun18, "class_accuracy"),
                absolute(0.01),
                absolute(0.15),
            ),
        ),
        quick_checks=False,
    )


def _baselines_ring8() -> Claim:
    run = Run(
        "compare",
        (
            "compare",
            "baselines/configs/compare-ring8.yaml",
            "--out",
            "{out}",
            "--no-progress",
            "seeds={test3}",
        ),
        (
            "seeds={test1}",
            "num_samples=128",
            "nfe=[5]",
            "oracle.iterations=5",
            "oracle.num_random=2",
            "ays.num_samples=32",
            "ays.sweeps=1",
            "gits.num_samples=16",
            "search.num_samples=32",
            "l2g.iterations=5",
            "l2g.particles=8",
            "strategies=[edm-rho7, edm-best, gits-dp, oracle, cfg-best, interval, learn-to-guide]",
        ),
    )
    e5, i5, i9 = "gmm-ring8/nfe5", "gmm-ring8-imperfect/nfe5", "gmm-ring8-imperfect/nfe9"

    def r(name, metric, section):
        return row("compare", name, metric, section=section)

    return Claim(
        "baselines-ring8",
        "README.md (Baselines); docs/baselines.md (gmm-ring8 tables)",
        "Schedule and guidance baselines on gmm-ring8 (exact / imperfect), Heun NFE 5 and 9",
        (run,),
        (
            Figure("ring8 NFE 5: oracle RMSE", 1.6e-4, r("oracle", "rmse", e5), factor(3)),
            Figure(
                "ring8 NFE 5: EDM ρ = 7 RMSE", 1.17, r("edm-rho7", "rmse", e5), rel(0.05), rel(0.3)
            ),
            Figure(
                "ring8 NFE 5: best ρ RMSE", 0.89, r("edm-best", "rmse", e5), rel(0.05), rel(0.3)
            ),
            Figure("ring8 NFE 5: GITS-DP RMSE", 0.16, r("gits-dp", "rmse", e5), rel(0.25)),
            Figure(
                "imperfect NFE 5: Learn to Guide energy",
                0.0045,
                r("learn-to-guide", "energy", i5),
                factor(2),
            ),
            Figure(
                "imperfect NFE 5: best constant energy",
                0.0213,
                r("cfg-best", "energy", i5),
                factor(1.5),
            ),
            Figure(
                "imperfect NFE 5: best interval energy",
                0.0367,
                r("interval", "energy", i5),
                factor(1.5),
            ),
            Figure(
                "imperfect NFE 9: Learn to Guide energy",
                0.0017,
                r("learn-to-guide", "energy", i9),
                factor(2),
            ),
            Figure(
                "imperfect NFE 9: best constant energy",
                0.0028,
                r("cfg-best", "energy", i9),
                factor(1.5),
            ),
            Figure(
                "imperfect NFE 9: best interval energy",
                0.0028,
                r("interval", "energy", i9),
                factor(1.5),
            ),
        ),
        checks=(
            (
                "NFE 5: Learn to Guide below the best constant and the best interval",
                lambda f: (
                    f["imperfect NFE 5: Learn to Guide energy"]
                    < min(
                        f["imperfect NFE 5: best constant energy"],
                        f["imperfect NFE 5: best interval energy"],
                    )
                ),
            ),
            (
                "NFE 5: oracle below GITS-DP below the best ρ",
                lambda f: (
                    f["ring8 NFE 5: oracle RMSE"]
                    < f["ring8 NFE 5: GITS-DP RMSE"]
                    < f["ring8 NFE 5: best ρ RMSE"]
                ),
            ),
        ),
        quick_checks=False,
    )


def _solvers_gmm64d() -> Claim:
    run = Run(
        "compare",
        (
            "compare",
            "baselines/configs/compare-solvers.yaml",
            "--out",
            "{out}",
            "--no-progress",
            "presets=[gmm-64d]",
            "seeds={test8}",
            "solvers=[unipc-2, unipc-3, ipndm]",
            "strategies=[edm-rho7, gits-dp, learned]",
            "metrics=[rmse, nfe]",
        ),
        (
            "seeds={test1}",
            "num_samples=128",
            "nfe=[3]",
            "solvers=[unipc-2, unipc-3]",
            "strategies=[edm-rho7, learned]",
            "reference_steps=32",
        ),
    )
    figs = []
    for nfe, (solver, sched, off), (lsolver, learned) in (
        (3, ("unipc-2", "edm-rho7@smin", 0.260), ("unipc-2", 0.254)),
        (5, ("unipc-3", "gits-dp", 0.167), ("unipc-2", 0.115)),
        (7, ("ipndm", "edm-rho7@smin", 0.0834), ("unipc-3", 0.0406)),
        (9, ("ipndm", "edm-rho7@smin", 0.0430), ("unipc-3", 0.0216)),
    ):
        sec = f"gmm-64d/nfe{nfe}"
        quick = rel(0.5) if nfe == 3 else None  # the --quick run has NFE 3 only
        figs += [
            Figure(
                f"NFE {nfe}: {solver}/{sched}",
                off,
                row("compare", f"{solver}/{sched}", "rmse", section=sec),
                rel(0.05),
                quick,
            ),
            Figure(
                f"NFE {nfe}: {lsolver}/learned",
                learned,
                row("compare", f"{lsolver}/learned", "rmse", section=sec),
                rel(0.05),
                quick,
            ),
        ]
    return Claim(
        "solvers-gmm64d",
        "README.md (Solvers × schedules table); docs/solvers.md (Tables)",
        "Best off-the-shelf row and best learned row per NFE on gmm-64d (the named rows "
        "re-measured on 8 × 1,024 test x_T)",
        (run,),
        tuple(figs),
        quick_checks=False,
        note="Re-measures the rows the README names, not the whole solver × schedule grid "
        "(docs/solvers.md has that command); that they are still the best of the grid is not "
        "re-checked here.",
    )


#: Every claim, in the order of README.md's results section.
CLAIMS: tuple[Claim, ...] = (
    _irl_ring8(),
    _irl_bias(),
    _irl_digits(),
    _art_gauss1d(),
    _art_ring8(),
    _art_gmm64d(),
    _solvers_gmm64d(),
    _baselines_ring8(),
    _digits_nfe35(),
    _art_digits(),
)


# ---------------------------------------------------------------- running


def _expand(argv: Sequence[str], out: Path, threads: int) -> list[str]:
    subs = {"out": str(out), "threads": str(threads), "test0": str(TEST_SEEDS[0])}
    subs |= {f"test{n}": "[" + ", ".join(map(str, test_seeds(n))) + "]" for n in (1, 2, 3, 8)}
    return [a.format(**subs) for a in argv]


def _check_seeds(argv: Sequence[str]) -> None:
    """Every evaluation seed in a claim's command is a test seed (``diffusion_gym.splits``)."""
    for i, a in enumerate(argv):
        if a.startswith(("seeds=", "eval.seeds=")):
            check_test_seeds(yaml.safe_load(a.split("=", 1)[1]))
        elif a == "--seed":
            check_test_seeds([int(argv[i + 1])])


def command_line(argv: Sequence[str]) -> str:
    """The shell command a run's argv stands for."""
    quoted = [
        a
        if a.replace("=", "")
        .replace("-", "")
        .replace("_", "")
        .replace(".", "")
        .replace("/", "")
        .replace(",", "")
        .isalnum()
        else f"'{a}'"
        for a in argv
    ]
    if argv[0] == "baselines.digits":
        return "python -m baselines.digits " + " ".join(quoted[1:])
    return "diffusion-gym " + " ".join(quoted)


def _finished(argv: list[str], out: Path) -> bool:
    """A finished run of exactly this command is in ``out`` (``--reuse``)."""
    if argv[0] == "baselines.digits":
        return (out / "digits_eval.json").is_file()
    if not (out / "eval.json").is_file():
        return False
    if argv[0] != "train":
        return True
    overrides = [a for a in argv[2:] if "=" in a and not a.startswith("--")]
    _, cfg = load_config(argv[1], overrides)
    stored = read_yaml(out / "config.yaml")
    diff = [d for d in config_diff(stored, config_to_dict(cfg)) if not d.startswith("progress")]
    return not diff


def _execute(argv: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if argv[0] == "baselines.digits":
        digits_eval.main(argv[1:])
        return
    if argv[0] == "train":
        argv = [*argv, "--overwrite"]
    status = cli.main(argv)
    if status != 0:
        raise RuntimeError(f"{command_line(argv)} exited with status {status}")


def _run_wall(d: Path) -> float:
    """Wall seconds of a finished run, from its files: the last write minus the first."""
    times = [p.stat().st_mtime for p in d.rglob("*") if p.is_file()]
    return round(max(times) - min(times), 1) if times else math.nan


def run_claim(
    claim: Claim, out: Path, quick: bool, threads: int, reuse: bool, collect: bool = False
) -> dict:
    """Run (or reuse) the claim's commands, read its figures, check them; a report entry.
    ``collect``: only read finished runs (never run one); a claim with an unfinished run is
    ``incomplete``."""
    t0, dirs, commands, reused, missing = time.perf_counter(), {}, [], [], []
    run_wall: dict[str, float] = {}
    entry: dict = {
        "id": claim.id,
        "where": claim.where,
        "title": claim.title,
        "mode": "quick" if quick else "full",
        "threads": threads,
        "note": claim.note,
    }
    try:
        for r in claim.runs:
            if quick and not r.in_quick:
                continue
            d = out / claim.id / r.name
            argv = _expand([*r.argv, *(r.quick if quick else ())], d, threads)
            _check_seeds(argv)
            commands.append(command_line(argv))
            dirs[r.name] = d
            if (reuse or collect) and _finished(argv, d):
                reused.append(r.name)
                run_wall[r.name] = _run_wall(d)
                continue
            if collect:
                missing.append(r.name)
                continue
            t1 = time.perf_counter()
            _execute(argv, d)
            run_wall[r.name] = round(time.perf_counter() - t1, 1)
        entry["status"] = "incomplete" if missing else "ok"
    except Exception as e:  # one claim's failure is reported, the others still run
        entry |= {"status": "error", "error": f"{type(e).__name__}: {e}"}
    entry |= {
        "commands": commands,
        "reused": reused,
        "missing": missing,
        "run_wall_s": run_wall,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    values, figures = {}, []
    for f in claim.figures:
        tol = f.quick_tol if quick else f.tol
        try:
            v = f.get(dirs)
        except (FileNotFoundError, KeyError) as e:  # at --quick: not measured at that budget
            if entry["status"] == "ok" and (tol is not None or not quick):  # else: not run
                entry |= {"status": "error", "error": f"{f.key}: {type(e).__name__}: {e}"}
            v = math.nan
        values[f.key] = v
        ok = None if tol is None or not math.isfinite(v) else tol.holds(v, f.documented)
        figures.append(
            {
                "key": f.key,
                "documented": f.documented,
                "measured": v,
                "tolerance": None if tol is None else str(tol),
                "ok": ok,
            }
        )
    entry["figures"] = figures
    checks = []
    if entry["status"] == "ok" and (claim.quick_checks or not quick):
        for desc, pred in claim.checks:
            try:
                checks.append({"check": desc, "ok": bool(pred(values))})
            except KeyError as e:
                checks.append({"check": desc, "ok": False, "error": f"missing figure {e}"})
    entry["checks"] = checks
    bad = [f for f in figures if f["ok"] is False] + [c for c in checks if not c["ok"]]
    if entry["status"] == "ok" and bad:
        entry["status"] = "fail"
    return entry


def _fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.5g}"


def markdown(report: dict) -> str:
    """The report as markdown: one table of figures per claim."""
    lines = [
        f"# Claims report ({report['mode']})",
        "",
        f"{report['machine']}; torch {report['torch']}; {report['threads']} torch thread(s); "
        f"test seeds {report['test_seeds']}.",
        "",
    ]
    for e in report["claims"].values():
        lines += [
            f"## `{e['id']}`: {e['status']}",
            "",
            f"{e['title']} ({e['where']}).",
            "",
            "Wall time per run: "
            + (", ".join(f"{k} {v:.0f} s" for k, v in e.get("run_wall_s", {}).items()) or "–")
            + (f" (reused: {', '.join(e['reused'])})" if e.get("reused") else "")
            + (
                f"; **not finished (no result in OUT): {', '.join(e['missing'])}**"
                if e.get("missing")
                else ""
            )
            + ".",
            "",
        ]
        if e.get("error"):
            lines += [f"Error: `{e['error']}`", ""]
        lines += [
            "| figure | documented | reproduced | tolerance | holds |",
            "|---|---|---|---|---|",
        ]
        for f in e["figures"]:
            ok = {True: "yes", False: "**no**", None: "–"}[f["ok"]]
            lines.append(
                f"| {f['key']} | {_fmt(f['documented'])} | {_fmt(f['measured'])} | "
                f"{f['tolerance'] or 'not checked'} | {ok} |"
            )
        for c in e["checks"]:
            lines.append(f"\nCheck: {c['check']}: {'holds' if c['ok'] else '**fails**'}")
        lines += ["", "```bash", *e["commands"], "```", ""]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/claims.py", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="reduced budgets, coarse tolerances")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these claims")
    p.add_argument("--list", action="store_true", help="list the registry and exit")
    p.add_argument("--out", default="runs/claims", help="folder of the runs and the report")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--reuse", action="store_true", help="keep finished runs found in --out")
    p.add_argument(
        "--collect",
        action="store_true",
        help="run nothing: report from the finished runs in --out (a claim with an unfinished "
        "run is 'incomplete')",
    )
    p.add_argument(
        "--commands",
        action="store_true",
        help="print each run's shell command (one a line) and exit: run them in parallel or "
        "elsewhere, then collect the report with --reuse",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    ids = [c.id for c in CLAIMS]
    if a.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {a.threads}")
    unknown = sorted(set(a.only or ()) - set(ids))
    if unknown:
        raise SystemExit(f"unknown claim id(s) {unknown}; valid: {', '.join(ids)}")
    chosen = [c for c in CLAIMS if not a.only or c.id in a.only]
    if a.list:
        for c in chosen:
            print(f"{c.id:16s} {c.title}\n{'':16s} {c.where}")
        return 0
    out = Path(a.out)
    if a.commands:
        for c in chosen:
            for r in c.runs:
                if a.quick and not r.in_quick:
                    continue
                d = out / c.id / r.name
                argv = _expand([*r.argv, *(r.quick if a.quick else ())], d, a.threads)
                _check_seeds(argv)
                tail = " --overwrite" if argv[0] == "train" else ""
                print(f"OMP_NUM_THREADS={a.threads} {command_line(argv)}{tail}")
        return 0
    torch.set_num_threads(a.threads)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    out.mkdir(parents=True, exist_ok=True)
    mode = "quick" if a.quick else "full"
    path = out / "claims.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    if report.get("mode") != mode or report.get("threads") != a.threads:
        report = {}
    report |= {
        "mode": mode,
        "threads": a.threads,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "test_seeds": list(test_seeds(8)),
        "claims": report.get("claims", {}),
    }
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(f"claims ({mode})", total=len(chosen))
        for c in chosen:
            bar.update(task, description=f"claims ({mode}): {c.id}")
            entry = run_claim(c, out, a.quick, a.threads, a.reuse, a.collect)
            report["claims"][c.id] = entry
            report["claims"] = {i: report["claims"][i] for i in ids if i in report["claims"]}
            atomic_write_json(path, report)
            atomic_write_text(out / "claims.md", markdown(report))
            bar.console.print(_summary_line(entry))
            bar.advance(task)
    print(markdown({**report, "claims": {c.id: report["claims"][c.id] for c in chosen}}))
    bad = [c.id for c in chosen if report["claims"][c.id]["status"] != "ok"]
    if bad:
        print(f"claims not reproduced: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


def _summary_line(e: dict) -> str:
    figs = "; ".join(
        f"{f['key']}: {_fmt(f['measured'])} (doc {_fmt(f['documented'])}"
        f"{', ok' if f['ok'] else ', OFF' if f['ok'] is False else ''})"
        for f in e["figures"]
    )
    return f"[{e['status']}] {e['id']} ({e['wall_s']:.0f} s): {figs}" + (
        f"\n  error: {e['error']}" if e.get("error") else ""
    )


if __name__ == "__main__":
    sys.exit(main())
