"""Learn to Guide with class conditioning and the reward-tilted target (issue #20 item 6).

The tilted target p_λ(x|c) ∝ p(x|c)·exp(λR(x, c)): its energy distance is estimated with
self-normalised importance weights on real samples (docs/image_scale.md, "Learn to Guide on
digits"). These tests check the estimator against a closed form, that λ = 0 is the plain
loss, that the class enters the weights, and that a tiny digits run learns.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from baselines import digits_guidance as DG  # noqa: N812
from baselines import guidance as G  # noqa: N812
from baselines.autoguidance import Autoguidance
from baselines.evaluate import FixedSchedule
from diffusion_gym import metrics as M  # noqa: N812
from diffusion_gym import presets, schedules
from diffusion_gym import steps as St  # noqa: N812
from diffusion_gym.denoisers.autoguided import AutoguidedDenoiser
from diffusion_gym.denoisers.classifier import load_digits_classifier
from diffusion_gym.noise import make_labels, make_noise


def test_tilt_weights_are_uniform_at_zero_and_softmax_otherwise():
    r = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(
        G.tilt_log_weights(r, 0.0), torch.full((3, 7), -math.log(7.0), dtype=torch.float64)
    )
    lw = G.tilt_log_weights(r, 2.5)
    assert torch.allclose(lw.exp().sum(1), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(lw, 2.5 * r - torch.logsumexp(2.5 * r, 1, keepdim=True))
    with pytest.raises(ValueError, match="finite"):
        G.tilt_log_weights(torch.tensor([[0.0, -math.inf]]), 1.0)
    with pytest.raises(ValueError, match="tilt"):
        G.tilt_log_weights(r, math.nan)


def test_tilted_energy_at_zero_is_the_unbiased_energy_distance():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 50, 3, generator=g, dtype=torch.float64)
    y = 0.5 + torch.randn(2, 60, 3, generator=g, dtype=torch.float64)
    lw = G.tilt_log_weights(torch.randn(2, 60, generator=g, dtype=torch.float64), 0.0)
    got = G.tilted_energy(x, y, lw)
    assert torch.allclose(got, G.tilted_energy(x, y))
    for b in range(2):
        assert float(got[b]) == pytest.approx(M.energy_distance(x[b], y[b]), rel=1e-8)


def test_snis_matches_the_closed_form_tilt_of_a_gaussian():
    """N(μ, vI) tilted by R(x) = a·x is N(μ + λ v a, vI): the importance-weighted energy
    distance from samples of that closed form (noised to s) is ≈ 0, the untilted one is not."""
    g = torch.Generator().manual_seed(2)
    n, d, v, lam, s = 4000, 2, 0.5, 1.5, 0.3
    mu, a = torch.tensor([1.0, -1.0]).double(), torch.tensor([0.8, 0.4]).double()
    y0 = mu + math.sqrt(v) * torch.randn(n, d, generator=g, dtype=torch.float64)
    lw = G.tilt_log_weights((y0 @ a)[None], lam)  # one conditioning
    wmean = (lw.exp()[0, :, None] * y0).sum(0)
    assert torch.allclose(wmean, mu + lam * v * a, atol=0.06)
    y = (y0 + s * torch.randn(n, d, generator=g, dtype=torch.float64))[None]
    tilted = (
        mu
        + lam * v * a
        + math.sqrt(v + s * s) * torch.randn(1, 1500, d, generator=g, dtype=torch.float64)
    )
    plain = mu + math.sqrt(v + s * s) * torch.randn(1, 1500, d, generator=g, dtype=torch.float64)
    to_tilted = float(G.tilted_energy(tilted, y, lw))
    assert abs(to_tilted) < 0.01
    assert float(G.tilted_energy(tilted, y)) > 20 * max(abs(to_tilted), 1e-3)  # untilted target
    assert float(G.tilted_energy(plain, y, lw)) > 20 * max(abs(to_tilted), 1e-3)


def test_tilted_training_with_a_constant_reward_equals_untilted_training(ring8):
    """Uniform weights (constant R, any λ) run the whole tilted path and give the plain loss."""
    sig = torch.tensor([80.0, 1.4101, 0.3168, 0.0], dtype=torch.float64)
    base = dict(start="sampler", iterations=6, conditions=4, particles=8, lr=1e-2)
    _, h0 = G.train_learn_to_guide(ring8, sig, config=G.L2GConfig(**base))
    const = lambda x0, c: torch.full((x0.shape[0],), -0.7, dtype=torch.float64)  # noqa: E731
    _, h1 = G.train_learn_to_guide(ring8, sig, config=G.L2GConfig(**base, tilt=3.0), reward=const)
    assert h1 == pytest.approx(h0, rel=1e-9, abs=1e-12)
    # and a real reward changes the loss
    _, h2 = G.train_learn_to_guide(ring8, sig, config=G.L2GConfig(**base, tilt=3.0))
    assert h2 != pytest.approx(h0, rel=1e-6)


def test_class_conditioning_changes_the_learned_weights(ring8):
    """Tilt only class 1 outwards (R = 5·x·m̂_1 for c = 1, 0 otherwise: its target's mean moves
    out by λ·5·0.04 = 0.2) on the exact ring, where w = 1 is optimal for the plain target:
    guidance pushes class-1 samples outwards, so the last step's ω(c = 1) must rise above
    every other class's."""
    sig = torch.tensor([80.0, 1.4101, 0.3168, 0.0], dtype=torch.float64)
    m1 = ring8.denoiser.means[ring8.denoiser.component_classes == 1][0]
    u = m1 / m1.norm()

    def reward(x0, c):
        return 5.0 * (x0 @ u) * (c == 1).double()

    cfg = G.L2GConfig(
        start="sampler", iterations=120, conditions=16, particles=16, targets=64, lr=1e-2,
        tilt=1.0, embed_dim=4,
    )  # fmt: skip
    net, _ = G.train_learn_to_guide(ring8, sig, config=cfg, reward=reward)
    w = G.LearnedGuidance("l", sig, net).weights(torch.arange(8))[-1]  # last step, per class
    others = torch.cat([w[:1], w[2:]])
    assert float(w[1]) > float(others.max()) + 0.03, w


