"""Atomic writes: nothing half-written under the final name, and outputs that another user can read (artifacts are
deployed, often by a service account): the modes every new file and folder gets, not mkdtemp's private 0700/0600."""
from __future__ import annotations

import os
import stat

import pytest

from roots_edge.core.paths import atomic_dir, atomic_file, umask, write_text_atomic


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_umask_is_read_without_changing_it():
    before = os.umask(0o027)
    try:
        assert umask() == 0o027 and umask() == 0o027
    finally:
        os.umask(before)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_outputs_get_the_usual_modes(tmp_path, mask):
    before = os.umask(mask)
    try:
        with atomic_dir(tmp_path / "artifact") as tmp:
            (tmp / "model.onnx").write_bytes(b"x")
        write_text_atomic(tmp_path / "artifact" / "manifest.json", "{}")
    finally:
        os.umask(before)
    assert mode(tmp_path / "artifact") == 0o777 & ~mask
    assert mode(tmp_path / "artifact" / "manifest.json") == 0o666 & ~mask
    assert mode(tmp_path / "artifact" / "model.onnx") == 0o666 & ~mask


def test_a_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "artifact") as tmp:
            (tmp / "model.onnx").write_bytes(b"half")
            raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "manifest.json") as tmp:
            tmp.write_text("{")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_model_folders_are_readable_by_others(tiny_llama):
    assert mode(tiny_llama) == 0o777 & ~umask()
    for f in tiny_llama.iterdir():
        assert mode(f) & 0o044 == 0o044 & ~umask(), f.name


def test_privately_written_files_inside_an_artifact_become_readable(tmp_path):
    before = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "artifact") as tmp:
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "weights.bin").write_bytes(b"x")
            os.chmod(tmp / "sub" / "weights.bin", 0o600)
            (tmp / "run.sh").write_text("#!/bin/sh\n")
            os.chmod(tmp / "run.sh", 0o700)
    finally:
        os.umask(before)
    assert mode(tmp_path / "artifact" / "sub") == 0o755
    assert mode(tmp_path / "artifact" / "sub" / "weights.bin") == 0o644
    assert mode(tmp_path / "artifact" / "run.sh") == 0o744          # executable stays the owner's only


def test_a_killed_runs_leftovers_are_removed_by_the_next_write(tmp_path):
    """`.tmp-<name>-<pid>-*` of a process that is gone is removed; a live process's (ours) and other names stay."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(done.stdout)
    final = tmp_path / "gguf-q4"
    stale = tmp_path / f".tmp-gguf-q4-{dead}-abc123"
    (stale / "sub").mkdir(parents=True)
    (stale / "model.gguf").write_bytes(b"GGUF" + bytes(64))       # a complete-looking file inside
    stale_file = tmp_path / f".tmp-gguf-q4-{dead}-f00"
    stale_file.write_text("half")
    live = tmp_path / f".tmp-gguf-q4-{os.getpid()}-zzz"
    live.mkdir()
    other = tmp_path / f".tmp-gguf-q8-{dead}-abc"
    other.mkdir()
    with atomic_dir(final) as tmp:
        (tmp / "x").write_text("done")
    assert not stale.exists() and not stale_file.exists()
    assert live.exists() and other.exists() and (final / "x").read_text() == "done"
