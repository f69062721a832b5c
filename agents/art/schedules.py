"""Schedule utilities of ART-RL: the closed-form W2 of the 1-D Gaussian toy, and moving a
learned schedule to another budget or σ range (transfer)."""

from __future__ import annotations

import math

import torch

from diffusion_gym import presets as _presets
from diffusion_gym import schedules as _schedules
from diffusion_gym import steps as _steps
from diffusion_gym.metrics import gaussian_w2_1d
from diffusion_gym.presets import Preset

__all__ = ["gaussian_1d_w2", "transfer_schedule"]


def gaussian_1d_w2(preset: Preset, sigmas, solver: str) -> float:
    """Closed-form W2 between the sampler's output and the data on a 1-D Gaussian preset.

    With Gaussian data and a Gaussian (linear) denoiser, every solver step is linear, so
    x_K = a · x_T with a = the sampler run from x_T = 1; x_T ~ N(0, prior_std²) gives
    x_K ~ N(0, (a · prior_std)²) and W2 = |a · prior_std − std_data| (same mean 0)
    (``diffusion_gym.metrics.gaussian_w2_1d``). For art-gauss1d: W2 = |a √10 − 1|.
    """
    data = preset.data
    if preset.denoiser.dim != 1 or getattr(data, "num_components", 0) != 1:
        raise ValueError(f"gaussian_1d_w2 needs a 1-D single-Gaussian preset, got {preset.name}")
    one = torch.ones(1, 1, dtype=preset.denoiser.dtype, device=preset.denoiser.device)
    zero = torch.zeros_like(one)
    sig = torch.as_tensor(sigmas, dtype=torch.float64)
    a = float(_steps.sample(preset.denoiser, one, sig, solver=solver)[0, 0])
    b = float(_steps.sample(preset.denoiser, zero, sig, solver=solver)[0, 0])  # offset
    mu, std = float(data.means.reshape(-1)[0]), float(data.covariances.reshape(-1)[0]) ** 0.5
    return gaussian_w2_1d(b, abs(a) * preset.prior_std, mu, std)


def transfer_schedule(
    sigmas, budget: int | None = None, sigma_range=None, source_range=None
) -> torch.Tensor:
    """A learned schedule moved to another budget and/or σ range.

    :param sigmas: the schedule: a record of :func:`diffusion_gym.schedules.load_schedule`
        (``schedule.json``) or the σ's themselves (n+1 descending, ending in 0).
    :param budget: K' steps by log-linear interpolation over the step index
        (``diffusion_gym.schedules.interpolate``; endpoints and the final 0 kept).
    :param sigma_range: ``(σ_min', σ_max')`` of another denoiser: log σ is mapped affinely
        from ``source_range`` onto it (σ_max → σ_max', σ_min → σ_min').
    :param source_range: ``(σ_min, σ_max)`` of the denoiser the schedule was learned on.
        Default (for a record): its recorded ``sigma_min``/``sigma_max``, else the range of
        its ``preset``. A bare σ list with ``sigma_range`` needs ``source_range``: its own
        last positive σ is not the denoiser's σ_min (a schedule learned on [0.002, 80] as
        [80, 3.21, 0.32] stops well above 0.002).
    """
    record = sigmas if isinstance(sigmas, dict) else None
    s = _schedules.validate(
        torch.as_tensor(record["sigmas"] if record else sigmas, dtype=torch.float64)
    )
    if sigma_range is not None:
        lo, hi = (float(v) for v in sigma_range)
        src = source_range if source_range is not None else _source_range(record)
        s_lo, s_hi = (float(v) for v in src)
        if not (0 < lo < hi and 0 < s_lo < s_hi):
            raise ValueError(
                f"sigma_range and source_range must be (sigma_min, sigma_max) with "
                f"0 < min < max, got {sigma_range}, {src}"
            )
        t = (s[:-1].log() - math.log(s_lo)) / (math.log(s_hi) - math.log(s_lo))
        pos = torch.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
        s = torch.cat([pos, s.new_zeros(1)])
    return s if budget is None else _schedules.interpolate(s, budget)


def _source_range(record: dict | None) -> tuple[float, float]:
    """The σ range of the denoiser a schedule record was learned on (recorded, else its
    preset's); ``ValueError`` when there is no record to read it from."""
    if record is None:
        raise ValueError(
            "moving a bare sigma list to sigma_range needs source_range=(sigma_min, sigma_max) "
            "of the denoiser it was learned on, or pass the load_schedule(...) record"
        )
    if record.get("sigma_min") is not None:
        return float(record["sigma_min"]), float(record["sigma_max"])
    if record.get("preset") is None:
        raise ValueError(
            "the schedule record names neither sigma_min/sigma_max nor a preset: pass "
            "source_range=(sigma_min, sigma_max) of the denoiser it was learned on"
        )
    p = _presets.make(record["preset"])
    return p.sigma_min, p.sigma_max
