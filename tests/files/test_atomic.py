"""Writes a crash cannot tear, and files the user names written as a shell redirection would."""

import errno
import os
import subprocess
import sys
import threading

import orjson
import pytest

from hrm_arc.files.atomic import make_folder, remove_cut_writes_in, write_atomic
from hrm_arc.files.jsonio import read_json, write_json_atomic


def test_a_named_file_is_written_through_its_link_and_a_run_s_own_file_replaces_its(tmp_path):
    target = tmp_path / "real" / "target.json"
    target.parent.mkdir()
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_json_atomic(link, {"a": 1}, named=True)  # --json link.json
    assert link.is_symlink() and read_json(target, "target") == {"a": 1}

    write_json_atomic(link, {"b": 2})  # a run's checkpoint or settings: the run's own file
    assert not link.is_symlink() and read_json(link, "file") == {"b": 2}
    assert read_json(target, "target") == {"a": 1}  # what the link pointed to is untouched


def test_a_named_pipe_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    read = []
    reader = threading.Thread(target=lambda: read.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_json_atomic(fifo, {"b": 2}, named=True)
    reader.join(10)
    assert [orjson.loads(b) for b in read] == [{"b": 2}]
    assert fifo.exists() and not fifo.is_file()


def test_dev_stdout_redirected_to_a_file_is_appended_to_not_replaced(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("earlier\n")
    script = ("from hrm_arc.files.jsonio import write_json_atomic; print('before'); "
              "write_json_atomic('/dev/stdout', {'c': 3}, named=True); print('\\nafter')")
    with open(log, "ab") as out:  # as `>> run.log` opens it
        subprocess.run([sys.executable, "-c", script], stdout=out, check=True)
    assert log.read_text() == 'earlier\nbefore\n{"c":3}\nafter\n'


def test_a_full_disk_is_reported_as_such_naming_the_file_and_leaves_nothing(tmp_path):
    def torch_save_on_a_full_disk(f):  # torch.save wraps the OSError in a RuntimeError
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos") from None

    path = tmp_path / "checkpoint.pt"
    with pytest.raises(OSError) as info:
        write_atomic(path, torch_save_on_a_full_disk)
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(path))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="not a disk"):  # other errors pass unchanged
        write_atomic(path, lambda f: (_ for _ in ()).throw(RuntimeError("not a disk")))


def test_a_link_to_nothing_is_named_as_such(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    for folder in (tmp_path / "dangling", tmp_path / "dangling" / "run"):
        with pytest.raises(FileNotFoundError, match="a link to .*nowhere/x, which does not exist"):
            make_folder(folder)


def test_cut_writes_of_the_named_files_are_removed_and_nothing_else(tmp_path):
    def cut_short(f):  # as a SIGKILL would, but the temporary file stays for the test
        f.write(b"half")
        raise SystemExit

    with pytest.raises(SystemExit), pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "unlink", lambda path, **kw: None)  # write_atomic's own clean-up
        write_atomic(tmp_path / "submission.json", cut_short)
    (cut,) = [p.name for p in tmp_path.iterdir()]  # named as write_atomic names them
    assert cut.startswith(".submission.json.") and cut.endswith(".tmp")
    (tmp_path / ".config.json.k1ll3d.tmp").write_text("")
    kept = [
        "submission.json.tmp",  # not hidden
        ".submission.json.tmp",  # no random part
        ".submission.json.bak.k1ll3d.tmp",  # a temporary of submission.json.bak
        ".notes.json.k1ll3d.tmp",  # of a file the caller does not name
        ".submission.json.k1ll3d.temp",
    ]
    for name in kept:
        (tmp_path / name).write_text("")
    (tmp_path / ".score.json.k1ll3d.tmp").mkdir()  # a folder is no temporary file
    remove_cut_writes_in(tmp_path, ["submission.json", "config.json", "score.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, ".score.json.k1ll3d.tmp"])
    remove_cut_writes_in(tmp_path / "missing", ["submission.json"])  # nothing to do
