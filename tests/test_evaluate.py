"""The evaluation harness: same noise for every strategy, determinism, reports, config."""

import json
from pathlib import Path

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


def test_extension_points(ring8, tmp_path):
    """Public hooks: per-call metrics, a process-wide registered metric, custom noise, and
    report fields / summary / extra plots."""
    st = _strategies(ring8)[:2]
    mean_norm = lambda ctx: float(ctx["x0"].norm(dim=1).mean())  # noqa: E731
    E.register_metric("test_norm", mean_norm, higher_is_better=True)
    try:
        with pytest.raises(ValueError, match="already exists"):
            E.register_metric("test_norm", mean_norm)
        assert "test_norm" in E.HIGHER_IS_BETTER
        calls = []

        def noise(preset, n, seed):
            calls.append(seed)
            return E.make_noise(preset, n, seed)

        kw = dict(num_samples=32, seeds=(0,), progress=False)
        res = E.evaluate(
            st,
            ring8,
            metrics=["energy", "test_norm", "seen_seed"],
            extra_metrics={"seen_seed": lambda ctx: float(ctx["seed"])},
            noise=noise,
            **kw,
        )
        assert calls == [0, 0, 0]  # x_T once, fresh streams per strategy
        assert res["cfg-2.0"]["seen_seed"]["mean"] == 0.0
        plain = E.evaluate(st, ring8, metrics=["energy", "test_norm"], **kw)
        assert plain["cfg-2.0"]["energy"] == res["cfg-2.0"]["energy"]  # same noise, same rows
        files = E.write_report(
            res,
            tmp_path,
            fields={"cfg-2.0": {"weight": 2.0}},
            summary="extra block",
            extra_plots={"extra.png": lambda path: path.write_bytes(b"png")},
        )
        data = json.loads(files["json"].read_text())
        assert data["cfg-2.0"]["weight"] == 2.0 and "weight" not in data["edm-rho10"]
        md = files["md"].read_text()
        assert md == E.markdown_table(res) + "\nextra block\n"
        assert files["extra"].read_bytes() == b"png"
        with pytest.raises(ValueError, match="shadow"):
            E.write_report(res, tmp_path, fields={"cfg-2.0": {"energy": 1}})
    finally:
        E.METRICS.pop("test_norm")
        E.HIGHER_IS_BETTER.discard("test_norm")


def test_config_unknown_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("presets: [gmm-ring8]\nnfe: [5]\nbogus: 1\n")
    with pytest.raises(ValueError, match="bogus.*presets"):
        C.load_config(p)
    p.write_text("oracle: {iterations: 3, nope: 2}\n")
    with pytest.raises(ValueError, match="nope.*iterations"):
        C.load_config(p)
    p.write_text("nfe: [5]\n")
    with pytest.raises((TypeError, ValueError), match="iterations"):
        C.load_config(p, ["oracle.iterations=many"])
    with pytest.raises(ValueError, match="odd"):
        C.load_config(p, ["nfe=[4]"])
    with pytest.raises(ValueError, match="unknown strategy"):
        C.load_config(p, ["strategies=[edm-rho7, nonsense]"])
    with pytest.raises(ValueError, match="unknown preset"):
        C.load_config(p, ["presets=[nope]"])
    with pytest.raises(FileNotFoundError):
        C.load_config(tmp_path / "missing.yaml")
    cfg = C.load_config(p, ["oracle.iterations=7", "seeds=[4]"])
    assert cfg.oracle.iterations == 7 and cfg.seeds == [4] and cfg.oracle.restarts == 3


def test_oracle_defaults_defined_once():
    """compare's oracle section and baselines.schedules.oracle share one set of defaults."""
    import inspect

    from baselines import schedules as B

    d = B.OracleConfig()
    assert C.CompareConfig().oracle == d
    sig = inspect.signature(B.oracle).parameters
    for name in ("iterations", "lr", "restarts", "num_random"):
        assert sig[name].default == getattr(d, name)
    assert (d.iterations, d.restarts) == (200, 3)


def test_shipped_config_loads():
    for name in ("compare-ring8.yaml", "compare-64d.yaml"):
        cfg = C.load_config(Path(C.__file__).parent / "configs" / name)
        assert cfg.nfe == [5, 9] and "oracle" in cfg.strategies
        # the shipped configs set every oracle field (their tables do not follow the default)
        assert (cfg.oracle.iterations, cfg.oracle.restarts, cfg.oracle.num_samples) == (60, 1, 128)


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


def test_cli_dispatch(capsys):
    from agents import cli

    assert cli.main([]) == 0 and "compare" in capsys.readouterr().out
    assert cli.main(["nope"]) == 2 and "unknown command" in capsys.readouterr().err
    assert cli.main(["presets"]) == 0 and "gmm-ring8" in capsys.readouterr().out
    assert set(cli.COMMANDS) == {"train", "evaluate", "compare", "benchmark", "sweep", "presets"}


def test_digits_rows_through_the_harness_match_the_direct_sampler():
    """baselines.digits: a harness row on digits_noise is the plain Heun sampler from
    prior_std · randn(seed), and its metrics are digits_metrics of those samples."""
    from baselines import digits as D
    from diffusion_gym.denoisers.classifier import load_digits_classifier
    from diffusion_gym.metrics import digits_metrics

    p = presets.make("digits")
    clf = load_digits_classifier()
    sig = schedules.karras(3, p.sigma_min, p.sigma_max)
    rows = [E.FixedSchedule("w1", sig), E.FixedSchedule("w2", sig, guidance=2.0)]
    samples = {}
    res = E.evaluate(
        rows,
        p,
        num_samples=20,
        seeds=[3],
        metrics=["fd_digits", "digits_class_tv"],
        extra_metrics=E.digits_metric_fns(clf),
        noise=D.digits_noise,
        progress=False,
        samples_out=samples,
    )
    x_T = p.prior_std * torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(20) % 10
    for row, w in (("w1", None), ("w2", 2.0)):
        want = steps.sample(p.denoiser, x_T, sig, class_labels=labels, guidance=w)
        torch.testing.assert_close(samples[row], want, rtol=0, atol=0)
        m = digits_metrics(want, labels, classifier=clf)
        assert res[row]["fd_digits"]["mean"] == m["fd"]
        assert res[row]["digits_class_tv"]["mean"] == m["class_tv"]


def test_evaluate_cli_with_schedule_file_and_errors(tmp_path, capsys):
    sched = tmp_path / "mine.json"
    sched.write_text(json.dumps({"sigmas": [80.0, 1.8, 0.5, 0.0], "solver": "heun"}))
    out = tmp_path / "ev"
    args = ["--nfe", "5", "--strategies", "edm-rho7", "--num-samples", "32", "--seeds", "0"]
    assert (
        C.main_evaluate([*args, "--schedule", str(sched), "--out", str(out), "--no-progress"]) == 0
    )
    assert list(json.loads((out / "eval.json").read_text())) == ["edm-rho7", "mine"]
    capsys.readouterr()
    bad = ["--strategies", "nonsense", "--out", str(out)]
    assert C.main_evaluate(bad) == 2
    assert "unknown strategy" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("nfe: [5]\n")
    assert C.main_compare([str(cfg), "--out", str(out), "oracle.iterationz=3"]) == 2
    assert "iterationz" in capsys.readouterr().err
