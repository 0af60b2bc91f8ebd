"""report.py promises tables whose numbers are the runs' final lines, beside the report's, each
accuracy with its uncertainty; a verdict on each of the report's claims, from its own numbers and
from ours, by the right test; a note wherever our runs depart from the report's setting; a figure
for each experiment that has runs, and one of every accuracy with its error bar; missing runs
skipped, unfinished ones marked.

The quick tests write run folders by hand, in the format runs.py documents, with numbers chosen
so that every expected cell is worked out here; the slow ones have make run a small study."""
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

import matplotlib.pyplot as plt
import pytest

from bookkeeping import figures
from bookkeeping.runs import collect
from bookkeeping.tables import UNCERTAINTY_RULE
import report
import stats
from bookkeeping import study
from conftest import A_RUN, MAKE, ROOT, write_run
from stats import binomial_se, mcnemar_p, t_p

STUDY = study.load()

def tables_of(runs, tmp_path, data_dir=None):
    """report.py --tables on a folder of runs: what it printed, and tables.md."""
    out = tmp_path / 'figures'
    report.main(['--tables', '--runs', str(runs), '--out', str(out), '--data-dir', str(data_dir or tmp_path / 'no-data')])
    return (out / 'tables.md').read_text()


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


def settling(text):
    """{comparison: cells} of the Conclusions' second table: the report's verdict with Holm's
    correction, ours with it, and the seeds to settle; and the sentence under it."""
    section = text[text.index('### With Holm'):]
    lines = section.splitlines()
    rows = {}
    for line in lines[4:]:
        if not line.startswith('|'):
            break
        cells = [c.strip() for c in line.strip('|').split('|')]
        rows[cells[0]] = cells[1:]
    return rows, lines[4 + len(rows) + 1]


LR_CLAIM = 'lr 0.01 is the best of three rates at 15 epochs'


def test_a_row_holds_the_mean_and_spread_of_the_seeds_final_lines(tmp_path):
    """Two seeds of lr 0.1 ending at 80% and 84% validation accuracy: mean 82.00, sd
    sqrt(2 * 2^2 / 1) = 2.83 points, sem 2.83 / sqrt(2) = 2.00. Their final losses are 1/2 and 1/2."""
    for seed, acc in ((0, 0.80), (1, 0.84)):
        write_run(tmp_path / 'runs/lr-sweep/lr0.1' / f'seed{seed}', {'lr': 0.1, 'seed': seed}, val_accs=(0.3, acc))
    cells = row(tables_of(tmp_path / 'runs', tmp_path), 'lr 0.1', 'ours')
    assert cells[1] == 'ours' and cells[2:4] == ['2', '2']  # no note: the report's setting; 2 epochs, 2 seeds
    assert cells[6] == '0.7500 ± 0.0000 (sd)' and cells[7] == '82.00 ± 2.83 (sd; sem 2.00)'
    assert cells[9] == '81.00 ± 2.83 (sd; sem 2.00)'  # the test accuracies, a point lower


def test_one_run_s_accuracy_carries_its_binomial_error_beside_the_report_s(tmp_path):
    """One run at 86% on 10,000 images: sqrt(0.86 * 0.14 / 10^4) = 0.35 points. The report's lr
    0.01: 86.06%, val loss 0.4309; the difference of the val losses 0.75 - 0.4309 = +0.3191."""
    write_run(tmp_path / 'runs/lr-sweep/lr0.01/seed0', val_accs=(0.5, 0.86))
    tables = tables_of(tmp_path / 'runs', tmp_path)
    assert row(tables, 'lr 0.01', 'ours')[7] == '86.00 ± 0.35 (se)'
    assert row(tables, 'lr 0.01', 'report')[4:8] == ['0.2463', '91.39', '0.4309', '86.06 ± 0.35 (se)']
    assert row(tables, 'lr 0.01', 'difference')[6:8] == ['+0.3191', '-0.06']


