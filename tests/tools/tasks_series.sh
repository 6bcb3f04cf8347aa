# Sourced by the task-family shell tests (test_tasks_resume.sh, test_tasks_rotated.sh): the
# common run flags, interrupted runs, the frozen-heads check on a checkpoint, and one "series":
# a run at 1, 2 and 4 ranks and after SIGUSR1 / SIGKILL resumes, all bit-identical. Needs
# $train, $tools, $work, check and interrupt_until_done (tests/tools/check.sh).
common=(--hidden 256,128 --epochs 2 --batch 64 --train-samples 20050 --test-samples 1000
        --method ewc --lambda 20 --momentum 0.5 --lr 0.05 --dropout 0.1 --eval-every 25
        --fisher-samples 600 --quiet)

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
    stops=$(interrupt_until_done "$work/$name-sig" USR1 3 0.05 mpirun -np 2 --oversubscribe "$train" \
            2> "$work/$name-sig.log")
    check "$name: SIGUSR1 under mpirun -np 2 stopped at least twice (got ${stops:-0})" \
        test "${stops:-0}" -ge 2
    check "$name: SIGUSR1 + resume gives bit-identical outputs" \
        "$tools/same_outputs.py" "$work/$name-ref" "$work/$name-sig"
    args=("${common[@]}" "$@" --checkpoint-every 7)
    stops=$(interrupt_until_done "$work/$name-kill" KILL 137 0.05 "$train" 2> "$work/$name-kill.log")
    check "$name: SIGKILL at random steps, killed at least twice (got ${stops:-0})" \
        test "${stops:-0}" -ge 2
    check "$name: SIGKILL + resume gives bit-identical outputs" \
        "$tools/same_outputs.py" "$work/$name-ref" "$work/$name-kill"
}


# A resume in DIR with ARGS fails (status 1) naming FLAG as the difference.
refused() { # DIR FLAG ARGS...: a resume in DIR with ARGS fails naming FLAG
    local dir=$1 flag=$2; shift 2
    cp -r "$dir" "$work/refuse"
    "$train" "$@" --out "$work/refuse" --resume > "$work/refuse.log" 2>&1; local rc=$?
    rm -rf "$work/refuse"
    [ $rc -eq 1 ] && grep -q -- "different $flag" "$work/refuse.log"
}
