"""What make asks of a target's run folders, before its runs and after them.

    python -m runner.checks before [--force] --args ARGS --into DIR RUN 'FLAGS' [RUN 'FLAGS' ...]
    python -m runner.checks ended RUN...

make takes a run whose summary.json exists as done, and continues one with a checkpoint. That is
right only for the run the target asks for. A quick try, `make lr-sweep ARGS='--epochs 1'`, leaves
finished one-epoch runs in the study's folders: a plain `make lr-sweep` afterwards would find
nothing to do, and the tables would hold the quick try. So before make runs anything, `before`
compares the training flags of every run folder that holds a run with those its target asks for,
as the Linux kernel's build (Kbuild's if_changed) rebuilds a file whose compile command changed,
and names each folder that differs, and how (bookkeeping/flags.py's departures).

It answers make with its exit status and two files in DIR, a folder of that make's own: status 1
if a folder holds another run and FORCE=1 was not given, so that make stops with nothing run;
DIR/stale lists the folders whose runs start over (with FORCE=1), DIR/damaged those with a damaged
file, which make leaves out, a line each.
"""
import argparse
import os
import shlex
import sys

from bookkeeping import flags, runs


def differences(folder, asked):
    """How the run in `folder` departs from the run train.py's flags `asked` (a list of words) would
    make, as phrases ('epochs 1, not 15'); [] if it is that run. runs.Damaged if a file of the
    folder is not as train.py wrote it."""
    wanted = flags.training(flags.parser().parse_args([*asked, '--out', folder]))
    runs.read_checked(folder)  # a folder that holds a run has a config.json, or this says it is damaged
    return flags.departures(runs.read_config(folder)['flags'], wanted)


def before(planned, args, force, into):
    """For make, before a target's runs: `planned` is [(run folder, its target's flags)] of the
    folders that hold a run, `args` make's ARGS. Says, for the person, on stderr, what differs or what
    is damaged, and how to go on; writes the lists for make into `into`. Returns the exit status."""
    stale, damaged = [], []
    for folder, asked in planned:
        try:
            phrases = differences(folder, shlex.split(asked) + shlex.split(args))
        except runs.Damaged as e:
            print(f'make leaves out {e}', file=sys.stderr)
            damaged.append(folder)
            continue
        if phrases:
            stale.append(folder)
            print(f'  {folder}: {"; ".join(phrases)}', file=sys.stderr)
    if stale and force:
        print(f'FORCE=1: {len(stale)} run{"s" * (len(stale) > 1)} above start over with the flags asked for', file=sys.stderr)
    elif stale:
        print(f'make: {len(stale)} run folder{"s" * (len(stale) > 1)} above {"hold" if len(stale) > 1 else "holds"} '
              f'a run made with other training flags than asked for, so none is taken as done, and nothing was run. '
              f'To go on: keep them and put this study in another folder (RUNS=...), or start them over with the '
              f'flags asked for (FORCE=1 deletes them)', file=sys.stderr)
    os.makedirs(into, exist_ok=True)
    for name, folders in (('stale', stale), ('damaged', damaged)):
        runs.write_atomic(os.path.join(into, name), ''.join(f + '\n' for f in folders).encode())
    return 1 if stale and not force else 0


def ended(folders):
    """For make, after a target's runs: a line for each run that diverged (train.py exits with
    status 3 for those, which make takes as ended, and goes on with the others), and for each run
    left out as damaged. Returns 1, make's failure, if one was damaged; a divergence is a result."""
    gone, damaged = [], []
    for folder in folders:
        try:
            runs.read_checked(folder)
            if runs.state(folder) == 'diverged':
                gone.append(folder)
                print(f'diverged: {folder}, at epoch {runs.read_summary(folder)["diverged_at"]} '
                      f'(its summary.json; --force starts it over)')
        except runs.Damaged as e:
            damaged.append(folder)
            print(f'left out: {e}')
    if gone:
        print(f'{len(gone)} of {len(folders)} runs diverged; make status shows every run')
    return 1 if damaged else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description='What make asks of the run folders of a target, before and after its runs.')
    commands = parser.add_subparsers(dest='command', required=True)
    checking = commands.add_parser('before', help='name the run folders that hold another run than their target asks for')
    checking.add_argument('--args', default='', help="make's ARGS, added to every run's flags")
    checking.add_argument('--force', action='store_true', help="make's FORCE=1: they will start over")
    checking.add_argument('--into', required=True, help='folder for the lists of stale and damaged run folders')
    checking.add_argument('planned', nargs='*', metavar='RUN FLAGS', help="a run folder, then its target's flags, in one word")
    ending = commands.add_parser('ended', help='say which runs of a target diverged')
    ending.add_argument('folders', nargs='*', metavar='RUN')
    args = parser.parse_args(argv)
    if args.command == 'before':
        return before(list(zip(args.planned[::2], args.planned[1::2])), args.args, args.force, args.into)
    return ended(args.folders)


if __name__ == '__main__':
    sys.exit(main())
