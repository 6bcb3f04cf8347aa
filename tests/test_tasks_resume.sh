#!/usr/bin/env bash
# Task families and scenarios end to end (tasks.h): for split + task, split + class and
# rotated + domain, the same outputs bit for bit at 1, 2 and 4 ranks and after runs stopped by
# SIGUSR1 or killed with SIGKILL and resumed; heads of other tasks that do not move in the
# checkpoint's anchors; the family flags recorded, a resume with other ones refused; flag
# errors; and --joint at 1 and 2 ranks.
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed

common=(--hidden 256,128 --epochs 2 --batch 64 --train-samples 20050 --test-samples 1000
        --method ewc --lambda 20 --momentum 0.5 --lr 0.05 --dropout 0.1 --eval-every 25
        --fisher-samples 600 --quiet)

# Interrupt a run three times, then let it finish; prints the number of interruptions. OUT,
# the signal, the expected exit status, the command. These runs are short, so each interruption
# waits until a new checkpoint (--checkpoint-every) shows that training is under way, then a
# random moment more (a signal during mpirun's start-up would not reach the ranks).
interrupt_until_done() {
    local out=$1 sig=$2 expect=$3; shift 3
    local stops=0 rc before
    for attempt in $(seq 1 40); do
        before=$(stat -c %y "$out/checkpoint.h5" 2> /dev/null)
        "$@" "${args[@]}" --out "$out" --resume > /dev/null 2>> "$out.err" &
        local pid=$!
        if [ "$stops" -ge 3 ]; then wait "$pid"; rc=$?; echo "$stops"; return "$rc"; fi
        for i in $(seq 3000); do
            [ "$(stat -c %y "$out/checkpoint.h5" 2> /dev/null)" != "$before" ] && break
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.02
        done
        sleep "$(awk -v s=$RANDOM 'BEGIN { print (s % 1000) / 20000 }')"
        kill -"$sig" "$pid" 2> /dev/null
        ( sleep 120 & sp=$!; trap 'kill $sp; exit 0' TERM; wait $sp; kill -9 "$pid" ) \
            > /dev/null 2>&1 &
        local watchdog=$!
        wait "$pid"; rc=$?
        kill "$watchdog" 2> /dev/null; wait "$watchdog" 2> /dev/null
        if [ "$rc" -eq 0 ]; then echo "$stops"; return 0; fi
        [ "$rc" -eq "$expect" ] || { echo "attempt $attempt exited $rc, expected $expect" >&2; return 1; }
        stops=$((stops + 1))
    done
    echo "not finished after 40 attempts" >&2; return 1
}

# The output rows of head j (units [j K, (j+1) K)) in the anchors of every later task equal
# those of task j's anchor (task scenario), or the unseen classes' rows stay at their values
# (class scenario): checked on the checkpoint of a finished run.
heads_frozen() { # DIR SCENARIO K
    /usr/bin/python3 - "$@" << 'EOF'
import sys, h5py, numpy as np
d, scenario, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
f = h5py.File(d + "/checkpoint.h5", "r")
T = int(f.attrs["tasks_done"])
last = max(int(n[5:]) for n in f["/model"].keys())
W = [np.concatenate([f[f"/tasks/{t:03d}/anchor/layer{last}/W"][()],
                     f[f"/tasks/{t:03d}/anchor/layer{last}/b"][()][:, None]], axis=1)
     for t in range(T)]
bad = 0
for t in range(1, T):
    if scenario == "task":   # every head but t is frozen during task t
        rows = [r for r in range(W[t].shape[0]) if not t * k <= r < (t + 1) * k]
    else:                    # class: the classes of later tasks are frozen
        rows = list(range((t + 1) * k, W[t].shape[0]))
    bad += not np.array_equal(W[t][rows].view(np.uint32), W[t - 1][rows].view(np.uint32))
    active = list(range(t * k, (t + 1) * k))
    bad += np.array_equal(W[t][active], W[t - 1][active])  # the task's own head did train
    fisher = f[f"/tasks/{t:03d}/fisher/layer{last}/W"][()]
    bad += np.any(fisher[rows] != 0)                        # no Fisher outside the active outputs
print("tasks", T, "output rows", W[0].shape[0], "bad", bad)
sys.exit(1 if bad or T < 2 else 0)
EOF
}

