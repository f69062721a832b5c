"""Environment throughput: env steps per second, and the env's overhead over a raw sampler step.

For every registered ``diffusion_gym/`` id (Guidance and Clock ones) and every batch size,
the native vector env (``gym.make_vec(..., vectorization_mode="vector_entry_point")``) is
stepped with random actions drawn up front, and — in the same run, on the same batch — the
raw :func:`diffusion_gym.steps.step` is timed doing the same numerical work:

- Guidance ids: churn noise from the same ``SampleStreams`` + ``steps.step`` with the same
  per-sample weights w and churn γ (what any sampler with per-sample actions must do).
- Other ids: ``steps.step`` of the env's solver with the env's class labels (no guidance).

Env and raw blocks alternate ``--repeats`` times and the medians are reported, so a busy
machine affects both alike. ``overhead = env step time / raw step time − 1``. On CPU the
``in-run`` column is load-robust: within the same env steps, the time outside ``steps.step``
and ``steps.churn_noise`` divided by the time inside them.

    python benchmarks/throughput.py --device cpu --batch-sizes 256 4096 --ids Guidance-v0
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

import diffusion_gym  # noqa: F401 - registers the ids
from diffusion_gym import steps


@dataclass
class Args:
    """Command-line options (see ``--help``)."""

    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (64, 1024, 4096)
    ids: tuple[str, ...] = ()
    repeats: int = 5
    min_time: float = 0.3
    threads: int = 0


def parse(argv=None) -> Args:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 1024, 4096])
    p.add_argument(
        "--ids", nargs="*", default=[], help="env ids (without 'diffusion_gym/'); default all"
    )
    p.add_argument("--repeats", type=int, default=5, help="alternating env/raw blocks")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds per timed block")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    a = p.parse_args(argv)
    if min(a.batch_sizes) < 1 or a.repeats < 1:
        p.error("batch sizes and repeats must be >= 1")
    return Args(a.device, tuple(a.batch_sizes), tuple(a.ids), a.repeats, a.min_time, a.threads)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, n: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over ``n`` calls."""
    _sync(device)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    _sync(device)
    return (time.perf_counter() - t0) / n


def _raw_step_fn(env, actions: np.ndarray):
    """A function doing the raw sampler work of one env step on the env's current batch."""
    u = env.unwrapped
    if hasattr(u, "clock"):  # Clock ids: per-sample schedules
        return _clock_raw_step_fn(u, actions)
    x_t = u.x.clone()
    state = {"x": x_t}
    labels = getattr(u, "class_labels", None)
    sig = [float(s) for s in u.sigmas] if hasattr(u, "sigmas") else None
    n = len(sig) - 1 if sig else 1
    solver = getattr(u, "solver", "heun")
    if hasattr(u, "guidance_weights"):  # Guidance env: same per-sample w and γ tensors
        ng = len(u.gammas)
        if actions.ndim == 3:  # multidiscrete: (weight index, γ index)
            wi, gi = actions[..., 0], actions[..., 1]
        else:
            wi, gi = actions // ng, actions % ng
        wi, gi = torch.as_tensor(wi), torch.as_tensor(gi)
        w_all = u._w_t[wi.to(u.device)]
        g_all = u._g_t[gi.to(u.device)]
    else:
        w_all = g_all = None

    def run(i: int) -> None:
        k = i % n
        x = x_t if k == 0 else state["x"]  # the raw sampler follows a real trajectory too
        w = g = None
        noise = None
        if w_all is not None:
            w, g = w_all[i % len(w_all)], g_all[i % len(g_all)]
            noise = steps.churn_noise(u.streams, k, x)
        state["x"], _ = steps.step(
            u.denoiser,
            x,
            sig[k],
            sig[k + 1],
            class_labels=labels,
            guidance=w if labels is not None else None,
            gamma=g if g is not None else 0.0,
            solver=solver,
            noise=noise,
        )

    return run


