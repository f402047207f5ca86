"""How a job reports progress, so its log can be watched with `tail -f`.

A training run: a bar on a terminal; in a redirected log (every job's), one timestamped line every
`every_s` seconds and at every validation, with the step of the total, the loss, tokens/s and the
time left. Every other line of a job's log goes through `job_log` (set up by the CLI for every
stage): a timestamp on each line, a third-party progress bar's carriage-return redraws turned into
one line every `every_s` seconds and its last state, and a warning repeated word for word printed once.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
import threading
import time


class Progress:
    def __init__(self, total: int, start: int, enabled: bool, every_s: float = 30.0, stream=None):
        self.total, self.start, self.enabled, self.every_s = total, start, enabled, every_s
        self.stream = stream or sys.stderr
        self.t0 = self.t_last = time.monotonic()
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=self.stream)

    def update(self, record: dict) -> None:
        """After each step, with its log record (step, loss parts, tok_s, val_loss when measured)."""
        if not self.enabled:
            return
        loss = record.get("loss", record.get("ce"))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}" if loss is not None else "-", tok_s=f"{record['tok_s']:,.0f}")
            return
        now = time.monotonic()
        step = record["step"]
        if now - self.t_last < self.every_s and "val_loss" not in record and step != self.total:
            return
        self.t_last = now
        per_step = (now - self.t0) / max(step - self.start, 1)
        left = per_step * (self.total - step)
        parts = "".join(f" | {name} {record[key]:.4f}" for key, name in (("ce", "ce"), ("aux_nll", "aux"), ("kl", "kl"),
                                                                          ("val_loss", "val_loss")) if key in record)
        lr = f" | lr {record['lr']:.3g}" if "lr" in record else ""
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [train] step {step}/{self.total} "
              f"({100 * step / self.total:.1f} %) | loss {loss if loss is None else f'{loss:.4f}'}{parts}{lr} | "
              f"{record['tok_s']:,.0f} tok/s | elapsed {(now - self.t0) / 60:.1f} min | eta {left / 60:.1f} min",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# a line that already starts with a date and time (Progress's, lm-eval's '%Y-%m-%d:%H:%M:%S') keeps its own
STAMPED = re.compile(r"^\d{4}-\d\d-\d\d[ T:]\d\d:\d\d:\d\d")
LINE_END = re.compile(r"(\r\n|\n|\r)")


# what a warning is, and what makes two the same: Python's 'file:line: UserWarning: text' is one warning
# from whichever line it came; a library's own time stamp is not part of its message
LIBRARY_TAG = re.compile(r"^\[(transformers|datasets|huggingface_hub|tokenizers|accelerate)\] ")
WARNING_AT = re.compile(r"^\S.*?:\d+: (\w*Warning: .*)$")


def _warning_key(line: str) -> str | None:
    """The message of a third-party warning line, the same for every repeat of it; None for another line."""
    body = STAMPED.sub("", line).lstrip()
    if not (LIBRARY_TAG.match(body) or "warn" in body.lower()):
        return None
    at = WARNING_AT.match(body)
    return at.group(1) if at else body


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


class StampedLines:
    """A text stream for a job's log, over the real one (`raw`): whole lines only, each stamped.

    A bare '\\r' is a progress bar redrawing its line (tqdm from lm-eval, datasets, transformers):
    the redraw replaces the pending line, which is written as a line of its own at most every
    `every_s` seconds, and the bar's last state when it ends with '\\n'. A line that mentions a
    warning and was written before (by any stream sharing `seen`) is dropped, with the indented
    lines that follow it (the source line the warnings module prints under its message)."""

    def __init__(self, raw, seen: set[str], lock: threading.Lock, every_s: float = 30.0):
        self.raw, self.seen, self.lock, self.every_s = raw, seen, lock, every_s
        self.pending, self.dropping, self.t_redraw = "", False, time.monotonic()

    def write(self, text: str) -> int:
        with self.lock:
            for piece in LINE_END.split(text):
                if piece in ("\n", "\r\n"):
                    self._line(self.pending)
                    self.pending = ""
                elif piece == "\r":
                    if self.pending.strip() and time.monotonic() - self.t_redraw >= self.every_s:
                        self._line(self.pending)   # a long bar: where it is, every every_s seconds
                        self.t_redraw = time.monotonic()
                    self.pending = ""
                else:
                    self.pending += piece
        return len(text)

    def _line(self, line: str) -> None:
        body = line.rstrip()
        if self.dropping and body[:1].isspace():
            return
        self.dropping = False
        if key := _warning_key(body):
            if key in self.seen:
                self.dropping = True
                return
            self.seen.add(key)
        self.raw.write((body if STAMPED.match(body) else f"{stamp()} {body}") + "\n")
        self.raw.flush()

    def flush(self) -> None:
        with contextlib.suppress(ValueError):  # the raw stream closed at exit
            self.raw.flush()

    def close_line(self) -> None:
        """Write what is pending (a last print without a newline), as the job ends."""
        with self.lock:
            if self.pending.strip():
                self._line(self.pending)
            self.pending = ""

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:  # faulthandler and subprocesses write to the real file
        return self.raw.fileno()

    def __getattr__(self, name):  # encoding, errors, buffer, ...: the real stream's
        return getattr(self.raw, name)


# third-party download, weight loading and saving bars (huggingface_hub's tqdm, which transformers and
# datasets use): seconds long and nothing to watch; a user's own setting wins
QUIET_BARS = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def _same_file(a, b) -> bool:
    try:
        x, y = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino)


def install(stream=None, every_s: float = 30.0):
    """Every line a stage prints from now on as a log line (`StampedLines`), into `stream` (a file
    opened by a test) or into itself: stderr, and stdout where it goes to the same file (a job's
    `> log 2>&1`; a stdout read on its own, `lsap plan --json`, stays as printed). What is pending
    is written before an uncaught exception's traceback (stamped too) and at exit. Returns the
    function that puts the old streams back, or None on a terminal, where bars redraw as they should."""
    if stream is None and sys.stderr.isatty():
        return None
    env = {k: v for k, v in QUIET_BARS.items() if k not in os.environ}
    os.environ.update(env)
    seen: set[str] = set()
    lock = threading.Lock()
    old = sys.stdout, sys.stderr
    out = stream is not None or _same_file(sys.stdout, sys.stderr)
    new = (StampedLines(stream or old[0], seen, lock, every_s) if out else old[0],
           StampedLines(stream or old[1], seen, lock, every_s))
    sys.stdout, sys.stderr = new

    def restore() -> None:
        close_lines()
        if (sys.stdout, sys.stderr) == new:
            sys.stdout, sys.stderr = old
        if sys.excepthook is excepthook:
            sys.excepthook = hook
        for k in env:
            os.environ.pop(k, None)

    def close_lines(*_) -> None:
        for s in new:
            if isinstance(s, StampedLines):
                s.close_line()

    hook = sys.excepthook

    def excepthook(*exc) -> None:  # a pending partial line before the traceback that ends the job, not after
        close_lines()
        hook(*exc)

    sys.excepthook = excepthook
    atexit.register(close_lines)
    return restore


@contextlib.contextmanager
def job_log(stream=None, every_s: float = 30.0):
    """`install` for the duration of a block (a stage run in-process)."""
    restore = install(stream, every_s)
    try:
        yield
    finally:
        if restore:
            restore()
