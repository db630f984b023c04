"""Files maskcls writes get the mode a plain open() would give under the umask (temp files are private: 0600)."""

import os
import stat

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from maskcls.core.io import atomic_dir, atomic_path, current_umask, save_figure, write_csv, write_json, write_text


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_and_folders_respect_the_umask(umask, tmp_path):
    assert current_umask() == umask
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    expected = mode(plain)
    assert expected == 0o666 & ~umask
    written = [
        write_text(tmp_path / "a.txt", "x"),
        write_json(tmp_path / "b.json", {"a": 1}),
        write_csv(tmp_path / "c.csv", pd.DataFrame({"a": [1]})),
        save_figure(tmp_path / "d.png", plt.figure()),
    ]
    with atomic_path(tmp_path / "e.bin") as tmp:
        tmp.write_bytes(b"x")
    written.append(tmp_path / "e.bin")
    assert {path.name: mode(path) for path in written} == {path.name: expected for path in written}
    with atomic_dir(tmp_path / "folder") as folder:
        (folder / "inside.txt").write_text("x")
    plain_dir = tmp_path / "plain_dir"
    plain_dir.mkdir()
    assert mode(tmp_path / "folder") == mode(plain_dir) == 0o777 & ~umask
    assert mode(tmp_path / "folder" / "inside.txt") == expected
