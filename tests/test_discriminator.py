"""Occupancy discriminator and f-divergence rewards (agents/discriminator.py)."""

import math

import pytest
import torch

from agents.discriminator import (
    DIVERGENCES,
    Discriminator,
    DiscriminatorConfig,
    f_divergence,
    logistic_loss,
    reward_from_logit,
    train_discriminator,
)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_reward_is_minus_functional_derivative(name):
    # r(u) must equal -dD_f/dq(s) for D_f(p||q) = sum q f(p/q): computed here by autograd.
    g = torch.Generator().manual_seed(0)
    p = torch.rand(7, generator=g, dtype=torch.float64) + 0.1
    q = (torch.rand(7, generator=g, dtype=torch.float64) + 0.1).requires_grad_(True)
    (grad,) = torch.autograd.grad(f_divergence(name, p, q), q)
    r = reward_from_logit(torch.log(p / q.detach()), name)
    torch.testing.assert_close(r, -grad)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_variational_bound_is_tight_at_the_true_ratio(name):
    # D_f(P||Q) = E_P[f'(u)] - E_Q[f*(f'(u))] with f*(f'(u)) = reward; f' by autograd.
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(5, generator=g, dtype=torch.float64), 0)
    q = torch.softmax(torch.randn(5, generator=g, dtype=torch.float64), 0)
    u = (p / q).requires_grad_(True)
    (fprime,) = torch.autograd.grad(DIVERGENCES[name](u).sum(), u)
    bound = (p * fprime).sum() - (q * reward_from_logit(torch.log(u.detach()), name)).sum()
    torch.testing.assert_close(bound, f_divergence(name, p, q))


def test_named_closed_forms():
    ell = torch.tensor([-1.0, 0.0, 2.0])
    torch.testing.assert_close(reward_from_logit(ell, "reverse_kl"), ell - 1)
    d = torch.sigmoid(ell)  # GAIL: -log(1 - D) - log 2
    torch.testing.assert_close(reward_from_logit(ell, "js"), -torch.log(1 - d) - math.log(2))
    torch.testing.assert_close(reward_from_logit(ell, "forward_kl"), ell.exp())
    torch.testing.assert_close(reward_from_logit(ell, "chi2"), (2 * ell).exp() - 1)
    with pytest.raises(ValueError, match="divergence"):
        reward_from_logit(ell, "tv")


@pytest.mark.parametrize(
    "opts", [{}, {"spectral_norm": True}, {"grad_penalty": 1.0, "label_smoothing": 0.1}]
)
def test_separates_shifted_gaussians_and_logit_estimates_log_ratio(opts):
    # p_E = N(m, I), p_pi = N(0, I) in 2-D: log ratio = m.s - |m|^2/2, linear in s.
    torch.manual_seed(0)
    m = torch.tensor([1.0, 0.5])
    cfg = DiscriminatorConfig(hidden=(32,), lr=3e-3, epochs=12, batch_size=256, **opts)
    d = Discriminator(2, cfg)
    expert, policy = torch.randn(2048, 2) + m, torch.randn(2048, 2)
    d.update_normalizer(torch.cat([expert, policy]))
    opt = torch.optim.Adam(d.parameters(), lr=cfg.lr)
    stats = train_discriminator(d, opt, expert, policy, cfg, torch.Generator().manual_seed(0))
    test_e, test_p = torch.randn(4000, 2) + m, torch.randn(4000, 2)
    with torch.no_grad():
        acc = 0.5 * ((d(test_e) > 0).float().mean() + (d(test_p) < 0).float().mean())
        s = torch.randn(4000, 2) + m / 2
        err = (d(s) - (s @ m - m.dot(m) / 2)).abs().mean()
    bayes = torch.distributions.Normal(0, 1).cdf(m.norm() / 2)  # Bayes accuracy
    assert acc > bayes - 0.03, (acc, bayes)
    assert stats["accuracy"] > 0.6
    if not opts:  # unregularised logistic loss: logit -> exact log ratio
        assert err < 0.25, err


def test_logistic_loss_checks_smoothing_and_shapes():
    with pytest.raises(ValueError, match="label_smoothing"):
        logistic_loss(torch.zeros(2), torch.zeros(2), 1.5)
    d = Discriminator(2)
    opt = torch.optim.Adam(d.parameters())
    with pytest.raises(ValueError, match="expert"):
        train_discriminator(d, opt, torch.zeros(3, 2), torch.zeros(4, 2), DiscriminatorConfig())
