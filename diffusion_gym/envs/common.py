"""Plumbing shared by the vector environments: presets, per-env seeds and keys, actions.

Seeding convention (DESIGN.md): a vector env reset with ``seed=s`` gives env ``i`` the base
seed ``s + i``; episode ``e`` of env ``i`` draws from the stream key
``derive_keys(s + i, salt=e)``. Env ``i``'s trajectory therefore depends only on ``(s, i)``,
not on ``num_envs`` (a single env reset with ``seed=s + i`` replays it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .. import presets
from ..checks import SEED_HIGH, as_seed
from ..data.protocol import check_data
from ..denoisers.base import Denoiser
from ..noise import derive_keys, draw_uniform_int

__all__ = [
    "resolve_preset",
    "base_seeds",
    "check_seed",
    "episode_keys",
    "draw_class_labels",
    "as_index_array",
]

_SEED_HIGH = SEED_HIGH  # base seeds lie below this so s + i never overflows int64


def resolve_preset(
    denoiser: str | Denoiser | presets.Preset, data=None, device="cpu"
) -> presets.Preset:
    """A :class:`~diffusion_gym.presets.Preset` from a preset name, a ``Preset``, or a
    ``Denoiser`` object (then ``data`` is the true distribution, or None: the denoiser itself
    if it has ``sample``). The preset is moved to ``device``."""
    if isinstance(denoiser, str):
        if data is not None:
            raise ValueError("data= is only accepted with a Denoiser object, not a preset name")
        return presets.make(denoiser, device=device)
    if isinstance(denoiser, presets.Preset):
        if data is not None:
            raise ValueError("data= is only accepted with a Denoiser object, not a Preset")
        return denoiser.to(device)
    if isinstance(denoiser, Denoiser):
        if data is None and hasattr(denoiser, "sample"):
            data = denoiser
        if data is not None:
            check_data(data, ["sample"], "data=")
        name = f"custom-{type(denoiser).__name__}"
        return presets.Preset(name, denoiser, data, denoiser.sigma_max).to(device)
    if isinstance(denoiser, torch.nn.Module):
        raise TypeError(
            f"denoiser is a raw {type(denoiser).__name__}: wrap the network in an adapter, "
            "diffusion_gym.denoisers.EDMNetDenoiser(net, shape, num_classes, sigma_min, "
            "sigma_max) for net(x, sigma, class_labels) -> x0_hat (EDM convention), or "
            "EpsilonDenoiser for an epsilon-prediction (DDPM/VP) network"
        )
    raise TypeError(
        "denoiser must be a preset name (one of "
        f"{', '.join(presets.names())}), a Preset or a Denoiser, got {type(denoiser).__name__}"
    )


def check_seed(seed, num_envs: int) -> int | list[int] | None:
    """A reset's ``seed`` normalised: None, an int in ``[0, 2**62)`` (Python, numpy or a 0-d
    integer tensor) or a list of ``num_envs`` such ints; ``ValueError`` naming what was
    expected for anything else (a float, a bool, a string, a wrong length, a value out of
    range)."""
    if seed is None:
        return None
    if isinstance(seed, (str, bytes)) or not _is_sequence(seed):
        return as_seed("seed (None, an int or a list of num_envs ints)", seed)
    seeds = list(seed)
    if len(seeds) != num_envs:
        raise ValueError(
            f"seed must be an int, None or a list of {num_envs} ints (num_envs), got "
            f"{len(seeds)} values"
        )
    return [as_seed(f"seed[{i}]", s) for i, s in enumerate(seeds)]


def _is_sequence(v) -> bool:
    if isinstance(v, (torch.Tensor, np.ndarray)):
        return v.ndim > 0
    return isinstance(v, Sequence)


def base_seeds(seed: int | Sequence[int] | None, num_envs: int, rng: np.random.Generator):
    """Per-env base seeds ``[num_envs]`` int64: ``seed + i``, an explicit list, or (None)
    a fresh random base drawn from ``rng`` (``seed`` as checked by :func:`check_seed`)."""
    seed = check_seed(seed, num_envs)
    if seed is None:
        seed = int(rng.integers(0, _SEED_HIGH))
    if isinstance(seed, int):
        return torch.arange(num_envs, dtype=torch.int64) + seed
    return torch.as_tensor(seed, dtype=torch.int64)


def episode_keys(seeds: torch.Tensor, episodes: torch.Tensor) -> torch.Tensor:
    """Stream keys ``[B]`` of the current episode of each env: ``derive_keys(seed_i, salt=e_i)``
    (row-wise; equals ``derive_keys(seed_i, salt=e_i)`` called env by env)."""
    return derive_keys(seeds, salt=episodes)


def draw_class_labels(keys: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """One label per key from the class histogram ``weights [C]`` (inverse CDF of a uniform
    drawn from each key's own stream, so env i's label does not depend on the batch)."""
    u = (draw_uniform_int(keys, 0, 2**53).double() + 0.5) * 2.0**-53
    cdf = torch.cumsum(weights.double() / weights.double().sum(), 0).to(keys.device)
    return torch.searchsorted(cdf, u).clamp_(max=len(weights) - 1)


def as_index_array(actions, shape: tuple[int, ...], name: str = "actions") -> np.ndarray:
    """Validate a batch of integer actions and return it as an int64 numpy array.

    Raises ``ValueError`` for a wrong shape, NaN/inf or a non-integral value, ``TypeError``
    for a non-numeric type.
    """
    if isinstance(actions, torch.Tensor):
        actions = actions.detach().cpu().numpy()
    a = np.asarray(actions)
    if not np.issubdtype(a.dtype, np.number) or a.dtype.kind in "bc":  # bool, complex
        raise TypeError(f"{name} must be integers, got dtype {a.dtype}")
    if a.shape != shape:
        # A single action for a single env is accepted (shape () or (k,) for shape (1,) / (1, k)).
        if a.size == int(np.prod(shape)) and shape[0] == 1:
            a = a.reshape(shape)
        else:
            raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contain NaN or inf")
        if not (a == np.round(a)).all():
            raise ValueError(f"{name} must be integral, got non-integer values")
    return a.astype(np.int64, copy=False)
