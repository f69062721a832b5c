"""Pick and publish the best learned schedule per preset × solver × NFE.

For each (preset, solver, NFE) the candidates are: every denoise-convention schedule row of a
``diffusion-gym compare`` run (``--from DIR``: ``DIR/<preset>/nfe<N>/strategies.json``), the
oracle continued from the best of them (Adam through the sampler for ``--iterations`` more
iterations on the compare run's training noise: :data:`baselines.schedules.TRAIN_SALT` + 0,
``--train-samples`` x_T), and any ART ``schedule.json`` given with ``--art`` that records the
same preset, solver and NFE. The winner is the learned candidate (oracle or ART) with the
lowest RMSE on *validation* noise (salt TRAIN_SALT + 1, disjoint from the training noise and
from the evaluation seeds 0, 1, ...), written to
``diffusion_gym/schedules_data/<preset>/<solver>/nfe<N>.json`` with its provenance in
``source``. With ``--iterations 0`` and no ART file the compare run's oracle row is
published as is (no validation solve). Prints a markdown table of the winners.

    python benchmarks/publish_schedules.py --from runs/cs-64d --presets gmm-64d \\
        --nfe 3 5 7 9 --iterations 120
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from baselines import schedules as B
from diffusion_gym import presets, schedules, steps

#: Rows of the compare run that are learned (fitted through the sampler), not off-the-shelf.
LEARNED_ROWS = ("oracle",)


def _rows(
    run: Path, preset: str, nfe: int, solver: str, *, smin: bool = False
) -> dict[str, torch.Tensor]:
    """The compare run's denoise-convention rows of ``solver`` at ``nfe``: {name: σ's}.
    ``smin``: also the ``@smin`` rows (n σ's down to σ_min, no final denoise), turned into
    the denoise convention by replacing their last step into σ_min with a denoise (the same
    n σ's, then 0): starts for the continued oracle, which at low NFE are the best
    off-the-shelf rows (docs/solvers.md)."""
    path = run / preset / f"nfe{nfe}" / "strategies.json"
    if not path.is_file():
        raise FileNotFoundError(f"no compare output at {path}")
    out = {}
    for name, d in json.loads(path.read_text()).items():
        # "<solver>/<row>" in a compare run of several solvers, "<row>" in a run of one
        head, _, row = name.rpartition("/")
        if (head or d.get("solver")) != solver:
            continue
        sig = torch.tensor(d["sigmas"], dtype=torch.float64)
        if d.get("last_step", "denoise") == "denoise":
            out[row] = sig
        elif smin and sig[-1] == 0 and len(sig) >= 3:  # [σ_0 .. σ_{n-1}, σ_min, 0]
            out[row] = torch.cat([sig[:-2], sig.new_zeros(1)])
    if not out:
        raise ValueError(f"the compare run {path} has no {solver} rows at NFE {nfe}")
    return out


def _art(paths: list[str], preset: str, solver: str, nfe: int) -> dict[str, torch.Tensor]:
    out = {}
    for p in paths:
        rec = schedules.load_schedule(p)
        if (rec["preset"], rec["solver"]) == (preset, solver) and (
            steps.nfe_of(rec["budget"], solver) == nfe
        ):
            out[f"art:{p}"] = rec["sigmas"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="run", required=True, help="diffusion-gym compare output dir")
    ap.add_argument("--presets", nargs="+", default=["gmm-64d"])
    ap.add_argument("--solvers", nargs="+", default=list(steps.SOLVERS))
    ap.add_argument("--nfe", type=int, nargs="+", default=[3, 5, 7, 9])
    ap.add_argument("--iterations", type=int, default=120, help="further Adam iterations (0: none)")
    ap.add_argument("--lr", type=float, default=0.02, help="Adam lr of the continued oracle")
    ap.add_argument("--train-samples", type=int, default=1024)
    ap.add_argument("--val-samples", type=int, default=1024)
    ap.add_argument("--reference-steps", type=int, default=128)
    ap.add_argument("--art", nargs="*", default=[], help="ART schedule.json files")
    ap.add_argument("--out", default=str(schedules.PUBLISHED_DIR), help="published folder")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    lines = ["| preset | solver | NFE | published (val RMSE) | source |", "|---|---|---|---|---|"]
    for pname in a.presets:
        p = presets.make(pname)
        train = B.training_set(p, a.train_samples, 0, a.reference_steps) if a.iterations else None
        val = None
        for nfe in a.nfe:
            for sv in a.solvers:
                n = steps.steps_for_nfe(nfe, sv)
                rows = _rows(Path(a.run), pname, nfe, sv, smin=True)  # σ_min rows: starts
                learned = {k: rows[k] for k in LEARNED_ROWS if k in rows}
                if a.iterations:  # the oracle continued from the best row
                    start = [s for s in rows.values() if s.shape[0] == n + 1]
                    learned["oracle-continued"] = B.oracle(
                        p, n, sv, data=train, iterations=a.iterations, lr=a.lr, restarts=1,
                        extra_inits=start, num_random=0,
                    ).sigmas  # fmt: skip
                learned.update(_art(a.art, pname, sv, nfe))
                if not learned:
                    raise ValueError(f"no learned candidate for {pname} {sv} NFE {nfe}")
                if len(learned) == 1:  # nothing to choose: no validation solve needed
                    win = next(iter(learned))
                    src = f"{win}: the compare run's row ({a.run}), taken as is"
                    score = {win: float("nan")}
                else:
                    if val is None:
                        val = B.training_set(p, a.val_samples, 1, a.reference_steps)
                    score = {k: B.schedule_rmse(p, s, sv, val) for k, s in learned.items()}
                    win = min(score, key=score.get)
                    how = (f"{win}: Adam through the {sv} sampler on {a.train_samples} training "
                           "x_T" if not win.startswith("art:") else win)  # fmt: skip
                    src = f"{how}; validation RMSE {score[win]:.4g} on {a.val_samples} x_T"
                dest = Path(a.out) / pname / sv / f"nfe{nfe}.json"
                dest.parent.mkdir(parents=True, exist_ok=True)
                schedules.save_schedule(
                    dest, learned[win], sv, n, pname, nfe=nfe, source=src,
                    sigma_min=p.sigma_min, sigma_max=p.sigma_max,
                )  # fmt: skip
                lines.append(f"| {pname} | {sv} | {nfe} | {score[win]:.4g} | {win} |")
                print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
