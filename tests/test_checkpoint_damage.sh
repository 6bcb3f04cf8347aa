#!/usr/bin/env bash
# Issue 9, integrity of what we write: a real mid-run checkpoint damaged 200+ seeded ways (bit
# flips anywhere, in the user block, the HDF5 metadata and each dataset; truncations; zeroed and
# garbage runs; datasets transplanted from another run, also rewritten by h5py) is refused every
# time, with no crash and no hang, and a flip in a dataset's data names that dataset (from the
# manifest trailer); --resume falls back to checkpoint.prev.h5 with one warning and ends
# bit-identical to an uninterrupted run (1 and 2 ranks); with no intact checkpoint left it
# exits 1 with one line and keeps the files; --fisher-overlap is protected the same way.
set -uo pipefail
train=${EWC_TRAIN:-$1/ewc-train}
damage=${EWC_BUILD_DIR:-$1}/ckpt_damage
tools=${EWC_SOURCE_DIR:-$(dirname "$0")/..}/tests/tools
py=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
. "$tools/check.sh" # $work, check, $passed, $failed

# small, but with everything a checkpoint holds: EWC anchors and Fishers, momentum, a curve
args=(--tasks 3 --hidden 64,32 --epochs 1 --batch 50 --train-samples 3000 --test-samples 500
      --method ewc --lambda 10 --momentum 0.5 --fisher-samples 500 --eval-every 20 --quiet)
timeout 300 "$train" "${args[@]}" --out "$work/ref" > /dev/null 2>&1
check "reference run finishes" test -f "$work/ref/summary.json"
# with --checkpoint-every 7, the previous checkpoint at the end is a mid-task one
timeout 300 "$train" "${args[@]}" --checkpoint-every 7 --out "$work/f" > /dev/null 2>&1
check "run with --checkpoint-every gives the same outputs" "$tools/same_outputs.py" "$work/ref" "$work/f"
timeout 300 "$train" "${args[@]}" --checkpoint-every 7 --seed 2 --out "$work/g" > /dev/null 2>&1
good=$work/f/checkpoint.prev.h5 other=$work/g/checkpoint.prev.h5
check "the damaged file is a real mid-run checkpoint (task 2 of 3, mid-task, 2 tasks recorded)" \
    "$py" -c 'import h5py, sys
f = h5py.File(sys.argv[1], "r"); s = f["/state"].attrs
assert (s["task"], f.attrs["tasks_done"], f.attrs["format_version"]) == (2, 2, 3) and s["step"] > 0
assert "/state/momentum" in f and "/tasks/001/fisher/layer2/W" in f' "$good"

# the digest can be checked by hand, and h5py and h5dump read the file
check "tail -c +513 | sha256sum matches the digest in the header" bash -c \
    "[ \"\$(tail -c +513 '$good' | sha256sum | cut -c1-64)\" = \"\$(sed -n 's/^sha256: //p' '$good' | head -1)\" ]"
check "h5dump reads the checkpoint" bash -c "h5dump -H '$good' | grep -q 'DATASET \"W\"'"

flip() { # FILE OFFSET: flip one bit
    "$py" -c 'import sys; p, at = sys.argv[1], int(sys.argv[2]); b = bytearray(open(p, "rb").read())
b[at] ^= 4; open(p, "wb").write(bytes(b))' "$1" "$2"
}
mid() { echo $(( $(stat -c %s "$1") / 2 )); }

# damaged files made with h5py: a dataset from the other run written in place (the user block is
# kept, the digest no longer matches), an attribute changed, and two rewrites into new files
# (without a user block, and with the old header copied in)
cp "$good" "$work/h5py-rplus.h5"
cp "$good" "$work/h5py-attr.h5"
"$py" - "$good" "$other" "$work" <<'EOF'
import sys
import h5py
good, other, work = sys.argv[1:4]
with h5py.File(f"{work}/h5py-rplus.h5", "r+") as f, h5py.File(other, "r") as g:
    f["/tasks/000/fisher/layer0/W"][...] = g["/tasks/000/fisher/layer0/W"][()]
with h5py.File(f"{work}/h5py-attr.h5", "r+") as f:
    f["/state"].attrs["step"] = f["/state"].attrs["step"] + 1
for name, ub in (("h5py-rewrite.h5", 0), ("h5py-rewrite-ub.h5", 512)):
    with h5py.File(good, "r") as f, h5py.File(other, "r") as g, \
            h5py.File(f"{work}/{name}", "w", userblock_size=ub) as out:
        for k in f:
            f.copy(f[k], out, name=k)
        for k, v in f.attrs.items():
            out.attrs[k] = v
        del out["/model/layer0/W"]
        g.copy(g["/model/layer0/W"], out["/model/layer0"], name="W")
    if ub:
        with open(good, "rb") as src, open(f"{work}/{name}", "r+b") as dst:
            dst.write(src.read(512))
EOF
mkdir -p "$work/cases"
timeout 900 "$damage" "$good" "$other" "$work/cases" "$work"/h5py-*.h5 -- "${args[@]}" \
    > "$work/damage.log" 2>&1
rc=$?
summary=$(grep '^damage test:' "$work/damage.log")
echo "# ${summary:-no summary (exit $rc)}"
check "every damaged copy is refused with one line naming it; no crash, no hang (exit $rc)" test "$rc" -eq 0
check "at least 200 cases, 0 accepted, 0 crashes, 0 hangs" bash -c "echo '$summary' |
    grep -Eq 'damage test: ([2-9][0-9]{2}|[0-9]{4,}) cases .* 0 accepted, 0 crashes, 0 hangs'"
