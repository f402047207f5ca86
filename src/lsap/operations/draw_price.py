"""The GPU draw priced with everything it does (bench/NOTES.md, "The GPU check"): start-up,
transfers, unpacking, installing, the bench, and as many sweep pairs as the rest of the draw holds,
headline first; checked against the machine's limits (lsap.operations.device_limits)."""

from __future__ import annotations

from lsap.operations.device_limits import DRAW_SECONDS, check_draw

START_S = 120.0    # a machine's start: 1-2 minutes, priced at 2
TRANSFER_S = 10.0  # one call's ≤ 64 MiB each way
UNPACK_S = 10.0    # sha256 of every chunk, reassembly, extraction (call 2's ≈ 115 MiB)
UNPACK_BENCH_S = 2.0  # call 1's: the Σ∩ tables alone (≈ 1.5 MiB)
INSTALL_S = 30.0   # pip --no-index --target of the sweep's wheels
PROCESS_S = 15.0   # python, torch, CUDA, transformers in the sweep's process (forecast.JOB_START_S)
SURROGATE_S = 25.0  # the GGUF de-quantised once (lsap.io.gguf_cache: 22 s of CPU on the rehearsal machine)
GAP_S = 30.0       # the machine warm between the calls: issue call 2 at once (it is dropped after 30 s)
TAIL_S = 5.0       # give_back right after call 2
BENCH_ITERS, BENCH_ROUNDS = 4, 2  # (8 x 4 in the H200 runs: rounds moved the ratios < 0.01)


def price_draw(config_path: str) -> dict:
    """The draw priced with everything it does: {"calls": [{"call", "seconds", "items"}], "total",
    "pairs": the (method, seed) the sweep's budget holds, "bench_s", "sweep_s": each part's
    deadline}. The sweep gets what DRAW_SECONDS leaves, pairs in the order they run (headline
    first); checked with `check_draw`."""
    from lsap import config
    from lsap.operations import bench, sweep

    cfg = config.load(config_path)
    bench_s = float(bench.price("paper", BENCH_ITERS, BENCH_ROUNDS))
    call1 = {"start-up": START_S, "transfer": TRANSFER_S, "unpack": UNPACK_BENCH_S, "bench": bench_s}
    fixed2 = {"idle before": GAP_S, "transfer": TRANSFER_S, "unpack": UNPACK_S, "install": INSTALL_S,
              "process start": PROCESS_S, "surrogate load": SURROGATE_S}
    lines = sweep.lines_price(cfg)  # run after the pairs, its price kept back from them
    left = DRAW_SECONDS - sum(call1.values()) - sum(fixed2.values()) - lines - TAIL_S
    pairs, used = [], 0.0
    for pair, seconds in sweep.pair_prices(cfg):
        if used + seconds > left:
            break
        pairs.append(pair)
        used += seconds
    n = len(cfg["students"]["methods"]) * len(cfg["students"]["seeds"])
    call2 = {**fixed2, f"students and evaluations ({len(pairs)} of {n} pairs)": used,
             **({"the surrogate's lines": lines} if lines else {}), "idle after": TAIL_S}
    calls = [{"call": 1, "seconds": sum(call1.values()), "items": call1},
             {"call": 2, "seconds": sum(call2.values()), "items": call2}]
    return {"calls": calls, "total": check_draw(calls), "pairs": [f"{m}-s{s}" for m, s in pairs],
            "bench_s": round(bench_s + UNPACK_BENCH_S),
            "sweep_s": round(UNPACK_S + INSTALL_S + PROCESS_S + SURROGATE_S + used + lines)}
