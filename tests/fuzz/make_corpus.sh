#!/usr/bin/env bash
# Build the fuzzers' seed corpora from real files (nothing here is committed):
#   OUT/idx/         small IDX files cut from the Fashion-MNIST files (images and labels; raw and
#                    gzip; full 28x28 images and 8x8 crops)
#   OUT/config/      argument lists (one argument a line): the ewc-train command lines of the
#                    READMEs, and each flag of `ewc-train --help` with a value of its kind
#   OUT/checkpoint/  checkpoint.h5 of two short ewc-train runs on an 8x8 crop of Fashion-MNIST,
#                    with the flags fuzz_checkpoint.c's CONFIGS expects
#
# usage: bash tests/fuzz/make_corpus.sh OUT
# env:   EWC_TRAIN      ewc-train to run (default: build/ewc-train of this source tree)
#        EWC_FUZZ_DATA  directory of the Fashion-MNIST IDX files (default: ewc-train's --data
#                       default)
# Exits 1 (with one line saying why) if anything could not be made.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
OUT=${1:?usage: make_corpus.sh OUT}
EXE=${EWC_TRAIN:-$SRC/build/ewc-train}
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
die() { echo "make_corpus.sh: $*" >&2; exit 1; }

[[ -x $EXE ]] || die "ewc-train not found at '$EXE' (set EWC_TRAIN)"
EXE=$(cd "$(dirname "$EXE")" && pwd)/$(basename "$EXE")
if [[ -z ${EWC_FUZZ_DATA:-} ]]; then
    # the default --data, as --help prints it
    EWC_FUZZ_DATA=$("$EXE" --help | tr '\n' ' ' \
                    | sed -n 's/.*--data DIR [^(]*([^)]*) *(default \([^)]*\)).*/\1/p')
fi
[[ -n $EWC_FUZZ_DATA && -d $EWC_FUZZ_DATA ]] || die "no dataset directory (set EWC_FUZZ_DATA)"

rm -rf "$OUT"
mkdir -p "$OUT/idx" "$OUT/config" "$OUT/checkpoint" "$OUT/scratch/fuzz-data"

# ---- IDX: cut from the real files -----------------------------------------------------------
"$PY" - "$EWC_FUZZ_DATA" "$OUT" <<'PYEOF' || die "cannot cut the IDX seeds from $EWC_FUZZ_DATA"
import gzip, os, struct, sys
src, out = sys.argv[1], sys.argv[2]

