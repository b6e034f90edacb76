"""One run at a time in a folder: a second is refused naming the first, and nothing is left."""

import errno
import fcntl
import os

import pytest
import torch

from hrm_arc.files import folder_lock as module
from hrm_arc.files.folder_lock import LOCK, folder_lock
from hrm_arc.hrm_core.distributed import DistInfo

ONE = DistInfo(0, 1, torch.device("cpu"))


def test_a_held_folder_is_refused_naming_its_holder_and_left_as_found(tmp_path):
    folder = tmp_path / "new" / "out"
    with folder_lock(folder, ONE):
        assert (folder / LOCK).read_text().startswith(f"pid {os.getpid()} on ")
        with pytest.raises(ValueError, match=rf"out is in use by another run \(pid {os.getpid()}"):
            with folder_lock(folder, ONE):
                pass
    assert not (tmp_path / "new").exists()  # made for a run that wrote nothing: gone again
    folder.mkdir(parents=True)
    with folder_lock(folder, ONE):
        (folder / "result.json").write_text("{}")
    assert sorted(p.name for p in folder.iterdir()) == ["result.json"]


def test_a_lock_file_its_holder_removed_meanwhile_is_not_taken(tmp_path, monkeypatch):
    # Between our open and our flock the holder let go and removed the file: the next run
    # makes a new one, so locking the removed one would let two runs in.
    real, opened = open, []

    def open_then_holder_lets_go(path, mode="r", *args, **kwargs):
        handle = real(path, mode, *args, **kwargs)
        if str(path).endswith(LOCK) and not opened:
            os.unlink(path)
        opened.append(handle)
        return handle

    monkeypatch.setattr(module, "open", open_then_holder_lets_go, raising=False)
    with folder_lock(tmp_path, ONE):
        assert len(opened) == 2 and (tmp_path / LOCK).exists()
        assert os.stat(tmp_path / LOCK).st_ino == os.fstat(opened[-1].fileno()).st_ino


@pytest.mark.parametrize("code, refused", [(errno.ENOLCK, False), (errno.EACCES, True)])
def test_a_filesystem_that_cannot_lock_runs_unguarded_and_other_errors_refuse(
        tmp_path, monkeypatch, caplog, code, refused):
    def failing(handle, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", failing)
    if refused:
        with pytest.raises(ValueError, match=os.strerror(code)):
            with folder_lock(tmp_path, ONE):
                pass
    else:
        with folder_lock(tmp_path, ONE):
            pass
        assert "cannot be locked here" in caplog.text
