"""benchmarks/per_sample_bound.py: the hindsight fits and the first-call predictor, tiny."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from diffusion_gym import presets, schedules, steps
from diffusion_gym.envs.clock import schedule_from_actions

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import per_sample_bound as psb  # noqa: E402


def test_per_sample_sampler_equals_steps_sample_and_params_round_trip():
    p = presets.make("gmm-ring8")
    sig = schedule_from_actions([0.3, -0.4, 0.2, 0.0])
    u = psb._params(sig)
    torch.testing.assert_close(psb._sigmas(u[None], p.sigma_max)[0], sig, rtol=1e-12, atol=0)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    labels = torch.arange(16) % 8
    for solver in ("heun", "unipc-2"):
        got = psb._run(p, x_T, labels, sig.expand(16, -1), solver)
        want = steps.sample(p.denoiser, x_T, sig, class_labels=labels, solver=solver)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_fits_never_end_above_their_start_and_the_predictor_starts_at_it(tmp_path):
    start = schedule_from_actions([0.3, -0.4, 0.0])
    path = tmp_path / "start.json"
    schedules.save_schedule(path, start, "unipc-2", 3, "gmm-ring8")
    out = tmp_path / "bound.json"
    argv = ["--preset", "gmm-ring8", "--solver", "unipc-2", "--nfe", "3", "--start", str(path),
            "--samples", "32", "--seeds", "900000", "--iterations", "3", "--reference-steps", "16",
            "--train-samples", "32", "--amortised-iterations", "0", "--out", str(out)]  # fmt: skip
    assert psb.main(argv) == 0
    m = json.loads(out.read_text())["mean"]
    # the best iterate includes the start: no fit ends above it; per sample <= shared
    assert m["fixed (hindsight)"] <= m["start"]
    assert m["per-sample (hindsight)"] <= m["fixed (hindsight)"] + 1e-12
    # with no training step the predictor outputs the start's log gaps for every sample
    assert m["per-sample predicted (amortised MLP)"] == pytest.approx(m["start"], rel=1e-9)
    with pytest.raises(ValueError, match="NFE 5"):
        psb.main([*argv[:4], "--nfe", "5", *argv[6:]])
