"""Data sets and expert occupancy samplers.

:func:`noised` draws the "expert" states of occupancy-matching IRL and of Learn to Guide's
loss: real data x_0 ~ p_data(· | c) pushed to a noise level by the forward process
x_σ = x_0 + σ n, n ~ N(0, I) (EDM convention). :mod:`.protocol` defines the ``Data``
protocol a preset's ``data`` follows (which method each metric and reward needs).
"""

from __future__ import annotations

import torch

from ..noise import SampleStreams
from .protocol import DATA_METHODS, Data, check_data

__all__ = ["DATA_METHODS", "Data", "check_data", "noised"]


def noised(
    data,
    sigma: torch.Tensor | float,
    class_labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    num_samples: int | None = None,
) -> torch.Tensor:
    """Expert states x_σ = x_0 + σ n with x_0 ~ ``data`` (of class ``class_labels[i]``).

    :param data: a distribution with ``.sample(n, class_labels, generator)`` (a
        :class:`~diffusion_gym.denoisers.GaussianMixture`, ``DigitsData``, a preset's
        ``.data``).
    :param sigma: a scalar or ``[N]`` per-sample noise levels, each finite and >= 0.
    :param class_labels: ``[N]`` integer labels (−1 = any class) or None for unconditional
        data.
    :param generator: ``torch.Generator`` for both x_0 and n (None = global RNG).
    :param num_samples: N, needed only when neither ``sigma`` nor ``class_labels`` gives it.
    :returns: ``[N, *shape]`` noisy samples in the data's dtype and device.
    """
    if not callable(getattr(data, "sample", None)):
        raise TypeError(f"data must have a .sample(n, class_labels, generator) method, got {data}")
    if isinstance(generator, SampleStreams):
        raise TypeError("generator must be a torch.Generator or None (data.sample needs one)")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator)}")
    sigma_t = torch.as_tensor(sigma, dtype=torch.float64)
    if sigma_t.ndim > 1:
        raise ValueError(f"sigma must be a scalar or [N], got shape {tuple(sigma_t.shape)}")
    if not bool(torch.isfinite(sigma_t).all()) or bool((sigma_t < 0).any()):
        raise ValueError("sigma must be finite and >= 0")
    sizes = {
        "num_samples": num_samples,
        "sigma": sigma_t.shape[0] if sigma_t.ndim == 1 else None,
        "class_labels": None if class_labels is None else len(class_labels),
    }
    given = {k: v for k, v in sizes.items() if v is not None}
    if not given:
        raise ValueError("pass num_samples (or a [N] sigma or class_labels) to set N")
    if len(set(given.values())) > 1:
        raise ValueError(f"inconsistent batch sizes: {given}")
    n = next(iter(given.values()))
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"num_samples must be a non-negative int, got {n!r}")
    # x_0 ~ p_data(· | c).
    x0 = data.sample(n, class_labels, generator)
    # n ~ N(0, I), from the same generator.
    dev = generator.device if generator is not None else x0.device
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=dev).to(x0.device)
    s = sigma_t.to(device=x0.device, dtype=x0.dtype)
    s = s.reshape(-1, *([1] * (x0.ndim - 1))) if s.ndim == 1 else s
    # x_σ = x_0 + σ n.
    out = x0 + s * eps
    if not bool(torch.isfinite(out).all()):
        raise ValueError("data.sample produced non-finite values")
    return out
