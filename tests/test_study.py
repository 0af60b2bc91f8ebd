"""study.py promises that study.toml is the study: the one list of its experiments, settings,
numbers and claims, which make, make status, Slurm, the tables, the figures and the Conclusions all
follow, so that adding an experiment is one edit; a file that is not a study is one line; and the
counts and numbers in the docs are the file's."""
import math
import os
import sys
import re
import shutil
import subprocess

import pytest

import report
from bookkeeping import study
from bookkeeping.runs import collect
import train
from bookkeeping import flags
from runner import checks
from conftest import A_RUN, MAKE, ROOT, project_copy, write_run

STUDY = study.load()

# The README's worked example: one edit to study.toml adds it.
MOMENTUM = '''
[[experiment]]
name = "momentum"
title = "Momentum (lr 0.01, 15 epochs, constant)"
from = "lr-sweep/lr0.01"

  [[experiment.setting]]
  label = "momentum 0.9"
  folder = "m0.9"

  [[experiment.setting]]
  label = "momentum 0"
  folder = "m0"
  flags = { momentum = 0.0 }

[[claim]]
text = "momentum 0.9 beats none"
winner = "momentum/m0.9"
rivals = ["momentum/m0"]
'''


def with_momentum(folder):
    """A copy of study.toml with docs/extending.md's worked example appended: its path."""
    path = folder / 'study.toml'
    path.write_text(open(study.STUDY).read() + MOMENTUM)
    return path


def test_the_docs_example_is_the_one_in_these_tests():
    readme = open(os.path.join(ROOT, 'docs', 'extending.md')).read()
    block = readme[readme.index('```toml\n') + 8:readme.index('```', readme.index('```toml\n') + 8)]
    strip = lambda text: [line.split('#')[0].strip() for line in text.strip().splitlines() if line.split('#')[0].strip()]
    assert strip(block) == strip(MOMENTUM)


def test_every_setting_is_a_command_line_train_py_takes():
    """Each setting's flags, as make passes them, parse with train.py's own parser and pass its checks."""
    for setting in STUDY.settings():
        args = flags.parser().parse_args(flags.command_line(setting.flags).split())
        flags.check(args)
        assert all(getattr(args, name) == value for name, value in setting.flags.items()), setting.key


def test_a_setting_s_flags_are_written_as_train_py_reads_them():
    """A switch on is its flag alone, off is left out; a number is written even when it is 0, as the
    worked example's momentum 0.0 must be; a range is its two numbers."""
    values = {'lr': 0.1, 'momentum': 0.0, 'wd': 0, 'cosine': True, 'no_crop_flip': False, 'erase_scale': [0.02, 0.33]}
    assert flags.command_line(values) == '--lr 0.1 --momentum 0.0 --wd 0 --cosine --erase-scale 0.02 0.33'


def test_a_run_in_another_precision_is_not_the_run_asked_for(tmp_path):
    """A run computed in bf16 is not the fp32 run a target asks for: make must not take it as done.
    --precision auto (the default) asks for what the hardware computes, which the run saved as its
    precision then, so a run in any precision is the one asked for."""
    folder = str(tmp_path / 'run')
    write_run(folder, {'lr': 0.1})  # in bf16
    asked = ['--epochs', '15', '--lr', '0.1']
    assert checks.examined(folder, [*asked, '--precision', 'fp32']).departures == ['precision bf16, not fp32']
    assert checks.examined(folder, [*asked, '--precision', 'bf16']).departures == []
    assert checks.examined(folder, asked).departures == [] == checks.examined(folder, [*asked, '--precision', 'auto']).departures


def test_a_diverged_run_has_ended_and_only_a_damaged_one_fails_make(tmp_path, capsys):
    """After a target's runs: a diverged run is a result, named with its epoch, and make goes on
    with the others, status 0; a damaged run is left out, named, and fails make, status 1."""
    finished, diverged, damaged = (str(tmp_path / name) for name in ('finished', 'diverged', 'damaged'))
    write_run(finished)
    write_run(diverged, val_accs=(0.3, 0.1), summary='diverged')
    assert checks.ended([finished, diverged]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f'diverged: {diverged}, at epoch 2 (its summary.json; --force starts it over)',
        '1 of 2 runs diverged; make status shows every run']
    write_run(damaged)
    (tmp_path / 'damaged/config.json').write_text('{"flags": {')
    assert checks.ended([finished, diverged, damaged]) == 1
    assert capsys.readouterr().out.splitlines()[1].startswith(f'left out: {damaged}: config.json is cut short; ')