def test_guidance_net_embedding_and_label_check():
    net = G.GuidanceNet(10, hidden=8, embed_dim=4)
    assert net.embed is not None and net.net[0].in_features == 7
    t = torch.full((10,), 2.0, dtype=torch.float64)
    assert net(torch.arange(10), 0.5 * t, t).unique().numel() > 1  # class codes differ
    with pytest.raises(ValueError, match="class labels"):
        net(torch.tensor([10]), t[:1] / 2, t[:1])
    with pytest.raises(ValueError, match="embed_dim"):
        G.GuidanceNet(10, embed_dim=-1)
    with pytest.raises(ValueError, match="targets"):
        G.train_learn_to_guide(
            presets.make("gmm-ring8"), [80.0, 1.0, 0.0], config=G.L2GConfig(targets=1)
        )


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return presets.make("digits")


def test_tiny_digits_run_learns(digits):
    """Started at w = 3 (ω = 2), far worse than w = 1 at NFE 9 on digits, a short run of the
    sampler-start energy loss lowers w and the class-conditional energy distance to real
    images, measured against the untrained start on the same noise."""
    p = digits
    sig = schedules.karras(5, p.sigma_min, p.sigma_max)
    cfg = DG.digits_l2g_config(
        iterations=25, conditions=4, particles=8, targets=16, lr=5e-2, init_omega=2.0
    )
    net, hist = G.train_learn_to_guide(p, sig, config=cfg)
    assert all(math.isfinite(h) for h in hist)
    n = 200
    c = torch.arange(n) % 10
    x_T = p.prior_std * torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(5))  # noqa: N806
    real = p.data.sample(n, c, generator=torch.Generator().manual_seed(6)).reshape(n, -1)

    def energy(w):
        x = St.sample(p.denoiser, x_T, sig, class_labels=c, guidance=w).reshape(n, -1)
        return M.class_conditional(M.energy_distance, x, real, c, c, 10)

    w = G.LearnedGuidance("l", sig, net).weights(c)
    assert float(w.mean()) < 2.5  # moved down from w = 3
    assert energy(w) < 0.8 * energy(3.0)


