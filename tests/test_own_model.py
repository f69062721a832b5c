"""A user's own model end to end: ``preset: package.module:function`` in train and compare
configs, the Data protocol (data-free metrics without data, a clear error naming the
missing method), adapters (raw nn.Module refused naming EDMNetDenoiser, dtype kept),
unconditional guidance, the common ``prior_std`` keyword."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from baselines.evaluate import FixedSchedule, evaluate
from diffusion_gym import presets, schedules
from diffusion_gym.data import Data, check_data
from diffusion_gym.denoisers import EDMNetDenoiser, GaussianMixture
from diffusion_gym.envs import ClockVectorEnv, GuidanceVectorEnv

ROOT = Path(__file__).resolve().parents[1]

# The user's module: a network in EDM's convention (here the exact ring denoiser inside an
# nn.Module, so the numbers can be checked), a factory written as factory(**kw), no data.
MODULE = """
import torch
from diffusion_gym import presets
from diffusion_gym.denoisers import EDMNetDenoiser


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gm = presets.make("gmm-ring8").denoiser
        self.scale = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, x, sigma, class_labels):
        return self.scale * self.gm(x, sigma, class_labels)


def factory(**kw):
    den = EDMNetDenoiser(Net(), shape=(2,), num_classes=8, sigma_min=0.002, sigma_max=80.0)
    return den.to(kw.get("device", "cpu"))


def raw(**kw):
    return Net()
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_model.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_preset_kwargs_factory_device_and_rmse_without_data(user_module):
    p = presets.make("my_model:factory", device="cpu")
    assert p.name == "my_model:factory" and p.data is None and p.denoiser.dtype == torch.float64
    ring = presets.make("gmm-ring8")
    sig = schedules.karras(3, 0.002, 80.0)
    rows = [FixedSchedule("edm", sig)]
    mine = evaluate(rows, p, num_samples=64, seeds=[0], metrics=["rmse", "nfe"], progress=False)
    ref = evaluate(rows, ring, num_samples=64, seeds=[0], metrics=["rmse", "nfe"], progress=False)
    assert mine["edm"]["rmse"]["mean"] == pytest.approx(ref["edm"]["rmse"]["mean"], rel=1e-9)
    with pytest.raises(ValueError, match=r"needs data\.sample.*data=None"):
        evaluate(rows, p, num_samples=8, seeds=[0], metrics=["energy"], progress=False)
    with pytest.raises(TypeError, match="EDMNetDenoiser"):
        presets.make("my_model:raw")
    with pytest.raises(ValueError, match="cannot import module 'no_such_mod'"):
        presets.make("no_such_mod:factory")
    with pytest.raises(ValueError, match="has no callable 'nope'"):
        presets.check_name("my_model:nope")
    with pytest.raises(ValueError, match="package.module:function"):
        presets.check_name("not-a-preset")


# One interpreter runs the three commands through the console script's function: a config
# that works, one refused before training (its default metrics need data), a comparison.
DRIVER = """
import json, sys
from agents.cli import main
for argv in json.loads(sys.argv[1]):
    try:
        print("@@ RC", main(argv), flush=True)
    except ValueError as e:
        print("@@ ValueError", e, flush=True)
"""


def test_cli_train_and_compare_with_own_model(user_module, tmp_path):
    art = {
        "agent": "art", "preset": "my_model:factory", "budget": 2, "num_envs": 8,
        "total_timesteps": 32, "bank_size": 16, "reference_steps": 8, "distill_samples": 8,
        "net_arch": [8], "progress": False,
        "algo_kwargs": {"n_steps": 4, "batch_size": 16, "n_epochs": 1},
        "eval": {"num_samples": 16, "seeds": [0], "metrics": ["rmse", "nfe"], "oracle": False,
                 "rho_grid": [7.0], "train_samples": 8, "reference_steps": 8},
    }  # fmt: skip
    (tmp_path / "art.yaml").write_text(yaml.safe_dump(art))
    del art["eval"]["metrics"]  # the defaults (energy, sliced_w) need data
    (tmp_path / "art2.yaml").write_text(yaml.safe_dump(art))
    cmp = {"presets": ["my_model:factory"], "nfe": [5], "seeds": [0], "num_samples": 16,
           "metrics": ["rmse", "nfe"], "strategies": ["edm-rho7", "uniform"],
           "reference_steps": 8}  # fmt: skip
    (tmp_path / "cmp.yaml").write_text(yaml.safe_dump(cmp))
    argvs = [
        ["train", str(tmp_path / "art.yaml"), "--out", str(tmp_path / "art")],
        ["train", str(tmp_path / "art2.yaml"), "--out", str(tmp_path / "art2")],
        ["compare", str(tmp_path / "cmp.yaml"), "--out", str(tmp_path / "cmp"), "--no-progress"],
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user_module), str(ROOT)])}
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argvs)], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    codes = [ln for ln in r.stdout.splitlines() if ln.startswith("@@")]
    assert codes[0] == "@@ RC 0" and codes[2] == "@@ RC 0", r.stdout[-3000:]
    # refused before any training: one line on stderr, exit status 2 (a usage error)
    assert codes[1] == "@@ RC 2" and "needs data.sample" in r.stderr, r.stderr[-3000:]
    assert not (tmp_path / "art2" / "checkpoints").exists()  # refused before any training
    res = json.loads((tmp_path / "art" / "eval.json").read_text())
    assert {"art-ppo", "edm-rho7"} <= set(res) and res["edm-rho7"]["rmse"]["mean"] > 0
    res = json.loads((tmp_path / "cmp" / "eval.json").read_text())
    assert res["my_model:factory/nfe5"]["edm-rho7"]["rmse"]["mean"] > 0


