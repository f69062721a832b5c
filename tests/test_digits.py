"""Digits data, the shipped classifier and U-Net, the ring MLP, the training script."""

from __future__ import annotations

import json
import math

import pytest
import torch

from diffusion_gym import presets, schedules, steps
from diffusion_gym.data.digits import DigitsData
from diffusion_gym.denoisers.classifier import load_digits_classifier
from diffusion_gym.denoisers.networks import build_network, edm_loss
from diffusion_gym.metrics import digits_metrics
from diffusion_gym.train_denoiser import TrainConfig, _digits_sampler, main, train_edm


@pytest.fixture(scope="module")
def data():
    return DigitsData()


@pytest.fixture(scope="module")
def clf():
    return load_digits_classifier()


def test_digits_data_split(data):
    assert data.train_images.shape == (1347, 1, 8, 8) and data.test_images.shape == (450, 1, 8, 8)
    assert data.train_images.dtype == torch.float32
    assert float(data.train_images.min()) == -1.0 and float(data.train_images.max()) == 1.0
    # Stratified: every class holds out 25% ± one image.
    for c in range(10):
        n_test = int((data.test_labels == c).sum())
        n_all = n_test + int((data.train_labels == c).sum())
        assert abs(n_test - 0.25 * n_all) <= 1
    # Disjoint (no test image appears in train) and fixed.
    d = torch.cdist(data.test_images.flatten(1), data.train_images.flatten(1))
    assert int((d == 0).any(1).sum()) <= 2  # sklearn digits holds a few exact duplicates
    again = DigitsData()
    assert torch.equal(again.test_images, data.test_images)


def test_digits_data_sample(data):
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([3, 7, -1, 0] * 25)
    x = data.sample(100, labels, generator=g)
    assert x.shape == (100, 1, 8, 8)
    # Every sample is a training image of the requested class.
    d = torch.cdist(x.flatten(1), data.train_images.flatten(1))
    match = d.argmin(1)
    assert bool((d.min(1).values == 0).all())
    got = data.train_labels[match]
    known = labels >= 0
    assert torch.equal(got[known], labels[known])
    x2 = data.sample(100, labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="class_labels"):
        data.sample(3, torch.tensor([0, 10, 1]))


def test_classifier_accuracy(data, clf):
    with torch.no_grad():
        acc = float((clf(data.test_images).argmax(1) == data.test_labels).double().mean())
        feats = clf.features(data.test_images[:4])
    assert acc >= 0.97
    assert feats.shape == (4, 64)
    # The data set's class posterior (what reward="classifier" uses) is the same classifier.
    logp = data.class_log_posterior(data.test_images, 0.0)
    assert float((logp.argmax(1) == data.test_labels).double().mean()) == pytest.approx(acc)
    with pytest.raises(ValueError, match="sigma"):
        data.class_log_posterior(data.test_images[:2], 0.5)
    torch.testing.assert_close(
        clf.log_probs(data.test_images[:4]).exp().sum(1), torch.ones(4), atol=1e-5, rtol=0
    )


def test_digits_metrics_on_real_images(data, clf):
    m_test = digits_metrics(data.test_images, data.test_labels, classifier=clf)
    assert m_test["fd"] == pytest.approx(0.0, abs=1e-6)
    assert m_test["precision"] == 1.0 and m_test["recall"] == 1.0
    assert m_test["class_accuracy"] >= 0.97 and m_test["class_tv"] <= 0.02
    g = torch.Generator().manual_seed(1)
    train = data.train_images[torch.randperm(1347, generator=g)[:450]]
    m_train = digits_metrics(train, classifier=clf)
    # Random noise images are far worse than real held-out images.
    noise = torch.rand(450, 1, 8, 8, generator=g) * 2 - 1
    m_noise = digits_metrics(noise, torch.zeros(450, dtype=torch.long), classifier=clf)
    assert math.isnan(m_train["class_accuracy"])
    assert m_noise["fd"] > 20 * m_train["fd"]
    assert m_noise["precision"] < 0.5 < 0.8 < m_train["precision"]
    with pytest.raises(ValueError, match="shape"):
        digits_metrics(torch.zeros(4, 64), classifier=clf)


