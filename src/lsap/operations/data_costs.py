"""What the data jobs and the local rules cost, for `lsap plan` (lsap.operations.forecast).

The corpus and shards parts are priced from their own loops (each part's share of each source's
documents, or the parts' manifests once written); the local rules, which run where snakemake runs
(the login node: Snakefile `localrules:`), from the bytes each reads at stated rates, against a
stated bound: at the paper's size none may take more than LOCAL_CPU_MIN CPU-minutes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lsap import REPO_ROOT
from lsap.data.corpus import SPLITS, part_name
from lsap.io import layout


def part_tokens(cfg: dict, data: dict) -> list[float | None]:
    """Tokens each corpus part (and its shards part) holds, from the jobs' own loops: the shards
    parts' manifests where they exist, else each hub source's ceil(max_docs / parts) documents per
    part x tokens_per_doc (file sources: an even share of the estimate)."""
    parts, root = cfg["corpus"]["parts"], REPO_ROOT / layout.shards(cfg["run"], "student")
    if all((root / part_name(p) / f"{s}.json").exists() for p in range(parts) for s in SPLITS):
        return [float(sum(json.loads((root / part_name(p) / f"{s}.json").read_text())["n_tokens"] for s in SPLITS))
                for p in range(parts)]
    srcs = [s for d in cfg["corpus"]["domains"].values() for s in d["sources"]]
    if not all(s["reader"] == "hf_dataset" and s.get("max_docs") and s.get("tokens_per_doc") for s in srcs):
        total = sum(d["tokens"] or 0 for d in data.values())
        return [total / parts if total else None] * parts
    return [float(sum(math.ceil(s["max_docs"] / parts) * s["tokens_per_doc"] for s in srcs))] * parts


# N5/N11: no local rule (run where snakemake runs: the login node) may take more than this at the
# paper's size; `lsap plan` prices each and warns above it
LOCAL_CPU_MIN = 30.0
# stated rates of the local rules' work: hashing or scanning files (sha256 measured here at 1.57 GB/s
# on one core; a shared filesystem reads ~1 GB/s), counting the rows of downloaded JSON lines
# (decompressing zstd; no JSON is parsed), the login node's download link (wall time, not CPU)
LOCAL_RATES = {"scan_bytes_per_s": 1e9, "count_bytes_per_s": 5e8, "download_bytes_per_s": 1e8}
SMALL_CPU_MIN = 1.0   # a local rule that reads only JSON manifests, vocabularies or result files


def local_rules(cfg: dict, jobs: list[dict], snap: dict | None, warnings: list) -> list[dict]:
    """Every local rule of the DAG priced (`cpu_hours`; `wall_hours` where it waits on the network),
    from the bytes it reads; a warning for each above LOCAL_CPU_MIN. `jobs`: the priced cluster jobs."""
    from lsap.io import hub

    r, rows = LOCAL_RATES, []
    disk = {j: sum(x.get("disk_gb") or 0 for x in jobs if x["job"] == j) * 1e9 for j in ("shards_part", "selection_part")}

    def add(rule, what, cpu_s, wall_s=None):
        rows.append({"job": rule, "method": what, "cpu_hours": cpu_s / 3600, "slurm": {"local": True},
                     "wall_hours": (wall_s if wall_s is not None else cpu_s) / 3600})
        if cpu_s / 60 > LOCAL_CPU_MIN:
            warnings.append(f"local rule {rule} ({what}): ~{cpu_s / 60:.0f} CPU-min on the login node, above the "
                            f"bound of {LOCAL_CPU_MIN:g}: make it a cluster job or split it")

    if snap:
        text = snap["text_gb"] * 1e9
        add("hub_snapshot", f"{snap['ids']} ids, rows of {snap['text_gb']:,.0f} GB of text counted", text
            / r["count_bytes_per_s"], (text + snap["weights_gb"] * 1e9) / r["download_bytes_per_s"])
        if hub.ids(cfg) and cfg["evaluation"]["source"] == "lm_eval":
            add("hub_snapshot_eval", f"{len(cfg['evaluation']['tasks'])} lm-eval tasks", SMALL_CPU_MIN * 60)
    add("corpus", "gather: the parts' manifests", SMALL_CPU_MIN * 60)
    add("shards", f"gather: sha256 of {disk['shards_part'] / 1e9:,.0f} GB of parts",
        disk["shards_part"] / r["scan_bytes_per_s"] + SMALL_CPU_MIN * 60)
    for rule in ("tokenizer", "translation", "overlap", "report", "notebook"):
        add(rule, "vocabularies, small files", SMALL_CPU_MIN * 60)
    if disk["selection_part"] or any(x["job"] == "selection_part" for x in jobs):
        add("selection", "gather of the scoring parts", SMALL_CPU_MIN * 60)
    return rows


def download_size(cfg: dict, bytes_per_token: float) -> dict | None:
    """What the hub_snapshot rule will download, estimated before it runs: each hub model's weights
    at 2 bytes per parameter (bf16 safetensors), each dataset's text the corpus parts read
    (max_docs x tokens_per_doc x bytes_per_token; compressed files download smaller). None: no hub ids."""
    from lsap.io import hub, snapshot
    from lsap.models import flops

    specs = [(w, i, s) for w, i, s in hub.specs(cfg) if not Path(i).is_dir()]
    if not specs:
        return None
    weights, text, seen = 0.0, 0.0, set()
    for where, repo, spec in specs:
        if where.startswith("corpus."):
            text += (spec.get("max_docs") or 0) * spec.get("tokens_per_doc", 1000) * bytes_per_token
        elif repo not in seen and not where.startswith("tokenizers."):   # a tokenizer's files: kilobytes
            seen.add(repo)
            weights += flops.source_flops_per_token(cfg, spec) / 2 * 2   # 2N FLOPs per token -> N params, 2 bytes each
    return {"ids": len({i for _, i, _ in specs}), "weights_gb": weights / 1e9, "text_gb": text / 1e9,
            "cache": str(snapshot.cache_dir(cfg))}
