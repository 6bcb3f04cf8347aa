#!/usr/bin/env bash
# I/O faults while a checkpoint is written, in the whole program under mpirun (2 ranks) and at
# 1 rank: an LD_PRELOAD shim (tests/tools/iofault.c) makes the write of a later checkpoint fail
# with ENOSPC, EIO, a short write then ENOSPC, a failing fsync of the file or of its directory,
# or a failing rename. Each must end the run with one error line naming the checkpoint, a non-zero
# exit, no temporary file left, the previous checkpoint byte for byte as it was (the new one, for
# the directory sync that fails after the rename), and a --resume from it that finishes
# bit-identical to an uninterrupted run. Short and interrupted writes that succeed change nothing.
# Usage: test_io_faults.sh BUILD_DIR   (EWC_IOFAULT_LIB: the shim, default BUILD_DIR/libewc_iofault.so)
set -uo pipefail
train=$(realpath "${EWC_TRAIN:-$1/ewc-train}")
shim=$(realpath "${EWC_IOFAULT_LIB:-$1/libewc_iofault.so}")
# an AddressSanitizer build needs its runtime first in the preload list
asan=$(ldd "$train" 2> /dev/null | awk '/libasan/ { print $3 }')
[ -n "$asan" ] && shim="$asan:$shim"
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed

# 2 tasks of 60 steps, a checkpoint every 7 steps and at each task's end: the 4th checkpoint
# write (SKIP=3) is mid-task 0, the 10th (SKIP=9) in task 1 after task 0's record was written
args=(--tasks 2 --hidden 64 --epochs 2 --batch 100 --train-samples 3000 --test-samples 500
      --method ewc --lambda 10 --momentum 0.5 --dropout 0.1 --eval-every 10 --checkpoint-every 7
      --quiet)
timeout 300 "$train" "${args[@]}" --out "$work/ref" > /dev/null 2>&1
check "reference run finishes" test -f "$work/ref/summary.json"

# fault NAME MODE SKIP NP PATTERN: run with the shim, then check and resume
fault() {
    local name=$1 mode=$2 skip=$3 np=$4 pattern=$5 out="$work/$1" rc
    mkdir -p "$out"
    local launch=("$train")
    [ "$np" -gt 1 ] && launch=(mpirun -np "$np" --oversubscribe -x LD_PRELOAD="$shim" -x EWC_IOFAULT="$mode"
                              -x EWC_IOFAULT_SKIP="$skip" -x EWC_IOFAULT_SAVE="$work/$name.prev" "$train")
    LD_PRELOAD=$([ "$np" -eq 1 ] && echo "$shim") EWC_IOFAULT=$mode EWC_IOFAULT_SKIP=$skip \
        EWC_IOFAULT_SAVE="$work/$name.prev" timeout 300 "${launch[@]}" "${args[@]}" --out "$out" \
        > "$work/$name.log" 2>&1
    rc=$?
    check "$name: the fault was injected ($(cat "$work/$name.prev.injected" 2> /dev/null))" \
        test -f "$work/$name.prev.injected"
    check "$name: exit non-zero (got $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
    check "$name: one error line naming the checkpoint: $(grep '^ewc-train' "$work/$name.log")" \
        bash -c "[ \$(grep -c '^ewc-train' '$work/$name.log') -eq 1 ] &&
                 grep -qE '^ewc-train: error: $out/checkpoint.h5: $pattern' '$work/$name.log'"
    check "$name: no temporary file left" bash -c "! ls -a '$out' | grep -q '\.tmp'"
    if [ "$mode" = fsync-dir ]; then
        check "$name: the new checkpoint is in place (complete, not the previous one)" \
            bash -c "! cmp -s '$out/checkpoint.h5' '$work/$name.prev' && '$tools/h5same.py' '$out/checkpoint.h5' '$out/checkpoint.h5'"
    else
        check "$name: the previous checkpoint is byte-identical to what it was" \
            cmp "$out/checkpoint.h5" "$work/$name.prev"
    fi
    timeout 300 "$train" "${args[@]}" --out "$out" --resume > "$work/$name.resume.log" 2>&1
    check "$name: --resume finishes bit-identical to the uninterrupted run" \
        "$tools/same_outputs.py" "$work/ref" "$out"
}

fault enospc       write-enospc 3 2 'cannot write temporary file .*checkpoint.h5.tmp.*: No space left on device$'
fault eio          write-eio    9 2 'cannot write temporary file .*: Input/output error$'
fault short-enospc short-enospc 9 2 'cannot write temporary file .*: No space left on device$'
fault fsync        fsync-file   3 2 'cannot write temporary file .*: Input/output error$'
fault rename       rename       3 2 'cannot rename .*checkpoint.h5.tmp.* to it: Input/output error$'
fault fsync-dir    fsync-dir    3 2 'written, but cannot sync directory .*: Input/output error$'
fault enospc-1rank write-enospc 5 1 'cannot write temporary file .*: No space left on device$'
fault rename-1rank rename       9 1 'cannot rename .*: Input/output error$'
# where a save keeps the checkpoint it replaces as checkpoint.prev.h5: keeping it fails
if [ -e "$work/ref/checkpoint.prev.h5" ]; then
    fault rename-prev rename-prev 3 2 'cannot keep the previous file as .*checkpoint.prev.h5: Input/output error$'
fi

# short writes (at most 1000 bytes) and an EINTR at the start of every file: no error at all
LD_PRELOAD=$shim EWC_IOFAULT=short-only timeout 300 "$train" "${args[@]}" --out "$work/short" \
    > "$work/short.log" 2>&1
check "short and interrupted writes: the run finishes (exit $?)" test -f "$work/short/summary.json"
check "short and interrupted writes: bit-identical outputs" "$tools/same_outputs.py" "$work/ref" "$work/short"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
