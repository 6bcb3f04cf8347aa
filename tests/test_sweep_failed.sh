#!/usr/bin/env bash
# ewc-sweep and failed points: a diverging point (--lr 1e6) is recorded as failed with the
# trainer's one-line reason (failed.json; `list` shows it), is not run again by `run` or `submit`
# unless --retry-failed is given, and does not stop the other points; ewc-sbatch.sh records a
# failed trainer the same way. Usage: test_sweep_failed.sh BUILD_DIR
set -uo pipefail
train=$(realpath "${EWC_TRAIN:-$1/ewc-train}")
src=${EWC_SOURCE_DIR:-$(dirname "$0")/..}
export EWC_TRAIN="$train" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$src/tests/tools/check.sh" # $work, check, $passed, $failed
sweep() { "$src/launch/ewc-sweep" "$@"; }
cd "$work" || exit 1

cat > div.ini <<'INI'
[sweep]
name = div
[fixed]
train-samples = 1000
test-samples = 200
hidden = 16
tasks = 2
quiet
[grid]
lr = 0.1 1e6
INI
good="$work/runs/div/lr=0.1" bad="$work/runs/div/lr=1e6"

sweep run div.ini > run1.out 2>&1; rc=$?
check "run: a diverging point makes the sweep exit 1 (got $rc)" test "$rc" -eq 1
check "run: the healthy point is done" grep -q '"tasks_done": 2' "$good/summary.json"
check "run: the failure is reported with the trainer's reason" \
    grep -q 'lr=1e6: FAILED (exit 1: diverged at task 0, epoch 0, step [0-9]*: loss .* > bound 230' run1.out
check "run: failed.json records exit 1 and the reason" /usr/bin/python3 -c '
import json, sys; r = json.load(open(sys.argv[1]))
assert r["exit"] == 1 and r["reason"].startswith("diverged at task 0, epoch 0, step "), r' "$bad/failed.json"
check "run: the healthy point has no failed.json" test ! -e "$good/failed.json"

sweep list div.ini > list1.out 2>&1
check "list: the point is failed, with the reason" \
    grep -q 'failed .*lr=1e6  (exit 1: diverged at task 0' list1.out
check "list: the counts" grep -q '^2 points: 1 done, 1 failed$' list1.out

lines=$(wc -l < "$bad/train.log")
sweep run div.ini > run2.out 2>&1; rc=$?
check "run again: exit 1 while a point is failed (got $rc)" test "$rc" -eq 1
check "run again: the failed point is skipped, saying why and how to retry" \
    grep -q 'lr=1e6: failed earlier (exit 1: diverged.*), skipped; --retry-failed' run2.out
check "run again: the failed point was not started (train.log unchanged)" \
    test "$(wc -l < "$bad/train.log")" -eq "$lines"
check "run again: the done point is skipped" grep -q 'lr=0.1: done, skipped' run2.out

sweep submit div.ini --dry-run > submit1.out 2>&1; rc=$?
check "submit: a failed point is not submitted (exit $rc)" \
    bash -c "[ $rc -eq 1 ] && grep -q 'failed earlier.*not submitted' submit1.out && ! grep -q -- '--lr 1e6' submit1.out"
sweep submit div.ini --dry-run --retry-failed > submit2.out 2>&1; rc=$?
check "submit --retry-failed: the failed point is submitted (exit $rc)" \
    bash -c "[ $rc -eq 0 ] && grep -q -- '--lr 1e6' submit2.out && grep -q 'array=1 ' submit2.out"

sweep run div.ini --retry-failed > run3.out 2>&1; rc=$?
check "run --retry-failed: runs it again (it diverges again: exit $rc, train.log grew)" \
    bash -c "[ $rc -eq 1 ] && [ \$(wc -l < '$bad/train.log') -gt $lines ] && grep -q 'lr=1e6: FAILED' run3.out"
check "run --retry-failed: still recorded as failed" test -s "$bad/failed.json"

# a point that failed for a reason that is gone (here: its --lr fixed by --set) runs when retried
sweep run div.ini --retry-failed --set 'lr=0.1 0.05' > run4.out 2>&1; rc=$?
check "a changed grid runs its new point and the sweep succeeds (exit $rc)" test "$rc" -eq 0

# ewc-sbatch.sh outside Slurm (mpirun launcher): a failed trainer is recorded the same way
EWC_LAUNCHER=mpirun "$src/launch/ewc-sbatch.sh" "$train" --train-samples 1000 --test-samples 200 \
    --hidden 16 --tasks 2 --quiet --lr 1e6 --out "$work/sb" > sb.out 2>&1; rc=$?
check "ewc-sbatch.sh: the diverged trainer's exit 1 is passed on (got $rc)" test "$rc" -eq 1
check "ewc-sbatch.sh: failed.json records it" /usr/bin/python3 -c '
import json, sys; r = json.load(open(sys.argv[1])); assert r["exit"] == 1, r' "$work/sb/failed.json"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
