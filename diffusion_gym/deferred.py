"""Value checks of device tensors, resolved together: one host sync for many, or none of
their own.

Testing a tensor's values (``bool((sigma > 0).all())``) makes the host wait for the device:
on a GPU each such test is a sync that stalls the queue. :class:`DeferredChecks` collects the
tests of a step as 0-d bool tensors (no sync) with the function that raises each one's
clear error, and resolves them at once: :meth:`DeferredChecks.resolve` in one sync, or
:meth:`DeferredChecks.flags` + :meth:`DeferredChecks.raise_failed` when the caller copies
the flags to the host together with its own outputs (the Clock env packs them into its one
device-to-host copy per step). The first failing check raises, in the order they were
added; the raising functions may read tensors (the error path only). A flag may be a cheap
sufficient test (a finite sum proves every term finite): its function then re-tests exactly
and returns without raising on a false alarm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["DeferredChecks"]


class DeferredChecks:
    """Checks of one step, each a 0-d bool tensor (True = passed) and its error.

    :param inputs: whether :func:`diffusion_gym.steps.step` records the checks of its
        inputs' values (σ, σ_next and γ finite and in range, labels in range, w finite, the
        ``final`` hint). False: the caller guarantees them (the Clock env: its clock cannot
        produce an invalid σ, its labels come from validated choices) and only the step's
        output (x_next finite) is checked.
    """

    __slots__ = ("inputs", "_flags", "_raisers")

    def __init__(self, *, inputs: bool = True):
        self.inputs = bool(inputs)
        self._flags: list[torch.Tensor] = []
        self._raisers: list[Callable[[], None]] = []

    def require(self, ok: torch.Tensor, raise_error: Callable[[], None]) -> None:
        """Add a check: ``ok`` a 0-d bool tensor, ``raise_error()`` raises its error (or
        returns if an exact re-test finds the values fine after all)."""
        self._flags.append(ok.reshape(()))
        self._raisers.append(raise_error)

    def __len__(self) -> int:
        return len(self._flags)

    def flags(self) -> torch.Tensor | None:
        """``[n]`` bool tensor of every check (on the checks' device), None if there are none."""
        if not self._flags:
            return None
        devices = {f.device for f in self._flags}
        flags = (
            self._flags
            if len(devices) == 1
            else [f.to(self._flags[-1].device) for f in self._flags]
        )
        return torch.stack(flags)

    def raise_failed(self, values: Sequence[bool]) -> None:
        """Raise the error of the first check whose value (host bools, in the order of
        :meth:`flags`) is False; nothing if all passed."""
        for ok, raise_error in zip(values, self._raisers, strict=True):
            if not ok:
                raise_error()  # raises, or returns on a false alarm

    def resolve(self, extra: Sequence[torch.Tensor] = ()) -> list[bool]:
        """Check everything now, in one host sync (none if there is nothing to read), and
        return the host values of ``extra`` (0-d bool tensors read in the same sync: what a
        caller's control flow needs)."""
        parts = [*self._flags, *(e.reshape(()) for e in extra)]
        if len(parts) == 1:
            values = [bool(parts[0])]
        else:
            values = torch.stack(parts).tolist() if parts else []
        n = len(self._flags)
        self.raise_failed(values[:n])
        self._flags, self._raisers = [], []
        return values[n:]