check "every bit flip in a dataset's data names exactly that dataset (from the manifest)" bash -c \
    "echo '$summary' | grep -Eq '; ([1-9][0-9]*) of \\1 flips in dataset data named exactly it'"
[ "$rc" -eq 0 ] || grep -Ev ' refused: ' "$work/damage.log" | head -20

# --resume: checkpoint.h5 damaged, the previous one intact -> one warning, the previous one is
# used, the run ends bit-identical to the uninterrupted one, the damaged file is kept
setup_damaged() { # DIR: the final checkpoint damaged as checkpoint.h5, the mid-run one as prev
    mkdir -p "$1"
    cp "$work/f/checkpoint.h5" "$1/checkpoint.h5"
    flip "$1/checkpoint.h5" "$(mid "$1/checkpoint.h5")"
    cp "$1/checkpoint.h5" "$1.damaged-copy"
    cp "$good" "$1/checkpoint.prev.h5"
}
setup_damaged "$work/d1"
timeout 300 "$train" "${args[@]}" --out "$work/d1" --resume > /dev/null 2> "$work/d1.err"
rc=$?
check "damaged checkpoint.h5: --resume exits 0 (got $rc)" test "$rc" -eq 0
check "one warning line naming the damaged file, where it is kept and the fallback" bash -c "
    [ \$(wc -l < '$work/d1.err') -eq 1 ] &&
    grep -q 'warning: .*/d1/checkpoint.h5: damaged (SHA-256 mismatch.*kept as .*/d1/checkpoint.damaged.h5; resuming from .*/d1/checkpoint.prev.h5' '$work/d1.err'"
sed 's/^/# /' "$work/d1.err"
check "the fallback run ends bit-identical to the uninterrupted run" \
    "$tools/same_outputs.py" "$work/ref" "$work/d1"
check "the damaged file is kept, byte for byte" cmp "$work/d1/checkpoint.damaged.h5" "$work/d1.damaged-copy"

setup_damaged "$work/d2"
timeout 300 mpirun -np 2 --oversubscribe "$train" "${args[@]}" --out "$work/d2" --resume \
    > /dev/null 2> "$work/d2.err"
check "2 ranks: the fallback run ends bit-identical, with one warning" bash -c "
    '$tools/same_outputs.py' '$work/ref' '$work/d2' && [ \$(grep -c warning '$work/d2.err') -eq 1 ]"

# checkpoint.h5 missing, the previous one there: a warning, and the same result
mkdir -p "$work/d3"
cp "$good" "$work/d3/checkpoint.prev.h5"
timeout 300 "$train" "${args[@]}" --out "$work/d3" --resume > /dev/null 2> "$work/d3.err"
check "missing checkpoint.h5 with a previous one: warning, bit-identical end" bash -c "
    grep -q 'checkpoint.h5: missing; resuming from' '$work/d3.err' &&
    '$tools/same_outputs.py' '$work/ref' '$work/d3'"

# both damaged: exit 1, one line, both files kept as they were
setup_damaged "$work/d4"
flip "$work/d4/checkpoint.prev.h5" 5000
cp "$work/d4/checkpoint.prev.h5" "$work/d4.prev-copy"
timeout 300 "$train" "${args[@]}" --out "$work/d4" --resume > "$work/d4.out" 2> "$work/d4.err"
rc=$?
sed 's/^/# /' "$work/d4.err"
check "both damaged: exit 1 (got $rc) with one line naming both" bash -c "[ $rc -eq 1 ] &&
    [ \$(wc -l < '$work/d4.err') -eq 1 ] && grep -q 'error: .*checkpoint.h5: damaged.*checkpoint.prev.h5: damaged.*no intact checkpoint left' '$work/d4.err'"
check "both damaged: the files are still there, unchanged, nothing new written" bash -c "
    cmp '$work/d4/checkpoint.h5' '$work/d4.damaged-copy' && cmp '$work/d4/checkpoint.prev.h5' '$work/d4.prev-copy' &&
    [ \$(ls '$work/d4' | wc -l) -eq 2 ]"

# a checkpoint of format 2 (no digest) is refused, saying what to do
mkdir -p "$work/d5"
tail -c +513 "$good" > "$work/d5/checkpoint.h5"
timeout 300 "$train" "${args[@]}" --out "$work/d5" --resume > /dev/null 2> "$work/d5.err"
rc=$?
check "a checkpoint without a digest: exit 1 (got $rc), one line saying so" bash -c "[ $rc -eq 1 ] &&
    [ \$(wc -l < '$work/d5.err') -eq 1 ] && grep -q 'no SHA-256 digest' '$work/d5.err'"

# --fisher-overlap reads through the same verified open
check "--fisher-overlap reads an intact checkpoint" "$train" --fisher-overlap "$good"
"$train" --fisher-overlap "$work/d1.damaged-copy" > /dev/null 2> "$work/ov.err"
rc=$?
check "--fisher-overlap refuses a damaged one: exit 1 (got $rc), one line" bash -c "[ $rc -eq 1 ] &&
    [ \$(wc -l < '$work/ov.err') -eq 1 ] && grep -q 'damaged' '$work/ov.err'"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
