#!/usr/bin/env bash
# Install what ewc-train needs to build, test and run on Debian 12 (as root, or through sudo).
# Does nothing when everything is already installed, so it is cheap to run before every build.
set -euo pipefail

packages=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libopenblas-dev
          libhdf5-dev hdf5-tools libcmocka-dev zlib1g-dev librandom123-dev
          dataset-fashion-mnist python3-h5py python3-numpy python3-matplotlib
          slurm-wlm munge iproute2
          clang cppcheck)   # .ci/run: the clang -Werror build and static analysis

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
    sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
