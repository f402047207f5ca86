"""After a killed controller: keep what finished, rerun only what did not.

When Snakemake dies (`kill -9`, a lost login session) its Slurm jobs run on and the working
directory stays locked. A job that finishes clears its own incomplete marker (its job-side
Snakemake shares `.snakemake/`), but one still queued or running keeps it: a restart at that moment
deletes its outputs (`rerun-incomplete`, the profile's) and submits it beside the running one (a
scoring part is hours of GPU). `python -m lsap recover --config X`:

  1. reads Snakemake's incomplete markers (`.snakemake/incomplete/`, its file persistence backend:
     one file per output, named by the urlsafe-base64 path, holding the Slurm job id),
  2. refuses while any of those Slurm jobs, or any job submitted from this directory, is still
     queued or running (it names them: wait, or `scancel` them),
  3. keeps every marked output that exists and verifies (every output here is written atomically,
     lsap.io.files; a run folder's checkpoints carry their weights' sha256, lsap.io.checkpoints): a job
     whose Snakemake could not clear its marker; `snakemake --cleanup-metadata` drops their markers,
     the rest are left to `rerun-incomplete`; and unlocks the directory (`snakemake --unlock`).
Then the same `snakemake --profile slurm --configfile X` reruns only what did not finish.
"""

from __future__ import annotations

import json
import subprocess
import sys
from base64 import urlsafe_b64decode
from pathlib import Path

from lsap.io import checkpoints

INCOMPLETE = Path(".snakemake") / "incomplete"


class StillRunning(RuntimeError):
    """Jobs of the killed controller are still in the Slurm queue: recovering now would rerun them twice."""


def incomplete(workdir: str | Path) -> dict[str, str | None]:
    """{output path: the Slurm job id that was writing it (None when not recorded)}."""
    root = Path(workdir) / INCOMPLETE
    out = {}
    for marker in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
        parts = marker.relative_to(root).parts
        if parts[-1] == "migration_underway":
            continue
        # Snakemake cuts a long base64 name into folders, every piece but the last prefixed with "@"
        b64 = "".join(p.removeprefix("@") for p in parts)
        try:
            path = urlsafe_b64decode(b64.encode()).decode()
            jobid = json.loads(marker.read_text() or "{}").get("external_jobid")
        except (ValueError, UnicodeDecodeError):
            continue  # not a marker of this backend
        out[path] = str(jobid) if jobid else None
    return out


def queued(jobids, workdir: str | Path) -> dict[str, str]:
    """{job id: Slurm state} of the jobs still in the queue (pending, running, ...) that are among
    `jobids` or were submitted from `workdir` (the Slurm plugin submits with `-D <workdir>`; a
    marker written without a job id is covered by the second)."""
    wanted, here = {j for j in jobids if j}, str(Path(workdir).resolve())
    try:
        proc = subprocess.run(["squeue", "-h", "-o", "%i|%T|%Z"], capture_output=True, text=True)
    except FileNotFoundError:
        if wanted:
            raise RuntimeError("squeue is not here: run recover where Slurm answers (the login node)") from None
        return {}   # no Slurm on this machine (a local run): nothing can still be queued
    if proc.returncode != 0:
        raise RuntimeError(f"squeue failed ({proc.stderr.strip()}): run recover where Slurm answers (the login node)")
    out = {}
    for line in proc.stdout.splitlines():
        jobid, state, cwd = (line.split("|", 2) + ["", ""])[:3]
        if jobid in wanted or (cwd and str(Path(cwd).resolve()) == here):
            out[jobid] = state
    return dict(sorted(out.items()))


def whole(path: str | Path) -> tuple[bool, str]:
    """(keep?, why). An output exists only once whole (atomic writes); a run folder's checkpoints
    must also match the weights' recorded sha256."""
    path = Path(path)
    if not path.exists():
        return False, "missing: the job did not finish"
    if path.name == "summary.json" and (path.parent / "checkpoints").is_dir():
        for ckpt in sorted((path.parent / "checkpoints").iterdir()):
            try:
                checkpoints.verify(ckpt)
            except checkpoints.CheckpointError as e:
                return False, f"a checkpoint does not verify ({e})"
        return True, "finished; its checkpoints verify"
    return True, "finished (written atomically)"


def recover(configfile: str, workdir: str | Path = ".", snakemake: list[str] | None = None) -> dict[str, str]:
    """Keep the finished outputs, unlock; {output: what was decided}. Raises StillRunning."""
    workdir = Path(workdir)
    snakemake = snakemake or [sys.executable, "-m", "snakemake"]
    marks = incomplete(workdir)
    running = queued(marks.values(), workdir) if marks else {}
    if running:
        jobs = ", ".join(f"{j} ({s})" for j, s in running.items())
        raise StillRunning(f"Slurm jobs of the killed controller are still queued or running: {jobs}. Wait for them "
                           f"(squeue -j {','.join(running)}) and run recover again, or cancel them "
                           f"(scancel {' '.join(running)}), whose outputs are then rerun")
    decided, keep = {}, []
    for path in marks:
        ok, why = whole(workdir / path)
        decided[path] = ("kept: " if ok else "rerun: ") + why
        if ok:
            keep.append(path)
    base = [*snakemake, "--configfile", configfile]
    for extra in (["--unlock"], ["--cleanup-metadata", *keep] if keep else None):
        if extra:
            proc = subprocess.run([*base, *extra], cwd=workdir, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"snakemake {extra[0]} failed:\n{proc.stderr[-3000:]}")
    return decided
