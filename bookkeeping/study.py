"""The study as data: study.toml, read into its experiments, their settings, the report's numbers
and its claims, for the Makefile, report.py, runner/ and the tests.

    python3 -m bookkeeping.study      the Makefile's rules for the study: a line per setting

The study is one file that an instructor edits without reading Python; this module is the one
that reads it. It needs only the standard library, so that make can ask it for its targets
before the virtual environment exists.
"""
import os
import re
import sys
from typing import NamedTuple

if sys.version_info < (3, 11, 4):  # tomllib, and tarfile's extraction filter (data.py): a login node's may be older
    sys.exit(f'bookkeeping/study.py: error: Python 3.11.4 or later is needed, and {sys.executable} is '
             f'{".".join(map(str, sys.version_info[:3]))}: name a newer one, make PY=/path/to/python (with its '
             f'packages) or PYTHON=/path/to/python3.11 (to make .venv with)')
import tomllib

from bookkeeping import flags

STUDY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'study.toml')
# The Makefile's own targets, which an experiment's name, its target too, must not take.
MAKE_TARGETS = ('test', 'test-quick', 'mutants', 'bench', 'figures', 'tables', 'status', 'study', 'seeds', 'handout',
                'grade', 'grade-class', 'autograder', 'start-over', 'python-checked')
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

    def epochs(self):
        """The epochs of every run: each setting's --epochs, train.py's default where it gives none."""
        return sum(s.flags.get('epochs', flags.DEFAULTS['epochs']) for s in self.settings())


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
        if not re.fullmatch(r'[a-z0-9][a-z0-9_.-]*', name) or name in MAKE_TARGETS:
            raise StudyError(f'{where}: its name is its make target and folder: lower-case letters, digits, - _ . '
                             f'and none of make\'s own targets')
        base = flag_values(e.get('flags', {}), where)
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
            settings[key] = Setting(key, name, folder, text(s, 'label', where), base | flag_values(s.get('flags', {}), where),
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


def flag_values(table, where):
    """train.py's flags as study.toml writes them (erase-p = 0.5), by train.py's names (erase_p)."""
    if not isinstance(table, dict):
        raise StudyError(f'{where}: flags must be a table, {{ lr = 0.1 }}')
    for key, value in table.items():
        if key.replace('-', '_') not in flags.TRAINING:
            raise StudyError(f'{where}: flag {key}: train.py has no such flag that makes a run (bookkeeping/flags.py)')
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


def make_rules(study):
    """The Makefile's rules for the study: $(call experiment,NAME,FOLDER,FLAGS), a line per setting."""
    return '\n'.join(f'$(call experiment,{s.experiment},{s.folder},{flags.command_line(s.flags)})'
                     for s in study.settings())


if __name__ == '__main__':
    try:
        print(make_rules(load()))
    except StudyError as e:
        sys.exit(f'bookkeeping/study.py: error: {e}')