def test_runs_that_depart_from_the_report_s_setting_say_so_in_their_row_and_verdict(tmp_path):
    """Three epochs of 15, on 8,000 training images, evaluated on 2,000, in batches of 64, with
    momentum 0.5 and no crop and flip."""
    departs = {'epochs': 3, 'train_subset': 8000, 'eval_subset': 2000, 'batch_size': 64, 'momentum': 0.5,
               'no_crop_flip': True}
    small = {'train': 8000, 'val': 2000, 'test': 2000}
    for lr, acc in (('0.01', 0.7), ('0.1', 0.6)):
        write_run(tmp_path / f'runs/lr-sweep/lr{lr}/seed0', departs | {'lr': float(lr)}, (0.5, 0.6, acc), small)
    tables = tables_of(tmp_path / 'runs', tmp_path)
    note = ('epochs 3, not 15; batch-size 64, not 128; momentum 0.5, not 0.9; no-crop-flip on, not off; '
            'train-subset 8000, not none; eval-subset 2000, not none')
    assert row(tables, 'lr 0.01', 'ours')[1] == f'ours ({note})'
    assert conclusions(tables)[LR_CLAIM, 'lr 0.1'][-1].endswith(f', on {note}')
    assert conclusions(tables)[LR_CLAIM, 'lr 0.001'][-1] == 'not run yet'  # and none where there is no verdict


def test_a_verdict_on_runs_of_two_torch_versions_says_so(tmp_path):
    """config.json records each run's torch: a comparison whose runs used two versions says which,
    as it says any other way its runs depart (docs/where.md: a course's students run where they can)."""
    for lr, acc, version in (('0.01', 0.7, '2.14.1+cu130'), ('0.1', 0.6, '2.9.1+cu128')):
        folder = tmp_path / f'runs/lr-sweep/lr{lr}/seed0'
        write_run(folder, {'lr': float(lr)}, (0.5, 0.6, acc))
        config = json.loads((folder / 'config.json').read_text())
        (folder / 'config.json').write_text(json.dumps(config | {'torch': version}))
    tables = tables_of(tmp_path / 'runs', tmp_path)
    assert conclusions(tables)[LR_CLAIM, 'lr 0.1'][-1].endswith(', on torch 2.14.1+cu130 and 2.9.1+cu128')


def test_an_unfinished_run_is_shown_to_its_last_epoch_and_marked(tmp_path):
    write_run(tmp_path / 'runs/schedule/constant/seed0', {'epochs': 300}, val_accs=(0.4, 0.45), summary=False)
    cells = row(tables_of(tmp_path / 'runs', tmp_path), 'constant', 'ours')
    assert cells[1] == 'ours (in progress: epoch 2/300)' and cells[6] == '0.7500' and cells[8:] == ['', '']
    assert cells[7] == f'45.00 ± {100 * binomial_se(0.45, 10000):.2f} (se)'


def test_missing_runs_are_skipped_with_a_line_each(tmp_path, capsys):
    write_run(tmp_path / 'runs/lr-sweep/lr0.01/seed0')
    tables = tables_of(tmp_path / 'runs', tmp_path)
    printed = capsys.readouterr().out
    assert 'skipped: schedule, cosine' in printed and 'skipped: wd, wd 5e-4' in printed
    assert 'skipped: lr-sweep, lr 0.01' not in printed and 'skipped: lr-sweep, lr 0.1:' in printed
    assert row(tables, 'wd 1e-2', 'ours')[2:5] == ['', '0', 'no run']


@pytest.mark.exercise('mcnemar_p')
def test_two_runs_on_the_same_images_are_compared_image_by_image(tmp_path):
    """McNemar's exact test by hand. Of 10 validation images, lr 0.01 gets 0-6 right and lr 0.1
    gets 0, 1, 2 and 7: 4 images right only at lr 0.01 (3, 4, 5, 6), 1 only at lr 0.1 (7).
    p = 2 (C(5,0) + C(5,1)) / 2^5 = 12 / 32 = 0.375; the margin (4 - 1) / 10 = +30 points."""
    small = {'train': 40000, 'val': 10, 'test': 10}
    write_run(tmp_path / 'runs/lr-sweep/lr0.01/seed0', {}, (0.7,), small, right=[True] * 7 + [False] * 3)
    write_run(tmp_path / 'runs/lr-sweep/lr0.1/seed0', {'lr': 0.1}, (0.4,), small,
              right=[True] * 3 + [False] * 4 + [True] + [False] * 2)
    margin, noise, ours, test, verdict = conclusions(tables_of(tmp_path / 'runs', tmp_path))[LR_CLAIM, 'lr 0.1']
    assert test == 'McNemar, 4 against 1 images: p = 0.375' and mcnemar_p(4, 1) == 0.375
    assert ours.startswith('+30.00 ± ') and verdict == 'within noise'


