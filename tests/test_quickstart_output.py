"""What a newcomer reads from ``diffusion-gym train`` (README Quickstart): the output
directory, the learning signal on the progress bar, the table's legend, regressions as
numbers."""

from __future__ import annotations

import torch
import yaml

from agents.irl.config import EvalConfig
from agents.irl.report import summarize, summary_markdown, table_legend
from agents.train import main

TINY = {
    "agent": "irl",
    "seed": 0,
    "rounds": 2,
    "checkpoint_every": 2,
    "progress": True,
    "env": {"num_envs": 16, "num_steps": 3, "guidance_weights": [1.0, 2.0], "gammas": [0.0]},
    "algo": {"net_arch": [8], "batch_size": 48, "n_epochs": 1},
    "discriminator": {"hidden": [8], "epochs": 1},
    "eval": {"num_samples": 32, "seeds": [0], "metrics": ["energy", "class_tv", "nfe"],
             "every": 1, "train_samples": 32},
}  # fmt: skip


def _row(mean):
    return {"mean": mean, "std": 0.0, "values": [mean]}


def test_regression_against_a_zero_best_constant_is_a_number():
    results = {
        "irl-policy": {"class_tv": _row(0.0078), "energy": _row(0.2)},
        "const-a": {"class_tv": _row(0.0), "energy": _row(0.5)},
        "const-b": {"class_tv": _row(0.1), "energy": _row(0.1)},
    }
    cfg = EvalConfig(metrics=["energy", "class_tv"])
    md = summary_markdown(summarize(results, ["const-a", "const-b"], cfg))
    assert "| –" not in md
    assert "| energy | 0.2 | 0.1 | const-b | -100.0% |" in md  # worse: negative
    assert "-0.0078 (absolute; best constant is 0)" in md


def test_legend_names_rows_and_columns():
    line = table_legend(["energy", "class_tv", "nfe"])
    assert "\n" not in line
    for part in ("irl-policy", "const-wW-gG", "class_tv = class-histogram total variation"):
        assert part in line


def test_train_prints_out_dir_signal_and_legend(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    threads = torch.get_num_threads()
    try:
        assert main([str(cfg), "--out", str(tmp_path / "run")]) == 0
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    assert f"writing into {tmp_path / 'run'}/" in out
    assert f"outputs in {tmp_path / 'run'}/: checkpoints/, config.yaml, eval.json" in out
    assert "Rows: irl-policy = the learned policy" in out
    assert "energy=" in err and "@2" in err  # the quick evaluation of round 2 on the bar


def test_a_slow_bank_build_shows_progress(capsys, monkeypatch):
    import diffusion_gym.envs.bank as bank_mod
    from diffusion_gym import presets

    den = presets.make("gmm-ring8").denoiser
    bank = bank_mod.ReferenceBank(den, 8, prior_std=80.0, reference_steps=6)
    bar = bank._progress_bar()
    assert bar.total == 6 and "reference bank: 8 x_ref" in bar.desc
    bar.close()
    made = []
    real = bank_mod.tqdm
    monkeypatch.setattr(
        bank_mod, "tqdm", lambda **kw: made.append(real(**{**kw, "delay": 0})) or made[-1]
    )
    bank.build()
    assert made and made[0].n == 6  # every fine-solve step counted
    assert "reference bank: 8 x_ref, 6 Heun steps" in capsys.readouterr().err
