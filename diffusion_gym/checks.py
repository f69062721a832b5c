"""Checks of scalar arguments, written once for every constructor and sampler.

A number may arrive as a Python ``int``/``float``, a numpy scalar (``np.int64(4)``,
``np.float32(3)``: what a config file, an array or a sweep hands over) or a 0-d tensor; it
leaves as a plain ``int`` or ``float``. ``bool`` and ``complex`` are never numbers here, a
float is never an int (``bank_seed=1.5`` is an error, not 1), and NaN/inf are rejected
unless asked for. Every failure is a ``ValueError`` naming the argument and what was
expected (a ``ValueError`` also for a wrong type, as the constructors have always raised).
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np
import torch

__all__ = ["as_int", "as_real", "as_seed", "SEED_HIGH"]

SEED_HIGH = 2**62  # seeds lie in [0, 2**62): s + i never overflows int64


def _is_bool(v) -> bool:
    if isinstance(v, torch.Tensor):
        return v.dtype == torch.bool
    return isinstance(v, (bool, np.bool_))


def as_int(name: str, v, low: int | None = None, high: int | None = None) -> int:
    """``v`` as an ``int`` in ``[low, high]`` (either bound may be None): a Python or numpy
    integer or a 0-d integer tensor; ``ValueError`` for anything else (floats, bools,
    strings) or a value out of range."""
    if _is_bool(v) or isinstance(v, (float, np.floating)):
        i = None
    else:
        try:
            i = operator.index(v)
        except TypeError:
            i = None
    if i is None or (low is not None and i < low) or (high is not None and i > high):
        raise ValueError(f"{name} must be an int{_range_text(low, high)}, got {v!r}")
    return int(i)


def as_real(
    name: str,
    v,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """``v`` as a finite ``float`` in ``[low, high]`` (``(low, high]`` with ``low_open``):
    a Python or numpy real number or a 0-d real tensor; ``ValueError`` for NaN, ±inf (unless
    ``allow_inf``), a bool, a complex number, a string or a value out of range."""
    ok = not _is_bool(v)
    if isinstance(v, torch.Tensor):
        ok = ok and v.ndim == 0 and not v.is_complex()
        f = float(v) if ok else math.nan
    elif ok and isinstance(v, numbers.Real):
        f = float(v)
    else:
        ok, f = False, math.nan
    ok = ok and not math.isnan(f) and (allow_inf or math.isfinite(f))
    if ok and low is not None:
        ok = f > low if low_open else f >= low
    if ok and high is not None:
        ok = f <= high
    if not ok:
        parts = [] if low is None else [f"> {low}" if low_open else f">= {low}"]
        parts += [] if high is None else [f"<= {high}"]
        rng = " " + " and ".join(parts) if parts else ""
        kind = "a number" if allow_inf else "a finite number"
        raise ValueError(f"{name} must be {kind}{rng}, got {v!r}")
    return f


def as_seed(name: str, v) -> int:
    """A seed: an int in ``[0, 2**62)`` (Python, numpy or a 0-d integer tensor)."""
    return as_int(name, v, 0, SEED_HIGH - 1)


def _range_text(low, high) -> str:
    if low is not None and high is not None:
        if high == SEED_HIGH - 1:
            return f" in [{low}, 2**62)"
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""