def test_an_experiment_starts_from_the_setting_it_names():
    """The report carried each choice forward: erase-p's settings are erase's p 1.0, but for p."""
    erase, p08 = (next(s for s in STUDY.settings() if s.key == key) for key in ('erase/p1.0', 'erase-p/p0.8'))
    assert p08.flags == erase.flags | {'erase_p': 0.8}
    assert erase.flags == {'epochs': 300, 'lr': 0.01, 'cosine': True, 'wd': 5e-4, 'erase_p': 1.0,
                           'erase_scale': [0.02, 0.33], 'erase_ratio': [0.3, 3.3]}


@pytest.mark.parametrize('edit, says', [
    (lambda t: t + '\n[[experiment]\n', 'study.toml'),                                          # not TOML
    (lambda t: t.replace('from = "wd/wd5e-4"', 'from = "wd/wd5e-3"'), "no setting 'wd/wd5e-3'"),
    (lambda t: t.replace('name = "schedule"', 'name = "lr-sweep"'), 'names of their own'),
    (lambda t: t.replace('name = "schedule"', 'name = "tables"'), "none of make's own targets"),   # make tables would run it
    (lambda t: t.replace('name = "schedule"', 'name = "Schedule 2"'), "none of make's own targets"),
    (lambda t: t.replace('flags = { lr = 0.1 }', 'flags = { lr = { fast = 1 } }'), 'flag lr'),
    (lambda t: t.replace('label = "lr 0.1"\n', ''), 'label = "..."'),
    (lambda t: t.replace('val_acc = 81.31', 'val_acc = "81.31"'), 'report = { ... } holds numbers'),
    (lambda t: t.replace('rivals = ["schedule/constant"]', 'rivals = ["schedule/constnt"]'), "schedule/constnt"),
])
def test_a_file_that_is_not_a_study_is_one_line(tmp_path, edit, says):
    path = tmp_path / 'study.toml'
    path.write_text(edit(open(study.STUDY).read()))
    with pytest.raises(study.StudyError) as error:
        study.load(path)
    assert says in str(error.value) and len(str(error.value).splitlines()) == 1, str(error.value)


def test_an_experiment_without_numbers_gets_the_next_free_table_and_figure(tmp_path):
    """Table 1 is the split's (data.py), and the noise figure has its number: a study whose one
    experiment gives no numbers gets Table 2 and the figure after the noise figure."""
    path = tmp_path / 'study.toml'
    path.write_text('[[experiment]]\nname = "a"\ntitle = "T"\n[[experiment.setting]]\nlabel = "one"\nfolder = "f"\n')
    loaded = study.load(path)
    assert (loaded.experiments[0].table, loaded.experiments[0].figure) == (2, loaded.noise_figure + 1)


def test_two_settings_share_a_folder_only_in_two_experiments(tmp_path):
    """A setting's runs are in RUNS/experiment/folder/seedN: two settings of one experiment in one
    folder would take each other's runs, and the file is refused, in one line; two experiments may
    each have a setting of that folder name, since their runs are apart."""
    def experiment(name, *labels):  # its settings all in folder "f"
        return f'[[experiment]]\nname = "{name}"\ntitle = "T"\n' + ''.join(
            f'[[experiment.setting]]\nlabel = "{label}"\nfolder = "f"\n' for label in labels)
    path = tmp_path / 'study.toml'
    path.write_text(experiment('a', 'one', 'two'))
    with pytest.raises(study.StudyError) as error:
        study.load(path)
    assert str(error.value) == f"{path}: experiment 'a': two settings in folder 'f'"
    path.write_text(experiment('a', 'one') + experiment('b', 'two'))
    assert [s.key for s in study.load(path).settings()] == ['a/f', 'b/f']


