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

It answers make with its exit status and three files in DIR, a folder of that make's own: status
1 if a folder holds another run and FORCE=1 was not given, so that make stops with nothing run;
DIR/stale lists the folders whose runs start over (with FORCE=1), DIR/resume those whose run was
interrupted and continues (train.py --resume), DIR/damaged those with a damaged file, which make
leaves out, a line each. What a folder holds, and whether it is the run asked for, is
bookkeeping/runs.py's examine(): the one answer, which make status and Slurm's submission read too.
"""
import argparse
import os
import shlex
import sys

from bookkeeping import flags, runs


def examined(folder, asked):
    """runs.examine() of `folder` against the run train.py's flags `asked` (a list of words) would make."""
    return runs.examine(folder, flags.training(flags.parser().parse_args([*asked, '--out', folder])))


def before(planned, args, force, into):
    """For make, before a target's runs: `planned` is [(run folder, its target's flags)] of the
    folders that hold a run, `args` make's ARGS. Says, for the person, on stderr, what differs or what
    is damaged, and how to go on; writes the lists for make into `into`. Returns the exit status."""
    stale, damaged, resume = [], [], []
    for folder, asked in planned:
        held = examined(folder, shlex.split(asked) + shlex.split(args))
        if held.damaged:
            print(f'make leaves out {held.damaged}', file=sys.stderr)
            damaged.append(folder)
        elif held.departures:
            stale.append(folder)
            print(f'  {folder}: {"; ".join(held.departures)}', file=sys.stderr)
        elif held.state == 'interrupted':
            resume.append(folder)
    if stale and force:
        print(f'FORCE=1: {len(stale)} run{"s" * (len(stale) > 1)} above start over with the flags asked for', file=sys.stderr)
    elif stale:
        print(f'make: {len(stale)} run folder{"s" * (len(stale) > 1)} above {"hold" if len(stale) > 1 else "holds"} '
              f'a run made with other training flags than asked for, so none is taken as done, and nothing was run. '
              f'To go on: keep them and put this study in another folder (RUNS=...), or start them over with the '
              f'flags asked for (FORCE=1 deletes them)', file=sys.stderr)
    os.makedirs(into, exist_ok=True)
    for name, folders in (('stale', stale), ('damaged', damaged), ('resume', resume)):
        runs.write_atomic(os.path.join(into, name), ''.join(f + '\n' for f in folders).encode())
    return 1 if stale and not force else 0


def ended(folders):
    """For make, after a target's runs: a line for each run that diverged (train.py exits with
    status 3 for those, which make takes as ended, and goes on with the others), and for each run
    left out as damaged. Returns 1, make's failure, if one was damaged; a divergence is a result."""
    gone, damaged = [], []
    for folder in folders:
        held = runs.examine(folder)
        if held.damaged:
            damaged.append(folder)
            print(f'left out: {held.damaged}')
        elif held.state == 'diverged':
            gone.append(folder)
            print(f'diverged: {folder}, at epoch {held.run["summary"]["diverged_at"]} (its summary.json; --force starts it over)')
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
