"""bertcrf/safe_files.py: outputs that are never inputs, files and folders that appear only once complete."""

from __future__ import annotations

import os

import pytest

from bertcrf import safe_files


def test_same_path_by_path_link_and_inode(tmp_path):
    original = tmp_path / "a.txt"
    original.write_text("x", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "soft").symlink_to(original)
    os.link(original, tmp_path / "hard")
    for other in ("a.txt", "sub/../a.txt", "soft", "hard"):
        assert safe_files.same_path(original, tmp_path / other), other
    assert not safe_files.same_path(original, tmp_path / "missing")
    assert safe_files.within(original, tmp_path) and safe_files.within(tmp_path, tmp_path)
    assert not safe_files.within(tmp_path, original)
    with pytest.raises(ValueError, match="--output .*hard is the --input file"):
        safe_files.check_not_input(tmp_path / "hard", {"--input": original, "--other": None}, "--output")


def test_atomic_write_replaces_only_when_complete(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("complete\n", encoding="utf-8")
    os.chmod(target, 0o640)
    with pytest.raises(RuntimeError):
        with safe_files.atomic_write(target) as stream:
            stream.write("half")
            raise RuntimeError("stopped")
    assert target.read_text(encoding="utf-8") == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with safe_files.atomic_write(target) as stream:
        stream.write("new\n")
        assert target.read_text(encoding="utf-8") == "complete\n"  # not yet in place
    assert target.read_text(encoding="utf-8") == "new\n" and os.stat(target).st_mode & 0o777 == 0o640


def test_atomic_write_follows_symlinks_and_writes_devices_directly(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    safe_files.write_text(link, "new")
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new"
    safe_files.write_text(os.devnull, "nothing")  # no temporary file beside /dev/null
    with pytest.raises(FileNotFoundError, match="no such folder"):
        safe_files.write_text(tmp_path / "missing" / "out.txt", "x")


def test_output_folder_rules(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    inputs = {"--model folder": model}
    with pytest.raises(ValueError, match="--output .*model is the --model folder"):
        safe_files.check_output_folder(model, inputs, "--output", overwrite=True)
    with pytest.raises(ValueError, match="holds the --model folder"):
        safe_files.check_output_folder(tmp_path, inputs, "--output", overwrite=True)
    with pytest.raises(ValueError, match=r"is not empty \(config.json\): pass --overwrite"):
        safe_files.check_output_folder(model, {}, "--output", overwrite=False)
    with pytest.raises(ValueError, match="is a file"):
        safe_files.check_output_folder(model / "config.json", {}, "--output", overwrite=True)
    safe_files.check_output_folder(model / "sub", inputs, "--output", overwrite=False)  # a new folder inside: fine


def test_staged_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        with safe_files.staged_folder(target) as staging:
            (staging / "new.txt").write_text("new", encoding="utf-8")
            raise KeyboardInterrupt
    assert [p.name for p in target.iterdir()] == ["old.txt"] and [p.name for p in tmp_path.iterdir()] == ["out"]
    with safe_files.staged_folder(target) as staging:
        (staging / "new.txt").write_text("new", encoding="utf-8")
        assert (target / "old.txt").exists()
    assert [p.name for p in target.iterdir()] == ["new.txt"] and [p.name for p in tmp_path.iterdir()] == ["out"]
    umask = safe_files.current_umask()
    assert os.stat(target).st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