class _Samples:
    def sample(self, n, class_labels=None, generator=None):
        return torch.randn(n, 2, generator=generator, dtype=torch.float64)


def test_data_protocol_checked():
    assert isinstance(presets.make("gmm-ring8").data, Data) and isinstance(_Samples(), Data)
    check_data(_Samples(), ["sample"], "x")
    with pytest.raises(ValueError, match=r"loglik.*log_prob\(x, sigma=0.0.*_Samples"):
        check_data(_Samples(), ["log_prob"], "metric 'loglik'")
    den = presets.make("gmm-ring8").denoiser
    with pytest.raises(ValueError, match="needs data.sample"):
        ClockVectorEnv(den, data=object(), bank_size=4)
    with pytest.raises(ValueError, match="needs data.sample"):
        presets._as_preset(presets.Preset("p", den, object(), 80.0), "p")
    # loglik needs only log_prob (non-mixture data); the sample metrics only sample
    p = presets.Preset("p", den, _Samples(), 80.0)
    rows = [FixedSchedule("edm", schedules.karras(3, 0.002, 80.0))]
    res = evaluate(rows, p, num_samples=16, seeds=[0], metrics=["energy", "loglik", "rmse"],
                   progress=False)  # fmt: skip
    assert set(res["edm"]) == {"energy", "rmse"}  # loglik left out: no log_prob


def test_adapters_raw_module_and_dtype():
    net = torch.nn.Linear(2, 2).double()
    with pytest.raises(TypeError, match="EDMNetDenoiser"):
        GuidanceVectorEnv(2, denoiser=net)
    with pytest.raises(TypeError, match="EDMNetDenoiser"):
        ClockVectorEnv(net)
    assert EDMNetDenoiser(net, (2,), 0).dtype == torch.float64  # kept
    assert next(net.parameters()).dtype == torch.float64
    d32 = EDMNetDenoiser(torch.nn.Linear(2, 2).double(), (2,), 0, dtype=torch.float32)
    assert d32.dtype == torch.float32 and next(d32.net.parameters()).dtype == torch.float32


def test_unconditional_guidance_actions_and_prior_std():
    uncond = GaussianMixture([[0.0, 0.0], [1.0, 1.0]], 0.1)
    assert uncond.num_classes == 0
    with pytest.warns(UserWarning, match="unconditional"):
        env = GuidanceVectorEnv(2, denoiser=uncond, num_steps=3)
    assert list(env.guidance_weights) == [1.0] and env.single_action_space.n == 3
    with pytest.raises(ValueError, match="unconditional"):
        GuidanceVectorEnv(2, denoiser=uncond, guidance_weights=[0.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GuidanceVectorEnv(2, denoiser=uncond, guidance_weights=[1.0])  # no warning
    a = GuidanceVectorEnv(3, denoiser="gmm-ring8", num_steps=3)
    b = GuidanceVectorEnv(3, denoiser="gmm-ring8", num_steps=3, prior_std=40.0)
    a.reset(seed=0)
    b.reset(seed=0)
    assert b.preset.prior_std == 40.0 and a.preset.prior_std == 80.0
    torch.testing.assert_close(b.x, a.x / 2)
    banks = [ClockVectorEnv("gmm-ring8", prior_std=s, bank_size=4, reference_steps=4).bank
             for s in (None, 40.0)]  # fmt: skip
    torch.testing.assert_close(banks[1].build().x_T, banks[0].build().x_T / 2)
    with pytest.raises(ValueError, match="prior_std"):
        GuidanceVectorEnv(2, prior_std=-1.0)
