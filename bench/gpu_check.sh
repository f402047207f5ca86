#!/usr/bin/env bash
# The GPU check, one part per call on a lent GPU machine (no registry, no hub), everything from the
# device pack (`make device-pack`; bench/NOTES.md gives the two calls and their price), under --out:
#   --part bench  (call 1) bench.json: the training loop's step at paper shapes (OLMo2-1B student,
#                 Qwen3-0.6B-shaped surrogate, seq 1024, batch 8, bf16, compiled) for CE, LSAP
#                 online/cached, KD and SALT in interleaved rounds; needs the Σ∩ tables only, no wheel;
#   --part sweep  (call 2) every student and its evaluation in one process (`python -m lsap sweep`,
#                 headline comparison first, no snakemake: the CPU stages came in the pack), the
#                 results as ONE archive, sweep.tar.gz, rewritten after each pair; sweep.json: each
#                 job's seconds. Tables and figures are rendered back here on CPU from the archive.
# gpu_check.json: the part's plan, status and seconds. The part's deadline is the draw's price of it
# (the pack's manifest; --seconds/--minutes override): a part whose price exceeds it is refused, the
# sweep starts no pair priced beyond the time left. What is left under --out is then held to what
# comes back from a call (≤ 8 files, ≤ 2 folders deep: lsap.operations.devpack check-return); a breach fails.
# --cpu-smoke: the same at CPU shapes, without CUDA (the rehearsal in `make test`).
#
# usage: bash bench/gpu_check.sh --out DIR --part bench|sweep [--pack DIR] [--cpu-smoke] [--minutes M | --seconds S]
# exit: 0 the part ran, 1 it failed, timed out or was refused, 2 bad arguments / no CUDA / bad pack
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"

OUT="" PART="" PACK="" SMOKE=0 SECONDS_LEFT=""
usage="usage: bash bench/gpu_check.sh --out DIR --part bench|sweep [--pack DIR] [--cpu-smoke] [--minutes M | --seconds S]"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="${2:-}"; shift 2 ;;
        --part) PART="${2:-}"; shift 2 ;;
        --pack) PACK="${2:-}"; shift 2 ;;
        --cpu-smoke) SMOKE=1; shift ;;
        --minutes) SECONDS_LEFT="$(( ${2:-0} * 60 ))"; shift 2 ;;
        --seconds) SECONDS_LEFT="${2:-}"; shift 2 ;;
        *) echo "gpu_check: unknown argument '$1' ($usage)" >&2; exit 2 ;;
    esac
done
if [ -z "$OUT" ]; then
    echo "gpu_check: --out DIR is required (where the JSON, tables and figures go)" >&2; exit 2
fi
case "$PART" in bench|sweep) ;; *) echo "gpu_check: --part must be bench or sweep ($usage)" >&2; exit 2 ;; esac
if ! mkdir -p "$OUT" 2>/dev/null || ! touch "$OUT/.writable" 2>/dev/null; then
    echo "gpu_check: --out '$OUT' is not a writable directory: pass a folder you can write to" >&2; exit 2
fi
rm -f "$OUT/.writable"
OUT="$(cd "$OUT" && pwd)"

manifest() {  # manifest KEY [SUBKEY]: a value of the pack's manifest (empty if absent)
    "$PY" -c "import json, pathlib, sys; m = json.loads(sorted(pathlib.Path(sys.argv[1]).glob('call*/manifest.json'))[0].read_text()); \
v = m.get(sys.argv[2]) if len(sys.argv) == 3 else (m.get(sys.argv[2]) or {}).get(sys.argv[3]); print('' if v is None else v)" "$PACK" "$@"
}
if [ -n "$PACK" ]; then  # the machine's own python3 plus what the pack brings
    PY="$(command -v python3)"
    # the bench: the Σ∩ tables alone; the sweep: the GGUF (its head came in call 1) and the rest
    UNPACK="bench"; [ "$PART" = sweep ] && UNPACK="surrogate sweep"
    for p in $UNPACK; do
        SITE="$(PYTHONPATH="$REPO/src" "$PY" -m lsap.operations.devpack unpack "$PACK" "$p" | tail -n 1)"
        [ -n "$SITE" ] || exit 2
    done
    export PYTHONPATH="$REPO/src:$SITE" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    export PATH="$SITE/bin:$PATH"
    CONFIG="$(manifest config)"
    [ -n "$SECONDS_LEFT" ] || SECONDS_LEFT="$(manifest draw "${PART}_s")"
else
    PY="${PYTHON:-.venv/bin/python}"
    [ -x "$PY" ] || PY="$(command -v python3)"
    CONFIG=config/gpu-small.yaml
