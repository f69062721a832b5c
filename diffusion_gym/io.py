"""Crash-safe file writes: the one place the project writes checkpoints, state and results.

Every writer goes through a temporary file in the destination's own directory, ``fsync``\\s
it, swaps it in with :func:`os.replace` (atomic on POSIX) and ``fsync``\\s the directory, so
a reader (or a ``--resume`` after a SIGKILL) sees either the old file or the new one, never
a truncated one.

- :func:`atomic_write_bytes`, :func:`atomic_write_text`, :func:`atomic_write_json`,
  :func:`atomic_write_yaml`: whole-file writes.
- :func:`atomic_save_via`: ``fn(tmp_path)`` writes the file (``torch.save``, SB3's
  ``model.save``, safetensors' ``save_file``, ``fig.savefig``), then it is swapped in.
- :func:`atomic_dir`: a multi-file checkpoint. Files are written into a hidden temporary
  directory; on success a ``MANIFEST.json`` (every file's size and SHA-256) is written last
  and the directory is renamed to its final, new name in one ``rename``. A directory without
  a valid manifest is incomplete: :func:`read_manifest` rejects it and
  :func:`complete_dirs` skips it.
- :func:`append_line`: one ``fsync``-ed line appended to a log (``mean_schedules.jsonl``);
  a torn last line is dropped by :func:`read_jsonl`.
- :func:`check_writable_dir`: a clear ``ValueError`` for an output directory that cannot be
  created or written, before any work starts.

Test hook (used by ``tests/test_checkpoints.py`` to SIGKILL a run *inside* a write): with
``DIFFUSION_GYM_IO_STALL="<n>:<phase>[:<marker file>]"`` the n-th atomic write of the
process (1-based) stops at ``phase`` (``partial``: the temporary file half written;
``before_replace``: written and synced, not yet swapped in; ``after_replace``: swapped in),
creates the marker file (or prints a line to stderr) and sleeps until it is killed (or for
``DIFFUSION_GYM_IO_STALL_SECONDS``, then the write goes on).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MANIFEST",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_yaml",
    "atomic_save_via",
    "atomic_dir",
    "read_manifest",
    "complete_dirs",
    "append_line",
    "read_jsonl",
    "check_writable_dir",
]

#: Name of the manifest that completes a checkpoint directory (written last).
MANIFEST = "MANIFEST.json"

_STALL_ENV = "DIFFUSION_GYM_IO_STALL"
_hook = {"spec": None, "writes": 0}  # the test hook's setting and the writes counted since


def _count_write() -> None:
    """Count an atomic write for the test hook (from 0 whenever the setting changes)."""
    spec = os.environ.get(_STALL_ENV)
    if spec != _hook["spec"]:
        _hook.update(spec=spec, writes=0)
    _hook["writes"] += 1


def _stall(phase: str, path: Path, tmp: Path | None = None) -> None:
    """The test hook of the module docstring (a no-op unless the env var is set)."""
    spec = os.environ.get(_STALL_ENV)
    if not spec:
        return
    n, want, *marker = spec.split(":", 2)
    if int(n) != _hook["writes"] or want != phase:
        return
    if phase == "partial" and tmp is not None and tmp.is_file():
        size = tmp.stat().st_size
        with open(tmp, "r+b") as f:
            f.truncate(size // 2)
    if marker:
        Path(marker[0]).write_text(f"{phase} {path}\n")
    else:
        print(f"diffusion_gym.io: stalled ({phase}) in write of {path}", file=sys.stderr)
    sys.stderr.flush()
    end = time.monotonic() + float(os.environ.get(_STALL_ENV + "_SECONDS", "inf"))
    while time.monotonic() < end:
        time.sleep(min(1.0, end - time.monotonic()))


def _fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename inside it survives a power loss (no-op where the OS
    cannot open directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


def atomic_save_via(path: str | Path, fn: Callable[[Path], Any]) -> Path:
    """Write ``path`` atomically by calling ``fn(tmp)`` with a temporary path in the same
    directory (``fn`` must write a file there), then fsync and rename it over ``path``.

    ``tmp`` keeps ``path``'s suffix (SB3's ``save`` appends ``.zip`` to other names). On any
    error the temporary file is removed and ``path`` is left as it was. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    _count_write()
    try:
        fn(tmp)
        if not tmp.is_file():
            raise FileNotFoundError(f"the writer of {path} did not create {tmp}")
        _fsync_file(tmp)
        _stall("partial", path, tmp)
        _stall("before_replace", path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    _stall("after_replace", path)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    return atomic_save_via(path, lambda tmp: tmp.write_bytes(bytes(data)))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2, **kwargs) -> Path:
    """Write ``obj`` as JSON (``json.dumps(obj, indent=indent, **kwargs)`` + newline)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, **kwargs) + "\n")


def atomic_write_yaml(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as YAML (``yaml.safe_dump``, keys in insertion order)."""
    return atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


