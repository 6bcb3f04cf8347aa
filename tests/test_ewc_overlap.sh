#!/usr/bin/env bash
# launch/ewc-overlap on a tiny real --permute-fraction sweep (Fashion-MNIST, seconds): the long CSV
# holds exactly the trainer's --overlap-layers numbers for every run, the summary is their mean and
# sample std over seeds, the PNG is written, --from-csv re-plots, unfinished runs are skipped, and
# bad input is refused with a message.
# Usage: test_ewc_overlap.sh BUILD_DIR
set -uo pipefail
build="${1:?usage: test_ewc_overlap.sh BUILD_DIR}"
src="${EWC_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
train=$(realpath "${EWC_TRAIN:-$build/ewc-train}")
tool="$src/launch/ewc-overlap"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d /tmp/ewc-overlap.XXXXXX)
pass=0 fail=0
trap 'if [ "$fail" -eq 0 ]; then rm -rf "$tmp"; else echo "test_ewc_overlap: kept $tmp"; fi' EXIT
ok() { echo "ok:   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
expect_fail() { # WHAT PATTERN CMD...: CMD exits non-zero and its output matches PATTERN
    local what="$1" pattern="$2" out rc=0; shift 2
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] && grep -q -- "$pattern" <<<"$out"; then ok "$what"
    else bad "$what (exit $rc, output: $out)"; fi
}
cd "$tmp"
cat > tiny.ini <<'INI'
[sweep]
name = tiny
[fixed]
train-samples = 600
test-samples = 100
hidden = 12,10
tasks = 3
method = ewc
lambda = 10
penalty-step = implicit
quiet
[grid]
permute-fraction = 0.1 1
seed = 1 2 3
INI
"$src/launch/ewc-sweep" run tiny.ini --train "$train" > sweep.log 2>&1
check "the tiny sweep runs (6 points, all done)" grep -q "6 points: 6 done" <(
    "$src/launch/ewc-sweep" list tiny.ini)
mkdir runs/tiny/unfinished   # a point that never started: skipped with a note
"$tool" tiny.ini --train "$train" > out.txt 2> err.txt
check "collects the sweep into runs/tiny/overlap.csv" test -s runs/tiny/overlap.csv
check "writes the summary and the PNG" test -s runs/tiny/overlap_summary.csv -a -s runs/tiny/overlap.png
check "the PNG is a PNG" bash -c "head -c 8 runs/tiny/overlap.png | od -An -c | grep -q 'P   N   G'"
check "an unfinished run is skipped with a note" grep -q "unfinished.*skipped" err.txt
check "header and row count: 6 runs x 3 pairs x (3 layers + all) = 72 rows" bash -c \
    "[ \"\$(head -1 runs/tiny/overlap.csv)\" = fraction,seed,task_a,task_b,layer,overlap ] &&
     [ \$(tail -n +2 runs/tiny/overlap.csv | wc -l) -eq 72 ]"
# every run's rows are exactly what the trainer prints for its checkpoint
same=1
for f in 0.1 1; do for s in 1 2 3; do
    "$train" --fisher-overlap "runs/tiny/permute-fraction=$f,seed=$s/checkpoint.h5" --overlap-layers |
        tail -n +2 | sed "s/^/$f,$s,/" > want.csv
    grep "^$f,$s," runs/tiny/overlap.csv > got.csv
    [ -s want.csv ] && cmp -s want.csv got.csv || { same=0; diff want.csv got.csv | head -5; }
done; done
check "rows equal ewc-train --overlap-layers of each run, labelled with fraction and seed" test $same -eq 1
check "summary: mean and sample std over the 3 seeds of each fraction, pair and layer" \
    /usr/bin/python3 - runs/tiny/overlap.csv runs/tiny/overlap_summary.csv <<'PY'
import csv, sys, numpy as np
rows = list(csv.DictReader(open(sys.argv[1])))
summ = list(csv.DictReader(open(sys.argv[2])))
assert len(summ) == 2 * 3 * 4, len(summ)
for s in summ:
    v = [float(r["overlap"]) for r in rows if all(r[k] == s[k] for k in ("fraction", "task_a", "task_b", "layer"))]
    assert int(s["n"]) == len(v) == 3
    assert abs(float(s["mean"]) - np.mean(v)) < 1e-6 and abs(float(s["std"]) - np.std(v, ddof=1)) < 1e-6, s
PY
check "prints a fractions x layers table of the mean overlap" grep -q "^ *0.1 " out.txt
"$tool" --from-csv runs/tiny/overlap.csv -o replot.png --summary replot.csv --pair 1,2 > /dev/null 2>&1
check "--from-csv re-plots (another pair) without the runs" test -s replot.png -a -s replot.csv
check "--from-csv gives the same summary" cmp -s replot.csv runs/tiny/overlap_summary.csv
"$tool" "runs/tiny/permute-fraction=1,seed=2" --train "$train" --no-plot > /dev/null 2>&1
check "one run directory: its CSV goes into it, no PNG with --no-plot" bash -c \
    "[ \$(tail -n +2 'runs/tiny/permute-fraction=1,seed=2/overlap.csv' | wc -l) -eq 12 ] &&
     [ ! -e 'runs/tiny/permute-fraction=1,seed=2/overlap.png' ]"

expect_fail "no trainer binary" "no ewc-train binary" "$tool" tiny.ini --train "$tmp/nope"
expect_fail "no such directory" "neither a sweep file nor a directory" "$tool" nowhere --train "$train"
expect_fail "nothing to collect" "no finished run" "$tool" runs/tiny/unfinished --train "$train"
expect_fail "bad --pair" "A < B" "$tool" tiny.ini --pair 2,1
printf 'a,b\n1,2\n' > wrong.csv
expect_fail "--from-csv with other columns" "expected the columns" "$tool" --from-csv wrong.csv
echo garbage > "runs/tiny/permute-fraction=1,seed=3/checkpoint.h5"
expect_fail "a damaged checkpoint names the file" "permute-fraction=1,seed=3/checkpoint.h5" \
    "$tool" tiny.ini --train "$train"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
