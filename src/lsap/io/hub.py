"""Hugging Face Hub ids in a config: which there are, and whether each can be read here.

A hub id (a dataset, a tokenizer, a model) may always be replaced by a local folder. Before any
job runs (Snakemake's onstart), every id must be a local folder or the hub must be reachable;
otherwise the run stops, naming the ids, instead of failing hours later on a compute node.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path


def specs(cfg: dict) -> list[tuple[str, str, dict]]:
    """(where in the config, hub id or local folder, its config entry) of every hub source a config reads."""
    out = []
    for d, spec in cfg["corpus"]["domains"].items():
        out += [(f"corpus.domains.{d}", s["dataset"], s) for s in spec["sources"] if s["reader"] == "hf_dataset"]
    out += [(f"tokenizers.{r}", t["id"], t) for r, t in cfg["tokenizers"].items() if t["kind"] == "hub"]
    out += [(f"students.teachers.{r}", m["id"], m) for r, m in cfg["students"]["teachers"].items() if m["kind"] == "hub"]
    out += [("analysis.table1.models" + (" (optional)" if m.get("optional") else ""), m["id"], m)
            for m in cfg["analysis"]["table1"]["models"] if m["kind"] == "hub"]
    return out


def ids(cfg: dict) -> list[tuple[str, str]]:
    """(where in the config, hub id or local folder) of every hub source a config reads."""
    return [(where, i) for where, i, _ in specs(cfg)]


@functools.lru_cache(maxsize=None)
def reachable(timeout: float = 5.0) -> bool:
    """Whether the hub answers here (HF_HUB_OFFLINE=1 means no). One HEAD request through
    huggingface_hub's own HTTP client, so it goes the way the downloads will: through
    HTTPS_PROXY / HTTP_PROXY unless NO_PROXY names the host (a login node's only way out is often
    a proxy; a raw socket to the hub refused those runs). Any HTTP answer counts, even an error
    status: the hub, or the proxy in front of it, is there."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return False
    from huggingface_hub.utils import get_session

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        get_session().head(endpoint, timeout=timeout, follow_redirects=False)
        return True
    except Exception:  # the client's connect, proxy, TLS and timeout errors alike: not reachable from here
        return False


def check(cfg: dict, source: str) -> None:
    """Refuse a config whose hub ids can be read neither from a local folder nor from the hub."""
    # an optional Table-1 model (gated) may be unreadable: Table 1 then names it as left out
    remote = [(where, i) for where, i in ids(cfg) if not Path(i).is_dir() and not where.endswith("(optional)")]
    missing = [(where, i) for where, i in remote if Path(i).is_absolute() or i.startswith(".")]
    if not missing and (not remote or reachable()):
        return
    bad = missing or remote
    raise RuntimeError(
        f"{source}: these hub sources can be read neither from a local folder nor from the Hugging Face Hub "
        f"(not reachable from here): " + "; ".join(f"{w}: {i}" for w, i in bad) + ". Replace each id by a local "
        "folder (a mirrored dataset or model: `huggingface-cli download <id> --local-dir DIR` where the hub "
        "is reachable), or run where the hub is reachable. `make rehearse` shows stand-in folders at work.")
