"""Named denoiser + data presets.

A preset bundles a denoiser (what the sampler calls), the true data distribution (what the
samples are judged against) and the σ range and prior the sampler starts from. The exact
presets use the mixture as both; the ``-imperfect`` variants pair the true mixture with a
misspecified one as the denoiser ("pretrained-like": over-dispersed components and a wrong
class balance), so guidance and noise injection have something to correct.

>>> from diffusion_gym import presets
>>> p = presets.make("gmm-ring8-imperfect")
>>> p.denoiser, p.data  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .data.protocol import check_data
from .denoisers.autoguided import AutoguidancePair
from .denoisers.base import Denoiser
from .denoisers.mixture import GaussianMixture

__all__ = [
    "Preset",
    "autoguided",
    "check_name",
    "describe",
    "is_entry_point",
    "make",
    "names",
    "register",
]


@dataclass
class Preset:
    """A ready denoiser and the distribution it should sample.

    :param name: the preset's name.
    :param denoiser: the model the sampler calls.
    :param data: the true distribution: ``.sample(n, class_labels, generator)``, and
        ``.log_prob(x, sigma, class_labels)`` where it is exact (mixtures).
    :param prior_std: std of x_T at σ_max (σ_max itself, or sqrt(σ_max² + σ_data²) when σ_max
        is not large against the data, as in ART's 1-D toy).
    :param defaults: suggested sampler settings (``num_steps``, ``solver``, ``budget``).
    :param description: one line for listings.
    """

    name: str
    denoiser: Denoiser
    data: Any
    prior_std: float
    defaults: dict = field(default_factory=dict)
    description: str = ""

    @property
    def sigma_min(self) -> float:
        return self.denoiser.sigma_min

    @property
    def sigma_max(self) -> float:
        return self.denoiser.sigma_max

    @property
    def num_classes(self) -> int:
        return self.denoiser.num_classes

    @property
    def exact(self) -> bool:
        """True when the denoiser is the data's exact denoiser."""
        return self.denoiser is self.data

    def to(self, device) -> Preset:
        self.denoiser.to(device)
        if isinstance(self.data, torch.nn.Module):
            self.data.to(device)
        return self


_REGISTRY: dict[str, tuple[Callable[..., Preset] | str, str]] = {}


def autoguided(preset: Preset, guide: str | Denoiser | Preset, device=None) -> Preset:
    """``preset`` with ``guide`` as the guiding model of its guided calls: its denoiser
    becomes :class:`~diffusion_gym.denoisers.autoguided.AutoguidancePair` (good =
    ``preset.denoiser``), so a guidance weight w means D_guide + w (D − D_guide) at the
    sample's class (autoguidance, Karras et al. 2024) instead of classifier-free guidance.
    ``guide``: a preset name (e.g. ``"digits-imperfect-guide"``), a Preset or a Denoiser,
    with the model's shape, classes and σ range. The copy keeps the name, data and defaults."""
    if isinstance(guide, str):
        check_name(guide)
        guide = make(guide, device=device if device is not None else preset.denoiser.device)
    if isinstance(guide, Preset):
        guide = guide.denoiser
    if not isinstance(guide, Denoiser):
        raise TypeError(
            f"guide must be a preset name, a Preset or a Denoiser, got {type(guide).__name__}"
        )
    if isinstance(preset.denoiser, AutoguidancePair):
        raise ValueError(f"preset {preset.name!r} is already autoguided")
    pair = AutoguidancePair(preset.denoiser, guide.to(preset.denoiser.device))
    desc = f"{preset.description} (autoguided)" if preset.description else "autoguided"
    return Preset(preset.name, pair, preset.data, preset.prior_std, dict(preset.defaults), desc)


def register(name: str, factory: Callable[..., Preset] | str, description: str = "") -> None:
    """Add a preset: ``factory(**overrides) -> Preset``, or its entry point
    ``"module:function"`` (imported on the first :func:`make`, as gymnasium's ``entry_point``),
    which keeps :func:`names` free of the factory's imports."""
    if not (callable(factory) or (isinstance(factory, str) and factory.count(":") == 1)):
        raise TypeError(f"factory must be a callable or 'module:function', got {factory!r}")
    _REGISTRY[name] = (factory, description)


def _factory(name: str) -> Callable[..., Preset]:
    """The factory of preset ``name``, its entry point resolved (once)."""
    factory, description = _REGISTRY[name]
    if isinstance(factory, str):
        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = (factory, description)
    return factory


def names() -> list[str]:
    """The names of all presets."""
    return sorted(_REGISTRY)


def describe() -> dict[str, str]:
    """``{name: one-line description}`` of all presets."""
    return {n: _REGISTRY[n][1] for n in names()}


def is_entry_point(name: object) -> bool:
    """Whether ``name`` has the form ``"package.module:function"`` of a user's factory."""
    if not isinstance(name, str) or name.count(":") != 1:
        return False
    module, attr = name.split(":")
    return bool(module) and attr.isidentifier() and all(p.isidentifier() for p in module.split("."))


def check_name(name: object) -> None:
    """``ValueError`` unless ``name`` is a registered preset or an importable entry point
    ``"package.module:function"`` (a config is checked before any work starts)."""
    if isinstance(name, str) and name in _REGISTRY:
        return
    if is_entry_point(name):
        _load_entry_point(name)
        return
    raise ValueError(
        f"unknown preset {name!r}; valid presets: {', '.join(names())}, or your own factory "
        "as 'package.module:function' (docs/own_model.md)"
    )


def _load_entry_point(name: str) -> Callable[..., Any]:
    module, attr = name.split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"preset {name!r}: cannot import module {module!r} ({e})") from e
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise ValueError(f"preset {name!r}: module {module!r} has no callable {attr!r}")
    return factory


