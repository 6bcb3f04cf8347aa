#!/usr/bin/env bash
# One rank of a 4-rank run killed with SIGKILL at a random moment (rank 2, then rank 0, the
# checkpoint writer): mpirun must end the whole job within seconds, with no rank left waiting in a
# collective (no ewc-train process of the job left), and --resume must finish bit-identical to an
# uninterrupted run. The ranks are found as mpirun's children (or its orted's) named ewc-train,
# each rank by OMPI_COMM_WORLD_RANK in its environment. Usage: test_rank_kill.sh BUILD_DIR
set -uo pipefail
train=$(realpath "${EWC_TRAIN:-$1/ewc-train}")
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed
bound=20 # seconds from the kill to the end of mpirun

args=(--tasks 2 --hidden 128,64 --epochs 2 --batch 96 --train-samples 10050 --test-samples 1000
      --method ewc --lambda 20 --momentum 0.5 --dropout 0.2 --eval-every 40 --checkpoint-every 10
      --fisher-samples 2000 --quiet)
timeout 300 "$train" "${args[@]}" --out "$work/ref" > /dev/null 2>&1
check "reference run finishes" test -f "$work/ref/summary.json"

# ranks MPIRUN_PID: "rank pid" of every ewc-train process under mpirun (directly, or under orted)
ranks() {
    local p c
    for p in $(pgrep -P "$1"); do
        if [ "$(cat /proc/$p/comm 2> /dev/null)" = ewc-train ]; then c=$p; else c=$(pgrep -P "$p"); fi
        for c in $c; do
            [ "$(cat /proc/$c/comm 2> /dev/null)" = ewc-train ] || continue
            echo "$(tr '\0' '\n' < /proc/$c/environ | sed -n 's/^OMPI_COMM_WORLD_RANK=//p') $c"
        done
    done
}

for victim in 2 0; do
    out="$work/kill$victim"
    mpirun -np 4 --oversubscribe "$train" "${args[@]}" --out "$out" > "$out.log" 2>&1 &
    mpirun_pid=$!
    # a random moment of the run: after 1 to 25 new checkpoints (of about 42, every 10 steps;
    # polling may miss some, which only moves the moment later), then up to 0.3 s more
    want=$((RANDOM % 25 + 1)) seen=0 last=""
    for _ in $(seq 2400); do
        now=$(stat -c %y "$out/checkpoint.h5" 2> /dev/null)
        [ -n "$now" ] && [ "$now" != "$last" ] && { seen=$((seen + 1)); last=$now; }
        [ "$seen" -ge "$want" ] && break
        kill -0 "$mpirun_pid" 2> /dev/null || break
        sleep 0.05
    done
    sleep "$(awk -v s=$RANDOM 'BEGIN { print (s % 300) / 1000 }')"
    ranks "$mpirun_pid" | sort -n > "$out.ranks"
    pid=$(awk -v r=$victim '$1 == r { print $2 }' "$out.ranks")
    check "rank $victim: the 4 ranks are found ($(tr '\n' ' ' < "$out.ranks"))" \
        bash -c "[ \$(wc -l < '$out.ranks') -eq 4 ] && [ -n '$pid' ]"
    [ -n "$pid" ] || { kill "$mpirun_pid"; wait "$mpirun_pid"; continue; }
    start=$(date +%s.%N)
    kill -KILL "$pid"
    ( sleep 120; kill -9 "$mpirun_pid" ) > /dev/null 2>&1 &   # a hang becomes a failure, not a stuck test
    watchdog=$!
    wait "$mpirun_pid"; rc=$?
    took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    kill "$watchdog" 2> /dev/null; wait "$watchdog" 2> /dev/null
    check "rank $victim killed: mpirun ends the job in ${took} s (< $bound s) with a non-zero exit ($rc)" \
        awk -v t="$took" -v b=$bound -v rc=$rc 'BEGIN { exit !(t < b && rc != 0) }'
    # every rank gone, or a zombie (exited; reparented to init, which reaps it a little later),
    # within the same bound from the kill (a killed process may take a moment to exit)
    left() { # the ranks of the job still running, with their state
        local p
        for p in $(awk '{ print $2 }' "$out.ranks"); do
            grep -qs '^State:[[:space:]]*[^Z[:space:]]' /proc/$p/status &&
                echo "$p $(sed -n 's/^State:[[:space:]]*//p' /proc/$p/status)"
        done
    }
    while [ -n "$(left)" ] && awk -v a="$start" -v b="$(date +%s.%N)" -v t=$bound 'BEGIN { exit !(b - a < t) }'; do
        sleep 0.1
    done
    gone=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    check "rank $victim killed: no ewc-train process of the job is left running ${gone} s after the kill $(left)" \
        test -z "$(left)"
    /usr/bin/python3 -c 'import h5py, sys; s = h5py.File(sys.argv[1], "r")["/state"].attrs
print(s["task"], s["epoch"], s["step"])' "$out/checkpoint.h5" > "$out.position" 2>&1
    check "rank $victim killed: the checkpoint left is mid-run (task epoch step: $(cat "$out.position"))" \
        awk '$1 < 2 { ok = 1 } END { exit !ok }' "$out.position"
    timeout 300 mpirun -np 4 --oversubscribe "$train" "${args[@]}" --out "$out" --resume \
        > "$out.resume.log" 2>&1
    check "rank $victim killed: --resume at 4 ranks finishes bit-identical to the uninterrupted run" \
        "$tools/same_outputs.py" "$work/ref" "$out"
    check "rank $victim killed: no temporary checkpoint file left after the resume" \
        bash -c "! ls -a '$out' | grep -q '\.tmp'"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
