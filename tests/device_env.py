"""The GPU machine's Python environment, rehearsed here: a fresh venv holding only the packages of
that machine's list (bench/device/h200-pip-list.txt) that the check uses, at that machine's
versions, and nothing of this checkout. The device pack's wheels go on top of it, as there.

Where this machine cannot match (recorded in <env>/deviations.json): Python 3.11, not 3.12 (no
CPU torch for 3.12 here), torch 2.13.0+cpu from local disk, not 2.11.0+cu130; any pinned version
pip cannot install for 3.11 falls back to this checkout's version of it. Cached by its package set
under ~/.cache/lsap/ (a fresh clone's CI builds it once)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from lsap import REPO_ROOT
from lsap.operations import devpack

TORCH = "torch==2.13.0"  # the only torch this machine installs without a multi-GB CUDA download
TORCH_DEPS = ("sympy", "mpmath", "networkx", "filelock", "fsspec", "jinja2", "markupsafe", "typing-extensions")


def python() -> Path:
    machine = devpack.machine_packages(REPO_ROOT / "bench" / "device" / "h200-pip-list.txt")
    wanted = {n: v for n, v in devpack.machine_side(machine).items() if n not in devpack.NEVER}
    # torch is installed without its dependencies (below): the machine has them, beside its torch
    wanted.update({n: machine[n] for n in TORCH_DEPS if n in machine and n not in devpack.NEVER})
    key = hashlib.sha256(json.dumps([TORCH, sys.version_info[:2], wanted]).encode()).hexdigest()[:12]
    env = Path.home() / ".cache" / "lsap" / f"device-env-{key}"
    py = env / "bin" / "python"
    if (env / ".ready").exists():
        return py
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    pip = [str(py), "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run([*pip, TORCH], check=True)
    deviations = {"python": f"{sys.version_info.major}.{sys.version_info.minor} (machine: 3.12)",
                  "torch": f"{TORCH} cpu (machine: 2.11.0+cu130)"}
    pins = [f"{n}=={v}" for n, v in wanted.items()]
    if subprocess.run([*pip, *pins], capture_output=True).returncode != 0:
        for n, v in wanted.items():  # one by one: which pin cannot be installed here
            if subprocess.run([*pip, f"{n}=={v}"], capture_output=True).returncode != 0:
                import importlib.metadata as md

                ours = md.version(n)
                subprocess.run([*pip, f"{n}=={ours}"], check=True)
                deviations[n] = f"{ours} (machine: {v}, not installable for this Python)"
    # then what those packages need at the machine's versions (e.g. transformers 5.17's httpx,
    # which this checkout's transformers no longer uses): the machine's list as constraints
    constraints = env / "machine-constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in machine.items()
                                   if n not in deviations and n not in devpack.NEVER))
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-c", str(constraints), *[
        f"{n}=={v}" for n, v in wanted.items() if n not in deviations]], check=True)
    (env / "deviations.json").write_text(json.dumps(deviations, indent=2) + "\n")
    (env / ".ready").write_text("")
    return py
