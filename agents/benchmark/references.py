"""Normalised benchmark scores (as D4RL's): 0 = the env's default policy, 1 = the best known
fixed strategy, each reference stored in ``references.json`` next to this module with how it
was found.

score = (metric(default) − metric(policy)) / (metric(default) − metric(best fixed)), for the
benchmark's lower-is-better metrics (energy distance, RMSE to the reference solve); a policy
better than the best fixed strategy scores above 1, one worse than the default below 0.

- default policy: Guidance w = 1, γ = 0 at every step (the plain conditional sampler);
  Clock a = 0 at every step (the base schedule).
- best fixed strategy, an open-loop per-step action sequence (:class:`StepPolicy`) found by
  search on a *search* batch (``search_seed``, disjoint from the evaluation seed) and then
  measured on the benchmark's evaluation batch:

  - Guidance: every constant (w, γ) of the action table, and every interval guidance
    (a table entry on steps [i, j), w = 1 γ = 0 elsewhere), the best on the search batch;
  - Clock: the oracle speed schedule for the env's solver: coordinate descent over the K − 1
    free speeds (the last step is forced to σ = 0) on a grid of ``grid`` values in [−1, 1],
    ``sweeps`` passes, from a = 0, from the best constant speed and, when the package ships
    one for the preset × solver × NFE, from the clock actions of that published (oracle)
    schedule (``ClockVectorEnv.actions_from_schedule``).

A reference applies to an env config of the benchmark only when its id, its kwargs (except
``reward``, which does not change the metric) and the evaluation batch (``num_samples``,
``seed``) are those stored; otherwise the table shows no score for that env.

Recompute (writes ``references.json``; the command, seeds, date and search space are stored
with every entry)::

    python -m agents.benchmark.references baselines/configs/leaderboard.yaml
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffusion_gym import schedules as _schedules
from diffusion_gym import steps as _steps
from diffusion_gym.envs import ClockVectorEnv, batch_of
from diffusion_gym.io import atomic_write_json

from .config import BenchmarkConfig, EnvConfig, EvalConfig, load_config
from .evaluation import StepPolicy, eval_kwargs, evaluate_policy_batch, make_vector_env

__all__ = [
    "REFERENCES_PATH",
    "find_reference",
    "load_references",
    "main",
    "normalized_score",
    "reference_for",
]

REFERENCES_PATH = Path(__file__).with_name("references.json")
#: Seed of the search batch (the evaluation batches of the configs use other seeds).
SEARCH_SEED = 777


def load_references(path: str | Path | None = None) -> dict:
    """The stored references ``{key: entry}`` (an empty dict if the file does not exist)."""
    p = Path(path) if path is not None else REFERENCES_PATH
    if not p.is_file():
        return {}
    return json.loads(p.read_text())["references"]


def _key(env_cfg: EnvConfig, eval_cfg: EvalConfig) -> dict:
    kwargs = {k: v for k, v in sorted(env_cfg.kwargs.items()) if k != "reward"}
    return {"id": env_cfg.id, "kwargs": kwargs,
            "eval": {"num_samples": eval_cfg.num_samples, "seed": eval_cfg.seed}}  # fmt: skip


def _key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True)


def reference_for(env_cfg: EnvConfig, eval_cfg: EvalConfig, refs: dict | None = None):
    """The stored reference entry for this env config and evaluation batch, or None."""
    refs = load_references() if refs is None else refs
    return refs.get(_key_text(_key(env_cfg, eval_cfg)))


def normalized_score(metric: float, ref: dict) -> float:
    """(default − metric) / (default − best) of a lower-is-better ``metric``."""
    d, b = ref["default"]["metric"], ref["best"]["metric"]
    if not (math.isfinite(metric) and d > b):
        return math.nan
    return (d - metric) / (d - b)


# ---------------------------------------------------------------------------------------------
# Finding a reference


def _measure(actions: list, env: Any, seed: int) -> float:
    return evaluate_policy_batch(StepPolicy(actions), env, seed)["metric"]


def _guidance_candidates(batch) -> dict[str, list]:
    table, n = batch.action_table, batch.num_steps
    default = table.encode(np.int64(int(np.argmin(np.abs(table.weights - 1.0)))),
                           np.int64(int(np.argmin(table.gammas))))  # fmt: skip
    out = {}
    for (i, w), (j, g) in itertools.product(enumerate(table.weights), enumerate(table.gammas)):
        act = table.encode(np.int64(i), np.int64(j))
        out[f"const w={float(w):g} γ={float(g):g}"] = [act] * n
        for lo in range(n):
            for hi in range(lo + 1, n + 1):
                if (lo, hi) != (0, n):
                    seq = [act if lo <= k < hi else default for k in range(n)]
                    out[f"w={float(w):g} γ={float(g):g} on steps [{lo}, {hi})"] = seq
    return out


def _published_actions(batch: ClockVectorEnv) -> np.ndarray | None:
    """The clock actions of the schedule the package publishes for the env's preset × solver
    × NFE (:func:`diffusion_gym.schedules.load_published`), or None when none is shipped or
    it is out of the clock's reach."""
    rec = _schedules.find_published(
        batch.preset.name, batch.solver, _steps.nfe_of(batch.budget, batch.solver)
    )
    if rec is None:
        return None
    try:
        return batch.actions_from_schedule(rec["sigmas"]).numpy()
    except ValueError:  # another σ range or budget, or |a| > 1 at this speed scale
        return None


