"""The sweep's results leaving the GPU machine: results/<run>'s students, evaluations and timings
as one gzip'd tar under $OUT (RESULTS), rewritten after each student so a timeout keeps every
pair that finished; and here, that archive unpacked into results/ for `lsap report`."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from lsap.operations.device_limits import MIB, RETURN_FILE_BYTES, LimitError, PackError

RESULTS = "sweep.tar.gz"   # the sweep's results, one archive under $OUT


# what of a run's folder leaves the machine: what the sweep wrote, less the checkpoints and resume
# states (the evaluations read them there; 34 M parameters each would not come back)
RESULT_FOLDERS = ("students", "eval", "benchmarks", "logs", "analysis")
RESULT_SKIP = ("checkpoints",)


def _result_files(run_dir: Path) -> list[Path]:
    out = []
    for folder in RESULT_FOLDERS:
        for f in sorted((run_dir / folder).rglob("*")) if (run_dir / folder).is_dir() else []:
            rel = f.relative_to(run_dir)
            if f.is_file() and not set(rel.parts) & set(RESULT_SKIP) and f.suffix != ".pt" \
                    and not f.name.startswith("."):
                out.append(f)
    return out


def archive(run: str, archive, repo: Path = Path(".")) -> Path:
    """results/<run>'s students, evaluations and timings (not checkpoints, not resume states) as one
    gzip'd tar at `archive`, replaced atomically: each rewrite holds every pair finished so far."""
    repo, archive = Path(repo), Path(archive)
    run_dir = repo / "results" / run
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for f in _result_files(run_dir):
            tar.add(f, arcname=str(f.relative_to(repo)), recursive=False)
    size = tmp.stat().st_size
    if size > RETURN_FILE_BYTES:
        tmp.unlink()
        raise LimitError(f"the results of {run} are {size / MIB:.1f} MiB, over the "
                         f"{RETURN_FILE_BYTES // MIB} MiB a file may come back")
    os.replace(tmp, archive)
    return archive


def unpack(archive, repo: Path = Path(".")) -> list[str]:
    """Here: the sweep's results archive into `repo` (results/<run>/...), for `lsap report`."""
    with tarfile.open(archive, "r:*") as tar:
        names = tar.getnames()
        if any(not n.startswith("results/") or ".." in Path(n).parts for n in names):
            raise PackError(f"{archive} holds files outside results/: not a sweep's results archive")
        tar.extractall(repo, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(repo)
    return names
