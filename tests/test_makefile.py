"""The Makefile promises one target per experiment whose runs have exactly the report's settings;
a finished run is skipped and an interrupted one resumed, but only if it is the run the target asks
for; and a run that diverged ends as a result, not an error that stops the study."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile

import pytest

from bookkeeping import runs
from bookkeeping import study
import train
from bookkeeping import flags
from conftest import A_RUN, MAKE, ROOT, project_copy, snapshot, write_run

STUDY = study.load()


def planned_commands(*make_args):
    """Every train.py command `make -n` would run, in the order it would run them."""
    shown = subprocess.run([*MAKE, '-n', *make_args], capture_output=True, text=True, check=True).stdout
    return [line for line in shown.splitlines() if 'train.py' in line]


def planned_runs(*make_args):
    """{out folder: parsed flags} of every train.py command `make -n` would run."""
    runs = {}
    for line in planned_commands(*make_args):
        command = line.split('train.py', 1)[1].split(' || ')[0]  # what follows is for make: a diverged run has ended
        args = flags.parser().parse_args(shlex.split(command))
        runs[args.out] = args
    return runs


def test_each_experiment_runs_its_settings_of_study_toml(tmp_path):
    """make NAME plans one run per setting of the experiment, in RUNS/NAME/FOLDER/seed0, with every
    training flag as study.toml says, and train.py's default for the rest."""
    for experiment in STUDY.experiments:
        planned = planned_runs(experiment.name, f'RUNS={tmp_path}')
        assert len(planned) == len(experiment.settings), experiment.name
        for setting in experiment.settings:
            args = planned[f'{tmp_path}/{experiment.name}/{setting.folder}/seed0']
            assert flags.training(args) == {name: flags.parser().get_default(name)
                                                 for name in flags.TRAINING} | setting.flags | {'seed': 0}


def test_the_study_is_the_report_s(tmp_path):
    """The report's settings (docs/study.md), spot-checked in the plan: the lr sweep is 15 epochs at a
    constant rate without weight decay; every later run is 300 epochs at lr 0.01, the erasing runs
    with cosine annealing and wd 5e-4; every run has batch 128, momentum 0.9, crop and flip."""
    planned = planned_runs('study', f'RUNS={tmp_path}')
    assert len(planned) == len(STUDY.settings()) == 14
    for out, args in planned.items():
        experiment = out.split('/')[-3]
        assert (args.batch_size, args.momentum, args.no_crop_flip, args.seed) == (128, 0.9, False, 0)
        if experiment == 'lr-sweep':
            assert (args.epochs, args.cosine, args.wd, args.erase_p) == (15, False, 0.0, 0.0)
        else:
            assert (args.epochs, args.lr) == (300, 0.01)
        if experiment.startswith('erase'):
            assert (args.cosine, args.wd) == (True, 5e-4) and args.erase_p > 0
    assert {args.lr for out, args in planned.items() if '/lr-sweep/' in out} == {0.1, 0.01, 0.001}


def test_args_override_and_seeds_multiply(tmp_path):
    runs = planned_runs('lr-sweep', f'RUNS={tmp_path}', 'ARGS=--epochs 1 --train-subset 512', 'SEEDS=0 1 2')
    assert len(runs) == 9
    assert {args.seed for args in runs.values()} == {0, 1, 2}
    assert all(args.epochs == 1 and args.train_subset == 512 for args in runs.values())
    assert f'{tmp_path}/lr-sweep/lr0.1/seed2' in runs


def test_finished_runs_are_skipped_and_interrupted_ones_resumed(tmp_path):
    finished, interrupted = tmp_path / 'lr-sweep/lr0.1/seed0', tmp_path / 'lr-sweep/lr0.01/seed0'
    write_run(finished, {'lr': 0.1})
    write_run(interrupted, {'lr': 0.01}, summary=False)
    (interrupted / 'checkpoint.pt').write_bytes(b'')
    runs = planned_runs('lr-sweep', f'RUNS={tmp_path}')
    assert set(runs) == {str(interrupted), f'{tmp_path}/lr-sweep/lr0.001/seed0'}
    assert runs[str(interrupted)].resume and not runs[f'{tmp_path}/lr-sweep/lr0.001/seed0'].resume


