"""What the IRL reward says about each constant action: the diagnosis of issue #20 item 7.

:func:`reward_diagnosis` rolls out every constant (w, γ) of the action table and the learned
policy on the same noise, and reports per step k the discriminator's mean logit ℓ(s_{k+1})
and reward of the states each row arrives in, the same numbers for expert states (real x_0
noised to σ_{k+1}), the discriminator's accuracy expert-vs-row, and the row's final score in
the harness. It answers three questions about a run:

- *reward scale near the expert*: do the rewards of the good constants differ by more than
  their standard error (``reward_se``)? If the return of the best constant is within noise
  of its neighbours', PPO has nothing to climb;
- *discriminator saturation*: is the accuracy ≈ 1 (logits at the clip) at some step for
  every row, so that step's reward is the same for all actions and only adds noise;
- *does the reward rank what the metric ranks*: the Spearman correlation between a row's
  return (sum of rewards over steps) and its final score (:func:`rank_agreement`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.evaluate import HIGHER_IS_BETTER, FixedSchedule, evaluate
from diffusion_gym.config import load
from diffusion_gym.io import atomic_write_json
from diffusion_gym.noise import make_labels, make_noise

from ..checkpoint import latest
from .config import Config, EvalConfig
from .strategy import baseline_strategies
from .trainer import IRLTrainer, decode_step_class

__all__ = ["diagnosis_markdown", "load_run", "main", "rank_agreement", "reward_diagnosis"]


def _constant_actor(action):
    """The same action (a table index, or a box action ``[m]``) for every sample and step."""
    a = torch.as_tensor(np.asarray(action))
    return lambda obs, k: a.expand(obs.shape[0], *a.shape).clone()


@torch.no_grad()
def reward_diagnosis(
    trainer: IRLTrainer,
    num_samples: int = 2048,
    seed: int = 4242,
    metric: str = "energy",
    profiles: dict[str, list[tuple[float, float]]] | None = None,
) -> dict[str, Any]:
    """Per row (``irl-policy`` and every ``const-w{w}-g{γ}``) and step: mean logit, mean
    reward and its standard error, discriminator accuracy against expert states at the same
    σ and class; the row's return and final ``metric``. ``seed``: the noise (use one that is
    not an evaluation seed). ``profiles``: extra rows ``{name: [(w, γ) per step]}`` of
    table entries (e.g. a guidance interval: w = 2 on the last steps only)."""
    if trainer.disc_env is not None:
        raise ValueError("reward_diagnosis needs discriminator.input=obs with env.obs_mode=state")
    env = penv = trainer.env
    preset = penv.preset
    labels = make_labels(preset, num_samples, seed, trainer.cfg.eval.class_labels)
    table = penv.action_table
    actors = {"irl-policy": trainer.strategy().actor()}
    for wi, w in enumerate(table.weights):
        for gi, g in enumerate(table.gammas):
            act = table.encode(np.array(wi), np.array(gi))  # an index, or a box action
            actors[f"const-w{w:g}-g{g:g}"] = _constant_actor(act)
    extra = []
    for name, seq in (profiles or {}).items():
        if len(seq) != penv.num_steps:
            raise ValueError(f"profile {name!r} needs {penv.num_steps} (w, gamma) pairs")
        idx = [_index(table, w, g) for w, g in seq]
        actors[name] = _sequence_actor(idx)
        ws, gs = [w for w, _ in seq], [g for _, g in seq]
        extra.append(FixedSchedule(name, penv.sigmas.cpu(), penv.solver, guidance=ws, gamma=gs))
    gen = torch.Generator().manual_seed(seed)
    n = penv.num_steps
    rows: dict[str, Any] = {}
    for name, actor in actors.items():
        x_T, streams = make_noise(preset, num_samples, seed)  # noqa: N806 (fresh streams)
        run = penv.rollout(actor, x_T=x_T, class_labels=labels, streams=streams)
        per_step = []
        for k in range(n):
            obs = run.observations[k + 1].to(trainer.device)
            kk, lab = decode_step_class(env, obs)
            expert = env.expert_observations(kk, lab, gen).float().to(trainer.device)
            ell = trainer.logit(obs.float())
            ell_e = trainer.logit(expert)
            r = trainer.reward(obs.float()).double()
            acc = 0.5 * (float((ell_e > 0).float().mean()) + float((ell < 0).float().mean()))
            per_step.append({
                "sigma": float(penv.sigmas[k + 1]),
                "logit": float(ell.mean()), "expert_logit": float(ell_e.mean()),
                "reward": float(r.mean()), "reward_se": float(r.std() / np.sqrt(len(r))),
                "accuracy": acc,
                "clipped": _clipped_share(trainer, ell),
            })  # fmt: skip
        rows[name] = {"steps": per_step, "return": float(sum(s["reward"] for s in per_step))}
    strategies = [trainer.strategy(), *baseline_strategies(penv, EvalConfig()), *extra]
    res = evaluate(strategies, preset, num_samples=num_samples, seeds=[seed],
                   class_labels=trainer.cfg.eval.class_labels, metrics=[metric],
                   progress=False)  # fmt: skip
    for name in rows:
        rows[name][metric] = float(res[name][metric]["mean"])
    return {"metric": metric, "seed": seed, "num_samples": num_samples, "rows": rows,
            "rank_agreement": rank_agreement(rows, metric)}  # fmt: skip


def _sequence_actor(actions: list):
    """Step k's action (a table index or a box action) for every sample."""
    seq = [torch.as_tensor(np.asarray(a)) for a in actions]
    return lambda obs, k: seq[k].expand(obs.shape[0], *seq[k].shape).clone()


