"""bench/gpu_check.sh refuses bad input before any work, and a part it cannot finish in the time
left before it starts. The whole check, from the device pack, offline: tests/operations/test_device_pack.py."""

import json
import subprocess

import pytest
import torch

from lsap import REPO_ROOT
from lsap.operations import bench

SCRIPT = REPO_ROOT / "bench" / "gpu_check.sh"


def _run(*args, timeout=600):
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def test_bad_arguments_are_refused_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = _run("--out", str(blocker / "sub"), "--part", "bench", "--cpu-smoke")
    assert proc.returncode == 2 and "is not a writable directory" in proc.stderr
    proc = _run("--part", "bench", "--cpu-smoke")
    assert proc.returncode == 2 and "--out DIR is required" in proc.stderr
    proc = _run("--out", str(tmp_path), "--cpu-smoke")
    assert proc.returncode == 2 and "--part must be bench or sweep" in proc.stderr
    proc = _run("--out", str(tmp_path), "--part", "bench", "--pack", str(tmp_path / "nothing"), "--cpu-smoke")
    assert proc.returncode == 2 and "holds no call folder" in proc.stderr
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_no_cuda_without_cpu_smoke_is_refused(tmp_path):
    proc = _run("--out", str(tmp_path), "--part", "bench")
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "--cpu-smoke" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_part_priced_beyond_the_time_left_is_refused_not_started(tmp_path):
    proc = _run("--out", str(tmp_path), "--part", "bench", "--cpu-smoke", "--minutes", "0")
    assert proc.returncode == 1 and "bench refused: priced at" in proc.stderr
    part = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]["bench"]
    assert part == {"status": "refused", "seconds": 0, "planned_s": bench.price("cpu", 1, 2)}
    assert not (tmp_path / "bench.json").exists()
