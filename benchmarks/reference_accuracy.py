"""How accurate is the reference ODE solve that RMSE (harness) and the Clock env's terminal
reward measure against? Prints, per preset, the RMSE of the plain and the Richardson-
extrapolated Heun solve (``diffusion_gym.steps.reference_solve``) to a plain solve with
``--fine`` steps, on the harness's evaluation noise (seed 0, balanced labels).

    python benchmarks/reference_accuracy.py --presets gmm-ring8 art-gauss1d gmm-64d
"""

from __future__ import annotations

import argparse
import time

import torch

from baselines.evaluate import make_labels, make_noise
from diffusion_gym import presets, steps


def _rmse(x: torch.Tensor, target: torch.Tensor) -> float:
    return float((x - target).pow(2).reshape(len(x), -1).mean(1).mean().sqrt())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["gmm-ring8", "art-gauss1d", "gmm-64d"])
    ap.add_argument("--steps", nargs="+", type=int, default=[64, 128, 256])
    ap.add_argument("--fine", type=int, default=8192, help="steps of the plain target solve")
    ap.add_argument("--num-samples", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| preset | Heun steps | plain: RMSE to target | extrapolated: RMSE to target | ratio |")
    print("|---|---|---|---|---|")
    for name in args.presets:
        p = presets.make(name)
        x_T, _ = make_noise(p, args.num_samples, seed=0)  # noqa: N806
        labels = make_labels(p, args.num_samples, seed=0)
        t0 = time.perf_counter()
        target = steps.reference_solve(
            p.denoiser, x_T, args.fine, class_labels=labels, extrapolate=False
        )

        for n in args.steps:
            errs = [
                _rmse(
                    steps.reference_solve(p.denoiser, x_T, n, class_labels=labels, extrapolate=e),
                    target,
                )
                for e in (False, True)
            ]
            print(f"| {name} | {n} | {errs[0]:.2e} | {errs[1]:.2e} | {errs[0] / errs[1]:.0f}x |")
        print(f"<!-- {name}: {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
