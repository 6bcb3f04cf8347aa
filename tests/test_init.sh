#!/usr/bin/env bash
# --init torch (PyTorch's nn.Linear default: weights and biases U(+-1/sqrt(fan-in))): bit-identical
# at 1, 2 and 4 ranks and across SIGUSR1 / SIGKILL resumes; the flag changes the run; a resume with
# the other --init is refused. (The distributions themselves: test_model.)
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed
. "$tools/tasks_series.sh" # common, interrupt_until_done, series, refused

series torch --init torch --tasks 2

"$train" "${common[@]}" --tasks 2 --out "$work/he" > "$work/he.log" 2>&1
check "the flag changes the run" \
    bash -c '! "$0" "$1" "$2" > /dev/null 2>&1' "$tools/same_outputs.py" "$work/torch-ref" "$work/he"
check "a resume with the other --init is refused" \
    refused "$work/torch-ref" --init "${common[@]}" --tasks 2
check "a resume of a he run with --init torch is refused" \
    refused "$work/he" --init "${common[@]}" --tasks 2 --init torch

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
