"""Running the benchmark: one (algorithm, env, seed) run with its learning curve, and the
loop over every pair of a config with the report written after each env."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from agents.parallel import run_pieces
from agents.vec_env import SB3VecEnv
from diffusion_gym.envs import batch_of

from .algos import (
    AlgoSpec,
    algo_kwargs,
    algo_spec,
    fit_reason,
    load_hyperparams,
    reward_normalization,
)
from .config import BenchmarkConfig, EnvConfig, train_kwargs
from .evaluation import baseline_policies, eval_kwargs, evaluate_policy_batch, make_vector_env
from .irl import irl_learn, irl_trainer
from .report import RunResult, jsonable, machine_info, merge_results, summarize, write_report

__all__ = [
    "CurveCallback",
    "reference_rows",
    "run_benchmark",
    "run_benchmark_parts",
    "run_one",
]


class CurveCallback(BaseCallback):
    """Evaluates the model every ``every`` env steps (also driven by hand: :meth:`tick`);
    logs ``eval/metric``, ``eval/return``.

    :param evaluate: model -> ``{"metric", "return"}`` on the evaluation batch.
    :param every: env steps between evaluations.
    """

    def __init__(self, evaluate: Callable[[Any], dict], every: int):
        super().__init__()
        self.evaluate, self.every = evaluate, every
        self.points: list[dict] = []
        self.eval_seconds = 0.0
        self.next_at = every
        self.train_return_fn: Callable[[], float] | None = None
        # ARS counts num_envs timesteps per env per vector step (sb3-contrib's
        # _trigger_callback inside evaluate_policy): true env steps = num_timesteps / scale.
        self.scale = 1

    @property
    def env_steps(self) -> int:
        """Env steps so far (``num_timesteps`` corrected by ``scale``)."""
        return int(self.num_timesteps // self.scale)

    def _on_step(self) -> bool:
        while self.env_steps >= self.next_at:
            self.next_at += self.every
            if self.env_steps < self.next_at:
                self.record()
        return True

    def tick(self) -> None:
        """Catch up with ``model.num_timesteps`` outside ``learn`` (IRL rounds)."""
        self.num_timesteps = self.model.num_timesteps
        self._on_step()

    def record(self) -> dict:
        """Evaluate now; append the point (metric, return, train return, steps)."""
        t0 = time.perf_counter()
        res = self.evaluate(self.model)
        self.eval_seconds += time.perf_counter() - t0
        if self.train_return_fn is not None:
            res["train_return"] = float(self.train_return_fn())
        else:
            buf = [e["r"] for e in self.model.ep_info_buffer or []]
            res["train_return"] = float(np.mean(buf)) if buf else math.nan
        res["steps"] = self.env_steps
        self.points.append(res)
        self.logger.record("eval/metric", res["metric"])
        self.logger.record("eval/return", res["return"])
        return res


def run_one(
    algo: str,
    env_cfg: EnvConfig,
    seed: int,
    cfg: BenchmarkConfig,
    eval_env: Any,
    tb_dir: Path | None = None,
) -> RunResult:
    """Train ``algo`` on ``env_cfg`` with ``seed`` for ``cfg.steps`` env steps; evaluate at
    ``cfg.eval.points`` points and at the end on ``eval_env`` (the fixed evaluation batch of
    this env, also used to check that the algorithm fits). Wall time and env steps/s exclude
    the evaluations."""
    spec = algo_spec(algo)
    result = RunResult(spec.name, env_cfg.label, seed, "ok")
    irl = env_cfg.irl is not None
    reason = fit_reason(spec, eval_env.single_action_space, irl=irl, env=batch_of(eval_env))
    if reason:
        return dataclasses.replace(result, status="skipped", reason=reason, seed=None)
    tb_name = f"{env_cfg.label}/{spec.name}_s{seed}"
    curve = CurveCallback(
        partial(evaluate_policy_batch, env=eval_env, seed=cfg.eval.seed, algo=spec.name),
        max(cfg.steps // max(cfg.eval.points, 1), 1),
    )
    n = env_cfg.num_envs or cfg.num_envs
    hp = load_hyperparams(spec.name, env_cfg.id, cfg.hyperparams, cfg.overrides.get(spec.name))
    if spec.name == "ars":
        hp.setdefault("n_eval_episodes", n)  # one episode per env per candidate
        curve.scale = n  # its num_timesteps overcounts by num_envs (see CurveCallback)
    space = eval_env.single_action_space
    policy, kwargs = algo_kwargs(spec, hp, space.shape[0] if hasattr(space, "low") else None)
    kwargs.update(seed=seed, device=cfg.device, verbose=0)
    norm = reward_normalization(hp)  # env reward only: IRL rewards come from agents.irl
    if irl:
        trainer = irl_trainer(spec, policy, kwargs, env_cfg, eval_env, n, cfg, tb_dir)
        learn = partial(irl_learn, trainer, cfg.steps, curve)
    else:
        model = _plain_model(spec, policy, kwargs, env_cfg, n, cfg, tb_dir, norm)
        learn = partial(_plain_learn, model, cfg.steps * curve.scale, curve, tb_name)
    t0 = time.perf_counter()  # construction (imports, networks) is not timed
    learn()
    wall = time.perf_counter() - t0 - curve.eval_seconds
    done = curve.points and curve.points[-1]["steps"] == curve.env_steps
    final = curve.points[-1] if done else curve.record()
    result.metric, result.eval_return = final["metric"], final["return"]
    result.train_return = final["train_return"]
    result.wall_s, result.steps = wall, curve.env_steps
    result.steps_per_s = result.steps / wall
    result.curve = curve.points
    return result


def _plain_model(
    spec: AlgoSpec,
    policy: str,
    kwargs: dict,
    env_cfg: EnvConfig,
    n: int,
    cfg: BenchmarkConfig,
    tb_dir: Path | None,
    norm: dict | None = None,
):
    """The algorithm on the native vector env (SB3 adapter + ``VecMonitor``, then
    ``VecNormalize`` of the reward if ``norm``), env reward."""
    native = make_vector_env(env_cfg.id, n, train_kwargs(env_cfg), cfg.env_device)
    native.reset(seed=kwargs["seed"])  # builds the clock env's reference bank, untimed
    venv = VecMonitor(SB3VecEnv(native))  # raw returns for the curves
    if norm is not None:
        venv = VecNormalize(venv, gamma=kwargs.get("gamma", 0.99), **norm)
    tb = str(tb_dir) if tb_dir else None
    return spec.load()(policy, venv, tensorboard_log=tb, **kwargs)


def _plain_learn(model: Any, steps: int, curve: CurveCallback, tb_name: str) -> None:
    model.learn(steps, callback=curve, tb_log_name=tb_name)
    model.get_env().close()


# ---------------------------------------------------------------------------------------------
# The benchmark


def reference_rows(cfg: BenchmarkConfig, labels: list[str] | None = None) -> dict:
    """The constant-action reference rows (``{label: {policy: {metric, return}}}``) of the
    envs of ``cfg`` (only ``labels`` if given), on the evaluation batch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.num_threads)
    try:
        out = {}
        for env_cfg in cfg.envs:
            if labels is not None and env_cfg.label not in labels:
                continue
            n_eval = cfg.eval.num_samples
            eval_env = make_vector_env(env_cfg.id, n_eval, eval_kwargs(env_cfg), cfg.env_device)
            out[env_cfg.label] = {
                name: evaluate_policy_batch(p, eval_env, cfg.eval.seed)
                for name, p in baseline_policies(eval_env).items()
            }
            eval_env.close()
        return out
    finally:
        torch.set_num_threads(threads)


