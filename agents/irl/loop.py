"""``run(config, out_dir, resume)``: the ``agent: irl`` entry point of ``diffusion-gym train``
(train or continue, checkpoint, log to TensorBoard, evaluate)."""

from __future__ import annotations

from pathlib import Path

import torch
from stable_baselines3.common.logger import configure
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from diffusion_gym.io import atomic_write_json

from ..checkpoint import Interrupted, interrupt_requested, latest, training
from .config import Config
from .report import evaluate_trainer, quick_eval
from .trainer import IRLTrainer

__all__ = ["run"]


def run(config: Config, out_dir: Path, resume: bool = False) -> dict:
    """Train (or continue from the newest complete ``out_dir/checkpoints/round_<r>/``),
    checkpoint every ``checkpoint_every`` rounds, at the end and on SIGINT (then raise
    :class:`agents.checkpoint.Interrupted`), log ``train/``, ``eval/``, ``charts/``, then
    evaluate."""
    out_dir = Path(out_dir)
    ckpts = out_dir / "checkpoints"
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    trainer = IRLTrainer(config)
    if trainer.start:  # policy.init: the constant the policy starts from (and the search)
        atomic_write_json(out_dir / "start.json", trainer.start)
        how = (f"p = {trainer.start['prob']}" if "prob" in trainer.start
               else f"Gaussian, std {trainer.start['std']}")  # fmt: skip
        print(f"policy starts at w, gamma = {trainer.start['action']} ({how})")
    found = latest(ckpts, "round_") if resume else None
    if found is not None:
        trainer.load(found)
        print(f"resuming from {found} (round {trainer.round})")
    trainer.model.set_logger(configure(str(out_dir / "tb" / "sb3"), ["tensorboard"]))
    writer = SummaryWriter(str(out_dir / "tb" / "irl"))
    bar = tqdm(total=config.rounds, initial=trainer.round, disable=not config.progress, desc="irl")
    shown: dict[str, str] = {}  # the last quick evaluation's first metric, with its round
    keep = config.policy.keep_best
    if keep and trainer.round == 0 and not trainer.best:
        trainer.select()  # the start (the best constant with policy.init: best_constant)
    with training():
        while trainer.round < config.rounds:
            stats = trainer.train_round()
            r = trainer.round
            for key, v in stats.items():
                writer.add_scalar(f"train/{key}", v, r)
            writer.add_scalar("eval/discriminator_accuracy", stats["accuracy"], r)
            w, g = trainer.chosen_per_step()
            for k in range(len(w)):
                writer.add_scalar(f"charts/guidance_step{k}", w[k], r)
                writer.add_scalar(f"charts/gamma_step{k}", g[k], r)
            if config.eval.every and r % config.eval.every == 0:
                signal = quick_eval(trainer, writer, r)  # the learning signal on the bar
                m = next((m for m in config.eval.metrics if m in signal), None)
                shown = {} if m is None else {m: f"{signal[m]:.3g}@{r}"}
            if keep and (r % config.policy.select_every == 0 or r == config.rounds):
                if trainer.select():
                    writer.add_scalar("eval/selected", trainer.best["score"], r)
                writer.add_scalar("eval/validation", trainer.best["history"][-1][1], r)
            stop = interrupt_requested()
            if stop or r % config.checkpoint_every == 0 or r == config.rounds:
                trainer.save(ckpts)
            bar.update(1)
            bar.set_postfix(
                acc=f"{stats['accuracy']:.2f}", reward=f"{stats['irl_reward']:.3f}", **shown
            )
            if stop:
                writer.close()
                raise Interrupted(f"checkpoint of round {r} in {ckpts / f'round_{r}'}")
    bar.close()
    if keep:
        trainer.use_best()
        b = trainer.best
        atomic_write_json(out_dir / "selection.json",
                          {"round": b["round"], "score": b["score"], "metric": trainer.metric(),
                           "history": b["history"]})  # fmt: skip
        print(f"keep_best: the policy of round {b['round']} ({trainer.metric()} {b['score']:.4g}"
              " on validation noise)")  # fmt: skip
    results = evaluate_trainer(trainer, out_dir, progress=config.progress)
    for m, v in results["irl-policy"].items():
        writer.add_scalar(f"eval/final_{m}", v["mean"], trainer.round)
    writer.close()
    return results