def test_feature_space_map_is_phi_of_the_denoised_estimate(digits, ring8):
    """``space="features"``: T_s(x) = φ(D(x; s, c)), φ(x) itself at s = 0, differentiable in
    x; a preset without a data feature map is refused by name."""
    p, n = digits, 6
    c = torch.arange(n) % 10
    x = p.data.sample(n, c, generator=torch.Generator().manual_seed(0)).double()
    x = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    s = torch.tensor([0.0, 0.0, 0.5, 0.5, 3.0, 3.0], dtype=torch.float64)
    embed = G._feature_embedding(p)
    x.requires_grad_(True)
    t = embed(x, s, c)
    assert t.shape == (n, 64) and t.dtype == torch.float64
    with torch.no_grad():
        assert torch.allclose(t[:2], p.data.features(x[:2]), atol=1e-5)  # float32 convs
        d = p.denoiser(x[2:], s[2:], c[2:])
        assert torch.allclose(t[2:], p.data.features(d), atol=1e-5)
        assert not torch.allclose(t[2:4], p.data.features(x[2:4]))  # s > 0: not φ(x)
    metric = load_digits_classifier()  # φ is the *training* classifier's, not the metric's
    assert not torch.allclose(t[:2].detach(), metric.features(x[:2].detach()).double(), atol=0.1)
    t.sum().backward()
    assert x.grad is not None and bool((x.grad[:2] != 0).any()) and bool((x.grad[2:] != 0).any())
    with pytest.raises(ValueError, match="data.features"):
        G.train_learn_to_guide(ring8, schedules.karras(3, 0.002, 80.0),
                               config=G.L2GConfig(space="features", iterations=1))  # fmt: skip
    with pytest.raises(ValueError, match="space must be"):
        G.train_learn_to_guide(p, schedules.karras(3, 0.002, 20.0),
                               config=G.L2GConfig(space="latent", iterations=1))  # fmt: skip


def test_tiny_digits_run_learns_in_feature_space(digits):
    """The feature-space loss, started at w = 3, lowers w and the class-conditional energy
    distance to real images in the classifier's features (the space FD_digits is measured
    in), against the untrained start on the same noise."""
    p = digits
    sig = schedules.karras(5, p.sigma_min, p.sigma_max)
    cfg = DG.digits_l2g_config(iterations=25, conditions=4, particles=8, targets=16, lr=5e-2,
                               init_omega=2.0, space="features")  # fmt: skip
    net, hist = G.train_learn_to_guide(p, sig, config=cfg)
    assert all(math.isfinite(h) for h in hist)
    n = 200
    c = torch.arange(n) % 10
    x_T = p.prior_std * torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(5))  # noqa: N806
    real = p.data.features(p.data.sample(n, c, generator=torch.Generator().manual_seed(6)))

    def energy(w):
        x = p.data.features(St.sample(p.denoiser, x_T, sig, class_labels=c, guidance=w))
        return M.class_conditional(M.energy_distance, x, real, c, c, 10)

    w = G.LearnedGuidance("l", sig, net).weights(c)
    assert float(w.mean()) < 2.5
    assert energy(w) < 0.8 * energy(3.0)


def test_digits_guidance_cli_writes_table_json_and_plots(digits, tmp_path):
    res = DG.main(
        [
            "--nfe", "5", "--num-samples", "40", "--constants", "1", "2", "--interval-w", "2",
            "--ramp-w", "2", "--autoguidance-w", "1", "2", "--search-samples", "20",
            "--iterations", "2", "--conditions", "2", "--particles", "2", "--targets", "4",
            "--train-seeds", "0", "1", "--tilts", "2",
            "--out", str(tmp_path), "--no-progress",
        ]
    )  # fmt: skip
    rows = res["rows"]
    expected = {"cfg-1", "cfg-2", "interval", "ramp-linear", "ramp-cosine", "autoguidance",
                "learn-to-guide-s0", "learn-to-guide-s1", "learn-to-guide-tilt2"}  # fmt: skip
    assert set(rows) == expected
    assert len(rows["learn-to-guide-s0"]["w_per_class"]) == 10
    # FD in the training classifier's features beside the metric classifier's, every row
    assert all(r["fd_b"] > 0 and r["fd_b"] != r["fd"] for r in rows.values())
    saved = json.loads((tmp_path / "digits_nfe5.json").read_text())
    assert saved["summary"]["best_constant"] in ("cfg-1", "cfg-2")
    assert (tmp_path / "digits_nfe5.md").read_text().startswith("#### digits, NFE 5")
    assert (tmp_path / "img" / "digits_nfe5_grids.png").stat().st_size > 1000
    assert (tmp_path / "img" / "digits_nfe5_tilt.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="nfe"):
        DG.run(nfe=4)


def test_autoguidance_pair_and_learned_autoguidance(ring8):
    """ω_φ on the autoguidance direction: w = 1 is the good model exactly, w = 0 the bad one,
    per-sample weights mix them; a short run trains and deploys through the same step."""
    bad = presets.make("gmm-ring8-imperfect").denoiser
    pair = AutoguidedDenoiser(ring8.denoiser, bad)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64)
    sig, c = torch.full((6,), 0.7, dtype=torch.float64), torch.arange(6) % 8
    d_good, d_bad = ring8.denoiser(x, sig, c), bad(x, sig, c)
    pair.weight = 1.0
    assert torch.equal(pair(x, sig, c), d_good)
    pair.weight = torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    want = torch.stack([d_bad[0], d_good[1], 2 * d_good[2] - d_bad[2]])
    assert torch.allclose(pair(x, sig, c)[:3], want)
    sched = torch.tensor([80.0, 1.4101, 0.3168, 0.0], dtype=torch.float64)
    cfg = G.L2GConfig(start="sampler", iterations=4, conditions=4, particles=4,
                      guide="gmm-ring8-imperfect")  # fmt: skip
    net, hist = G.train_learn_to_guide(ring8, sched, config=cfg)
    assert all(math.isfinite(h) for h in hist)
    row = G.LearnedGuidance("a", sched, net, guide="gmm-ring8-imperfect")
    x_T = 80 * torch.randn(16, 2, generator=g, dtype=torch.float64)  # noqa: N806
    labels = torch.arange(16) % 8
    got = row.sample(ring8, x_T, labels, None)
    w, xx = row.weights(labels), x_T
    for i in range(3):
        pair.weight = w[i]
        xx, _ = St.step(pair, xx, sched[i], sched[i + 1], class_labels=labels, guidance=None)
    assert torch.equal(got, xx)
    assert "autoguidance" in row.describe() and row.describe()["guidance"] == [1.0] * 3


