"""``diffusion-gym`` CLI errors (issue #17 item 11): one line on stderr, no traceback, exit
status 2 for usage errors and 1 for others, ``--debug`` for the traceback."""

import json

import pytest
import yaml

from agents import cli, irl
from agents.train import main as train_main

TINY = {"agent": "irl", "rounds": 1, "progress": False}


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"diffusion-gym {command}: error:"), err
    return lines[0]


def test_yaml_syntax_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: irl\nenv: [unclosed\n")
    for command in ("train", "compare", "benchmark"):
        extra = ["--out", str(tmp_path / "o")] if command != "benchmark" else []
        assert cli.main([command, str(bad), *extra]) == 2
        line = _one_line_error(capsys, command)
        assert "bad.yaml" in line and "YAML" in line and "<unicode string>" not in line


def test_bad_schedule_json_missing_files_and_unwritable_out(tmp_path, capsys):
    sched = tmp_path / "bad.json"
    sched.write_text("{not json")
    args = ["evaluate", "--schedule", str(sched), "--out", str(tmp_path / "o")]
    assert cli.main(args) == 2
    assert "bad.json" in _one_line_error(capsys, "evaluate")
    sched.write_text(json.dumps([1, 2]))
    assert cli.main(args) == 2
    assert "'sigmas'" in _one_line_error(capsys, "evaluate")
    assert cli.main(["compare", str(tmp_path / "missing.yaml"), "--out", str(tmp_path)]) == 2
    assert "missing.yaml" in _one_line_error(capsys, "compare")
    assert cli.main(["benchmark", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in _one_line_error(capsys, "benchmark")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    for out in ("/proc/x", str(cfg)):
        assert cli.main(["train", str(cfg), "--out", out]) == 2
        assert "--out" in _one_line_error(capsys, "train")
    compare_cfg = tmp_path / "cmp.yaml"
    compare_cfg.write_text(yaml.safe_dump({"presets": ["gmm-ring8"], "nfe": [3]}))
    assert cli.main(["compare", str(compare_cfg), "--out", "/proc/x"]) == 2
    assert "not a writable directory" in _one_line_error(capsys, "compare")


def test_runtime_errors_are_one_line_with_status_1_and_debug_shows_them(
    tmp_path, capsys, monkeypatch
):
    def broken(config, out, resume):
        raise RuntimeError("the denoiser produced NaN\nat step 3")

    monkeypatch.setattr(irl, "run", broken)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    assert cli.main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 1
    line = _one_line_error(capsys, "train")
    assert "RuntimeError: the denoiser produced NaN at step 3" in line and "--debug" in line
    with pytest.raises(RuntimeError, match="NaN"):
        cli.main(["train", str(cfg), "--out", str(tmp_path / "o2"), "--debug"])


def test_usage_errors_exit_2_from_argparse_and_the_dispatcher(tmp_path, capsys):
    assert cli.main(["nope"]) == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["train"])  # argparse: --out missing
    assert e.value.code == 2
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    assert train_main([str(cfg), "--out", str(tmp_path / "o"), "--resume", "--overwrite"]) == 2
