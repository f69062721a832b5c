"""Adapters: EDM-signature networks, ε/x0/v-prediction VP networks, diffusers UNet2DModel."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_gym.denoisers.adapters import (
    EDMNetDenoiser,
    EpsilonDenoiser,
    linear_beta_alphas_cumprod,
    load_trained_denoiser,
    sigmas_from_alphas_cumprod,
)
from diffusion_gym.denoisers.base import guided_denoise
from diffusion_gym.denoisers.networks import build_network, load_network, save_checkpoint

S = 0.5  # std of the Gaussian data x0 ~ N(0, S² I) of the synthetic VP networks


def _tiny_unet(num_classes=10):
    torch.manual_seed(0)
    net = build_network(
        "digits_unet", 0.7, channels=(8, 16), num_classes=num_classes, emb_dim=16, dropout=0.0
    )
    # Non-zero output layers so the test sees more than c_skip x.
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1) if p.ndim > 1 else None
    return net.eval()


def test_edm_wrapper_is_identical_to_the_net():
    net = _tiny_unet()
    den = EDMNetDenoiser(net, (1, 8, 8), 10, 0.002, 80.0, 0.7)
    x = torch.randn(6, 1, 8, 8)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 5.0, 80.0])
    labels = torch.tensor([0, 3, -1, 9, -1, 2])
    with torch.no_grad():
        assert torch.equal(den(x, sigma, labels), net(x, sigma, labels))
        assert torch.equal(den(x, sigma), net(x, sigma, None))
        # float64 input: same numbers, returned in float64.
        out64 = den(x.double(), sigma.double(), labels)
        assert out64.dtype == torch.float64
        assert torch.equal(out64.float(), net(x, sigma, labels))
        # Guidance in one batched call equals the two plain calls combined.
        w = 2.5
        ref = net(x, sigma, None) + w * (net(x, sigma, labels.clamp(min=0)) - net(x, sigma, None))
        got = guided_denoise(den, x, sigma, labels.clamp(min=0), w)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


class _Ones(torch.nn.Module):
    def forward(self, x, c_noise, class_labels):
        self.seen = (x, c_noise)
        return torch.ones_like(x)


def test_edm_preconditioning_closed_form():
    from diffusion_gym.denoisers.networks import EDMPrecond

    sd = 0.5
    net = EDMPrecond(_Ones(), sd)
    x, sigma = torch.randn(3, 2), torch.tensor([0.1, 1.0, 10.0])
    d = net(x, sigma)
    s = sigma[:, None]
    # D = c_skip x + c_out F, c_skip = σd²/(σ²+σd²), c_out = σ σd / sqrt(σ²+σd²).
    ref = sd**2 / (s**2 + sd**2) * x + s * sd / (s**2 + sd**2).sqrt()
    torch.testing.assert_close(d, ref)
    # F sees c_in x = x / sqrt(σ² + σd²) and c_noise = ln(σ)/4.
    torch.testing.assert_close(net.model.seen[0], x / (s**2 + sd**2).sqrt())
    torch.testing.assert_close(net.model.seen[1], sigma.log() / 4)


def test_null_label_equals_no_label():
    net = _tiny_unet()
    x, sigma = torch.randn(4, 1, 8, 8), torch.full((4,), 0.7)
    with torch.no_grad():
        assert torch.equal(net(x, sigma, torch.full((4,), -1)), net(x, sigma, None))
        assert not torch.allclose(net(x, sigma, torch.zeros(4, dtype=torch.long)), net(x, sigma))


class _FlatNet(torch.nn.Module):
    def forward(self, x, sigma, class_labels):
        return x.flatten(1)


def test_edm_wrapper_errors():
    unconditional = EDMNetDenoiser(_tiny_unet(num_classes=0), (1, 8, 8), 0)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="class-conditional"):
        unconditional(x, 1.0, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="class-conditional"):
        guided_denoise(unconditional, x, torch.ones(2), torch.tensor([1, 2]), 2.0)
    with pytest.raises(ValueError, match="shape"):
        EDMNetDenoiser(_tiny_unet(), (1, 8, 8), 10)(torch.randn(2, 1, 4, 4), 1.0)
    bad = EDMNetDenoiser(_FlatNet(), (1, 8, 8), 0)  # returns [B, 64]
    with pytest.raises(ValueError, match="returned"):
        bad(x, 1.0)
    with pytest.raises(TypeError, match="nn.Module"):
        EDMNetDenoiser(lambda x, s, c: x, (1, 8, 8), 0)


# ---------------------------------------------------------------------------------------------
# ε-prediction VP networks: exact answers for Gaussian data x0 ~ N(0, S² I).


class ExactGaussianVP(torch.nn.Module):
    """The exact ε / x0 / v prediction of VP data N(0, S² I) at (possibly fractional) t.

    x_t = sqrt(ā) x0 + sqrt(1 − ā) ε; E[x0 | x_t] = sqrt(ā) S² x_t / (ā S² + 1 − ā) and
    E[ε | x_t] = sqrt(1 − ā) x_t / (ā S² + 1 − ā). ā(t) is read from the table, linear in
    log σ between integers (the same interpolation the adapter inverts).
    """

    def __init__(self, alphas_cumprod, kind):
        super().__init__()
        self.log_sigmas = sigmas_from_alphas_cumprod(alphas_cumprod).log()
        self.kind = kind

    def forward(self, x_t, t, labels):
        t = t.double()
        i = t.floor().long().clamp(max=len(self.log_sigmas) - 2)
        log_s = self.log_sigmas[i] + (t - i) * (self.log_sigmas[i + 1] - self.log_sigmas[i])
        a = (1 / (1 + (2 * log_s).exp())).reshape(-1, 1)
        x = x_t.double()
        x0 = a.sqrt() * S**2 * x / (a * S**2 + 1 - a)
        eps = (1 - a).sqrt() * x / (a * S**2 + 1 - a)
        out = {"epsilon": eps, "sample": x0, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0}
        return out[self.kind]


def _exact_d(x, sigma):
    # EDM form of the same Gaussian: D(x; σ) = S² / (S² + σ²) x.
    return S**2 / (S**2 + sigma[:, None] ** 2) * x


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_vp_adapter_matches_closed_form_on_grid_and_off_grid(kind):
    ac = linear_beta_alphas_cumprod(1000)
    table = sigmas_from_alphas_cumprod(ac)
    den = EpsilonDenoiser(
        ExactGaussianVP(ac, kind), ac, (3,), prediction_type=kind, timesteps="interpolate",
        dtype=torch.float64,
    )  # fmt: skip
    assert den.sigma_min == pytest.approx(float(table[0]))
    assert den.sigma_max == pytest.approx(float(table[-1]))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64) * 3
    # Off-grid σ: geometric means of neighbouring table entries, plus the grid points.
    off = (table[[5, 50, 300, 700, 998]] * table[[6, 51, 301, 701, 999]]).sqrt()
    sigma = torch.cat([off, table[[0, 400, 999]]])
    torch.testing.assert_close(den(x, sigma), _exact_d(x, sigma), atol=1e-9, rtol=1e-9)
    # Nearest-t on the grid is exact too; off the grid it is measurably worse.
    near = EpsilonDenoiser(
        ExactGaussianVP(ac, kind), ac, (3,), prediction_type=kind, dtype=torch.float64
    )
    on = table[[0, 400, 999]]
    torch.testing.assert_close(near(x[:3], on), _exact_d(x[:3], on), atol=1e-9, rtol=1e-9)
    err_near = (near(x[:5], off) - _exact_d(x[:5], off)).abs().max()
    assert err_near > 1e-6


def test_vp_timestep_mapping():
    ac = linear_beta_alphas_cumprod(1000)
    table = sigmas_from_alphas_cumprod(ac)
    assert float(table[0]) == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)))
    for mode in ("nearest", "interpolate"):
        den = EpsilonDenoiser(lambda x, t, c: x, ac, (2,), timesteps=mode)
        idx = torch.tensor([0, 1, 17, 500, 999])
        torch.testing.assert_close(den.timestep(table[idx]), idx.double())
    den = EpsilonDenoiser(lambda x, t, c: x, ac, (2,), timesteps="interpolate")
    mid = (table[10] * table[11]).sqrt().reshape(1)
    assert float(den.timestep(mid)) == pytest.approx(10.5, abs=1e-9)


def test_vp_adapter_labels_and_errors():
    ac = linear_beta_alphas_cumprod(100)
    seen = {}

    def net(x, t, labels):
        seen["labels"] = labels
        return torch.zeros_like(x)

    den = EpsilonDenoiser(net, ac, (2,), num_classes=4)
    den(torch.zeros(3, 2), 1.0, torch.tensor([0, -1, 3]))
    assert seen["labels"].tolist() == [0, 4, 3]  # −1 → null label = num_classes
    with pytest.raises(ValueError, match="class-conditional"):
        EpsilonDenoiser(net, ac, (2,))(torch.zeros(3, 2), 1.0, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="prediction_type"):
        EpsilonDenoiser(net, ac, (2,), prediction_type="score")
    with pytest.raises(ValueError, match="decrease"):
        EpsilonDenoiser(net, ac.flip(0), (2,))
    with pytest.raises(ValueError, match="returned"):
        EpsilonDenoiser(lambda x, t, c: x[:, :1], ac, (2,))(torch.zeros(3, 2), 1.0)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def test_checkpoint_round_trip_and_missing_file(tmp_path):
    net = _tiny_unet()
    meta = {
        "arch": "digits_unet",
        "sigma_data": 0.7,
        "arch_kwargs": {"channels": [8, 16], "num_classes": 10, "emb_dim": 16, "dropout": 0.0},
        "shape": [1, 8, 8],
        "num_classes": 10,
        "sigma_min": 0.002,
        "sigma_max": 80.0,
    }
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(net, path, meta)
    assert path.with_suffix(".json").is_file()
    loaded, meta2 = load_network(path)
    assert meta2 == meta
    den = load_trained_denoiser(path)
    x, sigma, labels = torch.randn(5, 1, 8, 8), torch.rand(5) * 3, torch.tensor([0, 1, -1, 4, 9])
    with torch.no_grad():
        assert torch.equal(loaded(x, sigma, labels), net(x, sigma, labels))
        assert torch.equal(den(x, sigma, labels), net(x, sigma, labels))
    assert (den.num_classes, den.shape, den.sigma_data) == (10, (1, 8, 8), 0.7)
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_trained_denoiser(missing)


# ---------------------------------------------------------------------------------------------
# diffusers (optional extra)


def test_diffusers_unet_adapter(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    from diffusion_gym.denoisers.adapters import DiffusersUNetDenoiser

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=4,  # 3 classes + a null row
    ).eval()
    unet.save_pretrained(tmp_path)
    den = DiffusersUNetDenoiser.from_pretrained(tmp_path)
    assert den.shape == (1, 8, 8) and den.num_classes == 3
    ac = linear_beta_alphas_cumprod(1000)
    table = sigmas_from_alphas_cumprod(ac)
    x = torch.randn(2, 1, 8, 8)
    sigma = table[[100, 600]]
    labels = torch.tensor([2, -1])
    with torch.no_grad():
        got = den(x, sigma, labels)
        x_vp = x / (1 + sigma.float()[:, None, None, None] ** 2).sqrt()
        eps = unet(x_vp, torch.tensor([100, 600]), class_labels=torch.tensor([2, 3])).sample
    ref = x - sigma.float()[:, None, None, None] * eps
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(FileNotFoundError, match="config.json"):
        DiffusersUNetDenoiser.from_pretrained(tmp_path / "missing")
