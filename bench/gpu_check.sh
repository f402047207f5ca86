#!/usr/bin/env bash
# The one prepared GPU check (≤ 9 min wall on one H100/H200), everything written under --out:
#   (a) bench.json: `lsap bench --shapes paper --compile`: tokens/s, MFU against the measured bf16
#       matmul peak, peak memory of CE, LSAP online, LSAP cached, KD and SALT steps, LSAP/CE beside
#       the FLOPs bound 6N_b/(6N_b+2N_s);
#   (b) the gpu-small sweep through the DAG (config/gpu-small.yaml), its tables and figures under
#       paper_tables/ and figures/, each job's wall-clock in sweep.json;
#   gpu_check.json: the status and seconds of each part, rewritten as each one ends, so a run
#   stopped at its time limit leaves the JSON of every part that finished.
# --cpu-smoke runs the same code at CPU shapes (bench --shapes cpu; gpu-small through lsap.smoke)
# in about 6 minutes on 2 cores (bench/NOTES.md): part of `make test`.
#
# usage: bash bench/gpu_check.sh --out DIR [--cpu-smoke] [--minutes M]
# exit: 0 all parts ran, 1 a part failed or timed out, 2 bad arguments / no CUDA (before any work)
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="" SMOKE=0 MINUTES=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="${2:-}"; shift 2 ;;
        --cpu-smoke) SMOKE=1; shift ;;
        --minutes) MINUTES="${2:-}"; shift 2 ;;
        *) echo "gpu_check: unknown argument '$1' (usage: bash bench/gpu_check.sh --out DIR [--cpu-smoke] [--minutes M])" >&2; exit 2 ;;
    esac
done
if [ -z "$OUT" ]; then
    echo "gpu_check: --out DIR is required (where the JSON, tables and figures go)" >&2; exit 2
fi
if ! mkdir -p "$OUT" 2>/dev/null || ! touch "$OUT/.writable" 2>/dev/null; then
    echo "gpu_check: --out '$OUT' is not a writable directory: pass a folder you can write to" >&2; exit 2
fi
rm -f "$OUT/.writable"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
if [ "$SMOKE" = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device here: run it on a GPU machine, or pass --cpu-smoke for the CPU-shaped check" >&2
    exit 2
fi

if [ "$SMOKE" = 1 ]; then
    MINUTES="${MINUTES:-4}" SHAPES=cpu DEVICE=cpu ITERS=2 COMPILE="" CORES=2
else
    MINUTES="${MINUTES:-9}" SHAPES=paper DEVICE=cuda ITERS=10 COMPILE=--compile CORES="$(nproc)"
fi
DEADLINE=$(( $(date +%s) + MINUTES * 60 ))
BENCH_LIMIT=$(( MINUTES * 60 / 4 ))   # a quarter for (a), the rest for the sweep
STATUS="$OUT/gpu_check.json"

part() {  # part NAME LIMIT_SECONDS CMD...: run it under a time limit, record its status and seconds
    local name="$1" limit="$2"; shift 2
    local t0 rc status
    t0=$(date +%s)
    timeout --signal=INT --kill-after=20 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
    "$PY" - "$STATUS" "$name" "$status" "$(( $(date +%s) - t0 ))" "$limit" "$SMOKE" <<'EOF'
import json, os, sys
path, name, status, seconds, limit, smoke = sys.argv[1:]
d = json.load(open(path)) if os.path.exists(path) else {"cpu_smoke": smoke == "1", "parts": {}}
d["parts"][name] = {"status": status, "seconds": int(seconds), "limit_s": int(limit)}
tmp = path + ".tmp"
json.dump(d, open(tmp, "w"), indent=2)
os.replace(tmp, path)
EOF
    echo "gpu_check: $name $status in $(( $(date +%s) - t0 )) s (log: $OUT/$name.log)"
    [ "$status" = ok ]
}

rm -f "$STATUS"
ok=1
part bench "$BENCH_LIMIT" "$PY" -m lsap bench --shapes "$SHAPES" --device "$DEVICE" --iters "$ITERS" $COMPILE \
    --out "$OUT/bench.json" || ok=0

CONFIG=config/gpu-small.yaml
if [ "$SMOKE" = 1 ]; then
    CONFIG="$("$PY" -m lsap smoke --config config/gpu-small.yaml --out "$OUT" | sed -n 's/^\[smoke\] \(.*\.yaml\)$/\1/p')"
fi
RUN="$("$PY" -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['run'])" "$CONFIG")"
LEFT=$(( DEADLINE - $(date +%s) ))
part sweep "$(( LEFT > 60 ? LEFT : 60 ))" sh -c "'$PY' -m snakemake --cores $CORES --configfile '$CONFIG' && \
    '$PY' -m lsap report --config '$CONFIG' --tables '$OUT/paper_tables/$RUN' --figures '$OUT/figures/$RUN'" || ok=0
# each job's wall-clock (Snakemake's benchmark files), whatever the sweep got through
"$PY" - "results/$RUN/benchmarks" "$OUT/sweep.json" <<'EOF'
import csv, json, pathlib, sys
root = pathlib.Path(sys.argv[1])  # students' files sit in a subfolder: key by the path below root
rows = {str(p.relative_to(root).with_suffix("")): float(next(csv.DictReader(p.open(), delimiter="\t"))["s"])
        for p in sorted(root.rglob("*.tsv"))}
json.dump({"jobs": len(rows), "job_seconds": rows, "sum_s": sum(rows.values())}, open(sys.argv[2], "w"), indent=2)
EOF
[ "$ok" = 1 ] && exit 0 || exit 1