def test_make_with_a_broken_study_file_stops_with_its_line(tmp_path):
    make = project_copy(tmp_path / 'project')
    path = tmp_path / 'project' / 'study.toml'
    path.write_text(path.read_text().replace('folder = "lr0.1"', 'folder = "lr 0.1"'))
    made = subprocess.run([*make, '-n', 'lr-sweep'], capture_output=True, text=True)
    assert made.returncode != 0 and 'train.py' not in made.stdout
    assert made.stderr.splitlines()[0] == (f'bookkeeping/study.py: error: {path}: experiment \'lr-sweep\': setting folder '
                                           f'\'lr 0.1\' must be one folder name')


def test_a_knob_declared_in_one_line_reaches_train_py_make_s_check_and_the_tables(tmp_path):
    """docs/extending.md's knob, label smoothing, its line added to a copy of the project's
    bookkeeping/flags.py and nothing else: train.py takes the flag and checks its range; make
    compares it, a run made before it existed counting as made with its default; and the tables
    name a run that departs from its setting in it."""
    project = tmp_path / 'project'
    make = project_copy(project)
    docs = open(os.path.join(ROOT, 'docs', 'extending.md')).read()
    line = re.search(r"^ *(Flag\('--label-smoothing'.*\),)$", docs, re.M).group(1)
    declared = project / 'bookkeeping' / 'flags.py'
    anchor = '    # How and where it computes.\n'
    declared.write_text(declared.read_text().replace(anchor, f'    {line}\n{anchor}'))
    bad = subprocess.run([sys.executable, 'train.py', '--label-smoothing', '2'], cwd=project, capture_output=True, text=True)
    assert (bad.returncode, bad.stderr) == (2, 'train.py: error: --label-smoothing must be within [0, 1], got 2.0 (see --help)\n')

    runs_dir = tmp_path / 'runs'
    old = runs_dir / 'lr-sweep' / 'lr0.01' / 'seed0'
    write_run(old)  # its config.json has no label_smoothing: it was made before the flag
    plain = subprocess.run([*make, '-n', 'lr-sweep', f'RUNS={runs_dir}'], capture_output=True, text=True)
    assert plain.returncode == 0 and f'--out {old}' not in plain.stdout and plain.stdout.count('train.py') == 2, plain.stderr
    smoothed = subprocess.run([*make, '-n', 'lr-sweep', f'RUNS={runs_dir}', 'ARGS=--label-smoothing 0.1'],
                              capture_output=True, text=True)
    assert smoothed.returncode != 0 and 'train.py' not in smoothed.stdout
    assert f'  {old}: label-smoothing 0.0, not 0.1' in smoothed.stderr.splitlines()

    write_run(runs_dir / 'lr-sweep' / 'lr0.1' / 'seed0', {'lr': 0.1, 'label_smoothing': 0.1})
    subprocess.run([sys.executable, 'report.py', '--tables', '--runs', str(runs_dir), '--out', str(tmp_path / 'out'),
                    '--data-dir', str(tmp_path / 'no-data')], cwd=project, capture_output=True, text=True, check=True)
    row = next(line for line in (tmp_path / 'out' / 'tables.md').read_text().splitlines() if line.startswith('| lr 0.1 | ours'))
    assert 'ours (label-smoothing 0.1, not 0.0)' in row


# ---------------------------------------------------------------------------------------------
# The counts and numbers the docs give are the file's.


def spelled(n):
    return ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten', 'eleven', 'twelve'][n]


def test_the_counts_in_the_docs_are_the_study_file_s():
    """Every count of experiments, runs or epochs that the README, the docs and the Makefile give:
    an instructor who adds an experiment is told where the docs must follow."""
    runs, experiments = len(STUDY.settings()), len(STUDY.experiments)
    epochs = sum(s.flags.get('epochs', flags.DEFAULTS['epochs']) for s in STUDY.settings())
    counted = {
        'README.md': [f'| `make study` | all {runs} |', f'its {spelled(experiments)} experiments'],
        'docs/statistics.md': [f"(`make study SEEDS='0 1 2'`, {3 * runs} runs)"],
        'docs/cluster.md': [f'for the {runs} runs of the study'],
        'docs/study.md': [f'## The {spelled(experiments)} experiments'],
        'docs/hardware.md': [f'whole study ({epochs:,} epochs)'],
        'Makefile': [f"the report's {spelled(experiments)}, {runs} runs"],
    }
    for name, phrases in counted.items():
        text = open(os.path.join(ROOT, name)).read()
        for phrase in phrases:
            assert phrase in text, f'{name} should say {phrase!r}, as study.toml counts'
    readme = open(os.path.join(ROOT, 'README.md')).read()
    for experiment in STUDY.experiments:  # the README's table of targets: its runs and their epochs
        epochs = {s.flags.get('epochs', 300) for s in experiment.settings}
        assert f'| `make {experiment.name}` | {len(experiment.settings)} x {epochs.pop()} epochs |' in readme, experiment.name


