"""The Guidance env's actions: the one place an action is decoded into (w, γ, renoise).

An action of ``diffusion_gym/Guidance-v0`` picks a guidance weight w and a churn γ for one
sampler step, and (with ``renoise=`` on) whether to renoise first:

- ``action_format="discrete"``: one index into the table,
  ``a = ri · (n_w · n_γ) + wi · n_γ + gi`` (ri ∈ {0, 1} only with renoise, so the indices
  below ``n_w · n_γ`` are the plain (w, γ) pairs in every configuration);
- ``"multidiscrete"``: ``(wi, gi)``, or ``(wi, gi, ri)`` with renoise;
- ``"box"``: continuous values ``[w, γ]`` (+ a renoise switch in [0, 1], on where > 0.5),
  w ∈ [min(weights), max(weights)], γ ∈ [0, max(gammas)]. A dimension whose range is empty
  (one weight, or γ_max = 0) is left out: :attr:`ActionTable.box_names` names the columns.

:class:`ActionTable` encodes, decodes (validated) and looks up the values; the env, the
policy strategy, plots and benchmarks all use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces

from .common import as_index_array

__all__ = [
    "ActionTable",
    "StepActions",
    "ACTION_FORMATS",
    "DEFAULT_GUIDANCE_WEIGHTS",
    "DEFAULT_GAMMAS",
    "RENOISE_THRESHOLD",
]

DEFAULT_GUIDANCE_WEIGHTS = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0)
DEFAULT_GAMMAS = (0.0, 0.1, 0.4)
ACTION_FORMATS = ("discrete", "multidiscrete", "box")
RENOISE_THRESHOLD = 0.5
"""A box action's renoise coordinate (in [0, 1]) renoises where it is > this value."""


def _table(values, name: str, low: float) -> np.ndarray:
    """A 1-D float64 table of finite values >= ``low``."""
    v = np.array(values, dtype=np.float64).reshape(-1)
    if v.size == 0 or not np.isfinite(v).all() or (v < low).any():
        raise ValueError(f"{name} must be a non-empty list of finite values >= {low}, got {values}")
    v.setflags(write=False)
    return v


@dataclass(frozen=True)
class StepActions:
    """One batch of validated actions, decoded (host arrays ``[B]``)."""

    actions: np.ndarray
    """The actions as validated: int64 ``[B]``/``[B, m]`` (discrete formats) or float64
    ``[B, D]`` (box)."""
    w: np.ndarray
    """float64 CFG weights."""
    gamma: np.ndarray
    """float64 churn values."""
    renoise: np.ndarray
    """bool: renoise requested (all False without ``renoise``)."""
    wi: np.ndarray | None = None
    """int64 weight indices (discrete formats; None for box)."""
    gi: np.ndarray | None = None
    """int64 γ indices (discrete formats; None for box)."""


