"""Atomic writes: the result appears whole or not at all, with ordinary permissions."""

import os
import stat

import pytest

from globscope.fileio import atomic_path, write_json


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    p = tmp_path / "out.json"
    write_json(p, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert p.read_text().strip().startswith("{") and '"a": 1' in p.read_text()
    assert [f.name for f in tmp_path.iterdir()] == ["out.json"]  # no temporary left behind


def test_atomic_files_have_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "x.json", {})
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "x.json").stat().st_mode)
    assert mode & 0o044 == 0o044  # group and others can read, as with open()