def test_gpus_give_every_run_the_pool_to_take_a_gpu_from(tmp_path):
    """make -j4 study GPUS='0 1 2 3': no GPU is fixed in advance; each run takes a free one of the
    pool as it starts (tests/test_runs.py runs it)."""
    for seeds in ('0', '0 1'):
        runs = planned_runs('study', f'RUNS={tmp_path}', 'GPUS=0 1 2', f'SEEDS={seeds}')
        assert len(runs) == len(STUDY.settings()) * len(seeds.split()) and all(args.gpu_pool == ['0', '1', '2'] for args in runs.values())
    assert not any('CUDA_VISIBLE_DEVICES' in line for line in planned_commands('study', f'RUNS={tmp_path}', 'GPUS=0 1'))


def test_without_gpus_no_run_is_given_a_pool(tmp_path):
    assert all(args.gpu_pool is None for args in planned_runs('study', f'RUNS={tmp_path}').values())


@pytest.mark.parametrize('python', [[], [f'PY={sys.executable}']])
def test_with_slurm_a_target_submits_its_runs_instead_of_running_them(tmp_path, python):
    """One runner.slurm command, given every run folder of the target and the variables each task
    needs: PY too where make was given one, so that no task builds a .venv of its own."""
    alone = {k: v for k, v in os.environ.items() if k not in ('MAKEFLAGS', 'MAKELEVEL', 'MFLAGS')}  # not the tests' make's
    shown = subprocess.run(['make', '-n', '--no-print-directory', '-C', ROOT, 'wd', f'RUNS={tmp_path}', 'SEEDS=0 1', 'ARGS=--epochs 2',
                            'SLURM=--time=1:00:00 --gres=gpu:1', *python], capture_output=True, text=True, check=True,
                           env=alone).stdout
    line = next(line for line in shown.replace('\\\n', ' ').splitlines() if 'runner.slurm' in line)
    command = shlex.split(line)
    assert 'train.py' not in shown and command[1:3] == ['-m', 'runner.slurm']
    assert '--sbatch=--time=1:00:00 --gres=gpu:1' in command
    assert [command[i + 1] for i, word in enumerate(command) if word == '--make'] == \
        [f'RUNS={tmp_path}', 'SEEDS=0 1', 'ARGS=--epochs 2', *python]
    assert command[-4:] == [f'{tmp_path}/wd/{s}/seed{n}' for s in ('wd5e-4', 'wd1e-2') for n in (0, 1)]


def test_status_lists_the_runs_of_the_study_or_of_one_experiment(tmp_path):
    listed = lambda *args: [line.split()[0] for line in subprocess.run(
        [*MAKE, 'status', f'RUNS={tmp_path}', *args], capture_output=True, text=True,
        check=True).stdout.splitlines()]
    assert len(listed()) == len(STUDY.settings()) and len(listed('SEEDS=0 1 2')) == 3 * len(STUDY.settings())
    assert listed('EXP=wd erase') == [f'{tmp_path}/wd/wd5e-4/seed0', f'{tmp_path}/wd/wd1e-2/seed0', f'{tmp_path}/erase/p1.0/seed0']


QUICK_TRY = {'epochs': 1, 'train_subset': 512, 'eval_subset': 256}  # the README's try in minutes, as config.json has it
QUICK_TRY_ARGS = 'ARGS=--epochs 1 --train-subset 512 --eval-subset 256'


