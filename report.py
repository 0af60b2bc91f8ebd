"""The report's tables and figures, regenerated from the runs, beside the report's numbers.

    python report.py                      # everything: figures/*.png and figures/tables.md
    python report.py --tables             # only figures/tables.md (make tables)
    python report.py --figures            # only the PNG files (make figures)

Made only from what the runs wrote under --runs (config.json, metrics.jsonl, summary.json), laid
out as the Makefile lays them out: RUNS/EXPERIMENT/SETTING/seedN/. A setting is matched to the
report's by the flags in its config.json, not by its folder name; when a setting has several
seeds, tables give mean and standard deviation and curves the mean with a band of one
standard deviation. A setting with no run is skipped, with a line saying which. A run still in
progress is shown up to its last finished epoch and marked so. Figure 1 and Table 1 need the
data set itself (--data-dir) and are made from the split of --seed, as train.py makes it.

  Figure 1   the first batch of the training split, 128 images, 16 to a row, with class names
  Table 1    images per class in the training and validation splits
  Figure 2   loss (top) and accuracy (bottom) against epoch, training and validation, per lr
  Figure 3   the cosine learning rate over 300 epochs, from schedule.py
  Figures 4-9, Tables 2-7   the other experiments, as Figure 2, and their final numbers
  Conclusions   each claim of the report: its margin, ours, and whether either is beyond noise
  Figure 10  every setting's final validation accuracy with its error bar, the report's beside it

Every accuracy is shown with its uncertainty (stats.py): one run's binomial standard error, or
over several seeds their standard deviation and the standard error of their mean.
"""
import argparse
import json
import math
import os
import statistics

import matplotlib
matplotlib.use('Agg')  # files only: no window, no display needed
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

import torch

from data import CLASSES, DataError, class_table, load_cifar10, split_for
from schedule import cosine_lr
from stats import ALPHA, binomial_se, mcnemar_p, mean_sd_sem, normal_p, welch

HERE = os.path.dirname(os.path.abspath(__file__))
# (figure, table, experiment, the experiments whose runs the table shows, the knob it turns, title).
# The erasing tables start with the run of `erase` (p 1.0), the setting each one changes a knob of.
EXPERIMENTS = [
    (2, 2, 'lr-sweep', ['lr-sweep'], 'lr', 'Learning rate (15 epochs, constant, no weight decay)'),
    (4, 3, 'schedule', ['schedule'], 'cosine', 'Constant against cosine annealing (lr 0.01)'),
    (5, 4, 'wd', ['wd'], 'wd', 'Weight decay (lr 0.01, cosine)'),
    (6, None, 'erase', ['erase'], 'erase_p', 'Random erasing (lr 0.01, cosine, wd 5e-4)'),
    (7, 5, 'erase-p', ['erase', 'erase-p'], 'erase_p', 'Erasing probability p'),
    (8, 6, 'erase-scale', ['erase', 'erase-scale'], 'erase_scale', 'Erased area fraction (scale)'),
    (9, 7, 'erase-ratio', ['erase', 'erase-ratio'], 'erase_ratio', 'Erased aspect ratio (ratio)'),
]
BASELINE = {'cosine': False, 'wd': 0.0, 'erase_p': 0.0, 'erase_scale': [0.02, 0.33], 'erase_ratio': [0.3, 3.3]}
METRICS = ['train_loss', 'train_acc', 'val_loss', 'val_acc', 'test_loss', 'test_acc']
HELD_OUT = ('val_acc', 'test_acc')  # accuracies on images never trained on, shown with their uncertainty
REPORT_IMAGES = 10_000  # the report's validation set, and its test set
UNCERTAINTY_RULE = ('Validation and test accuracy: one run ± its binomial standard error √(p(1−p)/n) on its n images '
                    '(the report\'s: n = 10,000); several seeds: mean ± their standard deviation, and the standard error '
                    'of the mean (sem = sd/√seeds). Other columns: mean ± standard deviation over seeds.')
