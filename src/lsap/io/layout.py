"""Where every file of a run lives: the one map the Snakemake rules, the CLI and the loaders share.

Paths are relative to the repository root (Snakemake runs there), so a finished `results/` tree
means the same thing in any checkout. A wildcard is passed through as `"{name}"`.
"""

from __future__ import annotations

import json
from pathlib import Path

# Bumped whenever a path below changes meaning: a results folder written under another layout is
# refused (results/<run>/LAYOUT), never read as if it were this one.
LAYOUT_VERSION = 3  # 3: corpus and shards in parts


def run_dir(run: str) -> str:
    return f"results/{run}"


def moved(path: str, run: str, root) -> Path:
    """A run's path (one of the functions below) under `root`, the run's folder wherever it is now
    (results copied from a cluster to another machine): the layout is the same below it."""
    return Path(root) / Path(path).relative_to(run_dir(run))


def resolved_config(run: str) -> str:
    """The validated config the jobs read (written when a run that holds the lock starts)."""
    return f"{run_dir(run)}/config.yaml"


def layout_marker(run: str) -> str:
    return f"{run_dir(run)}/LAYOUT"


def hub_manifest(run: str) -> str:
    """What the hub_snapshot rule downloaded for this run (lsap.io.snapshot); the files are in hub.cache."""
    return f"{run_dir(run)}/hub/manifest.json"


def corpus(run: str) -> str:
    return f"{run_dir(run)}/corpus"


def tokenizer(run: str, role: str) -> str:
    return f"{run_dir(run)}/tokenizers/{role}"


def shards(run: str, role: str) -> str:
    return f"{run_dir(run)}/shards/{role}"


def translation(run: str) -> str:
    return f"{run_dir(run)}/vocab/translation.npz"


def analysis(run: str, name: str) -> str:
    """Machine-readable results of the analysis stage (table1.json, overlap.csv)."""
    return f"{run_dir(run)}/analysis/{name}"


def reference(run: str, name: str) -> str:
    return f"{run_dir(run)}/references/{name}"


def checkpoint(model_dir: str | Path, fraction: float = 1.0) -> Path:
    """A budget checkpoint of a training run (HF folder: model + tokenizer)."""
    return Path(model_dir) / "checkpoints" / f"frac-{fraction:.2f}"


def targets(run: str, spec_id: str, seed) -> str:
    """LSAP's cached candidates for the sequences one seed's runs read."""
    return f"{run_dir(run)}/targets/{spec_id}-s{seed}"


def selection(run: str, spec_id: str) -> str:
    """Scores of one data-selection spec (MiniPLM, SALT_DS), named by the spec, not the method."""
    return f"{run_dir(run)}/selection/{spec_id}"


def student(run: str, method: str, seed) -> str:
    return f"{run_dir(run)}/students/{method}-s{seed}"


def evaluation(run: str, student_run: str) -> str:
    return f"{run_dir(run)}/eval/{student_run}.json"


def tables(run: str) -> str:
    """The published tables (committed for runs that really ran): `make tables` renders them."""
    return f"paper_tables/{run}"


def figures(run: str) -> str:
    return f"figures/{run}"


def report_tables(run: str) -> str:
    """The report rule's own rendering, inside the results (so copied results are complete)."""
    return f"{run_dir(run)}/report/tables"


def report_figures(run: str) -> str:
    return f"{run_dir(run)}/report/figures"


class LayoutError(RuntimeError):
    """A results folder this code cannot read as its own."""


def check_run_dir(root: Path, run: str, config_name: str) -> None:
    """Refuse a results folder written by another layout or claimed by another config file.

    `results/<run>/LAYOUT` records the layout version and the config file that made the folder;
    it is written by the first run (see `claim_run_dir`)."""
    marker = root / layout_marker(run)
    if not marker.exists():
        if (root / run_dir(run)).is_dir() and any((root / run_dir(run)).iterdir()):
            raise LayoutError(f"{root / run_dir(run)} has no LAYOUT file: it was written by an older layout of this "
                              f"repository. Move it aside (mv {run_dir(run)} {run_dir(run)}.old) and rerun.")
        return
    info = json.loads(marker.read_text())
    if info.get("layout") != LAYOUT_VERSION:
        raise LayoutError(f"{marker}: layout {info.get('layout')}, this code reads layout {LAYOUT_VERSION}. Move "
                          f"{run_dir(run)} aside (or check out the commit that wrote it) and rerun.")
    if info.get("config") != config_name:
        raise LayoutError(f"run name '{run}' is taken: {run_dir(run)} holds the results of {info.get('config')}, "
                          f"not {config_name}. Give this config another `run:` name (or remove {run_dir(run)}).")


def claim_run_dir(root: Path, run: str, config_name: str) -> None:
    from lsap.io.files import write_json

    marker = root / layout_marker(run)
    if not marker.exists():
        write_json(marker, {"layout": LAYOUT_VERSION, "config": config_name})
