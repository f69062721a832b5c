"""Small trained denoisers with EDM preconditioning: a class-conditional U-Net for 8×8 digits
and an MLP for 2-D mixtures.

Both are plain ``nn.Module`` networks with EDM's signature ``net(x, sigma, class_labels) ->
D(x; σ, c)`` (Karras et al. 2022, ``EDMPrecond``):

    D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x; c_noise(σ), c),
    c_skip = σ_d² / (σ² + σ_d²),  c_out = σ σ_d / sqrt(σ² + σ_d²),
    c_in = 1 / sqrt(σ² + σ_d²),   c_noise = ln(σ) / 4.

Class conditioning uses a learned embedding with one extra row, the null label, selected by
label −1 (or ``class_labels=None``); training drops labels to the null label with
probability ``label_dropout`` so one network is both the conditional and the unconditional
model of classifier-free guidance (Ho & Salimans 2022). Wrap a network as a
:class:`~diffusion_gym.denoisers.base.Denoiser` with
:class:`~diffusion_gym.denoisers.adapters.EDMNetDenoiser`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F  # noqa: N812

from ..io import atomic_save_via, atomic_write_text

__all__ = [
    "CHECKPOINT_DIR",
    "EDMPrecond",
    "DigitsUNet",
    "MixtureMLP",
    "edm_loss",
    "build_network",
    "save_checkpoint",
    "load_checkpoint",
]

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def fourier_embedding(c_noise: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of the scalar noise condition (Vaswani et al. 2017)."""
    half = dim // 2
    # Frequencies from 10 down to 0.01 per unit of c_noise = ln(σ)/4.
    freqs = 10.0 * torch.exp(-math.log(1e3) * torch.arange(half, device=c_noise.device) / half)
    arg = c_noise.float()[:, None] * freqs[None]
    return torch.cat([arg.cos(), arg.sin()], dim=1)


class ConditionEmbedding(nn.Module):
    """Embedding of (c_noise, class): sinusoid → MLP, plus a class embedding with a null row."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.dim = dim
        self.noise_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        # Row num_classes is the null label (unconditional).
        self.label = nn.Embedding(num_classes + 1, dim) if num_classes > 0 else None

    def forward(self, c_noise: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.noise_mlp(fourier_embedding(c_noise, self.dim))
        if self.label is not None:
            if class_labels is None:
                idx = torch.full_like(c_noise, self.num_classes, dtype=torch.long)
            else:
                labels = class_labels.long()
                idx = torch.where(labels < 0, torch.full_like(labels, self.num_classes), labels)
            emb = emb + self.label(idx)
        return F.silu(emb)


class ResBlock(nn.Module):
    """GroupNorm–SiLU–conv ×2 with an additive (scale, shift) condition, and a skip path."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, c_in // 4), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.affine = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(min(8, c_out // 4), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        h = self.conv2(self.dropout(h))
        return (self.skip(x) + h) / math.sqrt(2)


class DigitsUNet(nn.Module):
    """The raw network F of a two-level U-Net for ``[B, 1, 8, 8]`` images (8×8 → 4×4).

    :param channels: channels at 8×8 and at 4×4.
    :param num_classes: number of classes (0: unconditional).
    :param emb_dim: width of the (noise, class) embedding.
    :param dropout: dropout inside the residual blocks.
    """

    def __init__(
        self,
        channels: tuple[int, int] = (32, 64),
        num_classes: int = 10,
        emb_dim: int = 128,
        dropout: float = 0.1,
        in_channels: int = 1,
    ):
        super().__init__()
        c1, c2 = channels
        self.emb = ConditionEmbedding(num_classes, emb_dim)
        self.conv_in = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.enc1 = ResBlock(c1, c1, emb_dim, dropout)
        self.down = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.enc2 = ResBlock(c1, c2, emb_dim, dropout)
        self.mid = ResBlock(c2, c2, emb_dim, dropout)
        self.dec2 = ResBlock(2 * c2, c2, emb_dim, dropout)
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c2, c1, 3, padding=1)
        )
        self.dec1 = ResBlock(2 * c1, c1, emb_dim, dropout)
        self.norm_out = nn.GroupNorm(8, c1)
        self.conv_out = nn.Conv2d(c1, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x, c_noise, class_labels):
        emb = self.emb(c_noise, class_labels)
        h1 = self.enc1(self.conv_in(x), emb)  # 8×8
        h2 = self.enc2(self.down(h1), emb)  # 4×4
        h = self.mid(h2, emb)
        h = self.dec2(torch.cat([h, h2], 1), emb)
        h = self.dec1(torch.cat([self.up(h), h1], 1), emb)  # 8×8
        return self.conv_out(F.silu(self.norm_out(h)))


