"""report.py promises tables whose numbers are the runs' final lines, beside the report's, each
accuracy with its uncertainty; a verdict on each of the report's claims, from its own numbers and
from ours; a figure for each experiment that has runs, and one of every accuracy with its error
bar; missing runs skipped, unfinished ones marked."""
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

import matplotlib.pyplot as plt
import pytest
import torch

import data
import figures
import report
from conftest import ROOT
from stats import binomial_se, mcnemar_p, t_p


@pytest.fixture(scope='module')
def study(cifar_root, tmp_path_factory):
    """The lr sweep with two seeds, run for real by make; and an unfinished run of `schedule`."""
    runs = tmp_path_factory.mktemp('study') / 'runs'
    args = f'ARGS=--epochs 2 --train-subset 20 --eval-subset 10 --device cpu --data-dir {cifar_root}'
    # Three runs at once, one thread each: on a 2-core machine they would otherwise fight over the
    # cores and take twice as long (measured 41 s against 23 s).
    made = subprocess.run(['make', '-j3', '-C', ROOT, 'lr-sweep', f'RUNS={runs}', 'SEEDS=0 1', args],
                          capture_output=True, text=True, env=os.environ | {'OMP_NUM_THREADS': '1'})
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
    """The cells of a table row, found by its setting and its source (report, ours or difference),
    which a note in brackets may follow: 'ours (2 epochs, not 15)'."""
    for line in tables.splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if cells[0] == setting and len(cells) > 1 and cells[1].split(' (')[0] == source:
            return cells
    raise AssertionError(f'no row {setting} / {source}')


def conclusions(text):
    """{(claim, against): cells} of the Conclusions table; a claim's later rows leave it blank."""
    section = text[text.index('## Conclusions'):]
    rows, claim = {}, None
    for line in section.splitlines()[4:]:
        if not line.startswith('|'):
            break
        cells = [c.strip() for c in line.strip('|').split('|')]
        claim = cells[0] or claim
        rows[claim, cells[1]] = cells[2:]
    return rows


def make_tables(runs, out):
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'report.py'), '--tables', '--runs', str(runs),
                             '--out', str(out), '--data-dir', str(out / 'no-data')], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout, (out / 'tables.md').read_text()


def read_metrics(folder):
    return [json.loads(line) for line in open(folder / 'metrics.jsonl')]


@pytest.mark.slow
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
        if key == 'val_acc':  # and the standard error of the mean of two seeds
            expected += f' (sem {100 * std / math.sqrt(2):.2f})'
        assert cells[4 + i] == expected, key
    test_acc = statistics.fmean(s['test_acc'] for s in summaries)
    assert cells[9].startswith(f'{100 * test_acc:.2f}')


@pytest.mark.slow
def test_report_numbers_and_differences_sit_beside_ours(study):
    runs, out, _ = study
    tables = (out / 'tables.md').read_text()
    report = row(tables, 'lr 0.01', 'report')
    assert report[2] == '15' and report[4:8] == ['0.2463', '91.39', '0.4309', '86.06 ± 0.35']  # √(.8606 .1394 / 10⁴)
    last = [read_metrics(runs / 'lr-sweep' / 'lr0.01' / f'seed{s}')[-1]['val_loss'] for s in (0, 1)]
    assert row(tables, 'lr 0.01', 'difference')[6] == f'{statistics.fmean(last) - 0.4309:+.4f}'


@pytest.mark.slow
def test_unfinished_run_is_shown_to_its_last_epoch_and_marked(study):
    runs, out, _ = study
    cells = row((out / 'tables.md').read_text(), 'constant', 'ours')
    assert cells[1].startswith('ours (in progress: epoch 1/2; ')
    first = read_metrics(runs / 'schedule' / 'constant' / 'seed0')[0]
    assert cells[6] == f'{first["val_loss"]:.4f}' and cells[8:] == ['', '']  # no test numbers yet
    # one run: its accuracy ± the binomial standard error on its 10 validation images
    assert cells[7] == f'{100 * first["val_acc"]:.2f} ± {100 * binomial_se(first["val_acc"], 10):.2f}'


@pytest.mark.slow
def test_missing_runs_are_skipped_with_a_line_each(study):
    _, out, stdout = study
    assert 'skipped: schedule, cosine' in stdout and 'skipped: wd, wd 0.0005' in stdout
    assert 'skipped: lr-sweep' not in stdout
    assert row((out / 'tables.md').read_text(), 'wd 0.01', 'ours')[3] == '0'


