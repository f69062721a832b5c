"""Adapters that turn external networks into :class:`~diffusion_gym.denoisers.base.Denoiser`.

- :class:`EDMNetDenoiser`: any ``nn.Module`` with EDM's signature
  ``net(x, sigma, class_labels) -> D(x; σ, c)`` (NVlabs EDM's ``EDMPrecond``, the package's
  own :mod:`~diffusion_gym.denoisers.networks`).
- :class:`EpsilonDenoiser`: a VP/DDPM network on discrete timesteps that predicts ε (or x0, or
  v) converted to the EDM convention (Karras et al. 2022, Table 1, "VP" column): with
  ᾱ_t the cumulative product of (1 − β_t),

      σ_t = sqrt((1 − ᾱ_t) / ᾱ_t),   x_VP = x / sqrt(1 + σ²),   D(x; σ) = x − σ ε(x_VP, t(σ)),

  where t(σ) is the nearest discrete timestep (in log σ) or a fractional one interpolated
  between the two neighbours.
- :class:`DiffusersUNetDenoiser`: a diffusers ``UNet2DModel`` read from a LOCAL directory
  (optional extra ``pip install -e ".[diffusers]"``), through :class:`EpsilonDenoiser`.

Nothing here downloads: every loader reads local files and raises ``FileNotFoundError``
naming the missing path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .base import NULL_LABEL, Denoiser
from .networks import load_network

__all__ = [
    "EDMNetDenoiser",
    "EpsilonDenoiser",
    "DiffusersUNetDenoiser",
    "load_trained_denoiser",
    "sigmas_from_alphas_cumprod",
    "linear_beta_alphas_cumprod",
]


class _ConditionedMixin:
    """Clearer error for labels (hence guidance) given to an unconditional model."""

    def check_labels(self, class_labels, batch: int, device, *, values=True) -> torch.Tensor:
        if self.num_classes == 0:
            raise ValueError(
                f"{type(self).__name__} wraps a model without class conditioning "
                "(num_classes=0): class labels and classifier-free guidance need a "
                "class-conditional model; pass class_labels=None"
            )
        return super().check_labels(class_labels, batch, device, values=values)

    def workspace_bytes(self, batch: int) -> int:
        """An estimate of one call's activations: a third of the bytes the network's leaf
        modules output for one sample (measured once, by forward hooks on a batch of one),
        times ``batch``. Not all outputs are alive at once: on the digits U-Net a third
        matches the peak RSS growth of a Guidance step at 16,384 envs (77 KB a sample)."""
        per_sample = getattr(self, "_activation_bytes", None)
        if per_sample is None:
            per_sample = self._activation_bytes = self._probe_activation_bytes() // 3
        return batch * max(per_sample, 2 * self.dim * self.itemsize)

    def _probe_activation_bytes(self) -> int:
        total = 0

        def count(_module, _inputs, out):
            nonlocal total
            if isinstance(out, torch.Tensor):
                total += out.numel() * out.element_size()

        leaves = [m for m in self.modules() if next(m.children(), None) is None]
        hooks = [m.register_forward_hook(count) for m in leaves]
        try:
            x = torch.zeros(1, *self.shape, dtype=self.dtype, device=self.device)
            sigma = torch.full((1,), self.sigma_max, dtype=self.dtype, device=self.device)
            labels = None if self.num_classes == 0 else torch.zeros(1, dtype=torch.long)
            with torch.no_grad():
                self.denoise(x, sigma, None if labels is None else labels.to(self.device))
        finally:
            for h in hooks:
                h.remove()
        return total

    def _check_output(self, out, x: torch.Tensor, what: str) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the wrapped network must return a tensor, got {type(out).__name__}")
        if out.shape != x.shape:
            raise ValueError(
                f"the wrapped network returned {what} of shape {tuple(out.shape)}, expected "
                f"{tuple(x.shape)} (same as its input)"
            )
        return out


class EDMNetDenoiser(_ConditionedMixin, Denoiser):
    """Wrap ``net(x, sigma, class_labels) -> D`` (EDM convention) as a Denoiser.

    :param net: the network; called with ``x [B, *shape]`` in ``dtype``, ``sigma [B]`` and
        labels ``[B]`` (−1 = unconditional) or None.
    :param shape: shape of one sample, e.g. ``(1, 8, 8)``.
    :param num_classes: classes of the conditioning (0: unconditional; labels are then refused).
    :param sigma_min, sigma_max: the σ range the network was trained for.
    :param sigma_data: the data's standard deviation.
    :param dtype: dtype the network computes in (None, the default: the net's own, the dtype
        of its first floating-point parameter or buffer, float32 if it has none; the net is
        not cast); given, the net is cast to it. Outputs are cast back to the input's dtype.
    """

    def __init__(
        self,
        net: nn.Module,
        shape: tuple[int, ...],
        num_classes: int,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        sigma_data: float = 0.5,
        dtype: torch.dtype | None = None,
    ):
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        if dtype is None:
            dtype = net_dtype(net)
        elif dtype != net_dtype(net):
            net = net.to(dtype)  # asked for: compute in this dtype
        super().__init__(shape, num_classes, sigma_min, sigma_max, sigma_data, dtype)
        self.net = net

    def denoise(self, x, sigma, class_labels):
        out = self.net(x.to(self.dtype), sigma.to(self.dtype), class_labels)
        return self._check_output(out, x, "D(x; sigma)").to(x.dtype)


def net_dtype(net: nn.Module) -> torch.dtype:
    """The dtype of ``net``'s first floating-point parameter or buffer (float32 if none)."""
    for t in [*net.parameters(), *net.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) of a VP schedule (float64, ascending in t)."""
    a = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    if a.ndim != 1 or a.numel() < 2:
        raise ValueError(f"alphas_cumprod must be 1-D with >= 2 entries, got {tuple(a.shape)}")
    if not bool(((a > 0) & (a < 1)).all()) or not bool((a[1:] < a[:-1]).all()):
        raise ValueError("alphas_cumprod must lie in (0, 1) and decrease strictly in t")
    return ((1 - a) / a).sqrt()


def linear_beta_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """ᾱ_t of DDPM's linear β schedule (Ho et al. 2020), float64."""
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


