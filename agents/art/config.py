"""ART-RL configuration: the dataclasses ``diffusion-gym train`` maps the YAML onto.

``Config`` is one run (``agent: art``); its ``actor_critic:`` section is
:class:`ActorCriticConfig` (ART's own learner) and its ``eval:`` section :class:`EvalConfig`
(the final evaluation through the harness). YAML keys are the field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from baselines.schedules import CLASSIC, OracleConfig
from diffusion_gym import presets as _presets
from diffusion_gym import schedules as _schedules
from diffusion_gym import steps as _steps

from ..checkpoint import MAX_SEED, check_eval_basics, check_seed

__all__ = [
    "ALGOS",
    "REWARD_TRANSFORMS",
    "POLICY_INPUTS",
    "ActorCriticConfig",
    "EvalConfig",
    "Config",
]

ALGOS = ("ppo", "a2c", "sac", "art_ac")
REWARD_TRANSFORMS = ("none", "log", "scale", "self_critical", "log_self_critical")
POLICY_INPUTS = ("time", "full", "asymmetric")

#: The harness's oracle settings (one definition in ``baselines.schedules``).
_ORACLE = OracleConfig()


@dataclass
class ActorCriticConfig:
    """Hyper-parameters of :class:`ContinuousActorCritic` (units: ψ and θ normalised by T).

    :param iterations: actor-critic updates (each on one batch of K-step trajectories).
    :param batch_size: trajectories per update (the env's batch).
    :param actor_lr: Adam step of the policy mean network.
    :param critic_lr: Adam step of the critic V(u, x, ψ).
    :param multiplier_lr: step of γ per unit of constraint violation E[ψ(1)]/T − 1, relative to
        γ's initial value (dual descent).
    :param exploration_std: std of the Gaussian policy on ϑ = θ / T (fixed, decays linearly to
        ``final_std``).
    :param final_std: exploration std at the last iteration.
    :param hidden: width of the two hidden layers of actor and critic.
    :param seed: seed of the networks and the exploration noise.
    """

    iterations: int = 400
    batch_size: int = 256
    actor_lr: float = 3e-3
    critic_lr: float = 3e-3
    multiplier_lr: float = 0.5
    exploration_std: float = 0.3
    final_std: float = 0.05
    hidden: int = 64
    seed: int = 0


@dataclass
class EvalConfig:
    """The final evaluation (harness ``baselines.evaluate``, held-out noise seeds).

    :param num_samples: samples per seed.
    :param seeds: evaluation seeds (salts of x_T; training noise uses other streams).
    :param metrics: harness metric names (``rmse`` = RMSE to the fine reference solve).
    :param rho_grid: EDM ρ grid for the best-ρ baseline (picked on training noise).
    :param oracle: also optimise and evaluate the oracle fixed schedule (``baselines``).
    :param oracle_iterations: Adam iterations of the oracle's refinement (default: the
        harness's ``OracleConfig``; its other settings, e.g. 3 restarts, are used as they are).
    :param budgets: other budgets K for the learned schedule, log-linearly interpolated (and
        EDM ρ = 7 at the same K): the error-vs-NFE plot and the budget transfer table.
    :param transfer_presets: other presets the learned schedule is evaluated on (transfer).
    :param reference_steps: Heun steps of the harness's reference solve for ``rmse`` and of
        the best-ρ/oracle training set (None = the harness default, 256; smaller for the
        digits U-Net on CPU).
    :param train_samples: training-noise samples of the best-ρ grid search and the oracle
        (default: ``OracleConfig.num_samples``).
    :param classic: extra hand-made baselines (``baselines.schedules.CLASSIC`` names other
        than ``edm``: ``uniform``, ``log-linear``, ``ddim``) at the same budget.
    """

    num_samples: int = 2048
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    metrics: list[str] = field(default_factory=lambda: ["rmse", "energy", "sliced_w"])
    rho_grid: list[float] = field(
        default_factory=lambda: [0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 30.0]
    )
    oracle: bool = True
    oracle_iterations: int = _ORACLE.iterations
    budgets: list[int] = field(default_factory=list)
    transfer_presets: list[str] = field(default_factory=list)
    reference_steps: int | None = None
    train_samples: int = _ORACLE.num_samples
    classic: list[str] = field(default_factory=list)


@dataclass
class Config:
    """An ART-RL run (``agent: art``); YAML keys are these fields.

    :param preset: denoiser preset (``diffusion_gym.presets.names()``), or a factory of your
        own as ``"package.module:function"`` (docs/own_model.md).
    :param budget: K solver steps; NFE K (Euler) or 2K − 1 (Heun).
    :param solver: ``"euler"`` or ``"heun"``.
    :param base: the Clock env's base clock, ``"edm"`` (karras ρ) or ``"linear"`` (ART).
    :param rho: ρ of the EDM base.
    :param speed_scale: β of the clock's action map.
    :param reward: the env reward, ``"terminal_error"`` or ``"local_error"``.
    :param reward_transform: ``"none"``; ``"log"`` (terminal reward −mse → −log(mse + ε) −
        the log-error reward, scale-free across samples whose errors span decades);
        ``"scale"`` (divide by a running mean |r|); ``"self_critical"`` (−(mse − mse_b) / m:
        the raw error minus the error mse_b that the policy's current *mean* schedule makes
        on the same (x_T, x_ref), divided by a running mean m of mse_b — a per-sample,
        action-independent baseline (self-critical training, Rennie et al. 2017), so the
        objective stays the mean squared error that RMSE measures while the spread of errors
        across x_T leaves the advantages; open-loop PPO/A2C only, see
        :class:`SelfCriticalReward`); ``"log_self_critical"`` (−log(mse + ε) + log(mse_b + ε):
        the log objective of ``"log"`` with the same per-sample baseline).
    :param algo: ``"ppo"``, ``"a2c"``, ``"sac"`` (SB3, Gaussian policies) or ``"art_ac"``
        (ART's continuous-time actor-critic; ``reward: local_error``, ``base: linear``, Euler).
    :param policy_inputs: ``"time"`` (log σ, k/K, remaining clock: an open-loop policy whose
        mean-action rollout *is* the distilled schedule) or ``"full"`` (the env's whole
        observation; distillation averages the mean action over a batch per step) or
        ``"asymmetric"`` (PPO/A2C: the actor sees the time features only, so it stays
        open-loop and distils exactly, while the critic V sees the whole observation, x
        included: a per-sample baseline that removes the spread of terminal errors across
        x_T from the advantages).
    :param obs_history: append the multistep solver's state (the history the next step
        reads) to the Clock observation (the env's ``obs_history``); a ``full`` policy then
        sees everything the solver's next step depends on.
    :param residual_schedule: None, ``"published"`` (the schedule the package ships for the
        preset × solver × NFE, :func:`diffusion_gym.schedules.load_published`) or the path of
        a ``schedule.json``: the policy acts around that schedule (the env receives
        clip(a + a*_k, −1, 1), a* its clock actions; :class:`.wrappers.ResidualActions`), so
        it starts at the best fixed schedule and a ``full`` policy learns per-sample
        deviations from it. The schedule must start at the preset's σ_max, have K+1 values
        and be reachable with actions in [−1, 1] at ``speed_scale``.
    :param num_envs: batch size of the vector env.
    :param total_timesteps: env steps (SB3; summed over envs).
    :param learning_rate: optimiser step (SB3).
    :param learning_rate_final: if set (SB3), the step decays linearly from ``learning_rate``
        to this value over training (the usual PPO annealing; lets the policy mean settle
        once exploration is small).
    :param net_arch: hidden layers of the policy and value networks (SB3).
    :param log_std_init: initial log std of the Gaussian policy (SB3).
    :param log_std_final: if set (PPO/A2C), the policy's log std is annealed linearly from
        ``log_std_init`` to this value over training (as ART's exploration decays): the
        smoothing of a wide Gaussian hides the narrow error valleys of few-step schedules.
    :param algo_kwargs: extra keyword arguments of the SB3 algorithm (override the defaults).
    :param bank_size, reference_steps: the env's (x_T, x_ref) bank.
    :param bank_sampling: ``"uniform"`` or ``"error"`` (with a self-critical reward): draw
        bank entry j with probability p_j = mix / N + (1 − mix) e_j / Σ e, e_j the latest
        error of the policy's mean schedule on entry j (all entries scored at the first
        rollout, then updated by every finished episode), and weight its reward by
        1 / (N p_j) so the objective stays the uniform mean error. Near a good schedule the
        mean is carried by a few entries (on gmm-64d 1 % of them carry half the MSE):
        drawn uniformly they arrive as rare, large advantages that PPO's stabilisers cap,
        drawn often with small weights they steer the update (docs/art_agent.md).
    :param bank_sampling_mix: ``mix`` above, in (0, 1]: bounds every weight by 1 / mix.
    :param restarts: independent trainings (seeds ``seed``, ``seed + 1``, … and, for
        ``art_ac``, ``actor_critic.seed`` + 0, 1, …; each in
        ``restart<r>/`` with its own bank); the distilled schedule with the lowest RMSE on
        ``agents.art.trainer.RESTART_SELECT_SAMPLES`` training-noise samples of the harness
        (disjoint from every evaluation seed) is kept, as the oracle keeps its best restart.
        Few-step error landscapes have several valleys and which one a run settles in
        depends on the seed.
    :param distill_samples: batch used to read the mean actions.
    :param checkpoint_every: env steps (SB3) or iterations (art_ac) between checkpoints.
    :param seed: seed of everything.
    :param device: torch device.
    :param progress: show progress bars.
    :param num_threads: torch intra-op threads (default 1, so a figure does not depend on the
        machine's core count; None = torch's default, the machine's cores). Recorded in
        ``distilled.json`` (issue #23, docs/claims.md).
    """

    agent: str = "art"
    preset: str = "gmm-ring8"
    budget: int = 3
    solver: str = "heun"
    base: str = "edm"
    rho: float = 7.0
    speed_scale: float = 3.0
    reward: str = "terminal_error"
    reward_transform: str = "log"
    algo: str = "ppo"
    policy_inputs: str = "time"
    obs_history: bool = False
    residual_schedule: str | None = None
    num_envs: int = 64
    total_timesteps: int = 60_000
    learning_rate: float = 3e-4
    learning_rate_final: float | None = None
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    log_std_init: float = -1.5
    log_std_final: float | None = -4.5
    algo_kwargs: dict = field(default_factory=dict)
    bank_size: int = 4096
    reference_steps: int = 128
    bank_sampling: str = "uniform"
    bank_sampling_mix: float = 0.5
    restarts: int = 1
    distill_samples: int = 256
    checkpoint_every: int = 20_000
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    num_threads: int | None = 1
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        checks = {
            "agent": (self.agent, ("art",)),
            "solver": (self.solver, _steps.SOLVERS),
            "base": (self.base, ("edm", "linear")),
            "reward": (self.reward, ("terminal_error", "local_error")),
            "reward_transform": (self.reward_transform, REWARD_TRANSFORMS),
            "algo": (self.algo, ALGOS),
            "policy_inputs": (self.policy_inputs, POLICY_INPUTS),
            "bank_sampling": (self.bank_sampling, ("uniform", "error")),
        }
        for name, (value, valid) in checks.items():
            if value not in valid:
                raise ValueError(f"{name} must be one of {valid}, got {value!r}")
        _presets.check_name(self.preset)  # registered, or a user's "package.module:function"
        if not isinstance(self.obs_history, bool):
            raise TypeError(f"obs_history must be true or false, got {self.obs_history!r}")
        _check_residual(self)
        for name in ("budget", "num_envs", "total_timesteps", "distill_samples", "restarts"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if self.reward_transform.endswith("self_critical") and (
            self.algo not in ("ppo", "a2c")
            or self.policy_inputs not in ("time", "asymmetric")
            or self.reward != "terminal_error"
        ):
            raise ValueError(
                f"reward_transform {self.reward_transform!r} needs algo 'ppo' or 'a2c', "
                "policy_inputs 'time' or 'asymmetric' (an open-loop actor: its mean is one "
                "schedule) and "
                f"reward 'terminal_error', got algo={self.algo!r}, "
                f"policy_inputs={self.policy_inputs!r}, reward={self.reward!r}"
            )
        if not (
            isinstance(self.bank_sampling_mix, (int, float)) and 0 < self.bank_sampling_mix <= 1
        ):
            raise ValueError(f"bank_sampling_mix must be in (0, 1], got {self.bank_sampling_mix!r}")
        if self.bank_sampling == "error" and not self.reward_transform.endswith("self_critical"):
            raise ValueError(
                "bank_sampling 'error' needs reward_transform 'self_critical' or "
                f"'log_self_critical' (it scores the mean schedule per entry), got "
                f"{self.reward_transform!r}"
            )
        _check_run(self)
        if self.algo == "art_ac" and (self.base, self.solver) != ("linear", "euler"):
            raise ValueError(
                "algo 'art_ac' is ART's Euler surrogate: needs base=linear, solver=euler"
            )


def _check_residual(cfg: Config) -> None:
    """``residual_schedule``: None, "published" (shipped for this preset × solver × NFE) or an
    existing ``schedule.json`` with K+1 values (checked before any work)."""
    r = cfg.residual_schedule
    if r is None:
        return
    if not isinstance(r, str) or not r:
        raise TypeError(f"residual_schedule must be None, 'published' or a path, got {r!r}")
    if cfg.algo == "art_ac":
        raise ValueError("residual_schedule is for the SB3 algorithms (ppo, a2c, sac)")
    n = residual_sigmas(cfg).numel()
    if n != cfg.budget + 1:
        raise ValueError(f"residual_schedule {r} has {n - 1} steps; budget is {cfg.budget}")


def residual_sigmas(cfg: Config):
    """The σ schedule of ``cfg.residual_schedule`` (a float64 tensor): the package's
    published schedule of the preset × solver × NFE (``"published"``) or a ``schedule.json``'s
    ``sigmas``. ``ValueError`` if nothing is shipped, ``FileNotFoundError`` for a missing
    file."""
    r = cfg.residual_schedule
    if r == "published":
        nfe = _steps.nfe_of(cfg.budget, cfg.solver)
        rec = _schedules.find_published(cfg.preset, cfg.solver, nfe)
        if rec is None:
            raise ValueError(
                f"residual_schedule 'published': no schedule is shipped for {cfg.preset} × "
                f"{cfg.solver} × NFE {nfe}; shipped: {_schedules.published()}"
            )
        return rec["sigmas"]
    if not Path(r).is_file():
        raise FileNotFoundError(f"residual_schedule: no schedule.json at {r}")
    return _schedules.load_schedule(r)["sigmas"]


def _check_run(cfg: Config) -> None:
    """Seeds, checkpoint interval and the final evaluation, checked before any work."""
    check_seed("seed", cfg.seed)
    check_seed("actor_critic.seed", cfg.actor_critic.seed)
    if cfg.seed + cfg.restarts - 1 > MAX_SEED:
        raise ValueError(f"seed + restarts - 1 must be <= 2**63 - 1, got seed={cfg.seed}")
    for name in ("checkpoint_every", "bank_size", "reference_steps"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    ac = cfg.actor_critic
    if ac.iterations < 1 or ac.batch_size < 1 or ac.hidden < 1:
        raise ValueError("actor_critic.iterations, batch_size and hidden must be >= 1")
    ev = cfg.eval
    check_eval_basics(ev)
    if not ev.rho_grid or not all(r > 0 for r in ev.rho_grid):
        raise ValueError(f"eval.rho_grid must be a non-empty list of rho > 0, got {ev.rho_grid}")
    if ev.oracle_iterations < 0 or (ev.reference_steps is not None and ev.reference_steps < 1):
        raise ValueError("eval.oracle_iterations must be >= 0 and eval.reference_steps >= 1")
    if not all(k >= 1 for k in ev.budgets):
        raise ValueError(f"eval.budgets must be ints >= 1, got {ev.budgets}")
    bad = [p for p in ev.transfer_presets if p not in _presets.names()]
    if bad:
        raise ValueError(f"eval.transfer_presets {bad} are not presets; valid: {_presets.names()}")
    bad = [c for c in ev.classic if c not in CLASSIC or c == "edm"]
    if bad:
        raise ValueError(f"eval.classic {bad} invalid; valid: {[c for c in CLASSIC if c != 'edm']}")
