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
and ``steps.churn_noise`` divided by the time inside them. ``host ms`` is the env step with
those two functions stubbed out (they return copies of their input): the env's own work
alone (actions, clock or action table, observation, reward, info, autoreset's
``final_obs``), and ``host`` that time over the raw step. It is a lower bound on the
overhead: ``in-run`` also counts what the sampler's memory traffic costs the env's code
(cold caches), which ``host`` does not see.

    python -m agents.benchmark.throughput --device cpu --batch-sizes 256 4096 --ids Guidance-v0

``--cpu-time`` times the env and raw blocks (and the in-run split) by this process's CPU time
instead of wall time: on a shared machine other jobs' preemption then does not enter (CPU
only, ``--threads 1``).

``--solver NAME`` (any of ``steps.SOLVERS``) makes every env with that solver (passed to
``gym.make_vec``) and the raw sampler step with the same solver; for a multistep solver the
raw step carries its own :class:`~diffusion_gym.solvers.SolverState` along the trajectory,
restarted at k = 0 as the env's is at every reset, so both sides do the same numerical work.
In sampler mode it replaces Heun.

(``python benchmarks/throughput.py ...`` is a shim for the same ``main``.)

Sampler mode (``--sampler PRESET ...``): raw sample-steps/s of :func:`diffusion_gym.steps.step`
against batch size, without any env: every preset's default number of Heun steps on its
karras (ρ = 7) schedule, from x_T = prior_std · ε, with random class labels and per-sample
classifier-free guidance (w = ``--guidance``; one denoiser call of size 2B per solver stage,
as the envs make it), in the denoiser's own dtype (float64 mixtures, float32 networks).
``sample-steps/s`` = B · N / t_traj and ``NFE/s`` = B · (2N − 1) / t_traj, with t_traj the
median wall time of one N-step trajectory of the batch (each guided NFE is 2 network rows).
On CUDA the device is synchronised before and after every timed block. ``--compile`` wraps the
denoiser's ``denoise`` in ``torch.compile`` (rows say whether it worked; eager otherwise).
With ``--sampler`` the env benchmark runs only if ``--ids`` is given as well. ``--json PATH``
writes the machine, the options and every row (env, sampler, errors), rewritten after each row.

    python -m agents.benchmark.throughput --sampler gmm-ring8 digits --batch-sizes 1 256 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import diffusion_gym  # noqa: F401 - registers the ids
from baselines.evaluate import nfe_of
from diffusion_gym import presets, schedules, steps
from diffusion_gym.envs import ClockVectorEnv, GuidanceVectorEnv, batch_of
from diffusion_gym.io import atomic_write_text

SAMPLER_PRESETS = ("gmm-ring8", "gmm-64d", "gmm-ring8-mlp", "digits")  # the four