class MixtureMLP(nn.Module):
    """The raw network F for ``[B, d]`` vectors: an MLP on (c_in x, embedding of σ and class).

    :param dim: data dimension.
    :param num_classes: number of classes (0: unconditional).
    :param hidden: hidden width; ``depth`` hidden layers.
    """

    def __init__(self, dim: int = 2, num_classes: int = 8, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.emb = ConditionEmbedding(num_classes, hidden)
        self.inp = nn.Linear(dim, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.cond = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x, c_noise, class_labels):
        emb = self.emb(c_noise, class_labels)
        h = self.inp(x)
        for layer, cond in zip(self.layers, self.cond, strict=True):
            # Residual MLP block conditioned additively on (σ, c).
            h = h + layer(F.silu(h + cond(emb)))
        return self.out(F.silu(h))


class EDMPrecond(nn.Module):
    """EDM preconditioning around a raw network F (Karras et al. 2022, Table 1).

    ``forward(x, sigma, class_labels) -> D(x; σ, c)``, with ``sigma`` ``[B]`` or a scalar and
    label −1 (or None) for the unconditional model. Computes in float32.

    :param model: F(x_in, c_noise, class_labels) with the same shape in and out.
    :param sigma_data: σ_d, standard deviation of the data.
    """

    def __init__(self, model: nn.Module, sigma_data: float):
        super().__init__()
        self.model = model
        self.sigma_data = float(sigma_data)

    def forward(self, x, sigma, class_labels=None):
        x = x.float()
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(x.shape[0])
        s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        sd2 = self.sigma_data**2
        c_skip = sd2 / (s**2 + sd2)
        c_out = s * self.sigma_data / (s**2 + sd2).sqrt()
        c_in = 1 / (s**2 + sd2).sqrt()
        c_noise = sigma.clamp_min(1e-20).log() / 4
        return c_skip * x + c_out * self.model(c_in * x, c_noise, class_labels)


def edm_loss(
    net: EDMPrecond,
    x0: torch.Tensor,
    class_labels: torch.Tensor | None,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    label_dropout: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """EDM's training loss (Karras et al. 2022, eq. 8): mean over the batch of
    λ(σ) ‖D(x0 + σn; σ, c) − x0‖² / dim, ln σ ~ N(P_mean, P_std²),
    λ(σ) = (σ² + σ_d²)/(σ σ_d)²; labels replaced by −1 with probability ``label_dropout``."""
    b = x0.shape[0]
    # ln σ ~ N(P_mean, P_std²).
    sigma = (p_mean + p_std * torch.randn(b, generator=generator)).exp().to(x0.device)
    weight = (sigma**2 + net.sigma_data**2) / (sigma * net.sigma_data) ** 2
    n = torch.randn(x0.shape, generator=generator).to(x0.device)
    if class_labels is not None and label_dropout > 0:
        # Classifier-free guidance: drop labels to the null label.
        drop = torch.rand(b, generator=generator).to(x0.device) < label_dropout
        class_labels = torch.where(drop, torch.full_like(class_labels, -1), class_labels)
    d = net(x0 + sigma.reshape(-1, *([1] * (x0.ndim - 1))) * n, sigma, class_labels)
    err = (d - x0).pow(2).flatten(1).mean(1)
    return (weight * err).mean()


_ARCHS = {"digits_unet": DigitsUNet, "mixture_mlp": MixtureMLP}


def build_network(arch: str, sigma_data: float, **kwargs) -> EDMPrecond:
    """An :class:`EDMPrecond` around the raw network ``arch`` (one of ``digits_unet``,
    ``mixture_mlp``) built with ``kwargs``."""
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid: {sorted(_ARCHS)}")
    return EDMPrecond(_ARCHS[arch](**kwargs), sigma_data)


def save_checkpoint(module: nn.Module, path: str | Path, metadata: dict) -> None:
    """Write ``module``'s state dict as safetensors (metadata embedded as JSON) and a
    human-readable ``<path>.json`` next to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    atomic_save_via(
        path, lambda tmp: save_file(state, str(tmp), metadata={"config": json.dumps(metadata)})
    )
    atomic_write_text(path.with_suffix(".json"), json.dumps(metadata, indent=2) + "\n")


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a safetensors checkpoint written by :func:`save_checkpoint` from a LOCAL file:
    ``(state_dict, metadata)``. Raises ``FileNotFoundError`` naming the path if absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return load_file(str(path)), json.loads(meta.get("config", "{}"))


def load_network(path: str | Path) -> tuple[EDMPrecond, dict]:
    """Build and load an :class:`EDMPrecond` network from a checkpoint written by
    ``python -m diffusion_gym.train_denoiser``; returns ``(net in eval mode, metadata)``."""
    state, meta = load_checkpoint(path)
    for key in ("arch", "sigma_data", "arch_kwargs"):
        if key not in meta:
            raise ValueError(f"checkpoint {path} has no {key!r} in its metadata")
    kwargs = dict(meta["arch_kwargs"])
    if "channels" in kwargs:
        kwargs["channels"] = tuple(kwargs["channels"])
    net = build_network(meta["arch"], meta["sigma_data"], **kwargs)
    net.load_state_dict(state)
    return net.eval().requires_grad_(False), meta
