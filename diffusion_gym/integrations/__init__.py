"""Bridges from the package to other samplers' ecosystems (optional extras).

Nothing here is imported by the core: ``import diffusion_gym.integrations.diffusers`` needs
the optional extra ``pip install -e ".[diffusers]"``; the core never imports it.
"""
