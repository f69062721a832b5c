"""Fixed restarts against spending the same NFE on more steps (Guidance env, box action).

Runs constant box actions of ``diffusion_gym/Guidance-v0`` through ``env.rollout`` (the env's
own step, same seed and x_T for every row of one N) and prints the mean and median terminal
log p_data(x_0 | c) with the NFE each row spends: plain N steps, a restart (``renoise_steps``)
at fixed steps, N' > N plain steps at the same NFE, and churn. A learned renoise policy has
to beat these rows at its own NFE.

    python benchmarks/guidance_renoise.py --num-envs 2048 --steps 8 --threads 1
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from diffusion_gym.envs import GuidanceVectorEnv


def run(preset, num_envs, n, w, gamma=0.0, renoise_at=(), r=2, seed=0):
    """``(mean, median log p, NFE)`` of one constant box action (renoise at ``renoise_at``)."""
    kw = {"renoise_steps": r, "max_renoises": len(renoise_at)} if renoise_at else {}
    env = GuidanceVectorEnv(
        num_envs, preset, num_steps=n, action_format="box", reward="log_prob", **kw
    )
    names = env.action_table.box_names

    def policy(obs, k):
        vals = {"w": w, "gamma": gamma, "renoise": float(k in renoise_at)}
        return np.tile([vals[c] for c in names], (len(obs), 1))

    ro = env.rollout(policy, seed=seed)
    logp = ro.rewards[-1]
    return float(logp.mean()), float(logp.median()), int(ro.nfe.max())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="gmm-ring8-imperfect")
    ap.add_argument("--num-envs", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=8, help="N of the plain rows")
    ap.add_argument("--w", type=float, default=1.5, help="the constant guidance weight")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, w = args.steps, args.w
    rows = [
        (f"N={n}", {"n": n}),
        (f"N={n}, restart r=2 at k={n - 2}", {"n": n, "renoise_at": (n - 2,)}),
        (f"N={n}, restart r=2 at k={n // 2}", {"n": n, "renoise_at": (n // 2,)}),
        (f"N={n}, restart r=2 at k=2", {"n": n, "renoise_at": (2,)}),
        (
            f"N={n}, restart r=1 at k={n - 3},{n - 2}",
            {"n": n, "renoise_at": (n - 3, n - 2), "r": 1},
        ),
        (f"N={n + 2}", {"n": n + 2}),
        (f"N={n + 2}, γ=0.4", {"n": n + 2, "gamma": 0.4}),
    ]
    print(f"{args.preset}, w = {w:g}, Heun, {args.num_envs} envs, seed {args.seed}")
    print("| row | NFE | mean log p | median log p |\n|---|---:|---:|---:|")
    for label, kw in rows:
        mean, median, nfe = run(args.preset, args.num_envs, w=w, seed=args.seed, **kw)
        print(f"| {label} | {nfe} | {mean:.3f} | {median:.3f} |", flush=True)


if __name__ == "__main__":
    main()
