"""Score any policy (an SB3 model, a CleanRL agent, any callable) on held-out noise against
the env's base sampler and the best constant action, with the harness's metrics.

:func:`evaluate_policy` is the one-call helper for learners outside ``agents/``. It lives in
the ``baselines`` layer because it reuses the evaluation harness (:mod:`baselines.evaluate`:
the same metric registry, the same noise and the same table as ``diffusion-gym evaluate``
and the agents' final evaluations); ``diffusion_gym`` itself may not import it.

Rows of the result (``{row: {metric: {"mean", "std", "values"}}}``, as the harness):

- ``policy``: the policy, deterministic (SB3 ``predict(obs, deterministic=True)``);
- ``base``: the env's base sampler: Guidance w = 1, γ = 0 (the plain conditional model) on
  the env's schedule; Clock a = 0 (the base schedule);
- ``const-...``: every constant action: Guidance every (w, γ) of the action table
  (``const-wW-gG``), Clock the clock speeds a ∈ {±0.25, ±0.5, ±0.75, ±1} (``const-aA``);
- Clock, with ``schedules={name: σ}``: each fixed σ schedule (e.g. the oracle, a published
  or distilled schedule), run by :func:`diffusion_gym.steps.sample` with the env's solver on
  the same bank entries (x_T, class, x_ref) as the policy row; this is how a closed-loop
  (state-dependent) policy is compared with the best fixed schedule on the same noise.

Held out by default: the Guidance rows run on the harness's noise of ``seed``
(sample i: ``derive_keys(i, salt=seed)``); training episodes use ``derive_keys(s + i,
salt=episode)``, so the default ``seed`` = :data:`HELD_OUT_SEED` = 2**40 never meets an
episode a learner reaches. The Clock rows run on a fresh reference bank with
``bank_seed=seed`` (training envs default to ``bank_seed=0``; the same value as the env's
is refused), ``num_samples`` entries, each episode drawing its entry like the env does.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from diffusion_gym import steps
from diffusion_gym.data import check_data
from diffusion_gym.envs import ClockVectorEnv, GuidanceVectorEnv, batch_of
from diffusion_gym.schedules import validate as validate_schedule
from diffusion_gym.steps import nfe_of

from .evaluate import FixedSchedule, Strategy, evaluate, markdown_table
from .metrics import HIGHER_IS_BETTER, METRICS, NEEDS_SAMPLES, UNRANKED, with_companions

__all__ = [
    "CLOCK_CONSTANTS",
    "HELD_OUT_SEED",
    "PolicyEvaluation",
    "evaluate_policy",
]

#: Default evaluation seed: far from any (seed + i, episode) a training run reaches.
HELD_OUT_SEED = 2**40
#: Constant clock speeds of the Clock rows (a = 0 is the ``base`` row).
CLOCK_CONSTANTS = (-1.0, -0.75, -0.5, -0.25, 0.25, 0.5, 0.75, 1.0)
# fd_digits (with its precision/recall companions) and digits_class_acc are left out of every
# row whose samples are not 8×8 digits.
_GUIDANCE_METRICS = (
    "energy",
    "frechet",
    "class_tv",
    "loglik",
    "nfe",
    "fd_digits",
    "digits_class_acc",
)
_CLOCK_METRICS = ("rmse", "nfe", "fd_digits")


@dataclasses.dataclass
class PolicyEvaluation:
    """What :func:`evaluate_policy` returns."""

    results: dict[str, dict[str, dict[str, Any]]]
    """``{row: {metric: {"mean", "std", "values"}}}``: ``policy``, ``base``, ``const-...``."""
    metric: str
    """The metric that ranks the constants (the first ranked one of ``metrics``)."""
    best_constant: str
    """The row of the best constant action under :attr:`metric` (``base`` is a candidate)."""
    seeds: list[int]
    """The held-out seeds."""
    policy_schedules: list[np.ndarray] = dataclasses.field(default_factory=list)
    """Clock: the policy row's realised σ schedules, ``[num_samples, K+1]`` per seed (a
    closed-loop policy gives every sample its own schedule); empty for Guidance."""

    def __getitem__(self, row: str) -> dict[str, dict[str, Any]]:
        return self.results[row]

    def mean(self, row: str, metric: str | None = None) -> float:
        """Mean over seeds of ``metric`` (default :attr:`metric`) for ``row``."""
        return float(self.results[row][metric or self.metric]["mean"])

    def markdown(self, title: str = "policy vs base and constant actions (held out)") -> str:
        """The harness's markdown table of every row."""
        return markdown_table(self.results, title)