# The report's claims, in its order: (the claim, its winner, the settings the winner beats). The
# winner is (its experiment, the flags that pick its row among that experiment's); each setting
# it beats is the same with its name in front.
CLAIMS = [
    ('lr 0.01 is the best of three rates at 15 epochs', ('lr-sweep', {'lr': 0.01}),
     [('lr 0.1', 'lr-sweep', {'lr': 0.1}), ('lr 0.001', 'lr-sweep', {'lr': 0.001})]),
    ('cosine annealing beats a constant rate', ('schedule', {'cosine': True}),
     [('constant', 'schedule', {'cosine': False})]),
    ('wd 1e-2 beats 5e-4 (its table; its text says 5e-4)', ('wd', {'wd': 0.01}),
     [('wd 5e-4', 'wd', {'wd': 0.0005})]),
    ('random erasing (p 1.0) beats none', ('erase', {}),
     [('no erasing (wd 5e-4)', 'wd', {'wd': 0.0005})]),
    ('p 0.5 is the best erasing probability', ('erase-p', {'erase_p': 0.5}),
     [('p 0.8', 'erase-p', {'erase_p': 0.8}), ('p 1.0', 'erase', {})]),
    ('scale (0.02, 0.33) is the best erased area', ('erase', {}),
     [('scale (0.17, 0.5)', 'erase-scale', {'erase_scale': [0.17, 0.5]}),
      ('scale (0.33, 0.67)', 'erase-scale', {'erase_scale': [0.33, 0.67]})]),
    ('ratio (0.2, 5.0) is the best aspect ratio', ('erase-ratio', {'erase_ratio': [0.2, 5.0]}),
     [('ratio (0.9, 1.1)', 'erase-ratio', {'erase_ratio': [0.9, 1.1]}), ('ratio (0.3, 3.3)', 'erase', {})]),
]
CONCLUSIONS_RULES = f"""\
Δ: the final validation accuracy of the claim's winner minus that of the setting in "against", in points, ± its \
standard error. A difference is beyond noise when noise alone would make one as large less often than \
{ALPHA:.0%} of the time (two-sided p < {ALPHA}). A claim that a setting is the best holds only against every rival.

- **The report** ran each setting once and gives only its numbers: z = Δ / √(se₁² + se₂²), each se the binomial \
standard error on its 10,000 validation images.
- **Ours**: McNemar's exact test when each setting has one finished run on the same validation images (the same \
--seed and --eval-subset), on the images exactly one of the two gets right (Dietterich 1998); Welch's t-test over \
the seeds when both have two or more; otherwise z, as for the report.
- **What each leaves out.** The binomial standard error and McNemar's test see only the luck of which images are \
in the validation set, not the randomness of training itself (initial weights, data order, augmentation): two \
seeds of one setting differ by more than they allow. Only several seeds see that (`make study SEEDS='0 1 2'`).
- **Verdicts**: *reproduced* (ours is beyond noise, the same way), *reversed* (beyond noise, the other way), \
*within noise*, *not run yet* (no finished run of one of the two)."""
REPORT_STYLE = dict(marker='D', color='black')
OURS_STYLE = dict(marker='o', color='tab:blue')


def read_run(folder):
    """One run's files: config, metrics rows, and summary (None while it is still running)."""
    def load(name, lines=False):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()] if lines else json.load(f)
    run = {'folder': folder, 'config': load('config.json'), 'metrics': load('metrics.jsonl', lines=True),
           'summary': load('summary.json')}
    return run if run['config'] and run['metrics'] else None


def runs_by_setting(runs_dir, experiment):
    """{setting folder: [runs of its seeds]} for one experiment."""
    settings = {}
    top = os.path.join(runs_dir, experiment)
    for setting in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        seeds = [read_run(os.path.join(top, setting, s)) for s in sorted(os.listdir(os.path.join(top, setting)))]
        if any(seeds):
            settings[os.path.join(top, setting)] = [r for r in seeds if r]
    return settings


def matches(report_setting, flags):
    """Whether a run's flags are the report's setting; epochs aside, so that short runs made
    with ARGS='--epochs 2' still find their place."""
    wanted = BASELINE | {k: v for k, v in report_setting.items() if k != 'epochs'}
    return all(flags.get(k) == v for k, v in wanted.items())


def describe(setting, knob):
    """A setting named by the knob its experiment turns: 'lr 0.1', 'cosine', 'scale (0.17, 0.5)'."""
    if knob == 'cosine':
        return 'cosine' if setting['cosine'] else 'constant'
    value = setting[knob]
    return f'{knob.replace("erase_", "")} {tuple(value) if isinstance(value, list) else value}'