@pytest.mark.exercise('mcnemar_p')
def test_one_run_each_counts_seeds_to_settle_from_the_binomial_floor(tmp_path):
    """The pair above: 70% and 40% on 10 images, one run each, within noise. A seed's spread is at
    least the binomial se of each: se² = 0.7 × 0.3 / 10 = 0.021 and 0.4 × 0.6 / 10 = 0.024, pooled
    sd = √((0.021 + 0.024) / 2) = √0.0225 = 0.15. The margin 0.30 is d = 0.30 / 0.15 = 2 sd. At
    d = 2 the power of the t-test is 0.790542 with 5 seeds a setting and 0.876418 with 6
    (scipy.stats.nct, written down in tests/test_stats.py): 6 seeds, at least, since training
    noise adds to the floor."""
    small = {'train': 40000, 'val': 10, 'test': 10}
    write_run(tmp_path / 'runs/lr-sweep/lr0.01/seed0', {}, (0.7,), small, right=[True] * 7 + [False] * 3)
    write_run(tmp_path / 'runs/lr-sweep/lr0.1/seed0', {'lr': 0.1}, (0.4,), small,
              right=[True] * 3 + [False] * 4 + [True] + [False] * 2)
    rows, _ = settling(tables_of(tmp_path / 'runs', tmp_path))
    assert rows['lr 0.01 against lr 0.1'][2] == 'at least 6 a setting: training noise adds'
    assert math.sqrt((0.7 * 0.3 / 10 + 0.4 * 0.6 / 10) / 2) == pytest.approx(0.15)


@pytest.mark.exercise('welch')
def test_seeds_on_both_sides_are_compared_by_welch_s_t(tmp_path):
    """Three seeds a side. lr 0.01: 86, 87, 88% (mean 87, sd 1, sem 1/sqrt 3); lr 0.1: 80, 82,
    84% (mean 82, sd 2, sem 2/sqrt 3). t = 5 / sqrt(1/3 + 4/3) = 3.873; Welch's
    df = (5/3)^2 / ((1/3)^2 / 2 + (4/3)^2 / 2) = 2.778 / 0.944 = 2.94, rounded down to 2."""
    for lr, accs in (('0.01', (0.86, 0.87, 0.88)), ('0.1', (0.80, 0.82, 0.84))):
        for seed, acc in enumerate(accs):
            write_run(tmp_path / f'runs/lr-sweep/lr{lr}/seed{seed}', {'lr': float(lr), 'seed': seed}, (acc,))
    _, _, ours, test, verdict = conclusions(tables_of(tmp_path / 'runs', tmp_path))[LR_CLAIM, 'lr 0.1']
    t = 0.05 / math.sqrt(0.0001 / 3 + 0.0004 / 3)
    assert test == f'Welch t {t:.1f}, df 2, 3 and 3 seeds: p = {t_p(t, 2):.3f}' and t == pytest.approx(3.873, abs=1e-3)
    assert ours == f'+5.00 ± {100 * math.sqrt(0.0005 / 3):.2f} (se)'
    assert verdict == 'within noise'  # p = 0.061: five points, yet three seeds a side cannot tell


@pytest.mark.exercise('welch')
def test_seeds_to_settle_from_the_seeds_sd_is_cohen_s_table(tmp_path):
    """Three seeds of each rate. lr 0.01: 86, 87, 88% (sd 1 point); lr 0.1: 85, 86, 87% (sd 1);
    lr 0.001: 86.5, 87.5, 88.5% (sd 1). Both within noise: Welch t = 1 / √(2/3) = 1.22, df 4,
    p = 0.29; and t = -0.5 / √(2/3) = -0.61, p = 0.57. Their seeds measure the spread, so no floor:
    lr 0.1's margin is d = 1 / 1 = 1 sd, which Cohen's (1988) Table 2.4.1 prints as 17 a setting
    for power 0.80 at two-sided 0.05; lr 0.001's is d = 0.5, which it prints as 64: past the cap."""
    for lr, accs in (('0.01', (0.86, 0.87, 0.88)), ('0.1', (0.85, 0.86, 0.87)), ('0.001', (0.865, 0.875, 0.885))):
        for seed, acc in enumerate(accs):
            write_run(tmp_path / f'runs/lr-sweep/lr{lr}/seed{seed}', {'lr': float(lr), 'seed': seed}, (acc,))
    tables = tables_of(tmp_path / 'runs', tmp_path)
    assert [conclusions(tables)[LR_CLAIM, rival][-1] for rival in ('lr 0.1', 'lr 0.001')] == ['within noise'] * 2
    rows, _ = settling(tables)
    assert rows['lr 0.01 against lr 0.1'][2] == '17 a setting'
    assert rows['lr 0.01 against lr 0.001'][2] == 'about 64 a setting, past the cap of 20'
    assert rows['cosine against constant'][2] == 'at least 6 a setting: training noise adds'  # no runs: the report's


