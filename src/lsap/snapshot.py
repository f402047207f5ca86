"""The hub, once: a login-node snapshot of every model, tokenizer, dataset file and benchmark
dataset a run reads, so that cluster jobs run with the Hugging Face Hub offline.

The `hub_snapshot` rule (a local rule, first in the DAG of any config that names hub sources)
calls `take`: it downloads each model's and tokenizer's files (`snapshot_download`, at the
config's `revision`, else the repository's head, resolved to a commit), the data files each corpus
part will read (its share of the split's files, in order, until the part's `max_docs` rows are
covered), and lm-eval's task datasets (`source: lm_eval`) into `hub.cache`; it checks that each
dataset loads with the pinned `datasets` (a loading-script repository does not) and that gated
models are readable (an optional Table-1 model that is not is listed as missing); and it writes a
manifest (id, revision, files, bytes). The jobs then run with HF_HUB_OFFLINE=1 (`job_env`) and
read the files the manifest lists (`dataset_files`); a job that still needs something else fails
naming the id and the snapshot. A local folder in place of a hub id is recorded, not copied.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

from lsap import REPO_ROOT, hub
from lsap.files import read_json

MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]   # weights, configs, tokenizers
MANIFEST_ENV = "LSAP_HUB_MANIFEST"   # set for every job of a config with hub sources


class SnapshotError(RuntimeError):
    """A hub id the run needs that cannot be snapshotted (names the id and a fix)."""


def cache_dir(cfg: dict) -> Path:
    return (REPO_ROOT / cfg["hub"]["cache"]).resolve()


def job_env(cfg: dict, manifest: str | Path) -> dict[str, str]:
    """The environment of every job but the snapshot's own: the hub offline, its cache the snapshot."""
    if not hub.ids(cfg):
        return {}
    cache = cache_dir(cfg)
    return {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_CACHE": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets"),
            MANIFEST_ENV: str(Path(manifest).resolve())}


def _folder(path: Path) -> tuple[list[str], int]:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return [str(p.relative_to(path)) for p in files], sum(p.stat().st_size for p in files)


def _model(repo: str, revision: str | None, optional: bool, cache: Path) -> dict:
    entry = {"kind": "model", "id": repo}
    if Path(repo).is_dir():
        files, size = _folder(Path(repo))
        return {**entry, "revision": "local folder", "files": len(files), "bytes": size}
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(repo, revision=revision, cache_dir=cache, allow_patterns=MODEL_FILES))
    except GatedRepoError as e:
        why = (f"gated: accept its licence on https://huggingface.co/{repo} and log in "
               f"(`huggingface-cli login`) where the snapshot runs ({type(e).__name__})")
        if optional:
            return {**entry, "missing": why}
        raise SnapshotError(f"{repo}: {why}") from e
    except (RepositoryNotFoundError, HfHubHTTPError, OSError) as e:
        raise SnapshotError(f"{repo} (revision {revision or 'head'}) cannot be downloaded: {e}. Check the id "
                            "and revision in the config, or replace the id by a local folder") from e
    files, size = _folder(folder)
    return {**entry, "revision": folder.name, "files": len(files), "bytes": size}


def _builder(src: dict):
    """The packaged builder (parquet, json...) and data files of src's dataset, as `datasets` sees it."""
    import datasets

    try:
        builder = datasets.load_dataset_builder(src["dataset"], src.get("name"), revision=src.get("revision"))
    except Exception as e:  # a loading script, a missing config or repository, no access
        raise SnapshotError(
            f"dataset {src['dataset']} (config {src.get('name')}, revision {src.get('revision') or 'head'}) does not "
            f"load with datasets {datasets.__version__}: {type(e).__name__}: {e}. If it is a loading-script "
            "repository, point `revision` at its parquet conversion (refs/convert/parquet) or use another id "
            "that holds data files (docs/scales.md lists the ones the paper config uses)") from e
    if src["split"] not in (builder.config.data_files or {}):
        raise SnapshotError(f"dataset {src['dataset']} has no split '{src['split']}' among its data files "
                            f"({sorted(builder.config.data_files or {})})")
    return builder


def _count_rows(builder_name: str, path: str, split: str) -> int:
    import datasets

    ds = datasets.load_dataset(builder_name, data_files={split: [path]}, split=split, streaming=True)
    return sum(1 for _ in ds)


def _fetch(url: str, cache: Path) -> str:
    """A local copy of one data file (an hf:// URL); a local path is itself."""
    if not url.startswith("hf://"):
        return url
    from huggingface_hub import HfFileSystem, hf_hub_download

    p = HfFileSystem().resolve_path(url)
    return hf_hub_download(p.repo_id, p.path_in_repo, repo_type=p.repo_type, revision=p.revision, cache_dir=cache)


