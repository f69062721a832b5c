"""python -m baselines.digits_baselines: the searches and the report on a tiny grid."""

from __future__ import annotations

import ast
import json

import pytest

from baselines import digits_baselines as DB  # noqa: N812
from diffusion_gym import schedules


def test_interval_candidates_cover_contiguous_runs():
    sig = schedules.karras(5, 0.002, 20.0)
    c = DB.interval_candidates(sig, [2.0])
    assert len(c) == 15  # every contiguous run of 5 steps
    for (w, lo, hi), ws in c.items():
        on = [i for i, v in enumerate(ws) if v == w]
        assert on == list(range(on[0], on[-1] + 1))  # one contiguous run
        assert float(sig[on[0]]) == hi and float(sig[on[-1]]) == lo
        assert all(v == 1.0 for i, v in enumerate(ws) if i not in on)
    grouped = DB.interval_candidates(schedules.karras(18, 0.002, 20.0), [1.5, 3.0], max_groups=6)
    assert len(grouped) == 2 * 21  # runs of 6 blocks, per weight


def test_report_picks_the_best_of_each_search(tmp_path, capsys):
    out = tmp_path / "dg"
    DB.main(["--nfe", "5", "--num-samples", "30", "--search-samples", "20", "--w-grid", "1",
             "2", "--gamma-grid", "0", "--interval-w", "2", "--interval-groups", "2",
             "--ag-grid", "1", "2", "--train-seeds", "0", "1", "--out", str(out),
             "--no-progress"])  # fmt: skip
    rep = json.loads((out / "digits_baselines.json").read_text())
    sec = rep["nfe"]["5"]
    for seed in ("0", "1"):
        sc = sec["searches"][seed]
        best_w = min(sc["autoguidance"], key=sc["autoguidance"].get)
        assert sec["params"][seed]["autoguidance"] == f"w = {float(best_w):g}"
        best_c = min(sc["constant"], key=sc["constant"].get)
        w_c = ast.literal_eval(best_c)[0]
        assert sec["params"][seed]["best constant"].startswith(f"w = {w_c:g},")
    m = sec["metrics"]["no guidance (w=1)|fd_digits"]
    assert m["n"] == 2 and m["std"] == 0.0  # the same evaluation noise for both seeds
    assert "digits_precision" in "".join(sec["metrics"])
    text = (out / "digits_baselines.md").read_text()
    assert "| autoguidance |" in text and "± " in text
    assert (out / "nfe5_row3.png").is_file()
    with pytest.raises(SystemExit):
        DB.main(["--nfe", "4", "--out", str(out)])
    with pytest.raises(ValueError, match="no guiding model"):
        DB.main(["--preset", "gmm-ring8", "--out", str(out)])
