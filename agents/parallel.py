"""Independent pieces of work (ART restarts, benchmark parts) as Ray tasks when Ray is there,
one after another in this process otherwise, with the same results.

Ray is an optional extra (``pip install "diffusion-gym[ray]"``). Which backend runs the work
(:func:`backend`):

- ``DIFFUSION_GYM_PARALLEL=local``: always this process, one piece after another;
- ``DIFFUSION_GYM_PARALLEL=ray``: Ray tasks (a local Ray is started if none is running;
  ``RAY_ADDRESS`` picks an existing cluster); an error naming the extra if Ray is missing;
- unset (``auto``): Ray tasks when Ray is installed and either already initialised in this
  process or ``RAY_ADDRESS`` names a cluster; otherwise this process. Starting a local Ray
  costs seconds and memory, so a plain command on one machine does not start one by itself.

Inside a Ray task or a sweep trial the variable is set to ``local``: nested work runs in
the worker that holds the trial's resources (a nested task could wait for CPUs that the
trials themselves hold). Every piece sets torch's thread count itself (``num_threads``), so a
piece gives the same numbers in a worker process and here.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["ENV_VAR", "RAY_EXTRA", "backend", "ray_available", "require_ray", "run_pieces"]

#: The environment variable that picks the backend (``auto``, ``ray`` or ``local``).
ENV_VAR = "DIFFUSION_GYM_PARALLEL"
#: How to install Ray (named in the error when it is missing).
RAY_EXTRA = 'pip install "diffusion-gym[ray]"  (Ray Tune 2.x)'


def ray_available() -> bool:
    """Whether the ``ray`` package (with Tune) is installed."""
    return (
        importlib.util.find_spec("ray") is not None
        and importlib.util.find_spec("ray.tune") is not None
    )


def require_ray(what: str) -> None:
    """``ImportError`` naming the ``[ray]`` extra when Ray is not installed."""
    if not ray_available():
        raise ImportError(f"{what} needs Ray, which is not installed: {RAY_EXTRA}")


def backend(prefer_ray: bool = False) -> str:
    """``"ray"`` or ``"local"``, by the rule of the module docstring; ``prefer_ray``: in
    ``auto`` mode, Ray whenever it is installed (a command the user asked to parallelise)."""
    mode = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in ("auto", "ray", "local"):
        raise ValueError(f"{ENV_VAR} must be one of auto, ray, local; got {mode!r}")
    if mode == "local":
        return "local"
    if mode == "ray":
        require_ray(f"{ENV_VAR}=ray")
        return "ray"
    if not ray_available():
        return "local"
    if prefer_ray:
        return "ray"
    import ray  # optional extra

    return "ray" if ray.is_initialized() or os.environ.get("RAY_ADDRESS") else "local"


def _piece(fn: Callable[..., Any], args: tuple, num_threads: int | None) -> Any:
    """One piece in a Ray worker: nested work stays local, threads as asked."""
    os.environ[ENV_VAR] = "local"
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    return fn(*args)


def run_pieces(
    fn: Callable[..., Any],
    pieces: Sequence[tuple],
    *,
    num_cpus: float = 1,
    num_gpus: float = 0,
    num_threads: int | None = None,
    use: str | None = None,
) -> list[Any]:
    """``[fn(*args) for args in pieces]``, as Ray tasks (each with ``num_cpus``/``num_gpus``,
    fractions allowed) or in this process, results in the order of ``pieces``.

    :param fn: a module-level function (Ray pickles it by reference); its arguments and
        result must pickle.
    :param num_threads: torch threads inside each piece (None: leave the worker's default).
    :param use: ``"ray"``/``"local"`` to force a backend; default :func:`backend`.
    """
    use = use or backend()
    if use == "local" or not pieces:
        return [fn(*args) for args in pieces]
    if use != "ray":
        raise ValueError(f"use must be 'ray' or 'local', got {use!r}")
    require_ray("running pieces as Ray tasks")
    import ray  # optional extra

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                 log_to_driver=False)  # fmt: skip
    task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_piece)
    return ray.get([task.remote(fn, args, num_threads) for args in pieces])
