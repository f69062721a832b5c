"""ART-RL's final evaluation, through the harness (``baselines.evaluate``).

The distilled schedule is scored on held-out noise seeds against the base clock, EDM ρ = 7,
the best ρ and the oracle (``baselines.schedules``, defaults :class:`OracleConfig`), at other
budgets (interpolated) and on other presets (transfer); the 1-D Gaussian toy adds its
closed-form W2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from baselines import schedules as B  # noqa: N812
from baselines.evaluate import FixedSchedule, evaluate, markdown_table, write_report
from diffusion_gym import presets as _presets
from diffusion_gym import schedules as _schedules
from diffusion_gym.io import atomic_write_json, atomic_write_text

from ..checkpoint import fit_seed
from .config import Config
from .schedules import gaussian_1d_w2, transfer_schedule

__all__ = ["evaluate_schedule"]


def _row(value: float) -> dict[str, Any]:
    return {"mean": float(value), "std": 0.0, "values": [float(value)]}


def evaluate_schedule(cfg: Config, sigmas: torch.Tensor, out: Path) -> dict:
    """Learned schedule vs base, EDM ρ=7, best ρ, oracle on held-out noise; budgets; transfer.

    Everything goes through the harness (``baselines.evaluate``): one reference solve per
    preset, ``eval.json``/``eval.md``/PNGs by ``write_report``, and ``transfer.json``/
    ``transfer.md`` when other budgets or presets are asked for. Returns the results.
    """
    ev, K, solver = cfg.eval, cfg.budget, cfg.solver
    p = _presets.make(cfg.preset, device=cfg.device)
    common = dict(num_samples=ev.num_samples, seeds=ev.seeds, metrics=ev.metrics,
                  progress=cfg.progress, reference=ev.reference_steps)  # fmt: skip
    learned = f"art-{cfg.algo}"
    base = _schedules.linear(K, p.sigma_max) if cfg.base == "linear" else None
    strategies = [FixedSchedule(learned, sigmas, solver)]
    strategies.append(FixedSchedule("edm-rho7", B.classic("edm", K, p, rho=7.0), solver))
    if base is not None:
        strategies.append(FixedSchedule("uniform-linear", base, solver))
    if K > 1:
        ref_kw = {} if ev.reference_steps is None else {"reference_steps": ev.reference_steps}
        data = B.training_set(p, ev.train_samples, seed=fit_seed(cfg.seed), **ref_kw)
        rho, _ = B.best_rho(p, K, solver, ev.rho_grid, data=data)
        strategies.append(
            FixedSchedule(f"edm-best-rho{rho:g}", B.classic("edm", K, p, rho=rho), solver)
        )
        if ev.oracle:
            orc = B.oracle(p, K, solver, data=data, iterations=ev.oracle_iterations,
                           seed=fit_seed(cfg.seed))  # fmt: skip
            strategies.append(FixedSchedule("oracle", orc.sigmas, solver))
    for kind in ev.classic:  # hand-made baselines on the preset's σ range
        strategies.append(FixedSchedule(kind, B.classic(kind, K, p), solver))
    budget_rows = []  # the learned schedule interpolated to other K, and EDM ρ=7 there
    for k2 in ev.budgets:
        budget_rows += [
            FixedSchedule(f"{learned}@K{k2}", transfer_schedule(sigmas, k2), solver),
            FixedSchedule(f"edm-rho7@K{k2}", B.classic("edm", k2, p, rho=7.0), solver),
        ]
    everything = evaluate(strategies + budget_rows, p, **common)  # one reference solve
    results = {s.name: everything[s.name] for s in strategies}
    transfer = {s.name: everything[s.name] for s in budget_rows}
    if p.denoiser.dim == 1 and getattr(p.data, "num_components", 0) == 1:
        for s in strategies:
            results[s.name]["w2"] = _row(gaussian_1d_w2(p, s.sigmas, solver))
    by_nfe: dict[str, dict[int, dict]] = {learned: {}, "edm-rho7": {}}
    for s in strategies[:2] + budget_rows:
        by_nfe[learned if s.name.startswith(learned) else "edm-rho7"][s.nfe] = everything[s.name]
    for name in ev.transfer_presets:
        q = _presets.make(name, device=cfg.device)
        moved = transfer_schedule(
            sigmas, None, (q.sigma_min, q.sigma_max), (p.sigma_min, p.sigma_max)
        )
        edm = B.classic("edm", K, q, rho=7.0)
        rows = [FixedSchedule(f"{learned}@{name}", moved, solver),
                FixedSchedule(f"edm-rho7@{name}", edm, solver)]  # fmt: skip
        transfer.update(evaluate(rows, q, **common))
    title = f"ART-RL {cfg.algo} on {cfg.preset}, {solver} K={K} (NFE {strategies[0].nfe})"
    write_report(results, out, title=title,
                 plots={"strategies": strategies, "by_nfe": by_nfe, "metric": "rmse"})  # fmt: skip
    if transfer:
        atomic_write_json(out / "transfer.json", transfer)
        atomic_write_text(out / "transfer.md", markdown_table(transfer, f"Transfer of {learned}"))
    print(markdown_table(results, title))
    if transfer:
        print(markdown_table(transfer, f"Transfer of {learned}"))
    return results