@pytest.mark.exercise('welch')
def test_holm_s_correction_across_our_comparisons(tmp_path):
    """Two seeds a setting, each pair 2 points apart (sd √2 points, sem 1): lr 0.01 at 86, 88%;
    lr 0.1 at 78, 80%; lr 0.001 at 79, 81%. Welch's se = √(1² + 1²) = √2 points and df =
    (2)² / (1 + 1) = 2, where the t table has a closed form, p = 1 - |t| / √(2 + t²):
        lr 0.1:   t = 8 / √2, t² = 32,   p = 1 - √(32 / 34)   = 0.0299
        lr 0.001: t = 7 / √2, t² = 24.5, p = 1 - √(24.5 / 26.5) = 0.0385
    Each alone is below 0.05: reproduced. As a family of two, Holm holds the smaller to 0.05 / 2 =
    0.025, which 0.0299 is not below, and stops: both within noise, though 0.0385 < 0.05 / 1."""
    for lr, accs in (('0.01', (0.86, 0.88)), ('0.1', (0.78, 0.80)), ('0.001', (0.79, 0.81))):
        for seed, acc in enumerate(accs):
            write_run(tmp_path / f'runs/lr-sweep/lr{lr}/seed{seed}', {'lr': float(lr), 'seed': seed}, (acc,))
    tables = tables_of(tmp_path / 'runs', tmp_path)
    assert [conclusions(tables)[LR_CLAIM, rival][-1] for rival in ('lr 0.1', 'lr 0.001')] == ['reproduced'] * 2
    rows, under = settling(tables)
    assert rows['lr 0.01 against lr 0.1'][1] == 'within noise: p = 0.030, not below 0.05/2 = 0.0250'
    assert rows['lr 0.01 against lr 0.001'][1] == ('within noise: p = 0.038, below 0.05/1 = 0.0500, '
                                                   'but a smaller p was not below its own')
    assert rows['lr 0.01 against lr 0.1'][2] == ''  # reproduced, alone: nothing to settle
    assert rows['cosine against constant'][1] == ''  # not run: not of the family
    assert 1 - math.sqrt(32 / 34) == pytest.approx(0.0299, abs=1e-4) and t_p(math.sqrt(32), 2) == pytest.approx(1 - math.sqrt(32 / 34))
    assert ('Of the 2 with a test of ours, about 2 × 0.05 = 0.10 would be beyond noise by chance alone at '
            'α 0.05, were no setting better than another: 2 are at p < 0.05, and 0 stay beyond noise') in under


