"""The hub, once: a login-node snapshot of every model, tokenizer, dataset file and benchmark
dataset a run reads, so that cluster jobs run with the Hugging Face Hub offline.

The `hub_snapshot` rule (a local rule, first in the DAG of any config that names hub sources)
calls `take`: it downloads each model's files and each tokenizer's (its tokenizer files only),
`DOWNLOAD_WORKERS` at a time, at the revision the config's lock pins (lsap.io.pin), else the config's
`revision`, else the repository's head, resolved to a commit; and the data files each corpus part
will read (its share of the split's files, in order, until the part's `max_docs` rows are covered;
a held-out set of fewer files than parts: the files holding its first max_docs rows), into
`hub.cache`. lm-eval's task datasets (`source: lm_eval`) are a second rule, `hub_snapshot_eval`,
with its own manifest and key, read only by the evaluations. The snapshot checks that each
dataset loads with the pinned `datasets` (a loading-script repository does not) and that gated
models are readable (an optional Table-1 model that is not is listed as missing); and it writes a
manifest (id, revision, files, bytes). The jobs then run with HF_HUB_OFFLINE=1 (`job_env`) and
read the files the manifest lists (`dataset_files`); a job that still needs something else fails
naming the id and the snapshot. A local folder in place of a hub id is recorded, not copied.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from pathlib import Path

from lsap import REPO_ROOT
from lsap.io import hub, layout
from lsap.io.files import read_json

MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]   # weights, configs, tokenizers
TOKENIZER_FILES = ["*.json", "*.model", "*.txt", "*.tiktoken"]   # a tokenizer's files (and configs): no weights
# files downloaded at once (huggingface_hub's own default for snapshot_download): the hub serves
# files from a CDN, and the login node's link, not one connection, is then the limit
DOWNLOAD_WORKERS = 8
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


def eval_manifest(run: str) -> str:
    """What the hub_snapshot_eval rule downloaded (lm-eval's task datasets), beside the data manifest."""
    return str(Path(layout.hub_manifest(run)).with_name("eval_manifest.json"))


def _model(repo: str, revision: str | None, optional: bool, cache: Path, patterns: list[str] = MODEL_FILES) -> dict:
    entry = {"kind": "model", "id": repo}
    if Path(repo).is_dir():
        files, size = _folder(Path(repo))
        return {**entry, "revision": "local folder", "files": len(files), "bytes": size}
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(repo, revision=revision, cache_dir=cache, allow_patterns=patterns,
                                             max_workers=DOWNLOAD_WORKERS))
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


def count_rows(path: str, builder: str, split: str) -> int:
    """Rows of one local data file: parquet's footer, or the non-blank lines of a JSON-lines file
    (plain, .gz, .zst): no JSON is parsed, so counting SlimPajama's share takes minutes, not the
    hours of `datasets` streaming, the fallback for any other format."""
    p = str(path)
    if p.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(p).metadata.num_rows
    opener = _line_opener(p) if builder == "json" else None
    if opener is None:
        import datasets

        ds = datasets.load_dataset(builder, data_files={split: [p]}, split=split, streaming=True)
        return sum(1 for _ in ds)
    with opener(p) as f:
        return sum(1 for line in f if line.strip())


def _line_opener(path: str):
    if path.endswith(".jsonl"):
        return lambda p: open(p, "rb")
    if path.endswith(".jsonl.gz"):
        import gzip

        return lambda p: gzip.open(p, "rb")
    if path.endswith(".jsonl.zst"):
        try:
            import zstandard
        except ImportError:
            return None
        import io

        return lambda p: io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(p, "rb"), closefd=True))
    return None


def _fetch(url: str, cache: Path) -> str:
    """A local copy of one data file (an hf:// URL); a local path is itself."""
    if not url.startswith("hf://"):
        return url
    from huggingface_hub import HfFileSystem, hf_hub_download

    p = HfFileSystem().resolve_path(url)
    return hf_hub_download(p.repo_id, p.path_in_repo, repo_type=p.repo_type, revision=p.revision, cache_dir=cache)


def _streams(n: int, parts: int, cap: int | None) -> list[tuple[list[int], float]]:
    """(file indices in read order, rows they must cover) of each stream the corpus parts read:
    one per part (every parts-th file from the part-th) when there are at least as many files as
    parts; else one stream split by rows (part p keeps rows p, p + parts, ...: the first
    cap x parts rows hold every part's cap). No cap: every file."""
    if cap is None:
        return [(list(range(n)), math.inf)]
    if n < parts:
        return [(list(range(n)), cap * parts)]
    return [(list(range(p, n, parts)), cap) for p in range(parts)]


def files_to_read(files: list[str], parts: int, cap: int | None, rows) -> list[int]:
    """Indices of the data files the corpus parts read: each stream's files (`_streams`), in order,
    until they hold the rows it needs. `rows(i)` counts file i's rows (called only where needed)."""
    need: set[int] = set()
    for order, want in _streams(len(files), parts, cap):
        got = 0
        for i in order:
            if got >= want:
                break
            need.add(i)
            got += rows(i) if want != math.inf else 0
    return sorted(need)