fi
if [ "$SMOKE" = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device here: run it on a GPU machine, or pass --cpu-smoke for the CPU-shaped check" >&2
    exit 2
fi
if [ "$SMOKE" = 1 ]; then
    SHAPES=cpu DEVICE=cpu ITERS=1 ROUNDS=2 COMPILE="" CORES=2 TABLES=""
    SECONDS_LEFT="${SECONDS_LEFT:-600}"
    if [ -z "$PACK" ]; then
        CONFIG="$("$PY" -m lsap smoke --config config/gpu-small.yaml --out results/configs | sed -n 's/^\[smoke\] \(.*\.yaml\)$/\1/p')"
    fi
else
    read -r ITERS ROUNDS < <(PYTHONPATH="$REPO/src:${PYTHONPATH:-}" "$PY" -c "from lsap.operations import draw_price; print(draw_price.BENCH_ITERS, draw_price.BENCH_ROUNDS)")
    SHAPES=paper DEVICE=cuda COMPILE=--compile CORES="$(nproc)"
    SECONDS_LEFT="${SECONDS_LEFT:-540}"
    TABLES=""; [ -f .devpack-data/sigma-cl100k-qwen3.npz ] && TABLES="--tables .devpack-data/sigma-cl100k-qwen3.npz"
fi
DEADLINE=$(( $(date +%s) + SECONDS_LEFT ))
STATUS="$OUT/gpu_check.json"

record() {  # record NAME STATUS SECONDS PLANNED_SECONDS: gpu_check.json, rewritten atomically
    "$PY" - "$STATUS" "$@" "$SMOKE" <<'EOF'
import json, os, sys
path, name, status, seconds, planned, smoke = sys.argv[1:]
d = json.load(open(path)) if os.path.exists(path) else {"cpu_smoke": smoke == "1", "parts": {}}
d["parts"][name] = {"status": status, "seconds": int(seconds), "planned_s": int(planned)}
json.dump(d, open(path + ".tmp", "w"), indent=2)
os.replace(path + ".tmp", path)
EOF
}

part() {  # part NAME PLANNED_SECONDS CMD...: refused if its price exceeds the time left, else run under the limit
    local name="$1" planned="$2"; shift 2
    local t0 rc status left
    left=$(( DEADLINE - $(date +%s) ))
    echo "gpu_check: $name priced at $planned s, $left s left"
    if [ "$planned" -gt "$left" ]; then
        record "$name" refused 0 "$planned"
        echo "gpu_check: $name refused: priced at $planned s, only $left s left (pass --seconds, or run it in a call of its own)" >&2
        return 1
    fi
    t0=$(date +%s)
    timeout --signal=INT --kill-after=20 "$left" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
    record "$name" "$status" "$(( $(date +%s) - t0 ))" "$planned"
    echo "gpu_check: $name $status in $(( $(date +%s) - t0 )) s (log: $OUT/$name.log)"
    [ "$status" = ok ]
}

checked() {  # checked RC: what is under --out must come back (≤ 8 files, ≤ 2 folders deep); else fail
    PYTHONPATH="$REPO/src" "$PY" -m lsap.operations.devpack check-return "$OUT" || return 1
    return "$1"
}

if [ "$PART" = bench ]; then
    PLANNED="$("$PY" -c "from lsap.operations import bench; print(bench.price('$SHAPES', $ITERS, $ROUNDS))")" || exit 2
    part bench "$PLANNED" "$PY" -m lsap bench --shapes "$SHAPES" --device "$DEVICE" --iters "$ITERS" \
        --rounds "$ROUNDS" $COMPILE $TABLES --out "$OUT/bench.json"
    checked $?
    exit $?
fi

RUN="$("$PY" -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['run'])" "$CONFIG")"
if [ -z "$PACK" ]; then  # here, not from a pack: the data stages as DAG jobs first
    "$PY" -m snakemake --cores $CORES --configfile "$CONFIG" --omit-from student > "$OUT/stages.log" 2>&1 || {
        echo "gpu_check: the data stages failed (log: $OUT/stages.log)" >&2; exit 1; }
fi
# refused only if the headline's first pair and the surrogate's lines (kept back for the end) cannot
# run: the sweep itself starts no pair priced beyond the time left (LSAP_SWEEP_DEADLINE), so what fits
# runs, headline comparison first
PLANNED="$("$PY" -c "
from lsap import config
from lsap.operations import draw_price, sweep
cfg = config.load('$CONFIG')
print(round(draw_price.PROCESS_S + draw_price.SURROGATE_S + sweep.pair_prices(cfg)[0][1] + sweep.lines_reserve(cfg)))")" || exit 2
ARCHIVE="$OUT/sweep.tar.gz"
# (10 s kept after the sweep for its last archive, sweep.json and the check)
part sweep "$PLANNED" env LSAP_SWEEP_DEADLINE="$(( DEADLINE - 10 ))" LSAP_SWEEP_ARCHIVE="$ARCHIVE" \
    "$PY" -m lsap sweep --config "$CONFIG"
ok=$?
# the archive once more (a pair evaluated before this run, e.g. on a rerun, is in it too), and
# each job's wall-clock (the sweep writes Snakemake's benchmark files), whatever it got through
"$PY" -c "import sys; from lsap.operations import sweep_results; sweep_results.archive(sys.argv[1], sys.argv[2])" "$RUN" "$ARCHIVE" || ok=1
"$PY" - "results/$RUN/benchmarks" "$OUT/sweep.json" <<'EOF'
import csv, json, pathlib, sys
root = pathlib.Path(sys.argv[1])  # students' files sit in a subfolder: key by the path below root
rows = {str(p.relative_to(root).with_suffix("")): float(next(csv.DictReader(p.open(), delimiter="\t"))["s"])
        for p in sorted(root.rglob("*.tsv"))}
json.dump({"jobs": len(rows), "job_seconds": rows, "sum_s": sum(rows.values())}, open(sys.argv[2], "w"), indent=2)
EOF
checked $ok
exit $?
