#!/bin/bash
# One task of the job array slurm.py submits: one run of the study, through make, so that a
# finished run is skipped and an interrupted one resumes from its checkpoint.
#
# $1 is the submission's folder: its file `runs` lists a run folder a line (this task's is line
# SLURM_ARRAY_TASK_ID + 1), and its file `make` make's variables (RUNS=..., SEEDS=..., ARGS=...).
# What this prints, and what the run prints, Slurm appends to slurm.log in the run's folder.
set -u
mapfile -t folders < "$1/runs"
mapfile -t variables < "$1/make"
run=${folders[$SLURM_ARRAY_TASK_ID]}
task=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}
epochs() { cat "$run/metrics.jsonl" 2>/dev/null | wc -l; }
say() { echo "$(date '+%F %T') task $task: $*"; }
say "start $((${SLURM_RESTART_COUNT:-0} + 1)) on $(hostname), $(epochs) epochs done: $run"

# Before the time limit, Slurm signals this shell alone (sbatch --signal=B:USR1@N): stop the run
# as Ctrl-C does (train.py takes SIGTERM so), with its last finished epoch on disk, and requeue.
# Preemption and scontrol requeue send SIGTERM to every process of the task: train.py stops the
# same way, and Slurm requeues the task itself.
stopping=
trap 'stopping=1; kill -TERM -- -$pid' USR1
unset MAKEFLAGS MAKELEVEL MFLAGS  # the submitting make's: its job slots do not exist here
before=$(epochs)
setsid make --no-print-directory "$run/summary.json" "${variables[@]}" &  # a process group: make and train.py
pid=$!
wait $pid
status=$?
while kill -0 $pid 2>/dev/null; do  # the trap interrupted the wait: wait for the run to stop
    wait $pid
    status=$?
done

if [ -n "$stopping" ]; then
    if [ "$(epochs)" -gt "$before" ]; then
        say "stopped before the time limit after epoch $(epochs); requeued, it continues from there"
        scontrol requeue "$task"
    else  # a requeue would only come back here: the time limit is shorter than an epoch
        say "stopped before the time limit without finishing an epoch; not requeued: give it a longer --time"
    fi
    exit 1
fi
say "make ended with status $status"
exit $status