class ActionTable:
    """The (w, γ[, renoise]) actions of the Guidance env and their encoding.

    :param weights: CFG weights w (finite). For ``"box"``: its range is [min, max].
    :param gammas: churn values γ (finite, >= 0). For ``"box"``: its range is [0, max].
    :param action_format: ``"discrete"`` (one index), ``"multidiscrete"`` (index pairs, or
        triples with renoise) or ``"box"`` (continuous values).
    :param renoise: whether the actions carry a renoise switch (see the module docstring).
    :param device, dtype: where :meth:`values` puts its tensors.
    """

    def __init__(
        self,
        weights=DEFAULT_GUIDANCE_WEIGHTS,
        gammas=DEFAULT_GAMMAS,
        action_format: str = "discrete",
        *,
        renoise: bool = False,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ):
        if action_format not in ACTION_FORMATS:
            raise ValueError(
                f"action_format must be one of {ACTION_FORMATS}, got {action_format!r}"
            )
        if not isinstance(renoise, (bool, np.bool_)):
            raise TypeError(f"renoise must be a bool, got {type(renoise).__name__}")
        self.action_format = action_format
        self.renoise = bool(renoise)
        self._weights = _table(weights, "guidance_weights", -np.inf)
        self._gammas = _table(gammas, "gammas", 0.0)
        self.device, self.dtype = torch.device(device), dtype
        self._w_t = torch.as_tensor(self._weights.copy(), dtype=dtype, device=self.device)
        self._g_t = torch.as_tensor(self._gammas.copy(), dtype=dtype, device=self.device)
        self._box_names, lo, hi = self._box_bounds()
        self._low = np.array(lo, dtype=np.float32)
        self._high = np.array(hi, dtype=np.float32)
        if action_format == "box" and not self._box_names:
            raise ValueError(
                "action_format='box' has nothing to choose: one guidance weight, gamma_max = 0 "
                "and no renoise; give guidance_weights a range (e.g. (0.0, 5.0))"
            )

    def _box_bounds(self) -> tuple[tuple[str, ...], list[float], list[float]]:
        names, lo, hi = [], [], []
        w_lo, w_hi = float(self._weights.min()), float(self._weights.max())
        if w_hi > w_lo:
            names.append("w"), lo.append(w_lo), hi.append(w_hi)
        g_hi = float(self._gammas.max())
        if g_hi > 0:
            names.append("gamma"), lo.append(0.0), hi.append(g_hi)
        if self.renoise:
            names.append("renoise"), lo.append(0.0), hi.append(1.0)
        return tuple(names), lo, hi

    @property
    def weights(self) -> np.ndarray:
        """The CFG weights w, float64 ``[n_w]`` (read-only; ``"box"``: min and max bound w)."""
        return self._weights

    @property
    def gammas(self) -> np.ndarray:
        """The churn values γ, float64 ``[n_γ]`` (read-only; ``"box"``: max bounds γ)."""
        return self._gammas

    @property
    def box_names(self) -> tuple[str, ...]:
        """The columns of a box action, a subset of ``("w", "gamma", "renoise")`` in that
        order (a column with an empty range is left out). Empty for the discrete formats."""
        return self._box_names if self.action_format == "box" else ()

    @property
    def size(self) -> int:
        """Number of discrete actions (``Discrete(size)``): ``n_w · n_γ``, twice that with
        renoise. ``ValueError`` for ``"box"``."""
        if self.action_format == "box":
            raise ValueError("a box action table has no finite size")
        return len(self._weights) * len(self._gammas) * (2 if self.renoise else 1)

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one action: ``()`` (discrete), ``(2,)``/``(3,)`` (multidiscrete without /
        with renoise) or ``(len(box_names),)`` (box)."""
        if self.action_format == "discrete":
            return ()
        if self.action_format == "multidiscrete":
            return (3,) if self.renoise else (2,)
        return (len(self._box_names),)

    def space(self) -> spaces.Space:
        """The single-env action space: ``Discrete(size)``, ``MultiDiscrete([n_w, n_γ(, 2)])``
        or ``Box(low, high, float32)`` over :attr:`box_names`."""
        nw, ng = len(self._weights), len(self._gammas)
        if self.action_format == "discrete":
            return spaces.Discrete(self.size)
        if self.action_format == "multidiscrete":
            return spaces.MultiDiscrete([nw, ng, 2] if self.renoise else [nw, ng])
        return spaces.Box(self._low.copy(), self._high.copy(), dtype=np.float32)

    def encode(self, wi, gi, renoise=None) -> np.ndarray:
        """The actions that play table points: weight indices ``wi`` and γ indices ``gi``
        (same shape) and (with renoise) the switch ``renoise`` (0/1 or bool, default 0).
        Discrete: int64 ``ri · n_w n_γ + wi · n_γ + gi``; multidiscrete: int64
        ``stack([wi, gi(, ri)], -1)``; box: float64 values ``[..., len(box_names)]`` (w, γ of
        the tables exactly, so the step equals the discrete one; renoise 1.0 / 0.0), e.g. a
        constant baseline or a policy's start."""
        wi, gi = np.asarray(wi), np.asarray(gi)
        ri = np.zeros_like(wi) if renoise is None else np.asarray(renoise)
        if renoise is not None and not self.renoise:
            raise ValueError("renoise= given but the action table has no renoise switch")
        if ri.dtype == np.bool_:
            ri = ri.astype(np.int64)
        for name, v, n in (
            ("wi", wi, len(self._weights)),
            ("gi", gi, len(self._gammas)),
            ("renoise", ri, 2),
        ):
            if not np.issubdtype(v.dtype, np.integer):
                raise TypeError(f"{name} must be integers, got dtype {v.dtype}")
            if v.size and (v.min() < 0 or v.max() >= n):
                raise ValueError(f"{name} must lie in [0, {n}), got [{v.min()}, {v.max()}]")
        if wi.shape != gi.shape or ri.shape != wi.shape:
            raise ValueError(
                f"wi, gi (and renoise) must have the same shape, got {wi.shape}, {gi.shape}, "
                f"{ri.shape}"
            )
        wi, gi, ri = wi.astype(np.int64), gi.astype(np.int64), ri.astype(np.int64)
        nw, ng = len(self._weights), len(self._gammas)
        if self.action_format == "box":
            cols = {"w": self._weights[wi], "gamma": self._gammas[gi], "renoise": ri * 1.0}
            return np.stack([cols[name] for name in self._box_names], -1)
        if self.action_format == "discrete":
            return ri * (nw * ng) + wi * ng + gi
        return np.stack([wi, gi, ri] if self.renoise else [wi, gi], -1)

    def _batch(self, actions, batch: int | None) -> int:
        if batch is not None:
            return batch
        n = np.ndim(actions)
        return 1 if n == 0 or (n == 1 and self.action_format != "discrete") else len(actions)

    def parse(self, actions, batch: int | None = None) -> StepActions:
        """Validate a batch of actions (``[B]`` or ``[B, m]``; numpy, tensor or list) of any
        format and decode them into :class:`StepActions`. ``batch`` fixes B (None: the
        actions' length).

        Raises ``ValueError`` for a wrong shape, NaN/inf, a non-integral index, an index
        outside the table or a box value outside the space's bounds (no clipping: clip in
        the agent, e.g. gymnasium's ``ClipAction``; SB3 already does), ``TypeError`` for a
        non-numeric type."""
        batch = self._batch(actions, batch)
        if self.action_format == "box":
            return self._parse_box(actions, batch)
        wi, gi, ri, a = self._decode(actions, batch)
        return StepActions(a, self._weights[wi], self._gammas[gi], ri.astype(bool), wi, gi)

    def _parse_box(self, actions, batch: int) -> StepActions:
        shape = (batch, len(self._box_names))
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        a = np.asarray(actions)
        if not np.issubdtype(a.dtype, np.number) or a.dtype.kind in "bc":
            raise TypeError(f"box actions must be real numbers, got dtype {a.dtype}")
        if a.shape != shape:
            if a.size == int(np.prod(shape)) and batch == 1:
                a = a.reshape(shape)
            else:
                raise ValueError(
                    f"box actions must have shape {shape} (columns {list(self._box_names)}), "
                    f"got {a.shape}"
                )
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ValueError("box actions contain NaN or inf")
        low, high = self._low.astype(np.float64), self._high.astype(np.float64)
        bad = (a < low) | (a > high)
        if bad.any():
            col = int(np.nonzero(bad.any(0))[0][0])
            raise ValueError(
                f"box action column {col} ({self._box_names[col]!r}) must lie in "
                f"[{low[col]:g}, {high[col]:g}], got values in "
                f"[{a[:, col].min():g}, {a[:, col].max():g}] (no clipping: clip in the agent)"
            )
        cols = dict(zip(self._box_names, a.T, strict=True))
        w = cols["w"] if "w" in cols else np.full(batch, float(self._weights[0]))
        g = cols["gamma"] if "gamma" in cols else np.zeros(batch)
        r = cols["renoise"] > RENOISE_THRESHOLD if "renoise" in cols else np.zeros(batch, bool)
        return StepActions(a, np.ascontiguousarray(w), np.ascontiguousarray(g), r)

    def _decode(self, actions, batch: int):
        a = as_index_array(actions, (batch, *self.action_shape))
        nw, ng = len(self._weights), len(self._gammas)
        if self.action_format == "discrete":
            n = self.size
            if a.size and (a.min() < 0 or a.max() >= n):
                raise ValueError(
                    f"actions must lie in [0, {n}) (Discrete({n})), "
                    f"got values in [{a.min()}, {a.max()}]"
                )
            pair = a % (nw * ng)
            return pair // ng, pair % ng, a // (nw * ng), a
        bounds = [nw, ng, 2] if self.renoise else [nw, ng]
        if ((a < 0) | (a >= np.array(bounds))).any():
            raise ValueError(
                f"actions must lie in MultiDiscrete({bounds}): column j in [0, bounds[j]); "
                f"got {a.min(0)}..{a.max(0)}"
            )
        ri = a[:, 2] if self.renoise else np.zeros(batch, dtype=np.int64)
        return a[:, 0], a[:, 1], ri, a

    def decode(self, actions, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Validated ``(wi, gi)`` int64 arrays ``[B]`` of a batch of discrete or
        multidiscrete actions (``[B]`` or ``[B, m]``; numpy, tensor or list; the renoise
        switch, if any, is dropped: :meth:`parse` keeps it). ``batch`` fixes B (None: the
        actions' length). ``ValueError`` for ``"box"`` (no indices: use :meth:`parse`).

        Raises ``ValueError`` for a wrong shape, a non-integral value or an index outside
        the table, ``TypeError`` for a non-numeric type."""
        if self.action_format == "box":
            raise ValueError("box actions have no table indices: use parse() for their values")
        wi, gi, _, _ = self._decode(actions, self._batch(actions, batch))
        return wi, gi

    def values(self, actions, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w, γ)`` tensors ``[B]`` (``dtype``, on ``device``) of a batch of actions."""
        return self.tensors(self.parse(actions, batch))

    def tensors(self, act: StepActions) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w, γ)`` tensors ``[B]`` (``dtype``, on ``device``) of parsed actions."""
        return self.weight_tensor(act), self.gamma_tensor(act)

    def weight_tensor(self, act: StepActions) -> torch.Tensor:
        """w of parsed actions, a ``[B]`` tensor on ``device`` (a table gather, or the box
        values as given)."""
        if act.wi is not None:
            return self.weight_values(act.wi)
        return torch.from_numpy(act.w).to(self.device, self.dtype)

    def gamma_tensor(self, act: StepActions) -> torch.Tensor:
        """γ of parsed actions, a ``[B]`` tensor on ``device``."""
        if act.gi is not None:
            return self.gamma_values(act.gi)
        return torch.from_numpy(act.gamma).to(self.device, self.dtype)

    def weight_values(self, wi: np.ndarray) -> torch.Tensor:
        """w of decoded weight indices, a ``[B]`` tensor on ``device``."""
        return self._w_t[torch.from_numpy(np.asarray(wi)).to(self.device)]

    def gamma_values(self, gi: np.ndarray) -> torch.Tensor:
        """γ of decoded γ indices, a ``[B]`` tensor on ``device``."""
        return self._g_t[torch.from_numpy(np.asarray(gi)).to(self.device)]

    def __repr__(self) -> str:
        extra = ", renoise=True" if self.renoise else ""
        return (
            f"ActionTable(weights={self._weights.tolist()}, gammas={self._gammas.tolist()}, "
            f"action_format={self.action_format!r}{extra})"
        )
