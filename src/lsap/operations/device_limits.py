"""The GPU machine's limits and the draw's price (bench/NOTES.md, "The GPU check"): what one call
may carry (the tree that travels anyway, plus its carried folders), what may come back from
`$OUT`, how long a command and the whole draw may run, and the draw's two calls priced item by
item. lsap.operations.devpack builds the pack within them; the rehearsal (tests/operations/test_device_pack_slow.py,
tests/operations/test_draw_limits.py) holds every call to them. Standard library only: `check_return` runs
on the machine before anything is installed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

MIB = 2 ** 20
# the GPU machine's limits (/work/.library/device/README.md, "Limits")
CALL_BYTES = 64 * MIB      # what one call carries: tracked + untracked-not-ignored files + carried folders
CALL_SECONDS = 600         # one command's run
SESSION_SECONDS = 900      # device time of a session: start-up, calls, idle waits
RETURN_FILES = 8           # files back from $OUT
RETURN_DEPTH = 2           # folders below $OUT ($OUT/a/b/file comes back, $OUT/a/b/c/file does not)
RETURN_FILE_BYTES = 16 * MIB
RETURN_BYTES = 64 * MIB
RETURN_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_CALLS = 2              # the draw: call 1 (bench), call 2 (sweep); nothing else
DRAW_SECONDS = 720         # what the draw is priced at, at most: 3 of the 15 minutes left for a rerun
MARGIN = 256 * 1024        # the manifest copies and slack, per call


class PackError(RuntimeError):
    """A pack that cannot be used: over the limit, a chunk missing or damaged. Names the fix."""


class LimitError(PackError):
    """A call, a draw or what comes back that breaks one of the GPU machine's limits."""



# ---- the machine's limits, checked here (the rehearsal, tests/operations/test_draw_limits.py) ----
def tree_bytes(repo: Path) -> int:
    """Bytes of what travels with every call whatever it carries: the tracked files and the
    untracked files git does not ignore (`git ls-files --cached --others --exclude-standard`)."""
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                          capture_output=True, check=True)
    files = {f for f in proc.stdout.decode().split("\0") if f}
    return sum((Path(repo) / f).stat().st_size for f in files
               if (Path(repo) / f).is_file() and not (Path(repo) / f).is_symlink())


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file() and not f.is_symlink())


def pack_limit(repo: Path, margin: int = MARGIN) -> int:
    """The bytes of chunks one call folder may hold: 64 MiB less the tree that travels anyway."""
    limit = CALL_BYTES - tree_bytes(repo) - margin
    if limit <= 0:
        raise LimitError(f"the tree alone ({tree_bytes(repo) / MIB:.1f} MiB) leaves no room in a call's "
                         f"{CALL_BYTES / MIB:.0f} MiB: ignore or untrack large files")
    return limit


def check_call(carried, repo: Path, tree: int | None = None) -> int:
    """Bytes one call sends: the tree plus the carried folders (a path or a list). Raises
    LimitError past the 64 MiB a call may carry."""
    folders = [carried] if isinstance(carried, (str, Path)) else list(carried)
    if len(folders) > 8:
        raise LimitError(f"{len(folders)} carried paths: a call names at most 8")
    tree = tree_bytes(repo) if tree is None else tree
    total = tree + sum(_folder_bytes(f) for f in folders)
    if total > CALL_BYTES:
        raise LimitError(f"the call sends {total / MIB:.2f} MiB (tree {tree / MIB:.2f} MiB + "
                         + " + ".join(f"{Path(f).name} {_folder_bytes(f) / MIB:.2f} MiB" for f in folders)
                         + f"), over the {CALL_BYTES / MIB:.0f} MiB a call may carry")
    return total


def check_return(out_dir: Path) -> list[str]:
    """What a call leaves under $OUT, held to what comes back: at most 8 plain files, 16 MiB each and
    64 MiB together, no deeper than 2 folders, names of letters, digits, '.', '_', '-'. Returns the
    files (relative); raises LimitError naming every breach (what breaks a limit is lost there)."""
    out_dir = Path(out_dir)
    files, bad = [], []
    for p in sorted(out_dir.rglob("*")):
        rel = p.relative_to(out_dir)
        if any(not RETURN_NAME.match(part) for part in rel.parts):
            bad.append(f"{rel}: a name with characters other than letters, digits, '.', '_', '-'")
        if p.is_symlink():
            bad.append(f"{rel}: a link (links do not come back)")
        elif p.is_file():
            files.append(str(rel))
            if len(rel.parts) - 1 > RETURN_DEPTH:
                bad.append(f"{rel}: {len(rel.parts) - 1} folders deep, at most {RETURN_DEPTH} come back")
            if p.stat().st_size > RETURN_FILE_BYTES:
                bad.append(f"{rel}: {p.stat().st_size / MIB:.1f} MiB, at most {RETURN_FILE_BYTES // MIB} MiB a file")
        elif not p.is_dir():
            bad.append(f"{rel}: not a plain file")
    if len(files) > RETURN_FILES:
        bad.append(f"{len(files)} files, at most {RETURN_FILES} come back: put them into one archive")
    total = sum((out_dir / f).stat().st_size for f in files)
    if total > RETURN_BYTES:
        bad.append(f"{total / MIB:.1f} MiB together, at most {RETURN_BYTES // MIB} MiB come back")
    if bad:
        raise LimitError(f"{out_dir} breaks what comes back from a call:\n  " + "\n  ".join(bad))
    return files


NOT_COMMAND = ("start-up", "idle before", "idle after")  # a call's items outside its command's 10 minutes


def check_draw(calls: list[dict]) -> float:
    """A priced draw ({"call", "seconds", "items": {what: seconds}} per call, the start-up and the
    idle waits as items of the calls they precede or follow): at most MAX_CALLS calls, each command
    under the 10-minute limit, all together at most DRAW_SECONDS. Returns the total."""
    if len(calls) > MAX_CALLS:
        raise LimitError(f"{len(calls)} calls: the draw is at most {MAX_CALLS}")
    for c in calls:
        items = sum(c["items"].values())
        if abs(items - c["seconds"]) > 1e-6:
            raise LimitError(f"call {c['call']}: its items sum to {items:.0f} s, not {c['seconds']:.0f} s")
        command = c["seconds"] - sum(v for k, v in c["items"].items() if k in NOT_COMMAND)
        if command > CALL_SECONDS:
            raise LimitError(f"call {c['call']}'s command is priced at {command:.0f} s, "
                             f"over the {CALL_SECONDS} s a call may run")
    total = sum(c["seconds"] for c in calls)
    if total > DRAW_SECONDS:
        raise LimitError(f"the draw is priced at {total:.0f} s, over its {DRAW_SECONDS} s "
                         f"(of the session's {SESSION_SECONDS} s, the rest kept for one rerun)")
    return total
