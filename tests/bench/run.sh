#!/usr/bin/env bash
# Run every ewc-train benchmark (throughput vs roofline, EWC overhead, Fisher cost, exact vs
# allreduce) and the PyTorch baseline side by side, then print one summary table.
# Usage: tests/bench/run.sh   (environment: see "settings" below and tests/bench/README.md)
set -euo pipefail

# ---- settings (environment) --------------------------------------------------------------------
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-/tmp/build-bench}          # build directory (configured and built if needed)
OUT=${OUT:-/tmp/ewc-bench-$(date +%Y%m%d-%H%M%S)} # where the JSON and logs go
ROUNDS=${ROUNDS:-3}   # rounds of (ours, torch) per shape, interleaved; the best round counts
REPS=${REPS:-5}       # interleaved repetitions inside each of our benchmark runs
CLOCK=${CLOCK:-cpu}   # clock of every figure: cpu (process CPU time; robust against other
                      # jobs on a shared machine, which make wall time 1.5x longer) or wall
DATA=${DATA:-}        # dataset directory (default: MNIST if present, else fashion-mnist)
PY=${PY:-/usr/bin/python3} # a python3 with torch (for the baseline; the summary needs none)
SHAPES=${SHAPES:-"400,400 1000,1000"}
BATCHES=${BATCHES:-"100 1000"}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
[ -x "$PY" ] || PY=python3
[ -z "$DATA" ] && [ -n "${EWC_MNIST_DIR:-}" ] && DATA=$EWC_MNIST_DIR
[ -z "$DATA" ] && [ -d "$SRC/data/mnist" ] && DATA=$SRC/data/mnist
data_flag=()
[ -n "$DATA" ] && data_flag=(--data "$DATA")

# ---- build -------------------------------------------------------------------------------------
if [ ! -x "$BUILD/bench_train" ] || [ ! -x "$BUILD/bench_ewc" ] || [ ! -x "$BUILD/bench_importance" ] ||
   [ -n "$(find "$SRC/src" "$SRC/include" "$SRC/tests/bench" -newer "$BUILD/bench_ewc" \
           \( -name '*.c' -o -name '*.h' \) 2>/dev/null | head -n 1)" ]; then
    echo "== building in $BUILD"
    cmake -S "$SRC" -B "$BUILD" > /dev/null
    cmake --build "$BUILD" -j2 --target bench_train bench_ewc bench_importance > /dev/null
fi
mkdir -p "$OUT"
echo "== results in $OUT (load average $(cut -d' ' -f1-3 /proc/loadavg))"

# ---- 1 rank: ours and torch, shape by shape, interleaved rounds ----------------------------------
for r in $(seq 1 "$ROUNDS"); do
    for h in $SHAPES; do
        for b in $BATCHES; do
            tag="${h/,/-}_b${b}_r${r}"
            echo "== round $r/$ROUNDS: 784-${h/,/-}-10 batch $b: ours, then torch"
            mpirun -np 1 "$BUILD/bench_train" "${data_flag[@]}" --hidden "$h" --batch "$b" \
                --reps "$REPS" --clock "$CLOCK" --json "$OUT/train_np1_$tag.json" |
                tee "$OUT/train_np1_$tag.txt" | tail -n 3 | head -n 1
            # torch_mlp.py times with time.perf_counter; under CLOCK=cpu it runs with that
            # clock swapped for the process CPU time, so ours/torch compares the same clock
            "$PY" -c 'import sys, time
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "cpu":
    time.perf_counter = time.process_time
import torch_mlp
sys.exit(torch_mlp.main(sys.argv[3:]))' "$SRC/tests/bench" "$CLOCK" --hidden "$h" --batch "$b" \
                --threads 1 --json > "$OUT/torch_$tag.json"
            "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1]));
print("torch %.0f samples/s, %.3f ms/step" % (d["samples_per_s"], d["step_ms"]))' \
                "$OUT/torch_$tag.json"
        done
    done
done

# ---- 2 ranks: exact vs allreduce -------------------------------------------------------------
echo "== 2 ranks: exact vs allreduce"
mpirun -np 2 "$BUILD/bench_train" "${data_flag[@]}" --reduce both --reps "$REPS" \
    --clock "$CLOCK" --json "$OUT/train_np2.json" | tee "$OUT/train_np2.txt"

# ---- EWC step overhead and Fisher cost -----------------------------------------------------------
echo "== EWC step and Fisher"
mpirun -np 1 "$BUILD/bench_ewc" "${data_flag[@]}" --reps "$REPS" --fisher-reps "$REPS" \
    --clock "$CLOCK" --json "$OUT/ewc.json" | tee "$OUT/ewc.txt"

# ---- SI step overhead and MAS importance cost ---------------------------------------------------
echo "== SI step and MAS importance"
mpirun -np 1 "$BUILD/bench_importance" "${data_flag[@]}" --reps "$REPS" --importance-reps "$REPS" \
    --clock "$CLOCK" --json "$OUT/importance.json" | tee "$OUT/importance.txt"