def collect(runs_dir, report):
    """For each experiment of the report: [(report row, its runs or [])], in the report's order."""
    found = {}
    for _, _, experiment, _, knob, _ in EXPERIMENTS:
        settings = runs_by_setting(runs_dir, experiment)
        rows = []
        for row in (r for r in report['runs'] if r['experiment'] == experiment):
            runs = next((runs for runs in settings.values() if matches(row['setting'], runs[0]['config']['flags'])), [])
            if not runs:
                print(f'skipped: {experiment}, {describe(row["setting"], knob)}: no run in {os.path.join(runs_dir, experiment)}/')
            rows.append((row, runs))
        found[experiment] = rows
    return found


def final(run):
    """A run's final numbers: its last epoch's line, and the test numbers once it has finished."""
    last, summary = run['metrics'][-1], run['summary'] or {}
    return {k: summary.get(k) if k.startswith('test') else last[k] for k in METRICS}


def progress(runs):
    """'' for finished runs, else a note of how far the unfinished ones have got."""
    notes = [f'{len(r["metrics"])}/{r["config"]["flags"]["epochs"]}' for r in runs if not r['summary']]
    return f' (in progress: epoch {", ".join(notes)})' if notes else ''


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def cell(value, spread=None, percent=False, signed=False):
    if value is None:
        return ''
    scale, digits = (100, 2) if percent else (1, 4)
    text = f'{scale * value:{"+" if signed else ""}.{digits}f}'
    return text + (f' ± {scale * spread:.{digits}f}' if spread is not None else '')


def accuracy(runs, split):
    """Our final accuracy on 'val' or 'test' over the runs of one setting, as (mean, se, sd).
    One run: its binomial standard error on the images it was measured on, and no sd. Several
    seeds: their standard deviation, and the standard error of their mean. None before any has one."""
    values = [v for v in (final(r)[f'{split}_acc'] for r in runs) if v is not None]
    if len(values) > 1:
        mean, sd, sem = mean_sd_sem(values)
        return mean, sem, sd
    return (values[0], binomial_se(values[0], runs[0]['config']['sizes'][split]), None) if values else None


def report_accuracy(row, split):
    """The report's accuracy as (mean, se, sd): one run, on its 10,000 validation or test images."""
    acc = row[f'{split}_acc']
    return None if acc is None else (acc / 100, binomial_se(acc / 100, REPORT_IMAGES), None)


def accuracy_cell(estimate):
    if estimate is None:
        return ''
    mean, se, sd = estimate
    return f'{100 * mean:.2f} ± {100 * se:.2f}' if sd is None else f'{100 * mean:.2f} ± {100 * sd:.2f} (sem {100 * se:.2f})'


