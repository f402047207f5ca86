"""A training run's resume state and when to write it: two generations of `resume.pt`, each
fsync'd before its rename; a save every `training.save_every_steps` steps, every
`training.save_every_minutes` minutes, and once before the Slurm job's time limit (read from
Slurm at the start); the run folder's lock; the log cut back to the resumed step.

Why a deadline and not Slurm's pre-limit signal: the signal would reach torchrun's agent too,
which ends its workers on it. The trainer asks Slurm for its time left instead and saves while
there is still time for the save it measured last.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch

from lsap.io.files import atomic_path


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, bad setup); the last good checkpoint is kept."""


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
    """The newest readable generation: `path`, else the one before it (a save interrupted between
    its two renames, or a torn file). A loop over the two, not a recursion: `previous` of the
    previous generation is itself, so recursing on it never ended when both were damaged."""
    generations = [g for g in dict.fromkeys([path, previous(path)]) if g.exists()]
    if not generations:
        raise TrainingError(f"no resume state in {path.parent} ({path.name} nor {previous(path).name}): rerun the "
                            f"same command, it starts this run from step 0")
    errors = []
    for g in generations:
        try:
            return torch.load(g, map_location=dev, weights_only=False)
        except Exception as e:  # a truncated or overwritten file: pickle, zip and EOF errors alike
            errors.append(f"{g.name}: {type(e).__name__}: {e}")
            if g is not generations[-1]:
                log(f"[train] {g} is damaged ({type(e).__name__}): resuming from the generation before it, "
                    f"{generations[-1]}")
    raise TrainingError(f"{path} is damaged and cannot be resumed ({'; '.join(errors)}); no earlier generation is "
                        f"readable. Delete it (and {previous(path).name} beside it) to restart this run from step 0, "
                        f"then rerun the same command.")


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


# ---- decisions every rank must take alike: rank 0's, broadcast -------------------------------
def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def from_rank0(value: int, dev) -> int:
    """Rank 0's `value` on every rank (a single process: its own). For what each rank would read
    from its own clock, `squeue` or filesystem, where ranks that disagree take different branches
    around a collective and hang."""
    if not _distributed():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.long, device=dev)
    torch.distributed.broadcast(t, 0)
    return int(t.item())


FRESH, RESUME, STALE = 0, 1, 2


def start_state(out: Path, key: str, dev, rank: int, lock: "RunLock | None" = None, log=print) -> dict | None:
    """The state a run starts from: its resume state (same `key`), or None (no state, or one of
    another setup, which rank 0 moves aside). Rank 0 decides and broadcasts: a rank testing the
    folder itself could look while rank 0 moves it, and skip the barrier the others wait at.
    `lock`: rank 0's lock on `out`, taken again on the new folder after a move."""
    state, choice = None, FRESH
    if rank == 0 and exists(out):
        state = load(resume_path(out), dev, log)
        choice = RESUME if state.get("key") == key else STALE
    choice = from_rank0(choice, dev)
    if choice == STALE:
        if rank == 0:
            stale = out.with_name(f".{out.name}.stale")
            log(f"[train] {out} holds a run of another setup: moved to {stale}, starting from step 0")
            if lock is not None:
                lock.release()   # the lock file moves with the folder: taken again on the new one
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(out, stale)
            if lock is not None:
                lock.acquire()
        if _distributed():
            torch.distributed.barrier()
        return None
    if choice == RESUME and rank != 0:   # nothing moves the folder now: every rank reads the same files
        state = load(resume_path(out), dev, log)
    return state


# ---- the run folder's lock -------------------------------------------------------------------
HEARTBEAT_S = 30.0   # how often a holder stamps its lock (its mtime)
STALE_S = 600.0      # a lock not stamped for this long has a dead holder (a lost node): taken over
# flock's errors where the filesystem has no flock (Lustre mounted without -o flock: ENOSYS)
_NO_FLOCK = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}
_ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
          "PREEMPTED", "TIMEOUT"}


def _started(pid: int) -> str | None:
    """A process's start time (Linux /proc), which tells a reused pid from the holder."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _record() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _started(os.getpid()),
            "job": os.environ.get("SLURM_JOB_ID"), "token": uuid.uuid4().hex}


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):   # absent, or created and not yet written
        return None


def _job_ended(job: str) -> bool:
    """Whether Slurm says job `job` has ended (False where squeue cannot say)."""
    if not shutil.which("squeue"):
        return False
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    if out.returncode != 0:   # a job past MinJobAge is gone from slurmctld
        return "Invalid job id" in out.stderr
    return not out.stdout.strip() or out.stdout.split()[0] in _ENDED


def holder_gone(rec: dict | None, path: Path, now: float | None = None) -> str | None:
    """Why the holder recorded in lock file `path` is provably dead, or None where it may live."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return "its lock file is gone"
    if age > STALE_S:
        return f"no heartbeat for {age:.0f} s (bound {STALE_S:.0f} s)"
    if rec is None:
        return None   # being written
    me = _record()
    if rec.get("host") == me["host"]:
        if rec.get("pid") == me["pid"]:
            return None   # this process holds it already
        if _started(rec["pid"]) is None:
            return f"pid {rec['pid']} has ended on {rec['host']}"
        if rec.get("started") and _started(rec["pid"]) != rec["started"]:
            return f"pid {rec['pid']} on {rec['host']} is another process now"
    job = rec.get("job")
    if job and job == me["job"]:   # Slurm never runs two incarnations of a job: a requeued one's
        return f"an earlier run of this Slurm job ({job}, requeued)"
    if job and _job_ended(job):
        return f"its Slurm job {job} has ended"
    return None


