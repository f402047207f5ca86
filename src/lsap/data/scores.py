"""A data selection's scores on disk: the batch-aligned ranges its scoring parts cover, their gather
into one array, and the checked read the students do. numpy only (the gather is a local rule,
run where snakemake runs: no GPU, no torch import)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from lsap.io.files import atomic_path, read_json, sha256_file, write_json


def part_ranges(n: int, batch_size: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges of n sequences, one per scoring part, cut on batch
    boundaries: every part scores the very batches a one-job run would, so the gathered scores
    are bit-identical to it. A part beyond the batch count gets an empty range."""
    n_batches = math.ceil(n / batch_size)
    cuts = [min(n, (i * n_batches // parts) * batch_size) for i in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def part_paths(out_dir, part: int) -> tuple[Path, Path]:
    d = Path(out_dir) / "parts"
    return d / f"part-{part:03d}.npz", d / f"part-{part:03d}.json"


def gather_parts(out_dir, parts: int) -> Path:
    """The selection's scores from its `parts` part files: checked to share one key and to cover
    the pool exactly once, in order, each npz against its recorded hash; written as
    `scores.npy`, `sequences.npy` and `scores.json`, the format `load_scores` reads. numpy only:
    this runs where snakemake runs (a local rule), with no GPU and no torch import."""
    infos = [read_json(part_paths(out_dir, p)[1]) for p in range(parts)]
    keys = {json.dumps(i["key"], sort_keys=True) for i in infos}
    if len(keys) > 1 or any(i["parts"] != parts for i in infos):
        raise ValueError(f"the parts in {Path(out_dir) / 'parts'} were scored for different keys or part counts "
                         f"(compute.scoring_parts changed mid-run?): delete that folder and rerun")
    n = infos[0]["key"]["n_sequences"]
    if [(i["start"], i["stop"]) for i in infos] != part_ranges(n, infos[0]["key"]["batch_size"], parts):
        raise ValueError(f"the parts in {Path(out_dir) / 'parts'} do not cover the {n} pooled sequences once, in order: "
                         f"delete that folder and rerun")
    scores, positions = [], []
    for p, i in enumerate(infos):
        npz = part_paths(out_dir, p)[0]
        if sha256_file(npz) != i["sha256"]:
            raise ValueError(f"{npz} does not match the hash its scoring job recorded: delete it and rerun")
        with np.load(npz) as z:
            scores.append(z["scores"])
            positions.append(z["positions"])
    out = Path(out_dir) / "scores.npy"
    sha = {}
    for path, arr in ((out.with_name("sequences.npy"), np.concatenate(positions)), (out, np.concatenate(scores))):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
            sha[path.name] = sha256_file(tmp)
    tokens, seconds = sum(i["tokens_scored"] for i in infos), sum(i["seconds"] for i in infos)
    write_json(out.with_suffix(".json"), {
        "sequences": n, "tokens_scored": tokens, "flops": sum(i["flops"] for i in infos), "seconds": seconds,
        "tokens_per_s": tokens / max(seconds, 1e-9), "parts": parts, "key": infos[0]["key"], "sha256": sha})
    return out


def load_scores(scores_path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(scores, the dataset positions they score, the scoring info), verified against the hashes
    the selection job recorded: damaged or edited scores are refused, naming the file."""
    scores_path = Path(scores_path)
    info = read_json(scores_path.with_suffix(".json"))
    for f in (scores_path.name, "sequences.npy"):
        if sha256_file(scores_path.with_name(f)) != info.get("sha256", {}).get(f):
            raise ValueError(f"{scores_path.with_name(f)} does not match the hash its selection recorded (damaged "
                             f"or edited): delete {scores_path.parent} and rerun the same command")
    return np.load(scores_path), np.load(scores_path.with_name("sequences.npy")), info
