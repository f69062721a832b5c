"""Noise-level schedules: pure functions returning n+1 descending σ ending in 0.

Every function has the shape of k-diffusion's ``get_sigmas_*``: ``n`` solver steps between
``sigma_max`` and ``sigma_min``, then a final 0 (the last step lands on the clean sample).
Results are float64 tensors on ``device``.
"""

from __future__ import annotations

import json
import math
import pathlib

import torch

from .io import atomic_write_text

__all__ = [
    "karras",
    "uniform",
    "linear",
    "log_linear",
    "vp_uniform_t",
    "interpolate",
    "validate",
]


def _check(n: int, sigma_min: float, sigma_max: float) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n (number of steps) must be an int >= 1, got {n!r}")
    if not 0 < sigma_min < sigma_max or not math.isfinite(sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")


def _append_zero(s: torch.Tensor) -> torch.Tensor:
    return torch.cat([s, s.new_zeros(1)])


def _ramp(n: int, device) -> torch.Tensor:
    """i / (n − 1) for i = 0..n−1 (a single step sits at the start)."""
    return torch.linspace(0, 1, n, dtype=torch.float64, device=device)


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device="cpu"):
    """EDM schedule (Karras et al. 2022, eq. 5): σ_i = (σ_max^(1/ρ) + i/(n−1) (σ_min^(1/ρ) −
    σ_max^(1/ρ)))^ρ, then 0. ρ = 1 is uniform in σ; ρ → ∞ approaches log-linear."""
    _check(n, sigma_min, sigma_max)
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + _ramp(n, device) * (lo - hi)) ** rho)


def uniform(n: int, sigma_min: float, sigma_max: float, device="cpu"):
    """Uniform in σ from σ_max to σ_min, then 0 (``karras`` with ρ = 1)."""
    _check(n, sigma_min, sigma_max)
    return _append_zero(sigma_max + _ramp(n, device) * (sigma_min - sigma_max))


def linear(n: int, sigma_max: float, device="cpu"):
    """ART's uniform grid of the linear clock σ = T − ψ: n equal steps from T to 0."""
    if not 0 < float(sigma_max) < math.inf:
        raise ValueError(f"sigma_max must be a finite number > 0, got {sigma_max!r}")
    _check(n, float(sigma_max) / 2, float(sigma_max))
    return torch.linspace(sigma_max, 0.0, n + 1, dtype=torch.float64, device=device)


def log_linear(n: int, sigma_min: float, sigma_max: float, device="cpu"):
    """Uniform in log σ (= uniform in log-SNR), then 0."""
    _check(n, sigma_min, sigma_max)
    return _append_zero(
        torch.exp(
            math.log(sigma_max) + _ramp(n, device) * (math.log(sigma_min) - math.log(sigma_max))
        )
    )


def vp_uniform_t(
    n: int,
    sigma_min: float,
    sigma_max: float,
    beta_min: float = 0.1,
    beta_d: float = 19.9,
    eps_t: float = 1e-3,
    device="cpu",
):
    """DDPM/DDIM-style: uniform steps in VP time t, mapped to EDM σ(t) = sqrt(exp(½β_d t² +
    β_min t) − 1) (Song et al. 2021; EDM Table 1), clipped to [σ_min, σ_max], then 0."""
    _check(n, sigma_min, sigma_max)

    def sigma_of(t):
        return torch.sqrt(torch.expm1(0.5 * beta_d * t**2 + beta_min * t))

    def t_of(s):  # inverse of sigma_of
        return (math.sqrt(beta_min**2 + 2 * beta_d * math.log1p(s**2)) - beta_min) / beta_d

    t_hi, t_lo = t_of(sigma_max), max(t_of(sigma_min), eps_t)
    if n > 1 and not t_lo < t_hi:
        raise ValueError(
            f"sigma_max={sigma_max} lies below sigma(eps_t={eps_t}); lower eps_t or raise sigma_max"
        )
    t = t_hi + _ramp(n, device) * (t_lo - t_hi)
    # The clamp only removes float rounding at the two ends.
    return validate(_append_zero(sigma_of(t).clamp(sigma_min, sigma_max)))


