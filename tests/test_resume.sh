#!/usr/bin/env bash
# Issue "resume": the same results, bit for bit, for 1, 2 and 4 ranks, and after runs stopped by
# signals or killed with SIGKILL at arbitrary points and resumed with --resume. Then the same
# for a run with a validation split and early stopping (the best-so-far state is resumed too).
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed

# A small experiment that still takes a few seconds, so that signals land mid-task: every
# stateful feature is on (EWC penalty, momentum, both dropouts, a curve, a partial last batch).
args=(--tasks 3 --hidden 256,128 --epochs 2 --batch 96 --train-samples 20050 --test-samples 1000
      --method ewc --lambda 20 --momentum 0.5 --lr 0.05 --dropout 0.2 --dropout-input 0.1
      --eval-every 40 --fisher-samples 3000 --quiet)
base_args=("${args[@]}")
start=$(date +%s.%N)
timeout 300 "$train" "${args[@]}" --out "$work/ref" > /dev/null 2>&1
ref_seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
check "reference run finishes" test -f "$work/ref/summary.json"

for np in 2 4; do
    timeout 300 mpirun -np $np --oversubscribe "$train" "${args[@]}" --out "$work/np$np" >/dev/null 2>&1
    check "$np ranks give bit-identical outputs to 1 rank" "$tools/same_outputs.py" "$work/ref" "$work/np$np"
done

# The stop series (interrupt_until_done, tests/tools/check.sh) signal each attempt only after it
# has written a new checkpoint: a signal during mpirun's start-up would not reach the ranks.
# --checkpoint-every (an execution flag: the results do not change) makes that early, so the
# stops land mid-task.
stops=$(interrupt_until_done "$work/sig1" USR1 3 0.5 "$train" --checkpoint-every 13 \
    2> "$work/sig1.log")
check "SIGUSR1 at random steps, 1 rank: stopped at least twice (got ${stops:-0})" test "${stops:-0}" -ge 2
check "SIGUSR1 + resume gives bit-identical outputs" "$tools/same_outputs.py" "$work/ref" "$work/sig1"

# under mpirun: SIGUSR1 to mpirun reaches every rank; all stop at the same step, none hangs
stops=$(interrupt_until_done "$work/sig2" USR1 3 0.5 mpirun -np 2 --oversubscribe "$train" \
    --checkpoint-every 13 2> "$work/sig2.log")
check "SIGUSR1 under mpirun -np 2: stopped at least twice (got ${stops:-0})" test "${stops:-0}" -ge 2
check "mpirun stop + resume gives bit-identical outputs" "$tools/same_outputs.py" "$work/ref" "$work/sig2"
check "every stop was announced once, naming the step" \
    bash -c "[ \$(grep -c 'stopped by a signal at task' '$work/sig2.err') -eq ${stops:-0} ]"

# SIGKILL gives no chance to save: frequent mid-task checkpoints bound the lost work, and a
# kill during a checkpoint write must leave the previous complete checkpoint in place.
mkdir -p "$work/kill"
touch "$work/kill/checkpoint.h5.tmp.999999.1"   # a stale temp from an earlier crash
args+=(--checkpoint-every 13)
stops=$(interrupt_until_done "$work/kill" KILL 137 0.5 "$train" 2> "$work/kill.log")
check "SIGKILL at random steps: killed at least twice (got ${stops:-0})" test "${stops:-0}" -ge 2
check "SIGKILL + resume gives bit-identical outputs" "$tools/same_outputs.py" "$work/ref" "$work/kill"
check "stale temporary checkpoint files are cleaned up" \
    bash -c "! ls '$work/kill' | grep -q 'checkpoint.h5.tmp'"

# a second signal exits at once (status 128 + signal), leaving a readable checkpoint
"$train" "${args[@]}" --out "$work/twice" > /dev/null 2>&1 &
pid=$!
sleep "$(awk -v t="$ref_seconds" 'BEGIN { print t / 3 }')"; kill -TERM $pid; kill -TERM $pid
wait $pid; rc=$?
check "a second signal exits at once (status $rc)" bash -c "[ $rc -eq 143 ] || [ $rc -eq 3 ]"

