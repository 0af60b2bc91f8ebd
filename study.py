"""The study as data: study.toml, read into its experiments, their settings, the report's numbers
and its claims, for the Makefile, report.py and the tests; and what make asks of the run folders
before and after a target's runs.

    python study.py make                                                        the Makefile's rules
    python study.py check [--force] --args ARGS RUN 'FLAGS' [RUN 'FLAGS' ...]   make, before the runs
    python study.py ended RUN...                                                make, after them

The study is one file that an instructor edits without reading Python; this module is the one
that reads it, and it needs only the standard library, so that make can ask it for its targets
before the virtual environment exists.

make takes a run whose summary.json exists as done, and continues one with a checkpoint. That is
right only for the run the target asks for. A quick try, `make lr-sweep ARGS='--epochs 1'`, leaves
finished one-epoch runs in the study's folders: a plain `make lr-sweep` afterwards would find
nothing to do, and the tables would hold the quick try. So before make runs anything, `check`
compares the training flags of every run folder that holds a run with the flags its target asks
for, as the Linux kernel's build (Kbuild's if_changed) rebuilds a file whose compile command
changed, and names each folder that differs, and how. make then stops, or with FORCE=1 starts
those runs over.
"""
import argparse
import os
import re
import shlex
import sys
from typing import NamedTuple

try:
    import tomllib
except ImportError:  # Python before 3.11: a login node's, say
    sys.exit('study.py: error: Python 3.11.4 or later is needed; name one: make PYTHON=/path/to/python3.11')

STUDY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'study.toml')
REPORT_KEYS = ('train_loss', 'train_acc', 'val_loss', 'val_acc', 'test_loss', 'test_acc')


class StudyError(Exception):
    """study.toml cannot be read as a study; the message says where and what."""


class Setting(NamedTuple):
    key: str         # 'experiment/folder', as study.toml names it
    experiment: str  # the experiment that runs it: RUNS/experiment/folder/seedN
    folder: str
    label: str
    flags: dict      # every flag the study gives it, by train.py's name ('erase_p'); others have train.py's default
    report: dict     # the report's final numbers, accuracies as fractions; {} where it has none


class Shown(NamedTuple):
    """A setting as a table or a claim shows it, and under what name."""
    setting: Setting
    label: str


class Experiment(NamedTuple):
    name: str              # its make target, and its folder of runs
    title: str
    figure: int            # its figure of curves
    table: int | None      # its table of final numbers, if it has one
    settings: tuple        # the Settings it runs
    shows: tuple           # the Shown settings of other experiments its table and figure begin with

    def rows(self):
        """What its table and its figure show: other experiments' settings first, then its own."""
        return self.shows + tuple(Shown(s, s.label) for s in self.settings)


class Claim(NamedTuple):
    text: str
    winner: Shown
    rivals: tuple  # the Shown settings the claim says the winner beats


class Study(NamedTuple):
    source: str
    noise_figure: int  # every setting's final validation accuracy with its error bar
    experiments: tuple
    claims: tuple

    def settings(self):
        return [s for e in self.experiments for s in e.settings]


def load(path=STUDY):
    """The study in `path`; StudyError, one line, if it is not one."""
    try:
        with open(path, 'rb') as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise StudyError(f'{path}: {e}') from None
    experiments, settings = [], {}
    for i, e in enumerate(raw.get('experiment', []), 1):
        where = f'{path}: experiment {e.get("name", i)!r}'
        name, title = text(e, 'name', where), text(e, 'title', where)
        if name in (e.name for e in experiments):
            raise StudyError(f'{where}: two experiments of that name: experiments need names of their own')
        if not re.fullmatch(r'[a-z0-9][a-z0-9_.-]*', name) or name in ('study', 'seeds', 'status', 'test', 'tables'):
            raise StudyError(f'{where}: its name is its make target and folder: lower-case letters, digits, - _ . '
                             f'and none of make\'s own targets')
        base = flags(e.get('flags', {}), where)
        if 'from' in e:
            base = setting(settings, e['from'], where).flags | base
        own = []
        for s in e.get('setting', []):
            folder = text(s, 'folder', where)
            if not re.fullmatch(r'[A-Za-z0-9_.-]+', folder):
                raise StudyError(f'{where}: setting folder {folder!r} must be one folder name')
            key = f'{name}/{folder}'
            if key in settings:
                raise StudyError(f'{where}: two settings in folder {folder!r}')
            settings[key] = Setting(key, name, folder, text(s, 'label', where), base | flags(s.get('flags', {}), where),
                                    report_numbers(s.get('report', {}), f'{where}, setting {folder!r}'))
            own.append(settings[key])
        if not own:
            raise StudyError(f'{where}: it has no [[experiment.setting]]')
        experiments.append(Experiment(name, title, e.get('figure'), e.get('table'), tuple(own),
                                      tuple(shown(settings, ref, where) for ref in e.get('shows', []))))
    if not experiments:
        raise StudyError(f'{path}: it has no [[experiment]]')
    experiments = numbered(experiments, raw.get('noise_figure', 10))
    claims = tuple(claim(c, settings, path) for c in raw.get('claim', []))
    return Study(raw.get('source', ''), raw.get('noise_figure', 10), tuple(experiments), claims)


def claim(table, settings, path):
    """A [[claim]]: its text, its winner and its rivals, each a setting named as study.toml names it."""
    where = f'{path}: claim {table.get("text")!r}'
    return Claim(text(table, 'text', where), shown(settings, table.get('winner'), where),
                 tuple(shown(settings, rival, where) for rival in table.get('rivals', [])))