def _part(cfg: BenchmarkConfig, out: str) -> dict:
    """One part of :func:`run_benchmark_parts` (a Ray task or a plain call)."""
    return run_benchmark(cfg, out, baselines=False, log=lambda _msg: None)


def run_benchmark_parts(
    cfg: BenchmarkConfig, out_dir: str | Path, log: Callable[[str], None] = print,
    use: str | None = None,
) -> dict:  # fmt: skip
    """:func:`run_benchmark` split into parts, one per (env, algorithm), each its own
    benchmark in ``out_dir/parts/<env>_<algo>``, run as Ray tasks when Ray is there (one CPU
    each, :mod:`agents.parallel`; ``use`` forces ``"ray"`` or ``"local"``) and one after
    another here otherwise; then merged (the ``--merge`` of the parts) with the reference
    rows computed here, and the report written into ``out_dir``. The runs equal those of
    :func:`run_benchmark` (every run is seeded by its own seed, one torch thread per part:
    ``num_threads``)."""
    out = Path(out_dir)
    pieces = []
    for env_cfg in cfg.envs:
        for algo in cfg.algos:
            part = dataclasses.replace(cfg, envs=[env_cfg], algos=[algo])
            name = f"{env_cfg.label}_{algo}".replace("/", "_")
            pieces.append((part, str(out / "parts" / name)))
    parts = run_pieces(_part, pieces, num_threads=cfg.num_threads, use=use)
    for p in parts:
        for r in p["runs"]:
            log(f"{r['env']:28s} {r['algo']:13s} seed {r['seed']}: {r['status']} "
                f"metric {r['metric']:.4g}")  # fmt: skip
    results = merge_results([d for _, d in pieces])
    results["config"] = jsonable(dataclasses.asdict(cfg))
    results["baselines"] = reference_rows(cfg)
    write_report(results, out)
    return results


