"""Summarise ``diffusion-gym compare`` runs of compare-solvers.yaml into the docs' tables.

Rows named ``<solver>/<schedule>[@smin]``; off-the-shelf = hand-made or fitted-without-the-
sampler schedules (EDM ρ=7, tuned ρ, log-SNR, uniform, AYS, GITS-DP, either last-step
convention); learned = fitted through the sampler (``oracle``, ``learned``). Prints, per
preset: the best off-the-shelf and best learned row at each NFE with their ratio, and a
solver × NFE grid of (best off-the-shelf / best learned) RMSE.

    python benchmarks/solvers_table.py runs/cs-64d [runs/cs-learned ...] --preset gmm-64d \
        [--smin runs/cs-smin] [--metric fd_digits] [--grid]

Runs without learned rows (no ``oracle``/``learned``) print "-" in the learned columns.
``--grid`` also prints every row × NFE (mean ± std of the metric, best per NFE in bold).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LEARNED = ("oracle", "learned")


def _load(dirs: list[str], preset: str) -> dict[int, dict[str, dict]]:
    """{nfe: {row: metrics}} merged over the runs (later runs add rows)."""
    out: dict[int, dict[str, dict]] = {}
    for d in dirs:
        for sec in sorted((Path(d) / preset).glob("nfe*")):
            ev = json.loads((sec / "eval.json").read_text())
            strat = sec / "strategies.json"  # a run of one solver names rows without it
            solver_of = {}
            if strat.is_file():
                solver_of = {k: v.get("solver") for k, v in json.loads(strat.read_text()).items()}
            ev = {
                r if "/" in r or not solver_of.get(r) else f"{solver_of[r]}/{r}": m
                for r, m in ev.items()
            }
            out.setdefault(int(sec.name[3:]), {}).update(ev)
    return out


def _split(row: str) -> tuple[str, str]:
    solver, _, sched = row.partition("/")
    return solver, sched


def _is_learned(row: str) -> bool:
    return _split(row)[1] in LEARNED


def _best(rows: dict[str, dict], metric: str, keep) -> tuple[str, float, float] | None:
    cand = {r: m for r, m in rows.items() if keep(r) and metric in m}
    if not cand:
        return None
    r = min(cand, key=lambda k: cand[k][metric]["mean"])
    return r, cand[r][metric]["mean"], cand[r][metric]["std"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="compare output directories")
    ap.add_argument("--preset", default="gmm-64d")
    ap.add_argument("--metric", default="rmse")
    ap.add_argument("--smin", help="take every @smin row from this run (and none from the others)")
    ap.add_argument("--grid", action="store_true", help="also print every row x NFE")
    a = ap.parse_args(argv)
    data = _load(a.runs, a.preset)
    if a.smin:
        smin = _load([a.smin], a.preset)
        for nfe, rows in data.items():
            for r in [r for r in rows if r.endswith("@smin")]:
                del rows[r]
            rows.update({r: v for r, v in smin.get(nfe, {}).items() if r.endswith("@smin")})
    m = a.metric
    print(f"| NFE | best off-the-shelf ({m}) | best learned ({m}) | learned / off-the-shelf |")
    print("|---|---|---|---|")
    for nfe, rows in sorted(data.items()):
        o = _best(rows, m, lambda r: not _is_learned(r))
        lr = _best(rows, m, _is_learned)
        print(f"| {nfe} | {_cell(o)} | {_cell(lr)} | "
              f"{'-' if o is None or lr is None else f'{lr[1] / o[1]:.2f}'} |")  # fmt: skip
    solvers = sorted({_split(r)[0] for rows in data.values() for r in rows},
                     key=lambda s: list(_ORDER).index(s) if s in _ORDER else 99)  # fmt: skip
    print(f"\n{m}: best off-the-shelf / best learned row per solver (s per 1,000 samples of the "
          "learned row)\n")  # fmt: skip
    print("| solver | " + " | ".join(f"NFE {n}" for n in sorted(data)) + " |")
    print("|---|" + "---|" * len(data))
    for sv in solvers:
        cells = []
        for _nfe, rows in sorted(data.items()):
            mine = {r: v for r, v in rows.items() if _split(r)[0] == sv}
            o = _best(mine, m, lambda r: not _is_learned(r))
            lr = _best(mine, m, _is_learned)
            if o is None:
                cells.append("-")
                continue
            if lr is None:  # no learned row for this solver (e.g. no oracle in the run)
                cells.append(f"{o[1]:.3g} ({_split(o[0])[1]}) / -")
                continue
            sec = mine[lr[0]].get("sec_per_1k", {}).get("mean", float("nan"))
            cells.append(f"{o[1]:.3g} ({_split(o[0])[1]}) / {lr[1]:.3g} ({sec:.2f} s)")
        print(f"| {sv} | " + " | ".join(cells) + " |")
    print(f"\n{m} of EDM ρ=7 by last-step convention: denoise (n σ then 0) / sigma-min (n + 1 σ "
          "to σ_min, no final denoise; NFE in brackets)\n")  # fmt: skip
    print("| solver | " + " | ".join(f"NFE {n}" for n in sorted(data)) + " |")
    print("|---|" + "---|" * len(data))
    for sv in solvers:
        cells = []
        for _nfe, rows in sorted(data.items()):
            d, s_ = rows.get(f"{sv}/edm-rho7"), rows.get(f"{sv}/edm-rho7@smin")
            if a.smin:  # both conventions from the same run (same seeds)
                d = _load([a.smin], a.preset).get(_nfe, {}).get(f"{sv}/edm-rho7")
            if d is None or s_ is None:
                cells.append("-")
                continue
            cells.append(f"{d[m]['mean']:.3g} / {s_[m]['mean']:.3g} "
                         f"({s_['nfe']['mean']:.0f})")  # fmt: skip
        print(f"| {sv} | " + " | ".join(cells) + " |")
    if a.grid:
        _print_grid(data, m, solvers)
    return 0


def _cell(best: tuple[str, float, float] | None) -> str:
    return "-" if best is None else f"{best[0]} {best[1]:.4g} ± {best[2]:.2g}"


def _print_grid(data: dict[int, dict[str, dict]], m: str, solvers: list[str]) -> None:
    """Every row × NFE: mean ± std of ``m`` (best of each NFE in bold; "-" where absent)."""
    nfes = sorted(data)
    rows = sorted({r for rs in data.values() for r in rs if m in rs[r]},
                  key=lambda r: (solvers.index(_split(r)[0]), r))  # fmt: skip
    best = {n: _best(data[n], m, lambda r: True) for n in nfes}
    print(f"\n{m} of every row (mean ± std over seeds; best per NFE in bold)\n")
    print("| row | " + " | ".join(f"NFE {n}" for n in nfes) + " |")
    print("|---|" + "---|" * len(nfes))
    for r in rows:
        cells = []
        for n in nfes:
            v = data[n].get(r, {}).get(m)
            if v is None:
                cells.append("-")
                continue
            c = f"{v['mean']:.4g} ± {v['std']:.2g}"
            cells.append(f"**{c}**" if best[n] and best[n][0] == r else c)
        print(f"| {r} | " + " | ".join(cells) + " |")


_ORDER = ("euler", "heun", "dpmpp-2m", "dpmpp-3m", "unipc-2", "unipc-3", "ipndm")

if __name__ == "__main__":
    raise SystemExit(main())