def test_a_quick_try_is_not_taken_for_the_real_run(tmp_path):
    """A quick try of the lr sweep (ARGS) left three finished one-epoch runs, and an interrupted one,
    in the study's folders. A plain `make lr-sweep` must take none of them as done: it names each
    folder and how it differs, runs nothing, and exits non-zero, saying how to go on. FORCE=1 plans
    each over with --force; the quick try's own flags, with a flag that changes only how the run
    computes, find them done."""
    for lr in ('0.1', '0.01', '0.001'):
        write_run(tmp_path / f'lr-sweep/lr{lr}/seed0', QUICK_TRY | {'lr': float(lr)}, val_accs=(0.3,))
    write_run(tmp_path / 'lr-sweep/lr0.1/seed1', QUICK_TRY | {'lr': 0.1, 'seed': 1}, val_accs=(0.3,), summary=False)
    (tmp_path / 'lr-sweep/lr0.1/seed1/checkpoint.pt').write_bytes(b'')
    before = {folder: snapshot(tmp_path / 'lr-sweep' / folder) for folder in ('lr0.1/seed0', 'lr0.1/seed1')}
    plain = subprocess.run([*MAKE, 'lr-sweep', f'RUNS={tmp_path}', 'SEEDS=0 1'], capture_output=True, text=True)
    assert plain.returncode != 0 and 'train.py' not in plain.stdout, plain.stdout
    differs = 'epochs 1, not 15; train-subset 512, not none; eval-subset 256, not none'
    named = [line.strip() for line in plain.stderr.splitlines() if line.startswith('  ')]
    assert named == [f'{tmp_path}/lr-sweep/{folder}: {differs}' for folder in ('lr0.1/seed0', 'lr0.1/seed1', 'lr0.01/seed0',
                                                                                'lr0.001/seed0')], plain.stderr
    assert 'RUNS=' in plain.stderr and 'FORCE=1' in plain.stderr
    assert before == {folder: snapshot(tmp_path / 'lr-sweep' / folder) for folder in before}
    forced = planned_runs('lr-sweep', f'RUNS={tmp_path}', 'SEEDS=0 1', 'FORCE=1')
    assert len(forced) == 6 and all(args.epochs == 15 and not args.resume for args in forced.values())
    assert {out for out, args in forced.items() if args.force} == set(map(str, (tmp_path / 'lr-sweep/lr0.1/seed0',
        tmp_path / 'lr-sweep/lr0.1/seed1', tmp_path / 'lr-sweep/lr0.01/seed0', tmp_path / 'lr-sweep/lr0.001/seed0')))
    again = planned_runs('lr-sweep', f'RUNS={tmp_path}', 'SEEDS=0 1', QUICK_TRY_ARGS + ' --compile --device cpu')
    assert set(again) == {str(tmp_path / f'lr-sweep/{s}/seed1') for s in ('lr0.1', 'lr0.01', 'lr0.001')}
    assert again[str(tmp_path / 'lr-sweep/lr0.1/seed1')].resume


def test_a_run_from_before_a_flag_existed_is_the_run_asked_for(tmp_path):
    """A config.json written before a training flag existed lacks its key: the run was made with
    what is now its default, and is taken as done."""
    write_run(tmp_path / 'lr-sweep/lr0.1/seed0', {'lr': 0.1})
    config = json.loads((tmp_path / 'lr-sweep/lr0.1/seed0/config.json').read_text())
    del config['flags']['no_crop_flip'], config['flags']['momentum']
    (tmp_path / 'lr-sweep/lr0.1/seed0/config.json').write_text(json.dumps(config))
    assert str(tmp_path / 'lr-sweep/lr0.1/seed0') not in planned_runs('lr-sweep', f'RUNS={tmp_path}')