@dataclass
class Args:
    """Command-line options (see ``--help``)."""

    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (64, 1024, 4096)
    ids: tuple[str, ...] = ()
    repeats: int = 5
    min_time: float = 0.3
    threads: int = 0
    sampler: tuple[str, ...] = ()
    """presets for the sampler mode (empty: off)"""
    guidance: float = 2.0
    """CFG weight w of the sampler mode (per-sample [B] tensor, one 2B call per stage)"""
    compile: bool = False
    """wrap the denoiser's ``denoise`` in ``torch.compile`` (sampler mode)"""
    compile_mode: str = "default"
    """``torch.compile`` mode (``default``, ``reduce-overhead`` = CUDA graphs, ...)"""
    json: str | None = None
    """write every row as JSON to this path"""
    keep_going: bool = False
    """record a failing row (e.g. out of memory) as an error and go on"""
    solver: str | None = None
    """solver of the envs and raw steps (None: each env's default; sampler mode: heun)"""
    cpu_time: bool = False
    """time env and raw blocks by this process's CPU time (CPU only; robust to other jobs)"""


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
    p.add_argument(
        "--sampler",
        nargs="+",
        default=[],
        metavar="PRESET",
        help=f"sampler mode: raw steps.step throughput for these presets (e.g. "
        f"{' '.join(SAMPLER_PRESETS)}); the env rows then run only if --ids is given",
    )
    p.add_argument("--guidance", type=float, default=2.0, help="sampler mode: CFG weight w")
    p.add_argument(
        "--compile", action="store_true", help="sampler mode: torch.compile the denoiser call"
    )
    p.add_argument("--compile-mode", default="default", help="torch.compile mode")
    p.add_argument("--json", default=None, metavar="PATH", help="write all rows as JSON")
    p.add_argument(
        "--solver", default=None, choices=steps.SOLVERS, help="solver of envs and raw steps"
    )
    p.add_argument(
        "--cpu-time", action="store_true",
        help="time env/raw blocks by process CPU time (CPU only; other jobs do not count)",
    )  # fmt: skip
    p.add_argument(
        "--keep-going", action="store_true", help="record a failing row as an error, go on"
    )
    a = p.parse_args(argv)
    if min(a.batch_sizes) < 1 or a.repeats < 1:
        p.error("batch sizes and repeats must be >= 1")
    if a.cpu_time and torch.device(a.device).type != "cpu":
        p.error("--cpu-time needs --device cpu (GPU work is not this process's CPU time)")
    if torch.device(a.device).type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {a.device}: torch {torch.__version__} sees no CUDA device")
    unknown = sorted(set(a.sampler) - set(presets.names()))
    if unknown:
        p.error(f"unknown preset(s) {unknown} for --sampler; valid: {', '.join(presets.names())}")
    if not math.isfinite(a.guidance):
        p.error(f"--guidance must be finite, got {a.guidance}")
    return Args(
        device=a.device,
        batch_sizes=tuple(a.batch_sizes),
        ids=tuple(a.ids),
        repeats=a.repeats,
        min_time=a.min_time,
        threads=a.threads,
        sampler=tuple(a.sampler),
        guidance=a.guidance,
        compile=a.compile,
        compile_mode=a.compile_mode,
        json=a.json,
        keep_going=a.keep_going,
        solver=a.solver,
        cpu_time=a.cpu_time,
    )


#: The timer of the env/raw blocks: wall time, or this process's CPU time (``--cpu-time``).
_TIMER = {"now": time.perf_counter}


def _now() -> float:
    return _TIMER["now"]()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, n: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over ``n`` calls."""
    _sync(device)
    t0 = _now()
    for i in range(n):
        fn(i)
    _sync(device)
    return (_now() - t0) / n


def _raw_step_fn(env, actions: np.ndarray):
    """A function doing the raw sampler work of one env step on the env's current batch."""
    u = batch_of(env)
    if isinstance(u, ClockVectorEnv):  # Clock ids: per-sample schedules
        return _clock_raw_step_fn(u, actions)
    if not isinstance(u, GuidanceVectorEnv):
        raise TypeError(f"no raw sampler step for {type(u).__name__}")
    x_t = u.x.clone()
    state = {"x": x_t}
    labels = u.class_labels
    sig = [float(s) for s in u.sigmas]
    n = len(sig) - 1
    solver = u.solver
    multistep = steps.is_multistep(solver)
    # The same per-sample w and γ tensors as the env's (its ActionTable decodes the actions).
    pairs = [u.action_table.values(a, u.num_envs) for a in actions]
    w_all = torch.stack([w for w, _ in pairs])
    g_all = torch.stack([g for _, g in pairs])

    def run(i: int) -> None:
        k = i % n
        x = x_t if k == 0 else state["x"]  # the raw sampler follows a real trajectory too
        w, g = w_all[i % len(w_all)], g_all[i % len(g_all)]
        noise = steps.churn_noise(u.streams, k, x)
        if k == 0:  # the multistep history restarts with the trajectory (as at a reset)
            state["hist"] = steps.SolverState(n) if multistep else None
        state["x"], _ = steps.step(
            u.denoiser,
            x,
            sig[k],
            sig[k + 1],
            class_labels=labels,
            guidance=w if labels is not None else None,
            gamma=g,
            solver=solver,
            noise=noise,
            state=state["hist"],
        )

    return run