def test_study_md_gives_the_report_s_numbers_as_the_file_does():
    """docs/study.md's table of the report's final numbers, row by row, against study.toml's."""
    rows = [line.strip('|').split('|') for line in open(os.path.join(ROOT, 'docs', 'study.md')).read().splitlines()
            if re.match(r'\| [a-z-]+ \| .* \| [\d.]+ \|', line)]
    with_numbers = [s for s in STUDY.settings() if s.report]
    assert len(rows) == len(with_numbers)
    for cells in rows:
        cells = [c.strip() for c in cells]
        setting, = [s for s in with_numbers if s.experiment == cells[0] and s.label.endswith(cells[1])]
        for cell, key in zip(cells[2:], study.REPORT_KEYS):
            expected = setting.report.get(key)
            assert (cell == '' if expected is None else
                    float(cell) == pytest.approx(100 * expected if key.endswith('acc') else expected)), (cells, key)


# ---------------------------------------------------------------------------------------------
# Experiments beyond the report, and runs from before a knob existed.


@pytest.mark.exercise('mcnemar_p')
def test_an_experiment_beyond_the_report_gets_a_table_a_verdict_and_its_points(tmp_path, capsys):
    """The worked example with one run a setting, written by hand: momentum 0.9 gets 7 of 10
    validation images right, momentum 0 gets 3 of them (the first 3): McNemar on 4 against 0
    images, p = 2 / 2^4 = 0.125, within noise. The report has no number for either: its rows say
    so, nothing warns that it has none, and the claim's report columns say so too."""
    path = with_momentum(tmp_path)
    momentum = study.load(path)
    small = {'train': 40000, 'val': 10, 'test': 10}
    write_run(tmp_path / 'runs/momentum/m0.9/seed0', {'epochs': 15}, (0.7,), small, right=[True] * 7 + [False] * 3)
    write_run(tmp_path / 'runs/momentum/m0/seed0', {'epochs': 15, 'momentum': 0.0}, (0.3,), small,
              right=[True] * 3 + [False] * 7)
    assert report.main(['--tables', '--study', str(path), '--runs', str(tmp_path / 'runs'), '--out', str(tmp_path / 'out'),
                        '--data-dir', str(tmp_path / 'no-data')]) == 0
    printed = capsys.readouterr().out
    assert 'momentum' not in ''.join(line for line in printed.splitlines() if line.startswith('skipped'))
    tables = (tmp_path / 'out/tables.md').read_text()
    assert '## Table 8: Momentum (lr 0.01, 15 epochs, constant)' in tables
    assert '| momentum 0 | report | | | no number |' in tables
    claim = next(line for line in tables.splitlines() if line.startswith('| momentum 0.9 beats none |'))
    cells = [c.strip() for c in claim.strip('|').split('|')]
    assert cells[1:] == ['momentum 0', 'no number', '', '+40.00 ± 15.49 (se)', 'McNemar, 4 against 0 images: p = 0.125',
                         'within noise']
    assert math.sqrt(4 - 16 / 10) / 10 == pytest.approx(0.1549, abs=1e-4)  # the se of the mean of +1, 0, -1 per image
    panels = report.noise_panels(momentum, collect(str(tmp_path / 'runs'), momentum))
    assert [p.name for p in dict(panels)['Momentum (lr 0.01, 15 epochs, constant)']] == ['momentum 0.9', 'momentum 0']