def archive_only(folder, cifar_root):
    """A data folder as a fresh clone's is after the first download: only CIFAR-10's archive."""
    os.makedirs(folder)
    with tarfile.open(os.path.join(folder, 'cifar-10-python.tar.gz'), 'w:gz') as tar:
        tar.add(os.path.join(cifar_root, 'cifar-10-batches-py'), arcname='cifar-10-batches-py')
    return folder


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward')
@pytest.mark.slow
def test_a_quick_try_under_j3_on_a_fresh_data_folder_then_the_real_target(cifar_root, tmp_path):
    """The first hour, as a student meets it: three runs at once (-j3) on a data folder that holds
    only the archive, which they unpack once between them; then the plain target, which must not
    take the quick try for the study."""
    data_dir = archive_only(tmp_path / 'data', cifar_root)
    tiny = f'--epochs 1 --train-subset 20 --eval-subset 10 --batch-size 10 --device cpu --data-dir {data_dir}'
    env = os.environ | {'OMP_NUM_THREADS': '1'}
    quick = subprocess.run([*MAKE, '-j3', 'lr-sweep', f'RUNS={tmp_path}/runs', f'ARGS={tiny}'], capture_output=True,
                           text=True, env=env)
    assert quick.returncode == 0, quick.stderr
    assert quick.stdout.count('unpacking') == 1 and sorted(os.listdir(data_dir)) == [
        'cifar-10-batches-py', 'cifar-10-python.tar.gz', 'cifar-10.lock'], (quick.stdout, os.listdir(data_dir))
    real = subprocess.run([*MAKE, 'lr-sweep', f'RUNS={tmp_path}/runs', f'ARGS=--device cpu --data-dir {data_dir}'],
                          capture_output=True, text=True, env=env)
    assert real.returncode != 0 and 'train.py' not in real.stdout
    assert real.stderr.count('epochs 1, not 15; batch-size 10, not 128; train-subset 20, not none; eval-subset 10, not none') == 3


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward')
@pytest.mark.slow
def test_a_diverged_run_ends_and_the_study_goes_on(cifar_root, tmp_path):
    """Three tiny runs in a row, the first of which diverges (the lr sweep, its lr 0.1 made 1e12 in the
    study.toml of a copy of the project), with no -k: the other two still run and finish, make exits 0, the end of
    its output names the diverged run, and make status shows it diverged."""
    make = project_copy(tmp_path / 'project')
    path = tmp_path / 'project' / 'study.toml'
    path.write_text(path.read_text().replace('flags = { lr = 0.1 }', 'flags = { lr = 1e12 }'))
    runs_dir = tmp_path / 'runs'
    tiny = f'ARGS=--epochs 2 --train-subset 20 --eval-subset 10 --batch-size 10 --device cpu --data-dir {cifar_root}'
    made = subprocess.run([*make, 'lr-sweep', f'RUNS={runs_dir}', tiny], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    first = runs_dir / 'lr-sweep/lr0.1/seed0'
    at = json.loads((first / 'summary.json').read_text())['diverged_at']
    assert f'{first} diverged at epoch {at}' in made.stderr
    assert made.stdout.splitlines()[-2:] == [f'diverged: {first}, at epoch {at} (its summary.json; --force starts it over)',
                                             '1 of 3 runs diverged; make status shows every run']
    for setting in ('lr0.01', 'lr0.001'):
        assert 'diverged_at' not in json.loads((runs_dir / f'lr-sweep/{setting}/seed0/summary.json').read_text())
    status = subprocess.run([*make, 'status', f'RUNS={runs_dir}', 'EXP=lr-sweep'], capture_output=True, text=True)
    assert [line.split()[1] for line in status.stdout.splitlines()] == ['diverged', 'finished', 'finished']


def test_a_damaged_run_is_named_and_left_alone_and_the_others_run(tmp_path):
    """An interrupted run whose config.json was cut short: make's check before the runs names it in
    one line, plans no command for it, and plans the others as ever."""
    damaged = tmp_path / 'lr-sweep/lr0.1/seed0'
    write_run(damaged, {'lr': 0.1}, summary=False)
    (damaged / 'checkpoint.pt').write_bytes(b'')
    (damaged / 'config.json').write_text((damaged / 'config.json').read_text()[:40])
    shown = subprocess.run([*MAKE, '-n', 'lr-sweep', f'RUNS={tmp_path}'], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert [line for line in shown.stderr.splitlines() if str(damaged) in line] == [
        f'make leaves out {damaged}: config.json is cut short; python train.py --force ... --out {damaged} '
        f'starts the run over, or delete the folder']
    assert set(planned_runs('lr-sweep', f'RUNS={tmp_path}')) == {f'{tmp_path}/lr-sweep/{s}/seed0' for s in ('lr0.01', 'lr0.001')}


def test_a_python_of_your_own_makes_no_venv_and_is_checked_for_what_each_target_needs(tmp_path):
    """make ... PY=/path/to/python: no .venv is planned; before the target, that Python is checked for
    the packages the target needs, from the supported floor; what it lacks is one line, and the
    target does not run. make reads study.toml with it too, not with the python3 on the PATH."""
    shown = subprocess.run(['make', '-n', '-C', ROOT, 'test', f'PY={sys.executable}'], capture_output=True, text=True,
                           check=True).stdout
    assert '-m venv' not in shown and 'pip install' not in shown and f'{sys.executable} -m bookkeeping.environment torch numpy torchvision pytest matplotlib nbclient ipykernel nbformat' in shown
    bare = tmp_path / 'bare'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(bare)], check=True)  # a Python with nothing
    made = subprocess.run(['make', '-s', '-C', ROOT, 'figures', f'PY={bare}/bin/python', f'RUNS={tmp_path}'],
                          capture_output=True, text=True)
    assert made.returncode != 0 and 'report.py' not in made.stdout
    assert made.stderr.splitlines()[0] == f'{bare}/bin/python lacks what this target needs: torch 2.9.1 or later, ' \
                                          f"numpy 1.24.4 or later, matplotlib 3.7.5 or later. Install them (pip install " \
                                          f"'torch>=2.9.1' 'numpy>=1.24.4' 'matplotlib>=3.7.5'), or leave PY= out to use .venv"
    no_python3 = tmp_path / 'bin'  # a python3 on the PATH too old to read study.toml, say: PY= reads it
    no_python3.mkdir()
    (no_python3 / 'python3').write_text('#!/bin/sh\nexit 1\n')
    (no_python3 / 'python3').chmod(0o755)
    planned = subprocess.run(['make', '-n', '-C', ROOT, 'lr-sweep', f'PY={sys.executable}', f'RUNS={tmp_path}/runs'],
                             env=os.environ | {'PATH': f'{no_python3}:{os.environ["PATH"]}'}, capture_output=True, text=True)
    assert planned.returncode == 0 and planned.stdout.count('train.py') == 3, planned.stderr


