#!/usr/bin/env bash
# Slurm batch script for one ewc-train run: checkpoints when Slurm warns of the time limit
# (SIGUSR1, 120 s ahead), then requeues itself, and the same command resumes; see launch/README.md.
#
#SBATCH --job-name=ewc-train
#SBATCH --ntasks=1
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@120
#
# Usage:
#   sbatch [SBATCH_OPTIONS] launch/ewc-sbatch.sh TRAINER [ARGS...] --out DIR
#   sbatch --array=LIST [SBATCH_OPTIONS] launch/ewc-sbatch.sh --array CMD_DIR   (ewc-sweep submit)
# With --array, task I runs the command in CMD_DIR/I.cmd (one argument per line, the trainer first).
# --resume is added when missing. Every task of the job step (srun -n $SLURM_NTASKS) is one MPI rank.
#
# Environment:
#   EWC_LAUNCHER   srun (default) or mpirun (Open MPI's, which reads the Slurm allocation itself)
#   EWC_SRUN_ARGS  srun options (default --mpi=pmix; set it empty to use the site's MpiDefault)
#
# Signals: Slurm sends SIGUSR1 to this batch shell only (B:); the shell forwards it to srun (or
# mpirun), which forwards it to every rank; the ranks stop at the next step boundary, rank 0 writes
# the checkpoint, and the trainer exits 3. To do the same by hand: scancel --batch --signal=USR1 JOB
# (not --full: the ranks would get the signal twice, and a second signal stops them at once).
# Exit status of the trainer -> action:
#   0  finished          -> exit 0
#   3  stopped by signal -> scontrol requeue the job (or array task), which restarts with --resume;
#                           exit 3
#   *  failed            -> exit with that status, no requeue; DIR/failed.json records it (ewc-sweep)
set -euo pipefail

say() { echo "ewc-sbatch: $(date '+%F %T') job ${SLURM_JOB_ID:-?}${SLURM_ARRAY_TASK_ID:+ (array task $SLURM_ARRAY_TASK_ID)}: $*" >&2; }
die() { say "error: $*"; exit 1; }

[ $# -gt 0 ] || die "no command; usage: sbatch [OPTIONS] ewc-sbatch.sh TRAINER [ARGS...] --out DIR"
if [ "$1" = "--array" ]; then
    [ $# -eq 2 ] || die "--array takes exactly one argument, the command directory"
    [ -n "${SLURM_ARRAY_TASK_ID:-}" ] || die "--array: SLURM_ARRAY_TASK_ID is not set (submit with sbatch --array)"
    cmd_file="$2/$SLURM_ARRAY_TASK_ID.cmd"
    [ -r "$cmd_file" ] || die "--array: cannot read $cmd_file"
    mapfile -t cmd < "$cmd_file"
    [ ${#cmd[@]} -gt 0 ] || die "--array: $cmd_file is empty"
else
    cmd=("$@")
fi

out="" resume=0 threads=0
for ((i = 1; i < ${#cmd[@]}; i++)); do
    case "${cmd[i]}" in
        --out) out="${cmd[i+1]:-}" ;;
        --out=*) out="${cmd[i]#--out=}" ;;
        --resume) resume=1 ;;
        --threads|--threads=*) threads=1 ;;
    esac
done
[ -n "$out" ] || die "the trainer command has no --out DIR (the checkpoint that requeued jobs resume from lives there)"
[ "$resume" -eq 1 ] || cmd+=(--resume)
if [ -n "${SLURM_CPUS_PER_TASK:-}" ] && [ "$threads" -eq 0 ]; then
    cmd+=(--threads "$SLURM_CPUS_PER_TASK")     # BLAS threads per rank = CPUs Slurm gave each task
fi
export OPENBLAS_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}" OMP_NUM_THREADS=1

ntasks="${SLURM_NTASKS:-1}"
case "${EWC_LAUNCHER:-srun}" in
    srun)
        # shellcheck disable=SC2206
        launch=(srun ${EWC_SRUN_ARGS-"--mpi=pmix"} --ntasks="$ntasks" --kill-on-bad-exit=1) ;;
    mpirun)
        [ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        launch=(mpirun -np "$ntasks") ;;
    *) die "EWC_LAUNCHER: expected srun or mpirun, got '$EWC_LAUNCHER'" ;;
esac

mkdir -p "$out"
say "start (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname), $ntasks rank(s): ${launch[*]} ${cmd[*]}"

child="" pending="" forwarded=0
# shellcheck disable=SC2317  # called by the trap
forward() {   # forward the time-limit warning to the launcher (or as soon as it has started), once:
    # a second signal would make the trainer quit without its checkpoint, and scancel may deliver
    # one signal several times (see README.md)
    if [ "$forwarded" -eq 1 ]; then say "got SIG$1 again, ignored (already stopping)"; return; fi
    forwarded=1
    say "got SIG$1, forwarding it to the trainer: checkpoint and stop"
    if [ -n "$child" ]; then kill -s "$1" "$child" 2>/dev/null || true; else pending="$1"; fi
}
trap 'forward USR1' USR1
# scancel and the hard time limit send SIGTERM to every process of the job, the ranks included:
# forwarding it would make them see it twice (and the second one stops them without a checkpoint)
trap 'say "got SIGTERM: the job is being cancelled or hit its time limit"' TERM
trap 'say "got SIGINT"' INT

"${launch[@]}" "${cmd[@]}" &
child=$!
[ -z "$pending" ] || kill -s "$pending" "$child" 2>/dev/null || true
# a trapped signal interrupts wait (status > 128) while the trainer is still writing its checkpoint:
# wait again until it has really exited; bash keeps the status of a reaped child for the last wait
rc=0
while kill -0 "$child" 2>/dev/null; do wait "$child" || true; done
wait "$child" || rc=$?

case "$rc" in
    0) say "run finished (exit 0)"; exit 0 ;;
    3)
        [ -n "${SLURM_JOB_ID:-}" ] || { say "stopped with a checkpoint (exit 3), not under Slurm: no requeue"; exit 3; }
        # an array task's own id is ARRAYJOB_TASK: the last task's SLURM_JOB_ID is the array's id,
        # and requeueing that would requeue every task of the array
        job="$SLURM_JOB_ID"
        [ -z "${SLURM_ARRAY_JOB_ID:-}" ] || job="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
        say "stopped with a checkpoint (exit 3): requeueing job $job"
        scontrol requeue "$job" || say "scontrol requeue $job failed (job cancelled?)"
        exit 3 ;;
    *)  # recorded for ewc-sweep (list shows it; run and submit skip it unless --retry-failed)
        printf '{"exit": %d, "reason": "trainer exited %d under Slurm job %s; see the job log", "time": "%s"}\n' \
            "$rc" "$rc" "${SLURM_JOB_ID:-?}" "$(date '+%F %T')" > "$out/failed.json" || true
        say "trainer failed (exit $rc), not requeueing; recorded in $out/failed.json"; exit "$rc" ;;
esac
