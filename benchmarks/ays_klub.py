"""Why Align Your Steps loses at low NFE here: the KLUB of every schedule row of a compare run
next to its held-out RMSE. If AYS has the lowest KLUB but not the lowest RMSE, the
objective, not its optimiser, is what separates it from the rows that win.

    python benchmarks/ays_klub.py --from runs/cs-64d --preset gmm-64d --solver euler
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from baselines import schedules as B
from diffusion_gym import presets
from diffusion_gym.noise import make_labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="run", required=True, help="diffusion-gym compare output")
    ap.add_argument("--preset", default="gmm-64d")
    ap.add_argument("--solver", default="euler")
    ap.add_argument("--nfe", type=int, nargs="+", default=[3, 5, 7, 9])
    ap.add_argument("--num-samples", type=int, default=256, help="data samples of the KLUB")
    ap.add_argument("--quad", type=int, default=8, help="quadrature nodes per interval")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    p = presets.make(a.preset)
    g = torch.Generator().manual_seed(B.TRAIN_SALT + 7)  # not the AYS fit's own data
    labels = make_labels(p, a.num_samples, B.TRAIN_SALT + 7, "balanced")
    x0 = p.data.sample(a.num_samples, labels, generator=g)
    eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    print("| NFE | row | KLUB | held-out RMSE | positive σ |\n|---|---|---|---|---|")
    for nfe in a.nfe:
        sec = Path(a.run) / a.preset / f"nfe{nfe}"
        desc = json.loads((sec / "strategies.json").read_text())
        ev = json.loads((sec / "eval.json").read_text())
        for name, d in desc.items():
            if not name.startswith(a.solver + "/") or d.get("last_step") != "denoise":
                continue
            pos = d["sigmas"][:-1]
            klub = B._klub_total(p, x0, eps, labels, pos, a.quad)
            rmse = ev[name]["rmse"]["mean"]
            sig = ", ".join(f"{s:.3g}" for s in pos)
            print(f"| {nfe} | {name} | {klub:.4g} | {rmse:.4g} | {sig} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
