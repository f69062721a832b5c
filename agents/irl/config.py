"""The ``agent: irl`` configuration: one dataclass tree, the YAML keys of
``agents/configs/irl-*.yaml`` (loaded and type-checked by ``diffusion-gym train``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from diffusion_gym import presets as _presets
from diffusion_gym import schedules as _schedules
from diffusion_gym.envs.guidance import SCHEDULES

from ..checkpoint import check_eval_basics, check_seed
from ..discriminator import DiscriminatorConfig

__all__ = [
    "ALGOS",
    "DISC_INPUTS",
    "POLICIES",
    "SOURCES",
    "AlgoConfig",
    "Config",
    "EnvConfig",
    "EvalConfig",
    "IRLDiscriminatorConfig",
    "POLICY_INITS",
    "PolicyConfig",
    "resolve_schedule",
]

ALGOS = ("ppo", "a2c", "maskable_ppo")
POLICIES = ("mlp", "dual_head")
SOURCES = ("separate", "policy")
DISC_INPUTS = ("obs", "state", "classifier")


# ---------------------------------------------------------------------------------------------
# Configuration

POLICY_INITS = ("default", "best_constant", "constant")


@dataclass
class EnvConfig:
    """The Guidance env (see :class:`diffusion_gym.envs.guidance.GuidanceVectorEnv`)."""

    preset: str = "gmm-ring8-imperfect"
    """preset name (``diffusion-gym presets``) or a factory of your own as
    ``"package.module:function"`` (docs/own_model.md)"""
    preset_overrides: dict = field(default_factory=dict)
    """keyword overrides of the preset factory (e.g. ``variance_scale``)"""
    num_envs: int = 256
    """batch of parallel samplers"""
    num_steps: int | None = None
    """sampler steps N; None = 4 for a named schedule, the schedule's own length for explicit
    σ's or a ``schedule.json`` (given with those, it must agree)"""
    solver: str = "heun"
    """``heun`` or ``euler``"""
    schedule: str | list[float] = "karras"
    """the σ schedule: a name (``karras``, ``uniform``, ``log_linear``, ``linear``,
    ``vp_uniform_t``), explicit σ's (n+1 descending, ending in 0: ``[80, 1.8248, 0.4906,
    0]``), or the path of a ``schedule.json`` (:func:`diffusion_gym.schedules.save_schedule`:
    ART's export, a published schedule; its solver must be ``solver``, its preset, if
    recorded, ``preset``)"""
    guidance_weights: list[float] = field(default_factory=lambda: [0.0, 1.0, 1.5, 2.0, 3.0, 5.0])
    """table of CFG weights w (autoguidance weights with ``guide``)"""
    guide: str | None = None
    """the guiding model of autoguidance, a preset name (``digits-imperfect-guide``): w then
    weighs the model against it at the sample's class instead of against the unconditional
    model (``GuidanceVectorEnv(guide=...)``); None: classifier-free guidance"""
    gammas: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.4])
    """table of churn values γ"""
    obs_mode: str = "state"
    """``state`` or ``features``"""
    action_format: str = "discrete"
    """``discrete`` (the (w, γ) table, a categorical policy) or ``box`` (w ∈ [min, max] of
    ``guidance_weights``, γ ∈ [0, max(gammas)], a diagonal Gaussian policy: SB3 clips its
    draws to the box)"""
    class_labels: int | None = None
    """fixed class for every env, or None: drawn per episode from the data's histogram"""
    device: str = "cpu"
    """torch device of the env and the networks"""


