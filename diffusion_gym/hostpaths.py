"""Where the CPU fast paths may run: one switch for every host (numpy) shortcut.

Several hot paths have a second, bit-identical copy that reads a CPU tensor's numbers on
the host through numpy (``derive_keys``, ``draw_uniform_int``, the Clock env's observation,
clock update, bank gathers and terminal error). On a CUDA device reading numbers on the host
is a device sync, so there the tensor code runs instead. :func:`on_host` is the one test
they all use; setting :data:`ENABLED` to False (``tests/test_host_syncs.py`` does, with
``monkeypatch``) makes CPU tensors take the device code, so the device path's host syncs can
be counted and its results compared with the host path's on a machine without a GPU.
"""

from __future__ import annotations

import torch

__all__ = ["ENABLED", "on_host"]

#: False: every host shortcut is off and CPU tensors run the device (tensor-only) code.
ENABLED = True


def on_host(where: torch.Tensor | torch.device) -> bool:
    """Whether the numbers of ``where`` (a tensor, or a device) may be read through numpy
    without a device sync: a CPU tensor while :data:`ENABLED`."""
    dev = where.device if isinstance(where, torch.Tensor) else where
    return ENABLED and dev.type == "cpu"