def _index(table, w: float, g: float):
    """The action of the table entry (w, γ) in the table's format (an index or a box row)."""
    wi, gi = np.flatnonzero(table.weights == w), np.flatnonzero(table.gammas == g)
    if not len(wi) or not len(gi):
        raise ValueError(f"(w, gamma) = ({w}, {g}) is not in the action table")
    return table.encode(np.array(int(wi[0])), np.array(int(gi[0])))


def _clipped_share(trainer: IRLTrainer, ell: torch.Tensor) -> float:
    c = trainer.cfg.discriminator.logit_clip
    return 0.0 if c is None else float((ell.abs() >= c).float().mean())


def rank_agreement(rows: dict[str, Any], metric: str) -> float:
    """Spearman correlation between the rows' returns and their ``metric`` (sign-adjusted:
    +1 = the reward ranks the rows exactly as the metric does)."""
    names = list(rows)
    ret = np.array([rows[n]["return"] for n in names])
    score = np.array([rows[n][metric] for n in names])
    if metric not in HIGHER_IS_BETTER:
        score = -score
    ra, rb = _ranks(ret), _ranks(score)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(len(v))
    return r


def diagnosis_markdown(d: dict[str, Any], top: int = 6) -> str:
    """The policy and the ``top`` best constants by the metric: return, per-step reward ±
    standard error, accuracy and clipped share."""
    m = d["metric"]
    rows = d["rows"]
    better = max if m in HIGHER_IS_BETTER else min
    consts = sorted((n for n in rows if n.startswith("const-")), key=lambda n: rows[n][m],
                    reverse=better is max)[:top]  # fmt: skip
    n = len(rows["irl-policy"]["steps"])
    head = (
        "| row | "
        + m
        + " | return | "
        + " | ".join(
            f"step {k} (σ={rows['irl-policy']['steps'][k]['sigma']:.3g}) r ± se / acc / clip"
            for k in range(n)
        )
        + " |"
    )
    lines = [head, "|" + "---|" * (3 + n)]
    profiles = [n for n in rows if n != "irl-policy" and not n.startswith("const-")]
    for name in ["irl-policy", *profiles, *consts]:
        r = rows[name]
        cells = [f"{s['reward']:.3f} ± {s['reward_se']:.3f} / {s['accuracy']:.2f} / "
                 f"{s['clipped']:.2f}" for s in r["steps"]]  # fmt: skip
        lines.append(f"| {name} | {r[m]:.4g} | {r['return']:.3f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Spearman(return, −{m}) over all {len(rows)} rows: {d['rank_agreement']:.2f}")
    return "\n".join(lines)


def load_run(run_dir: str | Path) -> IRLTrainer:
    """The trainer of a finished (or interrupted) run: its ``config.yaml`` and newest
    checkpoint, with the best validated policy where ``policy.keep_best`` is set (what the
    run's own final evaluation scored)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"no config.yaml in {str(run_dir)!r}: not an IRL run directory")
    cfg = load(Config, run_dir / "config.yaml")
    found = latest(run_dir / "checkpoints", "round_")
    if found is None:
        raise FileNotFoundError(f"no complete checkpoint under {str(run_dir / 'checkpoints')!r}")
    trainer = IRLTrainer(replace(cfg, policy=replace(cfg.policy, init="default", init_action=None)))
    trainer.load(found)
    if cfg.policy.keep_best:
        trainer.use_best()  # the parameters the run's final evaluation used
    return trainer


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.irl.diagnose RUN_DIR [--num-samples N] [--seed S]``: the reward
    diagnosis of a run (table on stdout, ``RUN_DIR/diagnosis.json``)."""
    ap = argparse.ArgumentParser(
        prog="python -m agents.irl.diagnose", description=__doc__.split("\n")[0]
    )
    ap.add_argument("run_dir")
    ap.add_argument("--num-samples", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=4242, help="noise seed (not an eval seed)")
    ap.add_argument("--profile", action="append", default=[],
                    help="NAME=w,g;w,g;... an extra per-step row (table entries)")  # fmt: skip
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    trainer = load_run(a.run_dir)
    profiles = {}
    for item in a.profile:
        name, _, spec = item.partition("=")
        profiles[name] = [tuple(float(v) for v in pair.split(",")) for pair in spec.split(";")]
    d = reward_diagnosis(trainer, a.num_samples, a.seed, profiles=profiles)
    atomic_write_json(Path(a.run_dir) / "diagnosis.json", d)
    print(diagnosis_markdown(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