def make(name: str, **overrides) -> Preset:
    """Build the preset ``name``: a registered name, or a user's factory given as the entry
    point ``"package.module:function"`` (imported on the call, as gymnasium's
    ``entry_point``). Keyword overrides go to the factory; ``device`` always: a factory that
    takes no ``device`` (nor ``**kwargs``) gets its result moved with ``Preset.to``.

    A factory returns a :class:`Preset`, or a :class:`~diffusion_gym.denoisers.base.Denoiser`
    (then ``data`` is the denoiser itself if it has ``sample``, else None, and ``prior_std``
    = σ_max); ``data``, when given, must have ``sample`` (the Data protocol,
    :mod:`diffusion_gym.data.protocol`).

    Raises ``ValueError`` for an unknown name and ``TypeError`` for an unknown keyword, each
    listing the valid ones.
    """
    if name in _REGISTRY:
        factory = _factory(name)
    else:
        check_name(name)
        factory = _load_entry_point(name)
    params = inspect.signature(factory).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    device = None
    if "device" in overrides and "device" not in params and not var_kw:
        device = overrides.pop("device")
    unknown = [] if var_kw else sorted(set(overrides) - set(params))
    if unknown:
        raise TypeError(
            f"unknown keyword(s) {unknown} for preset {name!r}; valid: {sorted(params)}"
        )
    preset = _as_preset(factory(**overrides), name)
    if device is not None:
        preset.to(device)
    if not preset.description:
        preset.description = _REGISTRY[name][1] if name in _REGISTRY else f"factory {name}"
    return preset


def _as_preset(obj: Any, name: str) -> Preset:
    """A factory's result as a :class:`Preset` (see :func:`make`)."""
    if isinstance(obj, Preset):
        preset = obj
    elif isinstance(obj, Denoiser):
        data = obj if callable(getattr(obj, "sample", None)) else None
        preset = Preset(name, obj, data, obj.sigma_max)
    elif isinstance(obj, torch.nn.Module):
        raise TypeError(
            f"preset {name!r}: the factory returned a raw {type(obj).__name__}; wrap the "
            "network in an adapter: diffusion_gym.denoisers.EDMNetDenoiser(net, shape, "
            "num_classes, sigma_min, sigma_max) for D(x, sigma, class_labels) -> x0_hat, or "
            "EpsilonDenoiser for an epsilon-prediction (DDPM/VP) network"
        )
    else:
        raise TypeError(
            f"preset {name!r}: the factory must return a Preset or a Denoiser, got "
            f"{type(obj).__name__}"
        )
    if not preset.name:
        preset.name = name
    if preset.data is not None:
        check_data(preset.data, ["sample"], f"preset {preset.name!r}'s data")
    return preset


# ---------------------------------------------------------------------------------------------
# Mixture data sets


def ring8(radius: float = 2.0, std: float = 0.2, **kw) -> GaussianMixture:
    """8 isotropic Gaussians on a circle, one class each."""
    angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([angle.cos(), angle.sin()], 1)
    return GaussianMixture(means, torch.full((8,), std**2), None, torch.arange(8), **kw)


def grid(side: int = 4, spacing: float = 1.5, std: float = 0.15, **kw) -> GaussianMixture:
    """A side×side grid of isotropic Gaussians, one class per component (AYS-style 2-D toy)."""
    ax = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    means = torch.cartesian_prod(ax, ax)
    k = side * side
    return GaussianMixture(means, torch.full((k,), std**2), None, torch.arange(k), **kw)


