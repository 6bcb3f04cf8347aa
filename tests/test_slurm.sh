#!/usr/bin/env bash
# The real Slurm test: a single-node Slurm on localhost (own munged, slurmctld, slurmd; everything in a
# temp dir) runs a small sweep as a job array; one job is signalled mid-run, checkpoints, requeues
# and resumes; every point must then match a local run bit for bit.  Usage: test_slurm.sh BUILD_DIR
set -euo pipefail

build="${1:?usage: test_slurm.sh BUILD_DIR}"
src="${EWC_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
train="${EWC_TRAIN:-$build/ewc-train}"
launch="$src/launch"
h5same="$src/tests/tools/h5same.py"
[ -x "$train" ] || { echo "test_slurm: no trainer at '$train' (build it, or set EWC_TRAIN)" >&2; exit 1; }

pass=0 fail=0
ok() { echo "ok:   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

# ---- Slurm and munge must be there: install them if we can, skip (loudly) only if we cannot ----------
have_slurm() { command -v slurmctld && command -v slurmd && command -v munged && command -v sbatch; } >/dev/null
if ! have_slurm && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "test_slurm: Slurm is not installed; trying apt-get install slurm-wlm munge" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge \
        >/dev/null 2>&1 || true
fi
if ! have_slurm; then
    echo "SKIPPED: slurmctld/slurmd/munged are not installed and could not be installed" \
         "(apt-get install slurm-wlm munge); the Slurm test did not run"
    finish
fi
[ "$(id -u)" -eq 0 ] || { echo "test_slurm: must run as root (slurmd starts the jobs as their users)" >&2; exit 1; }

# ---- a private single-node cluster --------------------------------------------------------------------
tmp=$(mktemp -d /tmp/ewc-slurm.XXXXXX)
chmod 755 "$tmp"
mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/log"
export SLURM_CONF="$tmp/slurm.conf"
# stop_daemon PIDFILE: SIGTERM, wait up to 15 s, then SIGKILL (only the daemons this test started)
# shellcheck disable=SC2317  # called by the trap
stop_daemon() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    echo "test_slurm: $1: pid $pid did not stop on SIGTERM, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317  # called by the trap
stop_all() {
    set +e
    if [ -f "$tmp/slurmctld.pid" ]; then scancel --full --signal=KILL --quiet -u "$(id -un)" 2>/dev/null; sleep 1; fi
    # slurmd first, munged last: slurmctld talks to both while it shuts down
    stop_daemon "$tmp/slurmd.pid"
    stop_daemon "$tmp/slurmctld.pid"
    stop_daemon "$tmp/munge/munged.pid"
    if [ "$fail" -eq 0 ] && [ -z "${EWC_TEST_KEEP:-}" ]; then rm -rf "$tmp"; else echo "test_slurm: kept $tmp (logs in $tmp/log)"; fi
}
trap stop_all EXIT

host=$(hostname -s)   # slurmd knows itself by the short name; addresses are pinned to localhost
mem=$(awk '/^MemTotal:/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)   # MB, as free -m
port=$((20000 + RANDOM % 10000))
if command -v ss >/dev/null; then
    while ss -Hltn | awk '{ print $4 }' | grep -qE ":($port|$((port + 1)))\$"; do port=$((port + 2)); done
fi
head -c 1024 /dev/urandom > "$tmp/munge/munge.key"
chmod 700 "$tmp/munge"
chmod 600 "$tmp/munge/munge.key"
munged --force --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/socket" \
    --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/log/munged.log" --seed-file="$tmp/munge/seed"
chmod 755 "$tmp/munge"   # clients (sbatch, srun) must reach the socket

# No cgroups: proctrack/linuxproc + task/none work in containers and VMs without a cgroup setup.
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
cat > "$SLURM_CONF" <<EOF
ClusterName=ewctest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/socket,cred_expire=10
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
JobRequeue=1
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
KillWait=10
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
state=""
for _ in $(seq 150); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
    [ "$state" = "idle" ] && break
    sleep 0.2
done
if [ "$state" != "idle" ]; then
    bad "Slurm is up: node $host is '${state:-unknown}', not idle after 30 s; slurmd log:"
    tail -n 20 "$tmp/log/slurmd.log" "$tmp/log/slurmctld.log" 2>/dev/null || true
    finish
fi
ok "Slurm is up: node $host idle (slurm.conf in $tmp)"

# ---- the sweep: 2 methods x 2 seeds, 5 tasks of a small problem, 2 ranks per run under Slurm -----------
cat > "$tmp/sweep.ini" <<EOF
# test sweep for test_slurm.sh
[fixed]
data = ${EWC_TEST_DATA:-/usr/share/datasets/fashion-mnist}
tasks = 5
hidden = 400,400
train-samples = 8000
test-samples = 500
eval-every = 50
lambda = 10
penalty-step = implicit

[grid]
method = sgd ewc
seed = 1 2
EOF
sweep() { "$launch/ewc-sweep" "$@"; }
point_dirs() { sweep list "$tmp/sweep.ini" --root "$1" | awk 'NR > 1 && NF == 3 && $3 ~ /=/ { print $3 }'; }

t0=$SECONDS
sweep run "$tmp/sweep.ini" --root "$tmp/local" --train "$train" > "$tmp/log/local.txt" 2>&1 ||
    { bad "local reference runs (ewc-sweep run), see below"; cat "$tmp/log/local.txt"; finish; }
ok "local reference runs in $((SECONDS - t0)) s"

t0=$SECONDS
out=$(sweep submit "$tmp/sweep.ini" --root "$tmp/slurm" --train "$train" --ranks 2 --throttle 2 -- --time=30 2>&1) ||
    { bad "ewc-sweep submit: $out"; finish; }
echo "$out"
array=$(tail -n 1 "$tmp/slurm/slurm/jobs")
check "ewc-sweep submit made an array job ($array)" test -n "$array"
mapfile -t points < <(point_dirs "$tmp/slurm")
check "the sweep has 4 points" test "${#points[@]}" -eq 4

# Once the trainer of a running point has started (its banner is in the log), send it the time-limit warning
# the way Slurm's --signal=B:USR1@120 does: to the batch shell only, which forwards it to srun and the
# ranks. Only when no task of the array is pending: Slurm 22.05 answers a signal to an array task
# that has pending siblings with "Job can not be altered now" after delivering it, and scancel then
# retries, delivering it again and again (also to the requeued job).
victim="" vi=""
for _ in $(seq 6000); do   # up to 10 min: the sanitizer build on a busy machine is slow
    if [ -z "$(squeue -h -r -j "$array" -t PENDING -o %i 2>/dev/null)" ]; then
        while read -r id st; do
            i=${id#*_}
            [ "$st" = RUNNING ] && grep -q '^ewc-train: 5 tasks' "$tmp/slurm/slurm/$i.log" 2>/dev/null &&
                ! grep -q '"tasks_done": 5,' "$tmp/slurm/${points[i]}/summary.json" 2>/dev/null &&
                { victim=$id vi=$i; break; }
        done < <(squeue -h -r -j "$array" -o '%i %T' 2>/dev/null)
    fi
    if [ -n "$victim" ]; then
        scancel --batch --signal=USR1 "$victim" || victim=""
        break
    fi
    sleep 0.1
done
check "signalled job ${victim:-?} mid-run (scancel --batch --signal=USR1)" test -n "$victim"

done_all=0
for _ in $(seq 900); do   # at most ~3 minutes
    if [ "$(sweep list "$tmp/sweep.ini" --root "$tmp/slurm" | tail -n 1)" = "4 points: 4 done" ]; then
        done_all=1
        break
    fi
    sleep 0.2
done
check "every point completed under Slurm ($((SECONDS - t0)) s)" test "$done_all" -eq 1
sweep list "$tmp/sweep.ini" --root "$tmp/slurm"

log0="$tmp/slurm/slurm/${vi:-0}.log"
check "job $victim: trainer stopped with a checkpoint and exited 3" grep -q "stopped by a signal" "$log0"
check "job $victim: requeued itself" grep -q "stopped with a checkpoint (exit 3): requeueing job" "$log0"
check "job $victim: restarted and resumed from its checkpoint" \
    bash -c "grep -q 'start (restart 1)' '$log0' && grep -q 'resuming from' '$log0'"
restarts=$(scontrol show job "$victim" 2>/dev/null | grep -o 'Restarts=[0-9]*' || true)
check "job $victim: Slurm counted one restart ($restarts)" test "$restarts" = "Restarts=1"
for i in 0 1 2 3; do
    [ "$i" = "${vi:-}" ] && continue
    r=$(scontrol show job "${array}_$i" 2>/dev/null | grep -o 'Restarts=[0-9]*' || true)
    check "job ${array}_$i: ran once, finished, was not requeued ($r)" \
        bash -c "[ \$(grep -c 'ewc-sbatch.*: start' '$tmp/slurm/slurm/$i.log') -eq 1 ] &&
                 grep -q 'run finished (exit 0)' '$tmp/slurm/slurm/$i.log' && [ '$r' = Restarts=0 ]"
done

for p in "${points[@]}"; do
    a="$tmp/slurm/$p" b="$tmp/local/$p"
    check "$p: ran on 2 ranks under srun" grep -q '"ranks": 2' "$a/summary.json"
    check "$p: accuracy.csv identical to the local run" cmp -s "$a/accuracy.csv" "$b/accuracy.csv"
    check "$p: curve.csv identical to the local run" cmp -s "$a/curve.csv" "$b/curve.csv"
    check "$p: checkpoint.h5 datasets identical to the local run" \
        /usr/bin/python3 "$h5same" "$a/checkpoint.h5" "$b/checkpoint.h5"
done

out=$(sweep submit "$tmp/sweep.ini" --root "$tmp/slurm" --train "$train" 2>&1)
check "relaunching the finished sweep submits nothing" grep -q "nothing to submit" <<<"$out"

# The other launcher: mpirun inside the allocation (2 ranks); the batch shell forwards the warning
# to mpirun, which forwards it to the ranks. Same command as point 0, so it must match that point.
mapfile -t cmd < <(grep -v -x -e --resume -e --out -e "$tmp/slurm/${points[0]}" "$tmp/slurm/slurm/0.cmd")
job=$(EWC_LAUNCHER=mpirun sbatch --parsable --ntasks=2 --output="$tmp/log/mpirun.log" \
      "$launch/ewc-sbatch.sh" "${cmd[@]}" --out "$tmp/mpirun")
signalled=0
for _ in $(seq 6000); do   # up to 10 min: the sanitizer build on a busy machine is slow
    if grep -q '^ewc-train: 5 tasks' "$tmp/log/mpirun.log" 2>/dev/null; then
        scancel --batch --signal=USR1 "$job" && signalled=1
        break
    fi
    sleep 0.1
done
st=""
for _ in $(seq 900); do
    st=$(scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z]*' || true)
    [ "$st" = JobState=COMPLETED ] || [ "$st" = JobState=FAILED ] && break
    sleep 0.2
done
check "mpirun launcher: job $job signalled mid-run, requeued, completed ($st)" \
    bash -c "[ $signalled -eq 1 ] && [ '$st' = JobState=COMPLETED ] && grep -q 'requeueing job $job' '$tmp/log/mpirun.log' &&
             grep -q 'start (restart 1)' '$tmp/log/mpirun.log'"
check "mpirun launcher: 2 ranks, results identical to the local run" \
    bash -c "grep -q '\"ranks\": 2' '$tmp/mpirun/summary.json' && cmp -s '$tmp/mpirun/accuracy.csv' '$tmp/local/${points[0]}/accuracy.csv' &&
             /usr/bin/python3 '$h5same' '$tmp/mpirun/checkpoint.h5' '$tmp/local/${points[0]}/checkpoint.h5' >/dev/null"

# The final JobState=... of JOB, polling every 0.2 s at most N times (empty if still running).
end_state() {
    local st=""
    for _ in $(seq "$2"); do
        st=$(scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z]*' || true)
        case "$st" in JobState=FAILED|JobState=COMPLETED|JobState=CANCELLED) break ;; esac
        sleep 0.2
    done
    echo "$st"
}

# The OpenBLAS core choice under srun: a forced core re-executes each rank before MPI_Init, and
# the 2-rank job matches a single process on that core bit for bit.
blas=(--tasks 2 --hidden 64 --train-samples 1200 --test-samples 400 --batch 60 --blas-core Sandybridge)
job=$(sbatch --parsable --ntasks=2 --output="$tmp/log/blas.log" "$launch/ewc-sbatch.sh" "$train" \
      "${blas[@]}" --out "$tmp/blas")
"$train" "${blas[@]}" --quiet --out "$tmp/blas-local" > "$tmp/log/blas-local.log" 2>&1
st=$(end_state "$job" 600)
check "srun, --blas-core Sandybridge: 2 ranks re-executed on the core, identical to one process ($st)" \
    bash -c "[ '$st' = JobState=COMPLETED ] && grep -q '^BLAS: OpenBLAS core Sandybridge' '$tmp/log/blas.log' &&
             grep -q '\"ranks\": 2' '$tmp/blas/summary.json' && grep -q '\"blas_core\": \"Sandybridge\"' '$tmp/blas/summary.json' &&
             /usr/bin/python3 '${h5same%/*}/same_outputs.py' '$tmp/blas' '$tmp/blas-local' >/dev/null"

# A run that fails (exit 1) must not be requeued.
job=$(sbatch --parsable --output="$tmp/log/bad.log" "$launch/ewc-sbatch.sh" "$train" --hidden bad --out "$tmp/bad")
st=$(end_state "$job" 300)
check "a failing run ends FAILED ($st)" test "$st" = JobState=FAILED
check "a failing run is not requeued" \
    bash -c "grep -q 'trainer failed (exit 1), not requeueing' '$tmp/log/bad.log' && scontrol show job $job | grep -q Restarts=0"

finish
