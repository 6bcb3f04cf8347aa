#!/usr/bin/env bash
# Download an MNIST-family dataset (the four IDX .gz files) and verify its md5 checksums, or
# (--verify) only check files already on disk. See data/README.md.
set -euo pipefail

readonly PROG=fetch.sh
readonly FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte
                t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
readonly DATASETS=(mnist fashion-mnist kmnist)

usage() {
    cat <<'EOF'
usage: data/fetch.sh mnist|fashion-mnist|kmnist [DEST_DIR]
           download the four .gz files into DEST_DIR (created if needed; default: the
           directory data/NAME of this repository, e.g. data/mnist, which the sweep files
           in launch/sweeps use) and verify them
       data/fetch.sh --verify [mnist|fashion-mnist|kmnist] DIR
           only check the files in DIR (raw or .gz); without a name the dataset is
           recognised from its train labels
Environment: FETCH_MIRROR=URL is tried before the official mirrors (curl or wget needed).
Exit status: 0 all good, 1 download or verification failed, 2 usage error.
EOF
}

die() { echo "$PROG: error: $*" >&2; exit 1; }
die_usage() { echo "$PROG: $*" >&2; usage >&2; exit 2; }

# Base URLs, tried in order; $FETCH_MIRROR (e.g. a local file:// or http:// copy) goes first.
mirrors() {
    [[ -n "${FETCH_MIRROR:-}" ]] && printf '%s ' "$FETCH_MIRROR"
    case "$1" in
        # yann.lecun.com often refuses downloads now; the S3 copy is the one torchvision uses.
        mnist) echo "https://ossci-datasets.s3.amazonaws.com/mnist" \
                    "http://yann.lecun.com/exdb/mnist" ;;
        fashion-mnist) echo "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com" ;;
        kmnist) echo "http://codh.rois.ac.jp/kmnist/dataset/kmnist" ;;
    esac
}

# md5 of the official .gz files.
#   mnist: the MD5SUMS of a verified copy of the original files (identical to the checksums
#     torchvision uses).
#   fashion-mnist: the table in the zalandoresearch/fashion-mnist README.
#   kmnist: rois-codh/kmnist publishes no checksums; these are the ones torchvision
#     (torchvision/datasets/mnist.py, class KMNIST) checks every download against.
gz_md5() {
    case "$1:$2" in
        mnist:train-images-idx3-ubyte) echo f68b3c2dcbeaaa9fbdd348bbdeb94873 ;;
        mnist:train-labels-idx1-ubyte) echo d53e105ee54ea40749a09fcbcd1e9432 ;;
        mnist:t10k-images-idx3-ubyte) echo 9fb629c4189551a2d022fa330f9573f3 ;;
        mnist:t10k-labels-idx1-ubyte) echo ec29112dd5afa0611ce80d1b7f02629c ;;
        fashion-mnist:train-images-idx3-ubyte) echo 8d4fb7e6c68d591d4c3dfef9ec88bf0d ;;
        fashion-mnist:train-labels-idx1-ubyte) echo 25c81989df183df01b3e8a0aad5dffbe ;;
        fashion-mnist:t10k-images-idx3-ubyte) echo bef4ecab320f06d8554ea6380940ec79 ;;
        fashion-mnist:t10k-labels-idx1-ubyte) echo bb300cfdad3c16e7a12a480ee83cd310 ;;
        kmnist:train-images-idx3-ubyte) echo bdb82020997e1d708af4cf47b453dcf7 ;;
        kmnist:train-labels-idx1-ubyte) echo e144d726b3acfaa3e44228e80efcd344 ;;
        kmnist:t10k-images-idx3-ubyte) echo 5c965bf0a639b31b8f53240b1b52f4d7 ;;
        kmnist:t10k-labels-idx1-ubyte) echo 7320c461ea6c1c855c0b718fb2a4b134 ;;
    esac
}