@pytest.mark.slow
def test_table1_is_the_split_of_the_data(study, cifar_root):
    _, out, _ = study
    _, labels, _, _ = data.load_cifar10(cifar_root, download=False)
    assert data.class_table(labels, *data.split_for(labels, 0)) in (out / 'tables.md').read_text()


@pytest.mark.slow
def test_each_figure_with_runs_is_written_as_png(study):
    _, out, stdout = study
    for name in ['figure1_first_batch.png', 'figure2_lr-sweep.png', 'figure3_cosine.png', 'figure4_schedule.png',
                 'figure10_noise.png']:
        content = (out / name).read_bytes()
        assert content[:8] == b'\x89PNG\r\n\x1a\n' and len(content) > 10000, name
    assert not (out / 'figure5_wd.png').exists()


@pytest.mark.slow
def test_tables_only_writes_no_figure(study, cifar_root, tmp_path):
    runs, _, _ = study
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'report.py'), '--tables', '--runs', str(runs),
                             '--out', str(tmp_path), '--data-dir', cifar_root], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ['tables.md']


@pytest.mark.slow
def test_every_table_says_how_its_uncertainties_are_computed(study):
    _, out, _ = study
    assert (out / 'tables.md').read_text().count(report.UNCERTAINTY_RULE) == 6  # under Tables 2-7


# What the report's own numbers say, one run per setting on 10,000 validation images each.
REPORT_ALONE = [
    ('lr 0.01 is the best of three rates at 15 epochs', 'lr 0.1', 'yes'),
    ('lr 0.01 is the best of three rates at 15 epochs', 'lr 0.001', 'yes'),
    ('cosine annealing beats a constant rate', 'constant', 'no'),
    ('wd 1e-2 beats 5e-4 (its table; its text says 5e-4)', 'wd 5e-4', 'yes'),
    ('random erasing (p 1.0) beats none', 'no erasing (wd 5e-4)', 'yes'),
    ('p 0.5 is the best erasing probability', 'p 0.8', 'no'),
    ('p 0.5 is the best erasing probability', 'p 1.0', 'no'),
    ('scale (0.02, 0.33) is the best erased area', 'scale (0.17, 0.5)', 'no'),
    ('scale (0.02, 0.33) is the best erased area', 'scale (0.33, 0.67)', 'yes'),
    ('ratio (0.2, 5.0) is the best aspect ratio', 'ratio (0.9, 1.1)', 'no'),
    ('ratio (0.2, 5.0) is the best aspect ratio', 'ratio (0.3, 3.3)', 'no'),
]


def test_conclusions_from_the_report_s_numbers_alone(tmp_path):
    """With no runs at all: which of the report's margins exceed the noise of one run. The erase-p and
    erase-ratio winners are within it; scale (0.33, 0.67) and the learning rates are far outside."""
    stdout, tables = make_tables(tmp_path / 'no-runs', tmp_path)
    assert '## Conclusions' in stdout  # printed, not only written
    rows = conclusions(tables)
    assert len(rows) == len(REPORT_ALONE)
    for claim, against, beyond in REPORT_ALONE:
        margin, noise, ours, test, verdict = rows[claim, against]
        assert noise.split(',')[0] == beyond and verdict == 'not run yet' and ours == test == '', (claim, against)
    # scale (0.02, 0.33) against (0.33, 0.67), by hand: 94.62 - 92.87 points over √(se² + se²), z = 5.1
    se = math.hypot(binomial_se(0.9462, 10_000), binomial_se(0.9287, 10_000))
    assert rows['scale (0.02, 0.33) is the best erased area', 'scale (0.33, 0.67)'][0] == f'+1.75 ± {100 * se:.2f}'


