#!/usr/bin/env bash
# Local tests of the launch tools (no Slurm needed): ewc-sweep (format, list, run, skip, resume after
# a signal, submit --dry-run), ewc-sbatch.sh with stand-in srun/scontrol, ewc-aggregate, ewc-plot.
# Usage: test_launch.sh BUILD_DIR
set -euo pipefail

build="${1:?usage: test_launch.sh BUILD_DIR}"
src="${EWC_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
train="${EWC_TRAIN:-$build/ewc-train}"
launch="$src/launch"
h5same="$src/tests/tools/h5same.py"
[ -x "$train" ] || { echo "test_launch: no trainer at '$train' (build it, or set EWC_TRAIN)" >&2; exit 1; }
export EWC_TRAIN="$train" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

pass=0 fail=0
ok() { echo "ok:   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
# expect_fail WHAT PATTERN CMD...: CMD exits non-zero and its stderr+stdout matches PATTERN
expect_fail() {
    local what="$1" pattern="$2" out rc=0; shift 2
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] && grep -q -- "$pattern" <<<"$out"; then ok "$what"
    else bad "$what (exit $rc, output: $out)"; fi
}
tmp=$(mktemp -d /tmp/ewc-launch.XXXXXX)
trap 'if [ "$fail" -eq 0 ]; then rm -rf "$tmp"; else echo "test_launch: kept $tmp"; fi' EXIT
cd "$tmp"
sweep() { "$launch/ewc-sweep" "$@"; }
# wait_for_line LOG: until the trainer has started (its banner is in LOG; at most 60 s)
wait_for_line() { for _ in $(seq 600); do grep -q '^ewc-train: 3 tasks' "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

tiny=(--train-samples 1000 --test-samples 200 --hidden 16 --tasks 3 --eval-every 5 --quiet)
cat > tiny.ini <<'EOF'
# a tiny sweep: 1 + 2*2*2 = 9 points
[sweep]
name = tiny
[fixed]
train-samples = 1000
test-samples = 200
hidden = 16
tasks = 3
eval-every = 5        # a curve for the plots
penalty-step = implicit
quiet                 # a flag without value

[grid]
method = sgd

[grid]
method = l2 ewc
lambda = 1 100
seed = 1 2
EOF

# ---- the sweep format -------------------------------------------------------------------------------
out=$(sweep list tiny.ini)
check "list: 9 points, all new" grep -q "^9 points: 9 new$" <<<"$out"
check "list: runs/NAME by default, named after the grid keys" \
    grep -q "runs/tiny)" <<<"$out"
check "list: point names in file order" \
    bash -c "grep -q ' method=sgd$' <<<'$out' && grep -q ' method=ewc,lambda=100,seed=2$' <<<'$out'"
printf '[fixed]\nhidden = 8\n[grid]\nhidden = 4 6,6\n' > both.ini
expect_fail "format: a key both fixed and in a grid" "both in \[fixed\] and in a \[grid\]" sweep list both.ini
printf '[grid]\nout = x\n' > reserved.ini
expect_fail "format: --out is reserved" "'out' is set by ewc-sweep itself" sweep list reserved.ini
printf '[grids]\nseed = 1\n' > section.ini
expect_fail "format: unknown section, with file and line" "section.ini:1: unknown section" sweep list section.ini
printf '[grid]\nseed =\n' > novalue.ini
expect_fail "format: a grid key without values" "novalue.ini:2: grid key 'seed' needs" sweep list novalue.ini
printf '[grid]\nlamda = 1 2\n' > typo.ini
expect_fail "run: a misspelt flag is caught before anything runs" "'lamda' is not an ewc-train flag" \
    sweep run typo.ini
expect_fail "missing sweep file" "cannot read sweep file nothere.ini" sweep list nothere.ini
expect_fail "unknown command" "unknown command 'walk'" sweep walk tiny.ini
expect_fail "--throttle is for submit only" "unknown option '--throttle'" sweep run tiny.ini --throttle 2
printf '[grid]\nhidden = 8 6,6\nseed = 1\n' > enc.ini
check "names: ',' in a value is %-encoded" grep -q " hidden=6%2C6,seed=1$" <(sweep list enc.ini)

# ---- run, skip, relaunch -----------------------------------------------------------------------------
out=$(sweep run tiny.ini 2>&1) || bad "run tiny sweep: $out"
check "run: 9 points run" grep -q "9 points, 9 run now, 0 failed" <<<"$out"
check "list: 9 done" grep -q "^9 points: 9 done$" <(sweep list tiny.ini)
d="runs/tiny/method=ewc,lambda=100,seed=2"
check "run: the point's flags reached the trainer" \
    grep -q '"method":"ewc","lambda":100' "$d/summary.json"
check "run: fixed flags too (bare flag included)" grep -q '"hidden":\[16\].*"quiet":true' "$d/summary.json"
lines=$(wc -l < "$d/train.log")
out=$(sweep run tiny.ini 2>&1)
check "relaunch: finished points are skipped" grep -q "9 points, 0 run now, 0 failed" <<<"$out"
check "relaunch: the trainer did not run again" test "$(wc -l < "$d/train.log")" -eq "$lines"
out=$(sweep run tiny.ini --set "seed=1 2 3" 2>&1)
check "--set: a grid key gets new values; only the new points run" grep -q "13 points, 4 run now" <<<"$out"
out=$(sweep submit tiny.ini --set "seed=1 2 3" --dry-run 2>&1)
check "submit: nothing to submit when every point is done" grep -q "nothing to submit" <<<"$out"

# ---- submit --dry-run: the array holds the unfinished points only ---------------------------------------
rm -rf "runs/tiny/method=l2,lambda=1,seed=2" "runs/tiny/method=ewc,lambda=1,seed=1" "runs/tiny/method=ewc,lambda=100,seed=1"
out=$(sweep submit tiny.ini --throttle 3 --ranks 2 --threads 2 --dry-run -- --partition=p1 --account=a1 2>&1)
last=$(tail -n 1 <<<"$out")
check "submit: --array lists the unfinished points, %throttle" grep -q -- "--array=2,5,7%3 " <<<"$last"
check "submit: ranks and threads become --ntasks/--cpus-per-task" \
    grep -q -- "--ntasks=2 --cpus-per-task=2 " <<<"$last"
check "submit: options after -- go to sbatch, before the script" \
    grep -q -- "--partition=p1 --account=a1 $launch/ewc-sbatch.sh --array $tmp/runs/tiny/slurm$" <<<"$last"
check "submit: the command of each point has --out and --resume" \
    grep -q -- "^5: $train .* --method ewc --lambda 1 --seed 1 --out $tmp/runs/tiny/method=ewc,lambda=1,seed=1 --resume$" <<<"$out"
expect_fail "submit: --throttle must be a positive integer" "--throttle: expected a positive integer" \
    sweep submit tiny.ini --throttle 0 --dry-run
sweep run tiny.ini > /dev/null

# ---- a signal stops the sweep with a checkpoint; the same command resumes; results are unchanged ----------
big=(--train-samples 12000 --test-samples 500 --hidden "400,400" --tasks 3 --eval-every 40)
cat > big.ini <<'EOF'
[fixed]
train-samples = 12000
test-samples = 500
hidden = 400,400
tasks = 3
eval-every = 40
[grid]
method = ewc
lambda = 10
penalty-step = implicit
seed = 1 2
EOF
"$train" "${big[@]}" --method ewc --lambda 10 --penalty-step implicit --seed 1 --out ref > /dev/null
p1="runs/big/method=ewc,lambda=10,penalty-step=implicit,seed=1"
"$launch/ewc-sweep" run big.ini > big.out 2>&1 &   # not the function: its subshell ignores SIGINT
pid=$!
wait_for_line "$p1/train.log"
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
check "run: SIGINT stops the sweep with exit 3" test "$rc" -eq 3
check "run: the trainer wrote a checkpoint and said so" grep -q "stopped with a checkpoint (exit 3)" big.out
out=$(sweep list big.ini)
check "run: the stopped point is 'started', the next one 'new'" \
    bash -c "grep -q '^0  started' <<<'$out' && grep -q '^1  new' <<<'$out'"
out=$(sweep run big.ini 2>&1)
check "run: the same command resumes and finishes" grep -q "2 points, 2 run now, 0 failed" <<<"$out"
check "resume: log shows the resume" grep -q "resuming from" "$p1/train.log"
check "resume: accuracy.csv identical to an uninterrupted run" cmp -s "$p1/accuracy.csv" ref/accuracy.csv
check "resume: curve.csv identical to an uninterrupted run" cmp -s "$p1/curve.csv" ref/curve.csv
check "resume: checkpoint.h5 datasets identical to an uninterrupted run" \
    /usr/bin/python3 "$h5same" "$p1/checkpoint.h5" ref/checkpoint.h5

# ---- ewc-sbatch.sh outside Slurm, with stand-ins for srun and scontrol --------------------------------------
mkdir -p fake
# shellcheck disable=SC2016  # the $ are for the stand-in script
printf '#!/bin/sh\n# stand-in srun: drop the options, run the command\nwhile [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n' > fake/srun
printf '#!/bin/sh\necho "$@" >> %s/scontrol.calls\n' "$tmp" > fake/scontrol
chmod +x fake/srun fake/scontrol

rc=0; env PATH="$tmp/fake:$PATH" SLURM_JOB_ID=42 bash "$launch/ewc-sbatch.sh" "$train" "${tiny[@]}" --out sb0 > sb0.log 2>&1 || rc=$?
check "sbatch script: a finished run exits 0" test "$rc" -eq 0
check "sbatch script: --resume is added" grep -q -- "--out sb0 --resume" sb0.log
check "sbatch script: no requeue after exit 0" test ! -e scontrol.calls
rc=0; env PATH="$tmp/fake:$PATH" SLURM_JOB_ID=43 bash "$launch/ewc-sbatch.sh" "$train" --hidden bad --out sb1 > sb1.log 2>&1 || rc=$?
check "sbatch script: a failed run exits 1, no requeue" \
    bash -c "[ $rc -eq 1 ] && [ ! -e scontrol.calls ] && grep -q 'trainer failed (exit 1), not requeueing' sb1.log"
expect_fail "sbatch script: a command without --out is refused" "has no --out DIR" \
    env PATH="$tmp/fake:$PATH" bash "$launch/ewc-sbatch.sh" "$train" "${tiny[@]}"

# the time-limit warning: SIGUSR1 to the batch shell only -> trainer checkpoints, exits 3 -> requeue
mkdir -p cmds
printf '%s\n' "$train" "${big[@]}" --method ewc --lambda 10 --penalty-step implicit --seed 1 --out sb2 > cmds/5.cmd
env PATH="$tmp/fake:$PATH" SLURM_JOB_ID=77 SLURM_ARRAY_JOB_ID=70 SLURM_ARRAY_TASK_ID=5 \
    bash "$launch/ewc-sbatch.sh" --array cmds > sb2.log 2>&1 &
pid=$!
wait_for_line sb2.log
kill -USR1 "$pid"
rc=0; wait "$pid" || rc=$?
check "sbatch script: SIGUSR1 -> checkpoint, exit 3" \
    bash -c "[ $rc -eq 3 ] && grep -q 'stopped by a signal' sb2.log"
check "sbatch script: an array task requeues ARRAYJOB_TASK, not the whole array" \
    grep -qx "requeue 70_5" scontrol.calls
rc=0; env PATH="$tmp/fake:$PATH" SLURM_JOB_ID=77 SLURM_ARRAY_JOB_ID=70 SLURM_ARRAY_TASK_ID=5 \
    bash "$launch/ewc-sbatch.sh" --array cmds >> sb2.log 2>&1 || rc=$?
check "sbatch script: the requeued job resumes and finishes" \
    bash -c "[ $rc -eq 0 ] && grep -q 'resuming from' sb2.log"
check "sbatch script: resumed results identical to an uninterrupted run" \
    bash -c "cmp -s sb2/accuracy.csv ref/accuracy.csv && /usr/bin/python3 '$h5same' sb2/checkpoint.h5 ref/checkpoint.h5 >/dev/null"

# EWC_LAUNCHER=mpirun: mpirun forwards the signal to both ranks and exits 3 (no Slurm: no requeue)
rm -f scontrol.calls
env PATH="$tmp/fake:$PATH" EWC_LAUNCHER=mpirun SLURM_NTASKS=2 OMPI_MCA_rmaps_base_oversubscribe=1 \
    bash "$launch/ewc-sbatch.sh" "$train" "${big[@]}" --method ewc --lambda 10 --penalty-step implicit --seed 1 --out sb3 > sb3.log 2>&1 &
pid=$!
wait_for_line sb3.log
kill -USR1 "$pid"
rc=0; wait "$pid" || rc=$?
check "sbatch script with mpirun, 2 ranks: SIGUSR1 -> checkpoint, exit 3" \
    bash -c "[ $rc -eq 3 ] && grep -q 'stopped by a signal' sb3.log && grep -q '2 rank(s): mpirun -np 2' sb3.log"
rc=0; env PATH="$tmp/fake:$PATH" EWC_LAUNCHER=mpirun SLURM_NTASKS=2 OMPI_MCA_rmaps_base_oversubscribe=1 \
    bash "$launch/ewc-sbatch.sh" "$train" "${big[@]}" --method ewc --lambda 10 --penalty-step implicit --seed 1 --out sb3 >> sb3.log 2>&1 || rc=$?
check "sbatch script with mpirun: resumed on 2 ranks, identical to 1 uninterrupted rank" \
    bash -c "[ $rc -eq 0 ] && cmp -s sb3/accuracy.csv ref/accuracy.csv && /usr/bin/python3 '$h5same' sb3/checkpoint.h5 ref/checkpoint.h5 >/dev/null"

# ---- aggregation ------------------------------------------------------------------------------------------
out=$("$launch/ewc-aggregate" tiny.ini 2>&1) || bad "ewc-aggregate: $out"
res=runs/tiny/results.csv
check "aggregate: results.csv header" \
    test "$(head -n 1 $res)" = "run,method,lambda,seed,source,after_task,step,task,accuracy"
want=0
for r in runs/tiny/*=*/; do
    want=$((want + $(tail -n +2 "$r/accuracy.csv" | wc -l) + $(tail -n +2 "$r/curve.csv" | wc -l)))
done
check "aggregate: one row per run and evaluation ($want)" test "$(tail -n +2 $res | wc -l)" -eq "$want"
check "aggregate: accuracy and curve rows are told apart" \
    bash -c "grep -q '^method=sgd,sgd,,,accuracy,2,,1,' $res && grep -q '^method=sgd,sgd,,,curve,,5,0,' $res"
check "aggregate: Markdown table printed" \
    grep -q '^| method | lambda | seeds | final avg. accuracy | BWT | forgetting |$' <<<"$out"
check "aggregate: summary.md and summary.csv written" test -s runs/tiny/summary.md -a -s runs/tiny/summary.csv
check "aggregate: mean and std over seeds match summary.json" /usr/bin/python3 - "$tmp/runs/tiny" <<'EOF'
import csv, json, statistics, sys
root = sys.argv[1]
rows = {(r["method"], r["lambda"]): r for r in csv.DictReader(open(f"{root}/summary.csv"))}
for seeds, (m, lam) in ([3, ("ewc", "100")], [3, ("l2", "1")]):
    runs = [json.load(open(f"{root}/method={m},lambda={lam},seed={s}/summary.json")) for s in range(1, seeds + 1)]
    for key in ("average_accuracy", "backward_transfer", "forgetting"):
        v = [r[key] for r in runs]
        got = rows[(m, lam)]
        assert int(got["runs"]) == seeds, got
        assert abs(float(got[f"{key}_mean"]) - statistics.mean(v)) < 1e-6, (key, got, v)
        assert abs(float(got[f"{key}_std"]) - statistics.stdev(v)) < 1e-6, (key, got, v)
assert rows[("sgd", "")]["runs"] == "1"
EOF
out=$("$launch/ewc-aggregate" runs/tiny --out agg 2>&1)
check "aggregate: a root directory and --out work too" test -s agg/results.csv -a -s agg/summary.csv
mkdir -p partial/method=sgd
expect_fail "aggregate: no finished runs is an error" "no finished runs" "$launch/ewc-aggregate" partial

# ---- plots ------------------------------------------------------------------------------------------------
png() { [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] && [ "$(wc -c < "$1")" -gt 10000 ]; }
"$launch/ewc-plot" curve "runs/tiny/method=sgd" "runs/tiny/method=ewc,lambda=100,seed=1" -o curve.png > /dev/null
check "plot curve: PNG written" png curve.png
"$launch/ewc-plot" curve "runs/tiny/method=sgd" > /dev/null
check "plot curve: default output in the run directory" png runs/tiny/method=sgd/curve.png
"$launch/ewc-plot" tasks tiny.ini > /dev/null
check "plot tasks: PNG written to the sweep root" png runs/tiny/tasks.png
"$launch/ewc-plot" tasks runs/tiny --best none --where seed=1 -o tasks-all.png > /dev/null
check "plot tasks --best none --where: PNG written" png tasks-all.png
"$launch/ewc-plot" lambda tiny.ini -o lambda.png > /dev/null
check "plot lambda: PNG written" png lambda.png
expect_fail "plot curve: a run without curve.csv" "run ewc-train with --eval-every" \
    "$launch/ewc-plot" curve fake
expect_fail "plot lambda: needs runs with a lambda" "no positive lambda values" \
    "$launch/ewc-plot" lambda tiny.ini --where method=sgd
expect_fail "plot: --where names an unknown parameter" "no parameter 'size'" \
    "$launch/ewc-plot" tasks tiny.ini --where size=3

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
