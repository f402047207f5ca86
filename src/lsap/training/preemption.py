"""Whether the Slurm partitions the profile submits to can leave a job PREEMPTED for ever.

snakemake-executor-plugin-slurm 2.8.0 treats a job in state PREEMPTED as still running, with
`squeue` and `sacct` alike (after one warning it falls through to "still running?"), and no
status command can change that. So a job preempted for good (PreemptMode CANCEL, or REQUEUE of a
job Slurm may not requeue) is waited for until Snakemake is killed. Preemption that requeues
(the profile submits with --requeue) or suspends is seen: the job goes back to PENDING, or stays
SUSPENDED, and then runs to an end. The check runs at Snakemake's start (onstart) when the
executor is slurm and refuses a partition whose preemption cancels.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from lsap import REPO_ROOT

PROFILE = REPO_ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"


def partitions(profile: dict) -> list[str]:
    """The partitions a Snakemake profile submits to: its default and every rule's own."""
    names = [(profile.get("default-resources") or {}).get("slurm_partition")]
    names += [r.get("slurm_partition") for r in (profile.get("set-resources") or {}).values()]
    return sorted({str(n) for n in names if n})


def _field(text: str, name: str) -> str | None:
    """`Name=value` (scontrol show partition) or `Name = value` (scontrol show config)."""
    m = re.search(rf"(?:^|\s){name}\s*=\s*(\S+)", text, re.M)
    return m.group(1) if m else None


def problem(partition: str, show_partition: str, show_config: str, requeue: bool) -> str | None:
    """Why jobs on `partition` can end PREEMPTED for good, or None. The texts are `scontrol show
    partition <p>` and `scontrol show config`; `requeue`: the profile submits with --requeue."""
    if (_field(show_config, "PreemptType") or "preempt/none") == "preempt/none":
        return None   # no preemption on this cluster
    mode = (_field(show_partition, "PreemptMode") or _field(show_config, "PreemptMode") or "OFF").upper()
    if "CANCEL" in mode:
        return f"partition {partition} has PreemptMode={mode}: a preempted job is cancelled"
    if "REQUEUE" in mode and not requeue and _field(show_config, "JobRequeue") != "1":
        return (f"partition {partition} has PreemptMode={mode} but jobs are not requeueable (JobRequeue=0 and the "
                f"profile does not set slurm-requeue: true): a preempted job is cancelled")
    return None


def check(profile_path: Path = PROFILE, scontrol: str = "scontrol") -> None:
    """Refuse a Slurm run whose partitions can leave a job PREEMPTED for ever (see the module)."""
    import yaml

    if not shutil.which(scontrol):
        return   # not on a Slurm login node: nothing to ask

    def show(*args: str) -> str:
        try:
            return subprocess.run([scontrol, "show", *args], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    profile = yaml.safe_load(Path(profile_path).read_text())
    config = show("config")
    requeue = bool(profile.get("slurm-requeue"))
    bad = [why for p in partitions(profile) if (why := problem(p, show("partition", p), config, requeue))]
    if bad:
        raise RuntimeError(
            "; ".join(bad) + ". The Slurm executor plugin reports a job left PREEMPTED as running for ever, so "
            f"Snakemake would wait on it until killed. In {profile_path} pick partitions whose PreemptMode is OFF, "
            "REQUEUE or SUSPEND (`scontrol show partition <name>`), or a QOS that is not preempted "
            "(slurm_extra: \"'--qos=...'\"); docs/reliability.md says more")
