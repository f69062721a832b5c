"""ART-RL's closed-loop evaluation: a state-dependent policy run *as a policy*.

With ``policy_inputs: full`` the policy reads the whole Clock observation (x_k, σ_k, the
clock and, with ``obs_history: true``, the multistep solver's state), so every sample may get
its own σ schedule. The harness's evaluation (:mod:`.report`) scores only the distilled mean
of those schedules; this module scores the policy itself, deterministic, on held-out bank
entries (:func:`baselines.evaluate_policy`, one fresh bank per evaluation seed s, bank seed
2**40 + s, never a training bank's: those are below 2**31), and every
fixed schedule of the run's ``strategies.json`` with the same solver and budget (the distilled
mean, EDM ρ = 7, the best ρ, the oracle) plus the published schedule of the preset × solver ×
NFE when the package ships one, all on the *same* entries (x_T, class, x_ref). So
"does a per-sample schedule beat the best fixed schedule?" is answered on one noise.

Writes ``closed_loop.json`` (the rows, the per-step spread of the policy's σ across samples,
the policy's mean σ per step) and ``closed_loop.md``. With ``residual_schedule`` the policy
acts around that schedule (as in training), and the schedule itself is a row
(``residual-start``, unless the run's rows already hold it under another name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from baselines.evaluate import markdown_table
from baselines.policy_eval import HELD_OUT_SEED, evaluate_policy
from diffusion_gym import schedules as _schedules
from diffusion_gym import steps as _steps
from diffusion_gym.io import atomic_write_json, atomic_write_text

from ..checkpoint import latest
from .config import Config
from .sb3 import SB3_ALGOS, make_env
from .wrappers import ResidualActions, find_wrapper

__all__ = ["evaluate_closed_loop", "fixed_rows", "final_model_path"]

#: The policy's row in the closed-loop table.
POLICY_ROW = "policy (closed loop)"


def final_model_path(run_dir: Path) -> Path:
    """``model.zip`` of the newest complete checkpoint of an SB3 ART run (the final one)."""
    parent = Path(run_dir) / "checkpoints"
    found = latest(parent, "step_")
    if found is None or not (found / "model.zip").is_file():
        raise FileNotFoundError(f"no checkpoint with a model.zip in {parent}")
    return found / "model.zip"


def fixed_rows(cfg: Config, out: Path) -> dict[str, list[float]]:
    """``{name: σ}``: the run's fixed schedules (``strategies.json`` rows with the run's
    solver and K + 1 values) and, when shipped, the published schedule
    (``published-<solver>``) of the preset × solver × NFE."""
    path = Path(out) / "strategies.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} (written by the run's final evaluation) is missing")
    rows = {}
    for name, d in json.loads(path.read_text()).items():
        sig = d.get("sigmas")
        if d.get("solver") == cfg.solver and sig is not None and len(sig) == cfg.budget + 1:
            rows[name] = [float(s) for s in sig]
    nfe = _steps.nfe_of(cfg.budget, cfg.solver)
    pub = _schedules.find_published(cfg.preset, cfg.solver, nfe)
    if pub is not None and pub["sigmas"].numel() == cfg.budget + 1:
        rows[f"published-{cfg.solver}"] = pub["sigmas"].tolist()
    return rows


class _ResidualPolicy:
    """``obs -> actions`` for :func:`evaluate_policy`: the model's deterministic output plus
    the fixed schedule's clock action of each row's step k (column 1 of the Clock
    observation is k/K)."""

    def __init__(self, model, residual: ResidualActions, budget: int):
        self.model, self.residual, self.budget = model, residual, budget

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        a, _ = self.model.predict(obs, deterministic=True)
        k = np.clip(np.rint(obs[:, 1] * self.budget).astype(np.int64), 0, self.budget - 1)
        return self.residual.env_actions(a, k)


def _spread(schedules: list[np.ndarray]) -> dict[str, list[float]]:
    """Per step k = 1..K−1 (the free σ's): std over samples of log σ_k and the mean σ_k,
    averaged over the evaluation seeds."""
    logs = [np.log(s[:, 1:-1]) for s in schedules]
    return {
        "log_sigma_std": [float(v) for v in np.mean([x.std(0) for x in logs], 0)],
        "sigma_mean": [float(v) for v in np.mean([s[:, 1:-1].mean(0) for s in schedules], 0)],
        "sigma_p05": [
            float(v) for v in np.mean([np.quantile(s[:, 1:-1], 0.05, 0) for s in schedules], 0)
        ],  # fmt: skip
        "sigma_p95": [
            float(v) for v in np.mean([np.quantile(s[:, 1:-1], 0.95, 0) for s in schedules], 0)
        ],  # fmt: skip
    }


def evaluate_closed_loop(cfg: Config, out: Path, model_dir: Path | None = None) -> dict[str, Any]:
    """Score the final policy of the run in ``out`` closed loop against its fixed schedules.

    :param cfg: the run's config (``policy_inputs: full``, an SB3 algorithm).
    :param out: the run directory (its final evaluation has written ``strategies.json``).
    :param model_dir: where the policy's checkpoints are (default ``out``; the chosen
        restart's directory with ``restarts`` > 1).
    :returns: the ``closed_loop.json`` record.
    """
    if cfg.policy_inputs != "full" or cfg.algo not in SB3_ALGOS:
        raise ValueError(
            "the closed-loop evaluation is for policy_inputs 'full' with an SB3 algorithm "
            f"{sorted(SB3_ALGOS)}, got policy_inputs={cfg.policy_inputs!r}, algo={cfg.algo!r}"
        )
    out = Path(out)
    path = final_model_path(model_dir or out)
    model = SB3_ALGOS[cfg.algo].load(path, device=cfg.device)
    env, venv = make_env(cfg, num_envs=1, bank_size=1, reward_transform=False)
    fixed = fixed_rows(cfg, out)
    policy: Any = model
    residual = find_wrapper(env, ResidualActions)
    if residual is not None:  # the policy's output is a deviation from the fixed schedule
        policy = _ResidualPolicy(model, residual, cfg.budget)
        fixed.setdefault("residual-start", venv.schedule_from_actions(residual.offsets).tolist())
    bank_seeds = [HELD_OUT_SEED + s for s in cfg.eval.seeds]  # never a training bank's seed
    ev = evaluate_policy(
        venv, policy, num_samples=cfg.eval.num_samples, seed=bank_seeds,
        metrics=["rmse", "nfe"], schedules=fixed, progress=cfg.progress,
    )  # fmt: skip
    env.close()
    keep = ["policy", *fixed, "base"]
    results = {(POLICY_ROW if r == "policy" else r): ev.results[r] for r in keep}
    best_fixed = min(fixed, key=lambda r: ev.mean(r, "rmse")) if fixed else None
    record = {
        "model": str(path),
        "seeds": list(cfg.eval.seeds),
        "bank_seeds": ev.seeds,
        "num_samples": cfg.eval.num_samples,
        "solver": cfg.solver,
        "budget": cfg.budget,
        "nfe": _steps.nfe_of(cfg.budget, cfg.solver),
        "obs_history": cfg.obs_history,
        "residual_schedule": cfg.residual_schedule,
        "results": results,
        "best_fixed": best_fixed,
        "policy_over_best_fixed": (
            ev.mean("policy", "rmse") / ev.mean(best_fixed, "rmse") if best_fixed else None
        ),
        "policy_schedule": _spread(ev.policy_schedules),
    }
    atomic_write_json(out / "closed_loop.json", record)
    title = (f"ART-RL {cfg.algo} closed loop on {cfg.preset}, {cfg.solver} K={cfg.budget} "
             f"(NFE {record['nfe']}), held-out banks of eval seeds {cfg.eval.seeds}")  # fmt: skip
    sp = record["policy_schedule"]
    lines = [
        markdown_table(results, title),
        "",
        "The policy's σ per free step k = 1..K−1 across samples (mean over seeds):",
        "",
        "| k | mean σ_k | 5 % | 95 % | std of log σ_k |",
        "|---|---|---|---|---|",
        *(
            f"| {k + 1} | {m:.4g} | {lo:.4g} | {hi:.4g} | {s:.3g} |"
            for k, (m, lo, hi, s) in enumerate(
                zip(
                    sp["sigma_mean"],
                    sp["sigma_p05"],
                    sp["sigma_p95"],
                    sp["log_sigma_std"],
                    strict=True,
                )
            )
        ),  # fmt: skip
    ]
    if best_fixed:
        lines += ["", f"Closed-loop policy / best fixed schedule ({best_fixed}): "
                      f"{record['policy_over_best_fixed']:.3f} (RMSE ratio)."]  # fmt: skip
    atomic_write_text(out / "closed_loop.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return record
