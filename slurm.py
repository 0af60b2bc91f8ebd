"""The study on a Slurm cluster: every unfinished run of a make target, as one job array.

    make study SEEDS='0 1 2' SLURM='--gres=gpu:1 --time=6:00:00 --partition=gpu'

SLURM holds your cluster's sbatch options; make passes the target's run folders here. Each task of
the array is one run, run through make by slurm_task.sh, so that a finished run is skipped and an
interrupted one resumes from its checkpoint. The command returns as soon as Slurm has the job:
follow it with `make status` (or squeue), and cancel it with scancel.

Tasks are requeueable. STOP_BEFORE seconds before a task's time limit, Slurm signals it; the run
stops with its last finished epoch on disk, and the task requeues itself to continue from there.
A preempted task stops the same way, and Slurm requeues it. Each task appends its output, across
requeues, to slurm.log in its run's folder.
"""
import argparse
import os
import shlex
import subprocess
import sys
import time

import runs

HERE = os.path.dirname(os.path.abspath(__file__))
# Seconds before the time limit at which Slurm tells a task to stop (sbatch --signal). Slurm checks
# its limits now and then, so the signal may come up to a minute off; the epoch in progress when it
# comes is lost, and the run continues from the last one finished.
STOP_BEFORE = 300


def submit(folders, options, make_variables, name, runs_dir):
    """One job array of the runs in `folders` that have not ended, a task each. Returns the job id."""
    todo = [folder for folder in folders if runs.state(folder) not in ('finished', 'diverged')]
    if not todo:
        print(f'nothing to submit: all {len(folders)} runs have ended (make status)')
        return None
    # The submission's folder: which run each task runs, make's variables, and the tasks' logs,
    # each a link to slurm.log in its run's folder. Slurm writes a log into a folder that exists,
    # or fails the task without a word where anyone would look.
    batch = os.path.join(runs_dir, 'slurm', time.strftime('%Y%m%d-%H%M%S-') + str(os.getpid()))
    os.makedirs(batch)
    with open(os.path.join(batch, 'runs'), 'w') as f:
        f.write(''.join(folder + '\n' for folder in todo))
    with open(os.path.join(batch, 'make'), 'w') as f:
        f.write(''.join(variable + '\n' for variable in make_variables))
    for task, folder in enumerate(todo):
        os.makedirs(folder, exist_ok=True)
        os.symlink(os.path.abspath(os.path.join(folder, 'slurm.log')), os.path.join(batch, f'{task}.log'))
    command = ['sbatch', '--parsable', f'--array=0-{len(todo) - 1}', f'--job-name={name}', '--requeue',
               '--open-mode=append', f'--signal=B:USR1@{STOP_BEFORE}', f'--output={os.path.abspath(batch)}/%a.log',
               *shlex.split(options), os.path.join(HERE, 'slurm_task.sh'), os.path.abspath(batch)]
    try:
        submitted = subprocess.run(command, cwd=HERE, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit('slurm.py: error: sbatch not found: SLURM=... submits from a Slurm cluster\'s login node')
    if submitted.returncode:
        raise SystemExit(f'slurm.py: error: sbatch refused the job: {submitted.stderr.strip()}')
    job = submitted.stdout.strip().split(';')[0]
    print(f'submitted job {job}: {len(todo)} of {len(folders)} runs, a task each ({batch}/runs); '
          f'each task logs into its run\'s folder, slurm.log')
    print(f'  follow: make status{"".join(" " + shlex.quote(v) for v in make_variables if not v.startswith("ARGS="))}'
          f'   or: squeue -j {job}')
    print(f'  cancel: scancel {job}')
    return job


def main():
    parser = argparse.ArgumentParser(description='Submit the unfinished runs among RUN... as one Slurm job array.')
    parser.add_argument('folders', nargs='+', metavar='RUN', help='run folders, as the Makefile lays them out')
    parser.add_argument('--sbatch', default='', help='your cluster\'s sbatch options: GPU, time, partition, account')
    parser.add_argument('--make', action='append', default=[], metavar='VARIABLE=VALUE',
                        help='a make variable each task passes on (RUNS, SEEDS, ARGS)')
    parser.add_argument('--name', default='study', help='the job\'s name (default: %(default)s)')
    parser.add_argument('--runs', default='runs', help='the folder of the runs (default: %(default)s)')
    args = parser.parse_args()
    submit(args.folders, args.sbatch, args.make, args.name, args.runs)


if __name__ == '__main__':
    sys.exit(main())