def _count_needed(n: int, parts: int, cap: int | None, fetch_count, workers: int) -> dict[int, int]:
    """Rows of every file `files_to_read` asks about, fetched and counted `workers` at a time: each
    round asks each stream for the files its mean rows per file says it still needs."""
    from concurrent.futures import ThreadPoolExecutor

    counts: dict[int, int] = {}
    streams = [(o, w) for o, w in _streams(n, parts, cap) if w != math.inf]
    with ThreadPoolExecutor(workers) as pool:
        while True:
            batch = []
            for order, want in streams:
                done = list(itertools.takewhile(counts.__contains__, order))
                got = sum(counts[i] for i in done)
                if got >= want or len(done) == len(order):
                    continue
                k = math.ceil((want - got) / (got / len(done))) if got else 1
                batch += order[len(done):len(done) + max(1, k)]
            if not batch:
                return counts
            counts.update(zip(batch, pool.map(fetch_count, batch), strict=True))


def _dataset(src: dict, parts: int, cache: Path, workers: int = DOWNLOAD_WORKERS) -> dict:
    builder = _builder(src)
    files = sorted(builder.config.data_files[src["split"]])
    local: dict[int, str] = {}

    def fetch_count(i: int) -> int:
        local[i] = _fetch(files[i], cache)
        return count_rows(local[i], builder.name, src["split"])

    cap = math.ceil(src["max_docs"] / parts) if src.get("max_docs") else None
    counts = _count_needed(len(files), parts, cap, fetch_count, workers)
    need = files_to_read(files, parts, cap, counts.__getitem__)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:   # uncounted files (no cap): downloaded in parallel too
        for i, path in zip(need, pool.map(lambda i: local.get(i) or _fetch(files[i], cache), need), strict=True):
            local[i] = path
    revision = next((f.split("@", 1)[1].split("/", 1)[0] for f in files if f.startswith("hf://") and "@" in f),
                    "local folder")
    return {"kind": "dataset", "id": src["dataset"], "name": src.get("name"), "split": src["split"],
            "revision": revision, "builder": builder.name, "files": files,
            "local": {files[i]: local[i] for i in need}, "bytes": sum(os.path.getsize(local[i]) for i in need)}


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


def _downloads(cfg: dict) -> list[tuple[str, str, dict, list[str] | None]]:
    """(where, id, spec, file patterns: None for a dataset) of each download: one per dataset
    source, one per model repository and revision, with its weights only where a teacher or a
    Table-1 model reads them (a tokenizer's repository: its tokenizer files, not gigabytes of weights)."""
    out, models = [], {}
    for where, repo, spec in hub.specs(cfg):
        if where.startswith("corpus."):
            out.append((where, repo, spec, None))
            continue
        k = (repo, spec.get("revision"))
        first = models.setdefault(k, [where, repo, dict(spec), TOKENIZER_FILES])
        if not where.startswith("tokenizers."):
            first[3] = MODEL_FILES
        first[2]["optional"] = bool(first[2].get("optional")) and bool(spec.get("optional"))
    return out + [tuple(v) for v in models.values()]


def take(cfg: dict, out: str | Path, what: str = "data", log=print) -> dict:
    """Snapshot into hub.cache what the run reads from the hub; the manifest is written to `out`.
    `what`: "data" (datasets, tokenizers, models: what the data and model jobs read, at the
    revisions of the config's lock, lsap.io.pin) or "evaluation" (lm-eval's task datasets): two
    manifests, so that an edit under `evaluation:` re-snapshots, and reruns, only the evaluation."""
    from lsap.io import pin
    from lsap.io.files import write_json

    cache = cache_dir(cfg)
    cache.mkdir(parents=True, exist_ok=True)
    entries = []
    if what == "evaluation":
        if cfg["evaluation"]["source"] == "lm_eval":
            entries = _lm_eval_tasks(cfg["evaluation"]["tasks"], cache)
    else:
        pins = pin.verify(cfg) or {}   # a lock whose revisions differ from the config's stops here
        for where, repo, spec, patterns in _downloads(cfg):
            rev = pins.get(pin.pin_key(where, repo, spec)) or spec.get("revision")
            if patterns is None:
                entries.append(_dataset({**spec, "revision": rev}, cfg["corpus"]["parts"], cache))
            else:
                entries.append(_model(repo, rev, bool(spec.get("optional")), cache, patterns))
            e = entries[-1]
            log(f"[hub_snapshot] {where}: {repo} @ {e.get('revision', '-')}: "
                + (e["missing"] if "missing" in e else f"{e['bytes'] / 1e9:.2f} GB"))
    manifest = {"cache": str(cache), "entries": entries, "bytes": sum(e.get("bytes", 0) for e in entries)}
    write_json(out, manifest)
    log(f"[hub_snapshot] {what}: {len(entries)} entries, {manifest['bytes'] / 1e9:.2f} GB in {cache}")
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
