"""The evaluation harness: same noise for every strategy, determinism, reports, config."""

import json

import pytest
import torch

from baselines import compare as C
from baselines import evaluate as E
from diffusion_gym import presets, schedules, steps

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ring8():
    return presets.make("gmm-ring8")


def _strategies(p):
    sig = schedules.karras(3, p.sigma_min, p.sigma_max, 10.0)
    return [
        E.FixedSchedule("edm-rho10", sig),
        E.FixedSchedule("cfg-2.0", sig, guidance=2.0),
        E.FixedSchedule("churn", sig, gamma=[0.2, 0.2, 0.0]),
    ]


def test_nfe():
    assert E.nfe_of(3, "heun") == 5 and E.nfe_of(5, "euler") == 5
    assert E.steps_for_nfe(9, "heun") == 5
    with pytest.raises(ValueError, match="odd"):
        E.steps_for_nfe(4, "heun")


def test_fixed_schedule_matches_reference_sampler(ring8):
    """The strategy is exactly steps.sample on the harness's x_T and streams."""
    s = _strategies(ring8)[2]
    x_T, streams = E.make_noise(ring8, 32, seed=4)
    labels = E.make_labels(ring8, 32, 4)
    got = s.sample(ring8, x_T, labels, streams)
    _, streams2 = E.make_noise(ring8, 32, seed=4)
    want = steps.sample(
        ring8.denoiser,
        x_T,
        s.sigmas,
        class_labels=labels,
        gamma=torch.tensor([0.2, 0.2, 0.0], dtype=torch.float64),
        generator=streams2,
    )
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_noise_is_per_sample(ring8):
    """x_T of sample i does not depend on num_samples; seeds differ."""
    a, _ = E.make_noise(ring8, 16, 0)
    b, _ = E.make_noise(ring8, 64, 0)
    c, _ = E.make_noise(ring8, 16, 1)
    torch.testing.assert_close(a, b[:16], rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert float(a.std()) == pytest.approx(ring8.prior_std, rel=0.3)


def test_identical_seeds_identical_numbers(ring8):
    kw = dict(num_samples=64, seeds=(0, 1), reference=32, progress=False)
    r1 = E.evaluate(_strategies(ring8), ring8, **kw)
    r2 = E.evaluate(_strategies(ring8), ring8, **kw)
    assert r1 == r2
    assert "rmse" in r1["edm-rho10"] and "rmse" not in r1["churn"]  # churn is stochastic
    assert len(r1["edm-rho10"]["energy"]["values"]) == 2
    # exact mixture: w = 2 is worse than w = 1 (independent of the table code)
    assert r1["cfg-2.0"]["energy"]["mean"] > r1["edm-rho10"]["energy"]["mean"]


def test_rmse_matches_independent_computation(ring8):
    s = _strategies(ring8)[0]
    r = E.evaluate(
        [s], ring8, num_samples=32, seeds=(3,), reference=32, progress=False, metrics=["rmse"]
    )
    x_T, streams = E.make_noise(ring8, 32, 3)
    labels = torch.arange(32) % 8
    x = s.sample(ring8, x_T, labels, streams)
    fine, coarse = (
        steps.sample(
            ring8.denoiser, x_T, schedules.karras(n, 0.002, 80.0, 7.0), class_labels=labels
        )
        for n in (32, 16)
    )
    r2 = (31 / 15) ** 2  # Richardson: the ratio of the two grids' Heun intervals, squared
    ref = (r2 * fine - coarse) / (r2 - 1)
    assert r["edm-rho10"]["rmse"]["mean"] == pytest.approx(float(((x - ref) ** 2).mean().sqrt()))


def test_evaluate_rejects_bad_input(ring8):
    s = _strategies(ring8)
    with pytest.raises(ValueError, match="unique"):
        E.evaluate([s[0], s[0]], ring8, num_samples=8, progress=False)
    with pytest.raises(ValueError, match="unknown metric"):
        E.evaluate(s[:1], ring8, num_samples=8, metrics=["fid"], progress=False)
    with pytest.raises(TypeError):
        E.evaluate(["edm"], ring8, num_samples=8, progress=False)
    with pytest.raises(ValueError, match="guidance"):
        E.FixedSchedule("x", s[0].sigmas, guidance=[1.0, 2.0])


def test_write_report_files(ring8, tmp_path):
    st = _strategies(ring8)
    samples = {}
    res = E.evaluate(
        st, ring8, num_samples=64, seeds=(0,), reference=16, progress=False, samples_out=samples
    )
    files = E.write_report(
        res,
        tmp_path,
        title="t",
        plots={"strategies": st, "samples": samples, "by_nfe": {"a": {5: res["cfg-2.0"]}}},
    )
    for kind in ("json", "md", "schedules", "guidance", "samples", "metric_vs_nfe"):
        assert files[kind].is_file() and files[kind].stat().st_size > 0
    data = json.loads((tmp_path / "eval.json").read_text())
    assert list(data) == [s.name for s in st]
    md = (tmp_path / "eval.md").read_text()
    assert all(f"| {s.name} |" in md for s in st) and "**" in md


def test_markdown_bolds_best():
    res = {"a": {"energy": {"mean": 1.0, "std": 0.0}}, "b": {"energy": {"mean": 0.5, "std": 0.1}}}
    md = E.markdown_table(res)
    assert "| b | **0.5 ± 0.1** |" in md and "| a | 1 ± 0 |" in md


def test_config_unknown_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("presets: [gmm-ring8]\nnfe: [5]\nbogus: 1\n")
    with pytest.raises(ValueError, match="valid keys.*presets"):
        C.load_config(p)
    p.write_text("oracle: {iterations: 3, nope: 2}\n")
    with pytest.raises(ValueError, match="oracle"):
        C.load_config(p)
    with pytest.raises(FileNotFoundError):
        C.load_config(tmp_path / "missing.yaml")


def test_shipped_config_loads():
    from pathlib import Path

    cfg = C.load_config(Path(C.__file__).parent / "configs" / "compare-ring8.yaml")
    C._check_names(cfg.strategies)
    assert cfg.nfe == [5, 9] and "oracle" in cfg.strategies and "learn-to-guide" in cfg.strategies


def test_compare_cli_tiny(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "presets: [gmm-ring8]\nnfe: [3, 5]\nstrategies: [edm-rho7, oracle, cfg-1.5]\n"
        "num_samples: 32\nseeds: [0]\nreference_steps: 16\n"
        "oracle: {iterations: 3, restarts: 1, num_random: 2, num_samples: 16}\n"
    )
    assert C.main_compare([str(p), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    data = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert set(data) == {"gmm-ring8/nfe3", "gmm-ring8/nfe5"}
    sec = json.loads((tmp_path / "out" / "gmm-ring8" / "nfe5" / "eval.json").read_text())
    assert list(sec) == ["edm-rho7", "oracle", "cfg-1.5"]
    assert sec["oracle"]["nfe"]["mean"] == 5
    assert (tmp_path / "out" / "gmm-ring8" / "metric_vs_nfe.png").is_file()
