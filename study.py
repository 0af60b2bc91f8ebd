"""The study as make runs it: before a target's runs, whether each run folder holds the run the
target asks for; after them, which of its runs diverged.

    python study.py check [--force] --args ARGS RUN 'FLAGS' [RUN 'FLAGS' ...]   make, before the runs
    python study.py ended RUN...                                                make, after them

make takes a run whose summary.json exists as done, and continues one with a checkpoint. That is
right only for the run the target asks for. A quick try, `make lr-sweep ARGS='--epochs 1'`, leaves
finished one-epoch runs in the study's folders: a plain `make lr-sweep` afterwards would find
nothing to do, and the tables would hold the quick try. So before make runs anything, `check`
compares the training flags of every run folder that holds a run with the flags its target asks
for (a build rule that sees its command line change, as Kbuild's if_changed does), and names
each folder that differs, and how. make then stops, or with FORCE=1 starts those runs over.
"""
import argparse
import shlex
import sys


def differences(folder, asked):
    """How the run in `folder` differs from the run train.py's flags `asked` (a list of words)
    would make, as phrases ('epochs 1, not 15'); [] if it is that run. A flag its config.json
    lacks (one added to train.py after the run) counts as its default, as it did then.
    runs.Damaged if a file of the folder is not as train.py wrote it."""
    import runs   # torch, and train.py's flags: only when there are runs to compare
    import train
    parser = train.build_parser()
    wanted = parser.parse_args([*asked, '--out', folder])
    saved = (runs.check(folder) or {'config': runs.read_config(folder)})['config']['flags']
    phrases = []
    for name in runs.TRAINING_FLAGS:
        have, want = saved.get(name, parser.get_default(name)), getattr(wanted, name)
        if name == 'precision' and want == 'auto':  # auto became what the run's hardware computes; it was saved so
            continue
        if have != want:
            phrases.append(f'{name.replace("_", "-")} {shown(have)}, not {shown(want)}')
    return phrases


def shown(value):
    """A flag's value as a person writes it: 0.1, on, 0.02 0.33, none."""
    if isinstance(value, bool):
        return 'on' if value else 'off'
    if isinstance(value, list):
        return ' '.join(map(str, value))
    return 'none' if value is None else str(value)


def check(planned, args, force):
    """For make, before a target's runs: `planned` is [(run folder, its target's flags)] of the
    folders that hold a run, `args` make's ARGS. Prints, for make, FOLDER:stale for each run that
    differs and FOLDER:damaged for each with a damaged file, which make leaves alone; and for the
    person, on stderr, what differs or what is damaged, and how to go on."""
    import runs
    stale, damaged = [], []
    for folder, flags in planned:
        try:
            phrases = differences(folder, shlex.split(flags) + shlex.split(args))
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
        print(f'make: {len(stale)} run folder{"s" * (len(stale) > 1)} above hold a run made with other training flags '
              f'than asked for, so none is taken as done, and nothing was run. To go on: keep them and put this study '
              f'in another folder (RUNS=...), or start them over with the flags asked for (FORCE=1 deletes them)',
              file=sys.stderr)
    print(' '.join([f'{folder}:stale' for folder in stale] + [f'{folder}:damaged' for folder in damaged]))


def ended(folders):
    """For make, after a target's runs: a line for each run that diverged (train.py exits with
    status 3 for those, which make takes as ended, and goes on with the others), and for each run
    left out as damaged. Returns 1, make's failure, if one was."""
    import runs
    gone, damaged = [], []
    for folder in folders:
        try:
            runs.check(folder)
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
    checking = commands.add_parser('check', help='name the run folders that hold another run than their target asks for')
    checking.add_argument('--args', default='', help='make\'s ARGS, added to every run\'s flags')
    checking.add_argument('--force', action='store_true', help='make\'s FORCE=1: they will start over')
    checking.add_argument('planned', nargs='*', metavar='RUN FLAGS', help='a run folder, then its target\'s flags, in one word')
    ending = commands.add_parser('ended', help='say which runs of a target diverged')
    ending.add_argument('folders', nargs='*', metavar='RUN')
    args = parser.parse_args(argv)
    if args.command == 'check':
        check(list(zip(args.planned[::2], args.planned[1::2])), args.args, args.force)
        return 0
    return ended(args.folders)


if __name__ == '__main__':
    sys.exit(main())