def run_benchmark(
    cfg: BenchmarkConfig,
    out_dir: str | Path,
    log: Callable[[str], None] = print,
    baselines: bool = True,
) -> dict:
    """Run every (algorithm, env, seed) of ``cfg``; write the report into ``out_dir``.

    :param baselines: also evaluate the constant-action reference rows (a part of a larger
        benchmark leaves them to the merge, :func:`run_benchmark_parts`).
    :returns: the JSON-able results: ``config``, ``machine``, ``baselines`` (constant-action
        policies per env), ``runs`` (every :class:`RunResult`) and ``summary`` (per algorithm
        and env: mean ± std over seeds).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.num_threads)
    try:
        runs, base_rows = [], {}
        for env_cfg in cfg.envs:
            n_eval = cfg.eval.num_samples
            eval_env = make_vector_env(env_cfg.id, n_eval, eval_kwargs(env_cfg), cfg.env_device)
            if baselines:
                base_rows[env_cfg.label] = {
                    name: evaluate_policy_batch(p, eval_env, cfg.eval.seed)
                    for name, p in baseline_policies(eval_env).items()
                }
            for algo in cfg.algos:
                for seed in cfg.seeds:
                    res = _run_guarded(algo, env_cfg, seed, cfg, eval_env, out, log)
                    runs.append(res)
                    if res.status == "skipped":
                        break  # the reason does not depend on the seed
            eval_env.close()
            results = {
                "config": jsonable(dataclasses.asdict(cfg)),
                "machine": machine_info(),
                "baselines": base_rows,
                "runs": [dataclasses.asdict(r) for r in runs],
                "summary": summarize(runs),
            }
            write_report(results, out)  # after every env: a partial report survives a kill
        return results
    finally:
        torch.set_num_threads(threads)


def _run_guarded(algo, env_cfg, seed, cfg, eval_env, out: Path, log) -> RunResult:
    """:func:`run_one`, with a failure recorded (status ``"failed"``) instead of raised."""
    tb = out / "tb" if cfg.tensorboard else None
    t0 = time.perf_counter()
    try:
        res = run_one(algo, env_cfg, seed, cfg, eval_env, tb)
    except Exception as e:  # noqa: BLE001  (a broken pair must not stop the benchmark)
        res = RunResult(algo, env_cfg.label, seed, "failed", reason=f"{type(e).__name__}: {e}")
    msg = f"[{time.perf_counter() - t0:6.1f}s] {env_cfg.label:28s} {algo:13s} "
    if res.status == "ok":
        msg += f"seed {seed}: metric {res.metric:.4g}  return {res.eval_return:.4g}"
        msg += f"  {res.steps_per_s:.0f} steps/s"
    else:
        msg += f"{res.status}: {res.reason}"
    log(msg)
    return res
