"""Atomic writes and content hashes: no reader ever sees a half-written output."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    The file gets the permissions of any file made here (mkstemp's are 0600: unreadable to a lab
    group). `durable`: fsync the file before the rename and the folder after (a power loss or a
    node failure then leaves the old file or the new one, never a torn one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    except (OSError, RuntimeError) as e:
        _raise_if_disk_full(path, e)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _raise_if_disk_full(path: Path, error: Exception) -> None:
    """A full disk surfaces as ENOSPC, or inside torch.save as 'basic_ios::clear: iostream error':
    say which file and what to do."""
    full = getattr(error, "errno", None) == errno.ENOSPC
    try:
        full = full or shutil.disk_usage(path.parent).free < (64 << 20)
    except OSError:
        pass
    if full:
        raise OSError(errno.ENOSPC, f"no space left to write {path} ({shutil.disk_usage(path.parent).free >> 20} MiB "
                      f"free on its filesystem): free space there (or point results/ elsewhere), then rerun "
                      f"the same command; finished outputs are kept") from error


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would hide a checkpoint from the lab group
    try:
        try:
            yield tmp
        except (OSError, RuntimeError) as e:
            _raise_if_disk_full(path, e)
            raise
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))
