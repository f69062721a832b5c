"""Training checkpoints of the agents: directories switched in one rename, safe state files,
RNG states, SIGINT, seeds.

A checkpoint is a directory ``checkpoints/<prefix><n>/`` built by
:func:`diffusion_gym.io.atomic_dir` (files, then ``MANIFEST.json`` last, then one rename), so
a SIGKILL at any moment leaves either the previous complete checkpoint or the new one.
``--resume`` loads the newest complete one (:func:`latest`) and never unpickles code: the
trainer's own state is one ``state.pt`` read with ``torch.load(weights_only=True)``
(tensors, numbers, strings, lists, dicts; RNG states are stored as tensors and lists). The
SB3 ``*.zip`` saved next to it is for people (``PPO.load``); SB3 zips hold cloudpickled
objects, so resume reads only the policy/optimiser tensors from ``state.pt``.

SIGINT (:func:`sigint_saves`): the first Ctrl-C during training asks the trainer to stop at
its next safe point (end of an IRL round, start of an SB3 rollout, an art_ac iteration),
save a checkpoint there and raise :class:`Interrupted`; ``diffusion-gym train`` then prints
one line and exits with 130. A second Ctrl-C (or one outside training) interrupts at once.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.metrics import METRICS
from diffusion_gym.io import atomic_dir, complete_dirs

__all__ = [
    "check_eval_basics",
    "MAX_SEED",
    "Interrupted",
    "check_seed",
    "fit_seed",
    "derive_seed",
    "rng_state",
    "set_rng_state",
    "save_checkpoint",
    "latest",
    "load_state",
    "sigint_saves",
    "interrupt_requested",
    "training",
]

#: Largest accepted run seed (seeds are ints in [0, MAX_SEED]).
MAX_SEED = 2**63 - 1


class Interrupted(Exception):  # noqa: N818 - it is not an error
    """Training stopped on SIGINT after saving a checkpoint (``args[0]``: what was saved)."""


# ---------------------------------------------------------------------------------------------
# Seeds


def check_seed(name: str, seed: Any) -> None:
    """``ValueError`` unless ``seed`` is an int in [0, 2**63 − 1]."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be an int in [0, 2**63 - 1], got {seed!r}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"{name} must be an int in [0, 2**63 - 1], got {seed}")


def check_eval_basics(ev: Any) -> None:
    """The checks every agent's final-evaluation config shares (IRL and ART): ``metrics`` a
    non-empty list of :data:`baselines.metrics.METRICS` names, ``num_samples`` and
    ``train_samples`` >= 1, ``seeds`` a non-empty list of valid seeds (``ValueError``)."""
    unknown = [m for m in ev.metrics if m not in METRICS]
    if unknown or not ev.metrics:
        raise ValueError(f"eval.metrics must be names of {sorted(METRICS)}, got {ev.metrics}")
    if ev.num_samples < 1 or ev.train_samples < 1:
        raise ValueError(
            f"eval.num_samples and eval.train_samples must be >= 1, got {ev.num_samples}, "
            f"{ev.train_samples}"
        )
    if not ev.seeds:
        raise ValueError("eval.seeds must hold at least one seed")
    for i, s in enumerate(ev.seeds):
        check_seed(f"eval.seeds[{i}]", s)


def derive_seed(seed: int, *key: int, high: int = 2**31) -> int:
    """An int in [0, high) from ``(seed, *key)`` by numpy's ``SeedSequence`` (independent
    streams for different keys; any seed >= 0)."""
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
    lo, hi = (int(v) for v in ss.generate_state(2, np.uint32))
    return ((hi << 32) | lo) % high


def fit_seed(seed: int, high: int = 2**31) -> int:
    """``seed`` itself where it fits [0, high) (results of small seeds stay as they were),
    else a :func:`derive_seed` of it: libraries that take narrower seeds (SB3 and numpy:
    32 bits; the envs' base seeds: 62 bits) get one from the whole range."""
    check_seed("seed", seed)
    return int(seed) if int(seed) < high else derive_seed(seed, high=high)


# ---------------------------------------------------------------------------------------------
# RNG states as weights-only data


def rng_state() -> dict[str, Any]:
    """The global torch, numpy and Python RNG states as tensors / lists (``torch.load``-able
    with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - SB3 uses it
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [
            kind,
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],  # fmt: skip
        "python": [int(version), torch.tensor(internal, dtype=torch.int64), gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`'s states."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))


# ---------------------------------------------------------------------------------------------
# Checkpoint directories


def save_checkpoint(
    parent: Path, prefix: str, n: int, state: dict, extra=None, keep: int = 2
) -> Path | None:
    """Write ``parent/<prefix><n>/`` atomically: ``state.pt`` (``torch.save`` of weights-only
    data) and whatever ``extra(dir)`` writes (e.g. an SB3 zip for people); then remove all
    but the newest ``keep`` complete checkpoints. An existing ``<prefix><n>`` is kept as it
    is (it holds the same step) and None is returned."""
    path = Path(parent) / f"{prefix}{n}"
    if path.exists():
        return None
    with atomic_dir(path, meta={"step": int(n)}) as tmp:
        torch.save(state, tmp / "state.pt")
        if extra is not None:
            extra(tmp)
    for _, old in complete_dirs(parent, prefix)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def latest(parent: Path, prefix: str) -> Path | None:
    """The newest complete checkpoint directory ``<prefix><n>`` in ``parent`` (None if
    none); other names are ignored, incomplete ones skipped."""
    found = complete_dirs(parent, prefix)
    return found[-1][1] if found else None


def load_state(directory: Path) -> dict:
    """``state.pt`` of a checkpoint, read with ``torch.load(weights_only=True)`` (no code is
    unpickled: a crafted file raises instead of running)."""
    path = Path(directory) / "state.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for anything but weights-only data
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"cannot read checkpoint state {str(path)!r} safely (only tensors, numbers, "
            f"strings, lists and dicts are loaded; no pickled code): {why}"
        ) from None


# ---------------------------------------------------------------------------------------------
# SIGINT


_requested = threading.Event()
_training = threading.local()


def interrupt_requested() -> bool:
    """True once SIGINT asked the running training to save and stop."""
    return _requested.is_set()


@contextlib.contextmanager
def training() -> Iterator[None]:
    """Marks a training loop: a first SIGINT inside it is deferred to the loop's next safe
    point (which checks :func:`interrupt_requested`), outside it interrupts at once."""
    before = getattr(_training, "on", False)
    _training.on = True
    try:
        yield
    finally:
        _training.on = before


def _handler(signum, frame) -> None:
    if _requested.is_set() or not getattr(_training, "on", False):
        raise KeyboardInterrupt
    _requested.set()
    print(
        "\ninterrupt: saving a checkpoint at the next safe point (Ctrl-C again to abort)",
        file=sys.stderr,
    )


@contextlib.contextmanager
def sigint_saves() -> Iterator[None]:
    """Install the SIGINT handler of the module docstring (main thread only)."""
    _requested.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        _requested.clear()