def evaluate_policy(
    env: Any,
    policy: Any,
    *,
    num_samples: int = 1024,
    seed: int | Sequence[int] = HELD_OUT_SEED,
    metrics: Sequence[str] | None = None,
    class_labels: Any = "balanced",
    obs_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    schedules: dict[str, Any] | None = None,
) -> PolicyEvaluation:
    """Score ``policy`` on held-out noise against the env's base and its best constant action.

    :param env: an env id (``"diffusion_gym/Clock-v0"``, with ``env_kwargs``) or an env:
        a native vector env, a ``gym.make`` env, or any gymnasium / SB3 wrapper of one (the
        settings are read from the env; its own episodes are not touched).
    :param policy: an SB3 model (anything with ``predict(obs, deterministic=True)``) or a
        callable ``policy(obs) -> actions`` on a numpy ``[B, obs_dim]`` float32 batch
        (actions ``[B]`` indices for Guidance, ``[B, 1]`` or ``[B]`` in [−1, 1] for Clock).
    :param num_samples: samples per seed.
    :param seed: held-out seed(s) (default :data:`HELD_OUT_SEED`); one evaluation each.
    :param metrics: harness metric names (default Guidance: energy, frechet, class_tv,
        loglik, nfe and, on digits, fd_digits, digits_class_acc; Clock: rmse, nfe and, on
        digits, fd_digits); ``fd_digits`` brings digits_precision and digits_recall.
        energy, frechet, sliced_w, precision and recall need
        the preset's ``data.sample`` (the Data protocol, ``diffusion_gym.data.protocol``).
    :param class_labels: Guidance only: the harness's labels (``"balanced"``, ``"data"``, an
        int, a tensor or None).
    :param obs_transform: applied to every observation batch before the policy (e.g. SB3
        ``VecNormalize.normalize_obs`` of a policy trained behind ``VecNormalize``).
    :param env_kwargs: keyword arguments of the env when ``env`` is an id.
    :param progress: show the harness's progress bar.
    :param schedules: Clock only: ``{row name: σ}`` fixed schedules (K+1 descending values
        ending in 0, K = the env's budget) scored on the policy row's bank entries with the
        env's solver, guidance and ``lower_order_final`` (rows named ``policy``, ``base`` or
        ``const-...`` are refused).
    """
    batch = _batch(env, env_kwargs)
    seeds = _seeds(seed)
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 2:
        raise ValueError(f"num_samples must be an int >= 2, got {num_samples!r}")
    actor = _actor(policy, obs_transform)
    policy_schedules: list[np.ndarray] = []
    if isinstance(batch, ClockVectorEnv):
        metrics = with_companions(_CLOCK_METRICS if metrics is None else metrics)
        _check_metrics(metrics, batch)
        fixed = _check_schedules(schedules, batch)
        results = _clock_rows(batch, actor, num_samples, seeds, metrics, fixed, policy_schedules)
    else:
        if schedules:
            raise TypeError("schedules= is for Clock envs (fixed σ rows); this is a Guidance env")
        metrics = with_companions(_GUIDANCE_METRICS if metrics is None else metrics)
        _check_metrics(metrics, batch)
        rows = [_GuidancePolicy(batch, actor), *_guidance_constants(batch)]
        results = evaluate(
            rows,
            batch.preset,
            num_samples=num_samples,
            seeds=seeds,
            class_labels=class_labels,
            metrics=metrics,
            progress=progress,
        )
    ranked = [m for m in metrics if m not in UNRANKED and m in results["policy"]]
    if not ranked:
        raise ValueError(f"no ranked metric was measured among {metrics}")
    m = ranked[0]
    pick = max if m in HIGHER_IS_BETTER else min
    best = pick((r for r in results if r != "policy"), key=lambda r: results[r][m]["mean"])
    return PolicyEvaluation(
        results=results, metric=m, best_constant=best, seeds=seeds,
        policy_schedules=policy_schedules,
    )  # fmt: skip


