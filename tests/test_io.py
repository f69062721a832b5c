"""diffusion_gym.io: atomic writes, checkpoint directories with a manifest, logs."""

import json
import os

import pytest
import yaml

from diffusion_gym import io


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    p = tmp_path / "a.json"
    io.atomic_write_json(p, {"x": 1})
    io.atomic_write_json(p, {"x": [1, 2]})
    assert json.loads(p.read_text()) == {"x": [1, 2]}
    io.atomic_write_yaml(tmp_path / "c.yaml", {"b": 1, "a": 2})
    assert list(yaml.safe_load((tmp_path / "c.yaml").read_text())) == ["b", "a"]
    io.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.json", "b.bin", "c.yaml"]
    with pytest.raises(TypeError, match="str"):
        io.atomic_write_text(p, b"bytes")


def test_a_failing_writer_keeps_the_old_file(tmp_path):
    p = tmp_path / "model.zip"
    p.write_bytes(b"old")

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        io.atomic_save_via(p, broken)
    assert p.read_bytes() == b"old" and [f.name for f in tmp_path.iterdir()] == ["model.zip"]
    # the temporary path keeps the suffix (SB3 and matplotlib pick formats by it)
    seen = []
    io.atomic_save_via(tmp_path / "fig.png", lambda t: (seen.append(t.suffix), t.write_bytes(b"x")))
    assert seen == [".png"]


def test_checkpoint_dir_appears_complete_or_not_at_all(tmp_path):
    with io.atomic_dir(tmp_path / "step_5", meta={"step": 5}) as d:
        (d / "state.pt").write_bytes(b"abc")
        (d / "model.zip").write_bytes(b"zz")
    manifest = io.read_manifest(tmp_path / "step_5")
    assert set(manifest["files"]) == {"state.pt", "model.zip"} and manifest["meta"]["step"] == 5
    with pytest.raises(ZeroDivisionError), io.atomic_dir(tmp_path / "step_9") as d:
        (d / "state.pt").write_bytes(b"abc")
        1 / 0  # noqa: B018 - a crash while writing
    assert not (tmp_path / "step_9").exists()
    with pytest.raises(FileExistsError):
        with io.atomic_dir(tmp_path / "step_5"):
            pass
    # corrupt, incomplete and stray entries are skipped; numbering is numeric, not lexical
    (tmp_path / "step_7").mkdir()  # no manifest
    (tmp_path / "model_best").mkdir()
    (tmp_path / "step_x.zip").write_bytes(b"")
    with io.atomic_dir(tmp_path / "step_10") as d:
        (d / "state.pt").write_bytes(b"new")
    assert [n for n, _ in io.complete_dirs(tmp_path, "step_")] == [5, 10]
    (tmp_path / "step_10" / "state.pt").write_bytes(b"bad")  # size kept, content changed
    assert [n for n, _ in io.complete_dirs(tmp_path, "step_")] == [5]


def test_jsonl_log_drops_a_torn_last_line(tmp_path):
    p = tmp_path / "log.jsonl"
    io.append_line(p, json.dumps({"step": 1}))
    io.append_line(p, json.dumps({"step": 2}))
    with open(p, "a") as f:
        f.write('{"step": 3')  # a kill inside the write
    assert io.read_jsonl(p) == [{"step": 1}, {"step": 2}]
    with pytest.raises(ValueError, match="one line"):
        io.append_line(p, "a\nb")


def test_unwritable_output_directory_is_a_clear_error(tmp_path):
    assert io.check_writable_dir(tmp_path / "new" / "dir").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        io.check_writable_dir(tmp_path / "file")
    with pytest.raises(ValueError, match="not a writable directory"):
        io.check_writable_dir("/proc/x")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="not a writable directory"):
            io.check_writable_dir(ro)
