"""Trained IRL policies inside ``diffusion-gym compare``'s harness (issue #20 item 7).

``python -m agents.irl.compare CONFIG --out DIR --run NAME=RUN_DIR ...`` runs every
strategy of a comparison config (:mod:`baselines.compare`: schedules, constant guidance,
interval, ramps, churn, Learn to Guide, ...) *and* the learned policy of each IRL run
directory, in one :func:`baselines.evaluate.evaluate` call per (preset, NFE) section: the
same x_T, labels, churn noise, seeds, samples and metrics for every row. A run joins the
sections whose preset and NFE (its env's solver and steps) it was trained for; its row
``irl:NAME`` samples on the run's own schedule (``sigmas`` in ``strategies.json``), so a
policy trained on the config's guidance schedule is compared on equal terms, and one trained
on another schedule (an ART export) shows what that schedule adds.

``--schedules DIR`` first writes the config's guidance schedule of every section as
``DIR/<preset>/nfe<N>/schedule.json`` (:func:`diffusion_gym.schedules.save_schedule`), the
file an IRL config takes as ``env.schedule``, so the policy trains on exactly the σ's the
guidance baselines use; with no ``--run`` it stops there.

The layer rule holds: this module is in ``agents`` and imports ``baselines``, never the
reverse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from baselines.compare import CompareConfig, build_strategies, load_config
from baselines.evaluate import (
    DEFAULT_METRICS,
    evaluate,
    markdown_table,
    steps_for_nfe,
    write_report,
)
from diffusion_gym import presets as _presets
from diffusion_gym import schedules as _schedules
from diffusion_gym.config import to_dict
from diffusion_gym.io import atomic_write_text, check_writable_dir
from diffusion_gym.steps import nfe_of

from .diagnose import load_run
from .strategy import PolicyStrategy
from .trainer import IRLTrainer

__all__ = ["guidance_schedule", "save_guidance_schedules", "run_irl_compare", "main"]


def guidance_schedule(preset, nfe: int, cfg: CompareConfig) -> torch.Tensor:
    """The σ's the config's guidance rows run on at ``nfe`` (``cfg.guidance_schedule``, fitted
    as :func:`baselines.compare.build_strategies` fits it)."""
    probe = dataclasses.replace(cfg, strategies=["cfg-1.0"])
    (row,) = build_strategies(preset, nfe, probe, log=lambda m: None)
    return row.sigmas


def save_guidance_schedules(cfg: CompareConfig, out: str | Path) -> dict[str, Path]:
    """``out/<preset>/nfe<N>/schedule.json`` of every section; returns ``{section: path}``."""
    paths = {}
    for pname in cfg.presets:
        preset = _presets.make(pname)
        for nfe in cfg.nfe:
            sig = guidance_schedule(preset, nfe, cfg)
            path = Path(out) / pname / f"nfe{nfe}" / "schedule.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            _schedules.save_schedule(
                path, sig, cfg.solver, steps_for_nfe(nfe, cfg.solver), pname, nfe=nfe,
                source=f"diffusion-gym compare guidance_schedule={cfg.guidance_schedule}",
            )  # fmt: skip
            paths[f"{pname}/nfe{nfe}"] = path
    return paths


def _joins(trainer: IRLTrainer, pname: str, nfe: int) -> bool:
    env = trainer.env
    return env.preset.name == pname and nfe_of(env.num_steps, env.solver) == nfe


def run_irl_compare(
    cfg: CompareConfig,
    runs: dict[str, str | Path],
    out: str | Path,
    progress: bool = True,
    temperature: float | None = None,
) -> dict:
    """The config's rows plus ``irl:<name>`` of every run, per section, on the same noise;
    writes ``out/<preset>/nfe<N>/`` reports, ``out/eval.json`` and ``out/eval.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trainers = {name: load_run(d) for name, d in runs.items()}
    meta = {"compare": to_dict(cfg), "runs": {k: str(v) for k, v in runs.items()}}
    atomic_write_text(out / "config.json", json.dumps(meta, indent=2))
    everything, md = {}, [f"# {cfg.title} (with IRL policies)", ""]
    for pname in cfg.presets:
        preset = _presets.make(pname)
        for nfe in cfg.nfe:
            log = lambda m: print(m, file=sys.stderr)  # noqa: E731
            rows = build_strategies(preset, nfe, cfg, log=log)
            for name, tr in trainers.items():
                if _joins(tr, pname, nfe):
                    rows.append(PolicyStrategy(f"irl:{name}", tr.env, tr.model.policy, temperature))
            samples: dict = {}
            res = evaluate(rows, preset, num_samples=cfg.num_samples, seeds=cfg.seeds,
                           reference=cfg.reference_steps, metrics=cfg.metrics or DEFAULT_METRICS,
                           progress=progress, samples_out=samples)  # fmt: skip
            title = f"{pname}, NFE {nfe} ({cfg.solver})"
            write_report(res, out / pname / f"nfe{nfe}", title=title,
                         plots={"strategies": rows, "samples": samples})  # fmt: skip
            everything[f"{pname}/nfe{nfe}"] = res
            md.append(markdown_table(res, title))
    atomic_write_text(out / "eval.json", json.dumps(everything, indent=2, allow_nan=False))
    atomic_write_text(out / "eval.md", "\n".join(md))
    return everything


def _parse_runs(items: list[str]) -> dict[str, Path]:
    runs = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--run takes NAME=RUN_DIR, got {item!r}")
        if name in runs:
            raise ValueError(f"--run name {name!r} given twice")
        if not (Path(path) / "config.yaml").is_file():
            raise FileNotFoundError(f"--run {name}: no IRL run (config.yaml) in {path!r}")
        runs[name] = Path(path)
    return runs


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.irl.compare CONFIG --out DIR [--run NAME=RUN_DIR ...]
    [--schedules DIR] [key=value ...]``."""
    ap = argparse.ArgumentParser(
        prog="python -m agents.irl.compare", description=__doc__.split("\n")[0]
    )
    ap.add_argument("config", help="comparison YAML (baselines/configs/compare-*.yaml)")
    ap.add_argument("--out", help="output directory of the comparison")
    ap.add_argument("--run", action="append", default=[], help="NAME=RUN_DIR of an IRL run")
    ap.add_argument("--schedules", help="write the guidance schedules here (schedule.json)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("overrides", nargs="*", help="dotted key=value overrides of the config")
    a = ap.parse_intermixed_args(argv)
    try:
        cfg = load_config(a.config, a.overrides)
        runs = _parse_runs(a.run)
        if runs and not a.out:
            raise ValueError("--run needs --out")
        if not runs and not a.schedules:
            raise ValueError("give --run NAME=RUN_DIR (with --out) and/or --schedules DIR")
        if a.out:
            check_writable_dir(a.out)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"agents.irl.compare: error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    if a.schedules:
        for section, path in save_guidance_schedules(cfg, a.schedules).items():
            print(f"{section}: {path}")
    if runs:
        run_irl_compare(cfg, runs, a.out, progress=not a.no_progress)
        print((Path(a.out) / "eval.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