def results_table(number, title, rows, knob):
    """Table N: for each setting our final numbers, the report's, and the difference."""
    lines = [f'## Table {number}: {title}', '',
             '| setting | | epochs | seeds | train loss | train acc % | val loss | val acc % | test loss | test acc % |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for row, runs in rows:
        name = describe(row['setting'], knob)
        report = {k: row[k] / 100 if k.endswith('acc') and row[k] is not None else row[k] for k in METRICS}
        lines.append(f'| {name} | report | {row["setting"]["epochs"]} | 1 | ' + ' | '.join(
            accuracy_cell(report_accuracy(row, k[:-4])) if k in HELD_OUT else cell(report[k], percent=k.endswith('acc'))
            for k in METRICS) + ' |')
        if not runs:
            lines.append(f'| {name} | ours | | 0 | no run |' + ' |' * 5)
            continue
        ours = {k: mean_std([final(r)[k] for r in runs]) for k in METRICS}
        epochs = ', '.join(sorted({str(len(r['metrics'])) for r in runs}))
        lines.append(f'| {name} | ours{progress(runs)} | {epochs} | {len(runs)} | ' + ' | '.join(
            accuracy_cell(accuracy(runs, k[:-4])) if k in HELD_OUT else cell(*ours[k], percent=k.endswith('acc'))
            for k in METRICS) + ' |')
        lines.append(f'| {name} | difference | | | ' + ' | '.join(
            cell(ours[k][0] - report[k], percent=k.endswith('acc'), signed=True)
            if ours[k][0] is not None and report[k] is not None else '' for k in METRICS) + ' |')
    lines += ['', UNCERTAINTY_RULE]
    return '\n'.join(lines)


def curve(runs, key):
    """Mean and standard deviation over seeds of one metric per epoch, up to the shortest run."""
    n = min(len(r['metrics']) for r in runs)
    columns = [[r['metrics'][e][key] for r in runs] for e in range(n)]
    return list(range(1, n + 1)), [statistics.fmean(c) for c in columns], \
        [statistics.stdev(c) if len(c) > 1 else 0.0 for c in columns]


def curves_figure(number, title, rows, knob):
    """Loss (top) and accuracy (bottom) against epoch, training and validation, a column per setting."""
    rows = [(row, runs) for row, runs in rows if runs]
    fig, axes = plt.subplots(2, len(rows), figsize=(4.2 * len(rows), 6.5), squeeze=False)
    for ax in axes[1, 1:]:  # accuracies on one scale, to compare; losses each on its own, as a
        ax.sharey(axes[1, 0])  # diverging run's loss would flatten the others
    for col, (row, runs) in enumerate(rows):
        for split, color in (('train', 'tab:blue'), ('val', 'tab:orange')):
            for r, (metric, scale) in enumerate((('loss', 1), ('acc', 100))):
                epochs, mean, std = curve(runs, f'{split}_{metric}')
                mean, std = [scale * m for m in mean], [scale * s for s in std]
                ax = axes[r, col]
                ax.plot(epochs, mean, color=color, label={'train': 'training', 'val': 'validation'}[split])
                if len(runs) > 1:
                    ax.fill_between(epochs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                    color=color, alpha=0.25, linewidth=0)
        seeds = f', {len(runs)} seeds' if len(runs) > 1 else ''
        axes[0, col].set_title(describe(row['setting'], knob) + seeds + progress(runs), fontsize=9, wrap=True)
        axes[1, col].set_xlabel('epoch')
    axes[0, 0].set_ylabel('loss')
    axes[1, 0].set_ylabel('accuracy (%)')
    axes[0, 0].legend()
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f'Figure {number}: {title}', wrap=True)  # wrapped to the figure's width, however few columns
    fig.tight_layout()
    return fig


def cosine_figure(epochs=300, lr=0.01):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(epochs), [cosine_lr(e, epochs, lr) for e in range(epochs)], label='cosine annealing')
    ax.plot(range(epochs), [lr] * epochs, '--', label='constant')
    ax.set(xlabel='epoch', ylabel='learning rate')
    ax.set_title(f'Figure 3: cosine annealing from {lr} over {epochs} epochs', wrap=True)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def first_batch_figure(images, labels, columns=16):
    """Figure 1: the images of the first training batch with their class names."""
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.05))
    for ax in axes.flat:
        ax.axis('off')
    for ax, image, label in zip(axes.flat, images, labels):
        ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(CLASSES[int(label)], fontsize=7, pad=2)
    fig.suptitle(f'Figure 1: the first batch of the training set ({len(images)} images)', wrap=True)
    fig.tight_layout()
    return fig


def save(fig, path):
    fig.savefig(path, dpi=110)
    plt.close(fig)


def find(found, experiment, flags):
    """(the report's row, our runs) of the setting of `experiment` whose flags include `flags`."""
    return next((row, runs) for row, runs in found[experiment]
                if all(row['setting'].get(k, BASELINE.get(k)) == v for k, v in flags.items()))


def predictions(run):
    """The validation predictions a finished run saved (train.py's predictions.pt), or None."""
    path = os.path.join(run['folder'], 'predictions.pt')
    return torch.load(path, weights_only=True)['val'] if os.path.exists(path) else None


def same_images(a, b):
    """Whether two runs' predictions are of the same images: same indices, same labels, same order."""
    return a is not None and b is not None and torch.equal(a['index'], b['index']) and torch.equal(a['label'], b['label'])


def report_margin(row_a, row_b):
    """The report's validation accuracy of a minus b's: (difference, its standard error, p). One run
    each and no predictions, so the only rule left: z = difference / sqrt(se_a^2 + se_b^2)."""
    (mean_a, se_a, _), (mean_b, se_b, _) = report_accuracy(row_a, 'val'), report_accuracy(row_b, 'val')
    se = math.hypot(se_a, se_b)
    return mean_a - mean_b, se, normal_p((mean_a - mean_b) / se)


