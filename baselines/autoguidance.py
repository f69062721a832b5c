"""Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself").

The good model D_good is guided by a weaker version of itself, D_bad (less trained, smaller),
conditioned on the same class:

    D_w(x; σ, c) = D_bad(x; σ, c) + w (D_good(x; σ, c) − D_bad(x; σ, c)),

computed as w·D_good + (1 − w)·D_bad, so that w = 1 is exactly the good model and w = 0
exactly the bad one (bit for bit: 1·a + 0·b = a). Unlike classifier-free guidance the
extrapolation is away from the *bad model's* errors rather than from the unconditional
model, so it sharpens without collapsing the classes' variety.

- :class:`AutoguidedDenoiser`: D_w as a :class:`~diffusion_gym.denoisers.Denoiser` (any
  sampler, env or solver can run it);
- :class:`Autoguidance`: the harness strategy (a schedule, a guide preset, w constant or per
  step), a row beside constant, interval and ramp guidance in :func:`baselines.evaluate.evaluate`
  and ``diffusion-gym compare`` (strategy ``autoguidance``);
- :func:`search_autoguidance`: the best w on a grid, scored on *training* noise like
  :func:`baselines.guidance.search_constant` (energy distance), or by FD_digits against the
  *training* images (``metric="fd_digits"``), never on the evaluation noise or test images;
  :func:`search_strategies` is the same search for any candidate strategies (the digits
  report uses it for constant (w, γ) and interval guidance too);
- :data:`GUIDES`: the shipped good → bad pairs: ``digits`` is guided by ``digits-imperfect``,
  ``digits-imperfect`` by ``digits-imperfect-guide`` (the same small U-Net trained half as
  long).

NFE: one NFE is one evaluation of the guided denoiser D_w on the batch, the same count as
classifier-free guidance (:mod:`baselines.evaluate`): CFG runs ONE network on 2B inputs
(conditional + unconditional), autoguidance runs TWO networks on B inputs each (good + bad).
Both therefore cost two network passes of B samples per NFE; :meth:`Autoguidance.describe`
reports ``network_passes`` = 2·NFE. With ``digits-imperfect`` guiding ``digits`` the bad
network is a quarter of the good one's size, so an autoguided NFE is cheaper than a CFG one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch

from diffusion_gym import presets as _presets
from diffusion_gym import schedules as _schedules
from diffusion_gym import steps as _steps
from diffusion_gym.denoisers import Denoiser
from diffusion_gym.denoisers.autoguided import AutoguidedDenoiser
from diffusion_gym.denoisers.classifier import load_digits_classifier
from diffusion_gym.metrics import digits_metrics
from diffusion_gym.noise import make_labels, make_noise

from .evaluate import Strategy
from .guidance import training_energy
from .schedules import TRAIN_SALT

__all__ = [
    "GUIDES",
    "default_guide",
    "AutoguidedDenoiser",
    "Autoguidance",
    "SCORES",
    "training_score",
    "search_strategies",
    "search_autoguidance",
    "AUTOGUIDANCE_GRID",
]

#: The shipped good model → its weaker version (the guiding model).
GUIDES = {"digits": "digits-imperfect", "digits-imperfect": "digits-imperfect-guide"}
#: Default grid of :func:`search_autoguidance` (w = 1: the good model alone).
AUTOGUIDANCE_GRID = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)


def default_guide(preset_name: str) -> str:
    """The guiding preset of a good preset (:data:`GUIDES`); ``ValueError`` if none is shipped."""
    if preset_name not in GUIDES:
        raise ValueError(
            f"no guiding model is shipped for preset {preset_name!r}; autoguidance needs a "
            f"weaker version of the model: pass guide= (shipped pairs: {GUIDES})"
        )
    return GUIDES[preset_name]


def _per_step(weight, n: int, what: str = "weight") -> list[float]:
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        weight = [float(weight)] * n
    w = [float(v) for v in torch.as_tensor(weight, dtype=torch.float64).reshape(-1)]
    if len(w) != n:
        raise ValueError(f"{what} must be a scalar or have one value per step ({n}), got {len(w)}")
    if not all(torch.isfinite(torch.tensor(w))):
        raise ValueError(f"{what} must be finite")
    return w


class Autoguidance(Strategy):
    """Autoguided sampling on a fixed schedule: the preset's denoiser guided by ``guide``.

    :param name: row name (e.g. ``"autoguidance"``).
    :param sigmas: the schedule (n + 1 σ ending in 0).
    :param guide: the guiding (bad) model: a preset name, a :class:`Preset` or a
        :class:`Denoiser`; None = :func:`default_guide` of the preset sampled.
    :param weight: w, a scalar or one value per step (w = 1: the good model alone).
    :param solver: a solver of :data:`diffusion_gym.steps.SOLVERS`.
    :param gamma: EDM churn γ ≥ 0, a scalar or one value per step (as
        :class:`~baselines.evaluate.FixedSchedule`'s; noise from the harness's per-sample
        streams).
    """

    def __init__(
        self,
        name: str,
        sigmas,
        guide: str | _presets.Preset | Denoiser | None = None,
        weight: float | Sequence[float] = 2.0,
        solver: str = "heun",
        gamma: float | Sequence[float] = 0.0,
    ):
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if solver not in _steps.SOLVERS:
            raise ValueError(f"solver must be one of {_steps.SOLVERS}, got {solver!r}")
        if guide is not None and not isinstance(guide, (str, _presets.Preset, Denoiser)):
            raise TypeError(
                f"guide must be a preset name, a Preset or a Denoiser, got {type(guide).__name__}"
            )
        if isinstance(guide, str):
            _presets.check_name(guide)
        self.name, self.solver, self.guide = name, solver, guide
        self.sigmas = _schedules.validate(torch.as_tensor(sigmas, dtype=torch.float64)).clone()
        self.weights = _per_step(weight, self.num_steps)
        self.gammas = _per_step(gamma, self.num_steps, "gamma")
        if any(not g >= 0 for g in self.gammas):
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        self._bad: dict[Any, Denoiser] = {}

    @property
    def num_steps(self) -> int:
        return self.sigmas.shape[0] - 1

    @property
    def nfe(self) -> int:
        return _steps.nfe_of(self.num_steps, self.solver)

    @property
    def deterministic(self) -> bool:
        return not any(self.gammas)

    def guide_name(self, preset_name: str | None = None) -> str:
        """The guiding model's name (the preset name, or the denoiser's class)."""
        g = self.guide
        if g is None:
            return default_guide(preset_name) if preset_name else "default"
        if isinstance(g, str):
            return g
        return g.name if isinstance(g, _presets.Preset) else type(g).__name__

    def bad_denoiser(self, preset: _presets.Preset) -> Denoiser:
        """The guiding denoiser for ``preset`` (built once per preset and device)."""
        key = (preset.name, str(preset.denoiser.device))
        if key not in self._bad:
            g = self.guide
            if isinstance(g, Denoiser):
                den = g
            else:
                if g is None:
                    g = default_guide(preset.name)
                den = (_presets.make(g) if isinstance(g, str) else g).denoiser
            self._bad[key] = den.to(preset.denoiser.device)
        return self._bad[key]

    def sample(self, preset, x_T, class_labels, streams):  # noqa: N803
        if preset.num_classes and class_labels is None:
            raise ValueError(f"strategy {self.name!r}: the class-conditional models need labels")
        den = AutoguidedDenoiser(preset.denoiser, self.bad_denoiser(preset), self.weights[0])
        n = self.num_steps

        def next_weight(info: dict) -> None:  # step i done: step i + 1 uses weights[i + 1]
            if info["i"] + 1 < n:
                den.weight = self.weights[info["i"] + 1]

        return _steps.sample(
            den,
            x_T,
            self.sigmas.to(x_T.device),
            class_labels=class_labels,
            solver=self.solver,
            gamma=self.gammas,
            generator=streams,
            callback=next_weight,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nfe": self.nfe,
            "network_passes": 2 * self.nfe,
            "solver": self.solver,
            "guide": self.guide_name(),
            "sigmas": [float(s) for s in self.sigmas],
            "autoguidance": list(self.weights),
            "guidance": [1.0] * self.num_steps,
            "gamma": list(self.gammas),
        }


# ---------------------------------------------------------------------------------------------
# Searches on training noise


def _fd_digits_train(preset, strategy, num_samples: int, seed: int) -> float:
    """FD_digits of the strategy's samples on training noise against training images (a
    fixed subset of ``num_samples`` of them): neither the evaluation noise nor the test set."""
    salt = TRAIN_SALT + seed
    x_T, streams = make_noise(preset, num_samples, salt)  # noqa: N806
    labels = make_labels(preset, num_samples, salt, "balanced")
    with torch.no_grad():
        x0 = strategy.sample(preset, x_T, labels, streams)
    data = preset.data
    g = torch.Generator().manual_seed(salt)
    n_train = len(data.train_labels)
    idx = torch.randperm(n_train, generator=g)[: min(num_samples, n_train)]
    clf = _classifier()
    m = digits_metrics(x0.float().cpu(), labels, classifier=clf, reference=data.train_images[idx])
    return float(m["fd"])


@functools.lru_cache(maxsize=1)
def _classifier():
    return load_digits_classifier()


#: Scores of a search (smaller is better): ``fn(preset, strategy, num_samples, seed)``.
SCORES: dict[str, Callable[..., float]] = {
    "energy": training_energy,
    "fd_digits": _fd_digits_train,
}


def training_score(
    preset: _presets.Preset,
    strategy: Strategy,
    num_samples: int = 512,
    seed: int = 0,
    metric: str = "energy",
) -> float:
    """Score of ``strategy`` on training noise (salt ``TRAIN_SALT + seed``): ``"energy"``
    (class-conditional energy distance to fresh data, :func:`baselines.guidance.training_energy`)
    or ``"fd_digits"`` (FD in the digits classifier's features against training images)."""
    if metric not in SCORES:
        raise ValueError(f"metric must be one of {sorted(SCORES)}, got {metric!r}")
    return float(SCORES[metric](preset, strategy, num_samples, seed))


def search_strategies(
    preset: _presets.Preset,
    candidates: Mapping[Hashable, Strategy],
    num_samples: int = 512,
    seed: int = 0,
    metric: str = "energy",
) -> tuple[Hashable, dict]:
    """Score every candidate with :func:`training_score`: ``(best key, {key: score})``. Ties
    go to the first candidate."""
    if not candidates:
        raise ValueError("candidates must be a non-empty mapping key -> Strategy")
    scores = {
        k: training_score(preset, s, num_samples, seed, metric) for k, s in candidates.items()
    }
    return min(scores, key=scores.get), scores


def search_autoguidance(
    preset: _presets.Preset,
    sigmas,
    guide: str | _presets.Preset | Denoiser | None = None,
    solver: str = "heun",
    grid: Sequence[float] = AUTOGUIDANCE_GRID,
    num_samples: int = 512,
    seed: int = 0,
    metric: str = "energy",
) -> tuple[float, dict]:
    """Best constant autoguidance weight w on ``grid`` (like
    :func:`baselines.guidance.search_constant`): ``(w, {w: score})``."""
    if not grid:
        raise ValueError("grid must hold at least one weight")
    cands = {float(w): Autoguidance("cand", sigmas, guide, float(w), solver) for w in grid}
    shared: dict = {}  # one guiding network for every candidate
    for c in cands.values():
        c._bad = shared
    return search_strategies(preset, cands, num_samples, seed, metric)