# ---- summary (stdlib python only) --------------------------------------------------------------
python3 - "$OUT" "$ROUNDS" "$CLOCK" <<'EOF' | tee "$OUT/summary.txt"
import glob, json, os, sys

out, rounds, clock = sys.argv[1], int(sys.argv[2]), sys.argv[3]
load = lambda p: json.load(open(p))
loads = [float(x) for p in glob.glob(os.path.join(out, "*.json"))
         for x in load(p).get("loadavg", [])]
print("\n==== summary (%s) ====" % out)
if loads:
    print("1-minute load average during our runs: %.2f .. %.2f (2 cores; > 1 means other jobs)"
          % (min(loads), max(loads)))
print("1 rank, 1 BLAS thread, %s clock. ours vs torch: best samples/s over %d interleaved rounds;"
      "\nroofline: SGEMM-only time / step time in the round where ours was best." % (clock, rounds))
print("\n%-17s %5s %10s %10s %11s %9s" % ("model", "batch", "ours s/s", "torch s/s", "ours/torch",
                                          "roofline"))
cases = {}
for p in sorted(glob.glob(os.path.join(out, "train_np1_*.json"))):
    d = load(p)
    for c in d["cases"]:
        key = (tuple(c["hidden"]), c["batch"])
        wall = min(c["exact"][clock + "_step_ms"]) / 1e3
        best = cases.get(key)
        if best is None or wall < best["wall"]:
            cases[key] = {"wall": wall, "frac": c["roofline_fraction"], "torch": 0.0}
for p in glob.glob(os.path.join(out, "torch_*.json")):
    d = load(p)
    key = (tuple(d["hidden"]), d["batch"])
    if key in cases:
        cases[key]["torch"] = max(cases[key]["torch"], d["samples_per_s"])
for (h, b), c in sorted(cases.items()):
    ours = b / c["wall"]
    name = "784-" + "-".join(map(str, h)) + "-10"
    ratio = "%11.2f" % (ours / c["torch"]) if c["torch"] else "%11s" % "-"
    print("%-17s %5d %10.0f %10.0f %s %9.3f" % (name, b, ours, c["torch"], ratio, c["frac"]))

p = os.path.join(out, "ewc.json")
if os.path.exists(p):
    d = load(p)
    if "step" in d:
        r = d["step"]["ratios_" + clock]
        print("\nEWC step, %s batch %d, %d finished tasks, lambda 100: samples/s ratio vs SGD"
              " (target >= 0.9)" % (d["model"], d["batch"], d["step"]["done_tasks"]))
        for k, v in r.items():
            v = round(v, 3)
            print("  %-36s %6.3f  %s" % (k, v, "ok" if v >= 0.9 else "BELOW TARGET"))
    if "fisher" in d:
        f = d["fisher"]
        print("\nFisher over %d samples / one training epoch, time ratio (target <= 1.5 for"
              " sampled)" % f["samples"])
        for k in ("empirical", "sampled", "expected"):
            v = round(f[k]["over_epoch_" + clock], 3)
            note = ("ok" if v <= 1.5 else "ABOVE TARGET") if k == "sampled" else ""
            print("  %-36s %6.3f  %s" % (k, v, note))

p = os.path.join(out, "importance.json")
if os.path.exists(p):
    d = load(p)
    if "step" in d:
        print("\nSI step, %s batch %d: samples/s ratio vs the same optimizer without SI"
              " (target >= 0.85)" % (d["model"], d["batch"]))
        for k, v in d["step"]["ratios_" + clock].items():
            v = round(v, 3)
            print("  %-36s %6.3f  %s" % (k, v, "ok" if v >= 0.85 else "BELOW TARGET"))
    if "importance" in d:
        f = d["importance"]
        print("\nMAS importance over %d samples / one training epoch (target <= 1.5)" % f["samples"])
        for k in ("mas", "fisher-sampled"):
            v = round(f[k]["over_epoch_" + clock], 3)
            note = ("ok" if v <= 1.5 else "ABOVE TARGET") if k == "mas" else ""
            print("  %-36s %6.3f  %s" % (k, v, note))

p = os.path.join(out, "train_np2.json")
if os.path.exists(p):
    d = load(p)
    print("\n2 ranks: exact / allreduce step time (> 1: the deterministic reduction costs more),"
          " %s clock" % clock)
    for c in d["cases"]:
        name = "784-" + "-".join(map(str, c["hidden"])) + "-10"
        if "exact_over_allreduce" in c:
            print("  %-17s batch %5d   %6.3f   (exact %.0f, allreduce %.0f samples/s;"
                  " roofline fraction %.3f)" % (
                      name, c["batch"], c["exact_over_allreduce"], c["exact"]["samples_per_s"],
                      c["allreduce"]["samples_per_s"], c["roofline_fraction"]))
EOF
