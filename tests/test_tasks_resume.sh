#!/usr/bin/env bash
# Split tasks end to end (tasks.h): split + task and split + class give the same outputs bit
# for bit at 1, 2 and 4 ranks and after runs stopped by SIGUSR1 or killed with SIGKILL and
# resumed; other heads (task) and unseen classes (class) do not move in the checkpoint's
# anchors; the family flags are recorded and a resume with other ones is refused.
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed
. "$tools/tasks_series.sh" # common, interrupt_until_done, heads_frozen, series

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

# a resume with another scenario, class count or class order is refused
s=("${common[@]}" --task-family split)
check "resume with another --scenario is refused" \
    refused "$work/split-task-ref" --scenario "${s[@]}" --scenario class
check "resume with another --classes-per-task is refused" \
    refused "$work/split-task-ref" --classes-per-task "${s[@]}" --scenario task --classes-per-task 1 --tasks 5
check "resume with another --class-order is refused" \
    refused "$work/split-class-ref" --class-order "${s[@]}" --scenario class --tasks 4

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
