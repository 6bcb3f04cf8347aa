# Sourced by the shell tests: a scratch directory $work (kept when KEEP is set) and check NAME CMD...,
# which runs CMD, counts it in $passed or $failed and prints "ok - NAME" or "not ok - NAME" with
# the command's output indented; and interrupt_until_done (below) for stop/resume series.
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
passed=0 failed=0
check() { # NAME COMMAND...: run a check, count and report it
    local name=$1; shift
    if "$@" > "$work/check.log" 2>&1; then
        passed=$((passed + 1)); echo "ok - $name"
    else
        failed=$((failed + 1)); echo "not ok - $name"; sed 's/^/    /' "$work/check.log"
    fi
}

# interrupt_until_done OUT SIG EXPECT MAX_DELAY CMD...: run CMD "${args[@]}" --out OUT --resume
# (args: the caller's flag array) and, once it has written a new checkpoint (or after 120 s),
# wait a random moment below MAX_DELAY seconds and send SIG, so every stop lands after some
# progress; EXPECT is the exit status of an interrupted run. After 3 interruptions the run goes
# to the end. Prints the number of interruptions; fails on any other exit status, on a run that
# does not exit within 120 s of its signal, or after 40 attempts.
interrupt_until_done() {
    local out=$1 sig=$2 expect=$3 max_delay=$4; shift 4
    local stops=0 rc before
    for attempt in $(seq 1 40); do
        before=$(stat -c %y "$out/checkpoint.h5" 2> /dev/null)
        "$@" "${args[@]}" --out "$out" --resume > /dev/null 2>> "$out.err" &
        local pid=$!
        if [ "$stops" -ge 3 ]; then wait "$pid"; rc=$?; echo "$stops"; return "$rc"; fi
        for i in $(seq 6000); do
            [ "$(stat -c %y "$out/checkpoint.h5" 2> /dev/null)" != "$before" ] && break
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.02
        done
        sleep "$(awk -v s=$RANDOM -v m="$max_delay" 'BEGIN { print m * (s % 1000) / 1000 }')"
        kill -"$sig" "$pid" 2> /dev/null
        # a watchdog turns a hang into a failure (its sleep dies with it, and its output is not
        # the $(...) pipe, which would otherwise stay open until the sleep ends)
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