# md5 of the uncompressed IDX files: checks unpacked files, and .gz files that were
# recompressed (the Debian package dataset-fashion-mnist ships such files).
#   mnist: computed here from the md5-verified .gz files above.
#   fashion-mnist: as published alongside the .gz checksums by several dataset loaders; they
#     match the content of the Debian package.
#   kmnist: no published value known, so unpacked KMNIST files are checked by size only.
raw_md5() {
    case "$1:$2" in
        mnist:train-images-idx3-ubyte) echo 6bbc9ace898e44ae57da46a324031adb ;;
        mnist:train-labels-idx1-ubyte) echo a25bea736e30d166cdddb491f175f624 ;;
        mnist:t10k-images-idx3-ubyte) echo 2646ac647ad5339dbf082846283269ea ;;
        mnist:t10k-labels-idx1-ubyte) echo 27ae3e4e09519cfbb04c329615203637 ;;
        fashion-mnist:train-images-idx3-ubyte) echo f4a8712d7a061bf5bd6d2ca38dc4d50a ;;
        fashion-mnist:train-labels-idx1-ubyte) echo 9018921c3c673c538a1fc5bad174d6f9 ;;
        fashion-mnist:t10k-images-idx3-ubyte) echo 8181f5470baa50b63fa0f6fddb340f0a ;;
        fashion-mnist:t10k-labels-idx1-ubyte) echo 15d484375f8d13e6eb1aabb0c3f46965 ;;
    esac
}

# Uncompressed sizes are the same for all three: 60000/10000 images of 28x28 plus the header.
raw_size() {
    case "$1" in
        train-images-idx3-ubyte) echo 47040016 ;;
        train-labels-idx1-ubyte) echo 60008 ;;
        t10k-images-idx3-ubyte) echo 7840016 ;;
        t10k-labels-idx1-ubyte) echo 10008 ;;
    esac
}

is_dataset() {
    local d
    for d in "${DATASETS[@]}"; do [[ "$1" == "$d" ]] && return 0; done
    return 1
}

md5_stdin() {
    if command -v md5sum >/dev/null 2>&1; then md5sum | cut -c1-32; else md5 -q; fi
}

md5_of() { md5_stdin < "$1"; }

# An undecompressable file gets an impossible checksum rather than aborting the script.
md5_of_gunzipped() {
    local sum
    if sum=$(gzip -dc < "$1" 2>/dev/null | md5_stdin); then echo "$sum"; else echo "not-gzip"; fi
}

# Check one file of DATASET in DIR (its .gz and/or raw form). Prints one line per file found,
# returns non-zero on a mismatch or when neither form exists.
verify_file() {
    local ds=$1 dir=$2 f=$3 found=0 bad=0 want got
    if [[ -e "$dir/$f.gz" ]]; then
        found=1
        want=$(gz_md5 "$ds" "$f")
        got=$(md5_of "$dir/$f.gz")
        if [[ "$got" == "$want" ]]; then
            echo "ok    $dir/$f.gz (md5 $got)"
        elif [[ -n "$(raw_md5 "$ds" "$f")" &&
                "$(md5_of_gunzipped "$dir/$f.gz")" == "$(raw_md5 "$ds" "$f")" ]]; then
            echo "ok    $dir/$f.gz (recompressed: the uncompressed content md5 matches)"
        else
            echo "FAIL  $dir/$f.gz: md5 $got, expected $want for $ds"
            bad=1
        fi
    fi
    if [[ -e "$dir/$f" ]]; then
        found=1
        want=$(raw_md5 "$ds" "$f")
        if [[ -n "$want" ]]; then
            got=$(md5_of "$dir/$f")
            if [[ "$got" == "$want" ]]; then
                echo "ok    $dir/$f (md5 $got)"
            else
                echo "FAIL  $dir/$f: md5 $got, expected $want for $ds"
                bad=1
            fi
        else
            got=$(wc -c < "$dir/$f" | tr -d ' ')
            if [[ "$got" == "$(raw_size "$f")" ]]; then
                echo "ok    $dir/$f (size only: no published md5 for the unpacked $ds file)"
            else
                echo "FAIL  $dir/$f: $got bytes, expected $(raw_size "$f")"
                bad=1
            fi
        fi
    fi
    if [[ $found == 0 ]]; then
        echo "FAIL  $dir/$f: missing (neither $f nor $f.gz)"
        return 1
    fi
    return $bad
}

verify_dir() {
    local ds=$1 dir=$2 f status=0
    for f in "${FILES[@]}"; do verify_file "$ds" "$dir" "$f" || status=1; done
    return $status
}