@dataclass
class AlgoConfig:
    """The on-policy SB3 learner."""

    name: str = "ppo"
    """``ppo``, ``a2c`` (stable-baselines3) or ``maskable_ppo`` (sb3-contrib)"""
    policy: str = "mlp"
    """``mlp`` (SB3's MlpPolicy) or ``dual_head`` (:class:`agents.policies.DualHeadPolicy`)"""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden widths (the trunk for ``dual_head``)"""
    learning_rate: float = 3e-4
    """Adam learning rate (constant)"""
    episodes_per_round: int = 1
    """episodes per env per rollout: n_steps = episodes_per_round * num_steps"""
    batch_size: int = 256
    """PPO minibatch size"""
    n_epochs: int = 4
    """PPO epochs per rollout"""
    gamma: float = 1.0
    """discount (episodes are N steps long)"""
    gae_lambda: float = 0.95
    """GAE λ"""
    ent_coef: float = 0.0
    """entropy bonus"""
    clip_range: float = 0.2
    """PPO clip range"""
    vf_coef: float = 0.5
    """value loss weight"""
    max_grad_norm: float = 0.5
    """gradient clipping"""


@dataclass
class IRLDiscriminatorConfig(DiscriminatorConfig):
    """The discriminator (:class:`agents.discriminator.DiscriminatorConfig`) and its reward."""

    source: str = "separate"
    """``separate`` (its own MLP) or ``policy`` (the dual-head policy's density head)"""
    divergence: str = "js"
    """reward: ``reverse_kl`` (AIRL), ``forward_kl``, ``js`` (GAIL), ``chi2``"""
    reward_scale: float = 1.0
    """multiplies the reward"""
    logit_clip: float | None = None
    """if set, logits are clipped to ±logit_clip before the reward (bounds exp rewards)"""
    input: str = "obs"
    """``obs``: the policy's observation; ``state``: the state encoding of x_k itself
    (x_k / sqrt(σ_k² + σ_data²), log σ_k, k/N, one-hot c), for ``env.obs_mode=features``
    where the observation only holds a few norms of x_k; ``classifier`` (digits presets): the
    env's ``obs_mode=classifier`` encoding of x_k (log σ_k, k/N, one-hot c, the norms and the
    shipped classifier's 64 standardised features of the denoised estimate D(x_k; σ_k, c),
    of x_0 itself at σ = 0): the space FD_digits is measured in"""
    expert_seed: int = 12345
    """seed of the expert-state draws (combined with the round)"""
    grad_penalty_final: float | None = None
    """R1 weight on the final states x_0 (σ = 0); None = ``grad_penalty`` everywhere. The
    clean data is tightly concentrated, and an R1 weight that smooths the logit where noisy
    occupancies overlap flattens it there (measured in docs/irl_agent.md)"""
    reward_steps: str = "all"
    """``all``: every arrival state s_{k+1} is rewarded and discriminated (occupancy matching
    over all steps); ``last``: only the final x_0 (the other rewards are 0 and the
    discriminator sees only x_0 against clean data)"""


@dataclass
class PolicyConfig:
    """Where the policy starts (issue #20 item 5: start from the best constant, improve)."""

    init: str = "default"
    """``default``: SB3's initialisation (near-uniform over the action table);
    ``best_constant``: the constant (w, γ) of the table that scores best in the harness
    (``init_metric`` on ``init_samples`` samples of noise seed ``init_seed``, not an
    evaluation seed), then ``constant``'s start; ``constant``: the actor's last layer is set to
    weight 0 and a bias that picks ``init_action`` with probability ``init_prob`` in every
    state (the rest spread evenly), so the untrained policy *is* that constant up to
    exploration"""
    init_action: list[float] | None = None
    """``[w, γ]`` of ``init: constant`` (an entry of the env's action table)"""
    init_prob: float = 0.9
    """probability of the start action in every state (exploration = 1 − init_prob)"""
    init_std: float = 0.1
    """``env.action_format=box``: the start is N((w, γ), init_std²) in every state (the mean
    is the constant; exploration = init_std, in the units of w and γ)"""
    init_metric: str | None = None
    """metric that ranks the constants (None = the first ranked one of ``eval.metrics``)"""
    init_samples: int = 1024
    """samples of the best-constant search"""
    init_seed: int = 7919
    """noise seed of the best-constant search and of ``keep_best``'s validation (must not
    be one of ``eval.seeds``)"""
    kl_coef: float = 0.0
    """β of a KL penalty to the start: every step's reward gets −β (log π(a|s) − log π_0(a)),
    π_0 the start distribution (``init`` other than ``default``), the per-step estimate of
    β · KL(π ‖ π_0) (the reference-policy penalty of KL-regularised RL): the policy moves off
    the best constant only where the reward pays more than that"""
    keep_best: bool = False
    """validate the policy (argmax, ``init_metric`` on ``init_samples`` samples of noise
    ``init_seed``) before training and every ``select_every`` rounds, and end with the best
    validated parameters: the run cannot end worse than its start on validation noise"""
    select_every: int = 10
    """rounds between validations of ``keep_best``"""


@dataclass
class EvalConfig:
    """Evaluation against constant-guidance baselines (:mod:`baselines.evaluate`)."""

    num_samples: int = 2048
    """samples per seed"""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """evaluation seeds (same x_T, labels and noise for every strategy)"""
    class_labels: str = "balanced"
    """``balanced`` or ``data`` (drawn from the data's class histogram)"""
    guidance_grid: list[float] | None = None
    """constant w of the baselines (None = the env's table)"""
    gamma_grid: list[float] | None = None
    """constant γ of the baselines (None = the env's table); baselines = product grid"""
    temperature: float | None = None
    """τ of the main policy row; None = deterministic (argmax)"""
    temperatures: list[float] = field(default_factory=list)
    """τ sweep: extra rows ``irl-tau{τ}`` (precision vs recall)"""
    metrics: list[str] = field(
        default_factory=lambda: ["energy", "frechet", "class_tv", "loglik", "nfe"]
    )
    """metric names of :data:`baselines.evaluate.METRICS`"""
    every: int = 0
    """quick evaluation (``eval/``) every this many rounds; 0 = only at the end"""
    train_samples: int = 512
    """samples of the quick evaluation"""


@dataclass
class Config:
    """``agent: irl`` config (``agents/configs/irl-*.yaml``)."""

    agent: str = "irl"
    seed: int = 0
    """seed of everything (env, networks, expert draws): any int in [0, 2**63 - 1]"""
    rounds: int = 60
    """rollout → relabel → policy update → discriminator update rounds"""
    checkpoint_every: int = 10
    """save a checkpoint every this many rounds (and at the end)"""
    progress: bool = True
    """show a progress bar"""
    num_threads: int = 1
    """torch CPU threads (small nets: 1 is fastest, more oversubscribe); 0 = torch's default"""
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    discriminator: IRLDiscriminatorConfig = field(default_factory=IRLDiscriminatorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self):
        _presets.check_name(self.env.preset)  # registered, or "package.module:function"
        if self.env.guide is not None:
            _presets.check_name(self.env.guide)
        resolve_schedule(self.env)  # names, explicit σ's and schedule.json, checked now
        _choice("algo.name", self.algo.name, ALGOS)
        _choice("algo.policy", self.algo.policy, POLICIES)
        _choice("discriminator.source", self.discriminator.source, SOURCES)
        _choice("discriminator.input", self.discriminator.input, DISC_INPUTS)
        _choice("discriminator.reward_steps", self.discriminator.reward_steps, ("all", "last"))
        gpf = self.discriminator.grad_penalty_final
        if gpf is not None and gpf < 0:
            raise ValueError(f"discriminator.grad_penalty_final must be >= 0, got {gpf}")
        if gpf and not self.discriminator.grad_penalty > 0:
            raise ValueError("discriminator.grad_penalty_final > 0 needs grad_penalty > 0")
        if self.discriminator.input != "obs" and self.discriminator.source == "policy":
            raise ValueError(
                f"discriminator.input={self.discriminator.input} needs "
                "discriminator.source=separate"
            )
        if self.discriminator.source == "policy" and self.algo.policy != "dual_head":
            raise ValueError("discriminator.source=policy needs algo.policy=dual_head")
        if self.algo.policy == "dual_head" and self.algo.name == "maskable_ppo":
            raise ValueError("algo.policy=dual_head works with ppo and a2c, not maskable_ppo")
        check_seed("seed", self.seed)
        check_seed("discriminator.expert_seed", self.discriminator.expert_seed)
        if self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {self.num_threads}")
        _check_sizes(self)
        _check_eval(self.eval)
        _check_policy(self)


def _check_sizes(cfg: Config) -> None:
    """Counts that must be >= 1, and names that must exist, before any work."""
    sizes = {
        "rounds": cfg.rounds, "checkpoint_every": cfg.checkpoint_every,
        "env.num_envs": cfg.env.num_envs, "env.num_steps": cfg.env.num_steps or 1,
        "algo.episodes_per_round": cfg.algo.episodes_per_round,
        "algo.batch_size": cfg.algo.batch_size, "algo.n_epochs": cfg.algo.n_epochs,
        "discriminator.epochs": cfg.discriminator.epochs,
        "discriminator.batch_size": cfg.discriminator.batch_size,
    }  # fmt: skip
    for name, v in sizes.items():
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if not cfg.env.guidance_weights or not cfg.env.gammas:
        raise ValueError("env.guidance_weights and env.gammas must not be empty")


def _check_eval(ev: EvalConfig) -> None:
    """The final evaluation's settings, checked before training (not after it)."""
    check_eval_basics(ev)
    _choice("eval.class_labels", ev.class_labels, ("balanced", "data"))
    if ev.every < 0:
        raise ValueError(f"eval.every must be >= 0, got {ev.every}")
    for t in [ev.temperature, *ev.temperatures]:
        if t is not None and not t > 0:
            raise ValueError(f"eval temperatures must be > 0, got {t}")


def _check_policy(cfg: Config) -> None:
    """``policy:``: the start, checked against the action table and the evaluation."""
    p = cfg.policy
    _choice("policy.init", p.init, POLICY_INITS)
    if not 0 < p.init_prob < 1:
        raise ValueError(f"policy.init_prob must be in (0, 1), got {p.init_prob}")
    if p.init == "constant":
        a = p.init_action
        if a is None or len(a) != 2:
            raise ValueError(f"policy.init=constant needs policy.init_action=[w, gamma], got {a}")
        if a[0] not in cfg.env.guidance_weights or a[1] not in cfg.env.gammas:
            raise ValueError(
                f"policy.init_action {a} is not in the action table: w in "
                f"{cfg.env.guidance_weights}, gamma in {cfg.env.gammas}"
            )
    elif p.init_action is not None:
        raise ValueError(f"policy.init_action is for policy.init=constant, not {p.init!r}")
    if p.kl_coef < 0:
        raise ValueError(f"policy.kl_coef must be >= 0, got {p.kl_coef}")
    if p.kl_coef > 0 and p.init == "default":
        raise ValueError("policy.kl_coef needs a start to stay near (policy.init != default)")
    if p.select_every < 1:
        raise ValueError(f"policy.select_every must be >= 1, got {p.select_every}")
    if not (math.isfinite(p.init_std) and p.init_std > 0):
        raise ValueError(f"policy.init_std must be finite and > 0, got {p.init_std}")
    _choice("env.action_format", cfg.env.action_format, ("discrete", "box"))
    if cfg.env.action_format == "box":
        if cfg.algo.name == "maskable_ppo" or cfg.algo.policy == "dual_head":
            raise ValueError(
                "env.action_format=box needs a Gaussian policy: algo.name ppo or a2c with "
                f"algo.policy mlp (got {cfg.algo.name}, {cfg.algo.policy})"
            )
    if p.init == "best_constant" or p.keep_best:
        if p.init_samples < 2:
            raise ValueError(f"policy.init_samples must be >= 2, got {p.init_samples}")
        check_seed("policy.init_seed", p.init_seed)
        if p.init_seed in cfg.eval.seeds:
            raise ValueError(
                f"policy.init_seed={p.init_seed} is an evaluation seed ({cfg.eval.seeds}): the "
                "best-constant search and the validation must not see the test noise"
            )
    if p.init_metric is not None and p.init_metric not in cfg.eval.metrics:
        raise ValueError(
            f"policy.init_metric {p.init_metric!r} must be one of eval.metrics {cfg.eval.metrics}"
        )


def resolve_schedule(env: EnvConfig) -> str | torch.Tensor:
    """``env.schedule`` as the Guidance env takes it: a schedule name, or the σ tensor of
    explicit values or of a ``schedule.json``, checked against ``env.num_steps``,
    ``env.solver`` and ``env.preset``; raises ``ValueError`` / ``FileNotFoundError`` naming
    what is wrong."""
    sched = env.schedule
    if isinstance(sched, str) and sched in SCHEDULES:
        return sched
    if isinstance(sched, str):
        if not sched.endswith(".json") and not Path(sched).is_file():
            raise ValueError(
                f"env.schedule must be a schedule name {list(SCHEDULES)}, a list of sigmas "
                f"or the path of a schedule.json, got {sched!r}"
            )
        if not Path(sched).is_file():
            raise FileNotFoundError(f"env.schedule: no schedule file at {sched!r}")
        record = _schedules.load_schedule(sched)
        if record["solver"] != env.solver:
            raise ValueError(
                f"env.schedule {sched!r} was made for solver {record['solver']!r}, but "
                f"env.solver is {env.solver!r}: set env.solver={record['solver']} or use a "
                "schedule of this solver"
            )
        if record["preset"] is not None and record["preset"] != env.preset:
            raise ValueError(
                f"env.schedule {sched!r} was made for preset {record['preset']!r}, but "
                f"env.preset is {env.preset!r} (move it with agents.art.transfer_schedule and "
                "save the result)"
            )
        sigmas = record["sigmas"]
    else:
        try:
            sigmas = _schedules.validate(torch.tensor(sched, dtype=torch.float64))
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"env.schedule: invalid sigmas {sched}: {e}") from None
    n = len(sigmas) - 1
    if env.num_steps is not None and env.num_steps != n:
        raise ValueError(
            f"env.num_steps={env.num_steps} disagrees with env.schedule's {n} steps "
            "(leave env.num_steps out, or null, to take the schedule's)"
        )
    return sigmas


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}, got {value!r}")
