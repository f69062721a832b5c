"""benchmarks/solvers_table.py on runs without learned rows (digits, gmm-64d-imperfect
measured without the oracle) and its ``--grid`` table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location(
        "solvers_table", ROOT / "benchmarks" / "solvers_table.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _m(mean: float, std: float = 0.0) -> dict:
    return {"mean": mean, "std": std, "values": [mean]}


def _write(run: Path, preset: str, nfe: int, rows: dict) -> None:
    sec = run / preset / f"nfe{nfe}"
    sec.mkdir(parents=True)
    (sec / "eval.json").write_text(json.dumps(rows))


def test_no_learned_rows_and_grid(tmp_path, capsys):
    run = tmp_path / "run"
    for nfe, scale in ((3, 1.0), (5, 0.5)):
        _write(run, "digits", nfe, {
            "heun/edm-rho7": {"fd_digits": _m(9.0 * scale), "nfe": _m(nfe)},
            "unipc-2/edm-rho7": {"fd_digits": _m(2.0 * scale, 0.1), "nfe": _m(nfe)},
            "unipc-2/edm-rho7@smin": {"fd_digits": _m(3.0 * scale), "nfe": _m(nfe)},
        })  # fmt: skip
    assert _module().main([str(run), "--preset", "digits", "--metric", "fd_digits", "--grid"]) == 0
    out = capsys.readouterr().out
    assert "| 3 | unipc-2/edm-rho7 2 ± 0.1 | - | - |" in out
    assert "| 5 | unipc-2/edm-rho7 1 ± 0.1 | - | - |" in out
    assert "| unipc-2 | 2 (edm-rho7) / - | 1 (edm-rho7) / - |" in out
    assert "| heun/edm-rho7 | 9 ± 0 | 4.5 ± 0 |" in out
    assert "| unipc-2/edm-rho7 | **2 ± 0.1** | **1 ± 0.1** |" in out


def test_learned_ratio_still_printed(tmp_path, capsys):
    run = tmp_path / "run"
    _write(run, "gmm-64d", 5, {
        "ipndm/edm-rho7": {"rmse": _m(0.4), "sec_per_1k": _m(1.0)},
        "ipndm/oracle": {"rmse": _m(0.1), "sec_per_1k": _m(1.0)},
    })  # fmt: skip
    assert _module().main([str(run), "--preset", "gmm-64d"]) == 0
    out = capsys.readouterr().out
    assert "| 5 | ipndm/edm-rho7 0.4 ± 0 | ipndm/oracle 0.1 ± 0 | 0.25 |" in out
    assert "| ipndm | 0.4 (edm-rho7) / 0.1 (1.00 s) |" in out


def test_one_solver_run_rows_take_their_solver(tmp_path, capsys):
    """A compare run of one solver names its rows without "<solver>/": the table reads the
    solver from strategies.json and merges them with a multi-solver run's rows."""
    one, multi = tmp_path / "one", tmp_path / "multi"
    _write(one, "digits", 5, {"gits-dp": {"rmse": _m(0.18)}, "oracle": {"rmse": _m(0.12)}})
    (one / "digits" / "nfe5" / "strategies.json").write_text(
        json.dumps({"gits-dp": {"solver": "heun"}, "oracle": {"solver": "heun"}})
    )
    _write(multi, "digits", 5, {"ipndm/gits-dp": {"rmse": _m(0.06)}})
    assert _module().main([str(one), str(multi), "--preset", "digits"]) == 0
    out = capsys.readouterr().out
    assert "| 5 | ipndm/gits-dp 0.06 ± 0 | heun/oracle 0.12 ± 0 | 2.00 |" in out
    assert "| heun | 0.18 (gits-dp) / 0.12" in out
