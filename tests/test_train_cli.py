"""``diffusion-gym train`` (agents/train.py): typed config through diffusion_gym.config,
dotted overrides, errors before any work, smoke run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from agents import irl
from agents.train import apply_overrides, load_config, main

TINY = {
    "agent": "irl",
    "seed": 0,
    "rounds": 1,
    "checkpoint_every": 1,
    "progress": False,
    "env": {"num_envs": 32, "num_steps": 3, "guidance_weights": [1.0, 2.0], "gammas": [0.0]},
    "algo": {"net_arch": [16], "batch_size": 48, "n_epochs": 1},
    "discriminator": {"hidden": [16], "epochs": 1},
    "eval": {"num_samples": 64, "seeds": [0], "metrics": ["energy", "nfe"]},
}


def test_config_loads_with_types_and_dotted_overrides():
    _, cfg = load_config(TINY, ["discriminator.lr=3e-4", "env.gammas=[0, 0.2]", "seed=7"])
    assert isinstance(cfg, irl.Config)
    assert cfg.discriminator.lr == 3e-4 and cfg.env.gammas == [0.0, 0.2] and cfg.seed == 7
    assert cfg.discriminator.hidden == (16,)  # tuple field from a YAML list
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_unknown_keys_are_rejected_listing_the_valid_ones(capsys, tmp_path):
    with pytest.raises(ValueError, match=r"(?s)discriminator\.lrr.*'discriminator\.lr'"):
        load_config(TINY, ["discriminator.lrr=1"])
    with pytest.raises(ValueError, match=r"(?s)'roundz'.*'rounds'"):
        load_config(TINY, ["roundz=3"])
    with pytest.raises((TypeError, ValueError), match="rounds"):
        load_config(TINY, ["rounds=many"])
    with pytest.raises((TypeError, ValueError), match="hidden"):
        load_config(TINY, ["discriminator.hidden=wide"])
    with pytest.raises(ValueError, match="agent"):
        load_config({"agent": "dqn"})
    with pytest.raises(ValueError, match="key=value"):
        load_config(TINY, ["rounds"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert main([str(path), "--out", str(tmp_path / "o"), "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "diffusion-gym train: error:" in err and "bogus" in err
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.slow
def test_cli_smoke_and_resume(tmp_path):
    cfg, out = tmp_path / "tiny.yaml", tmp_path / "run"
    cfg.write_text(yaml.safe_dump(TINY))
    cmd = [sys.executable, "-m", "agents.train", str(cfg), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "| irl-policy |" in r.stdout and "best constant" in r.stdout
    results = json.loads((out / "eval.json").read_text())
    assert {"irl-policy", "const-w1-g0", "const-w2-g0"} <= set(results)
    assert results["irl-policy"]["energy"]["mean"] > 0
    for f in ("config.yaml", "eval.md", "summary.json", "policy_actions.png", "samples.png"):
        assert (out / f).is_file(), f
    assert list((out / "tb" / "irl").glob("events.*"))
    state = out / "checkpoints" / "round_1" / "state.pt"
    assert torch.load(state, weights_only=True)["round"] == 1
    # --resume (in-process, to save a second interpreter start) continues from the checkpoint
    # with the saved config (+ the new override)
    threads = torch.get_num_threads()
    try:
        assert main([str(cfg), "--out", str(out), "--resume", "rounds=2"]) == 0
    finally:
        torch.set_num_threads(threads)
    state = out / "checkpoints" / "round_2" / "state.pt"
    assert torch.load(state, weights_only=True)["round"] == 2
    assert yaml.safe_load(Path(out / "config.yaml").read_text())["rounds"] == 2


def test_agents_dispatch_and_config_round_trip():
    """The ``agent:`` key picks the trainer; the saved config.yaml reloads to the same Config."""
    from agents import art
    from agents.train import AGENTS, config_to_dict

    assert AGENTS["irl"] is irl and AGENTS["art"] is art
    module, cfg = load_config(TINY, ["seed=3"])
    assert module is irl
    again = load_config(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg))))[1]
    assert again == cfg
    module, cfg = load_config({"agent": "art"})
    assert module is art and isinstance(cfg, art.Config)
