"""Terminal rewards of the Clock env that plain RL learners can optimise.

The Clock env's raw reward −‖x_K − x_ref‖²/dim spans decades across x_T (on gmm-64d, Heun
K = 5, the per-sample errors of one schedule have a coefficient of variation near 8), so an
off-the-shelf PPO / SAC sees advantages dominated by *which* x_T an episode drew rather than
by its actions. The ART agent (``agents/art``) removes that spread with a log transform and a
self-critical baseline; the parts that need nothing but the env live here, as env options:

- ``reward="log_terminal_error"``: r_K = −log(mse + ε), ε = :data:`LOG_EPS` (the objective
  becomes the geometric mean of the per-sample error; scale-free).
- ``reward_baseline="base"``: a per-x_T baseline, the error mse_b of the env's base schedule
  (all-zero actions) from the *same* x_T to the *same* x_ref (self-critical training, Rennie
  et al. 2017, with the base schedule as the critic). It does not depend on the actions, so
  the policy gradient is unchanged; a = 0 earns exactly 0. mse_b is scored once per bank
  entry (:func:`schedule_errors`, one batched sampler run over the bank, K solver steps
  against the reference's hundreds) and gathered with the episode's bank row.
- ``reward_scale="base"``: divide the (raw-error) reward by the base schedule's mean error
  over the bank, a constant known before training: the reward is in units of "the base
  schedule's error", O(1) on every preset, with no running statistics to tune.

So ``reward="terminal_error", reward_baseline="base", reward_scale="base"`` gives
r_K = (mse_b − mse) / mean_bank(mse_b) (the improvement over the base schedule as a fraction
of its mean error, unbiased for the RMSE objective), and ``reward="log_terminal_error",
reward_baseline="base"`` gives r_K = log((mse_b + ε)/(mse + ε)) (the log-ratio of errors).
docs/clock_env.md ("Rewards for plain learners") has the recipe and measured figures.
"""

from __future__ import annotations

import torch

from .. import steps

__all__ = [
    "LOG_EPS",
    "TERMINAL_REWARDS",
    "REWARD_BASELINES",
    "check_reward_options",
    "schedule_errors",
    "shape_terminal_reward",
]

#: ε of the log reward: −log(mse + ε).
LOG_EPS = 1e-12
#: Rewards paid once, at the last step, from the terminal error.
TERMINAL_REWARDS = ("terminal_error", "log_terminal_error")
#: ``reward_baseline`` values: no baseline, or the base schedule's error on the same x_T.
REWARD_BASELINES = (None, "base")


def check_reward_options(reward, baseline, scale) -> None:
    """Check ``reward_baseline`` and ``reward_scale`` against ``reward`` (ValueError/TypeError)."""
    if baseline not in REWARD_BASELINES:
        raise ValueError(f"reward_baseline must be one of {REWARD_BASELINES}, got {baseline!r}")
    if baseline is not None and reward not in TERMINAL_REWARDS:
        raise ValueError(
            f"reward_baseline {baseline!r} needs a terminal reward {TERMINAL_REWARDS}, "
            f"got reward={reward!r}"
        )
    if isinstance(scale, str):
        if scale != "base":
            raise ValueError(f"reward_scale must be a number > 0 or 'base', got {scale!r}")
        if reward != "terminal_error":
            raise ValueError(
                "reward_scale 'base' divides the raw error reward: needs reward "
                f"'terminal_error', got {reward!r}"
            )
        return
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise TypeError(f"reward_scale must be a number > 0 or 'base', got {scale!r}")
    if scale != 1.0 and (callable(reward) or reward not in TERMINAL_REWARDS):
        raise ValueError(f"reward_scale needs a terminal reward {TERMINAL_REWARDS}, got {reward!r}")


@torch.no_grad()
def schedule_errors(
    denoiser,
    x_T: torch.Tensor,  # noqa: N803 - the paper's name
    x_ref: torch.Tensor,
    labels: torch.Tensor | None,
    sigmas: torch.Tensor,
    *,
    solver: str,
    guidance: float | None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Per-sample terminal error ‖x_K − x_ref‖²/dim ``[N]`` (float64) of the fixed schedule
    ``sigmas`` (K+1 σ ending in 0) from every ``x_T`` (``[N, *shape]``), through
    :func:`diffusion_gym.steps.sample`, ``chunk`` rows per batched call."""
    out = []
    for lo in range(0, len(x_T), chunk):
        sl = slice(lo, lo + chunk)
        lab = None if labels is None else labels[sl]
        x0 = steps.sample(
            denoiser, x_T[sl], sigmas, class_labels=lab, guidance=guidance, solver=solver
        )
        err = (x0 - x_ref[sl]).reshape(len(x0), -1).to(torch.float64)
        out.append(err.pow(2).mean(1))
    return torch.cat(out)


def shape_terminal_reward(
    mse: torch.Tensor,
    *,
    log: bool,
    base_mse: torch.Tensor | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """The terminal reward from the episode's error ``mse`` ``[B]`` (float64):
    −log(mse + ε) (+ log(mse_b + ε) with a baseline) if ``log``, else (−mse (+ mse_b)) / scale."""
    if log:
        r = -torch.log(mse + LOG_EPS)
        return r if base_mse is None else r + torch.log(base_mse + LOG_EPS)
    r = -mse if base_mse is None else base_mse - mse
    return r if scale == 1.0 else r / scale
