#!/usr/bin/env bash
# The multi-node figures of README "Scaling": bytes and step time of the three reductions at
# 2 ranks on one host and at 2 x 3 ranks across emulated hosts (network namespaces, with and
# without a 10 GbE limit), 2 ranks vs 1 rank throughput, and the alpha-beta of each link.
# Run on a quiet machine, as root (for the namespaces), from the repository root:
#   tests/bench/scaling.sh           # env BUILD (default build), DATA (default $EWC_MNIST_DIR or
#                                    # data/mnist), OUT (default tests/bench/results), CORE
#                                    # (OPENBLAS_CORETYPE for the runs; default: as set)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build}
data=${DATA:-${EWC_MNIST_DIR:-data/mnist}}
out=${OUT:-tests/bench/results}
hosts=tests/tools/netns-hosts.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
[ -n "${CORE:-}" ] && export OPENBLAS_CORETYPE=$CORE
pass=(-x OPENBLAS_NUM_THREADS) # the remote ranks start with a clean environment
[ -n "${OPENBLAS_CORETYPE:-}" ] && pass+=(-x OPENBLAS_CORETYPE)
mkdir -p "$out"
log="$out/scaling-$(date +%Y-%m-%d).txt"
exec > >(tee "$log") 2>&1

echo "# tests/bench/scaling.sh, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores," \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, data $data"
echo
echo "## alpha-beta: MPI ping-pong, shared memory, TCP over lo, TCP between two emulated hosts"
mpirun -np 2 "$build/bench_pingpong"
mpirun -np 2 --mca btl tcp,self --mca btl_tcp_if_include lo "$build/bench_pingpong"

echo
echo "## 2 ranks vs 1 rank, 784-1000-1000-10, batch 1000 (wall clock)"
for r in 1 2; do
    mpirun -np $r --bind-to core "$build/bench_train" --data "$data" --hidden 1000,1000 \
        --batch 1000 --clock wall
done

echo
echo "## the three reductions at 2 ranks on one host (wall clock)"
mpirun -np 2 --bind-to core "$build/bench_reduce" --data "$data" --clock wall

name=bsc$$
trap '"$hosts" down $name > /dev/null 2>&1 || true' EXIT
"$hosts" up $name 3 2 > /dev/null
echo
echo "## across 3 emulated hosts (network namespaces, TCP between them), 2 ranks each"
"$hosts" mpirun $name -np 2 --map-by node "$(realpath "$build/bench_pingpong")"
"$hosts" mpirun $name -np 6 "${pass[@]}" \
    "$(realpath "$build/bench_reduce")" --data "$(realpath "$data")" --clock wall --reps 2
"$hosts" rate $name 10gbit > /dev/null
echo
echo "## the same with every host's link limited to 10 Gbit/s (tc tbf)"
"$hosts" mpirun $name -np 6 "${pass[@]}" \
    "$(realpath "$build/bench_reduce")" --data "$(realpath "$data")" --clock wall --reps 2
echo
echo "# written to $log"
