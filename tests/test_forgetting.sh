#!/usr/bin/env bash
# End to end on Fashion-MNIST: after three permuted tasks, EWC keeps clearly more of task 0 than
# plain SGD. Margin measured on seeds 1-6 (100 hidden units, 1 epoch, lambda 100): EWC's
# accuracy on task 0 after task 2 exceeded SGD's by 0.049 to 0.085; we require 0.03.
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
export OPENBLAS_NUM_THREADS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
acc() { awk -F, -v t="$2" -v j="$3" '$1 == t && $2 == j { print $3 }' "$1/accuracy.csv"; }

for seed in 1 2; do
    for method in sgd ewc; do
        "$train" --method $method --lambda 100 --penalty-step implicit --tasks 3 --hidden 100 \
            --epochs 1 --seed $seed --out "$work/$method$seed" --quiet || exit 1
    done
    sgd=$(acc "$work/sgd$seed" 2 0) ewc=$(acc "$work/ewc$seed" 2 0) learned=$(acc "$work/sgd$seed" 0 0)
    if awk -v s="$sgd" -v e="$ewc" -v l="$learned" 'BEGIN { exit !(l > 0.75 && e - s >= 0.03) }'; then
        passed=$((passed + 1)); echo "ok - seed $seed: task 0 after task 2: ewc $ewc vs sgd $sgd (learned $learned)"
    else
        failed=$((failed + 1)); echo "not ok - seed $seed: task 0 after task 2: ewc $ewc vs sgd $sgd (learned $learned)"
    fi
done
# the Fisher overlap of the EWC run: a symmetric 3 x 3 matrix with ones on the diagonal and
# off-diagonal values strictly between 0 and 1
if "$train" --fisher-overlap "$work/ewc1/checkpoint.h5" > "$work/overlap.csv" &&
   awk -F, 'NR == 1 { ok = ($0 == "task,0,1,2"); next }
            { for (j = 2; j <= NF; j++) m[NR - 2, j - 2] = $j; rows++ }
            END { if (rows != 3) ok = 0
                  for (i = 0; i < 3; i++) for (j = 0; j < 3; j++) {
                      if (i == j && m[i, j] != "1.0000") ok = 0
                      if (i != j && (m[i, j] != m[j, i] || m[i, j] <= 0 || m[i, j] >= 1)) ok = 0 }
                  exit !ok }' "$work/overlap.csv"; then
    passed=$((passed + 1)); echo "ok - --fisher-overlap: $(tr '\n' ' ' < "$work/overlap.csv")"
else
    failed=$((failed + 1)); echo "not ok - --fisher-overlap:"; cat "$work/overlap.csv"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
