"""The paper run's first day on a real cluster: what broke there, each reproduced on the CPU.

Gated Table-1 models under the hub snapshot (N1), a run-folder lock on filesystems without
flock or with a dead node's flock (N6), decisions ranks must take alike (N9), the hub check
behind a proxy (N7), single-GPU stages that would fall back to the CPU (S5), and partitions
whose preemption leaves a job PREEMPTED for ever (N10)."""

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from lsap import REPO_ROOT, models
from lsap.io import hub, snapshot
from lsap.report import analysis
from lsap.training import preemption, resume


# ---- N1: Table 1 without the gated licences ---------------------------------------------------
def test_table1_leaves_out_optional_models_the_snapshot_lacks_and_names_them(tiny_cfg, tmp_path):
    """A job under a real snapshot manifest (hub offline, as jobs run): an optional model the
    snapshot records as missing (gated) and one it does not hold at all are left out and named
    with their reasons; a required model it does not hold still stops the job, naming the id.
    Before the fix Table 1 caught only OSError, and the snapshot's SnapshotError ended the job."""
    gated, absent = "meta-llama/Llama-3.1-8B", "mistralai/Mistral-7B-v0.3"
    why = f"gated: accept its licence on https://huggingface.co/{gated} and log in (GatedRepoError)"
    manifest = tmp_path / "manifest.json"   # what snapshot.take writes: its entries, a missing one included
    manifest.write_text(json.dumps({"cache": str(tmp_path / "cache"), "bytes": 0,
                                    "entries": [{"kind": "model", "id": gated, "missing": why}]}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache"),
           snapshot.MANIFEST_ENV: str(manifest)}
    code = ("import json, sys; from lsap import config; from lsap.report import analysis; "
            "cfg = config.validate(json.loads(sys.argv[1])); "
            "r = analysis.table1(cfg, sys.argv[2], log=lambda *_: None); "
            "print(json.dumps({'missing': r['missing'], 'rows': analysis.table1_frame(r, cfg).model.tolist()}))")

    def run(table_models):
        cfg = {**tiny_cfg, "analysis": {**tiny_cfg["analysis"], "table1": {**tiny_cfg["analysis"]["table1"],
                                                                           "models": table_models}}}
        return subprocess.run([sys.executable, "-c", code, json.dumps(cfg), str(tmp_path)], capture_output=True,
                               text=True, env=env, timeout=300)

    proc = run([{"kind": "hub", "id": gated, "optional": True}, {"kind": "hub", "id": absent, "optional": True}])
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["missing"]["Llama-3.1-8B"] == {"id": gated, "reason": why}   # from the manifest, not tried
    assert out["missing"]["Mistral-7B-v0.3"]["id"] == absent
    assert "is not in the hub snapshot" in out["missing"]["Mistral-7B-v0.3"]["reason"]
    assert out["rows"][:2] == ["Llama-3.1-8B (not loaded)", "Mistral-7B-v0.3 (not loaded)"]
    proc = run([{"kind": "hub", "id": absent}])
    assert proc.returncode != 0 and f"{absent} is not in the hub snapshot" in proc.stderr


# ---- N6: the run folder's lock where flock is missing or held by a dead node -------------------
@pytest.fixture
def no_flock(monkeypatch):
    """flock as Lustre mounted without `-o flock` answers it (this machine's filesystem has flock)."""
    def flock(*_):
        raise OSError(errno.ENOSYS, "Function not implemented")
    monkeypatch.setattr(fcntl, "flock", flock)


def _holder(out: Path, *, no_flock: bool):
    """A real second process holding the lock on `out` (without flock, like the test's own)."""
    code = ("import errno, fcntl, sys, time; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
            + ("fcntl.flock = lambda *_: (_ for _ in ()).throw(OSError(errno.ENOSYS, 'no flock')); " if no_flock else "")
            + "from lsap.training import resume; l = resume.lock_run_folder(Path(sys.argv[2]), log=lambda *_: None); "
              "print('held', flush=True); time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code, str(REPO_ROOT / "src"), str(out)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_without_flock_a_lock_file_holds_the_folder_and_a_dead_holders_is_taken_over(no_flock, tmp_path):
    """flock raising ENOSYS (Lustre without flock): the lock is an O_EXCL file naming host, pid
    and Slurm job; a live holder stops the second trainer by name; once the holder is killed -9
    (same host, pid gone) the next trainer takes it over. Before the fix ENOSYS ended every
    training job (only BlockingIOError was caught)."""
    out, logged = tmp_path / "run", []
    holder = _holder(out, no_flock=True)
    try:
        rec = json.loads((out / ".trainer.lock.excl").read_text())
        assert (rec["host"], rec["pid"]) == (socket.gethostname(), holder.pid)
        named = rf"another trainer \(pid {holder.pid}\) is training into .* \(host {socket.gethostname()}"
        with pytest.raises(resume.TrainingError, match=named):
            resume.lock_run_folder(out, log=logged.append)
    finally:
        holder.kill()
        holder.wait()
    lock = resume.lock_run_folder(out, log=logged.append)
    assert any("no flock on this filesystem (ENOSYS)" in m for m in logged)
    assert any(f"pid {holder.pid} has ended" in m for m in logged)
    assert json.loads((out / ".trainer.lock.excl").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (out / ".trainer.lock.excl").exists()


def test_another_hosts_lock_file_is_taken_over_only_without_a_heartbeat(no_flock, tmp_path, monkeypatch):
    """A lock file of another host: refused while its heartbeat is fresh (naming host and Slurm
    job), taken over once it is older than STALE_S (a lost node), or when it names this very
    Slurm job (an earlier incarnation of a requeued job). A holder's heartbeat keeps its lock fresh."""
    out = tmp_path / "run"
    out.mkdir()
    path = out / ".trainer.lock.excl"
    other = {"host": "node-17", "pid": 4242, "started": None, "job": "9001", "token": "x"}
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    # where no squeue can say whether job 9001 runs (where one can, and Slurm does not know it, it
    # has ended: the lock is taken, as it should be; the local Slurm of tests/e2e may be up here)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    path.write_text(json.dumps(other))
    with pytest.raises(resume.TrainingError, match=r"\(pid 4242\) .*\(host node-17, Slurm job 9001: `scancel 9001`\)"):
        resume.lock_run_folder(out, log=lambda *_: None)
    old = time.time() - resume.STALE_S - 5
    os.utime(path, (old, old))
    logged = []
    resume.lock_run_folder(out, log=logged.append).release()
    assert any("no heartbeat for" in m for m in logged)

    path.write_text(json.dumps(other))
    monkeypatch.setenv("SLURM_JOB_ID", "9001")
    logged.clear()
    lock = resume.lock_run_folder(out, log=logged.append)
    assert any("requeued" in m for m in logged)

    monkeypatch.setattr(resume, "HEARTBEAT_S", 0.05)
    lock.release()
    lock = resume.lock_run_folder(out, log=lambda *_: None)
    os.utime(path, (old, old))
    time.sleep(0.5)
    assert time.time() - path.stat().st_mtime < 5   # stamped by the holder's heartbeat
    lock.release()


def test_a_flock_kept_for_a_dead_node_is_taken_over(tmp_path):
    """NFSv3 keeps the flock of a node that died: every later trainer found the folder locked for
    ever. A real flock held elsewhere (another open file) whose record names another host with
    no heartbeat for STALE_S is taken over with the O_EXCL lock file; with a fresh heartbeat it
    is refused. Before the fix the lock could never be taken again."""
    out = tmp_path / "run"
    out.mkdir()
    path = out / ".trainer.lock"
    path.write_text(json.dumps({"host": "node-dead", "pid": 7, "started": None, "job": None, "token": "y"}))
    kept = open(path)   # the flock the dead node's holder left
    fcntl.flock(kept, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(resume.TrainingError, match=r"another trainer \(pid 7\) .*\(host node-dead\)"):
            resume.lock_run_folder(out, log=lambda *_: None)
        old = time.time() - resume.STALE_S - 5
        os.utime(path, (old, old))
        logged = []
        lock = resume.lock_run_folder(out, log=logged.append)
        assert any("flock'ed by a holder that is gone (no heartbeat" in m for m in logged)
        assert json.loads((out / ".trainer.lock.excl").read_text())["pid"] == os.getpid()
        lock.release()
    finally:
        kept.close()


# ---- N9: decisions every rank takes alike -----------------------------------------------------
def test_loading_two_damaged_generations_stops_instead_of_recursing(tmp_path):
    """previous(previous(p)) == previous(p): with both generations damaged (or none there),
    the old `load` recursed until RecursionError. Now a TrainingError names both files."""
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(resume.TrainingError, match="no resume state"):
        resume.load(resume.resume_path(out), "cpu")
    for p in (resume.resume_path(out), resume.previous(resume.resume_path(out))):
        p.write_bytes(b"not a torch file")
    with pytest.raises(resume.TrainingError, match=r"resume.pt is damaged .*resume.prev.pt: .*Delete it"):
        resume.load(resume.resume_path(out), "cpu", log=lambda *_: None)


def _ranks(rank: int, root: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{root}/pg", rank=rank, world_size=2)
    try:
        # rank 1 looks at a folder with no state, as if rank 0 had moved it already
        out = Path(root) / ("run" if rank == 0 else "elsewhere")
        state = resume.start_state(out, "new", torch.device("cpu"), rank, log=lambda *_: None)
        timed = resume.from_rank0(rank == 0, "cpu")   # only rank 0's squeue answered
        Path(root, f"rank{rank}.json").write_text(json.dumps({"state": state, "timed": timed}))
    finally:
        torch.distributed.destroy_process_group()


def test_ranks_follow_rank_zeros_decisions_over_a_real_process_group(tmp_path):
    """Two gloo ranks: rank 0 finds a resume state of another setup and moves it aside; rank 1,
    whose own look finds nothing, follows rank 0's decision (the barrier both reach) instead of its
    own; whether the clock decides saves is rank 0's answer on both. Before the fix each rank
    decided from its own view and the ranks took different branches around a collective."""
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"key": "old", "step": 3}, resume.resume_path(run))
    torch.multiprocessing.spawn(_ranks, args=(str(tmp_path),), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert got == [{"state": None, "timed": 1}] * 2
    assert resume.resume_path(tmp_path / ".run.stale").exists() and not resume.exists(run)


def test_one_process_resumes_its_own_state_and_needs_no_group(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"key": "k", "step": 3}, resume.resume_path(run))
    assert resume.start_state(run, "k", "cpu", 0)["step"] == 3
    assert resume.from_rank0(True, "cpu") == 1


# ---- N7: the hub check behind a proxy ---------------------------------------------------------
@pytest.fixture
def proxy_env(monkeypatch):
    """A clean proxy environment and a fresh huggingface_hub client (it reads the proxies once)."""
    from huggingface_hub.utils import close_session

    for k in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "all_proxy",
              "no_proxy", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(k, raising=False)
    close_session()
    hub.reachable.cache_clear()
    yield monkeypatch
    close_session()
    hub.reachable.cache_clear()


def _listener(answer: bytes):
    """A real TCP listener on localhost answering each connection's request head with `answer`."""
    srv = socket.create_server(("127.0.0.1", 0))
    heads = []

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(4096)):
                    data += chunk
                heads.append(data.decode(errors="replace"))
                conn.sendall(answer)
    threading.Thread(target=serve, daemon=True).start()
    return srv, heads


def test_the_hub_check_goes_through_the_proxy(proxy_env):
    """HTTPS_PROXY set: the check asks the proxy to CONNECT to the hub (a raw socket went
    straight to huggingface.co:443, which a cluster without direct egress refuses); through an
    HTTP proxy that answers, a hub host this machine cannot resolve is reachable; NO_PROXY sends
    a listed host around the proxy. Before the fix the proxy saw nothing and the run was refused."""
    srv, heads = _listener(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    with srv:
        proxy_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{srv.getsockname()[1]}")
        hub.reachable(timeout=5)
        assert heads and heads[0].startswith("CONNECT huggingface.co:443 ")
    srv, heads = _listener(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    with srv:
        proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{srv.getsockname()[1]}")
        proxy_env.setenv("HF_ENDPOINT", "http://hub.invalid")
        from huggingface_hub.utils import close_session
        close_session()
        hub.reachable.cache_clear()
        assert hub.reachable(timeout=5) and heads[0].startswith("HEAD http://hub.invalid")
        # the hub on a host NO_PROXY lists: straight there, the (dead) proxy unused
        proxy_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{srv.getsockname()[1]}")
        proxy_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        proxy_env.setenv("NO_PROXY", "127.0.0.1")
        close_session()
        hub.reachable.cache_clear()
        assert hub.reachable(timeout=5) and heads[-1].startswith("HEAD / ")


# ---- S5: single-GPU stages refuse to run on the CPU -------------------------------------------
def test_select_and_table1_stop_when_their_gpu_is_not_seen(tiny_cfg, monkeypatch):
    """A job the config gives a GPU (Slurm placed it with CUDA_VISIBLE_DEVICES=0) whose CUDA build
    of torch sees none stops at once, naming the stage; this machine's CPU-only build (the local
    Slurm's fake GPUs) and compute.gpus 0 go on. Before the fix select and table1 never asked
    and ran on the CPU inside the GPU allocation."""
    from lsap.stages.select import select_job

    gpu_cfg = {**tiny_cfg, "compute": {**tiny_cfg["compute"], "gpus": 1}}
    models.require_gpu(gpu_cfg, "select")   # CPU build: a deliberate CPU run
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    models.require_gpu(tiny_cfg, "select")   # compute.gpus 0
    with pytest.raises(models.DeviceError, match=r"select: compute.gpus is 1 .* sees 0 CUDA device.*VISIBLE_DEVICES=0"):
        select_job(gpu_cfg, "miniplm", None, None, None, 0)
    with pytest.raises(models.DeviceError, match=r"table1: compute.gpus is 1 .* sees 0 CUDA device"):
        analysis.table1(gpu_cfg, None)


# ---- N10: preemption that Snakemake would wait on for ever ------------------------------------
CONFIG = "PreemptMode             = OFF\nPreemptType             = preempt/partition_prio\nJobRequeue              = 0\n"
PARTITION = "PartitionName=gpu\n   AllowGroups=ALL Default=NO\n   PreemptMode={} PriorityTier=1 State=UP\n"


@pytest.mark.parametrize("mode, requeue, bad", [("CANCEL", True, True), ("OFF", True, False), ("REQUEUE", True, False),
                                                ("REQUEUE", False, True), ("GANG,SUSPEND", False, False)])
def test_partitions_whose_preemption_cancels_are_named(mode, requeue, bad):
    why = preemption.problem("gpu", PARTITION.format(mode), CONFIG, requeue)
    assert bool(why) == bad and (not bad or "partition gpu has PreemptMode=" in why)
    assert preemption.problem("gpu", PARTITION.format("CANCEL"), "PreemptType = preempt/none\n", True) is None


def test_the_start_check_asks_scontrol_about_the_profiles_partitions(tmp_path, monkeypatch):
    """The shipped profile submits to `cpu` and `gpu` with --requeue. With an scontrol that says
    `gpu` cancels preempted jobs the run is refused before any job, naming the partition and
    the fix; where preemption requeues, it starts."""
    import yaml

    profile = yaml.safe_load(preemption.PROFILE.read_text())
    assert preemption.partitions(profile) == ["cpu", "gpu"] and profile["slurm-requeue"] is True
    for mode, refused in (("CANCEL", True), ("REQUEUE", False)):
        scontrol = tmp_path / f"scontrol-{mode}"   # a stand-in for Slurm's own: its output format
        scontrol.write_text("#!/bin/sh\nif [ \"$2\" = config ]; then printf '%s' \"$CONFIG\"; "
                            "else printf '%s' \"$PARTITION\" | sed \"s/=gpu/=$3/\"; fi\n")
        scontrol.chmod(0o755)
        monkeypatch.setenv("CONFIG", CONFIG)
        monkeypatch.setenv("PARTITION", PARTITION.format(mode))
        if refused:
            with pytest.raises(RuntimeError, match=r"partition cpu has PreemptMode=CANCEL.*PREEMPTED as running"):
                preemption.check(scontrol=str(scontrol))
        else:
            preemption.check(scontrol=str(scontrol))