def test_tiny_training_run_reduces_loss(data):
    cfg = TrainConfig(steps=60, batch_size=64, lr=3e-3, warmup=5, ema_decay=0.9, seed=0)
    cfg.arch_kwargs = {"channels": [8, 16], "num_classes": 10, "emb_dim": 16}
    torch.manual_seed(cfg.seed)
    init = build_network("digits_unet", 0.75, **cfg.arch_kwargs).eval()
    trained, losses = train_edm("digits_unet", _digits_sampler(data), 0.75, cfg, progress=False)
    assert len(losses) == 60

    def held_out_loss(net):
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return float(edm_loss(net, data.test_images, data.test_labels, generator=g))

    before, after = held_out_loss(init), held_out_loss(trained.eval())
    assert after < 0.8 * before


def test_train_script_writes_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "mlp.safetensors"
    main(["ring8-mlp", "--out", str(out), "--steps", "3", "--no-progress"])
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["arch"] == "mixture_mlp" and meta["train_config"]["steps"] == 3
    p = presets.make("gmm-ring8-mlp", checkpoint=out)
    assert p.denoiser(torch.zeros(2, 2), 1.0, torch.tensor([0, -1])).shape == (2, 2)
    assert "final_loss" in capsys.readouterr().out


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        presets.make("digits", checkpoint=tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        load_digits_classifier(tmp_path / "absent.safetensors")


def test_digits_preset_samples(clf):
    p = presets.make("digits")
    assert (p.num_classes, p.denoiser.shape, p.prior_std) == (10, (1, 8, 8), p.sigma_max)
    n = 200
    labels = torch.arange(n) % 10
    x_t = p.prior_std * torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sigmas = schedules.karras(18, p.sigma_min, p.sigma_max)
    x0 = steps.sample(p.denoiser, x_t, sigmas, class_labels=labels)
    m = digits_metrics(x0, labels, classifier=clf)
    # Reference measured in the same run: 200 real training images against the test set.
    real = p.data.sample(n, labels, generator=torch.Generator().manual_seed(0))
    m_real = digits_metrics(real, labels, classifier=clf)
    # Measured (1000 samples): FD 4.15 against 3.41 for real images, class accuracy 0.986.
    assert m["class_accuracy"] >= 0.95
    assert m["fd"] < 2 * m_real["fd"]
    assert m["precision"] > 0.75 and m["recall"] > 0.75
    # At NFE 9 the schedule matters: uniform-in-σ is far worse than EDM ρ = 7.
    lo, hi = p.sigma_min, p.sigma_max
    fd = {}
    for name, s in (
        ("edm", schedules.karras(5, lo, hi)),
        ("uniform", schedules.uniform(5, lo, hi)),
    ):
        fd[name] = digits_metrics(steps.sample(p.denoiser, x_t, s, class_labels=labels), labels)[
            "fd"
        ]
    assert fd["uniform"] > 10 * fd["edm"]
    assert fd["edm"] > 2 * m["fd"]


def test_ring8_mlp_preset():
    p = presets.make("gmm-ring8-mlp")
    assert not p.exact and p.data.num_classes == 8
    n = 800
    labels = torch.arange(n) % 8
    x_t = p.prior_std * torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    x0 = steps.sample(
        p.denoiser, x_t, schedules.karras(18, p.sigma_min, p.sigma_max), class_labels=labels
    )
    # The exact Bayes classifier agrees with the requested class.
    pred = p.data.class_log_posterior(x0.double()).argmax(1)
    assert float((pred == labels).double().mean()) >= 0.95
    # Mean log-likelihood close to that of true samples (exact mixture as the judge).
    true = p.data.sample(n, labels, generator=torch.Generator().manual_seed(1))
    ll_model = float(p.data.log_prob(x0.double(), 0.0, labels).mean())
    ll_true = float(p.data.log_prob(true, 0.0, labels).mean())
    assert ll_model > ll_true - 1.0