def test_figure_10_draws_95_percent_intervals_by_student_s_t_for_seeds(tmp_path):
    """Three seeds of lr 0.01 at 86, 87 and 88%: mean 87, sd 1, sem 1/sqrt(3) = 0.577 points. With
    3 seeds the 95% interval is t(2) = 4.303 sem (the printed t table), 2.48 points, not 1.96 sem
    (1.13). One run of lr 0.1 at 80% on 10,000 images keeps 1.96 binomial se: 1.96 * 0.40 = 0.78."""
    for seed, acc in enumerate((0.86, 0.87, 0.88)):
        write_run(tmp_path / f'runs/lr-sweep/lr0.01/seed{seed}', {'seed': seed}, (acc,))
    write_run(tmp_path / 'runs/lr-sweep/lr0.1/seed0', {'lr': 0.1}, (0.80,))
    panels = report.noise_panels(STUDY, collect(str(tmp_path / 'runs'), STUDY))
    fig = figures.noise(10, panels)
    lr_panel = next(ax for ax in fig.axes if ax.get_title().startswith('Learning rate'))
    bars = {}  # (x, y) of each of our points: the half-length of its error bar
    for container in lr_panel.containers:
        (x, y), = container.lines[0].get_xydata()
        (low, high), = [segment[:, 1] for segment in container.lines[2][0].get_segments()]
        bars[round(x, 2), round(y, 2)] = (high - low) / 2
    assert bars[1.12, 87.00] == pytest.approx(4.303 * 100 / math.sqrt(3) / 100, abs=2e-3)
    assert bars[0.12, 80.00] == pytest.approx(1.96 * 100 * binomial_se(0.80, 10_000), abs=2e-3)
    assert 't(k − 1) sem' in ' '.join(t.get_text() for t in fig.legends[0].get_texts())
    plt.close(fig)


def test_a_diverged_run_is_shown_as_diverged_and_compared_with_nothing(tmp_path):
    """lr 0.1's run diverged at its second epoch: its row says so and shows none of its numbers,
    and the verdict on lr 0.01 against it says that, rather than compare nan."""
    write_run(tmp_path / 'runs/lr-sweep/lr0.1/seed0', {'lr': 0.1}, val_accs=(0.3, 0.1), summary='diverged')
    write_run(tmp_path / 'runs/lr-sweep/lr0.01/seed0', val_accs=(0.5, 0.6))
    tables = tables_of(tmp_path / 'runs', tmp_path)
    cells = row(tables, 'lr 0.1', 'ours')
    assert cells[1] == 'ours (diverged at epoch 2)' and cells[4:] == [''] * 6
    assert conclusions(tables)[LR_CLAIM, 'lr 0.1'][-1] == 'lr 0.1 diverged'
    assert conclusions(tables)[LR_CLAIM, 'lr 0.1'][2:4] == ['', '']  # no margin, no test


def test_conclusions_from_the_report_s_numbers_alone(tmp_path, capsys):
    """With no runs at all: which of the report's margins exceed the noise of one run, for every
    comparison of every claim in study.toml, each worked out here from its two accuracies:
    z = (a - b) / sqrt(a(1 - a)/n + b(1 - b)/n), n = 10,000, beyond noise when P(|Z| > |z|) < 0.05.
    By hand, scale (0.02, 0.33) against (0.33, 0.67): 94.62 - 92.87 = 1.75 points over 0.34, z = 5.1,
    beyond; cosine against constant: 0.54 points over 0.38, z = 1.42, p = 0.155, within."""
    tables = tables_of(tmp_path / 'no-runs', tmp_path)
    assert '## Conclusions' in capsys.readouterr().out  # printed, not only written
    rows = conclusions(tables)
    pairs = [(claim.text, rival) for claim in STUDY.claims for rival in claim.rivals]
    assert len(rows) == len(pairs) == 11
    for text, rival in pairs:
        claim = next(c for c in STUDY.claims if c.text == text)
        a, b = claim.winner.setting.report['val_acc'], rival.setting.report['val_acc']
        z = (a - b) / math.sqrt(a * (1 - a) / 10_000 + b * (1 - b) / 10_000)
        margin, noise, ours, test, verdict = rows[text, rival.label]
        assert noise.split(',')[0] == ('yes' if math.erfc(abs(z) / math.sqrt(2)) < 0.05 else 'no'), (text, rival.label)
        assert verdict == 'not run yet' and ours == test == '', (text, rival.label)
    se = math.hypot(binomial_se(0.9462, 10_000), binomial_se(0.9287, 10_000))
    scale = rows['scale (0.02, 0.33) is the best erased area', 'scale (0.33, 0.67)']
    assert scale[0] == f'+1.75 ± {100 * se:.2f} (se)' and scale[1] == 'yes, p < 0.001'
    assert rows['cosine annealing beats a constant rate', 'constant'][1] == 'no, p = 0.155'


