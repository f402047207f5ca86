"""A training run's resume state and when to write it: two generations of `resume.pt`, each
fsync'd before its rename; a save every `training.save_every_steps` steps, every
`training.save_every_minutes` minutes, and once before the Slurm job's time limit (read from
Slurm at the start); the run folder's lock; the log cut back to the resumed step.

Why a deadline and not Slurm's pre-limit signal: the signal would reach torchrun's agent too,
which ends its workers on it. The trainer asks Slurm for its time left instead and saves while
there is still time for the save it measured last.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from lsap.files import atomic_path


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, bad setup); the last good checkpoint is kept."""


def lock_run_folder(out: Path):
    """An exclusive lock on the run folder for this process's lifetime (the kernel drops it when
    the process ends, kill -9 included): a second trainer on the same folder, e.g. one started by
    a rerun while an orphan of a killed Snakemake still trains, stops instead of interleaving."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)  # inside the run folder: readers of students/* see runs only
    f = open(out / ".trainer.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        raise TrainingError(f"another trainer (pid {f.read().strip() or '?'}) is training into {out}: end it "
                            f"(kill <pid>; `ps -ef | grep 'lsap train'` lists them) or wait for it, then rerun") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f  # keep it referenced: closing the file releases the lock


def resume_path(out: Path) -> Path:
    return out / "resume.pt"


def previous(path: Path) -> Path:
    return path.with_name("resume.prev.pt")


def save(out, model, opt, sched, step, key) -> float:
    """Two generations, each fsync'd before its rename: the last one, and the one before it.
    Returns the seconds the save took (the deadline keeps room for the next one)."""
    t0 = time.monotonic()
    state = {"key": key, "model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
             "rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    path = resume_path(out)
    with atomic_path(path, durable=True) as tmp:
        torch.save(state, tmp)
        if path.exists():
            os.replace(path, previous(path))
    return time.monotonic() - t0


def load(path: Path, dev, log=print) -> dict:
    if not path.exists():  # a save interrupted between its two renames: the previous generation
        return load(previous(path), dev, log)
    try:
        return torch.load(path, map_location=dev, weights_only=False)
    except Exception as e:  # a truncated or overwritten file: pickle, zip and EOF errors alike
        if previous(path).exists():
            log(f"[train] {path} is damaged ({type(e).__name__}): resuming from the generation before it, "
                f"{previous(path)}")
            return load(previous(path), dev, log)
        raise TrainingError(f"{path} is damaged and cannot be resumed ({type(e).__name__}: {e}). Delete it to "
                            f"restart this run from step 0, then rerun the same command.") from e


def exists(out: Path) -> bool:
    return resume_path(out).exists() or previous(resume_path(out)).exists()


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines past the resumed step, so the log reads as one uninterrupted run."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in keep))


_SLURM_TIME = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


def parse_slurm_time(text: str) -> float | None:
    """Seconds of a Slurm duration ("1-02:03:04", "02:03:04", "03:04"); None for UNLIMITED,
    INVALID or anything else."""
    m = _SLURM_TIME.match(text.strip())
    if not m:
        return None
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


def slurm_time_left() -> float | None:
    """Seconds this Slurm job has left (squeue's %L), or None outside Slurm or without a limit."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job or not shutil.which("squeue"):
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_slurm_time(out.stdout) if out.returncode == 0 else None


# room kept before a job's time limit: the last save's duration, three times over, and at least this
DEADLINE_MARGIN_S = 300.0


@dataclass
class SavePolicy:
    """When rank 0 writes a resume state. Steps are deterministic; the clock is read on rank 0 and
    its decision broadcast, so every rank takes the same branch (`due` is rank 0's answer)."""
    every_steps: int | None
    every_minutes: float | None = None
    deadline: float | None = None   # time.monotonic() of the job's time limit (None: no limit known)
    last: float = 0.0               # time.monotonic() of the last save, or of the start
    save_seconds: float = 0.0       # how long the last save took
    deadline_saved: bool = False

    @classmethod
    def for_job(cls, every_steps: int | None, every_minutes: float | None) -> "SavePolicy":
        now, left = time.monotonic(), slurm_time_left()
        return cls(every_steps, every_minutes, None if left is None else now + left, now)

    @property
    def timed(self) -> bool:
        return self.every_minutes is not None or self.deadline is not None

    def due(self, step: int, now: float) -> bool:
        if self.every_steps and step % self.every_steps == 0:
            return True
        if self.every_minutes is not None and now - self.last >= 60 * self.every_minutes:
            return True
        margin = max(DEADLINE_MARGIN_S, 3 * self.save_seconds)
        return self.deadline is not None and not self.deadline_saved and now >= self.deadline - margin

    def saved(self, now: float, seconds: float) -> None:
        self.last, self.save_seconds = now, seconds
        if self.deadline is not None and now >= self.deadline - max(DEADLINE_MARGIN_S, 3 * seconds):
            self.deadline_saved = True