series() { # NAME ARGS...: the reference, 2 and 4 ranks, SIGUSR1 and SIGKILL series
    local name=$1; shift
    args=("${common[@]}" "$@")
    timeout 300 "$train" "${args[@]}" --out "$work/$name-ref" > "$work/$name-ref.log" 2>&1
    check "$name: reference run finishes" test -f "$work/$name-ref/summary.json"
    for np in 2 4; do
        timeout 300 mpirun -np $np --oversubscribe "$train" "${args[@]}" --out "$work/$name-np$np" \
            > /dev/null 2>&1
        check "$name: $np ranks give bit-identical outputs to 1 rank" \
            "$tools/same_outputs.py" "$work/$name-ref" "$work/$name-np$np"
    done
    args+=(--checkpoint-every 9)
    stops=$(interrupt_until_done "$work/$name-sig" USR1 3 mpirun -np 2 --oversubscribe "$train" \
            2> "$work/$name-sig.log")
    check "$name: SIGUSR1 under mpirun -np 2 stopped at least twice (got ${stops:-0})" \
        test "${stops:-0}" -ge 2
    check "$name: SIGUSR1 + resume gives bit-identical outputs" \
        "$tools/same_outputs.py" "$work/$name-ref" "$work/$name-sig"
    args=("${common[@]}" "$@" --checkpoint-every 7)
    stops=$(interrupt_until_done "$work/$name-kill" KILL 137 "$train" 2> "$work/$name-kill.log")
    check "$name: SIGKILL at random steps, killed at least twice (got ${stops:-0})" \
        test "${stops:-0}" -ge 2
    check "$name: SIGKILL + resume gives bit-identical outputs" \
        "$tools/same_outputs.py" "$work/$name-ref" "$work/$name-kill"
}

series split-task --task-family split --scenario task
check "split-task: 5 tasks of 2 classes by default, recorded in summary.json" \
    /usr/bin/python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); c = s["config"]
sys.exit(not (s["tasks_done"] == 5 and c["tasks"] == 5 and c["task_family"] == "split"
              and c["scenario"] == "task" and c["classes_per_task"] == 2))' "$work/split-task-ref/summary.json"
check "split-task: other heads do not move, no Fisher outside the head" \
    heads_frozen "$work/split-task-ref" task 2
check "split-task: high task-incremental accuracy" \
    /usr/bin/python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))
sys.exit(not s["average_accuracy"] > 0.85)' "$work/split-task-ref/summary.json"

series split-class --task-family split --scenario class --class-order seeded --tasks 4
check "split-class: unseen classes do not move" heads_frozen "$work/split-class-ref" class 2
check "split-class: a task not yet trained scores 0 (its classes are not active)" \
    /usr/bin/python3 -c 'import json, sys; R = json.load(open(sys.argv[1]))["accuracy_matrix"]
sys.exit(not all(R[t][j] == 0 for t in range(4) for j in range(t + 1, 4)))' \
    "$work/split-class-ref/summary.json"

series rotated-domain --task-family rotated --angles 0,60,120 --scenario domain
check "rotated-domain: three tasks from three angles, canonical angle list recorded" \
    /usr/bin/python3 -c 'import json, sys; c = json.load(open(sys.argv[1]))["config"]
sys.exit(not (c["tasks"] == 3 and c["angles"] == "0,60,120"))' "$work/rotated-domain-ref/summary.json"

# a resume with another family, scenario, class count, order or angle list is refused
refused() { # DIR FLAG ARGS...: a resume in DIR with ARGS fails naming FLAG
    local dir=$1 flag=$2; shift 2
    cp -r "$dir" "$work/refuse"
    "$train" "$@" --out "$work/refuse" --resume > "$work/refuse.log" 2>&1; local rc=$?
    rm -rf "$work/refuse"
    [ $rc -eq 1 ] && grep -q -- "different $flag" "$work/refuse.log"
}
s=("${common[@]}" --task-family split)
check "resume with another --scenario is refused" \
    refused "$work/split-task-ref" --scenario "${s[@]}" --scenario class
check "resume with another --classes-per-task is refused" \
    refused "$work/split-task-ref" --classes-per-task "${s[@]}" --scenario task --classes-per-task 1 --tasks 5
check "resume with another --class-order is refused" \
    refused "$work/split-class-ref" --class-order "${s[@]}" --scenario class --tasks 4
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
