#!/usr/bin/env bash
# The GPU check, one part per call on a lent GPU machine (no registry, no hub), everything from the
# device pack (`make device-pack`; bench/NOTES.md gives the call sequence), written under --out:
#   --part bench  bench.json: the training loop's step at paper shapes (OLMo2-1B student,
#                 Qwen3-0.6B-shaped surrogate, seq 1024, batch 8, bf16, compiled) for CE, LSAP
#                 online/cached, KD and SALT in interleaved rounds: tokens/s, MFU against the
#                 measured bf16 matmul peak, peak memory, host time per step, ratios to CE;
#   --part sweep  the config's GPU jobs through the DAG (its CPU stages came in the pack), then
#                 its tables and figures under OUT/paper_tables, OUT/figures; sweep.json: each
#                 job's seconds.
# gpu_check.json: each part's plan, status and seconds, rewritten as each ends. A part whose price
# (bench: seconds at the measured step times; sweep: `lsap plan` at compute.mfu plus start-up per
# job) exceeds the minutes left is refused, not started.
# --cpu-smoke: the same at CPU shapes, without CUDA (the rehearsal in `make test`).
#
# usage: bash bench/gpu_check.sh --out DIR --part bench|sweep [--pack DIR] [--cpu-smoke] [--minutes M]
# exit: 0 the part ran, 1 it failed, timed out or was refused, 2 bad arguments / no CUDA / bad pack
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"

OUT="" PART="" PACK="" SMOKE=0 MINUTES=""
usage="usage: bash bench/gpu_check.sh --out DIR --part bench|sweep [--pack DIR] [--cpu-smoke] [--minutes M]"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="${2:-}"; shift 2 ;;
        --part) PART="${2:-}"; shift 2 ;;
        --pack) PACK="${2:-}"; shift 2 ;;
        --cpu-smoke) SMOKE=1; shift ;;
        --minutes) MINUTES="${2:-}"; shift 2 ;;
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

if [ -n "$PACK" ]; then  # the machine's own python3 plus what the pack brings
    PY="$(command -v python3)"
    SITE="$(PYTHONPATH="$REPO/src" "$PY" -m lsap.devpack unpack "$PACK" "$PART")" || exit 2
    export PYTHONPATH="$REPO/src:$SITE" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    export PATH="$SITE/bin:$PATH"
    CONFIG="$("$PY" -c "import json, pathlib, sys; print(json.loads(sorted(pathlib.Path(sys.argv[1]).glob('call*/manifest.json'))[0].read_text())['config'])" "$PACK")"
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
    MINUTES="${MINUTES:-10}"
    if [ -z "$PACK" ]; then
        CONFIG="$("$PY" -m lsap smoke --config config/gpu-small.yaml --out results/configs | sed -n 's/^\[smoke\] \(.*\.yaml\)$/\1/p')"
    fi
else
    SHAPES=paper DEVICE=cuda ITERS=8 ROUNDS=4 COMPILE=--compile CORES="$(nproc)"
    MINUTES="${MINUTES:-9}"
    TABLES=""; [ -f .devpack-data/sigma-cl100k-qwen3.npz ] && TABLES="--tables .devpack-data/sigma-cl100k-qwen3.npz"
fi
DEADLINE=$(( $(date +%s) + MINUTES * 60 ))
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
        echo "gpu_check: $name refused: priced at $planned s, only $left s left (pass --minutes, or run it in a call of its own)" >&2
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

if [ "$PART" = bench ]; then
    PLANNED="$("$PY" -c "from lsap import bench; print(bench.price('$SHAPES', $ITERS, $ROUNDS))")" || exit 2
    part bench "$PLANNED" "$PY" -m lsap bench --shapes "$SHAPES" --device "$DEVICE" --iters "$ITERS" \
        --rounds "$ROUNDS" $COMPILE $TABLES --out "$OUT/bench.json"
    exit $?
fi

RUN="$("$PY" -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['run'])" "$CONFIG")"
PLANNED="$("$PY" -c "from lsap import forecast; print(forecast.sweep_seconds('$CONFIG', '$DEVICE'))")" || exit 2
# few processes: the data stages as DAG jobs, then every student and its evaluation in one process
# (lsap sweep: the headline comparison first, so a sweep cut short by the time limit still answers
# the question it was run for), then the report from the finished files
part sweep "$PLANNED" sh -c "'$PY' -m snakemake --cores $CORES --configfile '$CONFIG' --omit-from student && \
    '$PY' -m lsap sweep --config '$CONFIG' && \
    '$PY' -m snakemake --cores $CORES --configfile '$CONFIG' --omit-from notebook && \
    '$PY' -m lsap report --config '$CONFIG' --tables '$OUT/paper_tables/$RUN' --figures '$OUT/figures/$RUN'"
ok=$?
# each job's wall-clock (Snakemake's benchmark files), whatever the sweep got through
"$PY" - "results/$RUN/benchmarks" "$OUT/sweep.json" <<'EOF'
import csv, json, pathlib, sys
root = pathlib.Path(sys.argv[1])  # students' files sit in a subfolder: key by the path below root
rows = {str(p.relative_to(root).with_suffix("")): float(next(csv.DictReader(p.open(), delimiter="\t"))["s"])
        for p in sorted(root.rglob("*.tsv"))}
json.dump({"jobs": len(rows), "job_seconds": rows, "sum_s": sum(rows.values())}, open(sys.argv[2], "w"), indent=2)
EOF
exit $ok
