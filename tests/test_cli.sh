#!/usr/bin/env bash
# Command-line robustness of ewc-train: every bad flag, dataset file, output path or divergence
# gives exactly ONE line "ewc-train: error: ..." naming the flag or file, and exit status 1, at
# 1 rank and under mpirun -np 2; never a crash (signal) and never a hang (60 s timeout).
# --help exits 0 and lists every flag.
#
# usage: bash tests/test_cli.sh BUILD_DIR   (env EWC_TRAIN = path of ewc-train, optional)
# Prints "ok - ..." / "not ok - ..." per case and rank count, then "N passed, M failed";
# exits 1 if anything failed.
#
# The runs are independent and mostly idle (mpirun spends ~2 s waiting after a rank exits
# non-zero), so they run a few at a time in the background; results print in case order.
set -u

BUILD_DIR=${1:-${EWC_BUILD_DIR:-}}
EXE=${EWC_TRAIN:-$BUILD_DIR/ewc-train}
PY=/usr/bin/python3 # Debian's python (the one on PATH may be another)
MAX_JOBS=6
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

if [[ ! -x $EXE ]]; then
    echo "test_cli.sh: ewc-train not found at '$EXE' (pass BUILD_DIR or set EWC_TRAIN)" >&2
    exit 1
fi
if [[ ! -x $PY ]]; then
    echo "test_cli.sh: $PY is required to build the IDX fixtures" >&2
    exit 1
fi

T=$(mktemp -d /tmp/test_cli.XXXXXX) || exit 1
trap 'kill $(jobs -p) 2>/dev/null; wait; rm -rf "$T"' EXIT
mkdir "$T/fix" "$T/runs" || exit 1

# ---- fixtures --------------------------------------------------------------------------------
# fix/good/: a valid tiny dataset (60 train, 30 test 8x8 images, 3 classes), raw IDX files.
# Every bad dataset below is a copy of it with one file replaced or damaged.
TRI=train-images-idx3-ubyte TRL=train-labels-idx1-ubyte
TEI=t10k-images-idx3-ubyte TEL=t10k-labels-idx1-ubyte
F=$T/fix

"$PY" - "$F" <<'EOF' || { echo "test_cli.sh: fixture generation failed" >&2; exit 1; }
import os, random, struct, sys
F = sys.argv[1]
rng = random.Random(12345)

def images(path, n, rows, cols, magic=0x00000803, payload=None):
    with open(path, "wb") as f:
        f.write(struct.pack(">IIII", magic, n, rows, cols))
        f.write(bytes(rng.randrange(256) for _ in range(n * rows * cols)) if payload is None else payload)

def labels(path, n, classes=3):
    with open(path, "wb") as f:
        f.write(struct.pack(">II", 0x00000801, n))
        f.write(bytes(i % classes for i in range(n)))

d = f"{F}/good"
os.makedirs(d)
images(f"{d}/train-images-idx3-ubyte", 60, 8, 8)
labels(f"{d}/train-labels-idx1-ubyte", 60)
images(f"{d}/t10k-images-idx3-ubyte", 30, 8, 8)
labels(f"{d}/t10k-labels-idx1-ubyte", 30)
# garbage: random bytes, the first forced non-zero so they cannot start like an IDX magic
with open(f"{F}/garbage.bin", "wb") as f:
    f.write(bytes([0xA5]) + bytes(rng.randrange(256) for _ in range(4095)))
# wrong magic: the header written little-endian (03 08 00 00 instead of 00 00 08 03)
with open(f"{F}/wrong-magic.bin", "wb") as f:
    f.write(struct.pack("<IIII", 0x00000803, 60, 8, 8) + bytes(60 * 64))
# image/label count mismatch: 59 labels for 60 images
labels(f"{F}/labels-59.bin", 59)
# absurd dimensions: the header claims 2^30 images of 8x8, followed by 64 bytes only
images(f"{F}/huge-count.bin", 1 << 30, 8, 8, payload=bytes(64))
EOF