def interpolate(sigmas: torch.Tensor, n: int) -> torch.Tensor:
    """Resample a schedule to ``n`` steps by linear interpolation of log σ over the step index
    (Align Your Steps' log-linear interpolation). Endpoints σ_max, σ_min and the final 0 stay
    exactly (for n = 1 only σ_max and 0). Float64 result on the input's device."""
    sigmas = validate(sigmas)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    pos = sigmas[:-1].to(torch.float64)
    if n == 1:
        return _append_zero(pos[:1].clone())
    logs = pos.log()
    m = logs.shape[0]
    if m == 1:
        raise ValueError(
            "cannot interpolate a 1-step schedule [sigma_max, 0] to n > 1 steps: it has no "
            "sigma_min; build the schedule at the target budget instead"
        )
    src = torch.linspace(0, 1, m, dtype=torch.float64, device=sigmas.device)
    dst = torch.linspace(0, 1, n, dtype=torch.float64, device=sigmas.device)
    idx = torch.searchsorted(src, dst, right=True).clamp(1, m - 1)
    t = (dst - src[idx - 1]) / (src[idx] - src[idx - 1])
    out = torch.exp(logs[idx - 1] + t * (logs[idx] - logs[idx - 1]))
    # exp(log σ) need not round-trip: pin the endpoints to the source's exact values.
    out[0], out[-1] = pos[0], pos[-1]
    return validate(_append_zero(out))


def validate(sigmas) -> torch.Tensor:
    """Check a schedule: 1-D, finite, strictly decreasing, last entry 0. Returns a tensor."""
    s = torch.as_tensor(sigmas)
    if not s.is_floating_point():
        s = s.to(torch.float64)
    if s.ndim != 1 or s.shape[0] < 2:
        raise ValueError(
            f"a schedule must be a 1-D tensor of n+1 >= 2 sigmas, got {tuple(s.shape)}"
        )
    if not bool(torch.isfinite(s).all()):
        raise ValueError("a schedule must be finite")
    if float(s[-1]) != 0.0:
        raise ValueError(f"a schedule must end in 0, got {float(s[-1])}")
    if not bool((s[1:] < s[:-1]).all()):
        raise ValueError("a schedule must be strictly decreasing")
    return s


# ---------------------------------------------------------------------------------------------
# Export: a schedule as a plain list / JSON file any sampler can use (k-diffusion's
# ``sigmas``, diffusers' ``set_timesteps(sigmas=...)``, :func:`diffusion_gym.steps.sample`).

__all__ += [
    "schedule_to_list",
    "save_schedule",
    "load_schedule",
    "SOLVER_NAMES",
    "PUBLISHED_DIR",
    "published",
    "find_published",
    "load_published",
]

_SCHEDULE_KEYS = ("sigmas", "solver", "budget", "preset")
#: Optional keys of a schedule record: the NFE it spends, how it was made, and the σ range
#: [sigma_min, sigma_max] of the denoiser it was learned on (files written before that range
#: was recorded lack it and still load).
_OPTIONAL_KEYS = ("nfe", "source", "sigma_min", "sigma_max")
#: Solver names a schedule record may name. It mirrors :data:`diffusion_gym.steps.SOLVERS`
#: (this module sits below :mod:`~diffusion_gym.steps`, which imports it; a test keeps the two
#: equal).
SOLVER_NAMES = ("euler", "heun", "dpmpp-2m", "dpmpp-3m", "unipc-2", "unipc-3", "ipndm")


def schedule_to_list(sigmas) -> list[float]:
    """A validated schedule as a plain list of Python floats (descending, ending in 0).

    A list or tuple of numbers keeps its float64 values (``torch.as_tensor`` alone would
    round it to the default float32 dtype)."""
    if not isinstance(sigmas, torch.Tensor):
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    return [float(s) for s in validate(sigmas).to(torch.float64).cpu()]


