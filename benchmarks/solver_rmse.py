"""Sanity table: RMSE to the reference ODE solution per solver at equal NFE.

Every solver of ``diffusion_gym.steps.SOLVERS`` on the EDM ρ = 7 schedule
(``schedules.karras(steps_for_nfe(nfe, solver))``: N σ down to σ_min, then the final step to
0) through the evaluation harness (:func:`baselines.evaluate.evaluate`: same held-out x_T for
every row, Richardson-extrapolated 256-step Heun reference, metric ``rmse``).

    python benchmarks/solver_rmse.py --preset gmm-64d --nfe 3 5 7 9 --num-samples 1024

``--last sigma_min`` uses the GITS/DEIS convention instead: N + 1 karras points down to σ_min,
N steps (NFE N for Euler and the multistep solvers; Heun skipped), no final denoise, the
output x(σ_min) compared with the same reference. ``--no-lower-order-final`` turns off the
multistep solvers' lower-order final steps.

The full comparison (every schedule baseline × solver) is ``diffusion-gym compare``.
"""

from __future__ import annotations

import argparse
import time

import torch

from baselines.evaluate import Strategy, evaluate
from diffusion_gym import presets, schedules, steps


class SolverRow(Strategy):
    """``solver`` on EDM ρ = 7 at ``nfe``, ending with the final denoise (``last="denoise"``:
    karras(N) then 0) or at σ_min (``last="sigma_min"``: N + 1 points, no denoise)."""

    def __init__(self, solver: str, nfe: int, preset, last: str, lower_order_final: bool):
        self.name, self.solver, self._nfe = f"{solver}@{nfe}", solver, nfe
        self.last, self.lower_order_final = last, lower_order_final
        lo, hi = preset.sigma_min, preset.sigma_max
        if last == "denoise":
            self.sigmas = schedules.karras(steps.steps_for_nfe(nfe, solver), lo, hi, 7.0)
        else:  # N + 1 points on [σ_min, σ_max] (then 0, a step sample() does not take)
            self.sigmas = schedules.karras(nfe + 1, lo, hi, 7.0)

    @property
    def nfe(self) -> int:
        return self._nfe

    @property
    def deterministic(self) -> bool:
        return True

    def sample(self, preset, x_T, class_labels, streams):  # noqa: N803
        return steps.sample(preset.denoiser, x_T, self.sigmas, class_labels=class_labels,
                            solver=self.solver, lower_order_final=self.lower_order_final,
                            final_step=self.last == "denoise")  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="gmm-64d")
    p.add_argument("--nfe", type=int, nargs="+", default=[3, 5, 7, 9])
    p.add_argument("--num-samples", type=int, default=1024)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--solvers", nargs="+", default=list(steps.SOLVERS), choices=steps.SOLVERS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--last", choices=("denoise", "sigma_min"), default="denoise")
    p.add_argument("--no-lower-order-final", dest="lof", action="store_false")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    preset = presets.make(a.preset)
    rows = []
    for solver in a.solvers:
        for nfe in a.nfe:
            if solver == "heun" and (nfe % 2 == 0 or a.last == "sigma_min"):
                continue  # Heun: odd NFE, ending with its Euler step to 0
            rows.append(SolverRow(solver, nfe, preset, a.last, a.lof))
    t0 = time.perf_counter()
    res = evaluate(rows, preset, num_samples=a.num_samples, seeds=a.seeds, metrics=["rmse"],
                   progress=False)  # fmt: skip
    secs = time.perf_counter() - t0
    print(f"{a.preset}, EDM rho=7, last={a.last}, lower_order_final={a.lof}, {a.num_samples} "
          f"held-out x_T x seeds {a.seeds}; RMSE to the reference ({secs:.0f} s)")  # fmt: skip
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
