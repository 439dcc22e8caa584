"""utils/io_utils.py: atomic writes keep the permissions a normal write would have (umask)."""

import os
import stat

import pytest

from utils.io_utils import atomic_write_bytes, atomic_write_json, current_umask, make_temp_dir


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_files_and_temp_dirs_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        atomic_write_json(tmp_path / "a" / "x.json", {"k": 1})
        atomic_write_bytes(tmp_path / "y.bin", b"data")
        d = make_temp_dir(tmp_path, prefix=".adapter.")
        with open(tmp_path / "plain", "w"):
            pass
        os.mkdir(tmp_path / "plain_dir")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "a" / "x.json") == mode(tmp_path / "plain") == 0o666 & ~mask
    assert mode(tmp_path / "y.bin") == 0o666 & ~mask
    assert mode(d) == mode(tmp_path / "plain_dir") == 0o777 & ~mask
    assert [p for p in tmp_path.rglob(".*.tmp") if p != d] == []  # no temporary file left behind
