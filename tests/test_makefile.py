"""The Makefile promises one target per experiment whose runs have exactly the report's settings."""
import json
import os
import shlex
import subprocess

import train
from conftest import MAKE, ROOT

EXPERIMENTS = ['lr-sweep', 'schedule', 'wd', 'erase', 'erase-p', 'erase-scale', 'erase-ratio']


def planned_commands(*make_args):
    """Every train.py command `make -n` would run, in the order it would run them."""
    shown = subprocess.run(['make', '-n', '-C', ROOT, *make_args], capture_output=True, text=True, check=True).stdout
    return [line for line in shown.splitlines() if 'train.py' in line]


def planned_runs(*make_args):
    """{out folder: parsed flags} of every train.py command `make -n` would run."""
    runs = {}
    for line in planned_commands(*make_args):
        args = train.build_parser().parse_args(shlex.split(line.split('train.py', 1)[1]))
        runs[args.out] = args
    return runs


def test_each_experiment_runs_the_reports_settings(tmp_path):
    with open(os.path.join(ROOT, 'report_results.json')) as f:
        report = json.load(f)['runs']
    for experiment in EXPERIMENTS:
        runs = planned_runs(experiment, f'RUNS={tmp_path}')
        expected = [r['setting'] for r in report if r['experiment'] == experiment]
        assert len(runs) == len(expected), experiment
        for setting in expected:
            matches = [args for args in runs.values() if
                       args.lr == setting['lr'] and args.epochs == setting['epochs'] and
                       args.cosine == setting.get('cosine', False) and args.wd == setting.get('wd', 0.0) and
                       args.erase_p == setting.get('erase_p', 0.0) and
                       args.erase_scale == setting.get('erase_scale', [0.02, 0.33]) and
                       args.erase_ratio == setting.get('erase_ratio', [0.3, 3.3])]
            assert len(matches) == 1, (experiment, setting)
            args = matches[0]
            assert (args.batch_size, args.momentum, args.no_crop_flip, args.seed) == (128, 0.9, False, 0)
            assert args.out.startswith(f'{tmp_path}/{experiment}/') and args.out.endswith('/seed0')


def test_study_is_all_fourteen_runs(tmp_path):
    assert len(planned_runs('study', f'RUNS={tmp_path}')) == 14


def test_args_override_and_seeds_multiply(tmp_path):
    runs = planned_runs('lr-sweep', f'RUNS={tmp_path}', 'ARGS=--epochs 1 --train-subset 512', 'SEEDS=0 1 2')
    assert len(runs) == 9
    assert {args.seed for args in runs.values()} == {0, 1, 2}
    assert all(args.epochs == 1 and args.train_subset == 512 for args in runs.values())
    assert f'{tmp_path}/lr-sweep/lr0.1/seed2' in runs


def test_finished_runs_are_skipped_and_interrupted_ones_resumed(tmp_path):
    finished, interrupted = tmp_path / 'lr-sweep/lr0.1/seed0', tmp_path / 'lr-sweep/lr0.01/seed0'
    finished.mkdir(parents=True), interrupted.mkdir(parents=True)
    (finished / 'summary.json').write_text('{}')
    (interrupted / 'checkpoint.pt').write_bytes(b'')
    runs = planned_runs('lr-sweep', f'RUNS={tmp_path}')
    assert set(runs) == {str(interrupted), f'{tmp_path}/lr-sweep/lr0.001/seed0'}
    assert runs[str(interrupted)].resume and not runs[f'{tmp_path}/lr-sweep/lr0.001/seed0'].resume


def test_gpus_give_every_run_the_pool_to_take_a_gpu_from(tmp_path):
    """make -j4 study GPUS='0 1 2 3': no GPU is fixed in advance; each run takes a free one of the
    pool as it starts (tests/test_runs.py runs it)."""
    for seeds in ('0', '0 1'):
        runs = planned_runs('study', f'RUNS={tmp_path}', 'GPUS=0 1 2', f'SEEDS={seeds}')
        assert len(runs) == 14 * len(seeds.split()) and all(args.gpu_pool == ['0', '1', '2'] for args in runs.values())
    assert not any('CUDA_VISIBLE_DEVICES' in line for line in planned_commands('study', f'RUNS={tmp_path}', 'GPUS=0 1'))


def test_without_gpus_no_run_is_given_a_pool(tmp_path):
    assert all(args.gpu_pool is None for args in planned_runs('study', f'RUNS={tmp_path}').values())


def test_with_slurm_a_target_submits_its_runs_instead_of_running_them(tmp_path):
    """One slurm.py command, given every run folder of the target and the variables each task needs."""
    shown = subprocess.run(['make', '-n', '--no-print-directory', '-C', ROOT, 'wd', f'RUNS={tmp_path}', 'SEEDS=0 1', 'ARGS=--epochs 2',
                            'SLURM=--time=1:00:00 --gres=gpu:1'], capture_output=True, text=True, check=True).stdout
    line = next(line for line in shown.replace('\\\n', ' ').splitlines() if 'slurm.py' in line)
    command = shlex.split(line)
    assert 'train.py' not in shown and command[1] == 'slurm.py'
    assert '--sbatch=--time=1:00:00 --gres=gpu:1' in command
    assert [command[i + 1] for i, word in enumerate(command) if word == '--make'] == \
        [f'RUNS={tmp_path}', 'SEEDS=0 1', 'ARGS=--epochs 2']
    assert command[-4:] == [f'{tmp_path}/wd/{s}/seed{n}' for s in ('wd5e-4', 'wd1e-2') for n in (0, 1)]


def test_status_lists_the_runs_of_the_study_or_of_one_experiment(tmp_path):
    listed = lambda *args: [line.split()[0] for line in subprocess.run(
        [*MAKE, 'status', f'RUNS={tmp_path}', *args], capture_output=True, text=True,
        check=True).stdout.splitlines()]
    assert len(listed()) == 14 and len(listed('SEEDS=0 1 2')) == 42
    assert listed('EXP=wd erase') == [f'{tmp_path}/wd/wd5e-4/seed0', f'{tmp_path}/wd/wd1e-2/seed0', f'{tmp_path}/erase/p1.0/seed0']