def _clock_raw_step_fn(u, actions: np.ndarray):
    """Clock ids: ``steps.step`` with the per-sample σ, σ_next that the same actions give
    (``schedule_from_actions``), the env's labels, guidance and solver, from the env's x_T."""
    k_steps = u.budget
    acts = np.stack([actions[j % len(actions)][:, 0] for j in range(k_steps)], 1)
    sig = u.schedule_from_actions(torch.as_tensor(acts, dtype=torch.float64)).to(u.device)
    x_t = u.x_T.clone()
    state = {"x": x_t}
    multistep = steps.is_multistep(u.solver)

    def run(i: int) -> None:
        k = i % k_steps
        x = x_t if k == 0 else state["x"]
        if k == 0:  # the multistep history restarts with the trajectory (as at a reset)
            state["hist"] = steps.SolverState(k_steps) if multistep else None
        state["x"], _ = steps.step(
            u.denoiser,
            x,
            sig[:, k],
            sig[:, k + 1],
            class_labels=u.class_labels,
            guidance=u.guidance,
            solver=u.solver,
            state=state["hist"],
        )

    return run


def measure(env_id: str, batch: int, args: Args) -> dict:
    device = torch.device(args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra = {} if args.solver is None else {"solver": args.solver}
        env = gym.make_vec(
            env_id, num_envs=batch, vectorization_mode="vector_entry_point", device=device,
            **extra,
        )  # fmt: skip
    solver_name = batch_of(env).solver
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
        host = [_host_only(env_step, reps) for _ in range(args.repeats)]
    env.close()
    te, tr = statistics.median(envs), statistics.median(raws)
    # Share of the env step spent outside the sampler's own work (same calls, load-robust).
    outside = 1 - statistics.median(inside) if inside else float("nan")
    return {
        "id": env_id.split("/", 1)[1],
        "batch": batch,
        "solver": solver_name,
        "env_steps_per_s": batch / te,
        "vector_steps_per_s": 1 / te,
        "env_ms": te * 1e3,
        "raw_ms": tr * 1e3,
        "overhead": te / tr - 1,
        "overhead_in_run": outside / (1 - outside),
        "host_ms": statistics.median(host) * 1e3,
        "host_share": statistics.median(host) / tr,
    }


_SAMPLER_FNS = ("step", "churn_noise")  # the sampler's own work inside an env step


@contextlib.contextmanager
def _sampler_replaced(make):
    """``steps.step`` and ``steps.churn_noise`` replaced by ``make(name, fn)`` for the block
    (the envs call them through the ``steps`` module); the originals are back after it,
    also when it raises."""
    originals = {name: getattr(steps, name) for name in _SAMPLER_FNS}
    for name, fn in originals.items():
        setattr(steps, name, make(name, fn))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(steps, name, fn)


def _steps_time(env_step, n: int) -> float:
    """Seconds of ``n`` env steps."""
    t0 = _now()
    for i in range(n):
        env_step(i)
    return _now() - t0


def _inside_fraction(env_step, n: int) -> float:
    """Fraction of env-step wall time spent inside ``steps.step`` and ``steps.churn_noise``
    (CPU: timed by wrapping the two functions for the duration of ``n`` env steps)."""
    spent = [0.0]

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = _now()
            try:
                return fn(*a, **kw)
            finally:
                spent[0] += _now() - t0

        return wrapper

    with _sampler_replaced(timed):
        total = _steps_time(env_step, n)
    return spent[0] / total


def _host_only(env_step, n: int) -> float:
    """Seconds per env step of the env's own work alone: ``steps.step`` and
    ``steps.churn_noise`` replaced by stubs that return copies of their input (no denoiser
    call, no solver arithmetic), the rest of the step unchanged (actions, clock or action
    table, observation, reward, info, autoreset). A lower bound on the env's overhead: the
    in-run share also holds what the sampler's memory traffic costs the env's code."""

    def stub(name, fn):
        if name == "step":
            return lambda denoiser, x, *a, **kw: (x.clone(), x.clone())
        return lambda streams, k, x: torch.zeros_like(x)

    with _sampler_replaced(stub):
        return _steps_time(env_step, n) / n


def _compile_denoiser(den, trajectory, mode: str) -> tuple[bool, str]:
    """Wrap ``den.denoise`` in ``torch.compile`` and run one trajectory (which compiles it).
    On any failure the eager method is restored; returns ``(compiled, reason)``."""
    torch._dynamo.reset()  # fresh caches: every row is a new denoiser object and shape
    try:
        den.denoise = torch.compile(den.denoise, mode=mode, dynamic=False)
        trajectory(0)
    except Exception as e:  # noqa: BLE001 - any compiler failure falls back to eager
        den.__dict__.pop("denoise", None)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return False, f"{type(e).__name__}: {first}"[:300]
    return True, ""


def measure_sampler(name: str, batch: int, args: Args) -> dict:
    """Raw sampler throughput of preset ``name`` on a batch: one row (see the module doc)."""
    device = torch.device(args.device)
    preset = presets.make(name, device=device)
    den = preset.denoiser.eval()
    n = int(preset.defaults.get("num_steps", 4))
    sig = schedules.karras(n, preset.sigma_min, preset.sigma_max).tolist()
    g = torch.Generator().manual_seed(0)
    x_T = preset.prior_std * torch.randn(batch, *den.shape, generator=g, dtype=den.dtype)
    x_T = x_T.to(device)
    labels = w = None
    if den.num_classes:  # per-sample labels and weights: one guided call of size 2B per stage
        labels = torch.randint(den.num_classes, (batch,), generator=g).to(device)
        w = torch.full((batch,), args.guidance, dtype=den.dtype, device=device)

    solver = args.solver or "heun"

    def trajectory(_i: int) -> None:
        x, hist = x_T, steps.SolverState(n) if steps.is_multistep(solver) else None
        for k in range(n):
            x, _ = steps.step(
                den, x, sig[k], sig[k + 1], class_labels=labels, guidance=w, solver=solver,
                state=hist,
            )  # fmt: skip

    compiled, note, compile_s = False, "", 0.0
    with torch.no_grad():  # scoped: the process's grad mode is left as it was
        if args.compile:
            t0 = time.perf_counter()
            compiled, note = _compile_denoiser(den, trajectory, args.compile_mode)
            compile_s = time.perf_counter() - t0
            if not compiled:
                print(f"# {name} batch {batch}: torch.compile failed, eager: {note}", flush=True)
        trajectory(0)  # warm-up (allocator, kernels, cuBLAS/cuDNN handles)
        t_one = _time(trajectory, 1, device)  # calibration
        reps = max(1, int(args.min_time / max(t_one, 1e-6)))
        times = [_time(trajectory, reps, device) for _ in range(args.repeats)]
    t = statistics.median(times)
    return {
        "preset": name,
        "batch": batch,
        "device": str(device),
        "dtype": str(den.dtype).removeprefix("torch."),
        "solver": solver,
        "steps": n,
        "nfe": nfe_of(n, solver),
        "guidance": args.guidance if labels is not None else None,
        "compiled": compiled,
        "compile_error": note or None,
        "compile_s": compile_s if args.compile else None,
        "traj_ms": t * 1e3,
        "step_ms": t / n * 1e3,
        "sample_steps_per_s": batch * n / t,
        "nfe_per_s": batch * nfe_of(n, solver) / t,
        "net_rows_per_s": (2 if labels is not None else 1) * batch * nfe_of(n, solver) / t,
    }


def machine(device: torch.device) -> dict:
    """Versions and hardware of this run (for the JSON report)."""
    m = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gymnasium": gym.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "argv": sys.argv,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        m.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
    return m


def _jsonable(v):
    """NaN/inf -> None (strict JSON), recursively."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


class _Report:
    """Rows of one run; with ``--json`` the file is rewritten after every row, so a run cut
    short (time limit) still leaves the rows measured so far."""

    def __init__(self, args: Args):
        self.args = args
        self.doc = {
            "machine": machine(torch.device(args.device)),
            "args": asdict(args),
            "env": [],
            "sampler": [],
            "errors": [],
        }

    def run(self, kind: str, fn, name: str, batch: int) -> dict | None:
        """``fn(name, batch, args)`` as one row of ``kind``; None if it failed (keep-going)."""
        try:
            row = fn(name, batch, self.args)
        except Exception as e:
            if not self.args.keep_going:
                raise
            if torch.device(self.args.device).type == "cuda":
                torch.cuda.empty_cache()  # e.g. after an out-of-memory error
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            self.doc["errors"].append({"mode": kind, "name": name, "batch": batch, "error": msg})
            print(f"{name:28s} {batch:6d} ERROR {msg[:200]}", flush=True)
            self.write()
            return None
        self.doc[kind].append(row)
        self.write()
        return row

    def write(self) -> None:
        if self.args.json:
            atomic_write_text(Path(self.args.json), json.dumps(_jsonable(self.doc), indent=1))


def _sampler_table(report: _Report) -> None:
    args = report.args
    head = (
        f"{'preset':16s} {'batch':>6s} {'dtype':>8s} {'N':>2s} {'NFE':>3s} {'compiled':>8s} "
        f"{'traj ms':>9s} {'step ms':>8s} {'sample-steps/s':>14s} {'NFE/s':>12s}"
    )
    print(
        f"sampler: {args.solver or 'heun'}, karras rho=7, CFG w={args.guidance} "
        "(one 2B call per stage)"
    )
    print(head)
    print("-" * len(head))
    for name in args.sampler:
        for b in args.batch_sizes:
            r = report.run("sampler", measure_sampler, name, b)
            if r is not None:
                print(
                    f"{name:16s} {b:6d} {r['dtype']:>8s} {r['steps']:2d} {r['nfe']:3d} "
                    f"{'yes' if r['compiled'] else 'no':>8s} {r['traj_ms']:9.3f} "
                    f"{r['step_ms']:8.3f} {r['sample_steps_per_s']:14.0f} {r['nfe_per_s']:12.0f}",
                    flush=True,
                )


def main(argv=None) -> list[dict]:
    """Run the benchmark; returns the env rows (sampler rows: stdout and ``--json``)."""
    args = parse(argv)
    _TIMER["now"] = time.process_time if args.cpu_time else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    report = _Report(args)
    rows = []
    print(
        f"device={args.device} torch threads={torch.get_num_threads()} torch {torch.__version__}"
        f" solver={args.solver or 'default'}"
    )
    if args.ids or not args.sampler:
        _env_table(args, report, rows)
    if args.sampler:
        _sampler_table(report)
    return rows


def _env_table(args: Args, report: _Report, rows: list[dict]) -> None:
    ids = [f"diffusion_gym/{i}" for i in args.ids] or sorted(
        i for i in gym.registry if i.startswith("diffusion_gym/")
    )
    head = (
        f"{'env id':28s} {'batch':>6s} {'env steps/s':>12s} {'vec steps/s':>11s} "
        f"{'env ms':>8s} {'raw ms':>8s} {'overhead':>9s} {'in-run':>8s} {'host ms':>8s} "
        f"{'host':>6s}"
    )
    print(head)
    print("-" * len(head))
    for env_id in ids:
        for b in args.batch_sizes:
            r = report.run("env", measure, env_id, b)
            if r is None:
                continue
            rows.append(r)
            print(
                f"{r['id']:28s} {b:6d} {r['env_steps_per_s']:12.0f} "
                f"{r['vector_steps_per_s']:11.1f} {r['env_ms']:8.3f} {r['raw_ms']:8.3f} "
                f"{100 * r['overhead']:8.1f}% {100 * r['overhead_in_run']:7.1f}% "
                f"{r['host_ms']:8.3f} {100 * r['host_share']:5.1f}%",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
