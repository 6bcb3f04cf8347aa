#!/usr/bin/env bash
# Issue 10: 3 "hosts" (network namespaces with their own names), 2 ranks each, started through an
# Open MPI launch agent, TCP only between hosts: bit-identity, SIGUSR1 stop + resume, killed rank
# and dead host, mixed BLAS kernels, tc rate limit. Exit 77 (ctest: skipped) without privileges.
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
build=${EWC_BUILD_DIR:-$1}
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
hosts=$tools/netns-hosts.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
py=/usr/bin/python3
[ -x "$py" ] || py=python3
. "$tools/check.sh" # $work, check, $passed, $failed

# ---- the hosts, or a skip ----------------------------------------------------------------------
# unique among running tests: two runs of this test (or ctest -j) cannot collide
cluster=${EWC_MULTIHOST_NAME:-ewcmh$$}
# (owned by this shell: if it is killed, the next "up" anywhere removes them)
if NETNS_HOSTS_OWNER=$$ "$hosts" up "$cluster" 3 2 > "$work/up.log" 2>&1; then
    :
elif [ $? -eq 77 ]; then
    echo "SKIPPED: $(tail -1 "$work/up.log")"
    exit 77
else
    cat "$work/up.log"
    exit 1
fi
trap '"$hosts" down "$cluster"; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP PIPE
mapfile -t host < <("$hosts" hosts "$cluster")

# Where namespaces cannot be made, the test must say so (exit 77, shown by ctest as skipped),
# never pass: the same script without root, without capabilities, in a user namespace, and
# without `ip`; each leaves nothing behind.
skip_rc() { # CMD...: this test run by CMD must report itself skipped and make no host
    local try=${cluster}s$((++tries))
    "$@" env EWC_TRAIN="$train" EWC_BUILD_DIR="$build" EWC_MULTIHOST_NAME="$try" \
        EWC_SOURCE_DIR="$work/src" bash "$work/src/tests/test_multihost.sh" "$build" \
        > "$work/skip.log" 2>&1
    local rc=$?
    cat "$work/skip.log"
    [ "$rc" -eq 77 ] && grep -q '^SKIPPED: ' "$work/skip.log" || { echo "exit $rc"; return 1; }
    local f
    for f in /run/netns/"$try"* /run/ewc-netns/"$try"*; do
        [ ! -e "$f" ] || { echo "left behind: $f"; return 1; }
    done
}
tries=0
# a copy of the scripts that any user can read (the source tree may be private to root)
mkdir -p "$work/src/tests/tools"
cp "$0" "$work/src/tests/"
cp "$tools/check.sh" "$hosts" "$work/src/tests/tools/"
chmod -R a+rX "$work/src"
chmod a+x "$work"
# no ip command: a PATH with only what the script needs before it looks for ip
mkdir "$work/bin"
for t in bash env mktemp rm tail dirname readlink cat grep head; do
    ln -s "$(command -v "$t")" "$work/bin/$t"
done
nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all)
check "not root: the test reports itself skipped (77)" skip_rc "${nobody[@]}"
check "root in a user namespace (no CAP_SYS_ADMIN on the machine): skipped" skip_rc unshare -U -r
check "no ip command: skipped" skip_rc env PATH="$work/bin"

# ---- the hosts are distinct ---------------------------------------------------------------------
# every rank reports its host name and network namespace: 3 names, 3 namespaces, 2 ranks each,
# none the namespace of this test (the machine's own network)
timeout 60 "$hosts" mpirun "$cluster" -np 6 sh -c 'echo "$(hostname) $(readlink /proc/self/ns/net)"' \
    > "$work/where" 2> "$work/where.err"
check "6 ranks on 3 hosts with distinct names and networks, 2 each: $(sort "$work/where" | uniq -c | tr -s ' \n' ' ')" \
    bash -c "[ \$(sort -u '$work/where' | wc -l) -eq 3 ] &&
             [ \$(cut -d' ' -f1 '$work/where' | sort -u | wc -l) -eq 3 ] &&
             [ \$(cut -d' ' -f2 '$work/where' | sort -u | wc -l) -eq 3 ] &&
             [ \$(sort '$work/where' | uniq -c | awk '\$1 == 2' | wc -l) -eq 3 ] &&
             ! grep -q '$(readlink /proc/self/ns/net)' '$work/where' &&
             [ \$(grep -c '^$cluster-h[0-2] net:' '$work/where') -eq 6 ]"

# ---- bit-identity across the hosts -------------------------------------------------------------
# what the ranks need travels with mpirun -x (the launch agent gives orted a clean environment,
# as a remote login does): the BLAS thread count and any OpenBLAS setting of this machine
fwd=()
for v in $(compgen -e | grep '^OPENBLAS_'); do fwd+=(-x "$v"); done
args=(--tasks 2 --hidden 100,100 --epochs 3 --batch 60 --train-samples 3000 --test-samples 500
      --method ewc --lambda 20 --momentum 0.5 --dropout 0.2 --eval-every 10 --fisher-samples 1000
      --quiet)
timeout 120 "$train" "${args[@]}" --out "$work/ref" > "$work/ref.log" 2>&1
check "reference run (1 rank) finishes" test -f "$work/ref/summary.json"

