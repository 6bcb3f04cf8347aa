#!/usr/bin/env bash
# --adam-persist: Adam's moments and step count carry on across tasks instead of being reset;
# bit-identical at 1, 2 and 4 ranks and across SIGUSR1 / SIGKILL resumes; the checkpoint's step
# count covers every task; the flag changes the run; a resume with the other setting is refused.
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed
. "$tools/tasks_series.sh" # common, interrupt_until_done, series, refused

adam=(--optimizer adam --momentum 0 --lr 0.002 --tasks 3)
series persist "${adam[@]}" --adam-persist

# the step count: every step of every task (3 tasks x 2 epochs x ceil(20050 / 64) steps), and 0
# after a run that resets Adam at every task (the reset comes before the checkpoint)
"$train" "${common[@]}" "${adam[@]}" --out "$work/reset" > "$work/reset.log" 2>&1
adam_step() { /usr/bin/python3 -c 'import h5py, sys
print(int(h5py.File(sys.argv[1] + "/checkpoint.h5", "r")["/state/adam"].attrs["step"]))' "$1"; }
check "with --adam-persist the step count spans all 3 tasks (got $(adam_step "$work/persist-ref"))" \
    test "$(adam_step "$work/persist-ref")" -eq $((3 * 2 * 314))
check "without it Adam is reset after the last task (got $(adam_step "$work/reset"))" \
    test "$(adam_step "$work/reset")" -eq 0
check "the flag changes the run" \
    bash -c '! "$0" "$1" "$2" > /dev/null 2>&1' "$tools/same_outputs.py" "$work/persist-ref" "$work/reset"
check "a resume without --adam-persist is refused" \
    refused "$work/persist-ref" --adam-persist "${common[@]}" "${adam[@]}"
check "--adam-persist needs --optimizer adam" \
    bash -c '"$0" --adam-persist --tasks 1 --out "$1/sgd" 2>&1 | grep -q "needs --optimizer adam"' \
    "$train" "$work"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