def text(table, key, where):
    if not isinstance(table.get(key), str) or not table[key].strip():
        raise StudyError(f'{where}: it needs {key} = "..."')
    return table[key]


def flags(table, where):
    """train.py's flags as study.toml writes them (erase-p = 0.5), by train.py's names (erase_p)."""
    if not isinstance(table, dict):
        raise StudyError(f'{where}: flags must be a table, {{ lr = 0.1 }}')
    for key, value in table.items():
        if not (isinstance(value, (bool, int, float, str)) or (isinstance(value, list) and
                                                               all(isinstance(v, (int, float)) for v in value))):
            raise StudyError(f'{where}: flag {key} = {value!r}: a number, true, a word or a list of numbers')
    return {key.replace('-', '_'): value for key, value in table.items()}


def report_numbers(table, where):
    """The report's numbers for a setting, accuracies from % to fractions."""
    if not isinstance(table, dict) or set(table) - set(REPORT_KEYS) or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in table.values()):
        raise StudyError(f'{where}: report = {{ ... }} holds numbers, under {", ".join(REPORT_KEYS)}')
    return {k: v / 100 if k.endswith('acc') else v for k, v in table.items()}


def setting(settings, key, where):
    if key not in settings:
        raise StudyError(f'{where}: no setting {key!r} above it (a setting is "experiment/folder")')
    return settings[key]


def shown(settings, ref, where):
    """A Shown from "experiment/folder", or from { setting = "experiment/folder", label = "..." }."""
    if isinstance(ref, dict):
        return Shown(setting(settings, ref.get('setting'), where), text(ref, 'label', where))
    found = setting(settings, ref, where)
    return Shown(found, found.label)


def numbered(experiments, noise_figure):
    """Each experiment without a figure number gets the next free one after the others' and the
    noise figure's; each without a table number, the next free one, unless another experiment's
    table shows its settings (as the erasing tables show erase's one run)."""
    shown_elsewhere = {shown.setting.experiment for e in experiments for shown in e.shows}
    last_figure = max([e.figure or 0 for e in experiments] + [noise_figure])
    last_table = max([e.table or 1 for e in experiments])  # Table 1 is the split's
    numbered = []
    for e in experiments:
        if e.figure is None:
            last_figure += 1
            e = e._replace(figure=last_figure)
        if e.table is None and e.name not in shown_elsewhere:
            last_table += 1
            e = e._replace(table=last_table)
        numbered.append(e)
    return numbered


def command_line(flags):
    """train.py's command line for a setting's flags: {'lr': 0.1, 'cosine': True} is --lr 0.1 --cosine."""
    words = []
    for name, value in flags.items():
        flag = '--' + name.replace('_', '-')
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            words += [flag, *map(str, value)]
        elif value is not False:  # a switch left off is train.py's default
            words += [flag, str(value)]
    return ' '.join(words)


def make_rules(study):
    """The Makefile's rules for the study, on one line: $(call experiment,NAME,FOLDER,FLAGS) for each setting."""
    return ' '.join(f'$(call experiment,{s.experiment},{s.folder},{command_line(s.flags)})' for s in study.settings())


def differences(folder, asked):
    """How the run in `folder` differs from the run train.py's flags `asked` (a list of words)
    would make, as phrases ('epochs 1, not 15'); [] if it is that run. A flag its config.json
    lacks (one added to train.py after the run) counts as its default, as it did then.
    runs.Damaged if a file of the folder is not as train.py wrote it."""
    import runs   # torch, and train.py's flags: only when there are runs to compare
    import train
    parser = train.build_parser()
    wanted = parser.parse_args([*asked, '--out', folder])
    runs.read_checked(folder)
    saved = runs.read_config(folder)['flags']  # a folder that holds a run has one, or read_checked() said it is damaged
    phrases = []
    for name in runs.TRAINING_FLAGS:
        have, want = saved.get(name, parser.get_default(name)), getattr(wanted, name)
        if name == 'precision' and want == 'auto':  # auto became what the run's hardware computes; it was saved so
            continue
        if have != want:
            phrases.append(f'{name.replace("_", "-")} {as_written(have)}, not {as_written(want)}')
    return phrases


def as_written(value):
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
        print(f'make: {len(stale)} run folder{"s" * (len(stale) > 1)} above {"hold" if len(stale) > 1 else "holds"} a run made with other training flags '
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
    checking = commands.add_parser('check', help='name the run folders that hold another run than their target asks for')
    checking.add_argument('--args', default='', help='make\'s ARGS, added to every run\'s flags')
    checking.add_argument('--force', action='store_true', help='make\'s FORCE=1: they will start over')
    checking.add_argument('planned', nargs='*', metavar='RUN FLAGS', help='a run folder, then its target\'s flags, in one word')
    ending = commands.add_parser('ended', help='say which runs of a target diverged')
    ending.add_argument('folders', nargs='*', metavar='RUN')
    commands.add_parser('make', help='the Makefile\'s rules for study.toml\'s experiments')
    args = parser.parse_args(argv)
    if args.command == 'make':
        try:
            print(make_rules(load()))
        except StudyError as e:
            sys.exit(f'study.py: error: {e}')
        return 0
    if args.command == 'check':
        check(list(zip(args.planned[::2], args.planned[1::2])), args.args, args.force)
        return 0
    return ended(args.folders)


if __name__ == '__main__':
    sys.exit(main())