port_bytes() { # the bytes through each host's switch port, both directions, one line
    local i
    for i in 0 1 2; do
        ip netns exec "$cluster-sw" cat "/sys/class/net/p$i/statistics/rx_bytes" \
            "/sys/class/net/p$i/statistics/tx_bytes" | awk '{ s += $1 } END { printf "%d ", s }'
    done
}
read -ra before < <(port_bytes)
start=$(date +%s.%N)
timeout 180 "$hosts" mpirun "$cluster" -np 6 "${fwd[@]}" "$train" "${args[@]}" --out "$work/np6" \
    > "$work/np6.log" 2>&1
echo "# 2 x 3 ranks across the hosts: $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
read -ra after < <(port_bytes)
check "2 x 3 ranks across the hosts give bit-identical outputs to 1 rank" \
    "$tools/same_outputs.py" "$work/ref" "$work/np6"
check "the job's traffic went through every host's link (bytes: ${before[*]} -> ${after[*]})" \
    bash -c "for i in 0 1 2; do b=(${before[*]}); a=(${after[*]});
                 [ \$((a[i] - b[i])) -gt 1000000 ] || exit 1; done"

# ---- SIGUSR1 to mpirun: every rank on every host stops at one step, then --resume -------------
ewc_pids() { # HOST: the ewc-train processes on HOST
    local pid
    for pid in $("$hosts" pids "$1"); do
        [ "$(cat "/proc/$pid/comm" 2> /dev/null)" = ewc-train ] && echo "$pid"
    done
}
running() { # how many ranks run on the hosts
    local h; for h in "${host[@]}"; do ewc_pids "$h"; done | wc -l
}
wait_progress() { # DIR PID [S]: wait until the run has finished its first task (or all its
                  # ranks have run for S seconds); fail if it ends first
    for i in $(seq 600); do
        [ -f "$1/accuracy.csv" ] && return 0
        [ -n "${3:-}" ] && [ "$(running)" -eq 6 ] && { sleep "$3"; return 0; }
        kill -0 "$2" 2> /dev/null || return 1
        sleep 0.1
    done
    return 1
}
placement() { # where the ranks of the running job are: "host:count:hostname,..." per host
    local h pid
    for h in "${host[@]}"; do
        printf '%s:%s:' "$h" "$(ewc_pids "$h" | wc -l)"
        for pid in $(ewc_pids "$h"); do printf '%s,' "$(nsenter -t "$pid" -u hostname)"; done
        printf ' '
    done
}

watchdog() { # PID SECONDS: kill -9 PID after SECONDS, leaving $work/hung.PID (a hang fails)
    ( sleep "$2" & sp=$!; trap 'kill $sp; exit 0' TERM; wait $sp; touch "$work/hung.$1"
      kill -9 "$1" ) > /dev/null 2>&1 &
}
# (mpirun itself in the background: `timeout` would take the signal for itself)
"$hosts" mpirun "$cluster" -np 6 "${fwd[@]}" "$train" "${args[@]}" --out "$work/sig" \
    > "$work/sig.log" 2> "$work/sig.err" &
pid=$!
watchdog "$pid" 180; guard=$!
wait_progress "$work/sig" "$pid"
where=$(placement)
kill -USR1 "$pid"
wait "$pid"; rc=$?
kill "$guard" 2> /dev/null; wait "$guard" 2> /dev/null
check "the running ranks sit 2 on each host, each under its host's name ($where)" \
    bash -c "for h in ${host[*]}; do echo '$where' | grep -q \"\$h:2:\$h,\$h, \" || exit 1; done"
check "SIGUSR1 to mpirun: the job exits 3 (status $rc)" test "$rc" -eq 3 -a ! -e "$work/hung.$pid"
check "the stop is announced once, naming the step" \
    test "$(grep -c 'stopped by a signal at task' "$work/sig.err")" -eq 1
check "the checkpoint holds the announced step, mid-run" \
    "$py" -c 'import h5py, re, sys