def test_learned_guidance_with_churn_is_the_harness_sampler(ring8):
    """``gamma``: a net whose ω is constant deploys exactly like the harness's constant
    (w, γ) rows (FixedSchedule for CFG, Autoguidance for the autoguidance direction) on the
    same per-sample streams; training with churn runs; bad γ is refused."""
    sched = torch.tensor([80.0, 1.4101, 0.3168, 0.0], dtype=torch.float64)
    net = G.GuidanceNet(8, init_omega=0.5)
    with torch.no_grad():
        net.net[-1].weight.zero_()  # ω = softplus(bias) = 0.5 for every (c, s, t)
    x_T, streams = make_noise(ring8, 32, 5)  # noqa: N806
    labels = make_labels(ring8, 32, 5)
    bad = "gmm-ring8-imperfect"
    for guide, fixed in ((None, FixedSchedule("f", sched, "heun", 1.5, 0.3)),
                         (bad, Autoguidance("a", sched, bad, 1.5, "heun", 0.3))):  # fmt: skip
        row = G.LearnedGuidance("l", sched, net, guide=guide, gamma=0.3)
        assert not row.deterministic and row.describe()["gamma"] == [0.3] * 3
        got = row.sample(ring8, x_T, labels, streams)
        want = fixed.sample(ring8, x_T, labels, streams)
        assert torch.allclose(got, want, atol=1e-6)
        plain = G.LearnedGuidance("l", sched, net, guide=guide).sample(ring8, x_T, labels, streams)
        assert not torch.allclose(got, plain, atol=1e-3)
    cfg = G.L2GConfig(start="sampler", iterations=3, conditions=4, particles=4, gamma=0.3)
    _, hist = G.train_learn_to_guide(ring8, sched, config=cfg)
    assert all(math.isfinite(h) for h in hist)
    with pytest.raises(ValueError, match="gamma must be a finite float >= 0"):
        G.train_learn_to_guide(ring8, sched, config=G.L2GConfig(gamma=-0.1, iterations=1))
    with pytest.raises(ValueError, match="gamma > 0 needs loss='energy'"):
        G.train_learn_to_guide(ring8, sched, config=G.L2GConfig(gamma=0.3, loss="l2"))
    with pytest.raises(ValueError, match="gamma must be a finite float >= 0"):
        G.LearnedGuidance("l", sched, net, gamma=float("nan"))