# Which dataset DIR holds, from the checksum of its train labels (raw or .gz).
detect_dataset() {
    local dir=$1 f=train-labels-idx1-ubyte ds gz="" raw="" unz=""
    [[ -e "$dir/$f.gz" ]] && gz=$(md5_of "$dir/$f.gz") && unz=$(md5_of_gunzipped "$dir/$f.gz")
    [[ -e "$dir/$f" ]] && raw=$(md5_of "$dir/$f")
    for ds in "${DATASETS[@]}"; do
        if [[ -n "$gz" && "$gz" == "$(gz_md5 "$ds" "$f")" ]] ||
           [[ -n "$(raw_md5 "$ds" "$f")" && ( "$unz" == "$(raw_md5 "$ds" "$f")" ||
                                             "$raw" == "$(raw_md5 "$ds" "$f")" ) ]]; then
            echo "$ds"
            return 0
        fi
    done
    return 1
}

cmd_verify() {
    local ds="" dir
    case $# in
        1) dir=$1 ;;
        2) ds=$1; dir=$2; is_dataset "$ds" || die_usage "unknown dataset '$ds'" ;;
        *) die_usage "--verify takes [DATASET] DIR" ;;
    esac
    [[ -d "$dir" ]] || die "$dir: no such directory"
    if [[ -z "$ds" ]]; then
        ds=$(detect_dataset "$dir") ||
            die "$dir: train-labels-idx1-ubyte(.gz) matches none of ${DATASETS[*]} (missing," \
                "damaged, or unpacked KMNIST: then name the dataset)"
    fi
    if verify_dir "$ds" "$dir"; then
        echo "$dir: all four $ds files verified"
    else
        die "$dir: verification against $ds failed (see the FAIL lines above)"
    fi
}

# Download URL to OUT with curl or wget. On failure prints the tool's last error line.
download() {
    local url=$1 out=$2 err
    if command -v curl >/dev/null 2>&1; then
        if err=$(curl -fsSL --connect-timeout 20 --retry 2 -o "$out" "$url" 2>&1); then
            return 0
        fi
    elif command -v wget >/dev/null 2>&1; then
        if err=$(wget -nv --timeout=20 --tries=2 -O "$out" "$url" 2>&1); then return 0; fi
    else
        echo "neither curl nor wget is installed"
        return 1
    fi
    printf '%s\n' "$err" | sed '/^[[:space:]]*$/d' | tail -n 1
    return 1
}

PART=""
cleanup() { [[ -n "$PART" ]] && rm -f -- "$PART"; return 0; }

cmd_fetch() {
    local ds=$1 dest=$2 f base url err errs want got final ok
    mkdir -p -- "$dest" 2>/dev/null || die "$dest: cannot create directory"
    [[ -w "$dest" ]] || die "$dest: directory is not writable"
    trap cleanup EXIT
    trap 'cleanup; exit 130' INT TERM
    for f in "${FILES[@]}"; do
        final="$dest/$f.gz"
        want=$(gz_md5 "$ds" "$f")
        if [[ -e "$final" ]] && [[ "$(md5_of "$final")" == "$want" ]]; then
            echo "ok    $final (already present, md5 $want)"
            continue
        fi
        # Never leave a partial file under the final name: fetch to .part, verify, rename.
        PART="$final.part"
        ok=0
        errs=""
        for base in $(mirrors "$ds"); do
            url="$base/$f.gz"
            rm -f -- "$PART"
            if ! err=$(download "$url" "$PART"); then
                errs+="; $url: ${err:-unknown error}"
                continue
            fi
            got=$(md5_of "$PART")
            if [[ "$got" == "$want" ]]; then ok=1; break; fi
            errs+="; $url: checksum mismatch (md5 $got, expected $want), discarded"
        done
        [[ $ok == 1 ]] || die "cannot fetch $f.gz for $ds: ${errs#; }"
        mv -f -- "$PART" "$final"
        PART=""
        echo "ok    $final (downloaded from $url, md5 $got)"
    done
    echo "$dest: all four $ds files downloaded and verified"
}

main() {
    case "${1:-}" in
        -h|--help) usage; exit 0 ;;
        --verify) shift; cmd_verify "$@" ;;
        "") die_usage "missing arguments" ;;
        *)
            is_dataset "$1" || die_usage "unknown dataset '$1'"
            [[ $# == 1 || $# == 2 ]] || die_usage "expected: DATASET [DEST_DIR]"
            cmd_fetch "$1" "${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$1}"
            ;;
    esac
}

main "$@"
