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
expect_fail "unknown command" "invalid choice: 'walk'" sweep walk tiny.ini
expect_fail "--throttle is for submit only" "unrecognized arguments: --throttle" sweep run tiny.ini --throttle 2

# ---- command lines (argparse): --help, one-line errors, abbreviations ------------------------------------
# one_line_error WHAT PATTERN CMD...: exit status 2 and exactly one line of output, matching PATTERN
one_line_error() {
    local what="$1" pattern="$2" out rc=0; shift 2
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -eq 2 ] && [ "$(wc -l <<<"$out")" -eq 1 ] && grep -q -- "$pattern" <<<"$out"; then ok "$what"
    else bad "$what (exit $rc, output: $out)"; fi
}
for tool in "ewc-sweep" "ewc-sweep run" "ewc-sweep submit" "ewc-aggregate" "ewc-plot" "ewc-plot tasks"; do
    read -r t c <<<"$tool"
    # shellcheck disable=SC2086  # $c is empty or one word
    out=$("$launch/$t" $c --help 2>&1) || bad "$tool --help exits 0"
    check "$tool --help prints a usage" grep -q "^usage: $tool" <<<"$out"
done
check "ewc-sweep --help documents the sweep format" grep -q "^Sweep file:" <(sweep --help)
out=$(sweep submit --help)
check "ewc-sweep submit --help lists its options" \
    bash -c "grep -q -- '--throttle N' <<<'$out' && grep -q -- '--dry-run' <<<'$out'"
one_line_error "ewc-sweep: a bad option is one line, exit 2" "ewc-sweep: unrecognized arguments: --bogus" \
    sweep list tiny.ini --bogus
one_line_error "ewc-sweep: no command is one line, exit 2" "required: COMMAND" sweep
one_line_error "ewc-sweep: an ambiguous abbreviation is refused" "ambiguous option: --t could match" \
    sweep run tiny.ini --t 2
one_line_error "ewc-sweep: a missing value is one line" "run: argument --ranks: expected one argument" \
    sweep run tiny.ini --ranks
one_line_error "ewc-aggregate: a bad option is one line, exit 2" "ewc-aggregate: unrecognized arguments: --bogus" \
    "$launch/ewc-aggregate" tiny.ini --bogus
one_line_error "ewc-plot: a bad choice is one line, exit 2" "ewc-plot: tasks: argument --best: invalid choice: 'lambda'" \
    "$launch/ewc-plot" tasks tiny.ini --best lambda
one_line_error "ewc-plot: curve takes no --where" "unrecognized arguments: --where" \
    "$launch/ewc-plot" curve runs --where seed=1
out=$(sweep submit tiny.ini --thro 3 --dry --ra 2 -- --partition=p1 2>&1) || bad "abbreviated options: $out"
check "ewc-sweep: abbreviations (--thro, --dry, --ra) work; -- still goes to sbatch" \
    grep -q -- "--array=0-8%3 .*--ntasks=2 .*--partition=p1 $launch/ewc-sbatch.sh" <<<"$(tail -n 1 <<<"$out")"
out=$(sweep run tiny.ini --set data=mydata --dry 2>&1)
check "ewc-sweep: a relative data directory reaches the trainer as an absolute path" \
    grep -q -- "--data $tmp/mydata .*--out $tmp/runs/tiny/method=sgd --resume" <<<"$out"
one_line_error "ewc-sweep run: a missing data directory is one clear error before anything runs" \
    "data directory '$tmp/mydata' does not exist: fetch MNIST into it with data/fetch.sh" \
    sweep run tiny.ini --set data=mydata
check "ewc-sweep run: ... and nothing ran" test ! -e runs/tiny
out=$(sweep run tiny.ini --set adam-persist --set optimizer=adam --dry 2>&1)
check "--set FLAG: a bare flag reaches every point's command line" \
    bash -c "[ \$(grep -c -- '--adam-persist --optimizer adam .*--out ' <<<'$out') -eq 9 ]"
