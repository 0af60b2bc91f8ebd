"""report.py promises tables whose numbers are the runs' final lines, beside the report's, and
a figure for each experiment that has runs; missing runs skipped, unfinished ones marked."""
import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest

import data
from conftest import ROOT


@pytest.fixture(scope='module')
def study(cifar_root, tmp_path_factory):
    """The lr sweep with two seeds, run for real by make; and an unfinished run of `schedule`."""
    runs = tmp_path_factory.mktemp('study') / 'runs'
    args = f'ARGS=--epochs 2 --train-subset 20 --eval-subset 10 --device cpu --data-dir {cifar_root}'
    made = subprocess.run(['make', '-j3', '-C', ROOT, 'lr-sweep', f'RUNS={runs}', 'SEEDS=0 1', args],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    # lr 0.01, constant, no weight decay is also the schedule experiment's `constant`: stopped after epoch 1.
    unfinished = runs / 'schedule' / 'constant' / 'seed0'
    shutil.copytree(runs / 'lr-sweep' / 'lr0.01' / 'seed0', unfinished)
    os.remove(unfinished / 'summary.json')
    lines = (unfinished / 'metrics.jsonl').read_text().splitlines()
    (unfinished / 'metrics.jsonl').write_text(lines[0] + '\n')
    out = runs.parent / 'figures'
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'report.py'), '--runs', str(runs), '--out', str(out),
                             '--data-dir', cifar_root, '--batch', '32'], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return runs, out, result.stdout


def row(tables, setting, source):
    """The cells of a table row, found by its first two cells."""
    for line in tables.splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if cells[:2] == [setting, source]:
            return cells
    raise AssertionError(f'no row {setting} / {source}')


def read_metrics(folder):
    return [json.loads(line) for line in open(folder / 'metrics.jsonl')]


def test_table_numbers_are_the_runs_final_lines(study):
    runs, out, _ = study
    tables = (out / 'tables.md').read_text()
    folders = [runs / 'lr-sweep' / 'lr0.1' / f'seed{s}' for s in (0, 1)]
    last = [read_metrics(f)[-1] for f in folders]
    summaries = [json.load(open(f / 'summary.json')) for f in folders]
    cells = row(tables, 'lr 0.1', 'ours')
    assert cells[2:4] == ['2', '2']  # epochs, seeds
    for i, key in enumerate(['train_loss', 'train_acc', 'val_loss', 'val_acc']):
        values = [m[key] for m in last]
        mean, std = statistics.fmean(values), statistics.stdev(values)
        scale, digits = (100, 2) if key.endswith('acc') else (1, 4)
        expected = f'{scale * mean:.{digits}f} ± {scale * std:.{digits}f}'
        assert cells[4 + i] == expected, key
    test_acc = statistics.fmean(s['test_acc'] for s in summaries)
    assert cells[9].startswith(f'{100 * test_acc:.2f}')


def test_report_numbers_and_differences_sit_beside_ours(study):
    runs, out, _ = study
    tables = (out / 'tables.md').read_text()
    report = row(tables, 'lr 0.01', 'report')
    assert report[2] == '15' and report[4:8] == ['0.2463', '91.39', '0.4309', '86.06']
    last = [read_metrics(runs / 'lr-sweep' / 'lr0.01' / f'seed{s}')[-1]['val_loss'] for s in (0, 1)]
    assert row(tables, 'lr 0.01', 'difference')[6] == f'{statistics.fmean(last) - 0.4309:+.4f}'


def test_unfinished_run_is_shown_to_its_last_epoch_and_marked(study):
    runs, out, _ = study
    cells = row((out / 'tables.md').read_text(), 'constant', 'ours (in progress: epoch 1/2)')
    first = read_metrics(runs / 'schedule' / 'constant' / 'seed0')[0]
    assert cells[6] == f'{first["val_loss"]:.4f}' and cells[8:] == ['', '']  # no test numbers yet


def test_missing_runs_are_skipped_with_a_line_each(study):
    _, out, stdout = study
    assert 'skipped: schedule, cosine' in stdout and 'skipped: wd, wd 0.0005' in stdout
    assert 'skipped: lr-sweep' not in stdout
    assert row((out / 'tables.md').read_text(), 'wd 0.01', 'ours')[3] == '0'


def test_table1_is_the_split_of_the_data(study, cifar_root):
    _, out, _ = study
    _, labels, _, _ = data.load_cifar10(cifar_root, download=False)
    assert data.class_table(labels, *data.split_for(labels, 0)) in (out / 'tables.md').read_text()


def test_each_figure_with_runs_is_written_as_png(study):
    _, out, stdout = study
    for name in ['figure1_first_batch.png', 'figure2_lr-sweep.png', 'figure3_cosine.png', 'figure4_schedule.png']:
        content = (out / name).read_bytes()
        assert content[:8] == b'\x89PNG\r\n\x1a\n' and len(content) > 10000, name
    assert not (out / 'figure5_wd.png').exists()


def test_tables_only_writes_no_figure(study, cifar_root, tmp_path):
    runs, _, _ = study
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'report.py'), '--tables', '--runs', str(runs),
                             '--out', str(tmp_path), '--data-dir', cifar_root], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ['tables.md']