# -- inputs ------------------------------------------------------------------------------------
def _batch(env: Any, env_kwargs: dict | None):
    if isinstance(env, str):
        env = gym.make_vec(
            env, num_envs=1, vectorization_mode="vector_entry_point", **(env_kwargs or {})
        )
    elif env_kwargs:
        raise TypeError("env_kwargs is for an env id; got an env object")
    batch = batch_of(env)
    if not isinstance(batch, (ClockVectorEnv, GuidanceVectorEnv)):
        raise TypeError(f"evaluate_policy knows Guidance and Clock envs, got {type(batch)}")
    return batch


def _seeds(seed) -> list[int]:
    seeds = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
    if not seeds or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds
    ):
        raise ValueError(f"seed must be an int >= 0 or a non-empty list of them, got {seed!r}")
    return [int(s) for s in seeds]


def _check_metrics(metrics: list[str], batch) -> None:
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {sorted(METRICS)}")
    need = [m for m in metrics if m in NEEDS_SAMPLES]
    if need:
        check_data(batch.preset.data, ["sample"], f"metric(s) {need}")


def _actor(policy: Any, obs_transform) -> Callable[[torch.Tensor, int], np.ndarray]:
    """``act(obs tensor, k) -> numpy actions``, the callable the envs' ``rollout`` takes."""
    if callable(getattr(policy, "predict", None)):
        params = inspect.signature(policy.predict).parameters

        def call(obs):
            kw = {"deterministic": True} if "deterministic" in params else {}
            return policy.predict(obs, **kw)[0]
    elif callable(policy):
        call = policy
    else:
        raise TypeError(
            "policy must be an SB3 model (predict) or a callable obs -> actions, got "
            f"{type(policy).__name__}"
        )

    def act(obs: torch.Tensor, k: int) -> np.ndarray:
        o = obs.detach().cpu().numpy()
        if obs_transform is not None:
            o = np.asarray(obs_transform(o), dtype=np.float32)
        a = call(o)
        return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)

    return act


# -- Guidance ----------------------------------------------------------------------------------
class _GuidancePolicy(Strategy):
    """The policy as a harness row: the env's rollout from the harness's x_T, labels and
    streams (so it sees the same noise as the constant rows)."""

    name = "policy"

    def __init__(self, env: GuidanceVectorEnv, actor):
        self.env, self.actor = env, actor

    @property
    def nfe(self) -> int:
        """The schedule's NFE; with renoise the most an episode can spend (``nfe_budget``)."""
        return self.env.nfe_budget

    @property
    def deterministic(self) -> bool:
        return float(np.max(self.env.gammas)) == 0.0 and not self.env.renoise_steps

    def sample(self, preset, x_T, class_labels, streams):  # noqa: N803
        run = self.env.rollout(self.actor, x_T=x_T, class_labels=class_labels, streams=streams)
        return run.x0


def _guidance_constants(env: GuidanceVectorEnv) -> list[FixedSchedule]:
    sig = env.sigmas.cpu()
    weights = list(env.guidance_weights) if env.num_classes else [1.0]
    rows = [FixedSchedule("base", sig, env.solver, guidance=1.0, gamma=0.0, s_noise=env.s_noise)]
    rows += [
        FixedSchedule(
            f"const-w{w:g}-g{g:g}",
            sig,
            env.solver,
            guidance=float(w),
            gamma=float(g),
            s_noise=env.s_noise,
        )  # fmt: skip
        for w in weights
        for g in env.gammas
    ]
    return rows


# -- Clock -------------------------------------------------------------------------------------
class _ClockRow(Strategy):
    """A Clock row for the metric functions (``nfe``, ``deterministic``)."""

    def __init__(self, name: str, nfe: int):
        self.name, self._nfe = name, nfe

    @property
    def nfe(self) -> int:
        return self._nfe

    @property
    def deterministic(self) -> bool:
        return True


