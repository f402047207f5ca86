"""Where a table or figure came from: config and its hash, git commit, assets, hardware, date."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess

from lsap import REPO_ROOT


def git_commit() -> str:
    if os.environ.get("LSAP_GIT_COMMIT"):
        # a copy of the tree run elsewhere (the device pack on a GPU machine), whose .git, if it
        # has one, need not be the commit the code came from
        return os.environ["LSAP_GIT_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        # generated tables and figures are outputs, not code: they don't make a tree dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!paper_tables", ":!figures"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        dev = f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    else:
        dev = f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    return f"{dev}, torch {torch.__version__}"


def identity() -> dict:
    """Where a measurement ran: commit, hardware, date (no config: a benchmark has none)."""
    return {"git_commit": git_commit(), "hardware": hardware(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def hub_revisions(run: str) -> dict[str, str]:
    """id -> the commit the run's hub snapshot read it at (empty: the run reads no hub id)."""
    from lsap.io import layout
    from lsap.io.files import read_json

    path = REPO_ROOT / layout.hub_manifest(run)
    if not path.exists():
        return {}
    return {e["id"]: e.get("revision", "missing: " + e.get("missing", "?")) for e in read_json(path)["entries"]}


def collect(cfg: dict, asset_names=(), key: str | None = None) -> dict:
    """`key`: the job key of what produced the file (lsap.keys); default a hash of the whole config."""
    from lsap.io.assets import asset_hashes
    from lsap.keys import digest

    prov = {
        "config": cfg["run"],
        "config_hash": key or digest(cfg),
        "git_commit": git_commit(),
        "assets": asset_hashes(asset_names) if asset_names else {},
        "hardware": hardware(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if hub := hub_revisions(cfg["run"]):   # a run that reads the hub: the commit of each id it read
        prov["hub"] = hub
    return prov


def one_line(prov: dict) -> str:
    assets = ", ".join(f"{k}@{v[:12]}" for k, v in prov["assets"].items()) or "none"
    hub = "; hub: " + ", ".join(f"{k}@{v[:12]}" for k, v in prov["hub"].items()) if prov.get("hub") else ""
    trained = f", students trained at {'/'.join(prov['trained_at'])}" if prov.get("trained_at") else ""
    partial = f"; {prov['partial']}" if prov.get("partial") else ""  # a sweep stopped short (lsap.report.partial)
    return (f"config {prov['config']} ({prov['config_hash']}), commit {prov['git_commit']}{trained}, "
            f"{prov['hardware']}, {prov['date']}; assets: {assets}{hub}{partial}")
