"""``benchmarks/claims.py`` (issue #23 items 1–3): the claim registry against README.md, the
test-seed split, the tolerances, and the ``--quick`` run of every claim end to end (reduced
budgets; ~2 min of CPU on 2 cores), then ``--reuse`` of its runs."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion_gym import splits

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "claims.py"


def _claims():
    spec = importlib.util.spec_from_file_location("claims_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


claims = _claims()


def _results_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Results")
    return text[start : text.index("\n## ", start + 1)]


def test_every_claim_is_cited_in_readme_and_every_tag_is_a_claim():
    ids = [c.id for c in claims.CLAIMS]
    assert len(ids) == len(set(ids))
    tags = set(re.findall(r"\[claim: ([\w-]+)\]", _results_section()))
    assert tags == set(ids), (sorted(tags - set(ids)), sorted(set(ids) - tags))


def test_figure_keys_are_unique_and_every_run_uses_test_seeds_only():
    for c in claims.CLAIMS:
        keys = [f.key for f in c.figures]
        assert len(keys) == len(set(keys)), c.id
        for r in c.runs:
            for quick in (False, True):
                argv = claims._expand([*r.argv, *(r.quick if quick else ())], Path("x"), 1)
                claims._check_seeds(argv)  # raises on a validation seed
                assert any("seed" in a for a in argv), (c.id, r.name)  # seeds are explicit


def test_check_seeds_refuses_validation_seeds():
    with pytest.raises(ValueError, match="not a test seed"):
        claims._check_seeds(["train", "x.yaml", "eval.seeds=[0, 1]"])
    with pytest.raises(ValueError, match="not a test seed"):
        claims._check_seeds(["baselines.digits", "--seed", "0"])
    assert splits.TRAIN_SALT > max(splits.TEST_SEEDS) >= min(splits.TEST_SEEDS) > 100_000
    assert splits.test_seeds(3) == list(splits.TEST_SEEDS[:3])


def test_tolerances():
    assert claims.rel(0.1).holds(1.09, 1.0) and not claims.rel(0.1).holds(1.11, 1.0)
    assert claims.absolute(0.05).holds(0.64, 0.68) and not claims.absolute(0.05).holds(0.62, 0.68)
    f = claims.factor(3)
    assert f.holds(1.4e-4, 5e-5) and f.holds(2e-5, 5e-5) and not f.holds(1.6e-4, 5e-5)
    assert not f.holds(-1.0, 5e-5) and not claims.rel(1.0).holds(math.nan, 1.0)
    assert f.holds(-12.0, -5.0) and not f.holds(-16.0, -5.0) and not f.holds(0.0, -5.0)


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_quick_run_reproduces_every_claim_at_reduced_budgets(tmp_path):
    """``python benchmarks/claims.py --quick``: every claim's commands run, the figures are
    read back from their outputs, the coarse tolerances and the report hold; then a
    ``--reuse`` run takes the finished runs instead of re-running them (same figures)."""
    out = tmp_path / "claims"
    proc = _run(["--quick", "--out", str(out)])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "claims.json").read_text())
    assert report["mode"] == "quick" and report["threads"] == 1
    assert list(report["claims"]) == [c.id for c in claims.CLAIMS]
    md = (out / "claims.md").read_text()
    for c in claims.CLAIMS:
        e = report["claims"][c.id]
        assert e["status"] == "ok", e
        assert e["wall_s"] > 0 and e["commands"] and f"`{c.id}`" in md
        measured = [f for f in e["figures"] if math.isfinite(f["measured"])]
        assert measured, c.id  # at least one figure comes back at the quick budget
        assert all(f["ok"] is not False for f in e["figures"]), e["figures"]
    again = _run(["--quick", "--out", str(out), "--reuse", "--only", "art-gauss1d"])
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    e2 = json.loads((out / "claims.json").read_text())["claims"]["art-gauss1d"]
    (gauss,) = [c for c in claims.CLAIMS if c.id == "art-gauss1d"]
    assert e2["reused"] == [r.name for r in gauss.runs if r.in_quick]
    first = report["claims"]["art-gauss1d"]["figures"]
    assert json.dumps(e2["figures"]) == json.dumps(first)  # NaN (not measured) compares too
    empty = tmp_path / "empty"
    none = _run(["--quick", "--out", str(empty), "--collect", "--only", "art-ring8"])
    assert none.returncode == 1  # nothing finished there: reported, never run
    e3 = json.loads((empty / "claims.json").read_text())["claims"]["art-ring8"]
    assert e3["status"] == "incomplete" and e3["missing"] == ["seed0"]
    assert not (empty / "art-ring8" / "seed0").exists()
