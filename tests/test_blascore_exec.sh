#!/usr/bin/env bash
# The OpenBLAS core choice end to end (blascore.h): a forced core re-executes the program before
# MPI_Init, alone, under mpirun at 1, 2 and 4 ranks and through launch/ewc-mpirun, and results are
# bit-identical across those rank counts on the chosen core; the core is recorded in summary.json
# and the checkpoint; ranks on different cores are an error; a resume on another core warns; a missing core or a bad name is a one-line
# error; an OPENBLAS_CORETYPE from the environment is kept; a stop requested before the re-exec
# survives it. (The test never changes OPENBLAS_CORETYPE itself: forcing is a flag.)
#
# usage: bash tests/test_blascore_exec.sh BUILD_DIR   (env EWC_TRAIN = path of ewc-train, optional)
set -u

BUILD_DIR=${1:-${EWC_BUILD_DIR:-}}
EXE=${EWC_TRAIN:-$BUILD_DIR/ewc-train}
SRC=${EWC_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d /tmp/test_blascore.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
bad() { echo "not ok - $1"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1/summary.json" "$2"; }

RUN=(--tasks 2 --hidden 64 --train-samples 1200 --test-samples 400 --batch 60 --method ewc
     --lambda 10 --penalty-step implicit --seed 3)
mpi() { local n=$1; shift; timeout 300 mpirun -np "$n" --oversubscribe "$@"; }

# The core OpenBLAS loads here, and a different one of a level every x86-64 CPU with AVX has.
timeout 120 "$EXE" "${RUN[@]}" --tasks 1 --blas-core keep --out "$T/keep" > "$T/keep.log" 2>&1
loaded=$(field "$T/keep" blas_core)
check "keep: runs on the loaded core ($loaded) and records it" test -n "$loaded"
forced=Sandybridge
[ "${loaded,,}" = sandybridge ] && forced=Haswell

# ---- a forced core: re-exec alone, under mpirun at 1, 2, 4 ranks and through ewc-mpirun ----
timeout 120 "$EXE" "${RUN[@]}" --blas-core "$forced" --out "$T/f1" > "$T/f1.log" 2>&1
check "forced $forced: exit 0" test $? -eq 0
check "forced $forced: summary.json records the core" test "$(field "$T/f1" blas_core)" = "$forced"
check "forced $forced: one BLAS line naming it as forced" \
    bash -c "[ \$(grep -c '^BLAS: OpenBLAS core $forced, row quantum [0-9]*, self-test passed' '$T/f1.log') -eq 1 ] &&
             grep -q 'forced (--blas-core $forced' '$T/f1.log'"
check "forced $forced: the checkpoint records core and quantum" "$PY" - "$T/f1" "$forced" <<'EOF'
import h5py, json, sys
d, core = sys.argv[1], sys.argv[2]
with h5py.File(d + "/checkpoint.h5", "r") as f:
    got = f.attrs["blas_core"]
    got = got.decode() if isinstance(got, bytes) else str(got)
    q = int(f.attrs["blas_quantum"])
sys.exit(0 if got == core and q == json.load(open(d + "/summary.json"))["blas_quantum"] else 1)
EOF
for n in 1 2 4; do
    mpi "$n" "$EXE" "${RUN[@]}" --blas-core "$forced" --out "$T/m$n" > "$T/m$n.log" 2>&1
    check "mpirun -np $n, forced $forced: exit 0, $n ranks, core recorded" \
        bash -c "[ \$? -eq 0 ] && grep -q '\"ranks\": $n' '$T/m$n/summary.json' &&
                 grep -q '\"blas_core\": \"$forced\"' '$T/m$n/summary.json'"
    check "mpirun -np $n, forced $forced: bit-identical to the single process" \
        "$PY" "$SRC/tests/tools/same_outputs.py" "$T/f1" "$T/m$n"
done
timeout 300 "$SRC/launch/ewc-mpirun" -n 2 "$EXE" "${RUN[@]}" --blas-core "$forced" --out "$T/w2" \
    > "$T/w2.log" 2>&1
check "launch/ewc-mpirun -n 2, forced $forced: bit-identical to the single process" \
    bash -c "grep -q '\"blas_core\": \"$forced\"' '$T/w2/summary.json' &&
             '$PY' '$SRC/tests/tools/same_outputs.py' '$T/f1' '$T/w2'"
check "the forced core changes the kernels: results differ from the loaded core's" \
    bash -c "! cmp -s '$T/f1/accuracy.csv' '$T/keep/accuracy.csv' ||
             ! '$PY' '$SRC/tests/tools/h5same.py' '$T/f1/checkpoint.h5' '$T/keep/checkpoint.h5' >/dev/null"

# ---- ranks on different cores: an error naming the hosts and cores (MPMD: one core per rank) ----
timeout 120 mpirun --oversubscribe -np 1 "$EXE" "${RUN[@]}" --blas-core "$forced" --out "$T/mix" : \
    -np 1 "$EXE" "${RUN[@]}" --blas-core keep --out "$T/mix" > "$T/mix.out" 2> "$T/mix.err"
st=$?
check "ranks on $forced and $loaded: one error line naming both, exit 1" \
    bash -c "[ $st -eq 1 ] && [ \$(grep -c '^ewc-train:' '$T/mix.err') -eq 1 ] &&
             grep -q '^ewc-train: error: ranks run different OpenBLAS cores.*rank 0 on .* runs $forced, rank 1 on .* runs $loaded' '$T/mix.err'"

# ---- errors: one line, exit 1, alone and under mpirun -np 2 ----
for n in 0 2; do
    launcher=(); [ $n -gt 0 ] && launcher=(mpirun -np $n --oversubscribe)
    timeout 120 "${launcher[@]}" "$EXE" "${RUN[@]}" --blas-core NoSuchCore --out "$T/e$n" \
        > "$T/e$n.out" 2> "$T/e$n.err"
    st=$?
    check "${launcher[*]:-alone}: --blas-core NoSuchCore is one error line, exit 1" \
        bash -c "[ $st -eq 1 ] && [ \$(grep -c '^ewc-train:' '$T/e$n.err') -eq 1 ] &&
                 grep -q '^ewc-train: error: --blas-core NoSuchCore: this OpenBLAS has no NoSuchCore kernels' '$T/e$n.err'"
done
timeout 60 "$EXE" --blas-core 'Sky lake' --out "$T/bad" > "$T/bad.out" 2> "$T/bad.err"
check "a malformed --blas-core is a flag error" \
    bash -c "[ $? -eq 1 ] && grep -q '^ewc-train: error: --blas-core: expected auto|keep|NAME' '$T/bad.err'"

# ---- auto keeps a core set in the environment ----
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
    timeout 120 "$EXE" "${RUN[@]}" --tasks 1 --out "$T/auto" > "$T/auto.log" 2>&1
    check "auto: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE from the environment is kept" \
        bash -c "grep -q 'kept: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE is set in the environment' '$T/auto.log' &&
                 [ '$(field "$T/auto" blas_core 2>/dev/null)' = '$loaded' ]"
else
    echo "ok - auto with OPENBLAS_CORETYPE set: skipped, the variable is not set here"
fi

# ---- resume on another core warns; a stop asked for before the re-exec survives it ----
timeout 120 "$EXE" "${RUN[@]}" --blas-core keep --resume --out "$T/f1" > "$T/r.out" 2> "$T/r.err"
check "resume on another core: exit 0 with a warning naming both cores" \
    bash -c "[ $? -eq 0 ] && grep -q 'warning: the checkpoint was written on OpenBLAS core $forced' '$T/r.err' &&
             grep -q 'this run uses $loaded' '$T/r.err'"
EWC_STOP_PENDING=1 timeout 120 "$EXE" "${RUN[@]}" --blas-core "$forced" --out "$T/stop" \
    > "$T/stop.out" 2> "$T/stop.err"
check "a stop pending across the re-exec: checkpoint at the first step, exit 3" \
    bash -c "[ $? -eq 3 ] && grep -q 'stopped by a signal at task 0, epoch 0, step 1' '$T/stop.err' &&
             [ -f '$T/stop/checkpoint.h5' ]"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