def test_select_keeps_the_best_scored_parameters(ring8):
    """``select``: the network is scored at the start, every ``select_every`` iterations and
    at the end; the best-scoring parameters are returned (ties: the earliest), the history
    says when. A score that prefers the start returns the start bit for bit."""
    sig = torch.tensor([80.0, 1.4101, 0.3168, 0.0], dtype=torch.float64)
    cfg = G.L2GConfig(start="sampler", iterations=5, conditions=4, particles=8, lr=5e-2)
    probe = torch.tensor([0, 3]), torch.tensor([0.3, 0.0]), torch.tensor([1.4, 0.3])
    start = G.train_learn_to_guide(ring8, sig, config=G.L2GConfig(**{**vars(cfg), "iterations": 0}))
    w0 = start[0](*probe)
    # a score that is lowest at the start: distance of ω to its initial value
    picked: dict = {}
    net, hist = G.train_learn_to_guide(
        ring8, sig, config=cfg, select=lambda n: float((n(*probe) - w0).abs().sum()),
        select_every=2, selection=picked,
    )  # fmt: skip
    assert len(hist) == 5 and [it for it, _ in picked["history"]] == [0, 2, 4, 5]
    assert picked["iteration"] == 0 and picked["score"] == 0.0
    torch.testing.assert_close(net(*probe), w0, rtol=0, atol=0)
    # a score that is lowest at the end: the last iterate
    last = G.train_learn_to_guide(ring8, sig, config=cfg)[0](*probe)
    counter = iter(range(10, 0, -1))
    net2, _ = G.train_learn_to_guide(
        ring8, sig, config=cfg, select=lambda n: next(counter), select_every=2, selection=picked
    )
    assert picked["iteration"] == 5
    torch.testing.assert_close(net2(*probe), last, rtol=0, atol=0)
    with pytest.raises(ValueError, match="select and select_every"):
        G.train_learn_to_guide(ring8, sig, config=cfg, select_every=2)


def test_digits_guidance_cli_selects_on_validation_fd(digits, tmp_path):
    """``--select-every`` with ``--auto-l2g --no-cfg-l2g``: only the autoguidance-direction
    rows, each with its selection record (scored at the start and every k iterations)."""
    res = DG.main(
        [
            "--nfe", "5", "--num-samples", "30", "--constants", "1", "--interval-w", "2",
            "--ramp-w", "2", "--autoguidance-w", "1", "1.5", "--search-samples", "20",
            "--iterations", "2", "--conditions", "2", "--particles", "2", "--targets", "4",
            "--train-seeds", "0", "--auto-l2g", "--no-cfg-l2g", "--preset", "digits-imperfect",
            "--select-every", "1", "--select-samples", "30",
            "--out", str(tmp_path), "--no-progress",
        ]
    )  # fmt: skip
    rows = res["rows"]
    assert "learn-to-guide-s0" not in rows and "learn-to-guide-auto-s0" in rows
    sel = rows["learn-to-guide-auto-s0"]["selected"]
    assert [it for it, _ in sel["history"]] == [0, 1, 2]
    assert sel["score"] == min(s for _, s in sel["history"])
    assert res["settings"]["select"] == {"every": 1, "samples": 30, "seed": 7919}
    with pytest.raises(ValueError, match="evaluation seed"):
        DG.run("digits", 5, seed=7919, select_every=1, train_seeds=[0], constants=(1.0,),
               interval_w=(2.0,), ramp_w=(2.0,), auto_w=(), search_samples=10,
               num_samples=10, progress=False)  # fmt: skip


def test_digits_guidance_cli_churn_autoguidance_constants_and_fd_search(digits, tmp_path):
    """``--gammas`` × ``--constants`` and ``--auto-constants`` rows (all evaluated, the best
    of each family in the summary), ``--search-metric fd_digits`` and ``--l2g-gamma``."""
    res = DG.main(
        [
            "--nfe", "5", "--num-samples", "30", "--constants", "1", "1.5", "--gammas", "0",
            "0.3", "--auto-constants", "1.5", "--interval-w", "2", "--ramp-w", "2",
            "--autoguidance-w", "1", "1.5", "--search-samples", "20",
            "--search-metric", "fd_digits", "--iterations", "2", "--conditions", "2",
            "--particles", "2", "--targets", "4", "--train-seeds", "0", "--auto-l2g",
            "--no-cfg-l2g", "--l2g-gamma", "0.3", "--preset", "digits-imperfect",
            "--out", str(tmp_path), "--no-progress",
        ]
    )  # fmt: skip
    rows, sm = res["rows"], res["summary"]
    assert {"cfg-1", "cfg-1-g0.3", "cfg-1.5", "cfg-1.5-g0.3", "auto-1.5", "auto-1.5-g0.3"} <= set(
        rows
    )
    assert rows["cfg-1.5-g0.3"]["gamma"] == 0.3 and rows["auto-1.5"]["w"] == 1.5
    assert rows["cfg-1.5-g0.3"]["fd"] != rows["cfg-1.5"]["fd"]
    assert sm["best_constant"].startswith("cfg-") and sm["best_auto_constant"].startswith("auto-")
    assert res["settings"]["l2g"]["gamma"] == 0.3
    assert res["settings"]["search_rule"].startswith("training fd_digits")
    with pytest.raises(ValueError, match="auto_constants need a shipped guide"):
        DG.run("gmm-ring8", 5, auto_constants=(1.5,), train_seeds=[0], progress=False)
