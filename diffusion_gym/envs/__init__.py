"""Gymnasium environments over a frozen denoiser.

- :mod:`.guidance`: discrete guidance-weight / churn actions (``diffusion_gym/Guidance-v0``).
- :mod:`.clock`: continuous clock-speed actions, i.e. the timestep schedule of a fixed budget
  (``diffusion_gym/Clock-v0``).
- :mod:`.rendering`: drawing helpers shared by the environments.

Submodules are imported on demand, so importing this package stays cheap.
"""