a = h5py.File(sys.argv[1] + "/checkpoint.h5", "r")["/state"].attrs
m = re.search(r"at task (\d+), epoch (\d+), step (\d+)", open(sys.argv[1] + ".err").read())
print("checkpoint", a["task"], a["step"], "announced", m.groups())
assert (int(a["task"]), int(a["step"])) == (int(m.group(1)), int(m.group(3)))
assert (int(a["task"]), int(a["step"])) != (0, 0) and not a.get("done", False)' "$work/sig"
check "no rank is left on any host" bash -c "sleep 1; for h in ${host[*]}; do
    for p in \$('$hosts' pids \$h); do [ \"\$(cat /proc/\$p/comm 2>/dev/null)\" != ewc-train ] || exit 1; done; done"
timeout 180 "$hosts" mpirun "$cluster" -np 6 "${fwd[@]}" "$train" "${args[@]}" --out "$work/sig" \
    --resume > "$work/sig.log" 2>> "$work/sig.err"
check "--resume across the hosts finishes bit-identically to 1 rank" \
    "$tools/same_outputs.py" "$work/ref" "$work/sig"

# ---- failures end the job, never hang it ------------------------------------------------------
# a rank killed on host 1 (not the one mpirun runs on); then a whole host dying (host 2: its
# orted and ranks killed at once, as a machine that loses power)
fail_run() { # OUT VICTIMS-COMMAND: start a job, kill the victims mid-run, report how it ended
    local out=$1 victims=$2
    # more epochs than the reference run, so the job is still running when the victims die (on
    # a quiet machine the reference job takes a few seconds: a kill a second in could miss it)
    "$hosts" mpirun "$cluster" -np 6 "${fwd[@]}" "$train" "${args[@]}" --epochs 10 --out "$out" \
        > "$out.log" 2>&1 &
    local job=$!
    wait_progress "$out" "$job" 1 || { echo "the job did not get going"; return 1; }
    local pids; pids=$(eval "$victims")
    [ -n "$pids" ] || { echo "nothing to kill"; return 1; }
    local t0; t0=$(date +%s.%N)
    # shellcheck disable=SC2086 # one pid a word
    kill -KILL $pids
    # a hang is a failure: the job has 60 s to end after the kill
    watchdog "$job" 60; local guard=$!
    wait "$job"; local rc=$?
    kill "$guard" 2> /dev/null; wait "$guard" 2> /dev/null
    echo "exit $rc after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
    [ ! -e "$work/hung.$job" ] || { echo "hung: killed by the watchdog"; return 1; }
    [ "$rc" -ne 0 ] || return 1
    local h p
    for i in $(seq 50); do # every rank on every host is gone within 5 s
        local left=0
        for h in "${host[@]}"; do
            for p in $("$hosts" pids "$h"); do
                [ "$(cat "/proc/$p/comm" 2> /dev/null)" = ewc-train ] && left=$((left + 1))
            done
        done
        [ "$left" -eq 0 ] && return 0
        sleep 0.1
    done
    echo "$left ranks still running"; return 1
}
check "SIGKILL to one rank on ${host[1]} ends the job on every host, without a hang" \
    fail_run "$work/kill1" "ewc_pids ${host[1]} | head -1"
check "a host dying (every process on ${host[2]} killed) ends the job, without a hang" \
    fail_run "$work/kill2" "'$hosts' pids ${host[2]}"

# ---- a host of another CPU kind -----------------------------------------------------------------
# emulated by forcing host 2's ranks onto other OpenBLAS kernels (AVX vs AVX2): the job must stop
# at start-up with one line naming both hosts, since its results would not be bit-identical
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
    "$hosts" mpirun "$cluster" -np 4 "${fwd[@]}" "$train" --blas-core Haswell "${args[@]}" \
        --out "$work/het" : -np 2 "${fwd[@]}" "$train" --blas-core Sandybridge "${args[@]}" \
        --out "$work/het" > "$work/het.log" 2>&1 &
    pid=$!
    watchdog "$pid" 120; guard=$!
    wait "$pid"; rc=$?
    kill "$guard" 2> /dev/null; wait "$guard" 2> /dev/null
    check "different BLAS kernels on ${host[2]} stop the job (status $rc) with one line naming both hosts" \
        bash -c "[ $rc -ne 0 ] && [ ! -e '$work/hung.$pid' ] &&
                 [ \$(grep -c '^ewc-train: error: ranks run different OpenBLAS cores' '$work/het.log') -eq 1 ] &&
                 grep -q 'on ${host[0]} runs Haswell, rank 4 on ${host[2]} runs Sandybridge' '$work/het.log'"
else
    echo "# no AVX2 and FMA here: the check of mixed BLAS kernels across hosts is left out"
fi

# ---- links limited with tc tbf -----------------------------------------------------------------
# 10 Mbit/s each way: 512 KiB messages between two hosts must take at least their bytes, less
# the one burst a token bucket may pass at once (64 KiB here), over the rate; without the limit
# they must go several times faster (on this loaded 2-core machine they reached 14 - 200 MB/s)
pingpong=$build/bench_pingpong
bandwidth() { # the MB/s of 512 KiB messages between host 0 and host 1
    timeout 60 "$hosts" mpirun "$cluster" -np 2 --map-by node "$pingpong" --min-bytes 524288 \
        --max-bytes 524288 --reps 2 --trips 2 --json - 2> "$work/pp.err" | "$py" -c 'import json, sys
r = json.load(sys.stdin); assert r["from"] != r["to"], r
print(round(r["sizes"][-1]["bytes"] / r["sizes"][-1]["median_s"] / 1e6, 3))'
}
"$hosts" rate "$cluster" 10mbit
limited=$(bandwidth)
"$hosts" rate "$cluster" off
free=$(bandwidth)
bound=$(awk 'BEGIN { printf "%.3f", 1.25 * 524288 / (524288 - 65536) }')
check "tbf at 10 Mbit/s holds ping-pongs to at most $bound MB/s (got ${limited:-none} MB/s; unlimited ${free:-none} MB/s)" \
    awk -v l="${limited:-0}" -v f="${free:-0}" -v b="$bound" 'BEGIN { exit !(l > 0.25 && l <= b && f > 3 * l) }'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