def older_python():
    """A Python older than 3.11.4 on this machine (a login node's, say), or None."""
    import glob
    found = [shutil.which(f'python3.{minor}') for minor in (10, 9, 8)] + \
        sorted(glob.glob(os.path.expanduser('~/.pyenv/versions/3.1[0-9].*/bin/python3')))
    for python in filter(None, found):
        version = subprocess.run([python, '-c', 'import sys; print(*sys.version_info[:3])'], capture_output=True,
                                 text=True).stdout.split()
        if version and tuple(map(int, version)) < (3, 11, 4):
            return python
    return None


def test_a_py_that_is_no_program_or_too_old_a_python_is_one_line_and_nothing_runs(tmp_path):
    """A mistyped PY= is named, not met by make's "No such file or directory" and a word about
    study.toml; a Python too old to read study.toml (tomllib, 3.11) says which it is and how to
    name another, PY= included, and make stops there."""
    wrong = subprocess.run(['make', '-s', '-C', ROOT, 'lr-sweep', f'PY={tmp_path}/no/python', f'RUNS={tmp_path}/runs'],
                           capture_output=True, text=True)
    assert wrong.returncode == 2 and wrong.stdout == '' and not (tmp_path / 'runs').exists()
    assert [re.sub(r'^Makefile:\d+: ', '', line) for line in wrong.stderr.splitlines()] == [
        f'*** PY={tmp_path}/no/python is not a program here: name a Python, as PY=$(which python) does.  Stop.']
    old = older_python()
    if old is None:
        pytest.skip('no Python older than 3.11.4 on this machine to try')
    made = subprocess.run(['make', '-s', '-C', ROOT, 'lr-sweep', f'PY={old}', f'RUNS={tmp_path}/runs'],
                          capture_output=True, text=True)
    assert made.returncode == 2 and made.stdout == '' and not (tmp_path / 'runs').exists()
    said = made.stderr.splitlines()
    assert said[0].startswith(f'bookkeeping/study.py: error: Python 3.11.4 or later is needed, and {old} is 3.') and \
        said[0].endswith('name a newer one, make PY=/path/to/python (with its packages) or PYTHON=/path/to/python3.11 '
                         '(to make .venv with)') and [re.sub(r'^Makefile:\d+: ', '', line) for line in said[1:]] == [
        '*** study.toml was not read: the line above says why.  Stop.']


