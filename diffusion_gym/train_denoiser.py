"""Train the shipped networks: the digits U-Net, the ring-mixture MLP and the digits classifier.

    cd diffusion_gym/checkpoints
    python -m diffusion_gym.train_denoiser digits     --out digits_unet.safetensors
    python -m diffusion_gym.train_denoiser ring8-mlp  --out ring8_mlp.safetensors
    python -m diffusion_gym.train_denoiser classifier --out digits_classifier.safetensors
    python -m diffusion_gym.train_denoiser classifier --seed 1 --out digits_classifier_b.safetensors
    python -m diffusion_gym.train_denoiser digits-imperfect --out digits_imperfect.safetensors
    python -m diffusion_gym.train_denoiser digits-imperfect-guide \
        --out digits_imperfect_guide.safetensors

``digits-imperfect`` is a deliberately weak digits model (a U-Net with half the channels,
trained 200 steps instead of 2,500): the kind of model guidance exists for (its best constant
CFG weight is clearly above 1). ``digits-imperfect-guide`` is the same small U-Net trained
100 steps, the even weaker "bad version" that guides ``digits-imperfect`` in the
autoguidance baseline (:mod:`baselines.autoguidance`).

Each writes a safetensors file (the EMA weights for denoisers) with its configuration embedded,
and a ``.json`` copy of that metadata next to it. Denoisers use EDM's training recipe (Karras
et al. 2022): ln σ ~ N(P_mean, P_std²), loss weight (σ² + σ_d²)/(σ σ_d)², Adam, an EMA of
the weights, and label dropout for classifier-free guidance. Everything is seeded; CPU only.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F  # noqa: N812
from tqdm import tqdm

from .data.digits import DigitsData
from .denoisers.classifier import DigitsClassifier, augment
from .denoisers.networks import build_network, edm_loss, save_checkpoint
from .presets import ring8

__all__ = [
    "TrainConfig",
    "train_edm",
    "train_classifier",
    "main",
    "DEFAULT_STEPS",
    "DIGITS_TARGETS",
]

DEFAULT_STEPS = {
    "digits": 2500,
    "ring8-mlp": 3000,
    "classifier": 2000,
    "digits-imperfect": 200,
    "digits-imperfect-guide": 100,
}
#: Targets trained on the digits images (U-Nets of different size and training length).
DIGITS_TARGETS = ("digits", "digits-imperfect", "digits-imperfect-guide")


@dataclass
class TrainConfig:
    """Hyperparameters of one training run."""

    steps: int = 3000
    """Optimiser steps."""
    batch_size: int = 256
    """Samples per step."""
    lr: float = 2e-3
    """Peak Adam learning rate (linear warm-up, cosine decay to lr/20)."""
    warmup: int = 100
    """Warm-up steps."""
    ema_decay: float = 0.999
    """EMA decay of the shipped weights (with EDM-style ramp (1+t)/(10+t) early on)."""
    label_dropout: float = 0.15
    """Probability of replacing a label by the null label (classifier-free guidance)."""
    p_mean: float = -1.2
    """Mean of ln σ during training."""
    p_std: float = 1.2
    """Std of ln σ during training."""
    seed: int = 0
    """Seed of all draws."""
    arch_kwargs: dict = field(default_factory=dict)
    """Keyword arguments of the network."""


def _lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay from lr to lr/20."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, step: int, decay: float) -> None:
    beta = min(decay, (1 + step) / (10 + step))
    for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
        pe.lerp_(p, 1 - beta)


def train_edm(arch: str, sample_batch, sigma_data: float, cfg: TrainConfig, progress=True):
    """Train ``build_network(arch, sigma_data, **cfg.arch_kwargs)`` with EDM's loss.

    :param sample_batch: ``(batch_size, generator) -> (x0, labels)`` draws training data.
    :returns: ``(ema_net, losses)`` with the per-step loss values.
    """
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    net = build_network(arch, sigma_data, **cfg.arch_kwargs).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    losses = []
    bar = tqdm(range(cfg.steps), desc=f"train {arch}", disable=not progress, mininterval=5)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        x0, labels = sample_batch(cfg.batch_size, g)
        loss = edm_loss(
            net,
            x0,
            labels,
            p_mean=cfg.p_mean,
            p_std=cfg.p_std,
            label_dropout=cfg.label_dropout,
            generator=g,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        _ema_update(ema, net, step, cfg.ema_decay)
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    return ema, losses


def _digits_sampler(data):
    def sample_batch(b, g):
        idx = torch.randint(len(data.train_labels), (b,), generator=g)
        x0 = data.train_images[idx]
        # Horizontal-flip-free data; no augmentation (digits are not flip-invariant).
        return x0, data.train_labels[idx]

    return sample_batch


def _ring_sampler(gm):
    def sample_batch(b, g):
        labels = torch.randint(gm.num_classes, (b,), generator=g)
        return gm.sample(b, class_labels=labels, generator=g).float(), labels

    return sample_batch


def train_classifier(data, cfg: TrainConfig, progress=True):
    """Cross-entropy training of :class:`DigitsClassifier` with ±1-pixel shifts.

    :returns: ``(classifier in eval mode, test accuracy)``.
    """
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    clf = DigitsClassifier(**cfg.arch_kwargs).train()
    opt = torch.optim.AdamW(clf.parameters(), lr=cfg.lr, weight_decay=1e-4)
    bar = tqdm(range(cfg.steps), desc="train classifier", disable=not progress, mininterval=5)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        idx = torch.randint(len(data.train_labels), (cfg.batch_size,), generator=g)
        x = augment(data.train_images[idx], g)
        loss = F.cross_entropy(clf(x), data.train_labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    clf.eval().requires_grad_(False)
    with torch.no_grad():
        acc = float((clf(data.test_images).argmax(1) == data.test_labels).double().mean())
    return clf, acc


def _config_for(what: str, steps: int | None, seed: int) -> TrainConfig:
    cfg = TrainConfig(seed=seed)
    if what == "digits":
        cfg.arch_kwargs = {"channels": [32, 64], "num_classes": 10, "emb_dim": 128}
        cfg.batch_size = 128
    elif what in DIGITS_TARGETS:  # the small U-Net of the imperfect models
        cfg.arch_kwargs = {"channels": [16, 32], "num_classes": 10, "emb_dim": 64}
        cfg.batch_size = 128
    elif what == "ring8-mlp":
        cfg.arch_kwargs = {"dim": 2, "num_classes": 8, "hidden": 128, "depth": 3}
        cfg.batch_size = 512
        cfg.ema_decay = 0.995
    else:  # classifier
        cfg.arch_kwargs = {"num_classes": 10, "feature_dim": 64}
        cfg.batch_size = 128
        cfg.lr = 1e-3
    cfg.steps = DEFAULT_STEPS[what] if steps is None else steps
    return cfg


def run(what: str, out: str | Path, steps: int | None = None, seed: int = 0, progress=True):
    """Train ``what`` (a key of :data:`DEFAULT_STEPS`) and write ``out``.

    :returns: the metadata written next to the weights.
    """
    if what not in DEFAULT_STEPS:
        raise ValueError(f"unknown target {what!r}; valid: {sorted(DEFAULT_STEPS)}")
    cfg = _config_for(what, steps, seed)
    start = time.time()
    meta = {"target": what, "train_config": asdict(cfg), "command": " ".join(sys.argv)}
    if what == "classifier":
        model, acc = train_classifier(DigitsData(), cfg, progress)
        meta.update(arch="digits_classifier", arch_kwargs=cfg.arch_kwargs, test_accuracy=acc)
    else:
        if what in DIGITS_TARGETS:
            data = DigitsData()
            sigma_data = round(data.sigma_data, 4)
            sampler = _digits_sampler(data)
            extra = {"shape": [1, 8, 8], "num_classes": 10, "sigma_min": 0.002, "sigma_max": 80.0}
            arch = "digits_unet"
        else:
            gm = ring8()
            sigma_data = round(gm.sigma_data, 4)
            sampler = _ring_sampler(gm)
            extra = {"shape": [2], "num_classes": 8, "sigma_min": 0.002, "sigma_max": 80.0}
            arch = "mixture_mlp"
        model, losses = train_edm(arch, sampler, sigma_data, cfg, progress)
        tail = losses[-100:]
        meta.update(
            arch=arch,
            arch_kwargs=cfg.arch_kwargs,
            sigma_data=sigma_data,
            first_loss=sum(losses[:50]) / len(losses[:50]),
            final_loss=sum(tail) / len(tail),
            **extra,
        )
    meta["train_seconds"] = round(time.time() - start, 1)
    save_checkpoint(model, out, meta)
    return meta


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m diffusion_gym.train_denoiser", description=__doc__)
    p.add_argument("target", choices=sorted(DEFAULT_STEPS), help="what to train")
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default per target)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.steps is not None and a.steps < 1:
        p.error("--steps must be >= 1")
    torch.set_num_threads(a.threads)
    meta = run(a.target, a.out, a.steps, a.seed, progress=not a.no_progress)
    shown = {k: v for k, v in meta.items() if k != "train_config"}
    print(json.dumps(shown, indent=2))


if __name__ == "__main__":
    main()
