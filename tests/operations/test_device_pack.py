"""The device pack (lsap.operations.devpack): calls under the transfer limit, chunks checked when reassembled,
and the GPU check rehearsed from the pack alone, offline, in the GPU machine's package set."""

import shutil
import subprocess
import sys

import pytest

from lsap import REPO_ROOT
from lsap.operations import devpack

MACHINE = devpack.machine_packages(REPO_ROOT / "bench" / "device" / "h200-pip-list.txt")


def _pack(tmp_path, limit):
    """Two archives of real repository files, cut at a small limit: the mechanism, at any size."""
    sources = sorted((REPO_ROOT / "src" / "lsap").rglob("*.py"))
    bench = devpack.write_archive({str(p.relative_to(REPO_ROOT)): p for p in sources}, tmp_path / "bench.tar", "gz")
    sweep = devpack.write_archive({"config/schema.yaml": REPO_ROOT / "config" / "schema.yaml"}, tmp_path / "sweep.tar", "xz")
    return devpack.split({"bench": bench, "sweep": sweep}, tmp_path / "pack", limit)


def test_calls_hold_at_most_the_limit_and_the_parts_reassemble(tmp_path):
    m = _pack(tmp_path, limit=16_384)
    assert len(m["calls"]) >= 3
    for call in m["calls"]:
        files = list((tmp_path / "pack" / call["folder"]).glob("*.tar.*"))
        assert sum(f.stat().st_size for f in files) == call["bytes"] <= 16_384
    repo = tmp_path / "repo"
    repo.mkdir()
    devpack.unpack(tmp_path / "pack", "bench", repo)
    devpack.unpack(tmp_path / "pack", "sweep", repo)
    assert (repo / "src/lsap/training/loop.py").read_bytes() == (REPO_ROOT / "src/lsap/training/loop.py").read_bytes()
    assert (repo / "config/schema.yaml").read_bytes() == (REPO_ROOT / "config/schema.yaml").read_bytes()


def test_a_missing_call_is_named_with_the_fix(tmp_path):
    m = _pack(tmp_path, limit=16_384)
    shutil.rmtree(tmp_path / "pack" / m["calls"][1]["folder"])
    with pytest.raises(devpack.PackError, match=r"call2/bench\.tar\.\d+ is missing: carry call2"):
        devpack.unpack(tmp_path / "pack", "bench", tmp_path)


def test_a_damaged_chunk_is_refused(tmp_path):
    m = _pack(tmp_path, limit=16_384)
    chunk = tmp_path / "pack" / m["parts"]["bench"]["chunks"][0]["file"]
    data = bytearray(chunk.read_bytes())
    data[100] ^= 1
    chunk.write_bytes(bytes(data))
    with pytest.raises(devpack.PackError, match="does not match its sha256"):
        devpack.unpack(tmp_path / "pack", "bench", tmp_path)


def test_the_unpacker_needs_nothing_but_the_standard_library():
    """It runs on the machine before any wheel is installed: importing it must not pull in a package."""
    code = ("import sys, lsap.operations.devpack; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'torch', 'yaml', 'packaging', 'jsonschema')); sys.exit(', '.join(bad) or None)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO_ROOT / "src")})
    assert proc.returncode == 0, proc.stderr


def test_wheels_cover_what_the_sweep_needs_and_the_machine_lacks_and_no_snakemake():
    ship = devpack.to_ship(MACHINE)
    # absent there, and read by `python -m lsap sweep` (lm-eval runs the probe; the config's schema)
    assert {"lm-eval", "datasets", "jsonschema", "gguf", "rpds-py"} <= set(ship)
    # the sweep is one process: no snakemake, nor what only it needs (pulp, its packaging<26)
    assert not {"snakemake", "pulp", "packaging", "sqlalchemy"} & set(ship)
    # there at a version every package of ours accepts: the machine's own is used
    assert not {"transformers", "tokenizers", "numpy", "torch", "pyarrow"} & set(ship)
    side = devpack.machine_side(MACHINE)
    assert side["transformers"] == "5.17.0" and not set(side) & set(ship)