def test_the_floors_are_requirements_txt_s_own():
    """One list of floors: bookkeeping.environment's are requirements.txt's `name>=version` lines."""
    from bookkeeping import environment
    lines = open(os.path.join(ROOT, 'requirements.txt')).read().splitlines()
    assert environment.FLOOR == dict(line.split('>=') for line in lines if '>=' in line and not line.startswith('#'))
    assert environment.FLOOR['torch'] == '2.9.1' and environment.floors('/no/such/file') == {}


def test_every_package_the_code_imports_is_declared():
    """Each package outside the standard library that the project's code or tests import is a line
    of requirements.txt (pillow imported as PIL), not one that only comes with another package."""
    import ast
    import glob
    declared = {line.split('>=')[0].strip().lower() for line in open(os.path.join(ROOT, 'requirements.txt'))
                if line.strip() and not line.startswith('#')}
    ours = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, '*.py'))} | \
        {'bookkeeping', 'runner', 'course', 'conftest', 'wire', 'worker'} | \
        {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, 'tests', '*.py'))}
    imported = set()
    for path in glob.glob(os.path.join(ROOT, '**', '*.py'), recursive=True):
        if '/.venv/' in path:
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split('.')[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split('.')[0])
    outside = imported - set(sys.stdlib_module_names) - ours
    assert {'PIL' if name == 'pillow' else name for name in declared} >= outside, outside - declared


def test_the_floor_is_read_from_the_installed_versions(monkeypatch):
    from bookkeeping import environment
    assert environment.as_numbers('2.14.1+cu130') == (2, 14, 1) and environment.lacking(['torch', 'pytest']) == []
    monkeypatch.setitem(environment.FLOOR, 'torch', '99.0')
    assert environment.lacking(['torch', 'no-such-package']) == [
        f'torch 99.0 or later (it has {torch_version()})', 'no-such-package']
    monkeypatch.setitem(environment.FLOOR, 'torch', torch_version().split('+')[0])  # exactly at the floor: enough
    assert environment.lacking(['torch']) == []


def torch_version():
    import importlib.metadata
    return importlib.metadata.version('torch')


# ---------------------------------------------------------------------------------------------
# The commands as people type them.


@pytest.mark.parametrize('chapter, lacks', [('train.py', 'torch'), ('report.py', 'torch and no matplotlib'),
                                            ('bench.py', 'torch and no torchvision'), ('data.py', 'numpy and no torch')])
def test_a_chapter_run_with_a_python_that_lacks_torch_says_which_and_how_out_in_one_line(tmp_path, chapter, lacks):
    """`python train.py` typed where python is not the project's (.venv not activated): one line
    that names that Python, what it lacks and the two ways out; exit status 1; no traceback."""
    bare = tmp_path / 'bare'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(bare)], check=True)  # a Python with nothing
    ran = subprocess.run([str(bare / 'bin' / 'python'), chapter, '--help'], cwd=ROOT, capture_output=True, text=True)
    assert ran.returncode == 1 and ran.stdout == '' and len(ran.stderr.splitlines()) == 1, ran.stderr
    assert ran.stderr.startswith(f'{bare}/bin/python has no {lacks}: use the project\'s Python (make test makes it; '
                                 f'then . .venv/bin/activate), or install ')
    assert 'docs/where.md says how make PY= uses it' in ran.stderr


def test_report_py_with_a_python_that_lacks_matplotlib_says_so_in_one_line(tmp_path):
    """A Python with torch and without matplotlib (here, the tests' own with matplotlib's import
    made to fail, as it fails where it is not installed)."""
    ran = subprocess.run([sys.executable, '-c', "import runpy, sys; sys.modules['matplotlib'] = None; "
                          "sys.argv = ['report.py', '--tables']; runpy.run_path('report.py', run_name='__main__')"],
                         cwd=ROOT, capture_output=True, text=True)
    assert ran.returncode == 1 and ran.stderr.startswith(f'{sys.executable} has no matplotlib: ') and \
        len(ran.stderr.splitlines()) == 1, ran.stderr


def read_only(folder):
    """`folder`, mounted read-only (a tmpfs), as the tests run as root; skipped elsewhere."""
    if os.geteuid() != 0:
        pytest.skip('a read-only mount needs root (and os.access says yes to root on a mode-555 folder)')
    folder.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', str(folder)], check=True)
    return folder


