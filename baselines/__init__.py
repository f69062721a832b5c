"""Hand-made and optimised sampling strategies, and the evaluation harness.

- :mod:`baselines.schedules`: EDM-ρ (+ ρ search), uniform, log-linear, DDIM, AYS-style,
  GITS/DP-style and the oracle schedule optimised through the differentiable sampler.
- :mod:`baselines.guidance`: constant, limited-interval, ramps, churn settings and
  Learn to Guide ω_φ(c, s, t).
- :mod:`baselines.evaluate`: :class:`~baselines.evaluate.Strategy`, ``evaluate``,
  ``write_report`` and the ``diffusion-gym evaluate|compare`` commands.
"""