class EpsilonDenoiser(_ConditionedMixin, Denoiser):
    """A VP/DDPM network on discrete timesteps, in the EDM convention.

    :param eps_net: ``eps_net(x_vp, t, class_labels) -> prediction`` with ``t [B]`` timesteps
        (floats when ``timesteps="interpolate"``, integer-valued otherwise).
    :param alphas_cumprod: ``[T]`` ᾱ_t of the training schedule (decreasing).
    :param shape: shape of one sample.
    :param num_classes: classes (0: unconditional).
    :param null_label: label passed to the network for the unconditional model (label −1 in
        the Denoiser contract); default ``num_classes`` (an extra embedding row).
    :param prediction_type: ``"epsilon"`` (ε), ``"sample"`` (x0) or ``"v_prediction"``.
    :param timesteps: ``"nearest"`` (nearest t in log σ) or ``"interpolate"`` (fractional t,
        linear in log σ between neighbours).
    :param sigma_data: the data's standard deviation (metadata for samplers).
    """

    def __init__(
        self,
        eps_net: Callable | nn.Module,
        alphas_cumprod: torch.Tensor,
        shape: tuple[int, ...],
        num_classes: int = 0,
        *,
        null_label: int | None = None,
        prediction_type: str = "epsilon",
        timesteps: str = "nearest",
        sigma_data: float = 0.5,
        dtype: torch.dtype = torch.float32,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
            )
        if timesteps not in ("nearest", "interpolate"):
            raise ValueError(f"timesteps must be 'nearest' or 'interpolate', got {timesteps!r}")
        sig = sigmas_from_alphas_cumprod(alphas_cumprod)
        super().__init__(shape, num_classes, float(sig[0]), float(sig[-1]), sigma_data, dtype)
        self.eps_net = eps_net
        self.prediction_type = prediction_type
        self.timesteps = timesteps
        self.null_label = num_classes if null_label is None else int(null_label)
        self.register_buffer("log_sigmas", sig.log(), persistent=False)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """t(σ) ``[B]`` float64: nearest index in log σ, or fractional (linear in log σ)."""
        ls = self.log_sigmas.to(sigma.device)
        log_s = sigma.double().clamp_min(1e-30).log()
        if self.timesteps == "nearest":
            return (log_s[:, None] - ls[None]).abs().argmin(1).double()
        # Fractional t between the neighbours i, i+1 with ls[i] <= log σ <= ls[i+1].
        log_s = log_s.clamp(ls[0], ls[-1])
        i = (torch.searchsorted(ls, log_s, right=True) - 1).clamp(0, ls.numel() - 2)
        frac = (log_s - ls[i]) / (ls[i + 1] - ls[i])
        return i.double() + frac

    def denoise(self, x, sigma, class_labels):
        s = sigma.double().reshape(-1, *([1] * (x.ndim - 1)))
        # x_VP = x / sqrt(1 + σ²), i.e. sqrt(ᾱ) x with ᾱ = 1/(1 + σ²).
        sqrt_a = (1 + s**2).rsqrt()
        x_vp = (x.double() * sqrt_a).to(self.dtype)
        t = self.timestep(sigma)
        t = t if self.timesteps == "interpolate" else t.long()
        labels = None
        if class_labels is not None:
            labels = torch.where(
                class_labels == NULL_LABEL,
                torch.full_like(class_labels, self.null_label),
                class_labels,
            )
        pred = self._check_output(self.eps_net(x_vp, t, labels), x_vp, "a prediction").double()
        if self.prediction_type == "epsilon":
            d = x.double() - s * pred  # D = x − σ ε
        elif self.prediction_type == "sample":
            d = pred
        else:  # v = sqrt(ᾱ) ε − sqrt(1 − ᾱ) x0  ⇒  x0 = sqrt(ᾱ) x_VP − sqrt(1 − ᾱ) v
            d = sqrt_a * x_vp.double() - (s * sqrt_a) * pred
        return d.to(x.dtype)


