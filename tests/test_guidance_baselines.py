"""Guidance baselines: weight profiles, grid searches, Learn to Guide training."""

import math

import pytest
import torch

from baselines import guidance as G
from baselines import schedules as B
from diffusion_gym import metrics as M  # noqa: N812
from diffusion_gym import presets
from diffusion_gym import steps as _steps
from diffusion_gym.noise import make_labels, make_noise

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ring8():
    return presets.make("gmm-ring8")


def test_interval_weights():
    sig = torch.tensor([80.0, 10.0, 1.0, 0.1, 0.0], dtype=torch.float64)
    assert G.interval_weights(sig, 3.0, 0.5, 20.0) == [1.0, 3.0, 3.0, 1.0]
    with pytest.raises(ValueError):
        G.interval_weights(sig, 3.0, 2.0, 1.0)


def test_ramps():
    sig = torch.tensor([80.0, 10.0, 1.0, 0.0], dtype=torch.float64)
    assert G.ramp_weights(sig, 3.0, "linear") == pytest.approx([1.0, 2.0, 3.0])
    assert G.ramp_weights(sig, 3.0, "cosine") == pytest.approx([1.0, 2.0, 3.0])
    sig5 = torch.tensor([80.0, 10.0, 1.0, 0.1, 0.01, 0.0], dtype=torch.float64)
    cos = G.ramp_weights(sig5, 3.0, "cosine")
    assert cos[1] == pytest.approx(1 + 2 * (1 - math.cos(math.pi / 4)) / 2)
    with pytest.raises(ValueError):
        G.ramp_weights(sig, 3.0, "square")


def test_edm_churn():
    sig = torch.tensor([80.0, 10.0, 1.0, 0.0], dtype=torch.float64)
    assert G.edm_churn(sig, 0.3) == pytest.approx([0.1, 0.1, 0.1])
    assert G.edm_churn(sig, 40.0, s_tmax=20.0) == pytest.approx(
        [0.0, math.sqrt(2) - 1] * 1 + [math.sqrt(2) - 1]
    )


def test_search_constant_picks_minimum(ring8):
    sig = B.classic("edm", 5, ring8, rho=10.0)
    w, scores = G.search_constant(ring8, sig, grid=(1.0, 3.0), num_samples=128)
    assert w == min(scores, key=scores.get)
    # exact denoiser: strong guidance is worse than none
    assert scores[3.0] > scores[1.0]
    # independent recomputation of w = 3 (search_constant goes through training_energy):
    # the training noise, steps.sample, and the unbiased energy distance per class by cdist
    salt = B.TRAIN_SALT
    x_T, _ = make_noise(ring8, 128, salt)  # noqa: N806
    labels = make_labels(ring8, 128, salt, "balanced")
    real = ring8.data.sample(128, labels, generator=torch.Generator().manual_seed(salt))
    x = _steps.sample(ring8.denoiser, x_T, sig, class_labels=labels, guidance=3.0)
    per_class = []
    for c in range(8):
        a, b = x[labels == c], real[labels == c]
        n = a.shape[0]
        within = torch.cdist(a, a).sum() / (n * (n - 1)) + torch.cdist(b, b).sum() / (n * (n - 1))
        per_class.append(float(2 * torch.cdist(a, b).mean() - within))
    assert sum(per_class) / 8 == pytest.approx(scores[3.0], rel=1e-9)


def test_guidance_net_nonnegative():
    net = G.GuidanceNet(4, hidden=8, init_omega=0.5)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 3)  # arbitrary weights: softplus keeps ω >= 0
    c = torch.arange(64) % 4
    t = torch.logspace(-3, 2, 64, dtype=torch.float64)
    s = torch.where(torch.arange(64) % 3 == 0, torch.zeros_like(t), 0.5 * t)
    assert bool((net(c, s, t) >= 0).all())


@pytest.mark.parametrize("loss", ["energy", "l2"])
def test_l2g_loss_decreases_and_omega_shrinks_on_exact(ring8, loss):
    """Exact denoiser, started at ω = 2: the loss falls and ω moves towards 0."""
    sig = B.classic("edm", 5, ring8, rho=10.0)
    cfg = G.L2GConfig(loss=loss, iterations=80, conditions=16, particles=8, lr=1e-2, init_omega=2.0)
    net, hist = G.train_learn_to_guide(ring8, sig, config=cfg)
    k = 15
    assert sum(hist[-k:]) / k < sum(hist[:k]) / k
    w = G.LearnedGuidance("l2g", sig, net).weights(torch.arange(8))
    assert bool((w >= 1).all())
    assert float(w.mean()) < 2.0  # started at w = 3


def test_l2g_sampler_start_beats_unguided_on_imperfect():
    """Imperfect ring (over-dispersed model): ω trained on the sampler's own x_t lowers the
    final class-conditional energy distance below w = 1 on the same noise."""
    p = presets.make("gmm-ring8-imperfect")
    sig = torch.tensor([80.0, 1.8242, 0.4904, 0.0], dtype=torch.float64)  # its NFE-5 oracle
    cfg = G.L2GConfig(
        start="sampler", iterations=100, conditions=8, particles=16, lr=1e-2, init_omega=0.1
    )
    net, hist = G.train_learn_to_guide(p, sig, config=cfg)
    assert all(math.isfinite(h) for h in hist)
    g = torch.Generator().manual_seed(7)
    c = torch.arange(1024) % 8
    x_T = 80 * torch.randn(1024, 2, generator=g, dtype=torch.float64)  # noqa: N806
    real = p.data.sample(1024, c, generator=g)

    def energy(w):
        x = _steps.sample(p.denoiser, x_T, sig, class_labels=c, guidance=w, solver="heun")
        return M.class_conditional(M.energy_distance, x, real, c, c, 8)

    w = G.LearnedGuidance("l2g", sig, net).weights(c)
    assert bool((w >= 1).all()) and float(w[-1].mean()) > 1.05  # guides the last step
    assert energy(w) < 0.6 * energy(1.0)


def test_l2g_reward_variant_runs(ring8):
    sig = B.classic("edm", 3, ring8, rho=10.0)
    cfg = G.L2GConfig(iterations=5, conditions=4, particles=4, reward_weight=0.1)
    net, hist = G.train_learn_to_guide(ring8, sig, config=cfg)
    assert len(hist) == 5 and all(math.isfinite(h) for h in hist)


def test_l2g_rejects_bad_config(ring8):
    sig = B.classic("edm", 3, ring8)
    with pytest.raises(ValueError, match="loss"):
        G.train_learn_to_guide(ring8, sig, config=G.L2GConfig(loss="kl"))
    with pytest.raises(ValueError, match="particles"):
        G.train_learn_to_guide(ring8, sig, config=G.L2GConfig(particles=1))
    with pytest.raises(ValueError, match="start"):
        G.train_learn_to_guide(ring8, sig, config=G.L2GConfig(start="data"))
    with pytest.raises(ValueError, match="start"):
        G.train_learn_to_guide(ring8, sig, config=G.L2GConfig(loss="l2", start="sampler"))
