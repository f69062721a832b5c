"""Occupancy-matching inverse RL for diffusion sampling (after arXiv 2602.08689).

No hand-written reward: a policy choosing the guidance weight w and churn γ of every step of
the ``Guidance`` env learns to make its state occupancy p_π(s_k) match the expert's
p_E(s_k): real x_0 ~ data(c) noised to the same σ_k. One round:

1. collect a rollout of ``episodes_per_round`` episodes on the native vector env (through
   :class:`agents.vec_env.SB3VecEnv`);
2. relabel its rewards before the policy update (:class:`RelabelCallback`, on SB3's
   ``_on_rollout_end``): the transition s_k → s_{k+1} earns r = f*(f'(exp ℓ(s_{k+1}))) with
   ℓ the discriminator's logit (every state is matched, the terminal x_0 against clean data),
   then returns and GAE advantages are recomputed; the env's own reward goes to the logs;
3. the policy update (SB3 PPO / A2C / MaskablePPO, unchanged);
4. the discriminator update: logistic loss on this round's policy states against expert
   states drawn at the same σ_k and class (:func:`agents.discriminator.train_discriminator`).

``run(config, out_dir, resume)`` is the ``agent: irl`` trainer of ``diffusion-gym train``.

Modules: :mod:`.config` (the ``Config`` dataclass tree = the YAML keys), :mod:`.trainer`
(env, SB3 learner, :class:`RelabelCallback`, :class:`IRLTrainer`), :mod:`.reward_wrapper`
(:class:`DiscriminatorReward`: the IRL reward as a vector-env wrapper for any learner),
:mod:`.strategy` (the
policy and the constant baselines as harness strategies), :mod:`.report` (evaluation through
:mod:`baselines.evaluate`, summary, plots), :mod:`.loop` (``run``). Every public name is
re-exported here, so ``from agents.irl import IRLTrainer`` keeps working.
"""

from .config import (
    ALGOS,
    DISC_INPUTS,
    POLICIES,
    SOURCES,
    AlgoConfig,
    Config,
    EnvConfig,
    EvalConfig,
    IRLDiscriminatorConfig,
)
from .loop import run
from .report import evaluate_trainer, quick_eval, summarize, summary_markdown
from .reward_wrapper import DiscriminatorReward
from .strategy import PolicyStrategy, baseline_strategies
from .trainer import (
    IRLTrainer,
    RelabelCallback,
    algo_class,
    decode_step_class,
    make_env,
    make_model,
)

__all__ = [
    "ALGOS",
    "DISC_INPUTS",
    "POLICIES",
    "SOURCES",
    "AlgoConfig",
    "Config",
    "DiscriminatorReward",
    "EnvConfig",
    "EvalConfig",
    "IRLDiscriminatorConfig",
    "IRLTrainer",
    "PolicyStrategy",
    "RelabelCallback",
    "algo_class",
    "baseline_strategies",
    "decode_step_class",
    "evaluate_trainer",
    "make_env",
    "make_model",
    "quick_eval",
    "run",
    "summarize",
    "summary_markdown",
]