def gmm64d(dim: int = 64, num_classes: int = 8, per_class: int = 2, seed: int = 0, **kw):
    """A ``dim``-D mixture with full covariances (random rotations, anisotropic spectra),
    ``per_class`` components per class; built from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    k = num_classes * per_class
    means = torch.randn(k, dim, generator=g, dtype=torch.float64) * 1.0
    q, _ = torch.linalg.qr(torch.randn(k, dim, dim, generator=g, dtype=torch.float64))
    spectrum = torch.logspace(-2, -0.3, dim, dtype=torch.float64)  # 0.01 .. 0.5
    covs = q @ torch.diag_embed(spectrum.expand(k, dim)) @ q.transpose(1, 2)
    covs = 0.5 * (covs + covs.transpose(1, 2))
    weights = 0.5 + torch.rand(k, generator=g, dtype=torch.float64)
    classes = torch.arange(k) % num_classes
    return GaussianMixture(means, covs, weights, classes, **kw)


def _imperfect(
    true: GaussianMixture, variance_scale: float, uncond_scale: float, weight_tilt: float, seed: int
) -> Denoiser:
    """Over-dispersed components and tilted weights; the unconditional branch is worse."""
    g = torch.Generator().manual_seed(seed)
    tilt = torch.exp(weight_tilt * torch.randn(true.num_components, generator=g, dtype=true.dtype))
    return true.misspecified(
        variance_scale=variance_scale,
        weights=true.weights * tilt,
        unconditional_variance_scale=uncond_scale,
    )


def _mixture_factory(build, defaults: dict, sigma_min=0.002, sigma_max=80.0):
    def exact(
        device: str | torch.device = "cpu",
        sigma_min: float = sigma_min,
        sigma_max: float = sigma_max,
        name: str = "",
    ) -> Preset:
        gm = build(sigma_min=sigma_min, sigma_max=sigma_max).to(device)
        return Preset(name, gm, gm, sigma_max, dict(defaults))

    def imperfect(
        device: str | torch.device = "cpu",
        sigma_min: float = sigma_min,
        sigma_max: float = sigma_max,
        variance_scale: float = 2.5,
        unconditional_variance_scale: float = 4.0,
        weight_tilt: float = 0.8,
        seed: int = 1,
        name: str = "",
    ) -> Preset:
        gm = build(sigma_min=sigma_min, sigma_max=sigma_max)
        model = _imperfect(gm, variance_scale, unconditional_variance_scale, weight_tilt, seed)
        return Preset(name, model.to(device), gm.to(device), sigma_max, dict(defaults))

    return exact, imperfect


def _named(factory, name):
    def f(**kw):
        p = factory(**kw)
        p.name = name
        return p

    f.__signature__ = inspect.signature(factory).replace(
        parameters=[p for p in inspect.signature(factory).parameters.values() if p.name != "name"]
    )
    return f


def _gauss1d(
    device: str | torch.device = "cpu", sigma_min: float = 0.002, sigma_max: float = 3.0
) -> Preset:
    gm = GaussianMixture([[0.0]], 1.0, sigma_min=sigma_min, sigma_max=sigma_max).to(device)
    return Preset(
        "art-gauss1d",
        gm,
        gm,
        math.sqrt(sigma_max**2 + 1.0),
        {"solver": "euler", "budget": 5, "num_steps": 5},
    )


def _gauss1d_imperfect(
    device: str | torch.device = "cpu",
    sigma_min: float = 0.002,
    sigma_max: float = 3.0,
    variance_scale: float = 1.5,
) -> Preset:
    gm = GaussianMixture([[0.0]], 1.0, sigma_min=sigma_min, sigma_max=sigma_max)
    model = gm.misspecified(variance_scale=variance_scale)
    return Preset(
        "art-gauss1d-imperfect",
        model.to(device),
        gm.to(device),
        math.sqrt(sigma_max**2 + 1.0),
        {"solver": "euler", "budget": 5, "num_steps": 5},
    )


_SPECS = {
    "gmm-ring8": (ring8, "2-D ring of 8 Gaussians, 8 classes", {"num_steps": 4, "budget": 3}),
    "gmm-grid": (
        grid,
        "2-D 4x4 grid of Gaussians, 16 classes (AYS toy)",
        {"num_steps": 4, "budget": 3},
    ),
    "gmm-64d": (
        gmm64d,
        "64-D mixture, full covariances, 8 classes x 2 components",
        {"num_steps": 6, "budget": 5},
    ),
}
for _name, (_build, _desc, _defaults) in _SPECS.items():
    _exact, _imp = _mixture_factory(_build, _defaults)
    register(_name, _named(_exact, _name), f"{_desc}; exact denoiser")
    register(
        f"{_name}-imperfect",
        _named(_imp, f"{_name}-imperfect"),
        f"{_desc}; misspecified denoiser (over-dispersed, wrong weights)",
    )
register("art-gauss1d", _gauss1d, "ART 1-D toy: data N(0,1), sigma_max=3, exact denoiser")
register(
    "art-gauss1d-imperfect",
    _gauss1d_imperfect,
    "ART 1-D toy with an over-dispersed denoiser (N(0, 1.5) learned)",
)
# Presets on the shipped trained networks (diffusion_gym/presets_trained.py, which imports this
# module): registered by entry point, so listing presets never loads the networks' modules.
register(
    "digits",
    "diffusion_gym.presets_trained:digits",
    "trained 8x8 digits U-Net (sklearn digits, 10 classes, CFG)",
)
register(
    "digits-imperfect",
    "diffusion_gym.presets_trained:digits_imperfect",
    "deliberately weak digits U-Net (half the channels, 200 training steps): guidance helps",
)
register(
    "digits-imperfect-guide",
    "diffusion_gym.presets_trained:digits_imperfect_guide",
    "weaker still (100 training steps): the guiding model of digits-imperfect (autoguidance)",
)
register(
    "gmm-ring8-mlp",
    "diffusion_gym.presets_trained:gmm_ring8_mlp",
    "2-D ring of 8 Gaussians, 8 classes; trained MLP denoiser (class dropout)",
)
