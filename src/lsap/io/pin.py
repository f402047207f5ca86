"""`python -m lsap pin --config C`: the hub revisions of a run, locked like a package lock.

Where the hub is reachable, `pin` resolves every hub id of the config (its datasets, tokenizers,
teachers and Table-1 models, at the config's `revision` or the repository's head) to a commit and
writes them to `config/<run>.lock.yaml`; commit that file. Every later run reads exactly those
commits: the hub_snapshot rule downloads at the locked commit, and refuses (before any download)
a config whose ids or revisions differ from the lock, naming the id and the fix. The lock's
commits are part of the snapshot's job key, so a re-pin re-snapshots and reruns what reads it.

A local folder in place of a hub id is recorded by its git HEAD where it is a git repository (a
mirrored model cloned with git), and then checked the same way; a plain folder is recorded as one.
No lock file: nothing is pinned and the snapshot records the commits it read (its manifest).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from lsap import REPO_ROOT
from lsap.io import hub

LOCK_VERSION = 1
COMMIT = re.compile(r"[0-9a-f]{40}")


class PinError(RuntimeError):
    """A config whose hub ids or revisions differ from its lock (names the id and the fix)."""


def lock_path(cfg: dict) -> Path:
    """One lock per run name (the name that owns results/<run>/): config/<run>.lock.yaml."""
    return REPO_ROOT / "config" / f"{cfg['run']}.lock.yaml"


def repo_type(where: str) -> str:
    return "dataset" if where.startswith("corpus.") else "model"


def pin_key(where: str, repo: str, spec: dict) -> str:
    """How a lock entry is named: the id, its type and the revision the config asks for."""
    return f"{repo_type(where)}:{repo}@{spec.get('revision') or 'head'}"


def hub_commit(repo: str, kind: str, revision: str | None) -> str:
    """The commit a hub id's revision (None: its head) resolves to now (needs the hub)."""
    from huggingface_hub import HfApi

    return HfApi().repo_info(repo, repo_type=kind, revision=revision).sha


def git_head(folder: str | Path) -> str | None:
    """HEAD of a local folder that is itself a git repository (not a folder inside one); None otherwise."""
    folder = Path(folder)
    if not (folder / ".git").exists():
        return None
    out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def resolve(cfg: dict, resolver: Callable[[str, str, str | None], str] = hub_commit) -> list[dict]:
    """One entry per (id, type, revision) of the config: its commit, and where the config uses it."""
    entries: dict[str, dict] = {}
    for where, repo, spec in hub.specs(cfg):
        k = pin_key(where, repo, spec)
        if k in entries:
            entries[k]["used_by"].append(where)
            continue
        if Path(repo).is_dir():
            commit = git_head(repo) or "local folder"
        else:
            try:
                commit = resolver(repo, repo_type(where), spec.get("revision"))
            except Exception as e:  # no access, no such id or revision, no hub
                raise PinError(f"{where}: cannot resolve {repo} (revision {spec.get('revision') or 'head'}) to a "
                               f"commit: {type(e).__name__}: {e}. Run `lsap pin` where the hub is reachable (and "
                               "you are logged in for gated models), or fix the id or revision") from e
            if not COMMIT.fullmatch(commit or ""):
                raise PinError(f"{where}: {repo} resolved to {commit!r}, not a 40-hex commit")
        entries[k] = {"key": k, "id": repo, "type": repo_type(where), "revision": spec.get("revision"),
                      "commit": commit, "used_by": [where]}
    return list(entries.values())


def write(cfg: dict, source: str, path: str | Path | None = None, resolver=hub_commit) -> Path:
    path = Path(path) if path else lock_path(cfg)
    body = {"version": LOCK_VERSION, "run": cfg["run"], "pins": resolve(cfg, resolver)}
    text = (f"# Written by `python -m lsap pin --config {source}`: the commit of every hub id of run "
            f"'{cfg['run']}'.\n# Commit this file; every run of this config then reads exactly these "
            "commits (lsap.io.pin). Re-pin to move.\n" + yaml.safe_dump(body, sort_keys=False))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def read(path: str | Path) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    lock = yaml.safe_load(path.read_text()) or {}
    if lock.get("version") != LOCK_VERSION:
        raise PinError(f"{path}: lock version {lock.get('version')}, this code reads {LOCK_VERSION}: re-pin "
                       "with `python -m lsap pin --config <your config>`")
    return lock


def verify(cfg: dict, path: str | Path | None = None) -> dict[str, str] | None:
    """{pin key: commit} of the config's hub ids from its lock (None: no lock); raises PinError,
    naming the id and the fix, where the config and the lock disagree: an id or revision not in
    the lock, or a git-mirrored local folder whose HEAD moved."""
    path = Path(path) if path else lock_path(cfg)
    lock = read(path)
    if lock is None:
        return None
    pins = {p["key"]: p for p in lock["pins"]}
    fix = (f"re-pin with `python -m lsap pin --config <this config>` where the hub is reachable and commit "
           f"{path.name}, or restore the config to what the lock pinned")
    out = {}
    for where, repo, spec in hub.specs(cfg):
        k = pin_key(where, repo, spec)
        if k not in pins:
            same = [p for p in pins.values() if p["id"] == repo and p["type"] == repo_type(where)]
            was = f": the lock pinned revision {same[0]['revision'] or 'head'} ({same[0]['commit']})" if same else \
                " at all"
            raise PinError(f"{where}: {repo} at revision {spec.get('revision') or 'head'} is not in the lock "
                           f"{path}{was}. Either {fix}")
        commit = pins[k]["commit"]
        if Path(repo).is_dir():
            head = git_head(repo)
            if COMMIT.fullmatch(commit) and head != commit:
                raise PinError(f"{where}: the local folder {repo} is at {head}, the lock {path} pinned {commit}: "
                               f"check out {commit} there, or {fix}")
            continue   # a folder is read as it is (no revision to download)
        out[k] = commit
    return out


def locked(cfg: dict) -> dict[str, str] | None:
    """The lock's commits for this config (the hub_snapshot key reads them); None without a lock."""
    return verify(cfg)
