#!/usr/bin/env bash
# --reduce fixed end to end: bit-identical outputs for 1, 2, 3, 4 and 8 ranks and after SIGUSR1
# (under mpirun) and SIGKILL stops resumed with --resume; a resume with another --reduce or
# --micro-batch is refused naming the flag; --reduce auto records the mode it picked.
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed, interrupt_until_done

# every stateful feature on: EWC, momentum, both dropouts, a curve, a partial last batch (12050 =
# 20 x 600 + 50) and micro-batches of 64 (10 per batch, the last of 24)
args=(--tasks 2 --hidden 128,64 --epochs 2 --batch 600 --train-samples 12050 --test-samples 1000
      --method ewc --lambda 20 --momentum 0.5 --lr 0.05 --dropout 0.2 --dropout-input 0.1
      --eval-every 10 --fisher-samples 3000 --reduce fixed --micro-batch 64 --quiet)
timeout 300 "$train" "${args[@]}" --out "$work/ref" > /dev/null 2> "$work/ref.err"
check "reference run finishes" test -f "$work/ref/summary.json"
check "the summary records the fixed reduction and its micro-batch" \
    grep -q '"reduce":"fixed".*"micro_batch":64' "$work/ref/summary.json"

for np in 2 3 4 8; do
    timeout 300 mpirun -np $np --oversubscribe "$train" "${args[@]}" --out "$work/np$np" > /dev/null 2>&1
    check "$np ranks give bit-identical outputs to 1 rank" "$tools/same_outputs.py" "$work/ref" "$work/np$np"
done

stops=$(interrupt_until_done "$work/sig3" USR1 3 0.4 mpirun -np 3 --oversubscribe "$train" \
    --checkpoint-every 2 2> "$work/sig3.log")
check "SIGUSR1 under mpirun -np 3: stopped at least twice (got ${stops:-0})" test "${stops:-0}" -ge 2
check "mpirun stop + resume gives bit-identical outputs" "$tools/same_outputs.py" "$work/ref" "$work/sig3"

stops=$(interrupt_until_done "$work/kill" KILL 137 0.4 "$train" --checkpoint-every 2 2> "$work/kill.log")
check "SIGKILL at random steps: killed at least twice (got ${stops:-0})" test "${stops:-0}" -ge 2
check "SIGKILL + resume gives bit-identical outputs" "$tools/same_outputs.py" "$work/ref" "$work/kill"

# a resume that would change the reduction changes the results: refused, naming the flag
for change in "--reduce exact" "--reduce allreduce" "--micro-batch 32"; do
    # shellcheck disable=SC2086
    "$train" "${args[@]}" $change --out "$work/kill" --resume > /dev/null 2> "$work/refused.err"
    rc=$?
    check "resume with $change is refused (exit $rc)" \
        bash -c "[ $rc -eq 1 ] && grep -q -- '${change%% *}' '$work/refused.err'"
done

# --reduce auto (the default) resolves from model and batch only: exact at batch 100, fixed
# with the default micro-batch at batch 1000 for 784-400-400-10 (crossover 890, fixsum.h)
small=(--tasks 1 --epochs 1 --train-samples 2000 --test-samples 200 --fisher-samples 200 --quiet)
"$train" "${small[@]}" --batch 100 --out "$work/auto100" > /dev/null 2>&1
"$train" "${small[@]}" --batch 1000 --out "$work/auto1000" > /dev/null 2>&1
check "auto at batch 100 runs exact" grep -q '"reduce":"exact"' "$work/auto100/summary.json"
check "auto at batch 1000 runs fixed, micro-batch 84" \
    grep -q '"reduce":"fixed".*"micro_batch":84' "$work/auto1000/summary.json"
mpirun -np 3 --oversubscribe "$train" "${small[@]}" --batch 1000 --out "$work/auto1000np3" > /dev/null 2>&1
check "auto at batch 1000, 3 ranks: bit-identical to 1 rank" \
    "$tools/same_outputs.py" "$work/auto1000" "$work/auto1000np3"
# a checkpoint of an explicit --reduce exact run (as older versions wrote) resumes under the
# default auto where auto picks exact, with the same outputs
"$train" "${small[@]}" --batch 100 --reduce exact --out "$work/old" > /dev/null 2>&1
"$train" "${small[@]}" --batch 100 --out "$work/old" --resume > /dev/null 2> "$work/old.err"
check "an exact checkpoint resumes under auto where auto picks exact (exit $?)" \
    "$tools/same_outputs.py" "$work/auto100" "$work/old"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