good_copy() { # good_copy NAME: a fresh copy of good/ at fix/NAME, printed
    cp -r "$F/good" "$F/$1" && echo "$F/$1"
}

# ---- running ---------------------------------------------------------------------------------
# what a crash looks like, from bash or in mpirun's report ("exited on signal 11")
CRASH='segmentation fault|signal|core dumped|bus error|floating point exception|aborted \(|killed'

# run DIR NP ARGS...: run ewc-train in DIR at NP ranks (1 = directly, no mpirun) under a 60 s
# timeout; DIR gets stdout, stderr and rc.
run() {
    local dir=$1 np=$2 rc
    shift 2
    if ((np == 1)); then
        (cd "$dir" && exec timeout -k 5 60 "$EXE" "$@") >"$dir/stdout" 2>"$dir/stderr"
    else
        (cd "$dir" && exec timeout -k 5 60 mpirun -np "$np" --oversubscribe "$EXE" "$@") \
            >"$dir/stdout" 2>"$dir/stderr"
    fi
    rc=$?
    echo "$rc" >"$dir/rc"
    return "$rc"
}

# Hang or crash after a run in DIR with status RC: prints the problem, or nothing.
crash_or_hang() {
    local dir=$1 rc=$2
    if ((rc == 124 || rc == 137)); then
        echo "hung: killed by the 60 s timeout (status $rc)"
    elif ((rc >= 128)); then
        echo "crashed: exit status $rc"
    elif grep -Eiq "$CRASH" "$dir/stderr"; then
        echo "crashed: $(grep -Eih -m1 "$CRASH" "$dir/stderr")"
    fi
}

# stderr of the run in DIR without mpirun's own boxed notices (the blocks between lines of
# dashes), i.e. what the ranks themselves printed.
own_stderr() {
    awk '/^----------------------------------------+$/ { box = !box; next } !box' "$1/stderr"
}

