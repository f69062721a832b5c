"""The Guidance env's action table: the one place a (guidance weight, γ) action is decoded.

An action of ``diffusion_gym/Guidance-v0`` picks one pair (w, γ) from two tables: with
``action_format="discrete"`` one index ``a = wi · len(gammas) + gi``, with
``"multidiscrete"`` the pair ``(wi, gi)``. :class:`ActionTable` encodes, decodes (validated)
and looks up the values; the env, the policy strategy, plots and benchmarks all use it.
"""

from __future__ import annotations

import numpy as np
import torch

from .common import as_index_array

__all__ = ["ActionTable", "ACTION_FORMATS", "DEFAULT_GUIDANCE_WEIGHTS", "DEFAULT_GAMMAS"]

DEFAULT_GUIDANCE_WEIGHTS = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0)
DEFAULT_GAMMAS = (0.0, 0.1, 0.4)
ACTION_FORMATS = ("discrete", "multidiscrete")


def _table(values, name: str, low: float) -> np.ndarray:
    """A 1-D float64 table of finite values >= ``low``."""
    v = np.array(values, dtype=np.float64).reshape(-1)
    if v.size == 0 or not np.isfinite(v).all() or (v < low).any():
        raise ValueError(f"{name} must be a non-empty list of finite values >= {low}, got {values}")
    v.setflags(write=False)
    return v


class ActionTable:
    """The (w, γ) table of the Guidance env and its action encoding.

    :param weights: CFG weights w (finite).
    :param gammas: churn values γ (finite, >= 0).
    :param action_format: ``"discrete"`` (one index ``wi · len(gammas) + gi``) or
        ``"multidiscrete"`` (pairs ``(wi, gi)``).
    :param device, dtype: where :meth:`values` puts its tensors.
    """

    def __init__(
        self,
        weights=DEFAULT_GUIDANCE_WEIGHTS,
        gammas=DEFAULT_GAMMAS,
        action_format: str = "discrete",
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ):
        if action_format not in ACTION_FORMATS:
            raise ValueError(
                f"action_format must be one of {ACTION_FORMATS}, got {action_format!r}"
            )
        self.action_format = action_format
        self._weights = _table(weights, "guidance_weights", -np.inf)
        self._gammas = _table(gammas, "gammas", 0.0)
        self.device, self.dtype = torch.device(device), dtype
        self._w_t = torch.as_tensor(self._weights.copy(), dtype=dtype, device=self.device)
        self._g_t = torch.as_tensor(self._gammas.copy(), dtype=dtype, device=self.device)

    @property
    def weights(self) -> np.ndarray:
        """The CFG weights w, float64 ``[n_w]`` (read-only)."""
        return self._weights

    @property
    def gammas(self) -> np.ndarray:
        """The churn values γ, float64 ``[n_γ]`` (read-only)."""
        return self._gammas

    @property
    def size(self) -> int:
        """Number of (w, γ) pairs (``Discrete(size)``)."""
        return len(self._weights) * len(self._gammas)

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one action: ``()`` (discrete) or ``(2,)`` (multidiscrete)."""
        return () if self.action_format == "discrete" else (2,)

    def encode(self, wi, gi) -> np.ndarray:
        """Actions (int64 numpy) of weight indices ``wi`` and γ indices ``gi`` (same shape):
        ``wi · n_γ + gi`` (discrete) or ``stack([wi, gi], -1)`` (multidiscrete)."""
        wi, gi = np.asarray(wi), np.asarray(gi)
        for name, v, n in (("wi", wi, len(self._weights)), ("gi", gi, len(self._gammas))):
            if not np.issubdtype(v.dtype, np.integer):
                raise TypeError(f"{name} must be integers, got dtype {v.dtype}")
            if v.size and (v.min() < 0 or v.max() >= n):
                raise ValueError(f"{name} must lie in [0, {n}), got [{v.min()}, {v.max()}]")
        if wi.shape != gi.shape:
            raise ValueError(f"wi and gi must have the same shape, got {wi.shape}, {gi.shape}")
        wi, gi = wi.astype(np.int64), gi.astype(np.int64)
        if self.action_format == "discrete":
            return wi * len(self._gammas) + gi
        return np.stack([wi, gi], -1)

    def decode(self, actions, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Validated ``(wi, gi)`` int64 arrays ``[B]`` of a batch of actions (``[B]`` or
        ``[B, 2]``; numpy, tensor or list). ``batch`` fixes B (None: the actions' length).

        Raises ``ValueError`` for a wrong shape, a non-integral value or an index outside
        the table, ``TypeError`` for a non-numeric type."""
        if batch is None:
            n = np.ndim(actions)
            batch = 1 if n == 0 or (n == 1 and self.action_format != "discrete") else len(actions)
        a = as_index_array(actions, (batch, *self.action_shape))
        nw, ng = len(self._weights), len(self._gammas)
        if self.action_format == "discrete":
            if a.size and (a.min() < 0 or a.max() >= nw * ng):
                raise ValueError(
                    f"actions must lie in [0, {nw * ng}) (Discrete({nw * ng})), "
                    f"got values in [{a.min()}, {a.max()}]"
                )
            return a // ng, a % ng
        wi, gi = a[:, 0], a[:, 1]
        if (wi < 0).any() or (wi >= nw).any() or (gi < 0).any() or (gi >= ng).any():
            raise ValueError(
                f"actions must lie in MultiDiscrete([{nw}, {ng}]): column 0 in [0, {nw}), "
                f"column 1 in [0, {ng}); got {a.min(0)}..{a.max(0)}"
            )
        return wi, gi

    def values(self, actions, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w, γ)`` tensors ``[B]`` (``dtype``, on ``device``) of a batch of actions."""
        wi, gi = self.decode(actions, batch)
        return self.weight_values(wi), self.gamma_values(gi)

    def weight_values(self, wi: np.ndarray) -> torch.Tensor:
        """w of decoded weight indices, a ``[B]`` tensor on ``device``."""
        return self._w_t[torch.from_numpy(np.asarray(wi)).to(self.device)]

    def gamma_values(self, gi: np.ndarray) -> torch.Tensor:
        """γ of decoded γ indices, a ``[B]`` tensor on ``device``."""
        return self._g_t[torch.from_numpy(np.asarray(gi)).to(self.device)]

    def __repr__(self) -> str:
        return (
            f"ActionTable(weights={self._weights.tolist()}, gammas={self._gammas.tolist()}, "
            f"action_format={self.action_format!r})"
        )
