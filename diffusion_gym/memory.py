"""Memory a configuration needs, checked before anything large is allocated.

An env constructor estimates the bytes its batch, its reference bank and one denoiser call
will hold (``memory_estimate()`` on each env: a lower estimate, counting only tensors that
are sure to exist) and refuses, with a ``ValueError`` that gives the breakdown, a
configuration that cannot fit in the memory available now: ``torch.cuda.mem_get_info`` on a
GPU; on the host the kernel's ``MemAvailable`` (else ``os.sysconf``'s available, then
physical pages), capped by a cgroup limit. So 2**28 envs fail at once with the figure
instead of a ``MemoryError`` after seconds and gigabytes.

Override with the environment variable ``DIFFUSION_GYM_MEMORY_LIMIT``: ``off`` skips the
check; a size (``64G``, ``512M``, ``1.5GiB``, or bytes) replaces the detected memory.
"""

from __future__ import annotations

import os
import re

import torch

__all__ = ["ENV_VAR", "available_bytes", "memory_limit", "check_fits", "format_bytes"]

ENV_VAR = "DIFFUSION_GYM_MEMORY_LIMIT"
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1000 or unit == "TiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if m is None:
        raise ValueError(
            f"{ENV_VAR}={text!r}: expected 'off' or a size such as 64G, 512M, 1.5GiB or bytes"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _host_available() -> tuple[int | None, str]:
    """Bytes the host can still give this process, and where the figure comes from."""
    avail, source = None, "unknown"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail, source = int(line.split()[1]) * 1024, "MemAvailable"
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
            try:
                avail = os.sysconf(name) * os.sysconf("SC_PAGE_SIZE")
                source = name
                break
            except (ValueError, OSError, AttributeError):
                continue
    for limit_path, usage_path in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit, used = _read_int(limit_path), _read_int(usage_path)
        if limit is not None and limit < 2**60 and used is not None:
            room = max(limit - used, 0)
            if avail is None or room < avail:
                avail, source = room, "cgroup limit"
    return avail, source


def available_bytes(device: torch.device | str) -> tuple[int | None, str]:
    """Free memory on ``device`` now (None if unknown) and where the figure comes from."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free), "torch.cuda.mem_get_info"
    if dev.type == "cpu":
        return _host_available()
    return None, "unknown"


def memory_limit(device: torch.device | str) -> tuple[int | None, str]:
    """The budget a configuration is checked against: ``DIFFUSION_GYM_MEMORY_LIMIT`` if set
    (``off``: None), else :func:`available_bytes`."""
    text = os.environ.get(ENV_VAR, "").strip()
    if text.lower() == "off":
        return None, f"{ENV_VAR}=off"
    if text:
        return _parse_size(text), f"{ENV_VAR}={text}"
    return available_bytes(device)


def check_fits(what: str, parts: dict[str, int], device: torch.device | str, hint: str) -> None:
    """Raise ``ValueError`` if the ``parts`` (name -> bytes) of ``what`` add up to more than
    :func:`memory_limit` of ``device``; ``hint`` says what to lower."""
    limit, source = memory_limit(device)
    need = sum(parts.values())
    if limit is None or need <= limit:
        return
    detail = ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items())
    raise ValueError(
        f"{what} needs about {format_bytes(need)} on {torch.device(device)} ({detail}) but "
        f"{format_bytes(limit)} is available ({source}): {hint}, or set {ENV_VAR}=off to skip "
        f"this check ({ENV_VAR}=64G to assume 64 GiB)"
    )