# report DIR NAME [PROBLEM...]: the result line of a run, plus diagnostics on failure.
report() {
    local dir=$1 name=$2
    shift 2
    if (($# == 0)); then
        echo "ok - $name"
        return
    fi
    echo "not ok - $name"
    local line
    for line in "$@"; do echo "#   $line"; done
    [[ -s $dir/stderr ]] && sed 's/^/#   stderr: /' "$dir/stderr" | head -n 20
}

# check_error DIR NAME PATTERN ARGS...: run ewc-train ARGS; it must exit with status 1, and the
# ranks must print exactly one stderr line, which starts with "ewc-train: error:" and matches
# the extended regex PATTERN (the flag or file it has to name), and is printed nowhere else.
check_error() {
    local dir=$1 name=$2 pattern=$3 np=$4 rc problem own lines n_err
    shift 4
    run "$dir" "$np" "$@"
    rc=$?
    problem=$(crash_or_hang "$dir" "$rc")
    own=$(own_stderr "$dir")
    lines=$(printf '%s' "$own" | grep -c '')
    n_err=$(cat "$dir/stdout" "$dir/stderr" | grep -c '^ewc-train: error:')
    if [[ -n $problem ]]; then
        report "$dir" "$name" "$problem" "args: $*"
    elif ((rc != 1)); then
        report "$dir" "$name" "exit status $rc, expected 1" "args: $*"
    elif ((n_err != 1)); then
        report "$dir" "$name" "$n_err lines start with 'ewc-train: error:', expected 1" "args: $*"
    elif ((lines != 1)); then
        report "$dir" "$name" "$lines lines on stderr from the ranks, expected exactly one" \
            "args: $*"
    elif ! grep -q '^ewc-train: error:' <<<"$own"; then
        report "$dir" "$name" "the error line is not on stderr" "args: $*"
    elif ! grep -Eq -e "$pattern" <<<"$own"; then
        report "$dir" "$name" "the error line does not match /$pattern/" "args: $*"
    else
        report "$dir" "$name"
    fi
}

# check_help DIR NAME NP: --help exits 0, prints the usage once, lists every flag, no stderr.
FLAGS=(--data --train-samples --test-samples --hidden --dropout-input --dropout --lr --batch
    --epochs --momentum --seed --tasks --method --lambda --gamma --fisher --fisher-samples
    --penalty-step --reduce --threads --out --eval-every --checkpoint-every --resume --quiet
    --fisher-overlap --help)
check_help() {
    local dir=$1 name=$2 np=$3 rc problem f missing=() n_usage
    run "$dir" "$np" --help
    rc=$?
    problem=$(crash_or_hang "$dir" "$rc")
    for f in "${FLAGS[@]}"; do
        grep -Eq -e "(^|[ ,])$f( |=|,|$)" "$dir/stdout" || missing+=("$f")
    done
    n_usage=$(grep -ci '^usage:' "$dir/stdout")
    if [[ -n $problem ]]; then
        report "$dir" "$name" "$problem"
    elif ((rc != 0)); then
        report "$dir" "$name" "exit status $rc, expected 0"
    elif ((${#missing[@]})); then
        report "$dir" "$name" "the help does not list: ${missing[*]}"
    elif ((n_usage != 1)); then
        report "$dir" "$name" "the usage line is printed $n_usage times, expected once"
    elif [[ -s $dir/stderr ]]; then
        report "$dir" "$name" "unexpected output on stderr"
    else
        report "$dir" "$name"
    fi
}

# Jobs: each gets its own directory (its cwd, so a relative --out stays inside it) and writes
# its result lines to DIR/result; at most MAX_JOBS run at once.
N_JOBS=0
spawn() { # spawn CHECK NAME ARGS...: CHECK DIR NAME ARGS... in the background
    local check=$1 name=$2 dir
    shift 2
    while (($(jobs -rp | wc -l) >= MAX_JOBS)); do wait -n; done
    N_JOBS=$((N_JOBS + 1))
    dir=$T/runs/$(printf '%03d' "$N_JOBS")
    mkdir "$dir"
    "$check" "$dir" "$name" "$@" >"$dir/result" 2>&1 &
}

# expect_error NAME PATTERN ARGS...: check_error at 1 rank and under mpirun -np 2.
expect_error() {
    local name=$1 pattern=$2 np
    shift 2
    for np in 1 2; do spawn check_error "$name (np=$np)" "$pattern" "$np" "$@"; done
}

OUT=(--out out --quiet)                   # relative: inside the run's own directory
SMALL=(--hidden 4 --batch 10 "${OUT[@]}") # with a fixture --data this runs in a fraction of a second

# ---- flags -----------------------------------------------------------------------------------
expect_error "unknown flag" '--bogus-flag' --bogus-flag 3 "${OUT[@]}"
expect_error "missing value at the end" '--lr' "${OUT[@]}" --lr
expect_error "missing value before a flag" '--out' --out --quiet
expect_error "non-numeric --lr" '--lr.*abc' --lr abc "${OUT[@]}"
expect_error "--lr 0" '--lr' --lr 0 "${OUT[@]}"
expect_error "--lr -1" '--lr' --lr -1 "${OUT[@]}"
expect_error "--lr nan" '--lr' --lr nan "${OUT[@]}"
expect_error "--batch 0" '--batch' --batch 0 "${OUT[@]}"
expect_error "--tasks 0" '--tasks' --tasks 0 "${OUT[@]}"
expect_error "empty --hidden=" '--hidden' --hidden= "${OUT[@]}"
expect_error "--hidden 0,5 (zero width in a list)" '--hidden' --hidden 0,5 "${OUT[@]}"
expect_error "bad --method" '--method.*bogus' --method bogus "${OUT[@]}"

# ---- dataset files ---------------------------------------------------------------------------
expect_error "--data: missing directory" "$F/no-such-dir" --data "$F/no-such-dir" "${SMALL[@]}"

d=$(good_copy missing-files) && rm "$d/$TEI" "$d/$TEL"
expect_error "--data: directory without the test files" "$d/$TEI" --data "$d" "${SMALL[@]}"

for f in $TRI $TRL $TEI $TEL; do
    d=$(good_copy "truncated-$f")
    truncate -s $(($(stat -c %s "$d/$f") - 7)) "$d/$f"
    expect_error "truncated $f" "$d/$f" --data "$d" "${SMALL[@]}"
done
d=$(good_copy truncated-header) && truncate -s 10 "$d/$TRI"
expect_error "$TRI truncated inside its header" "$d/$TRI" --data "$d" "${SMALL[@]}"

d=$(good_copy garbage) && cp "$F/garbage.bin" "$d/$TRI"
expect_error "garbage $TRI" "$d/$TRI" --data "$d" "${SMALL[@]}"

d=$(good_copy wrong-magic) && cp "$F/wrong-magic.bin" "$d/$TRI"
expect_error "wrong magic in $TRI" "$d/$TRI" --data "$d" "${SMALL[@]}"

d=$(good_copy count-mismatch) && cp "$F/labels-59.bin" "$d/$TRL"
expect_error "image/label count mismatch" "$d/$TRL" --data "$d" "${SMALL[@]}"

d=$(good_copy huge-count) && cp "$F/huge-count.bin" "$d/$TRI"
expect_error "header claims 2^30 images" "$d/$TRI" --data "$d" "${SMALL[@]}"

# corrupt gzip: a valid .gz (the only train-images file) with 32 bytes of its deflate stream
# overwritten; and one cut in half
d=$(good_copy corrupt-gz) && gzip -9 -n "$d/$TRI"
printf '\377%.0s' {1..32} | dd of="$d/$TRI.gz" bs=1 seek=200 conv=notrunc status=none
expect_error "corrupt gzip $TRI.gz" "$d/$TRI.gz" --data "$d" "${SMALL[@]}"

d=$(good_copy truncated-gz) && gzip -9 -n "$d/$TRI"
truncate -s $(($(stat -c %s "$d/$TRI.gz") / 2)) "$d/$TRI.gz"
expect_error "truncated gzip $TRI.gz" "$d/$TRI.gz" --data "$d" "${SMALL[@]}"

# ---- output ----------------------------------------------------------------------------------
# root may write anywhere, but nothing can be created under a regular file
mkdir "$F/x" && : >"$F/x/file"
expect_error "--out under a regular file" "--out.*$F/x/file" --data "$F/good" --hidden 4 \
    --out "$F/x/file/out" --quiet

# ---- divergence ------------------------------------------------------------------------------
# The loss becomes NaN within a few steps (a merely huge --lr such as 1e6 kills the ReLUs and
# leaves a huge but finite loss instead). The message must name the task and the step.
expect_error "NaN divergence (--lr 1e20)" 'diverged.*task [0-9]+.*step [0-9]+' \
    --train-samples 300 --test-samples 100 --hidden 8 --batch 10 --lr 1e20 "${OUT[@]}"

# ---- --fisher-overlap ------------------------------------------------------------------------
expect_error "--fisher-overlap on a missing file" "$F/no-such.h5" --fisher-overlap "$F/no-such.h5"
expect_error "--fisher-overlap on a garbage file" "$F/garbage.bin" \
    --fisher-overlap "$F/garbage.bin"

# ---- --help ----------------------------------------------------------------------------------
spawn check_help "--help (np=1)" 1
spawn check_help "--help (np=2)" 2

# ---- results ---------------------------------------------------------------------------------
wait
PASSED=0
FAILED=0
for dir in "$T"/runs/*/; do
    cat "$dir/result"
    PASSED=$((PASSED + $(grep -c '^ok - ' "$dir/result")))
    FAILED=$((FAILED + $(grep -c '^not ok - ' "$dir/result")))
    # a job that died before printing its result line is a failure too
    if ! grep -q 'ok - ' "$dir/result"; then
        echo "not ok - $dir: no result"
        FAILED=$((FAILED + 1))
    fi
done
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
