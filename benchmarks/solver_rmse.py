"""Sanity table: RMSE to the reference ODE solution per solver at equal NFE.

Every solver of ``diffusion_gym.steps.SOLVERS`` on the EDM ρ = 7 schedule
(``schedules.karras(steps_for_nfe(nfe, solver))``: N σ down to σ_min, then the final step to
0) through the evaluation harness (:func:`baselines.evaluate.evaluate`: same held-out x_T for
every row, Richardson-extrapolated 256-step Heun reference, metric ``rmse``).

    python benchmarks/solver_rmse.py --preset gmm-64d --nfe 3 5 7 9 --num-samples 1024

The full comparison (every schedule baseline × solver) is ``diffusion-gym compare``.
"""

from __future__ import annotations

import argparse
import time

import torch

from baselines.evaluate import FixedSchedule, evaluate
from diffusion_gym import presets, schedules, steps


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="gmm-64d")
    p.add_argument("--nfe", type=int, nargs="+", default=[3, 5, 7, 9])
    p.add_argument("--num-samples", type=int, default=1024)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--solvers", nargs="+", default=list(steps.SOLVERS), choices=steps.SOLVERS)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    preset = presets.make(a.preset)
    rows = []
    for solver in a.solvers:
        for nfe in a.nfe:
            try:
                n = steps.steps_for_nfe(nfe, solver)
            except ValueError:
                continue  # e.g. Heun at an even NFE
            sig = schedules.karras(n, preset.sigma_min, preset.sigma_max, 7.0)
            rows.append(FixedSchedule(f"{solver}@{nfe}", sig, solver=solver))
    t0 = time.perf_counter()
    res = evaluate(rows, preset, num_samples=a.num_samples, seeds=a.seeds, metrics=["rmse"],
                   progress=False)  # fmt: skip
    secs = time.perf_counter() - t0
    print(f"{a.preset}, EDM rho=7, {a.num_samples} held-out x_T x seeds {a.seeds}; RMSE to the "
          f"reference ({secs:.0f} s)")  # fmt: skip
    print("| solver | " + " | ".join(f"NFE {n}" for n in a.nfe) + " |")
    print("|---|" + "---:|" * len(a.nfe))
    for solver in a.solvers:
        cells = []
        for nfe in a.nfe:
            r = res.get(f"{solver}@{nfe}")
            cells.append("—" if r is None else f"{r['rmse']['mean']:.4g}")
        print(f"| {solver} | " + " | ".join(cells) + " |")
    return res


if __name__ == "__main__":
    main()
