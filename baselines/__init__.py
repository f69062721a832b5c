"""Hand-made and optimised sampling strategies, and the evaluation harness.

- :mod:`baselines.schedules`: EDM-ρ (+ ρ search), uniform, log-linear, DDIM, AYS-style,
  GITS/DP-style and the oracle schedule optimised through the differentiable sampler.
- :mod:`baselines.guidance`: constant, limited-interval, ramps, churn settings and
  Learn to Guide ω_φ(c, s, t).
- :mod:`baselines.evaluate`: :class:`~baselines.evaluate.Strategy`, ``evaluate``,
  ``write_report`` and the ``diffusion-gym evaluate|compare`` commands.
- :mod:`baselines.policy_eval`: :func:`evaluate_policy`, any policy (SB3, CleanRL, a
  callable) on held-out noise against the env's base and best constant action.
"""

from .policy_eval import PolicyEvaluation, evaluate_policy

__all__ = ["PolicyEvaluation", "evaluate_policy"]
