#!/usr/bin/env bash
# Divergence of the whole program: --lr 1e6 (a finite loss far above the bound) and --lr 1e20 (a
# non-finite loss) end the run with exactly one line naming task, epoch and step, and exit 1, at
# 1 and 2 ranks (the loss is identical on every rank, so exactly one rank reports); healthy runs
# with a strong EWC penalty stay far below the bound. Usage: test_diverge_run.sh BUILD_DIR
set -uo pipefail
train=$(realpath "${EWC_TRAIN:-$1/ewc-train}")
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed

small=(--tasks 2 --hidden 64 --epochs 1 --train-samples 3000 --test-samples 500 --quiet)
# diverges LOG PATTERN: the run exited 1 (recorded in LOG.rc) and printed exactly one error line
# (warnings aside), matching PATTERN
diverges() {
    [ "$(cat "$1.rc")" -eq 1 ] || { echo "exit $(cat "$1.rc")"; cat "$1"; return 1; }
    [ "$(grep '^ewc-train' "$1" | grep -vc '^ewc-train: warning:')" -eq 1 ] || { cat "$1"; return 1; }
    grep -E "$2" "$1"
}
for np in 1 2; do
    timeout 120 mpirun -np $np --oversubscribe "$train" "${small[@]}" --lr 1e6 --out "$work/big$np" \
        > "$work/big$np.log" 2>&1; echo $? > "$work/big$np.log.rc"
    check "--lr 1e6, $np rank(s): exit 1, one line naming task and step, loss above the bound 230" \
        diverges "$work/big$np.log" \
        '^ewc-train: error: diverged at task 0, epoch 0, step [0-9]+: loss [0-9.e+]+ > bound 230 \(100 x ln 10 classes\); lower --lr'
    timeout 120 mpirun -np $np --oversubscribe "$train" "${small[@]}" --lr 1e20 --out "$work/nan$np" \
        > "$work/nan$np.log" 2>&1; echo $? > "$work/nan$np.log.rc"
    check "--lr 1e20, $np rank(s): exit 1, one line: the loss is not finite" \
        diverges "$work/nan$np.log" '^ewc-train: error: diverged at task 0, epoch 0, step [0-9]+: loss is (NaN|[+-]Inf);'
done
check "a diverged run leaves no summary of a finished run" test ! -e "$work/big1/summary.json"

# divergence in a later task (here: lr large enough only for task 1's EWC penalty with the
# explicit step): the line names task 1; and the same point resumed diverges at the same step
args=("${small[@]}" --method ewc --lambda 1e6 --lr 0.1 --penalty-step explicit --checkpoint-every 20)
timeout 120 "$train" "${args[@]}" --out "$work/late" > "$work/late.log" 2>&1; echo $? > "$work/late.log.rc"
check "explicit EWC step with lr * lambda * F >> 2: diverges in task 1, one line" \
    diverges "$work/late.log" '^ewc-train: error: diverged at task 1, epoch 0, step [0-9]+'
timeout 120 "$train" "${args[@]}" --out "$work/late" --resume > "$work/late2.log" 2>&1; echo $? > "$work/late2.log.rc"
check "... and resumed from its last checkpoint it diverges again at the same step" \
    bash -c "diff <(grep -o 'diverged at [^:]*' '$work/late.log') <(grep -o 'diverged at [^:]*' '$work/late2.log') && grep -q 'step' '$work/late2.log'"

# healthy runs with strong penalties finish (the penalty is not part of the checked loss)
for ps in implicit; do # (the explicit step at this lambda is unstable, see above)
    timeout 300 "$train" "${small[@]}" --tasks 3 --method ewc --lambda 1e5 --penalty-step $ps \
        --out "$work/strong" > "$work/strong.log" 2>&1
    check "EWC lambda 1e5 ($ps step) finishes with exit 0" test -f "$work/strong/summary.json"
done
timeout 300 "$train" "${small[@]}" --tasks 3 --method online-ewc --lambda 1e4 --gamma 1 \
    --penalty-step implicit --momentum 0.9 --lr 0.1 --out "$work/mom" > "$work/mom.log" 2>&1
check "online EWC lambda 1e4 with momentum 0.9 finishes with exit 0" test -f "$work/mom/summary.json"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
