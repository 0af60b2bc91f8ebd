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

from data import CLASSES, DataError, class_table, load_cifar10, split_for
from schedule import cosine_lr

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


def results_table(number, title, rows, knob):
    """Table N: for each setting our final numbers, the report's, and the difference."""
    lines = [f'## Table {number}: {title}', '',
             '| setting | | epochs | seeds | train loss | train acc % | val loss | val acc % | test loss | test acc % |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for row, runs in rows:
        name = describe(row['setting'], knob)
        report = {k: row[k] / 100 if k.endswith('acc') and row[k] is not None else row[k] for k in METRICS}
        lines.append(f'| {name} | report | {row["setting"]["epochs"]} | 1 | ' +
                     ' | '.join(cell(report[k], percent=k.endswith('acc')) for k in METRICS) + ' |')
        if not runs:
            lines.append(f'| {name} | ours | | 0 | no run |' + ' |' * 5)
            continue
        ours = {k: mean_std([final(r)[k] for r in runs]) for k in METRICS}
        epochs = ', '.join(sorted({str(len(r['metrics'])) for r in runs}))
        lines.append(f'| {name} | ours{progress(runs)} | {epochs} | {len(runs)} | ' +
                     ' | '.join(cell(*ours[k], percent=k.endswith('acc')) for k in METRICS) + ' |')
        lines.append(f'| {name} | difference | | | ' + ' | '.join(
            cell(ours[k][0] - report[k], percent=k.endswith('acc'), signed=True)
            if ours[k][0] is not None and report[k] is not None else '' for k in METRICS) + ' |')
    return '\n'.join(lines)


def curve(runs, key):
    """Mean and standard deviation over seeds of one metric per epoch, up to the shortest run."""
    n = min(len(r['metrics']) for r in runs)
    columns = [[r['metrics'][e][key] for r in runs] for e in range(n)]
    return list(range(1, n + 1)), [statistics.fmean(c) for c in columns], \
        [statistics.stdev(c) if len(c) > 1 else 0.0 for c in columns]


def curves_figure(number, title, rows, knob, path):
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
        axes[0, col].set_title(describe(row['setting'], knob) + seeds + progress(runs), fontsize=9)
        axes[1, col].set_xlabel('epoch')
    axes[0, 0].set_ylabel('loss')
    axes[1, 0].set_ylabel('accuracy (%)')
    axes[0, 0].legend()
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f'Figure {number}: {title}')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cosine_figure(path, epochs=300, lr=0.01):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(epochs), [cosine_lr(e, epochs, lr) for e in range(epochs)], label='cosine annealing')
    ax.plot(range(epochs), [lr] * epochs, '--', label='constant')
    ax.set(xlabel='epoch', ylabel='learning rate', title=f'Figure 3: cosine annealing from {lr} over {epochs} epochs')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def first_batch_figure(images, labels, path, columns=16):
    """Figure 1: the images of the first training batch with their class names."""
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.05))
    for ax in axes.flat:
        ax.axis('off')
    for ax, image, label in zip(axes.flat, images, labels):
        ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(CLASSES[int(label)], fontsize=7, pad=2)
    fig.suptitle(f'Figure 1: the first batch of the training set ({len(images)} images)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
            first_batch_figure(train_x[batch], train_y[batch], os.path.join(args.out, 'figure1_first_batch.png'))
            written.append('figure1_first_batch.png')
    if figures:
        cosine_figure(os.path.join(args.out, 'figure3_cosine.png'))
        written.append('figure3_cosine.png')

    found = collect(args.runs, report)
    for figure, table, experiment, table_experiments, knob, title in EXPERIMENTS:
        if figures and any(runs for _, runs in found[experiment]):
            name = f'figure{figure}_{experiment}.png'
            curves_figure(figure, title, found[experiment], knob, os.path.join(args.out, name))
            written.append(name)
        if table:
            rows = [r for e in table_experiments for r in found[e]]
            sections += [results_table(table, title, rows, knob), '']
    if tables:
        with open(os.path.join(args.out, 'tables.md'), 'w') as f:
            f.write('\n'.join(sections))
        written.append('tables.md')
    print(f'wrote {", ".join(written)} in {args.out}/')


if __name__ == '__main__':
    main()