def _clock_raw_step_fn(u, actions: np.ndarray):
    """Clock ids: ``steps.step`` with the per-sample σ, σ_next that the same actions give
    (``schedule_from_actions``), the env's labels, guidance and solver, from the env's x_T."""
    core = u.core
    k_steps = core.K
    acts = np.stack([actions[j % len(actions)][:, 0] for j in range(k_steps)], 1)
    sig = u.schedule_from_actions(torch.as_tensor(acts, dtype=torch.float64)).to(core.device)
    x_t = core.x_T.clone()
    state = {"x": x_t}

    def run(i: int) -> None:
        k = i % k_steps
        x = x_t if k == 0 else state["x"]
        state["x"], _ = steps.step(
            core.denoiser,
            x,
            sig[:, k],
            sig[:, k + 1],
            class_labels=core.labels,
            guidance=core.guidance,
            solver=core.solver,
        )

    return run


def measure(env_id: str, batch: int, args: Args) -> dict:
    device = torch.device(args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make_vec(
            env_id, num_envs=batch, vectorization_mode="vector_entry_point", device=device
        )
    env.reset(seed=0)
    env.action_space.seed(0)
    pool = np.stack([env.action_space.sample() for _ in range(16)])

    def env_step(i: int) -> None:
        env.step(pool[i % len(pool)])

    raw = _raw_step_fn(env, pool)
    envs, raws, inside = [], [], []
    with torch.no_grad():  # scoped: the process's grad mode is left as it was
        t_env = _time(env_step, 3, device)  # warm-up + calibration
        raw(0)
        reps = max(2, int(args.min_time / max(t_env, 1e-6)))
        for _ in range(args.repeats):
            envs.append(_time(env_step, reps, device))
            raws.append(_time(raw, reps, device))
            if device.type == "cpu":
                inside.append(_inside_fraction(env_step, reps))
    env.close()
    te, tr = statistics.median(envs), statistics.median(raws)
    # Share of the env step spent outside the sampler's own work (same calls, load-robust).
    outside = 1 - statistics.median(inside) if inside else float("nan")
    return {
        "id": env_id.split("/", 1)[1],
        "batch": batch,
        "env_steps_per_s": batch / te,
        "vector_steps_per_s": 1 / te,
        "env_ms": te * 1e3,
        "raw_ms": tr * 1e3,
        "overhead": te / tr - 1,
        "overhead_in_run": outside / (1 - outside),
    }


def _inside_fraction(env_step, n: int) -> float:
    """Fraction of env-step wall time spent inside ``steps.step`` and ``steps.churn_noise``
    (CPU: timed by wrapping the two functions for the duration of ``n`` env steps)."""
    spent = [0.0]
    originals = {name: getattr(steps, name) for name in ("step", "churn_noise")}

    def timed(fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[0] += time.perf_counter() - t0

        return wrapper

    for name, fn in originals.items():
        setattr(steps, name, timed(fn))
    try:
        t0 = time.perf_counter()
        for i in range(n):
            env_step(i)
        total = time.perf_counter() - t0
    finally:
        for name, fn in originals.items():
            setattr(steps, name, fn)
    return spent[0] / total


def main(argv=None) -> list[dict]:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ids = [f"diffusion_gym/{i}" for i in args.ids] or sorted(
        i for i in gym.registry if i.startswith("diffusion_gym/")
    )
    rows = []
    head = (
        f"{'env id':28s} {'batch':>6s} {'env steps/s':>12s} {'vec steps/s':>11s} "
        f"{'env ms':>8s} {'raw ms':>8s} {'overhead':>9s} {'in-run':>8s}"
    )
    print(f"device={args.device} torch threads={torch.get_num_threads()} torch {torch.__version__}")
    print(head)
    print("-" * len(head))
    for env_id in ids:
        for b in args.batch_sizes:
            r = measure(env_id, b, args)
            rows.append(r)
            print(
                f"{r['id']:28s} {b:6d} {r['env_steps_per_s']:12.0f} "
                f"{r['vector_steps_per_s']:11.1f} {r['env_ms']:8.3f} {r['raw_ms']:8.3f} "
                f"{100 * r['overhead']:8.1f}% {100 * r['overhead_in_run']:7.1f}%",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
