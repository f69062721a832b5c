"""Off-the-shelf RL with the env-level reward options against the project's ART recipe.

Clock-v0 on gmm-64d, Heun K = 5 (NFE 9), with ``obs_mode="time"``,
``reward="log_terminal_error"``, ``reward_baseline="base"`` (docs/clock_env.md, "Rewards for
plain learners"): plain SB3 PPO and SAC (``examples/sb3_clock.py``), a CleanRL-style PPO
(``examples/cleanrl_ppo_clock.py``), RL Zoo PPO (``python -m rl_zoo3.train`` with
``agents/configs/zoo/ppo.yml``) and the ART recipe (``diffusion-gym train
agents/configs/art-gmm64d.yaml``, its distilled schedule), every one scored the same way:
RMSE of x_K to the reference ODE solution on held-out noise (a 2,048-entry reference bank
built from ``bank_seed`` 12345, training uses 0; one episode per env of a 2,048-env batch,
``rollout(seed=0)``, the same x_T for every learner), deterministic policy. Guidance-v0:
CleanRL-style PPO with the IRL reward (``agents.irl.DiscriminatorReward``,
``examples/cleanrl_ppo_guidance.py``) against the best constant (w, γ) on the class-
conditional energy distance.

    python benchmarks/plain_rl.py --learners art sb3-ppo cleanrl-ppo sac zoo-ppo guidance-irl \
        --seeds 0 --out runs/plain_rl

Each run is a subprocess (one torch thread); results go to ``OUT/<learner>_s<seed>.json``
(reused if present: ``--force`` reruns) and the table to ``OUT/plain_rl.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import sb3_clock  # noqa: E402 - the example's env settings and held-out scoring

LEARNERS = ("art", "sb3-ppo", "cleanrl-ppo", "sac", "zoo-ppo", "guidance-irl")
CLOCK_STEPS = 80_000  # env steps of every Clock learner (= art-gmm64d.yaml's total_timesteps)
GUIDANCE_STEPS = 300_000
EVAL = dict(num_samples=2048, bank_size=2048)  # held-out: bank_seed 12345 (sb3_clock)


def _run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed, see {log}")
    return time.perf_counter() - t0


def art(seed: int, steps: int, out: Path) -> dict:
    """The ART recipe (art-gmm64d.yaml: PPO, self-critical baseline, log-std annealing),
    its distilled schedule played as constant per-step actions."""
    run = out / f"art_s{seed}"
    cmd = [sys.executable, "-m", "agents.cli", "train", "agents/configs/art-gmm64d.yaml",
           "--out", str(run), f"seed={seed}", f"total_timesteps={steps}", "eval.oracle=false",
           "eval.budgets=[]", "eval.transfer_presets=[]", "eval.seeds=[0]",
           "eval.num_samples=64", "progress=false", "num_threads=1"]  # fmt: skip
    wall = _run(cmd, out / f"art_s{seed}.log")
    dist = json.loads((run / "distilled.json").read_text())
    means = np.asarray(dist["policy_means"], dtype=np.float64)
    act = lambda obs: np.full((len(obs), 1), means[_step(obs)])  # noqa: E731
    rmse = sb3_clock.heldout_rmse({"art": act}, **EVAL)["art"]
    return {"heldout_rmse": rmse, "train_seconds": round(dist["train_seconds"], 1),
            "wall_seconds": round(wall, 1), "sigmas": dist["sigmas"],
            "total_timesteps": steps}  # fmt: skip


def _step(obs: torch.Tensor) -> int:
    """k of a batch of time observations (column 1 = k/K, the same k in every row)."""
    return int(round(float(obs[0, 1]) * sb3_clock.ENV_KWARGS["budget"]))


def example(script: str, args: list[str], name: str, out: Path) -> dict:
    res_path = out / f"{name}.json"
    wall = _run([sys.executable, f"examples/{script}", *args, "--out", str(res_path)],
                out / f"{name}.log")  # fmt: skip
    res = json.loads(res_path.read_text())
    res["wall_seconds"] = round(wall, 1)
    return res


def zoo_ppo(seed: int, steps: int, out: Path) -> dict:
    """``python -m rl_zoo3.train`` with agents/configs/zoo/ppo.yml (its Clock-v0 entry)."""
    from stable_baselines3 import PPO

    logs = out / f"zoo_s{seed}"
    cmd = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env",
           "diffusion_gym/Clock-v0", "--gym-packages", "diffusion_gym",
           "-conf", "agents/configs/zoo/ppo.yml", "-n", str(steps), "--seed", str(seed),
           "-f", str(logs), "--num-threads", "1", "--eval-freq", "-1",
           "--verbose", "0"]  # fmt: skip
    wall = _run(cmd, out / f"zoo-ppo_s{seed}.log")
    model = PPO.load(logs / "ppo" / "diffusion_gym-Clock-v0_1" / "diffusion_gym-Clock-v0.zip")

    def act(obs: torch.Tensor) -> np.ndarray:
        return np.clip(model.predict(obs.numpy(), deterministic=True)[0], -1.0, 1.0)

    rmse = sb3_clock.heldout_rmse({"zoo": act}, **EVAL)["zoo"]
    return {"heldout_rmse": rmse, "wall_seconds": round(wall, 1), "total_timesteps": steps}


def run_one(learner: str, seed: int, steps: int, out: Path) -> dict:
    common = ["--seed", str(seed), "--total-timesteps", str(steps)]
    if learner == "art":
        return art(seed, steps, out)
    if learner == "zoo-ppo":
        return zoo_ppo(seed, steps, out)
    if learner in ("sb3-ppo", "sac"):
        algo = "ppo" if learner == "sb3-ppo" else "sac"
        return example("sb3_clock.py", ["--algo", algo, *common], f"{learner}_s{seed}", out)
    if learner == "cleanrl-ppo":
        return example("cleanrl_ppo_clock.py", common, f"{learner}_s{seed}", out)
    return example("cleanrl_ppo_guidance.py", common, f"{learner}_s{seed}", out)


def table(results: dict[str, dict[int, dict]]) -> str:
    """Markdown: held-out RMSE per Clock learner (mean over seeds, each seed), its ratio to
    the ART recipe's mean, env steps and training seconds; then the Guidance runs."""
    art_runs = results.get("art") or {}
    art_mean = np.mean([r["heldout_rmse"] for r in art_runs.values()]) if art_runs else None
    lines = [
        "| learner | env steps | held-out RMSE, mean | per seed | × ART | train s per seed |",
        "|---|---|---|---|---|---|",
    ]
    base = None
    for learner, runs in results.items():
        if learner == "guidance-irl" or not runs:
            continue
        seeds = sorted(runs)
        v = [runs[s]["heldout_rmse"] for s in seeds]
        base = next((runs[s]["base_rmse"] for s in seeds if "base_rmse" in runs[s]), base)
        ratio = f"{np.mean(v) / art_mean:.2f}" if art_mean else "–"
        steps = {runs[s].get("total_timesteps", "?") for s in seeds}
        secs = " / ".join(str(runs[s].get("train_seconds", "–")) for s in seeds)
        per = " / ".join(f"s{s}: {x:.4f}" for s, x in zip(seeds, v, strict=True))
        lines.append(
            f"| {learner} | {', '.join(map(str, steps))} | {np.mean(v):.4f} | {per} | {ratio} "
            f"| {secs} |"
        )
    if base is not None:
        ratio = f"{base / art_mean:.2f}" if art_mean else "–"
        lines.append(f"| *base schedule (a = 0, EDM ρ = 7)* | | {base:.4f} | | {ratio} | |")
    g = results.get("guidance-irl") or {}
    if g:
        lines += [
            "",
            "| Guidance-v0, IRL reward | env steps | energy ↓ | best constant | its energy "
            "| train s |",
            "|---|---|---|---|---|---|",
        ]
        for s in sorted(g):
            r = g[s]
            lines.append(
                f"| cleanrl-ppo s{s} | {r['total_timesteps']} | {r['energy']:.4f} "
                f"| {r['best_constant']} | {r['best_constant_energy']:.4f} | {r['train_seconds']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=LEARNERS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--steps", type=int, default=CLOCK_STEPS, help="env steps (Clock learners)")
    ap.add_argument("--guidance-steps", type=int, default=GUIDANCE_STEPS)
    ap.add_argument("--out", type=Path, default=Path("runs/plain_rl"))
    ap.add_argument("--force", action="store_true", help="rerun runs whose JSON exists")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[int, dict]] = {}
    for learner in args.learners:
        for seed in args.seeds:
            path = args.out / f"result_{learner}_s{seed}.json"
            if path.exists() and not args.force:
                res = json.loads(path.read_text())
            else:
                steps = args.guidance_steps if learner == "guidance-irl" else args.steps
                res = run_one(learner, seed, steps, args.out)
                path.write_text(json.dumps(res, indent=1))
            print(learner, seed, json.dumps(res), flush=True)
            results.setdefault(learner, {})[seed] = res
    md = table(results)
    (args.out / "plain_rl.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
