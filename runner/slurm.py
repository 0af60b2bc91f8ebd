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

from bookkeeping import download, flags, runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project: each task runs make there
TASK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'slurm_task.sh')
# Seconds before the time limit at which Slurm tells a task to stop (sbatch --signal). Slurm checks
# its limits now and then, so the signal may come up to a minute off; the epoch in progress when it
# comes is lost, and the run continues from the last one finished.
STOP_BEFORE = 300


def submit(folders, options, make_variables, name, runs_dir, start_over=()):
    """One job array of the runs in `folders` that have not ended, and of those in `start_over`
    (make's FORCE=1), a task each. Returns the job id (None if nothing was submitted), and the
    damaged run folders left out."""
    todo, damaged = unended(folders, start_over)
    if not todo:
        print(f'nothing to submit: all {len(folders) - len(damaged)} runs have ended (make status)')
        return None, damaged
    put_data_in_place(make_variables)
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
               *shlex.split(options), TASK, os.path.abspath(batch)]
    try:
        submitted = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
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
    return job, damaged


def unended(folders, start_over=()):
    """The run folders among `folders` whose run has not ended, or that are to start over, and those
    damaged, which are left out, each with a line that says so."""
    todo, damaged = [], []
    for folder in folders:
        held = runs.examine(folder)
        if held.damaged:
            print(f'not submitted: {held.damaged}')
            damaged.append(folder)
        elif folder in start_over or held.state not in ('finished', 'diverged'):
            todo.append(folder)
    return todo, damaged


def put_data_in_place(make_variables):
    """CIFAR-10 where the runs will read it (train.py's --data-dir, in ARGS if given there), fetched
    here if need be: compute nodes are often offline, and every task would try to download it."""
    words = shlex.split(next((v.partition('=')[2] for v in make_variables if v.startswith('ARGS=')), ''))
    data_dir = os.path.join(ROOT, flags.parser().parse_known_args(words)[0].data_dir)  # the tasks run in ROOT
    try:
        download.fetch(data_dir)
    except download.DataError as e:
        raise SystemExit(f'slurm.py: error: nothing submitted: the compute nodes read CIFAR-10 from {data_dir}, '
                         f'and {e}') from None


def main(argv=None):
    parser = argparse.ArgumentParser(description='Submit the unfinished runs among RUN... as one Slurm job array.')
    parser.add_argument('folders', nargs='+', metavar='RUN', help='run folders, as the Makefile lays them out')
    parser.add_argument('--sbatch', default='', help='your cluster\'s sbatch options: GPU, time, partition, account')
    parser.add_argument('--make', action='append', default=[], metavar='VARIABLE=VALUE',
                        help='a make variable each task passes on (RUNS, SEEDS, ARGS)')
    parser.add_argument('--name', default='study', help='the job\'s name (default: %(default)s)')
    parser.add_argument('--runs', default='runs', help='the folder of the runs (default: %(default)s)')
    parser.add_argument('--start-over', action='append', default=[], metavar='RUN',
                        help='a run to submit even if it has ended: make FORCE=1 starts it over')
    args = parser.parse_args(argv)
    _, damaged = submit(args.folders, args.sbatch, args.make, args.name, args.runs, args.start_over)
    return 1 if damaged else 0  # a damaged run was left out, and named


if __name__ == '__main__':
    sys.exit(main())