def test_a_run_from_before_a_knob_existed_keeps_its_row(tmp_path):
    """Its config.json lacks the new flag's key: it counts as made with the default, so it is in its
    setting's row with no note of a departure."""
    write_run(tmp_path / 'runs/lr-sweep/lr0.1/seed0', {'lr': 0.1}, (0.8,))
    config = tmp_path / 'runs/lr-sweep/lr0.1/seed0/config.json'
    config.write_text(config.read_text().replace('"momentum": 0.9, ', '').replace(', "no_crop_flip": false', ''))
    assert 'momentum' not in config.read_text()
    found = collect(str(tmp_path / 'runs'), STUDY)
    lr01 = next(s for s in STUDY.settings() if s.key == 'lr-sweep/lr0.1')
    assert len(found[lr01.key].runs) == 1 and report.departures(lr01, found[lr01.key].runs) == []


# ---------------------------------------------------------------------------------------------
# The worked example, end to end, in a copy of the project.


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward', 'cosine_lr', 'mcnemar_p')
@pytest.mark.slow
def test_the_worked_example_end_to_end(cifar_root, tmp_path):
    """One edit to study.toml in a copy of the project: make plans the experiment's runs, runs them
    (tiny), make status lists them, make tables has its table and a verdict on its claim, and make
    figures draws its curves and puts its points in Figure 10 (tests/test_slurm.py submits it)."""
    make = project_copy(tmp_path / 'project')
    with_momentum(tmp_path / 'project')
    runs_dir, out = tmp_path / 'runs', tmp_path / 'project' / 'figures'
    tiny = f'ARGS=--epochs 2 --train-subset 40 --eval-subset 20 --batch-size 20 --device cpu --data-dir {cifar_root}'
    planned = subprocess.run([*make, '-n', 'momentum', f'RUNS={runs_dir}'], capture_output=True, text=True, check=True)
    commands = [line for line in planned.stdout.splitlines() if 'train.py' in line]
    assert [c.split('train.py ')[1].split(' || ')[0].strip() for c in commands] == [
        f'--epochs 15 --lr 0.01 --seed 0 --out {runs_dir}/momentum/m0.9/seed0',
        f'--epochs 15 --lr 0.01 --momentum 0.0 --seed 0 --out {runs_dir}/momentum/m0/seed0']
    made = subprocess.run([*make, 'momentum', f'RUNS={runs_dir}', tiny], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    status = subprocess.run([*make, 'status', f'RUNS={runs_dir}', 'EXP=momentum'], capture_output=True, text=True)
    assert [line.split()[:2] for line in status.stdout.splitlines()] == [
        [f'{runs_dir}/momentum/m0.9/seed0', 'finished'], [f'{runs_dir}/momentum/m0/seed0', 'finished']]
    tables = subprocess.run([*make, 'tables', f'RUNS={runs_dir}'], capture_output=True, text=True)
    assert tables.returncode == 0, tables.stderr
    claim = next(line for line in (out / 'tables.md').read_text().splitlines() if line.startswith('| momentum 0.9 beats none'))
    assert re.search(r'\| McNemar, \d+ against \d+ images: p = [\d.]+ \| (within noise|reproduced|reversed), on epochs 2, '
                     r'not 15; batch-size 20, not 128; train-subset 40, not none; eval-subset 20, not none \|$', claim), claim
    figures_made = subprocess.run([*make, 'figures', f'RUNS={runs_dir}'], capture_output=True, text=True)
    assert figures_made.returncode == 0, figures_made.stderr
    assert (out / 'figure11_momentum.png').read_bytes()[:4] == b'\x89PNG' and (out / 'figure10_noise.png').exists()
    momentum = study.load(tmp_path / 'project' / 'study.toml')
    panels = dict(report.noise_panels(momentum, collect(str(runs_dir), momentum)))
    assert all(point.ours is not None for point in panels['Momentum (lr 0.01, 15 epochs, constant)'])


def test_no_experiment_may_take_a_target_of_the_makefile_s_own():
    """An experiment's name is its make target: each of the Makefile's own targets is refused."""
    makefile = open(os.path.join(ROOT, 'Makefile')).read()
    own = {word for line in makefile.splitlines() if line.startswith('.PHONY:') for word in line.split()[1:]}
    assert own - {'$(EXPERIMENTS)'} == set(study.MAKE_TARGETS)