def test_the_report_s_margins_within_noise_and_the_seeds_that_would_settle_them(tmp_path):
    """The report's numbers, one run each, on 10,000 images: a seed's spread is at least the
    binomial se, pooled over the two settings, sd = √((a(1 - a) + b(1 - b)) / 2 / 10,000).

    p 0.5 against p 0.8: 94.74 - 94.64 = 0.10 points. sd = √((0.9474 × 0.0526 + 0.9464 × 0.0536) / 2
    / 10⁴) = √(5.028e-6) = 0.2242 points, so d = 0.10 / 0.2242 = 0.446. Guenther's formula (stats):
    2 (1.95996 + 0.84162)² / 0.446² + 1.95996² / 4 = 2 × 7.8489 / 0.19889 + 0.9604 = 78.93 + 0.96
    = 79.89, so about 80 seeds a setting, at least. At the cap, 20 seeds, the power is far short:
    the margin is d √(20 / 2) = 1.41 standard errors, t_critical(38) = 2.024 of them needed, and
    Φ(1.41 - 2.02) = Φ(-0.61) = 0.27 (exactly, with the noncentral t: 0.28).

    scale (0.02, 0.33) against (0.17, 0.5): 94.62 - 94.33 = 0.29 points. sd = √((0.9462 × 0.0538 +
    0.9433 × 0.0567) / 2 / 10⁴) = 0.2285 points, d = 1.269. Guenther: 2 × 7.8489 / 1.6113 + 0.96 =
    10.70, so 11. By the power at 10 and 11 seeds, as above: d √5 = 2.838 against t_critical(18)
    = 2.101, Φ(0.737) = 0.770; d √5.5 = 2.977 against t_critical(20) = 2.086, Φ(0.891) = 0.813:
    11 is the first past 0.80 (exactly 0.766 and 0.808).

    Holm across the 11: the report's five margins beyond noise have the five smallest p. The
    fifth, wd 1e-2 against 5e-4, z = 0.94 / √(0.9451 × 0.0549 + 0.9357 × 0.0643) × 100 = 0.94 /
    0.3347 = 2.808, p = 0.0050, is held to 0.05 / (11 - 4) = 0.0071: beyond noise still. The sixth,
    cosine against constant, p = 0.155 against 0.05 / 6 = 0.0083: within. Chance alone would pass
    about 11 × 0.05 = 0.55 of them."""
    rows, under = settling(tables_of(tmp_path / 'no-runs', tmp_path))
    assert len(rows) == 11
    assert rows['p 0.5 against p 0.8'][2] == 'at least about 80 a setting, past the cap of 20: training noise adds'
    assert rows['scale (0.02, 0.33) against scale (0.17, 0.5)'][2] == 'at least 11 a setting: training noise adds'
    sd = math.sqrt((0.9474 * 0.0526 + 0.9464 * 0.0536) / 2 / 10_000)
    assert sd == pytest.approx(0.002242, abs=1e-6) and stats.t_test_power(0.001, sd, 20) == pytest.approx(0.28, abs=0.005)
    sd = math.sqrt((0.9462 * 0.0538 + 0.9433 * 0.0567) / 2 / 10_000)
    assert stats.t_test_power(0.0029, sd, 10) < 0.8 < stats.t_test_power(0.0029, sd, 11)
    beyond = {'lr 0.01 against lr 0.1', 'lr 0.01 against lr 0.001', 'wd 1e-2 against wd 5e-4',
              'p 1.0 against no erasing (wd 5e-4)', 'scale (0.02, 0.33) against scale (0.33, 0.67)'}
    for comparison, (theirs, ours, seeds) in rows.items():
        assert theirs.startswith('beyond noise: ' if comparison in beyond else 'within noise: '), comparison
        assert ours == '' and (seeds == '') == (comparison in beyond), comparison
    assert rows['wd 1e-2 against wd 5e-4'][0] == 'beyond noise: p = 0.005, below 0.05/7 = 0.0071'
    assert rows['cosine against constant'][0] == 'within noise: p = 0.155, not below 0.05/6 = 0.0083'
    assert under.startswith('Of these 11 comparisons, by the report\'s numbers, about 11 × 0.05 = 0.55 would be beyond '
                            'noise by chance alone at α 0.05, were no setting better than another: 5 are at p < 0.05, '
                            'and 5 stay beyond noise with Holm\'s correction')
    assert under.endswith('None has a test of ours yet.')