def our_margin(a, b):
    """Our final validation accuracy of a minus b's, from their finished runs: (difference, its
    standard error, p, the test that gave p), or None while either has none. The test, in order:
    one run each on the same images: McNemar's exact test on the images exactly one gets right;
    two seeds or more each: Welch's t over the seeds; otherwise: z as for the report."""
    if not a or not b:
        return None
    pa, pb = (predictions(a[0]), predictions(b[0])) if len(a) == len(b) == 1 else (None, None)
    if same_images(pa, pb):
        right_a, right_b = pa['pred'] == pa['label'], pb['pred'] == pb['label']
        only_a, only_b, n = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum()), len(right_a)
        se = math.sqrt(only_a + only_b - (only_a - only_b) ** 2 / n) / n  # of the mean of +1/0/-1 per image
        return (only_a - only_b) / n, se, mcnemar_p(only_a, only_b), f'McNemar, {only_a} against {only_b} images'
    (mean_a, se_a, _), (mean_b, se_b, _) = accuracy(a, 'val'), accuracy(b, 'val')
    if len(a) > 1 and len(b) > 1:
        t, df, p = welch(mean_a, se_a, len(a), mean_b, se_b, len(b))
        return mean_a - mean_b, math.hypot(se_a, se_b), p, f'Welch t {t:.1f}, df {df}, {len(a)} and {len(b)} seeds'
    se = math.hypot(se_a, se_b)
    if se:
        z = (mean_a - mean_b) / se
    else:  # both accuracies exactly 0 or 1: nothing to measure the difference against
        z = 0.0 if mean_a == mean_b else math.copysign(math.inf, mean_a - mean_b)
    why = 'not the same images' if len(a) == len(b) == 1 else 'seeds on one side only'
    return mean_a - mean_b, se, normal_p(z), f'z {z:.1f} ({why})'


def verdict(margin):
    """What our runs say of a claim whose winner is the first setting."""
    if margin is None:
        return 'not run yet'
    difference, _, p, _ = margin
    return 'within noise' if p >= ALPHA else 'reproduced' if difference > 0 else 'reversed'


def points(difference, se):
    return f'{100 * difference:+.2f} ± {100 * se:.2f}'


def p_text(p):
    return 'p < 0.001' if p < 0.001 else f'p = {p:.3f}'


def conclusions(found):
    """The Conclusions section: for each claim of the report and each setting it says its winner
    beats, the report's margin and whether it is beyond noise, ours, and the verdict."""
    finished = lambda runs: [r for r in runs if r['summary']]
    lines = ['## Conclusions: which of the report\'s claims survive the noise', '',
             '| the report\'s claim | against | report: Δ val acc | beyond one run\'s noise? | '
             'ours: Δ val acc | our test | verdict |',
             '|---|---|---:|---|---:|---|---|']
    for claim, winner, rivals in CLAIMS:
        winner_row, winner_runs = find(found, *winner)
        for i, (label, *rival) in enumerate(rivals):
            rival_row, rival_runs = find(found, *rival)
            difference, se, p = report_margin(winner_row, rival_row)
            ours = our_margin(finished(winner_runs), finished(rival_runs))
            test = f'{ours[3]}: {p_text(ours[2])}' if ours else ''
            epochs = sorted({len(r['metrics']) for r in finished(winner_runs) + finished(rival_runs)})
            if ours and epochs != [winner_row['setting']['epochs']]:  # short runs say so
                test += f'; {", ".join(map(str, epochs))} epochs, not {winner_row["setting"]["epochs"]}'
            lines.append(f'| {claim if i == 0 else ""} | {label} | {points(difference, se)} | '
                         f'{"yes" if p < ALPHA else "no"}, {p_text(p)} | {points(*ours[:2]) if ours else ""} | '
                         f'{test} | {verdict(ours)} |')
    return '\n'.join(lines + ['', CONCLUSIONS_RULES])


