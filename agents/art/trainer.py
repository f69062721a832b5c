"""ART-RL training entry (``diffusion-gym train``, ``agent: art``): train, restart, resume,
distil, export ``schedule.json``, evaluate.

Seeding: :func:`_train_once` seeds torch's global RNG with the run's seed, once per training
(restart r is one training with ``seed + r`` and ``actor_critic.seed + r``); SB3 seeds its
own model from ``cfg.seed`` and :class:`ContinuousActorCritic` its networks and exploration
noise from ``actor_critic.seed`` without touching the global RNG.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from baselines import schedules as B  # noqa: N812
from baselines.metrics import check_metrics_data
from diffusion_gym import presets as _presets
from diffusion_gym import schedules as _schedules
from diffusion_gym import steps as _steps
from diffusion_gym.io import atomic_write_json, atomic_write_text, read_jsonl

from ..checkpoint import (
    Interrupted,
    interrupt_requested,
    latest,
    load_state,
    save_checkpoint,
    training,
)
from ..parallel import run_pieces
from .actor_critic import ContinuousActorCritic
from .closed_loop import evaluate_closed_loop
from .config import Config
from .report import evaluate_schedule
from .sb3 import ArtCallback, distill, make_env, make_model, restore_sb3

__all__ = ["RESTART_SELECT_SAMPLES", "run", "trim_log"]

#: Training-noise samples that score the restarts (``Config.restarts``).
RESTART_SELECT_SAMPLES = 1024


def trim_log(path: Path, step: int) -> None:
    """Keep the lines of a JSON-lines log whose ``"step"`` is below ``step`` (and drop a torn
    last line): a resumed run then appends each later step exactly once."""
    if path.exists():
        keep = [rec for rec in read_jsonl(path) if rec.get("step", -1) < step]
        atomic_write_text(path, "".join(json.dumps(rec) + "\n" for rec in keep))


def _train_sb3(cfg: Config, out: Path, resume: bool) -> tuple[torch.Tensor, list[float]]:
    env, _ = make_env(cfg)
    found = latest(out / "checkpoints", "step_") if resume else None
    model = make_model(cfg, env, tensorboard_log=str(out / "tb"))
    state = None
    if found is not None:
        state = load_state(found)
        restore_sb3(model, state)
        print(f"resuming from {found} at {model.num_timesteps} steps")
    trim_log(out / "mean_schedules.jsonl", model.num_timesteps)
    callback = ArtCallback(cfg, out, model.num_timesteps, restore=state)
    remaining = cfg.total_timesteps - model.num_timesteps
    if remaining > 0:
        with training():
            model.learn(
                remaining, callback=callback, tb_log_name="art",
                reset_num_timesteps=state is None, progress_bar=cfg.progress,
            )  # fmt: skip
    callback.init_callback(model)
    callback.checkpoint()  # the final one (kept if this step is already saved)
    env.close()
    sigmas, actions = distill(model, cfg)
    return sigmas, [float(a) for a in actions]


def _train_art_ac(cfg: Config, out: Path, resume: bool) -> tuple[torch.Tensor, list[float]]:
    p = _presets.make(cfg.preset, device=cfg.device)
    labels = None
    if p.num_classes > 0:
        labels = lambda n, g: p.data.sample_labels(n, generator=g)  # noqa: E731
    ac = ContinuousActorCritic(p.denoiser, cfg.budget, p.sigma_max, p.prior_std,
                               cfg.actor_critic, class_sampler=labels)  # fmt: skip
    ckpts = out / "checkpoints"
    found = latest(ckpts, "art_ac_") if resume else None
    if found is not None:
        ac.load_state(load_state(found))
        print(f"resuming from {found} at iteration {ac.iteration}")
    writer = SummaryWriter(str(out / "tb" / "art_ac"))
    total = cfg.actor_critic.iterations
    bar = tqdm(total=total, initial=ac.iteration, disable=not cfg.progress, desc="art_ac")
    with training():
        while ac.iteration < total:
            logs = ac.update()
            for k, v in logs.items():
                writer.add_scalar(k, v, ac.iteration)
            bar.update(1)
            stop = interrupt_requested()
            if stop or ac.iteration % cfg.checkpoint_every == 0 or ac.iteration == total:
                save_checkpoint(ckpts, "art_ac_", ac.iteration, ac.state())
            if stop:
                writer.close()
                raise Interrupted(f"checkpoint of iteration {ac.iteration} in {ckpts}")
    bar.close()
    writer.close()
    return ac.schedule(), [float(v) for v in ac.mean_speeds()]


def _train_once(cfg: Config, out: Path, resume: bool) -> tuple[torch.Tensor, list[float]]:
    """One training in ``out`` (the one place a run seeds torch's global RNG)."""
    torch.manual_seed(cfg.seed)  # any seed in [0, 2**63 - 1]
    if cfg.algo == "art_ac":
        return _train_art_ac(cfg, out, resume)
    return _train_sb3(cfg, out, resume)


def _restart_piece(cfg: Config, out: Path, resume: bool) -> None:
    """One restart in ``out`` (a Ray task or a plain call): train, write ``distilled.json``."""
    sig, means = _train_once(cfg, out, resume)
    rec = {"sigmas": _schedules.schedule_to_list(sig), "policy_means": means}
    atomic_write_json(out / "distilled.json", rec)


def _train_restarts(cfg: Config, out: Path, resume: bool):
    """Train ``cfg.restarts`` seeds in ``out/restart<r>`` (a finished one is reused on
    resume) and keep the schedule with the lowest RMSE on the harness's training noise."""
    p = _presets.make(cfg.preset, device=cfg.device)
    data = B.training_set(p, RESTART_SELECT_SAMPLES, seed=0)
    subs, todo = [], []
    for r in range(cfg.restarts):
        ac = replace(cfg.actor_critic, seed=cfg.actor_critic.seed + r)  # art_ac's own seed
        sub, sub_cfg = out / f"restart{r}", replace(cfg, seed=cfg.seed + r, actor_critic=ac)
        (sub / "checkpoints").mkdir(parents=True, exist_ok=True)
        subs.append((sub, sub_cfg))
        if not (resume and (sub / "distilled.json").exists()):
            todo.append((sub_cfg, sub, resume))
    # The restarts still to train: Ray tasks when Ray is there (agents.parallel), else here.
    gpus = 1 if str(cfg.device).startswith("cuda") else 0
    run_pieces(_restart_piece, todo, num_gpus=gpus, num_threads=cfg.num_threads)
    runs = []
    for r, (sub, sub_cfg) in enumerate(subs):
        rec = json.loads((sub / "distilled.json").read_text())
        sig, means = torch.tensor(rec["sigmas"], dtype=torch.float64), rec["policy_means"]
        rmse = B.schedule_rmse(p, sig, cfg.solver, data)
        print(f"restart {r} (seed {sub_cfg.seed}): training-noise RMSE {rmse:.4g}")
        runs.append((rmse, r, sig, means))
    best = min(runs, key=lambda t: t[0])
    extra = {"restart": best[1], "restart_train_rmse": [t[0] for t in runs],
             "restart_select_samples": RESTART_SELECT_SAMPLES}  # fmt: skip
    return best[2], best[3], extra


def run(config: Config, out_dir: str | Path, resume: bool = False) -> dict:
    """Train (SB3 PPO/A2C/SAC or ART's actor-critic), distil, export ``schedule.json``,
    evaluate against the baselines with the harness; returns the ``eval.json`` results.

    Writes into ``out_dir``: ``checkpoints/`` (``--resume`` continues from the latest;
    with ``restarts`` > 1 each restart's files are in ``restart<r>/``),
    ``tb/`` (TensorBoard), ``schedule.json``, ``distilled.json`` (mean actions or speeds),
    ``eval.json``/``eval.md``/PNGs, ``transfer.json``/``transfer.md`` when asked for, and
    for a state-dependent policy (``policy_inputs: full``) ``closed_loop.json``/``.md``: the
    policy run closed loop against the fixed schedules on the same held-out bank entries
    (:mod:`.closed_loop`).
    """
    cfg, out = config, Path(out_dir)
    if cfg.num_threads is not None:
        if not isinstance(cfg.num_threads, int) or cfg.num_threads < 1:
            raise ValueError(f"num_threads must be None or an int >= 1, got {cfg.num_threads!r}")
        torch.set_num_threads(cfg.num_threads)
    # The evaluation's metrics and the preset's data (a user's model may have none), before
    # any training.
    preset = _presets.make(cfg.preset, device=cfg.device)
    check_metrics_data(preset, cfg.eval.metrics)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if cfg.restarts == 1:
        sigmas, policy_means = _train_once(cfg, out, resume)
        extra = {}
    else:
        sigmas, policy_means, extra = _train_restarts(cfg, out, resume)
    train_s = time.time() - t0
    _schedules.save_schedule(
        out / "schedule.json", sigmas, cfg.solver, cfg.budget, cfg.preset,
        nfe=_steps.nfe_of(cfg.budget, cfg.solver),
        sigma_min=preset.sigma_min, sigma_max=preset.sigma_max,
        source=f"ART-RL {cfg.algo} ({cfg.reward}, {cfg.total_timesteps} steps, seed {cfg.seed})",
    )  # fmt: skip
    record = {"policy_means": policy_means, "sigmas": _schedules.schedule_to_list(sigmas),
              "train_seconds": train_s, "torch_threads": torch.get_num_threads(),
              "config_num_threads": cfg.num_threads, **extra}  # fmt: skip
    atomic_write_json(out / "distilled.json", record)
    print(f"distilled schedule ({train_s:.0f} s): {[round(float(s), 4) for s in sigmas]}")
    results = evaluate_schedule(cfg, sigmas, out)
    if cfg.policy_inputs == "full" and cfg.algo != "art_ac":  # a state-dependent policy
        model_dir = out if cfg.restarts == 1 else out / f"restart{extra['restart']}"
        evaluate_closed_loop(cfg, out, model_dir)
    return results
