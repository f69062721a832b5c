"""Can the IRL discriminator tell a constant's final samples x_0 from clean data? (issue #20 item 7)

``python benchmarks/irl_r1_probe.py RUN_DIR`` takes an IRL run's env (preset, schedule, action
table) and, for a few constant (w, γ) rows and R1 weights, trains a fresh discriminator of the
run's architecture on 8,192 final states of the row vs 8,192 clean data points (same classes),
printing the held-out accuracy after 2, 10 and 60 epochs. 0.5 exactly = a flat logit.
One torch thread.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from agents.discriminator import Discriminator, DiscriminatorConfig, train_discriminator
from agents.irl.diagnose import load_run
from diffusion_gym.noise import make_labels, make_noise

ROWS = {"w1-g0.4": (1.0, 0.4), "w1-g0": (1.0, 0.0), "w1.5-g0": (1.5, 0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--num-states", type=int, default=8192)
    ap.add_argument("--r1", type=float, nargs="+", default=[1.0, 0.0])
    a = ap.parse_args()
    torch.set_num_threads(1)
    tr = load_run(a.run_dir)
    env, n = tr.env, a.num_states
    steps, table = env.num_steps, env.action_table

    def final_states(index: int, seed: int):
        x_T, streams = make_noise(env.preset, n, seed)  # noqa: N806
        labels = make_labels(env.preset, n, seed, "balanced")
        act = lambda obs, k: torch.full((obs.shape[0],), index)  # noqa: E731
        run = env.rollout(act, x_T=x_T, class_labels=labels, streams=streams)
        return run.observations[steps].float(), labels

    for r1 in a.r1:
        for name, (w, g) in ROWS.items():
            wi, gi = np.flatnonzero(table.weights == w)[0], np.flatnonzero(table.gammas == g)[0]
            index = int(wi) * len(table.gammas) + int(gi)
            pol, lab = final_states(index, 11)
            pol_te, lab_te = final_states(index, 12)
            gen = torch.Generator().manual_seed(0)
            k = torch.full((n,), steps)
            exp = env.expert_observations(k, lab, gen).float()
            exp_te = env.expert_observations(k, lab_te, gen).float()
            torch.manual_seed(0)
            d = tr.cfg.discriminator
            cfg = DiscriminatorConfig(hidden=tuple(d.hidden), lr=d.lr, epochs=1,
                                      batch_size=d.batch_size, grad_penalty=r1)  # fmt: skip
            disc = Discriminator(pol.shape[1], cfg)
            disc.update_normalizer(torch.cat([exp, pol]))
            opt = torch.optim.Adam(disc.parameters(), lr=cfg.lr)
            accs = []
            for epoch in range(60):
                train_discriminator(disc, opt, exp, pol, cfg, gen)
                if epoch in (1, 9, 59):
                    with torch.no_grad():
                        hit_e = float((disc(exp_te) > 0).float().mean())
                        hit_p = float((disc(pol_te) < 0).float().mean())
                    accs.append(round(0.5 * (hit_e + hit_p), 3))
            print(f"R1={r1:g} {name}: held-out accuracy after 2/10/60 epochs: {accs}", flush=True)


if __name__ == "__main__":
    main()
