"""Atomic writes on a full disk: the error names the file and the fix, and nothing is left behind."""

import errno
import subprocess

import numpy as np
import pytest
import torch

from lsap.io import files


@pytest.fixture
def full_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs; needs root, as on the CI machine)."""
    where = tmp_path / "small-fs"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    yield where
    # lazily: a failed torch.save's traceback may still hold its file open
    subprocess.run(["umount", "--lazy", str(where)], check=True)


@pytest.mark.parametrize("write", [
    lambda p: torch.save({"w": torch.zeros(1 << 20)}, p),   # 4 MiB: torch's own 'iostream error'
    lambda p: np.save(open(p, "wb"), np.zeros(1 << 20)),    # 8 MiB through numpy, as the caches are written
    lambda p: p.write_text("x" * (2 << 20)),
])
def test_a_full_disk_names_the_file_and_leaves_nothing(full_disk, write):
    target = full_disk / "results" / "resume.pt"
    with pytest.raises(OSError, match=rf"no space left to write {target} .* then rerun the same command") as e:
        with files.atomic_path(target) as tmp:
            write(tmp)
    assert e.value.errno == errno.ENOSPC
    assert list(target.parent.iterdir()) == []  # no partial file, no target


def test_a_full_disk_inside_an_atomic_folder(full_disk):
    target = full_disk / "checkpoints" / "frac-1.00"
    with pytest.raises(OSError, match=rf"no space left to write {target}"):
        with files.atomic_dir(target) as tmp:
            (tmp / "model.safetensors").write_bytes(b"\0" * (2 << 20))
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_follow_the_umask(tmp_path, umask):
    """Atomic files and folders come out as any file made here would (0644 / 0755 under umask 022),
    not mkstemp's 0600 and mkdtemp's 0700, which would hide results from a lab group."""
    import os
    import stat

    old = os.umask(umask)
    try:
        files.write_json(tmp_path / "a.json", {"x": 1})
        with files.atomic_dir(tmp_path / "ckpt") as d:
            (d / "model.bin").write_bytes(b"w")
        with files.atomic_path(tmp_path / "b.npy") as p:
            np.save(open(p, "wb"), np.zeros(3))
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "a.json") == mode(tmp_path / "b.npy") == 0o666 & ~umask
    assert mode(tmp_path / "ckpt") == 0o777 & ~umask and mode(tmp_path / "ckpt" / "model.bin") == 0o666 & ~umask