# Validation split and early stopping: patience 1 on a noisy run ends tasks early at different
# steps, so stops and kills land before, at and after the early ends and the restores; the
# resumed runs must stop each task at the same step with the same best parameters.
args=("${base_args[@]}" --validation 2000 --patience 1 --val-every 20)
start=$(date +%s.%N)
timeout 300 "$train" "${args[@]}" --out "$work/vref" > /dev/null 2>&1
ref_seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
check "validation reference run finishes" test -f "$work/vref/validation_accuracy.csv"
check "some task stopped early" grep -q '"stopped_early": true' "$work/vref/summary.json"
for np in 2 4; do
    timeout 300 mpirun -np $np --oversubscribe "$train" "${args[@]}" --out "$work/vnp$np" >/dev/null 2>&1
    check "validation, $np ranks: bit-identical outputs to 1 rank" \
        "$tools/same_outputs.py" "$work/vref" "$work/vnp$np"
done
stops=$(interrupt_until_done "$work/vsig" USR1 3 0.5 mpirun -np 2 --oversubscribe "$train" \
    --checkpoint-every 7 2> "$work/vsig.log")
check "validation, SIGUSR1 under mpirun -np 2: stopped at least twice (got ${stops:-0})" \
    test "${stops:-0}" -ge 2
check "validation, stop + resume gives bit-identical outputs" \
    "$tools/same_outputs.py" "$work/vref" "$work/vsig"
args+=(--checkpoint-every 7)
stops=$(interrupt_until_done "$work/vkill" KILL 137 0.5 "$train" 2> "$work/vkill.log")
check "validation, SIGKILL at random steps: killed at least twice (got ${stops:-0})" \
    test "${stops:-0}" -ge 2
check "validation, SIGKILL + resume gives bit-identical outputs" \
    "$tools/same_outputs.py" "$work/vref" "$work/vkill"

# Adam (--optimizer adam, with the implicit EWC step): its moments and step count are in the
# checkpoint and reset at each task's start; 1, 2, 4 ranks and SIGKILL + resume, bit for bit.
args=(--tasks 2 --hidden 256,128 --epochs 2 --batch 96 --train-samples 20050 --test-samples 1000
      --method ewc --lambda 20 --penalty-step implicit --optimizer adam --lr 0.001 --dropout 0.2
      --eval-every 40 --fisher-samples 3000 --quiet)
start=$(date +%s.%N)
timeout 300 "$train" "${args[@]}" --out "$work/aref" > /dev/null 2>&1
ref_seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
check "adam reference run finishes" test -f "$work/aref/summary.json"
for np in 2 4; do
    timeout 300 mpirun -np $np --oversubscribe "$train" "${args[@]}" --out "$work/anp$np" >/dev/null 2>&1
    check "adam, $np ranks: bit-identical outputs to 1 rank" \
        "$tools/same_outputs.py" "$work/aref" "$work/anp$np"
done
# a short run would mostly be killed during its start-up: kill -9 only after a new checkpoint
# shows that training has moved on, and record the Adam step count each resume starts from
args+=(--checkpoint-every 5)
kill_after_progress() { # OUT: 3 kills at random moments after progress, then run to the end
    local out=$1 rc before
    for attempt in 1 2 3 4; do
        before=$(stat -c %y "$out/checkpoint.h5" 2> /dev/null)
        "$train" "${args[@]}" --out "$out" --resume > /dev/null 2>> "$out.err" &
        local pid=$!
        if [ "$attempt" -eq 4 ]; then wait "$pid"; return; fi
        for i in $(seq 600); do
            [ "$(stat -c %y "$out/checkpoint.h5" 2> /dev/null)" != "$before" ] && break
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.1
        done
        sleep "$(awk -v s=$RANDOM 'BEGIN { print (s % 1000) / 2000 }')"
        kill -KILL "$pid" 2> /dev/null; wait "$pid"; rc=$?
        [ "$rc" -eq 137 ] || { echo "attempt $attempt exited $rc, expected 137"; return 1; }
        /usr/bin/python3 -c 'import h5py, sys; f = h5py.File(sys.argv[1], "r")
print(f["/state"].attrs["task"], f["/state"].attrs["step"], f["/state/adam"].attrs["step"])' \
            "$out/checkpoint.h5" >> "$out.steps" || return 1
    done
}
check "adam, SIGKILL after progress and resume finishes" kill_after_progress "$work/akill"
check "adam, some resume started from a mid-task Adam state (task, step, adam step: \
$(tr '\n' ';' < "$work/akill.steps" 2> /dev/null))" \
    awk '$3 > 0 { found = 1 } END { exit !found }' "$work/akill.steps"
check "adam, SIGKILL + resume gives bit-identical outputs" \
    "$tools/same_outputs.py" "$work/aref" "$work/akill"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