def _held(out: Path, rec: dict | None) -> TrainingError:
    rec = rec or {}
    job = f", Slurm job {rec['job']}: `scancel {rec['job']}`" if rec.get("job") else ""
    return TrainingError(f"another trainer (pid {rec.get('pid', '?')}) is training into {out} (host "
                         f"{rec.get('host', '?')}{job}): end it (kill <pid> on its host; `ps -ef | grep 'lsap train'` "
                         f"lists them) or wait for it, then rerun. A holder whose host died is taken over once its "
                         f"lock is {STALE_S:.0f} s old")


class RunLock:
    """An exclusive lock on a run folder while this process trains into it: a second trainer (an
    orphan of a killed Snakemake and its rerun) stops instead of interleaving. flock where the
    filesystem has it (the kernel drops it when the holder ends, kill -9 included); else, or where a
    flock is held by a holder that is provably dead (NFSv3 keeps a dead node's lock for ever), a
    lock file made with O_EXCL. Both record host, pid, Slurm job and a heartbeat (the file's
    mtime, stamped by a thread), from which a dead holder is told: same host and pid gone, its
    Slurm job ended or requeued, or no heartbeat for STALE_S."""

    def __init__(self, out: Path, log=print):
        self.out, self.log, self.path, self.file, self.rec = Path(out), log, None, None, None
        self._release = lambda: None
        self.acquire()

    def acquire(self) -> None:
        import fcntl

        self.out.mkdir(parents=True, exist_ok=True)  # inside the run folder: readers of students/* see runs only
        path, self.rec = self.out / ".trainer.lock", _record()
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            rec = _read(path)
            # on this host a blocked flock has a live holder (the kernel drops a dead one's): only
            # another host's holder, recorded, can be judged dead
            why = holder_gone(rec, path) if rec and rec.get("host") != self.rec["host"] else None
            if why is None:
                raise _held(self.out, rec) from None
            self.log(f"[train] {path} is flock'ed by a holder that is gone ({why}): a lock the filesystem kept "
                     f"after its node died. Locking with {path.name}.excl instead")
            return self._exclusive(path.with_name(".trainer.lock.excl"))
        except OSError as e:
            f.close()
            if e.errno not in _NO_FLOCK:
                raise
            self.log(f"[train] no flock on this filesystem ({errno.errorcode.get(e.errno)}): locking {self.out} with "
                     f"an O_EXCL lock file")
            return self._exclusive(path.with_name(".trainer.lock.excl"))
        excl = path.with_name(".trainer.lock.excl")   # taken while the flock was held by a dead node
        if excl.exists() and holder_gone(_read(excl), excl) is None:
            f.close()
            raise _held(self.out, _read(excl))
        excl.unlink(missing_ok=True)
        f.seek(0)
        f.truncate()
        f.write(json.dumps(self.rec))
        f.flush()
        self.path, self.file = path, f   # keep it open: closing the file releases the flock
        self._beat()

    def _exclusive(self, path: Path) -> None:
        for _ in range(5):   # each round: take it, or move a dead holder's file aside and try again
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                rec = _read(path)
                why = holder_gone(rec, path)
                if why is None:
                    raise _held(self.out, rec) from None
                aside = path.with_name(f"{path.name}.{self.rec['token']}")
                try:
                    os.rename(path, aside)
                except FileNotFoundError:
                    continue   # another trainer moved it first: race for the O_EXCL create
                if _read(aside) != rec:   # a live lock taken meanwhile: put it back unless one is there
                    with contextlib.suppress(FileExistsError):
                        os.link(aside, path)
                    os.unlink(aside)
                    continue
                os.unlink(aside)
                self.log(f"[train] took over {path}: its holder (pid {(rec or {}).get('pid', '?')} on "
                         f"{(rec or {}).get('host', '?')}) is gone: {why}")
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(self.rec))
                f.flush()
                os.fsync(f.fileno())
            self.path = path
            self._beat()
            return
        raise TrainingError(f"could not lock {self.out}: other trainers keep taking {path}; end them and rerun")

    def _beat(self) -> None:
        """Start the heartbeat; the lock is dropped by `release`, when this object is collected
        (a finished train()), or at the interpreter's exit (weakref.finalize: nothing here
        keeps the object alive, so a second train() in one process finds the folder free)."""
        stop = threading.Event()

        def stamp(path: Path) -> None:
            while not stop.wait(HEARTBEAT_S):
                with contextlib.suppress(OSError):   # a filesystem hiccup: the next beat retries
                    os.utime(path)
        threading.Thread(target=stamp, args=(self.path,), daemon=True, name="lsap-lock-heartbeat").start()
        self._release = weakref.finalize(self, _drop, stop, self.file, self.path, self.rec["token"])

    def release(self) -> None:
        """Stop the heartbeat and drop the lock (a lock file only if it is still this process's)."""
        self._release()
        self.path = self.file = None


def _drop(stop: threading.Event, file, path: Path, token: str) -> None:
    stop.set()
    if file is not None:
        file.close()   # the kernel drops the flock
    elif (_read(path) or {}).get("token") == token:
        path.unlink(missing_ok=True)


def lock_run_folder(out: Path, log=print) -> RunLock:
    """Lock run folder `out` for this process (see RunLock); keep the returned object referenced."""
    return RunLock(out, log)
