"""`lsap pin` (item 7): every hub id of a config resolved to a commit in a lock file that later runs
verify, like a package lock. No hub here: hub ids resolve through an injected resolver (the
function `pin` calls instead of huggingface_hub's repo_info), and local stand-in folders that are
real git repositories pin to their HEAD, read by git itself. Before the fix there was no `pin`
and no lock: every test here failed (no lsap.io.pin)."""

import copy
import subprocess
import sys

import pytest

from lsap import REPO_ROOT, config, keys
from lsap.io import pin, snapshot

COMMITS = {"Qwen/Qwen3-0.6B": "a" * 40, "allenai/OLMo-2-0425-1B": "b" * 40}


def resolver(repo, kind, revision):
    return COMMITS.get(repo) or ("c" * 40 if kind == "dataset" else "d" * 40)


def _git_folder(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    run = lambda *a: subprocess.run(["git", "-C", str(path), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "x", "--allow-empty")
    run("add", "-A")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "stand-in")
    return path


@pytest.fixture
def cfg(tmp_path):
    """paper.yaml with its Table-1 Llama a local git mirror (a stand-in folder)."""
    c = copy.deepcopy(config.load(REPO_ROOT / "config" / "paper.yaml"))
    c["analysis"]["table1"]["models"][1]["id"] = str(_git_folder(tmp_path / "llama-mirror"))
    return c


def test_pin_writes_every_hub_id_and_a_run_reads_exactly_the_lock(cfg, tmp_path):
    lock = pin.write(cfg, "config/paper.yaml", tmp_path / "paper.lock.yaml", resolver=resolver)
    pins = {p["id"]: p for p in pin.read(lock)["pins"]}
    assert pins["Qwen/Qwen3-0.6B"]["commit"] == "a" * 40 and pins["cerebras/SlimPajama-627B"]["type"] == "dataset"
    head = subprocess.run(["git", "-C", cfg["analysis"]["table1"]["models"][1]["id"], "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert pins[cfg["analysis"]["table1"]["models"][1]["id"]]["commit"] == head
    got = pin.verify(cfg, lock)
    # what the snapshot downloads: the locked commit of each hub id (a folder is read as it is)
    assert got[pin.pin_key("tokenizers.student", "allenai/OLMo-2-0425-1B", {})] == "b" * 40
    assert got[pin.pin_key("corpus.domains.openwebtext", "Skylion007/openwebtext",
                           {"revision": "refs/convert/parquet"})] == "c" * 40
    assert len(got) == len(pins) - 1   # every hub id; the local folder is checked, not downloaded


def test_a_config_that_differs_from_its_lock_is_refused_naming_the_id_and_the_fix(cfg, tmp_path):
    lock = pin.write(cfg, "config/paper.yaml", tmp_path / "paper.lock.yaml", resolver=resolver)
    moved = copy.deepcopy(cfg)
    moved["students"]["teachers"]["miniplm_teacher"]["revision"] = "stage1-step1000"
    with pytest.raises(pin.PinError, match=r"allenai/OLMo-2-1124-7B at revision stage1-step1000 is not in the "
                                           r"lock.*pinned revision head.*lsap pin --config"):
        pin.verify(moved, lock)
    added = copy.deepcopy(cfg)
    added["tokenizers"]["surrogate"]["id"] = "Qwen/Qwen3-1.7B"
    with pytest.raises(pin.PinError, match="Qwen/Qwen3-1.7B at revision head is not in the lock"):
        pin.verify(added, lock)
    # the stand-in mirror moved on after the pin
    folder = cfg["analysis"]["table1"]["models"][1]["id"]
    subprocess.run(["git", "-C", folder, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "y",
                    "--allow-empty"], check=True)
    with pytest.raises(pin.PinError, match=r"llama-mirror is at [0-9a-f]{40}, the lock .* pinned [0-9a-f]{40}: check"):
        pin.verify(cfg, lock)


def test_the_snapshot_refuses_before_any_download_and_its_key_follows_the_lock(cfg, tmp_path, monkeypatch):
    """The hub_snapshot job verifies the lock first; a re-pin to other commits changes its key (the
    snapshot reruns), rewriting the same commits does not."""
    lock = tmp_path / "paper.lock.yaml"
    monkeypatch.setattr(pin, "lock_path", lambda c: lock)
    no_lock = keys.key(cfg, "hub_snapshot")
    pin.write(cfg, "config/paper.yaml", lock, resolver=resolver)
    pinned = keys.key(cfg, "hub_snapshot")
    pin.write(cfg, "config/paper.yaml", lock, resolver=resolver)
    assert keys.key(cfg, "hub_snapshot") == pinned != no_lock
    pin.write(cfg, "config/paper.yaml", lock, resolver=lambda r, k, v: "e" * 40)
    assert keys.key(cfg, "hub_snapshot") != pinned
    bad = copy.deepcopy(cfg)
    bad["corpus"]["domains"]["c4"]["sources"][0]["revision"] = "main"
    with pytest.raises(pin.PinError, match="allenai/c4 at revision main is not in the lock"):
        snapshot.take(bad, tmp_path / "manifest.json")
    assert not (tmp_path / "manifest.json").exists()


def test_pin_from_the_command_line_and_a_bad_resolve_names_the_id(tmp_path):
    """`python -m lsap pin` on a config of local folders only (no hub needed): the lock lists them;
    a hub id that cannot be resolved names itself and where to run pin."""
    folder = _git_folder(tmp_path / "qwen-mirror")
    c = config.load(REPO_ROOT / "config" / "tiny.yaml")
    c["run"] = "pin-test"
    c["students"]["teachers"]["surrogate"] = {"kind": "hub", "id": str(folder)}
    cfg_path = tmp_path / "c.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump(c, sort_keys=False))
    out = tmp_path / "pin-test.lock.yaml"
    proc = subprocess.run([sys.executable, "-m", "lsap", "pin", "--config", str(cfg_path), "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [p["id"] for p in pin.read(out)["pins"]] == [str(folder)] and "commit it" in proc.stdout

    def offline(repo, kind, revision):
        raise OSError("no hub here")

    with pytest.raises(pin.PinError, match=r"slimpajama: cannot resolve cerebras/SlimPajama-627B.*where the hub"):
        pin.resolve(config.load(REPO_ROOT / "config" / "paper.yaml"), resolver=offline)
