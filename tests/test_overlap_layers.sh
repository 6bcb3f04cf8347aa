#!/usr/bin/env bash
# End to end on Fashion-MNIST: --permute-fraction (each task moves exactly round(F * 784) pixels,
# bit-identical for 1, 2 and 4 ranks and across a stop and resume, refused on a resume with another
# F) and --fisher-overlap --overlap-layers (per-layer CSV checked against a float64 computation
# from the checkpoint with h5py; one-line errors naming the file).
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
py=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed
# expect_error NAME NEEDLE ARGS...: the trainer fails with one line on stderr containing NEEDLE
expect_error() {
    local name=$1 needle=$2; shift 2
    "$train" "$@" > "$work/err.out" 2> "$work/err.txt"; local rc=$?
    check "$name" bash -c "[ $rc -eq 1 ] && [ \$(wc -l < '$work/err.txt') -eq 1 ] &&
        grep -qF -- '$needle' '$work/err.txt' || { echo 'exit $rc:'; cat '$work/err.txt'; false; }"
}

args=(--tasks 3 --hidden 24,16 --epochs 2 --train-samples 3000 --test-samples 300 --method ewc
      --lambda 10 --penalty-step implicit --permute-fraction 0.3 --seed 4 --quiet)
start=$(date +%s.%N)
"$train" "${args[@]}" --out "$work/ref" > /dev/null 2>&1
ref_seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
check "reference run finishes" test -f "$work/ref/summary.json"
ck=$work/ref/checkpoint.h5

# ---- the partial permutations ------------------------------------------------------------------
check "each task's permutation moves exactly round(0.3 * 784) = 235 pixels, a different set" \
    "$py" - "$ck" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f["/config"].attrs["permute_fraction"] == 0.3
perms = [f[f"/tasks/{k:03d}/permutation"][()] for k in range(3)]
for p in perms:
    assert sorted(p) == list(range(784)), "not a permutation"
    assert (p != np.arange(784)).sum() == 235, (p != np.arange(784)).sum()
moved = [set(np.flatnonzero(p != np.arange(784))) for p in perms]
assert moved[0] != moved[1] and moved[1] != moved[2]
PY
for np in 2 4; do
    mpirun -np $np --oversubscribe "$train" "${args[@]}" --out "$work/np$np" > /dev/null 2>&1
    check "$np ranks give bit-identical outputs to 1 rank" "$py" "$tools/same_outputs.py" \
        "$work/ref" "$work/np$np"
done
# stop once with SIGUSR1 about 40 % into the run, then resume
"$train" "${args[@]}" --out "$work/stop" --checkpoint-every 7 > /dev/null 2>&1 &
pid=$!
sleep "$(awk -v t="$ref_seconds" 'BEGIN { print t * 0.4 }')"
kill -USR1 $pid; wait $pid; rc=$?
check "SIGUSR1 stops the run with a checkpoint (exit 3, got $rc)" test "$rc" -eq 3
"$train" "${args[@]}" --out "$work/stop" --checkpoint-every 7 --resume > /dev/null 2>&1
check "stop + resume gives bit-identical outputs" "$py" "$tools/same_outputs.py" "$work/ref" "$work/stop"
expect_error "a resume with another --permute-fraction is refused, naming the flag" \
    "--permute-fraction" "${args[@]}" --permute-fraction 0.5 --out "$work/ref" --resume
expect_error "--permute-fraction 1.5 is refused" "--permute-fraction" --permute-fraction 1.5

# ---- per-layer overlaps ------------------------------------------------------------------------
"$train" --fisher-overlap "$ck" --overlap-layers > "$work/layers.csv" 2> "$work/layers.err"
check "--overlap-layers exits 0 with nothing on stderr" test ! -s "$work/layers.err"
"$train" --fisher-overlap "$ck" > "$work/matrix.csv"
check "--overlap-layers matches a float64 computation from the checkpoint" \
    "$py" - "$ck" "$work/layers.csv" "$work/matrix.csv" <<'PY'
import sys, csv, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
rows = list(csv.reader(open(sys.argv[2])))
assert rows[0] == ["task_a", "task_b", "layer", "overlap"], rows[0]
matrix = [r.split(",") for r in open(sys.argv[3]).read().split()]
def layer(k, l):  # layer l (0-based) of task k's Fisher: W and b, float64
    g = f[f"/tasks/{k:03d}/fisher/layer{l}"]
    return np.concatenate([g["W"][()].astype(np.float64).ravel(), g["b"][()].astype(np.float64)])
def ov(a, b):
    return 1 - 0.5 * np.sum((np.sqrt(a / a.sum()) - np.sqrt(b / b.sum())) ** 2)
expect = []
for a in range(3):
    for b in range(a + 1, 3):
        for l in range(3):
            expect.append((a, b, str(l + 1), ov(layer(a, l), layer(b, l))))
        whole = lambda k: np.concatenate([layer(k, l) for l in range(3)])
        expect.append((a, b, "all", ov(whole(a), whole(b))))
assert len(rows) - 1 == len(expect) == 12, len(rows)
for r, (a, b, l, v) in zip(rows[1:], expect):
    assert (int(r[0]), int(r[1]), r[2]) == (a, b, l), (r, a, b, l)
    assert abs(float(r[3]) - v) <= 6e-7, (r, v)
    assert 0 < v < 1
    if l == "all":  # the same number as the matrix, to its 4 decimals
        assert abs(float(matrix[a + 1][b + 1]) - v) <= 6e-5, (matrix, v)
print("ok", rows[1:])
PY
"$train" --tasks 1 --hidden 8 --train-samples 300 --test-samples 50 --out "$work/one" --quiet
expect_error "--overlap-layers on a 1-task checkpoint names the file" "$work/one/checkpoint.h5" \
    --fisher-overlap "$work/one/checkpoint.h5" --overlap-layers
expect_error "--overlap-layers on a missing file names it" "$work/missing.h5" \
    --fisher-overlap "$work/missing.h5" --overlap-layers
head -c 3000 "$ck" > "$work/truncated.h5"
expect_error "--overlap-layers on a truncated checkpoint names it" "$work/truncated.h5" \
    --fisher-overlap "$work/truncated.h5" --overlap-layers
expect_error "--overlap-layers alone is refused" "--overlap-layers" --overlap-layers

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
