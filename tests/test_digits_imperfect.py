"""The deliberately weak digits model `digits-imperfect` and its guide."""

from __future__ import annotations

import pytest
import torch

from diffusion_gym import presets, schedules, steps
from diffusion_gym.denoisers.classifier import load_digits_classifier
from diffusion_gym.metrics import digits_metrics
from diffusion_gym.train_denoiser import DEFAULT_STEPS, _config_for


@pytest.fixture(scope="module")
def clf():
    return load_digits_classifier()


def _samples(preset, n: int, num_steps: int, guidance: float = 1.0) -> torch.Tensor:
    labels = torch.arange(n) % 10
    x_t = preset.prior_std * torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sig = schedules.karras(num_steps, preset.sigma_min, preset.sigma_max)
    return steps.sample(preset.denoiser, x_t, sig, class_labels=labels, guidance=guidance)


def test_imperfect_presets_load():
    for name in ("digits-imperfect", "digits-imperfect-guide"):
        p = presets.make(name)
        assert p.name == name and name in presets.names() and p.description
        assert (p.num_classes, p.denoiser.shape, p.sigma_max, p.prior_std) == (
            10,
            (1, 8, 8),
            20,
            20,
        )
        assert p.defaults == presets.make("digits").defaults
        params = sum(v.numel() for v in p.denoiser.parameters())
        assert params < 0.5 * sum(v.numel() for v in presets.make("digits").denoiser.parameters())
    # The training targets that made them: the small U-Net, fewer steps than `digits`.
    assert DEFAULT_STEPS["digits-imperfect-guide"] < DEFAULT_STEPS["digits-imperfect"]
    assert DEFAULT_STEPS["digits-imperfect"] < DEFAULT_STEPS["digits"]
    assert _config_for("digits-imperfect", None, 0).arch_kwargs["channels"] == [16, 32]


def test_imperfect_is_weaker_than_digits_and_guidance_helps(clf):
    """On the same noise and labels (35 Heun NFE), `digits-imperfect` is clearly worse than
    `digits`, its guide worse still, and CFG w = 1.5 improves it (guidance has work to do)."""
    n = 200
    labels = torch.arange(n) % 10
    m = {
        name: digits_metrics(_samples(presets.make(name), n, 18), labels, classifier=clf)
        for name in ("digits", "digits-imperfect", "digits-imperfect-guide")
    }
    imp = m["digits-imperfect"]
    assert imp["fd"] > 3 * m["digits"]["fd"]
    assert imp["class_accuracy"] < m["digits"]["class_accuracy"]
    assert imp["precision"] < m["digits"]["precision"]
    assert m["digits-imperfect-guide"]["fd"] > 2 * imp["fd"]
    guided = digits_metrics(
        _samples(presets.make("digits-imperfect"), n, 18, guidance=1.5), labels, classifier=clf
    )
    assert guided["fd"] < 0.7 * imp["fd"]
    assert guided["class_accuracy"] > imp["class_accuracy"]
