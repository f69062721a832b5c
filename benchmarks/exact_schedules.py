"""Is there a 3-step schedule that makes Heun exact? For each σ_1 this finds the σ_2 that
minimises the RMSE to the harness's reference on the oracle's training noise (a log grid,
then golden-section search), then scores [σ_max, σ_1, σ_2, 0] on held-out noise with the
harness. On gmm-ring8 (isotropic components) every σ_1 has such a σ_2, exact to float64
round-off: the oracle's RMSE is its optimiser's stopping point, not a property of the
preset. ``--schedule`` adds a learned schedule and the same schedule with σ_2 re-solved.

    python benchmarks/exact_schedules.py --schedule runs/art-ring8/schedule.json
"""

from __future__ import annotations

import argparse
import math

import torch

from baselines import schedules as B
from baselines.evaluate import FixedSchedule, evaluate
from diffusion_gym import presets, schedules

GOLDEN = (math.sqrt(5) - 1) / 2


def best_sigma2(preset, data: B.TrainingSet, sigma1: float, grid: int = 400) -> float:
    """argmin over σ_2 ∈ (0.02 σ_1, σ_1) of the training RMSE of [σ_max, σ_1, σ_2, 0]."""

    def rmse(log_s2: float) -> float:
        s = torch.tensor([preset.sigma_max, sigma1, math.exp(log_s2), 0.0], dtype=torch.float64)
        return B.schedule_rmse(preset, s, "heun", data)

    lo, hi = math.log(0.02 * sigma1), math.log(0.999 * sigma1)
    pts = [lo + (hi - lo) * k / grid for k in range(grid + 1)]
    k = min(range(1, grid), key=lambda j: rmse(pts[j]))
    a, b = pts[k - 1], pts[k + 1]
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = rmse(c), rmse(d)
    for _ in range(80):  # one new evaluation per iteration: the kept interior point is reused
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = rmse(c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = rmse(d)
    return math.exp((a + b) / 2)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="gmm-ring8")
    ap.add_argument("--sigma1", nargs="+", type=float, default=[1.0335, 2.0, 4.809, 8.0])
    ap.add_argument("--schedule", help="a learned K = 3 schedule.json to re-solve σ_2 for")
    ap.add_argument("--train-samples", type=int, default=256)
    ap.add_argument("--num-samples", type=int, default=2048)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    p = presets.make(args.preset)
    data = B.training_set(p, args.train_samples)
    rows: list[FixedSchedule] = []
    learned = None
    if args.schedule:
        learned = schedules.load_schedule(args.schedule)["sigmas"].to(torch.float64)
        if learned.shape[0] != 4:
            raise ValueError(f"--schedule: expected a K = 3 schedule (4 σ), got {learned.tolist()}")
        rows.append(FixedSchedule("learned", learned, "heun"))
    for s1 in [*args.sigma1, *([float(learned[1])] if learned is not None else [])]:
        s2 = best_sigma2(p, data, s1)
        sig = torch.tensor([p.sigma_max, s1, s2, 0.0], dtype=torch.float64)
        rows.append(FixedSchedule(f"σ1={s1:.6g}, σ2={s2:.12g}", sig, "heun"))
    res = evaluate(rows, p, num_samples=args.num_samples, seeds=args.seeds, metrics=["rmse"])
    print(f"| {args.preset}, Heun K = 3 | held-out RMSE ({len(args.seeds)} × {args.num_samples}) |")
    print("|---|---|")
    for name, r in res.items():
        print(f"| {name} | {r['rmse']['mean']:.3e} |")


if __name__ == "__main__":
    main()