@pytest.mark.slow
def test_conclusions_with_several_seeds_test_the_means(study):
    """Two seeds of each rate: Welch's t over the seeds. Settings without finished runs: not run yet."""
    runs, out, _ = study
    rows = conclusions((out / 'tables.md').read_text())
    accuracies = {lr: [read_metrics(runs / 'lr-sweep' / f'lr{lr}' / f'seed{s}')[-1]['val_acc'] for s in (0, 1)]
                  for lr in ('0.01', '0.1')}
    difference = statistics.fmean(accuracies['0.01']) - statistics.fmean(accuracies['0.1'])
    se = math.sqrt(sum(statistics.variance(a) / 2 for a in accuracies.values()))
    # Welch by hand: each side's squared standard error is variance / 2 seeds; Welch-Satterthwaite's df.
    v = [statistics.variance(accuracies[lr]) / 2 for lr in ('0.01', '0.1')]
    t, df = difference / math.sqrt(sum(v)), max(1, math.floor(sum(v) ** 2 / (v[0] ** 2 + v[1] ** 2)))
    p = t_p(t, df)
    _, _, ours, test, verdict = rows['lr 0.01 is the best of three rates at 15 epochs', 'lr 0.1']
    assert ours == f'{100 * difference:+.2f} ± {100 * se:.2f}'
    assert test == f'Welch t {t:.1f}, df {df}, 2 and 2 seeds: ' + (f'p = {p:.3f}' if p >= 0.001 else 'p < 0.001')
    expected = 'within noise' if p >= 0.05 else 'reproduced' if difference > 0 else 'reversed'
    # and the verdict says what it stands on: runs far shorter and smaller than the report's
    assert verdict == f'{expected}, on 2 epochs, not 15; 20 training images, not 40,000; 10 validation and test images, not 10,000'
    assert rows['cosine annealing beats a constant rate', 'constant'][-1] == 'not run yet'  # constant: unfinished
    assert rows['wd 1e-2 beats 5e-4 (its table; its text says 5e-4)', 'wd 5e-4'][-1] == 'not run yet'


@pytest.mark.slow
def test_two_runs_on_the_same_images_are_compared_image_by_image(study, tmp_path):
    """One seed of each of two rates: McNemar's test on the images exactly one of them gets right,
    paired by index through predictions.pt. Runs of another seed are not on the same images."""
    runs, _, _ = study
    for lr, seed in (('0.01', 0), ('0.1', 0), ('0.001', 1)):
        shutil.copytree(runs / 'lr-sweep' / f'lr{lr}' / f'seed{seed}', tmp_path / 'runs' / 'lr-sweep' / f'lr{lr}' / f'seed{seed}')
    _, tables = make_tables(tmp_path / 'runs', tmp_path)
    rows = conclusions(tables)
    saved = {lr: torch.load(runs / 'lr-sweep' / f'lr{lr}' / 'seed0' / 'predictions.pt', weights_only=True)['val']
             for lr in ('0.01', '0.1')}
    assert torch.equal(saved['0.01']['index'], saved['0.1']['index'])
    right = {lr: s['pred'] == s['label'] for lr, s in saved.items()}
    only_01, only_1 = int((right['0.01'] & ~right['0.1']).sum()), int((right['0.1'] & ~right['0.01']).sum())
    _, _, ours, test, verdict = rows['lr 0.01 is the best of three rates at 15 epochs', 'lr 0.1']
    assert test.startswith(f'McNemar, {only_01} against {only_1} images: ')
    p = mcnemar_p(only_01, only_1)
    assert (f'p = {p:.3f}' if p >= 0.001 else 'p < 0.001') in test
    assert ours.startswith(f'{100 * (only_01 - only_1) / 10:+.2f} ±')  # 10 validation images
    # seed 1's split holds other validation images: no pairing, the z of two binomial errors
    _, _, _, test, _ = rows['lr 0.01 is the best of three rates at 15 epochs', 'lr 0.001']
    assert test.startswith('z ') and 'not the same images' in test


@pytest.mark.slow
def test_a_one_column_figure_s_title_fits(study):
    """Seen in the lr sweep with one setting run: the figure's title was cut at its edges."""
    runs, _, _ = study
    with open(os.path.join(ROOT, 'report_results.json')) as f:
        found = report.collect(str(runs), json.load(f))
    experiment = report.EXPERIMENTS[0]
    (row, found_runs), *_ = found[experiment.name]
    fig = figures.curves(experiment.figure, experiment.title, [('lr 0.1', found_runs, '')])
    fig.canvas.draw()
    renderer, edges = fig.canvas.get_renderer(), fig.bbox
    box = next(t for t in fig.texts if t.get_text() == fig.get_suptitle()).get_window_extent(renderer)
    assert edges.x0 <= box.x0 and box.x1 <= edges.x1 and box.y1 <= edges.y1
    one_line = fig.text(0, 0, fig.get_suptitle()).get_window_extent(renderer)
    assert one_line.width > edges.width  # unwrapped, it would not have fitted
    plt.close(fig)
