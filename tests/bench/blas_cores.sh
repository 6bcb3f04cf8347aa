#!/usr/bin/env bash
# The OpenBLAS core choice in figures (blascore.h): for every kernel set this CPU can run, SGEMM
# GFLOP/s against the core's measured peak and trainer throughput (bench_train); ewc-train end to
# end with --blas-core keep / auto / the fastest core; and PyTorch as it comes out of the box on
# the same machine, at 1 and 2 threads (ours: 1 and 2 ranks).
# Usage: tests/bench/blas_cores.sh   (environment: BUILD, OUT, DATA, HIDDEN, BATCH, REPS, PY)
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-/tmp/build-bench}
OUT=${OUT:-/tmp/ewc-blas-$(date +%Y%m%d-%H%M%S)}
DATA=${DATA:-${EWC_MNIST_DIR:-}}
[ -z "$DATA" ] && [ -d "$SRC/data/mnist" ] && DATA=$SRC/data/mnist
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
HIDDEN=${HIDDEN:-400,400}
BATCH=${BATCH:-100}
REPS=${REPS:-5}
PY=${PY:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

cmake -S "$SRC" -B "$BUILD" > /dev/null
cmake --build "$BUILD" -j2 --target bench_train bench_peak ewc-train > /dev/null
mkdir -p "$OUT"
echo "== results in $OUT (load average $(cut -d' ' -f1-3 /proc/loadavg))"

# ---- the machine ----------------------------------------------------------------------------
site=${OPENBLAS_CORETYPE:-}
corename() { "$PY" -c 'import ctypes, ctypes.util
lib = ctypes.CDLL("libopenblas.so.0"); lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())'; }
detected=$(env -u OPENBLAS_CORETYPE "$PY" -c 'import ctypes
lib = ctypes.CDLL("libopenblas.so.0"); lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())')
loaded=$(corename)
{
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "openblas: $(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || echo '?')"
    echo "OPENBLAS_CORETYPE in the environment: ${site:-(unset)}"
    echo "core OpenBLAS loads here: $loaded; by its own detection (variable unset): $detected"
} | tee "$OUT/machine.txt"
"$BUILD/bench_peak" --json > "$OUT/peak.json"
"$BUILD/bench_peak"

# ---- every core: bench_train at 1 rank (SGEMM roofline and trainer), and at 2 ranks --------------
level=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["cpu_level"])' "$OUT/peak.json")
cores=(Prescott)
[ "$level" -ge 2 ] && cores+=(Sandybridge)
[ "$level" -ge 3 ] && cores+=(Haswell)
[ "$level" -ge 4 ] && cores+=(SkylakeX)
case " ${cores[*]} " in *" $detected "*) ;; *) cores+=("$detected") ;; esac
for core in "${cores[@]}"; do
    echo "== core $core"
    OPENBLAS_CORETYPE=$core mpirun -np 1 -x OPENBLAS_CORETYPE "$BUILD/bench_train" --data "$DATA" \
        --hidden "$HIDDEN" --batch "$BATCH" --reps "$REPS" --clock cpu \
        --json "$OUT/core_$core.json" | tail -n 3 | head -n 1
done
best=$("$PY" - "$OUT" "${cores[@]}" <<'EOF'
import json, sys
out, cores = sys.argv[1], sys.argv[2:]
sps = {c: json.load(open(f"{out}/core_{c}.json"))["cases"][0]["exact"]["samples_per_s"] for c in cores}
print(max(sps, key=sps.get))
EOF
)
echo "== 2 ranks, core $best and the loaded core $loaded"
for core in "$best" "$loaded"; do
    OPENBLAS_CORETYPE=$core mpirun -np 2 -x OPENBLAS_CORETYPE "$BUILD/bench_train" --data "$DATA" \
        --hidden "$HIDDEN" --batch "$BATCH" --reps "$REPS" --clock wall --reduce exact \
        --json "$OUT/np2_$core.json" | tail -n 3 | head -n 1
done

# ---- ewc-train end to end: keep, auto, the fastest core (1 task, 1 epoch) -------------------------
for mode in keep auto "$best"; do
    "$BUILD/ewc-train" --data "$DATA" --hidden "$HIDDEN" --batch "$BATCH" --tasks 1 --epochs 1 \
        --blas-core "$mode" --out "$OUT/run_$mode" > "$OUT/run_$mode.log"
    echo "ewc-train --blas-core $mode: $(grep '^BLAS:' "$OUT/run_$mode.log")"
