"""The ``Data`` protocol: what a preset's ``data`` (the true distribution the samples are
judged against) must provide, and which consumer needs which method.

A preset is a denoiser plus, optionally, its data. ``data`` may be None: the sampler, the
envs, the Clock env's reference bank and the data-free metrics (``rmse``, ``nfe``, the
digits classifier metrics) need none of it. Every method below is needed only by the
consumers listed with it, which check for it (:func:`check_data`) and raise a
``ValueError`` naming the missing method.

- ``sample(n, class_labels=None, generator=None) -> [n, *shape]``: n fresh draws
  x_0 ~ p_data(· | c) (class ``class_labels[i]``; −1 or None: any class) from the
  ``torch.Generator``. Needed by the harness metrics ``energy``, ``frechet``,
  ``sliced_w``, ``precision``, ``recall``; IRL's expert states; Guidance
  ``expert_observations``; Learn to Guide.
- ``log_prob(x, sigma=0.0, class_labels=None) -> [n]``: log density of x under the data
  convolved with N(0, σ²I) (exact for mixtures). ``loglik``; Guidance
  ``reward="log_prob"``.
- ``class_log_posterior(x, sigma=0.0) -> [n, C]``: log p(c | x). ``class_acc``,
  ``class_tv`` (mixtures); Guidance ``reward="classifier"`` without a classifier.
- ``component_log_posterior(x, sigma=0.0, class_labels=None) -> [n, K]``: log p(k | x).
  ``mode_tv`` (mixtures).
- ``sample_labels(n, generator=None) -> [n]``: labels of the class histogram. Harness
  ``class_labels="data"``.
- ``class_weights`` (a ``[C]`` tensor): the class histogram. Envs drawing classes (else
  uniform).

The harness leaves a metric out of a row when the data lacks the method it needs, as it
does for metrics defined only for mixtures (``loglik`` on digits), except for the
``sample`` metrics: they raise. :class:`~diffusion_gym.denoisers.GaussianMixture` has every
method; :class:`~diffusion_gym.data.digits.DigitsData` has ``sample``,
``class_log_posterior`` and ``sample_labels``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import torch

__all__ = ["DATA_METHODS", "Data", "check_data"]

#: Method → what it means (the table above, for error messages).
DATA_METHODS: dict[str, str] = {
    "sample": "sample(n, class_labels=None, generator=None) -> [n, *shape] draws of the data",
    "log_prob": "log_prob(x, sigma=0.0, class_labels=None) -> [n] log density",
    "class_log_posterior": "class_log_posterior(x, sigma=0.0) -> [n, C] log p(c | x)",
    "component_log_posterior": (
        "component_log_posterior(x, sigma=0.0, class_labels=None) -> [n, K] log p(k | x)"
    ),
    "sample_labels": "sample_labels(n, generator=None) -> [n] labels of the class histogram",
}


@runtime_checkable
class Data(Protocol):
    """The one method every data object has; the optional ones are in the module table."""

    def sample(
        self,
        n: int,
        class_labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` draws x_0 ~ p_data(· | c), ``[n, *shape]``."""
        ...


def check_data(data, methods: Iterable[str], needed_by: str) -> None:
    """``ValueError`` naming the first of ``methods`` that ``data`` lacks (None: all).

    :param needed_by: who needs it, for the message (e.g. ``"metric 'energy'"``).
    """
    for m in methods:
        if not callable(getattr(data, m, None)):
            have = (
                "the preset has no data (data=None)"
                if data is None
                else f"the preset's data ({type(data).__name__}) has no {m}()"
            )
            raise ValueError(
                f"{needed_by} needs data.{DATA_METHODS.get(m, m)}; {have}: give the preset "
                "or env a data object with it (the Data protocol, "
                "diffusion_gym.data.protocol, docs/own_model.md), or leave out what needs it"
            )