def load(stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(src, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                raw = f.read()
            return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    sys.exit(f"{stem}: not found in {src}")

def parse(raw):
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return list(dims), raw[4 + 4 * ndim:]

def idx(dims, payload):
    return bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims) + payload

def crop(dims, payload, n, side=8):
    rows, cols = dims[1], dims[2]
    r0, c0 = (rows - side) // 2, (cols - side) // 2
    out = bytearray()
    for i in range(n):
        img = payload[i * rows * cols:(i + 1) * rows * cols]
        for r in range(r0, r0 + side):
            out += img[r * cols + c0:r * cols + c0 + side]
    return idx([n, side, side], bytes(out))

def first(dims, payload, n):
    per = len(payload) // dims[0]
    return idx([n] + dims[1:], payload[:n * per])

def put(path, data, gz=False):
    with open(path, "wb") as f:
        f.write(gzip.compress(data, mtime=0) if gz else data)

tri, trl = parse(load("train-images-idx3-ubyte")), parse(load("train-labels-idx1-ubyte"))
tei, tel = parse(load("t10k-images-idx3-ubyte")), parse(load("t10k-labels-idx1-ubyte"))
seeds = {
    "images-28x28-2": first(*tri, 2),
    "images-8x8-3": crop(*tri, 3),
    "labels-8": first(*trl, 8),
    "test-labels-3": first(*tel, 3),
}
for name, data in seeds.items():
    put(f"{out}/idx/{name}.raw", data)
    put(f"{out}/idx/{name}.gz", data, gz=True)

# the training data of the checkpoint seeds: 64 training and 32 test images, 8x8 crops
d = f"{out}/scratch/fuzz-data"
put(f"{d}/train-images-idx3-ubyte", crop(*tri, 64))
put(f"{d}/train-labels-idx1-ubyte", first(*trl, 64))
put(f"{d}/t10k-images-idx3-ubyte", crop(*tei, 32))
put(f"{d}/t10k-labels-idx1-ubyte", first(*tel, 32))
PYEOF

# ---- command lines --------------------------------------------------------------------------
n=0
seed_args() { # one seed file, one argument a line
    n=$((n + 1))
    printf '%s\n' "$@" > "$OUT/config/$(printf 'args-%03d' "$n")"
}
# the ewc-train command lines of the READMEs (flags from "ewc-train" to the end of the command)
while IFS= read -r line; do
    read -r -a words <<< "$line"
    (( ${#words[@]} )) && seed_args "${words[@]}"
done < <(grep -ho 'ewc-train \(-[-a-z]\+[^`#|]*\)' "$SRC/README.md" "$SRC/launch/README.md" \
         | sed 's/^ewc-train //; s/\\$//; s/\.\.\.//g' | sort -u)
# every flag of --help, with a value of the kind its help line shows
while IFS= read -r line; do
    flag=$(sed 's/^ *\(--[a-z0-9-]*\).*/\1/' <<< "$line")
    case $line in
        *"$flag "[A-Z]*) meta=$(sed "s/^ *$flag \([A-Z,.]*\).*/\1/" <<< "$line") ;;
        *"$flag "[a-z]*"|"*) meta=$(sed "s/^ *$flag \([a-z|-]*\).*/\1/" <<< "$line") ;;
        *) meta= ;;
    esac
    case $meta in
        "") seed_args "$flag" ;;
        *"|"*) seed_args "$flag" "${meta%%|*}"; seed_args "$flag=${meta##*|}" ;;
        N|STEPS|P) seed_args "$flag" 1; seed_args "$flag=0" ;;
        W*) seed_args "$flag" 8,4 ;;
        DIR|FILE|PATH) seed_args "$flag" some/dir ;;
        *) seed_args "$flag" 0.5; seed_args "$flag=1e-3" ;;
    esac
done < <("$EXE" --help | grep '^ *--[a-z]')
seed_args --method ewc --lambda 30 --hidden 0 --validation 10 --train-samples 100 --patience 2
seed_args -h
(( n > 20 )) || die "only $n command-line seeds (README or --help changed?)"

# ---- checkpoints: two short real runs, the configurations of fuzz_checkpoint.c --------------
# NAME FLAGS...: train in OUT/scratch (so --data is the relative fuzz-data), keep the checkpoint
run() {
    local name=$1
    shift
    (cd "$OUT/scratch" && "$EXE" --data fuzz-data --tasks 2 --train-samples 64 --test-samples 32 \
        --batch 16 "$@" --blas-core keep --quiet --out "run-$name" > "run-$name.log" 2>&1) \
        || die "ewc-train run $name failed: $(tail -1 "$OUT/scratch/run-$name.log")"
    cp "$OUT/scratch/run-$name/checkpoint.h5" "$OUT/checkpoint/$name.h5"
}
run ewc --hidden 8 --method ewc --momentum 0.9 --validation 16 --patience 2 --fisher-samples 32 \
    --seed 7
run adam --hidden 8,4 --method online-ewc --gamma 0.9 --optimizer adam --penalty-step implicit \
    --permute-fraction 0.5
rm -rf "$OUT/scratch"
echo "make_corpus.sh: $(ls "$OUT/idx" | wc -l) IDX, $(ls "$OUT/config" | wc -l) command-line," \
     "$(ls "$OUT/checkpoint" | wc -l) checkpoint seeds in $OUT"