out=$(sweep run tiny.ini --dry 2>&1)
check "--set FLAG: ... and only when given" bash -c "! grep -q -- '--adam-persist' <<<'$out'"
one_line_error "--set FLAG: a grid key needs values" "'seed' is a \[grid\] key of tiny.ini" \
    sweep run tiny.ini --set seed --dry
one_line_error "--set: KEY= without a value" "expected KEY=VALUE or FLAG, got 'hidden='" \
    sweep run tiny.ini --set hidden= --dry
for f in "$src"/launch/sweeps/*.ini; do
    check "committed sweep $(basename "$f") parses; its data directory is relative (no machine's path)" \
        bash -c "'$launch/ewc-sweep' list '$f' | grep -q '^[0-9]* points: [0-9]* new$' && grep -q '^data = data/mnist ' '$f'"
done
for f in paper-fig2b.ini paper-fig2b-small.ini; do
    check "$f: sgd, sgd + dropout, l2, ewc, online-ewc with validation data, 10 tasks, 3 seeds" \
        bash -c "'$launch/ewc-sweep' list '$launch/sweeps/$f' > fig2b.txt &&
                 grep -q ' method=sgd,seed=3$' fig2b.txt && grep -q ' method=sgd,dropout-input=0.2,dropout=0.5,seed=3$' fig2b.txt &&
                 grep -q ' method=l2,.*lambda=.*,seed=3$' fig2b.txt && grep -q ' method=ewc,.*lambda=.*,seed=3$' fig2b.txt &&
                 grep -q ' method=online-ewc,.*lambda=.*,seed=3$' fig2b.txt &&
                 grep -q '^validation = [1-9]' '$launch/sweeps/$f' && grep -q '^tasks = 10' '$launch/sweeps/$f'"
done
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
one_line_error "aggregate --select: runs without validation data are refused, one line" \
    "ewc-aggregate: --select: 13 of 13 run(s) have no validation data .*ewc-train --validation N" \
    "$launch/ewc-aggregate" runs/tiny --sel
check "aggregate --select: ... and no chosen.ini is written" test ! -e runs/tiny/chosen.ini
"$launch/ewc-aggregate" tiny.ini --ov seed --ou agg2 > /dev/null
check "aggregate: abbreviated options (--ov, --ou) work" test -s agg2/summary.csv

# ---- choosing settings on validation data (fake finished runs whose validation and test disagree) -----
sel() { /usr/bin/python3 "$src/tests/tools/check_selection.py" "$@"; }
cat > sel.ini <<'INI'
# sgd, sgd + dropout, l2, ewc, online-ewc with grids; run directories are faked by check_selection.py
[fixed]
train-samples = 1000
test-samples = 200
hidden = 16
tasks = 3
quiet
[grid]
method = sgd
seed = 1 2 3
[grid]
method = sgd
dropout-input = 0.2
dropout = 0.5
seed = 1 2 3
[grid]
method = l2
lambda = 0.01 1
seed = 1 2 3
[grid]
method = ewc
lambda = 1 100
seed = 1 2 3
[grid]
method = online-ewc
lambda = 10 100
gamma = 0.5 0.9
seed = 1 2 3
INI
sel fake "$launch" sel.ini runs/sel
check "selection: the fake runs are built so that validation and test prefer different settings" \
    sel differ "$launch" sel.ini
out=$("$launch/ewc-aggregate" sel.ini --select 2>&1) || bad "aggregate --select: $out"
check "aggregate --select: the table says the choice was made on validation data" \
    bash -c "grep -q 'Settings chosen on validation data' runs/sel/selection.md && grep -q 'TEST figures' runs/sel/selection.md"
check "aggregate --select: the summary has a validation column" \
    grep -q 'validation_average_accuracy_mean' runs/sel/summary.csv
check "aggregate --select: per method the best mean VALIDATION accuracy, with that choice's TEST figures" \
    sel check "$launch" sel.ini runs/sel/selection.csv
check "aggregate --select: sgd and sgd + dropout are separate methods" \
    bash -c "grep -q '^| sgd | - | 3 | 1 |' runs/sel/selection.md && grep -q '^| sgd + dropout | - | 3 | 1 |' runs/sel/selection.md"
check "aggregate --select: results.csv has the validation rows" grep -q ',validation,2,,1,' runs/sel/results.csv
check "chosen.ini: per method one [grid] block, the validation choice, with the seeds as the grid" \
    sel chosen "$launch" sel.ini runs/sel/chosen.ini
check "chosen.ini: the sweep's fixed flags are kept" grep -qx "train-samples = 1000" runs/sel/chosen.ini
out=$(sweep list runs/sel/chosen.ini 2>&1)
check "chosen.ini: a valid sweep file, one point per method and seed" grep -q "^15 points: 15 new$" <<<"$out"
out=$(sweep run runs/sel/chosen.ini --set "seed=11" 2>&1) || bad "rerun the choice with a new seed: $out"
check "chosen.ini: rerunning the choice with a new seed is one command (5 runs)" \
    grep -q "5 points, 5 run now, 0 failed" <<<"$out"
lam=$(awk '/^method = ewc$/ { f = 1 } f && /^lambda = / { print $3; exit }' runs/sel/chosen.ini)
check "chosen.ini: the rerun got the chosen settings (ewc: lambda $lam)" \
    bash -c "grep -q '\"method\":\"ewc\",\"lambda\":$lam,' 'runs/sel-chosen/method=ewc,lambda=$lam,seed=11/summary.json' &&
             grep -q '\"dropout_input\":0.2,\"dropout\":0.5,' 'runs/sel-chosen/method=sgd,dropout-input=0.2,dropout=0.5,seed=11/summary.json'"
"$launch/ewc-aggregate" runs/sel --select --out selroot > /dev/null
check "aggregate --select from a root: chosen.ini's fixed flags come from the runs' config" \
    bash -c "grep -qx 'hidden = 16' selroot/chosen.ini && grep -qx quiet selroot/chosen.ini &&
             grep -qx 'data = /nowhere/mnist' selroot/chosen.ini && ! grep -q '^out' selroot/chosen.ini &&
             [ \$(grep -c '^lambda' selroot/chosen.ini) -eq 3 ]"
check "aggregate --select from a root: the same choices" sel check "$launch" sel.ini selroot/selection.csv
sel strip runs/sel/method=l2,lambda=1,seed=2
one_line_error "aggregate --select: one run without validation data is enough to refuse" \
    "select: 1 of 30 run(s) have no validation data (e.g. .*method=l2,lambda=1,seed=2/summary.json" \
    "$launch/ewc-aggregate" sel.ini --select
sel fake "$launch" sel.ini runs/sel

# ---- plots ------------------------------------------------------------------------------------------------
png() { [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] && [ "$(wc -c < "$1")" -gt 10000 ]; }
"$launch/ewc-plot" curve "runs/tiny/method=sgd" "runs/tiny/method=ewc,lambda=100,seed=1" -o curve.png > /dev/null
check "plot curve: PNG written" png curve.png
"$launch/ewc-plot" curve "runs/tiny/method=sgd" > /dev/null
check "plot curve: default output in the run directory" png runs/tiny/method=sgd/curve.png
"$launch/ewc-plot" tasks tiny.ini --best none > /dev/null
check "plot tasks --best none: PNG written to the sweep root" png runs/tiny/tasks.png
one_line_error "plot tasks: runs without validation data cannot be chosen among (no test fallback)" \
    "tasks: .* have no validation data .*settings are never chosen on test data" \
    "$launch/ewc-plot" tasks tiny.ini
"$launch/ewc-plot" tasks sel.ini -o tasks-chosen.png > /dev/null
check "plot tasks: the validation choices of sgd, sgd + dropout, l2, ewc, online-ewc" png tasks-chosen.png
check "plot tasks: the plotted lines, the single-task level and the title" \
    /usr/bin/python3 "$src/tests/tools/check_selection.py" plot "$launch" sel.ini
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