def _clock_search(env: Any, seed: int, grid: int, sweeps: int) -> tuple[str, list, int, bool]:
    batch = batch_of(env)
    k = batch.budget
    values = np.linspace(-1.0, 1.0, grid)
    evals = 0

    def score(a: np.ndarray) -> float:
        nonlocal evals
        evals += 1
        return _measure([np.array([v], dtype=np.float32) for v in a], env, seed)

    consts = {float(v): score(np.full(k, v)) for v in values}
    starts = [np.zeros(k), np.full(k, min(consts, key=consts.get))]
    published = _published_actions(batch)
    if published is not None:  # the oracle schedule the package ships for this solver
        starts.append(published)
    best_a, best_m = None, math.inf
    for a in starts:
        a, m = a.copy(), score(a)
        for _ in range(sweeps):
            for i in range(k - 1):  # the last speed is ignored (forced final step)
                for v in values:
                    trial = a.copy()
                    trial[i] = v
                    mt = score(trial)
                    if mt < m:
                        a, m = trial, mt
        if m < best_m:
            best_a, best_m = a, m
    name = "speeds [" + ", ".join(f"{v:.4g}" for v in best_a) + "]"
    return name, [np.array([v], dtype=np.float32) for v in best_a], evals, published is not None


def find_reference(
    env_cfg: EnvConfig, eval_cfg: EvalConfig, search_seed: int = SEARCH_SEED,
    device: str = "cpu", grid: int = 9, sweeps: int = 2,
) -> dict:  # fmt: skip
    """Search the best fixed strategy of ``env_cfg`` on the search batch, then measure it and
    the default policy on the evaluation batch ``eval_cfg``; returns the stored entry."""
    if search_seed == eval_cfg.seed:
        raise ValueError("search_seed must differ from the evaluation seed")
    t0 = time.perf_counter()
    env = make_vector_env(env_cfg.id, eval_cfg.num_samples, eval_kwargs(env_cfg), device)
    batch = batch_of(env)
    if isinstance(batch, ClockVectorEnv):
        default = ("base schedule (a=0)", [np.zeros(1, dtype=np.float32)] * batch.budget)
        name, best, evals, from_published = _clock_search(env, search_seed, grid, sweeps)
        pub = (" and from the published schedule of the preset x solver x NFE "
               "(diffusion_gym.schedules.load_published)") if from_published else ""  # fmt: skip
        how = (f"coordinate descent over the {batch.budget - 1} free clock speeds, grid of "
               f"{grid} values in [-1, 1], {sweeps} sweeps, from a=0, from the best "
               f"constant{pub}; {evals} evaluations on the search batch")  # fmt: skip
    else:
        cands = _guidance_candidates(batch)
        table = batch.action_table
        d = cands[f"const w={1:g} γ={float(min(table.gammas)):g}"]
        default = ("const w=1 γ=0", d)
        scores = {n: _measure(a, env, search_seed) for n, a in cands.items()}
        name = min(scores, key=scores.get)
        best, evals = cands[name], len(cands)
        how = (f"every constant (w, γ) of the action table and every interval [i, j) of the "
               f"{batch.num_steps} steps with one table entry (w=1 γ=0 elsewhere): {evals} "
               "candidates on the search batch")  # fmt: skip
    entry = {
        "key": _key(env_cfg, eval_cfg),
        "default": {"policy": default[0], "metric": _measure(default[1], env, eval_cfg.seed)},
        "best": {
            "policy": name,
            "metric": _measure(best, env, eval_cfg.seed),
            "actions": [np.asarray(a).tolist() for a in best],
            "search_metric": _measure(best, env, search_seed),
        },  # fmt: skip
        "how": how,
        "search_seed": search_seed,
        "seconds": time.perf_counter() - t0,
    }
    env.close()
    return entry


def compute_references(
    cfg: BenchmarkConfig, device: str = "cpu", log=print, labels: list[str] | None = None
) -> dict:
    """``{key text: entry}`` for every env of ``cfg`` (one per distinct key), or only for the
    envs whose label is in ``labels`` (an unknown label is a ``ValueError``)."""
    known = [e.label for e in cfg.envs]
    unknown = sorted(set(labels or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown env label(s) {unknown}; the config's labels are {known}")
    out = {}
    for env_cfg in cfg.envs:
        if labels is not None and env_cfg.label not in labels:
            continue
        key = _key_text(_key(env_cfg, cfg.eval))
        if key in out:
            continue
        entry = find_reference(env_cfg, cfg.eval, device=device)
        log(f"{env_cfg.label}: default {entry['default']['metric']:.4g}, best fixed "
            f"{entry['best']['metric']:.4g} ({entry['best']['policy']}), "
            f"{entry['seconds']:.0f} s")  # fmt: skip
        out[key] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.benchmark.references CONFIG... [--out PATH]``: compute the references
    of every env of the benchmark configs and merge them into ``references.json``."""
    p = argparse.ArgumentParser(prog="python -m agents.benchmark.references")
    p.add_argument("configs", nargs="+", help="benchmark YAML files")
    p.add_argument("--out", default=str(REFERENCES_PATH), help="the JSON to update")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--envs", nargs="+", default=None, metavar="LABEL",
                   help="only these env labels (e.g. Clock-v0/terminal_error); the other "
                   "stored references are kept")  # fmt: skip
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    refs = load_references(args.out)
    command = "python -m agents.benchmark.references " + " ".join(args.configs)
    if args.envs:
        command += " --envs " + " ".join(args.envs)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    for path in args.configs:
        for key, entry in compute_references(load_config(path), labels=args.envs).items():
            refs[key] = {**entry, "command": command, "config": path, "date": date,
                         "torch_threads": args.threads}  # fmt: skip
    doc = {"about": "normalised-score references of agents.benchmark (see references.py)",
           "references": refs}  # fmt: skip
    atomic_write_json(args.out, doc, indent=1)
    print(f"wrote {len(refs)} references to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