def noise_figure(found):
    """Figure 10: every setting's final validation accuracy with a 95% error bar, the report's
    beside ours, a panel per table. Where two bars overlap a lot, their difference is noise."""
    panels = [(title, knob, [r for e in experiments for r in found[e]])
              for _, table, _, experiments, knob, title in EXPERIMENTS if table]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8.5))
    for ax, (title, knob, rows) in zip(axes.flat, panels):
        for x, (row, runs) in enumerate(rows):
            for offset, estimate, style in ((-0.12, report_accuracy(row, 'val'), REPORT_STYLE),
                                            (0.12, accuracy(runs, 'val'), OURS_STYLE)):
                if estimate:
                    ax.errorbar(x + offset, 100 * estimate[0], yerr=100 * 1.96 * estimate[1], capsize=4, **style)
        ax.set_xticks(range(len(rows)), [describe(row['setting'], knob) for row, _ in rows], fontsize=8)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_title(title, fontsize=10, wrap=True)
        ax.grid(alpha=0.3, axis='y')
    for ax in axes[:, 0]:
        ax.set_ylabel('validation accuracy (%)')
    handles = [plt.Line2D([], [], linestyle='', **style) for style in (REPORT_STYLE, OURS_STYLE)]
    fig.legend(handles, ['the report: one run, ± 1.96 binomial se on 10,000 images',
                         'ours: one run, ± 1.96 binomial se; several seeds, ± 1.96 sem'],
               loc='lower center', ncol=2, frameon=False)
    fig.suptitle('Figure 10: final validation accuracy of every setting, with 95% error bars', wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', default='runs', help='folder of the runs (default: %(default)s)')
    parser.add_argument('--out', default='figures', help='folder for the PNG files and tables.md (default: %(default)s)')
    parser.add_argument('--data-dir', default='data', help='CIFAR-10, for Figure 1 and Table 1 (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='the split shown in Figure 1 and Table 1 (default: %(default)s)')
    parser.add_argument('--batch', type=int, default=128, help='images in Figure 1 (default: %(default)s)')
    only = parser.add_mutually_exclusive_group()
    only.add_argument('--tables', action='store_true', help='make only figures/tables.md')
    only.add_argument('--figures', action='store_true', help='make only the figures')
    args = parser.parse_args()
    tables, figures = not args.figures, not args.tables
    with open(os.path.join(HERE, 'report_results.json')) as f:
        report = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    written = []

    try:
        train_x, train_y, _, _ = load_cifar10(args.data_dir, download=False)
    except DataError as e:
        print(f'skipped: Figure 1 and Table 1: {e}')
        train_x = None
    sections = ['# The study, regenerated', '',
                f'From the runs in `{args.runs}/`; made by `python report.py`. Accuracies in %. '
                'The report\'s numbers are from its text (report_results.json).', '']
    if train_x is not None:
        train_idx, val_idx = split_for(train_y, args.seed)
        sections += [f'## Table 1: images per class (split seed {args.seed})', '', class_table(train_y, train_idx, val_idx), '']
        if figures:
            batch = train_idx[:args.batch]
            save(first_batch_figure(train_x[batch], train_y[batch]), os.path.join(args.out, 'figure1_first_batch.png'))
            written.append('figure1_first_batch.png')
    if figures:
        save(cosine_figure(), os.path.join(args.out, 'figure3_cosine.png'))
        written.append('figure3_cosine.png')

    found = collect(args.runs, report)
    for figure, table, experiment, table_experiments, knob, title in EXPERIMENTS:
        if figures and any(runs for _, runs in found[experiment]):
            name = f'figure{figure}_{experiment}.png'
            save(curves_figure(figure, title, found[experiment], knob), os.path.join(args.out, name))
            written.append(name)
        if table:
            rows = [r for e in table_experiments for r in found[e]]
            sections += [results_table(table, title, rows, knob), '']
    if figures:
        save(noise_figure(found), os.path.join(args.out, 'figure10_noise.png'))
        written.append('figure10_noise.png')
    if tables:
        sections += [conclusions(found), '']
        print('\n' + sections[-2] + '\n')  # the section a student should read first
        with open(os.path.join(args.out, 'tables.md'), 'w') as f:
            f.write('\n'.join(sections))
        written.append('tables.md')
    print(f'wrote {", ".join(written)} in {args.out}/')


if __name__ == '__main__':
    main()