def _held_out_clock(env: ClockVectorEnv, num_samples: int, seed: int) -> ClockVectorEnv:
    """A copy of ``env``'s settings with a fresh bank of ``num_samples`` entries."""
    spec = env.clock_spec
    if spec.bank_seed == seed:
        raise ValueError(
            f"seed {seed} is the env's own bank_seed: its bank is the training bank; "
            "evaluate on another seed"
        )
    accepted = inspect.signature(ClockVectorEnv).parameters
    kw = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name in accepted}
    kw.update(bank_size=num_samples, bank_seed=seed, max_episode_steps=None)
    return ClockVectorEnv(env.preset, num_envs=num_samples, device=env.device, **kw)


def _check_schedules(schedules, env: ClockVectorEnv) -> dict[str, torch.Tensor]:
    """``{name: [K+1] float64 σ}`` validated against the env's budget."""
    if schedules is None:
        return {}
    if not isinstance(schedules, dict):
        raise TypeError(f"schedules must be a dict name -> sigmas, got {type(schedules).__name__}")
    out = {}
    for name, sig in schedules.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"schedule names must be non-empty str, got {name!r}")
        if name in ("policy", "base") or name.startswith("const-"):
            raise ValueError(f"schedule name {name!r} is taken by a row of its own")
        t = validate_schedule(torch.as_tensor(sig, dtype=torch.float64).reshape(-1))
        if t.numel() != env.budget + 1:
            raise ValueError(
                f"schedule {name!r} has {t.numel() - 1} steps; the env's budget is {env.budget}"
            )
        out[name] = t
    return out


def _clock_rows(env, actor, num_samples, seeds, metrics, fixed, schedules_out) -> dict:
    nfe = nfe_of(env.budget, env.solver)
    names = ["policy", "base", *(f"const-a{a:g}" for a in CLOCK_CONSTANTS)]
    speeds = dict(zip(names[1:], (0.0, *CLOCK_CONSTANTS), strict=True))
    collected: dict[str, dict[str, list[float]]] = {n: {} for n in [*names, *fixed]}
    spec = env.clock_spec
    for seed in seeds:
        held = _held_out_clock(env, num_samples, seed)
        entries = None  # (x_T, labels, x_ref) of the policy row: the fixed rows' inputs
        for name in [*names, *fixed]:
            if name in fixed:
                x_T, labels, x_ref = entries  # noqa: N806 - the paper's name
                x0 = steps.sample(
                    env.denoiser, x_T, fixed[name].to(x_T.device), class_labels=labels,
                    guidance=1.0 if spec.guidance is None else spec.guidance,
                    solver=env.solver, lower_order_final=spec.lower_order_final,
                )  # fmt: skip
            else:
                play = actor if name == "policy" else _constant(speeds[name])
                run = held.rollout(play, seed=seed)
                x0, x_ref = run.x0, run.x_ref
                if name == "policy":
                    entries = (run.x_T, run.class_labels, run.x_ref)
                    schedules_out.append(run.schedule.detach().cpu().numpy())
                labels = run.class_labels
            if labels is not None and bool((labels < 0).any()):
                labels = None  # the unconditional call of a conditional model
            real = None
            if callable(getattr(env.preset.data, "sample", None)):
                g = torch.Generator().manual_seed(1_000_003 + seed)
                real = env.preset.data.sample(num_samples, labels, generator=g).to(x0.device)
            ctx = {"x0": x0, "real": real, "labels": labels, "preset": env.preset,
                   "x_ref": x_ref, "strategy": _ClockRow(name, nfe), "seed": seed,
                   "cache": {}}  # fmt: skip
            for m in metrics:
                v = METRICS[m](ctx)
                if v is not None:
                    collected[name].setdefault(m, []).append(float(v))
    return {n: {m: _summary(v) for m, v in ms.items()} for n, ms in collected.items()}


def _constant(a: float) -> Callable[[torch.Tensor, int], np.ndarray]:
    return lambda obs, k: np.full((obs.shape[0], 1), a, dtype=np.float32)


def _summary(values: list[float]) -> dict[str, Any]:
    t = np.asarray(values, dtype=np.float64)
    return {"mean": float(t.mean()), "std": float(t.std()), "values": [float(v) for v in t]}