def _diffusers_schedule(local_dir: Path) -> torch.Tensor:
    """ᾱ_t from a local ``scheduler_config.json`` (DDPM/DDIM style), else DDPM's default."""
    for cfg_path in (
        local_dir / "scheduler_config.json",
        local_dir / "scheduler" / "scheduler_config.json",
    ):
        if cfg_path.is_file():
            cfg = json.loads(cfg_path.read_text())
            kind = cfg.get("beta_schedule", "linear")
            n = int(cfg.get("num_train_timesteps", 1000))
            b0, b1 = float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.02))
            if kind == "linear":
                return linear_beta_alphas_cumprod(n, b0, b1)
            if kind == "scaled_linear":
                betas = torch.linspace(b0**0.5, b1**0.5, n, dtype=torch.float64) ** 2
                return torch.cumprod(1 - betas, 0)
            raise ValueError(f"{cfg_path}: beta_schedule {kind!r} is not supported here")
    return linear_beta_alphas_cumprod()


class DiffusersUNetDenoiser(EpsilonDenoiser):
    """A diffusers ``UNet2DModel`` (ε-, x0- or v-prediction) as an EDM Denoiser.

    Build it with :meth:`from_pretrained` on a local directory written by
    ``UNet2DModel.save_pretrained``; needs the optional extra ``diffusers``.
    """

    @classmethod
    def from_pretrained(
        cls,
        local_dir: str | Path,
        *,
        alphas_cumprod: torch.Tensor | None = None,
        prediction_type: str = "epsilon",
        timesteps: str = "nearest",
        sigma_data: float = 0.5,
        device: str | torch.device = "cpu",
    ) -> DiffusersUNetDenoiser:
        """Load the UNet from ``local_dir`` (never downloads).

        :param alphas_cumprod: ᾱ_t of the training schedule; default from a
            ``scheduler_config.json`` in ``local_dir`` (or ``local_dir/scheduler``), else
            DDPM's linear β schedule with 1000 steps.
        """
        try:
            from diffusers import UNet2DModel
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "DiffusersUNetDenoiser needs the optional dependency 'diffusers': "
                'pip install -e ".[diffusers]"'
            ) from e
        local_dir = Path(local_dir)
        if not (local_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"no diffusers model at {local_dir} (expected {local_dir / 'config.json'})"
            )
        unet = UNet2DModel.from_pretrained(str(local_dir), local_files_only=True).eval()
        unet.requires_grad_(False)
        cfg = unet.config
        num_classes = int(cfg.num_class_embeds or 0)
        # The class embedding's last row is used as the null label when there is one to spare.
        null = num_classes - 1 if num_classes > 0 else None
        shape = (int(cfg.in_channels), int(cfg.sample_size), int(cfg.sample_size))
        if alphas_cumprod is None:
            alphas_cumprod = _diffusers_schedule(local_dir)

        def eps_net(x_vp, t, labels):
            return unet(x_vp, t, class_labels=labels).sample

        model = cls(
            eps_net,
            alphas_cumprod,
            shape,
            max(0, num_classes - 1) if num_classes > 0 else 0,
            null_label=null,
            prediction_type=prediction_type,
            timesteps=timesteps,
            sigma_data=sigma_data,
        )
        model.unet = unet  # registered as a submodule, so .to(device) moves it
        return model.to(device)


def load_trained_denoiser(
    path: str | Path, device: str | torch.device = "cpu", sigma_max: float | None = None
) -> EDMNetDenoiser:
    """A network written by ``python -m diffusion_gym.train_denoiser`` as a Denoiser.

    Reads the LOCAL safetensors file (``FileNotFoundError`` naming it if absent); shape, classes,
    σ range and σ_data come from its embedded metadata (``sigma_max`` overrides the range).
    """
    net, meta = load_network(path)
    return EDMNetDenoiser(
        net,
        tuple(meta["shape"]),
        int(meta["num_classes"]),
        float(meta["sigma_min"]),
        float(meta["sigma_max"] if sigma_max is None else sigma_max),
        float(meta["sigma_data"]),
    ).to(device)