@pytest.mark.parametrize('target', ['lr-sweep', 'study', 'seeds'])
def test_runs_that_cannot_be_a_folder_is_one_line_before_any_run(tmp_path, target):
    """RUNS= a file, or a path through a file: make says which in one line, and nothing runs. A RUNS=
    whose folders are missing is made (bookkeeping.environment.folder, below), but by make -n, which
    makes nothing."""
    (tmp_path / 'file').write_text('mine')
    for runs, why in ((tmp_path / 'file', f'{tmp_path}/file is a file, not a folder'),
                      (tmp_path / 'file' / 'runs', f'{tmp_path}/file/runs cannot be made: a file stands on its path')):
        made = subprocess.run([*MAKE, target, f'RUNS={runs}', 'ARGS=--epochs 1'], capture_output=True, text=True)
        assert made.returncode == 2 and made.stdout == '', made.stdout
        assert [re.sub(r'^Makefile:\d+: ', '', line) for line in made.stderr.splitlines()] == [
            f'*** RUNS={runs}: {why}.  Stop.']
    assert (tmp_path / 'file').read_text() == 'mine'
    planned = subprocess.run([*MAKE, '-n', target, f'RUNS={tmp_path}/new/runs'], capture_output=True, text=True)
    assert planned.returncode == 0 and not (tmp_path / 'new').exists(), planned.stderr
    from bookkeeping import environment
    assert environment.folder(str(tmp_path / 'new' / 'runs')) == '' and (tmp_path / 'new' / 'runs').is_dir()


def test_runs_on_a_read_only_file_system_is_one_line_before_any_run(tmp_path):
    mounted = read_only(tmp_path / 'ro')
    try:
        made = subprocess.run([*MAKE, 'lr-sweep', f'RUNS={mounted}/runs'], capture_output=True, text=True)
    finally:
        subprocess.run(['umount', str(mounted)], check=True)
    assert made.returncode == 2 and made.stdout == ''
    assert [re.sub(r'^Makefile:\d+: ', '', line) for line in made.stderr.splitlines()] == [
        f'*** RUNS={mounted}/runs: {mounted}/runs cannot be made: Read-only file system.  Stop.']


@pytest.mark.parametrize('target, names', [
    ('grade-class', ['SUBMISSIONS={submissions}', 'OUT={out}/grades.csv']),
    ('autograder', ['OUT={out}/autograder.zip']),
    ('handout', ['OUT={out}/handout'])])
def test_an_out_that_cannot_be_written_is_one_line_before_any_work_and_a_missing_folder_is_made(tmp_path, target, names):
    """OUT= under a file, or on a read-only file system: one line that says so, before a class is
    graded (never graded, then lost), a handout made or a zip built. OUT= in folders that do not
    exist yet: they are made, and the target writes there (here for the handout; the class's and the
    autograder's own tests, in tests/test_classroom.py, write theirs into folders made so)."""
    (tmp_path / 'submissions').mkdir()
    (tmp_path / 'file').write_text('mine')
    fill = lambda out: [name.format(submissions=tmp_path / 'submissions', out=out) for name in names]
    made = subprocess.run([*MAKE, target, *fill(tmp_path / 'file')], capture_output=True, text=True)
    assert made.returncode != 0 and re.search('is a file, not a folder|a file stands on its path',
                                              made.stderr.splitlines()[0]), made.stderr
    assert sum('error' in line for line in made.stderr.splitlines()) == 1 and 'Traceback' not in made.stderr
    mounted = read_only(tmp_path / 'ro')
    try:
        made = subprocess.run([*MAKE, target, *fill(mounted / 'out')], capture_output=True, text=True)
    finally:
        subprocess.run(['umount', str(mounted)], check=True)
    assert made.returncode != 0 and 'cannot be made: Read-only file system' in made.stderr.splitlines()[0], made.stderr
    if target == 'handout':
        made = subprocess.run([*MAKE, target, *fill(tmp_path / 'new' / 'folders')], capture_output=True, text=True)
        assert made.returncode == 0 and (tmp_path / 'new' / 'folders' / 'handout' / 'train.py').exists(), made.stderr
