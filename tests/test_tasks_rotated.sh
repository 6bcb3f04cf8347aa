#!/usr/bin/env bash
# Rotated tasks end to end (tasks.h): rotated + domain bit-identical at 1, 2 and 4 ranks and
# across SIGUSR1 / SIGKILL resumes; the angle list recorded and a resume with other angles or
# another family refused; the family flags' errors; and --joint at 1 and 2 ranks.
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed
. "$tools/tasks_series.sh" # common, interrupt_until_done, heads_frozen, series

series rotated-domain --task-family rotated --angles 0,60,120 --scenario domain
check "rotated-domain: three tasks from three angles, canonical angle list recorded" \
    /usr/bin/python3 -c 'import json, sys; c = json.load(open(sys.argv[1]))["config"]
sys.exit(not (c["tasks"] == 3 and c["angles"] == "0,60,120"))' "$work/rotated-domain-ref/summary.json"

# a resume with other angles or another family is refused
check "resume with another --angles is refused" \
    refused "$work/rotated-domain-ref" --angles "${common[@]}" --task-family rotated --angles 0,60,90
check "resume with another --task-family is refused" \
    refused "$work/rotated-domain-ref" --task-family "${common[@]}" --tasks 3

# flag errors: one line naming the flag, status 1
flag_error() { # FLAG ARGS...
    local flag=$1; shift
    "$train" "$@" --out "$work/flagerr" > "$work/flagerr.log" 2>&1; local rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l < "$work/flagerr.log")" -eq 1 ] && grep -q -- "$flag" "$work/flagerr.log"
}
check "--classes-per-task without split is an error" flag_error --classes-per-task --classes-per-task 2
check "--angles without rotated is an error" flag_error --angles --task-family split --angles 0,90
check "--angles must be numbers" flag_error --angles --task-family rotated --angles 0,abc
check "--angles and --tasks must agree" flag_error --angles --task-family rotated --angles 0,90 --tasks 3
check "--class-order seeded without split is an error" flag_error --class-order --class-order seeded
check "--joint needs --method sgd" flag_error --joint --joint --method ewc
check "split: more classes than the data have is an error" \
    flag_error --classes-per-task --task-family split --classes-per-task 4 --tasks 3 --test-samples 10 --train-samples 100
check "--task-family with an unknown name is an error" flag_error --task-family --task-family shuffled

# --joint: one stage on every task's data; 1 and 2 ranks agree bit for bit
args=(--hidden 64,32 --epochs 2 --batch 64 --train-samples 8050 --test-samples 1000 --quiet
      --task-family split --scenario class --joint)
timeout 300 "$train" "${args[@]}" --out "$work/joint1" > /dev/null 2>&1
timeout 300 mpirun -np 2 --oversubscribe "$train" "${args[@]}" --out "$work/joint2" > /dev/null 2>&1
check "joint: 2 ranks give bit-identical outputs to 1 rank" \
    "$tools/same_outputs.py" "$work/joint1" "$work/joint2"
check "joint class-incremental: one stage, every task well above chance" \
    /usr/bin/python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))
R = s["accuracy_matrix"]; sys.exit(not (s["tasks_done"] == 1 and len(R[0]) == 5 and min(R[0]) > 0.3))' \
    "$work/joint1/summary.json"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