done

# ---- PyTorch out of the box (the environment as it is), and under the other cores ---------------
# 1 thread under the CPU clock like ours (time.perf_counter swapped for process time, as run.sh
# does); 2 threads (and our 2 ranks) under the wall clock: run those on a quiet machine.
torch() { # CLOCK THREADS OUTFILE
    "$PY" -c 'import sys, time
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "cpu":
    time.perf_counter = time.process_time
import torch_mlp
sys.exit(torch_mlp.main(sys.argv[3:]))' "$SRC/tests/bench" "$1" --hidden "$HIDDEN" --batch "$BATCH" \
        --threads "$2" --json > "$3"
}
for th in 1 2; do
    clock=cpu; [ "$th" -gt 1 ] && clock=wall
    torch "$clock" "$th" "$OUT/torch_t$th.json"
    OPENBLAS_CORETYPE=Prescott torch "$clock" "$th" "$OUT/torch_prescott_t$th.json"
done

# ---- summary ---------------------------------------------------------------------------------
"$PY" - "$OUT" "$loaded" "$best" "${cores[@]}" <<'EOF' | tee "$OUT/summary.txt"
import json, re, sys
out, loaded, best, cores = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
J = lambda p: json.load(open(f"{out}/{p}"))
peak = J("peak.json")
print("\n==== OpenBLAS cores (%s) ====" % out)
print(open(f"{out}/machine.txt").read().strip())
print("measured per-core peak (12 independent multiply-add chains per width, CPU clock): " +
      ", ".join("%s %.0f" % kv for kv in peak["peaks"].items()) + " GFLOP/s")
c0 = J(f"core_{best}.json")["cases"][0]
print("\n1 rank, 1 thread, 784-%s-10 batch %d, CPU clock, best of the repetitions:"
      % ("-".join(map(str, c0["hidden"])), c0["batch"]))
print("%-14s %10s %8s %10s %11s %9s" % ("core", "sgemm GF", "of peak", "samples/s", "roofline", "vs loaded"))
base = J(f"core_{loaded}.json")["cases"][0]["exact"]["samples_per_s"]
for c in cores:
    d = J(f"core_{c}.json")["cases"][0]
    gf = d["roofline"]["gflops"]
    print("%-14s %10.1f %8.2f %10.0f %11.3f %9.2f" % (c, gf, gf / peak["peak"], d["exact"]["samples_per_s"],
          d["roofline_fraction"], d["exact"]["samples_per_s"] / base))
t1, t2 = J("torch_t1.json")["samples_per_s"], J("torch_t2.json")["samples_per_s"]
p1, p2 = J("torch_prescott_t1.json")["samples_per_s"], J("torch_prescott_t2.json")["samples_per_s"]
ours1 = J(f"core_{best}.json")["cases"][0]["exact"]["samples_per_s"]
ours2 = J(f"np2_{best}.json")["cases"][0]["exact"]["samples_per_s"]
ld2 = J(f"np2_{loaded}.json")["cases"][0]["exact"]["samples_per_s"]
print("\nagainst PyTorch (Debian's, same OpenBLAS), samples/s (1 thread: CPU clock; 2: wall clock):")
print("  1 thread : ours on %s %.0f, on %s %.0f | torch out of the box %.0f (x%.2f), torch on Prescott %.0f (x%.2f)"
      % (best, ours1, loaded, base, t1, ours1 / t1, p1, ours1 / p1))
print("  2 threads: ours 2 ranks on %s %.0f, on %s %.0f | torch out of the box %.0f (x%.2f), torch on Prescott %.0f (x%.2f)"
      % (best, ours2, loaded, ld2, t2, ours2 / t2, p2, ours2 / p2))
print("\newc-train end to end (1 task, 1 epoch), train samples/s and the choice:")
for m in ["keep", "auto", best]:
    s = J(f"run_{m}/summary.json")
    line = [l for l in open(f"{out}/run_{m}.log") if l.startswith("BLAS:")][0].strip()
    print("  --blas-core %-9s %8.0f  %s" % (m, s["train_samples_per_second"], line))
EOF