# ---------------------------------------------------------------------------------------------
# Checkpoint directories


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(path: str | Path, meta: dict | None = None) -> Iterator[Path]:
    """Build the directory ``path`` (which must not exist yet) atomically.

    Yields a hidden temporary directory next to ``path``; write the files into it (plain
    writes are fine: nobody reads it). On a clean exit every file is fsynced, ``MANIFEST.json``
    (``{"files": {name: {"size", "sha256"}}, "meta": meta}``) is written last, and the
    directory is renamed to ``path`` in one ``rename``. On an error (or a kill) ``path`` does
    not appear; a left-over temporary directory is removed by the next :func:`atomic_dir`
    in the same parent.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"checkpoint directory {str(path)!r} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(f".{path.name}.tmp*"):  # from a killed earlier attempt
        shutil.rmtree(old, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp"))
    _count_write()
    try:
        yield tmp
        files = {}
        for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
            _fsync_file(f)
            files[f.relative_to(tmp).as_posix()] = {"size": f.stat().st_size, "sha256": _sha256(f)}
        _stall("partial", path)
        manifest = tmp / MANIFEST
        manifest.write_text(json.dumps({"files": files, "meta": meta or {}}, indent=1) + "\n")
        _fsync_file(manifest)
        _fsync_dir(tmp)
        _stall("before_replace", path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)
    _stall("after_replace", path)


def read_manifest(path: str | Path, verify: bool = True) -> dict:
    """The manifest of a complete checkpoint directory; ``ValueError`` naming the problem if
    it is missing, unreadable, or (``verify``) a listed file is missing or differs."""
    path = Path(path)
    m = path / MANIFEST
    if not m.is_file():
        raise ValueError(f"{str(path)!r} is not a complete checkpoint (no {MANIFEST})")
    try:
        manifest = json.loads(m.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{str(m)!r} is not a valid manifest: {e}") from None
    if verify:
        for name, rec in files.items():
            f = path / name
            if not f.is_file() or f.stat().st_size != rec["size"] or _sha256(f) != rec["sha256"]:
                raise ValueError(f"checkpoint {str(path)!r}: {name} is missing or corrupt")
    return manifest


def complete_dirs(parent: str | Path, prefix: str) -> list[tuple[int, Path]]:
    """``[(n, dir)]`` of the complete checkpoint directories ``<prefix><n>`` in ``parent``,
    sorted by n. Names that do not match (``model_best``, editor files, temporary directories)
    are ignored; a matching directory without a valid manifest is skipped with a note on
    stderr."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    out = []
    for d in parent.iterdir():
        m = pattern.fullmatch(d.name)
        if m is None or not d.is_dir():
            continue
        try:
            read_manifest(d)
        except ValueError as e:
            print(f"note: skipping {e}", file=sys.stderr)
            continue
        out.append((int(m.group(1)), d))
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# Logs and output directories


def append_line(path: str | Path, line: str) -> None:
    """Append one line (a newline is added) and fsync: a kill leaves at most a torn last
    line, which :func:`read_jsonl` drops."""
    if "\n" in line:
        raise ValueError("append_line writes one line; the text contains a newline")
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """The complete JSON lines of ``path`` (a torn or garbled line ends the read)."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").split("\n")[:-1]:  # the last piece: unended
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


def check_writable_dir(path: str | Path, what: str = "--out") -> Path:
    """Create ``path`` if needed and check a file can be written in it; ``ValueError`` with
    the reason otherwise (before any expensive work)."""
    p = Path(path)
    try:
        if p.exists() and not p.is_dir():
            raise ValueError(f"{what} {str(p)!r} exists and is not a directory")
        p.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=p, prefix=".write-test.")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        why = e.strerror or e
        raise ValueError(f"{what} {str(p)!r} is not a writable directory: {why}") from None
    return p