def files_to_read(files: list[str], parts: int, cap: int | None, rows) -> list[int]:
    """Indices of the data files the corpus parts read: each part's share (every parts-th file from
    the part-th), in order, until it holds `cap` rows (None: all of it); every file when there are
    fewer files than parts (the parts then split rows). `rows(i)` counts file i's rows."""
    if len(files) < parts or cap is None:
        return list(range(len(files)))
    need = []
    for part in range(parts):
        got = 0
        for i in range(part, len(files), parts):
            need.append(i)
            got += rows(i)
            if got >= cap:
                break
    return sorted(need)


def _dataset(src: dict, parts: int, cache: Path) -> dict:
    builder = _builder(src)
    files = sorted(builder.config.data_files[src["split"]])
    local: dict[int, str] = {}

    def rows(i: int) -> int:
        local[i] = _fetch(files[i], cache)
        return _count_rows(builder.name, local[i], src["split"])

    cap = math.ceil(src["max_docs"] / parts) if src.get("max_docs") else None
    for i in files_to_read(files, parts, cap, rows):
        if i not in local:   # counting rows fetched the others already
            local[i] = _fetch(files[i], cache)
    revision = next((f.split("@", 1)[1].split("/", 1)[0] for f in files if f.startswith("hf://") and "@" in f),
                    "local folder")
    return {"kind": "dataset", "id": src["dataset"], "name": src.get("name"), "split": src["split"],
            "revision": revision, "builder": builder.name, "files": files,
            "local": {files[i]: p for i, p in sorted(local.items())},
            "bytes": sum(os.path.getsize(p) for p in local.values())}


def _lm_eval_tasks(tasks: list[str], cache: Path) -> list[dict]:
    """lm-eval's own task datasets, downloaded into the datasets cache the jobs read offline."""
    import datasets

    # where the jobs' HF_DATASETS_CACHE points (datasets reads the variable once, at its import)
    os.environ["HF_DATASETS_CACHE"] = str(cache / "datasets")
    datasets.config.HF_DATASETS_CACHE = cache / "datasets"
    from lm_eval.tasks import TaskManager, get_task_dict

    out = []
    for name, task in get_task_dict(tasks, TaskManager()).items():
        c = task.config
        out.append({"kind": "lm_eval_task", "task": name, "id": c.dataset_path, "name": c.dataset_name,
                    "revision": (c.dataset_kwargs or {}).get("revision", "head at snapshot time")})
    return out


def take(cfg: dict, out: str | Path, log=print) -> dict:
    """Snapshot everything the run reads from the hub into hub.cache; the manifest is written to `out`."""
    from lsap.files import write_json

    cache = cache_dir(cfg)
    cache.mkdir(parents=True, exist_ok=True)
    entries, seen = [], set()
    for where, repo, spec in hub.specs(cfg):
        if (repo, spec.get("revision")) in seen and not where.startswith("corpus."):
            continue   # a tokenizer's repository is its model's: one download (all its files)
        seen.add((repo, spec.get("revision")))
        if where.startswith("corpus."):
            entries.append(_dataset(spec, cfg["corpus"]["parts"], cache))
        else:
            entries.append(_model(repo, spec.get("revision"), bool(spec.get("optional")), cache))
        e = entries[-1]
        log(f"[hub_snapshot] {where}: {repo} @ {e.get('revision', '-')}: "
            + (e["missing"] if "missing" in e else f"{e['bytes'] / 1e9:.2f} GB"))
    if cfg["evaluation"]["source"] == "lm_eval":
        entries += _lm_eval_tasks(cfg["evaluation"]["tasks"], cache)
    manifest = {"cache": str(cache), "entries": entries,
                "bytes": sum(e.get("bytes", 0) for e in entries)}
    write_json(out, manifest)
    log(f"[hub_snapshot] {len(entries)} entries, {manifest['bytes'] / 1e9:.2f} GB in {cache}")
    return manifest


def dataset_files(src: dict) -> tuple[str, list[str], dict[str, str]] | None:
    """(builder, all data files, local copy of each snapshotted one) of src's dataset from the
    job's snapshot manifest; None where the job runs without one (the hub is then read directly)."""
    path = os.environ.get(MANIFEST_ENV)
    if not path:
        return None
    for e in read_json(path)["entries"]:
        if e["kind"] == "dataset" and (e["id"], e["name"], e["split"]) == (src["dataset"], src.get("name"), src["split"]):
            return e["builder"], e["files"], e["local"]
    raise SnapshotError(f"dataset {src['dataset']} ({src.get('name')}, {src['split']}) is not in the hub snapshot "
                        f"{path}: rerun the hub_snapshot rule (its config changed?)")


@contextlib.contextmanager
def reading(repo: str):
    """Around a hub read (from_pretrained): under the snapshot (cluster jobs, hub offline), an id
    it does not hold stops the job naming the id and the rule to rerun, not HF's offline message."""
    try:
        yield
    except OSError as e:
        if os.environ.get(MANIFEST_ENV):
            raise SnapshotError(f"{repo} is not in the hub snapshot ({os.environ.get('HF_HUB_CACHE')}; jobs run with "
                                f"HF_HUB_OFFLINE=1): rerun the hub_snapshot rule where the hub is reachable "
                                f"({type(e).__name__}: {e})") from e
        raise