def save_schedule(
    path,
    sigmas,
    solver: str,
    budget: int,
    preset: str | None,
    *,
    nfe: int | None = None,
    source: str | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> None:
    """Write ``{"sigmas": [...], "solver": ..., "budget": K, "preset": ...}`` as JSON.

    :param sigmas: n+1 descending σ ending in 0 (validated); ``budget`` must equal n.
    :param solver: the solver the schedule was made for (one of :data:`SOLVER_NAMES`).
    :param preset: the preset (denoiser) name it was tuned on, or None.
    :param nfe: optional: the denoiser evaluations it spends with that solver.
    :param source: optional: how it was made (method, training set, held-out score).
    :param sigma_min, sigma_max: optional (both or neither): the σ range of the denoiser the
        schedule was learned on, the default source range of
        :func:`agents.art.transfer_schedule` when the schedule moves to another denoiser.
    """
    values = schedule_to_list(sigmas)
    _check_record(values, solver, budget, preset, "save_schedule")
    record = {"sigmas": values, "solver": solver, "budget": budget, "preset": preset}
    if sigma_min is not None:
        sigma_min = float(sigma_min)
    if sigma_max is not None:
        sigma_max = float(sigma_max)
    extra = {"nfe": nfe, "source": source, "sigma_min": sigma_min, "sigma_max": sigma_max}
    record.update({k: v for k, v in extra.items() if v is not None})
    _check_optional(record, "save_schedule")
    atomic_write_text(pathlib.Path(path), json.dumps(record, indent=2) + "\n")


def load_schedule(path) -> dict:
    """Read a file written by :func:`save_schedule`; returns the dict with ``"sigmas"`` as a
    float64 tensor. Raises ``FileNotFoundError`` / ``ValueError`` naming what is wrong."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no schedule file at {str(p)!r}")
    try:
        record = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(p)!r} is not valid JSON: {e}") from e
    if not isinstance(record, dict):
        raise ValueError(f"{str(p)!r} must hold a JSON object with keys {_SCHEDULE_KEYS}")
    missing = [k for k in _SCHEDULE_KEYS if k not in record]
    unknown = sorted(set(record) - set(_SCHEDULE_KEYS) - set(_OPTIONAL_KEYS))
    if missing or unknown:
        raise ValueError(
            f"{str(p)!r}: missing keys {missing}, unknown keys {unknown}; "
            f"valid keys: {list(_SCHEDULE_KEYS)} and optional {list(_OPTIONAL_KEYS)}"
        )
    _check_optional(record, str(p))
    try:
        sigmas = validate(torch.as_tensor(record["sigmas"], dtype=torch.float64))
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{str(p)!r}: invalid 'sigmas': {e}") from e
    _check_record(sigmas.tolist(), record["solver"], record["budget"], record["preset"], str(p))
    return {**record, "sigmas": sigmas}


def _check_record(values: list, solver, budget, preset, where: str) -> None:
    """Validate the metadata of a schedule record."""
    if solver not in SOLVER_NAMES:
        raise ValueError(f"{where}: solver must be one of {SOLVER_NAMES}, got {solver!r}")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget != len(values) - 1:
        raise ValueError(
            f"{where}: budget must be the int number of steps ({len(values) - 1}), got {budget!r}"
        )
    if preset is not None and not isinstance(preset, str):
        raise ValueError(f"{where}: preset must be a string or null, got {preset!r}")


def _check_optional(record: dict, where: str) -> None:
    nfe, source = record.get("nfe"), record.get("source")
    if nfe is not None and (not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1):
        raise ValueError(f"{where}: nfe must be an int >= 1, got {nfe!r}")
    if source is not None and not isinstance(source, str):
        raise ValueError(f"{where}: source must be a string, got {source!r}")
    lo, hi = record.get("sigma_min"), record.get("sigma_max")
    if (lo is None) != (hi is None):
        raise ValueError(f"{where}: give both sigma_min and sigma_max or neither, got {lo}, {hi}")
    if lo is not None:
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
        if not ok or not 0 < lo < hi < math.inf:
            raise ValueError(
                f"{where}: need numbers 0 < sigma_min < sigma_max < inf, got {lo!r}, {hi!r}"
            )


# ---------------------------------------------------------------------------------------------
# Published schedules: the best learned schedule per preset × solver × NFE, shipped with the
# package (as Align Your Steps publishes its σ lists), so users take them without training.

#: ``<preset>/<solver>/nfe<N>.json``, each a :func:`save_schedule` record with ``nfe`` and
#: ``source`` (see the folder's README.md).
PUBLISHED_DIR = pathlib.Path(__file__).parent / "schedules_data"


def published() -> list[tuple[str, str, int]]:
    """Every shipped ``(preset, solver, nfe)``, sorted."""
    out = []
    for f in PUBLISHED_DIR.glob("*/*/nfe*.json"):
        out.append((f.parent.parent.name, f.parent.name, int(f.stem[3:])))
    return sorted(out)


def find_published(preset: str, solver: str, nfe: int) -> dict | None:
    """The shipped record of ``(preset, solver, nfe)`` (:func:`load_schedule`'s dict), or
    None if none is shipped."""
    path = PUBLISHED_DIR / str(preset) / str(solver) / f"nfe{nfe}.json"
    return load_schedule(path) if path.is_file() else None


def load_published(preset: str, solver: str, nfe: int) -> torch.Tensor:
    """The best learned schedule shipped for ``preset`` sampled with ``solver`` at ``nfe``
    denoiser evaluations: n+1 float64 σ ending in 0, ready for
    :func:`diffusion_gym.steps.sample` (``solver=solver``) or k-diffusion / diffusers.

    Raises ``ValueError`` listing what is shipped when there is no such schedule.
    """
    if not isinstance(nfe, int) or isinstance(nfe, bool):
        raise TypeError(f"nfe must be an int, got {nfe!r}")
    rec = find_published(preset, solver, nfe)
    if rec is None:
        have = ", ".join(f"{p}/{s}/nfe{n}" for p, s, n in published()) or "none"
        raise ValueError(
            f"no published schedule for preset={preset!r}, solver={solver!r}, nfe={nfe}; "
            f"published: {have}"
        )
    if rec["solver"] != solver or rec["preset"] != preset or rec.get("nfe", nfe) != nfe:
        raise ValueError(f"published file for {preset}/{solver}/nfe{nfe} records other metadata")
    return rec["sigmas"]