@pytest.mark.exercise('balanced_split')
def test_table1_counts_each_class_of_the_split(tmp_path, cifar_root):
    """The fake data set has 25 training images of each class; a fifth of each is held out: 20
    and 5 of each, a tenth of each split. Every table says how its uncertainties are computed."""
    tables = tables_of(tmp_path / 'no-runs', tmp_path, data_dir=cifar_root)
    assert '| airplane | 20 | 10.0 | 5 | 10.0 |' in tables and '| total | 200 | 100.0 | 50 | 100.0 |' in tables
    assert tables.count(UNCERTAINTY_RULE) == 6  # under Tables 2-7


# ---------------------------------------------------------------------------------------------
# A small study run for real by make (slow): the figures.


# What the small study below needs of the handout's exercises: runs of ResNet-18, Figures 1 and 3, Welch on two seeds.
STUDY_EXERCISES = pytest.mark.exercise(*A_RUN, 'BasicBlock.forward', 'cosine_lr', 'welch')


@pytest.fixture(scope='module')
def study(cifar_root, tmp_path_factory):
    """The lr sweep with two seeds, run for real by make; and an unfinished run of `schedule`."""
    runs = tmp_path_factory.mktemp('study') / 'runs'
    args = f'ARGS=--epochs 2 --train-subset 20 --eval-subset 10 --device cpu --data-dir {cifar_root}'
    # Three runs at once, one thread each: on a 2-core machine they would otherwise fight over the
    # cores and take twice as long (41 s against 23 s, measured on the 2-core development machine).
    made = subprocess.run([*MAKE, '-j3', 'lr-sweep', f'RUNS={runs}', 'SEEDS=0 1', args],
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


@pytest.mark.slow
@STUDY_EXERCISES
def test_each_figure_with_runs_is_written_as_png(study):
    _, out, stdout = study
    for name in ['figure1_first_batch.png', 'figure2_lr-sweep.png', 'figure3_cosine.png', 'figure4_schedule.png',
                 'figure10_noise.png']:
        content = (out / name).read_bytes()
        assert content[:8] == b'\x89PNG\r\n\x1a\n' and len(content) > 10000, name
    assert not (out / 'figure5_wd.png').exists()


@pytest.mark.slow
@STUDY_EXERCISES
def test_tables_only_writes_no_figure(study, cifar_root, tmp_path):
    runs, _, _ = study
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'report.py'), '--tables', '--runs', str(runs),
                             '--out', str(tmp_path), '--data-dir', cifar_root], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ['tables.md']


@pytest.mark.slow
@STUDY_EXERCISES
def test_a_one_column_figure_s_title_fits(study):
    """Seen in the lr sweep with one setting run: the figure's title was cut at its edges."""
    runs, _, _ = study
    experiment = STUDY.experiments[0]
    found_runs = collect(str(runs), STUDY)[experiment.settings[0].key].runs
    fig = figures.curves(experiment.figure, experiment.title, [(experiment.settings[0].label, found_runs, '')])
    fig.canvas.draw()
    renderer, edges = fig.canvas.get_renderer(), fig.bbox
    title = f'Figure {experiment.figure}: {experiment.title}'
    box = next(t for t in fig.texts if t.get_text() == title).get_window_extent(renderer)
    assert edges.x0 <= box.x0 and box.x1 <= edges.x1 and box.y1 <= edges.y1
    one_line = fig.text(0, 0, title).get_window_extent(renderer)
    assert one_line.width > edges.width  # unwrapped, it would not have fitted
    plt.close(fig)


@pytest.mark.slow
@STUDY_EXERCISES
def test_the_tables_hold_what_train_py_wrote(study):
    """The same numbers, from runs train.py made: two seeds of each rate, and one unfinished run."""
    runs, out, _ = study
    tables = (out / 'tables.md').read_text()
    accs = [json.loads((runs / f'lr-sweep/lr0.1/seed{s}/metrics.jsonl').read_text().splitlines()[-1])['val_acc']
            for s in (0, 1)]
    mean, sd = statistics.fmean(accs), statistics.stdev(accs)
    assert row(tables, 'lr 0.1', 'ours')[7] == f'{100 * mean:.2f} ± {100 * sd:.2f} (sd; sem {100 * sd / math.sqrt(2):.2f})'
    assert row(tables, 'constant', 'ours')[1].startswith('ours (in progress: epoch 1/2; ')
