#!/usr/bin/env bash
# --method si and --method mas end to end: bit-identical outputs (checkpoint with the per-task
# importances and SI's path integral, accuracies, curve, summary) for 1, 2 and 4 ranks and after
# stops by SIGUSR1 and kill -9 mid-task with --resume; the checkpoint records which measure each
# task holds and --fisher-overlap reads it; an older checkpoint without that record still resumes.
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed, interrupt_until_done

common=(--tasks 3 --hidden 128,64 --epochs 2 --batch 96 --train-samples 6050 --test-samples 500
        --momentum 0.5 --dropout 0.1 --eval-every 40 --fisher-samples 2000 --quiet)

h5attr() { # FILE OBJECT ATTR: print an attribute
    /usr/bin/python3 -c "import h5py, sys; v = h5py.File(sys.argv[1], 'r')[sys.argv[2]].attrs[sys.argv[3]]; print(v.decode() if isinstance(v, bytes) else v)" "$@"
}

# the baseline the penalties must beat: plain SGD forgets task 0
timeout 300 "$train" "${common[@]}" --method sgd --out "$work/sgd" > /dev/null 2>&1
sgd0=$(awk -F, '$1 == 2 && $2 == 0 { print $3 }' "$work/sgd/accuracy.csv")

for method in si mas; do
    if [ $method = si ]; then
        args=("${common[@]}" --method si --lambda 100 --si-xi 0.2 --penalty-step implicit)
    else
        args=("${common[@]}" --method mas --lambda 1 --penalty-step implicit)
    fi
    ref=$work/$method
    timeout 300 "$train" "${args[@]}" --out "$ref" > /dev/null 2> "$ref.log"
    check "$method: reference run finishes" test -f "$ref/summary.json"
    measure=$(h5attr "$ref/checkpoint.h5" /tasks/002 importance 2>&1)
    check "$method: the tasks hold the $method importance (got $measure)" test "$measure" = $method
    acc0=$(awk -F, '$1 == 2 && $2 == 0 { print $3 }' "$ref/accuracy.csv")
    check "$method: the penalty protects task 0 (accuracy after 3 tasks $acc0 > sgd's ${sgd0:-?} + 0.05)" \
        awk -v a="$acc0" -v b="$sgd0" 'BEGIN { exit !(b != "" && a > b + 0.05) }'
    "$train" --fisher-overlap "$ref/checkpoint.h5" > "$work/$method.overlap" 2>&1
    check "$method: --fisher-overlap reads the importances (diagonal 1, off-diagonal in (0, 1))" \
        awk -F, 'NR > 1 { for (j = 2; j <= NF; j++) { v = $j + 0; if (j - 2 == NR - 2) { if (v != 1) bad = 1 } else if (v <= 0 || v >= 1) bad = 1 } n++ } END { exit bad || n != 3 }' "$work/$method.overlap"
    for np in 2 4; do
        timeout 300 mpirun -np $np --oversubscribe "$train" "${args[@]}" --out "$work/$method.np$np" \
            > /dev/null 2>&1
        check "$method: $np ranks give bit-identical outputs to 1 rank" \
            "$tools/same_outputs.py" "$ref" "$work/$method.np$np"
    done
    args+=(--checkpoint-every 5)
    stops=$(interrupt_until_done "$work/$method.usr1" USR1 3 1 mpirun -np 2 --oversubscribe "$train")
    check "$method: SIGUSR1 under mpirun -np 2: stopped at least twice (got ${stops:-0})" \
        test "${stops:-0}" -ge 2
    check "$method: SIGUSR1 + resume gives bit-identical outputs" \
        "$tools/same_outputs.py" "$ref" "$work/$method.usr1"
    stops=$(interrupt_until_done "$work/$method.kill" KILL 137 1 "$train")
    check "$method: SIGKILL: killed at least twice (got ${stops:-0})" test "${stops:-0}" -ge 2
    check "$method: SIGKILL + resume gives bit-identical outputs" \
        "$tools/same_outputs.py" "$ref" "$work/$method.kill"
done

# SI with Adam (the accumulation is fused into Adam's step too): 1 vs 2 ranks
args=("${common[@]}" --momentum 0 --optimizer adam --lr 0.001 --method si --lambda 0.5)
timeout 300 "$train" "${args[@]}" --out "$work/adam1" > /dev/null 2>&1
timeout 300 mpirun -np 2 --oversubscribe "$train" "${args[@]}" --out "$work/adam2" > /dev/null 2>&1
check "si + adam: 2 ranks give bit-identical outputs to 1 rank" \
    "$tools/same_outputs.py" "$work/adam1" "$work/adam2"

# A checkpoint from before --method si / mas has no "importance" attribute on its tasks: remove
# it from a mid-run EWC checkpoint, resume, and get the uninterrupted run's outputs (the copied
# tasks are recorded as Fishers again).
args=("${common[@]}" --tasks 2 --method ewc --lambda 10)
timeout 300 "$train" "${args[@]}" --out "$work/ewc" > /dev/null 2>&1
"$train" "${args[@]}" --out "$work/old" > /dev/null 2>&1 &
pid=$!
# the first checkpoint is written when task 0 ends: stop the run then, early in task 1
for i in $(seq 2400); do
    [ -f "$work/old/checkpoint.h5" ] && break
    kill -0 $pid 2> /dev/null || break
    sleep 0.05
done
kill -USR1 $pid 2> /dev/null; wait $pid; rc=$?
check "the run stopped by SIGUSR1 after task 0 (exit $rc)" test $rc -eq 3
/usr/bin/python3 -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); del f['/tasks/000'].attrs['importance']" \
    "$work/old/checkpoint.h5"
measure=$(h5attr "$work/old/checkpoint.h5" /tasks/000 importance 2>&1)
check "the old-style checkpoint lacks the importance attribute" \
    bash -c 'grep -q "KeyError" <<< "$1"' _ "$measure"
timeout 300 "$train" "${args[@]}" --out "$work/old" --resume > /dev/null 2>&1
check "an old-style checkpoint resumes to the same outputs" "$tools/same_outputs.py" "$work/ewc" "$work/old"
measure=$(h5attr "$work/old/checkpoint.h5" /tasks/000 importance 2>&1)
check "its copied task is recorded as a Fisher (got $measure)" test "$measure" = fisher

# bad flag values
msg=$("$train" --si-xi 0 --out "$work/bad" 2>&1); rc=$?
check "--si-xi 0 is refused with one line naming the flag (exit $rc)" \
    bash -c '[ "$1" -eq 1 ] && [ "$(wc -l <<< "$2")" -eq 1 ] && grep -q -- "--si-xi" <<< "$2"' _ "$rc" "$msg"
msg=$("$train" --method bogus --out "$work/bad" 2>&1); rc=$?
check "--method bogus is refused, listing si and mas (exit $rc)" \
    bash -c '[ "$1" -eq 1 ] && grep -q "si, mas" <<< "$2"' _ "$rc" "$msg"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
