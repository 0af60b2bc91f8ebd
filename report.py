"""The report's tables and figures, regenerated from the runs, and a verdict on each of its claims.

    python report.py                      # everything: figures/*.png and figures/tables.md
    python report.py --tables             # only figures/tables.md (make tables)
    python report.py --figures            # only the PNG files (make figures)

The report ran each setting once and picked winners by margins, some smaller than the noise of a
single run. So the lesson here is the Conclusions: for each claim of the report, its margin and
ours, each with its uncertainty (stats.py), and whether either is beyond noise.

Everything is made from what the runs wrote (runs.py reads their folders), laid out as the
Makefile lays them out: RUNS/EXPERIMENT/SETTING/seedN/. A setting is matched to the report's by
the flags in its config.json, not by its folder name. A run that departs from the report's setting
(fewer epochs, a training or evaluation subset, another batch size or momentum, no crop and flip)
says so wherever its numbers appear. Several seeds of a setting give their mean, with their spread.

  Figure 1   the first 128 images of the training split, in its seeded order, with class names
  Table 1    images per class in the training and validation splits
  Figure 2   loss (top) and accuracy (bottom) against epoch, training and validation, per lr
  Figure 3   the cosine learning rate over 300 epochs, from schedule.py
  Figures 4-9, Tables 2-7   the other experiments, as Figure 2, and their final numbers
  Conclusions   each claim of the report: its margin, ours, and whether either is beyond noise
  Figure 10  every setting's final validation accuracy with its error bar, the report's beside it
"""
import argparse
import json
import math
import os
import statistics
from typing import NamedTuple

import torch

import figures
import runs
from data import DataError, class_table, load_cifar10, split_for
from stats import ALPHA, binomial_se, mcnemar_p, mean_sd_sem, normal_p, t_critical, welch

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT_IMAGES = 10_000  # the report's validation set, and its test set
REPORT_BATCH, REPORT_MOMENTUM = 128, 0.9
BASELINE = {'cosine': False, 'wd': 0.0, 'erase_p': 0.0, 'erase_scale': [0.02, 0.33], 'erase_ratio': [0.3, 3.3]}
NORMAL_95 = statistics.NormalDist().inv_cdf(0.975)  # 1.96: 95% of a normal lies within 1.96 sd of its mean
METRICS = ['train_loss', 'train_acc', 'val_loss', 'val_acc', 'test_loss', 'test_acc']


class Experiment(NamedTuple):
    figure: int        # its figure of curves
    table: int | None  # its table of final numbers; the erase run has none: it is the first row of Tables 5-7
    name: str          # its Makefile target, and its folder of runs
    shows: tuple       # the experiments whose runs its table shows
    knob: str          # the flag it turns
    title: str


EXPERIMENTS = [
    Experiment(2, 2, 'lr-sweep', ('lr-sweep',), 'lr', 'Learning rate (15 epochs, constant, no weight decay)'),
    Experiment(4, 3, 'schedule', ('schedule',), 'cosine', 'Constant against cosine annealing (lr 0.01)'),
    Experiment(5, 4, 'wd', ('wd',), 'wd', 'Weight decay (lr 0.01, cosine)'),
    Experiment(6, None, 'erase', ('erase',), 'erase_p', 'Random erasing (lr 0.01, cosine, wd 5e-4)'),
    Experiment(7, 5, 'erase-p', ('erase', 'erase-p'), 'erase_p', 'Erasing probability p'),
    Experiment(8, 6, 'erase-scale', ('erase', 'erase-scale'), 'erase_scale', 'Erased area fraction (scale)'),
    Experiment(9, 7, 'erase-ratio', ('erase', 'erase-ratio'), 'erase_ratio', 'Erased aspect ratio (ratio)'),
]


class Setting(NamedTuple):
    label: str
    experiment: str
    flags: dict  # the flags that pick its row among the experiment's


class Claim(NamedTuple):
    text: str
    winner: Setting
    rivals: list  # the settings the report says the winner beats


# The report's claims, in its order.
CLAIMS = [
    Claim('lr 0.01 is the best of three rates at 15 epochs', Setting('lr 0.01', 'lr-sweep', {'lr': 0.01}),
          [Setting('lr 0.1', 'lr-sweep', {'lr': 0.1}), Setting('lr 0.001', 'lr-sweep', {'lr': 0.001})]),
    Claim('cosine annealing beats a constant rate', Setting('cosine', 'schedule', {'cosine': True}),
          [Setting('constant', 'schedule', {'cosine': False})]),
    Claim('wd 1e-2 beats 5e-4 (its table; its text says 5e-4)', Setting('wd 1e-2', 'wd', {'wd': 0.01}),
          [Setting('wd 5e-4', 'wd', {'wd': 0.0005})]),
    Claim('random erasing (p 1.0) beats none', Setting('p 1.0', 'erase', {}),
          [Setting('no erasing (wd 5e-4)', 'wd', {'wd': 0.0005})]),
    Claim('p 0.5 is the best erasing probability', Setting('p 0.5', 'erase-p', {'erase_p': 0.5}),
          [Setting('p 0.8', 'erase-p', {'erase_p': 0.8}), Setting('p 1.0', 'erase', {})]),
    Claim('scale (0.02, 0.33) is the best erased area', Setting('scale (0.02, 0.33)', 'erase', {}),
          [Setting('scale (0.17, 0.5)', 'erase-scale', {'erase_scale': [0.17, 0.5]}),
           Setting('scale (0.33, 0.67)', 'erase-scale', {'erase_scale': [0.33, 0.67]})]),
    Claim('ratio (0.2, 5.0) is the best aspect ratio', Setting('ratio (0.2, 5.0)', 'erase-ratio', {'erase_ratio': [0.2, 5.0]}),
          [Setting('ratio (0.9, 1.1)', 'erase-ratio', {'erase_ratio': [0.9, 1.1]}), Setting('ratio (0.3, 3.3)', 'erase', {})]),
]


class Estimate(NamedTuple):
    """An accuracy with its uncertainty. Several seeds: their mean, their standard deviation, the
    standard error of the mean, and how many. One run: its accuracy, no sd, and its binomial
    standard error on the images it was measured on."""
    mean: float
    sd: float | None
    se: float
    seeds: int = 1

    def interval(self):
        """Half the width of its 95% interval. One run: 1.96 binomial se, the normal's quantile,
        which thousands of images earn. k seeds: t_critical(k - 1) sem, Student's t, since the sd
        of a few seeds is itself a guess: 4.30 sem for 3 seeds, more than twice 1.96."""
        return (t_critical(self.seeds - 1) if self.seeds > 1 else NORMAL_95) * self.se


class Margin(NamedTuple):
    """The winner's validation accuracy minus the rival's, its standard error, the p of the test
    that compared them, and which test that was."""
    difference: float
    se: float
    p: float
    test: str


UNCERTAINTY_RULE = ('Each ± says what it is. Validation and test accuracy: one run ± its binomial standard error (se), '
                    '√(p(1−p)/n) on its n images (the report\'s: n = 10,000); several seeds: their mean ± their standard '
                    'deviation (sd), with the standard error of the mean (sem = sd/√seeds). Other columns: mean ± sd over '
                    'seeds. Figure 10 draws 95% intervals: 1.96 se for one run, t(seeds − 1) sem for several. '
                    '"ours" says where our runs depart from the report\'s setting.')
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
*within noise*, *not run yet* (no finished run of one of the two), or which of the two *diverged* (its loss \
became nan or inf, and the run stopped). A verdict on runs that depart from the report's setting says on what it stands."""


# ---------------------------------------------------------------------------------------------
# Our accuracies and the report's, with their uncertainty, and the verdict on each claim.


def accuracy(found, split):
    """Our final accuracy on 'val' or 'test' over the runs of one setting that have not diverged,
    or None before any has one."""
    found = [r for r in found if not diverged(r)]
    values = [v for v in (final(r)[f'{split}_acc'] for r in found) if v is not None]
    if len(values) > 1:
        return Estimate(*mean_sd_sem(values), seeds=len(values))
    return Estimate(values[0], None, binomial_se(values[0], found[0]['config']['sizes'][split])) if values else None


def report_accuracy(row, split):
    """The report's accuracy: one run, on its 10,000 validation or test images."""
    acc = row[f'{split}_acc']
    return None if acc is None else Estimate(acc / 100, None, binomial_se(acc / 100, REPORT_IMAGES))


def report_margin(winner_row, rival_row):
    """The report's margin. One run each and no predictions, so the only rule left:
    z = difference / sqrt(se_a^2 + se_b^2)."""
    a, b = report_accuracy(winner_row, 'val'), report_accuracy(rival_row, 'val')
    se = math.hypot(a.se, b.se)
    return Margin(a.mean - b.mean, se, normal_p((a.mean - b.mean) / se), 'z')


def our_margin(winner, rival):
    """Our margin, from the finished runs of the two settings, or None while either has none. The
    test, in order: one run each on the same images: McNemar's exact test on the images exactly
    one gets right; two seeds or more each: Welch's t over the seeds; otherwise z, as for the report."""
    if not winner or not rival:
        return None
    pa, pb = (runs.read_predictions(winner[0]['folder']), runs.read_predictions(rival[0]['folder'])) \
        if len(winner) == len(rival) == 1 else (None, None)
    if same_images(pa, pb):
        right_a, right_b = pa['pred'] == pa['label'], pb['pred'] == pb['label']
        only_a, only_b, n = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum()), len(right_a)
        se = math.sqrt(only_a + only_b - (only_a - only_b) ** 2 / n) / n  # of the mean of +1/0/-1 per image
        return Margin((only_a - only_b) / n, se, mcnemar_p(only_a, only_b), f'McNemar, {only_a} against {only_b} images')
    a, b = accuracy(winner, 'val'), accuracy(rival, 'val')
    se = math.hypot(a.se, b.se)
    if len(winner) > 1 and len(rival) > 1:
        t, df, p = welch(a.mean, a.se, len(winner), b.mean, b.se, len(rival))
        return Margin(a.mean - b.mean, se, p, f'Welch t {t:.1f}, df {df}, {len(winner)} and {len(rival)} seeds')
    if se:
        z = (a.mean - b.mean) / se
    else:  # both accuracies exactly 0 or 1: nothing to measure the difference against
        z = 0.0 if a.mean == b.mean else math.copysign(math.inf, a.mean - b.mean)
    why = 'not the same images' if len(winner) == len(rival) == 1 else 'seeds on one side only'
    return Margin(a.mean - b.mean, se, normal_p(z), f'z {z:.1f} ({why})')


def same_images(a, b):
    """Whether two runs' predictions are of the same images: same indices, same labels, same order."""
    return a is not None and b is not None and torch.equal(a['index'], b['index']) and torch.equal(a['label'], b['label'])


def verdict(margin):
    """What our runs say of a claim whose winner is the first setting."""
    if margin is None:
        return 'not run yet'
    return 'within noise' if margin.p >= ALPHA else 'reproduced' if margin.difference > 0 else 'reversed'


def conclusions(found):
    """The Conclusions section: for each claim of the report and each setting it says its winner
    beats, the report's margin and whether it is beyond noise, ours, and the verdict."""
    lines = ['## Conclusions: which of the report\'s claims survive the noise', '',
             '| the report\'s claim | against | report: Δ val acc | beyond one run\'s noise? | '
             'ours: Δ val acc | our test | verdict |',
             '|---|---|---:|---|---:|---|---|']
    for claim in CLAIMS:
        winner_row, winner_runs = find(found, claim.winner)
        for i, rival in enumerate(claim.rivals):
            rival_row, rival_runs = find(found, rival)
            theirs = report_margin(winner_row, rival_row)
            ours = our_margin(finished(winner_runs), finished(rival_runs))
            departed = departures(winner_row, finished(winner_runs)) + departures(rival_row, finished(rival_runs))
            on = '; '.join(dict.fromkeys(departed))
            judged = verdict(ours) + (f', on {on}' if ours and on else '')
            gone = [s.label for s, setting_runs in ((claim.winner, winner_runs), (rival, rival_runs))
                    if any(map(diverged, setting_runs))]
            if ours is None and gone:  # no verdict, and not for want of runs
                judged = ' and '.join(gone) + ' diverged'
            lines.append(f'| {claim.text if i == 0 else ""} | {rival.label} | {points(theirs)} | '
                         f'{"yes" if theirs.p < ALPHA else "no"}, {p_text(theirs.p)} | {points(ours) if ours else ""} | '
                         f'{f"{ours.test}: {p_text(ours.p)}" if ours else ""} | {judged} |')
    return '\n'.join(lines + ['', CONCLUSIONS_RULES])


# ---------------------------------------------------------------------------------------------
# Finding the runs of each of the report's settings.


def collect(runs_dir, report):
    """For each experiment of the report: [(report row, its runs or [])], in the report's order."""
    found = {}
    for experiment in EXPERIMENTS:
        settings = runs_by_setting(runs_dir, experiment.name)
        rows = []
        for row in (r for r in report['runs'] if r['experiment'] == experiment.name):
            setting_runs = next((s for s in settings if matches(row['setting'], s[0]['config']['flags'])), [])
            if not setting_runs:
                print(f'skipped: {experiment.name}, {describe(row["setting"], experiment.knob)}: '
                      f'no run in {os.path.join(runs_dir, experiment.name)}/')
            rows.append((row, setting_runs))
        found[experiment.name] = rows
    return found


def runs_by_setting(runs_dir, experiment):
    """[the runs of one setting's seeds] for each setting folder of one experiment."""
    top = os.path.join(runs_dir, experiment)
    settings = []
    for setting in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        seeds = [runs.read(os.path.join(top, setting, s)) for s in sorted(os.listdir(os.path.join(top, setting)))]
        if any(seeds):
            settings.append([r for r in seeds if r])
    return settings


def matches(report_setting, flags):
    """Whether a run's flags are the report's setting; epochs aside, so that short runs made
    with ARGS='--epochs 2' still find their place (and say they are short: departures)."""
    wanted = BASELINE | {k: v for k, v in report_setting.items() if k != 'epochs'}
    return all(flags.get(k) == v for k, v in wanted.items())


def find(found, setting):
    """(the report's row, our runs) of a claim's setting."""
    return next((row, found_runs) for row, found_runs in found[setting.experiment]
                if all(row['setting'].get(k, BASELINE.get(k)) == v for k, v in setting.flags.items()))


def departures(row, found_runs):
    """How the runs depart from the report's setting, as phrases: '3 epochs, not 15', '8,000
    training images, not 40,000', 'batch 64, not 128', 'no crop and flip'... [] for runs of the
    report's own setting."""
    notes = []
    for run in found_runs:
        flags, sizes = run['config']['flags'], run['config']['sizes']
        if flags['epochs'] != row['setting']['epochs']:
            notes.append(f'{flags["epochs"]} epochs, not {row["setting"]["epochs"]}')
        if flags.get('train_subset'):
            notes.append(f'{sizes["train"]:,} training images, not 40,000')
        if flags.get('eval_subset'):
            notes.append(f'{sizes["val"]:,} validation and test images, not 10,000')
        if flags['batch_size'] != REPORT_BATCH:
            notes.append(f'batch {flags["batch_size"]}, not {REPORT_BATCH}')
        if flags['momentum'] != REPORT_MOMENTUM:
            notes.append(f'momentum {flags["momentum"]}, not {REPORT_MOMENTUM}')
        if flags['no_crop_flip']:
            notes.append('no crop and flip')
    return list(dict.fromkeys(notes))  # once each, in order


def final(run):
    """A run's final numbers: its last epoch's line, and the test numbers once it has finished."""
    last, summary = run['metrics'][-1], run['summary'] or {}
    return {k: summary.get(k) if k.startswith('test') else last[k] for k in METRICS}


def diverged(run):
    return 'diverged_at' in (run['summary'] or {})


def finished(found_runs):
    """The runs that ended with their numbers: a summary, and no divergence."""
    return [r for r in found_runs if r['summary'] and not diverged(r)]


def progress(found_runs):
    """'' when every run has finished, else what the others are: in progress, or diverged."""
    notes = [f'in progress: epoch {len(r["metrics"])}/{r["config"]["flags"]["epochs"]}' for r in found_runs
             if not r['summary']]
    return '; '.join(notes + [f'diverged at epoch {r["summary"]["diverged_at"]}' for r in found_runs if diverged(r)])


# ---------------------------------------------------------------------------------------------
# Tables 1-7 as markdown.


def describe(setting, knob):
    """A setting named by the knob its experiment turns: 'lr 0.1', 'cosine', 'scale (0.17, 0.5)'."""
    if knob == 'cosine':
        return 'cosine' if setting['cosine'] else 'constant'
    value = setting[knob]
    return f'{knob.replace("erase_", "")} {tuple(value) if isinstance(value, list) else value}'


def cell(value, sd=None, percent=False, signed=False):
    """A number of a table, with the standard deviation of several seeds' values if given."""
    if value is None:
        return ''
    scale, digits = (100, 2) if percent else (1, 4)
    text = f'{scale * value:{"+" if signed else ""}.{digits}f}'
    return text + (f' ± {scale * sd:.{digits}f} (sd)' if sd is not None else '')


def accuracy_cell(estimate):
    if estimate is None:
        return ''
    if estimate.sd is None:
        return f'{100 * estimate.mean:.2f} ± {100 * estimate.se:.2f} (se)'
    return f'{100 * estimate.mean:.2f} ± {100 * estimate.sd:.2f} (sd; sem {100 * estimate.se:.2f})'


def points(margin):
    return f'{100 * margin.difference:+.2f} ± {100 * margin.se:.2f} (se)'


def p_text(p):
    return 'p < 0.001' if p < 0.001 else f'p = {p:.3f}'


def mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def results_table(experiment, rows):
    """Table N: for each setting the report's final numbers, ours, and the difference."""
    lines = [f'## Table {experiment.table}: {experiment.title}', '',
             '| setting | | epochs | seeds | train loss | train acc % | val loss | val acc % | test loss | test acc % |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for row, found_runs in rows:
        name = describe(row['setting'], experiment.knob)
        report = {k: row[k] / 100 if k.endswith('acc') and row[k] is not None else row[k] for k in METRICS}
        lines.append(f'| {name} | report | {row["setting"]["epochs"]} | 1 | ' + ' | '.join(
            accuracy_cell(report_accuracy(row, k[:-4])) if k in ('val_acc', 'test_acc') else
            cell(report[k], percent=k.endswith('acc')) for k in METRICS) + ' |')
        if not found_runs:
            lines.append(f'| {name} | ours | | 0 | no run |' + ' |' * 5)
            continue
        ours = {k: mean_sd([final(r)[k] for r in found_runs if not diverged(r)]) for k in METRICS}
        notes = '; '.join(n for n in [progress(found_runs)] + departures(row, found_runs) if n)
        epochs = ', '.join(sorted({str(len(r['metrics'])) for r in found_runs}))
        lines.append(f'| {name} | ours{f" ({notes})" if notes else ""} | {epochs} | {len(found_runs)} | '
                     + ' | '.join(accuracy_cell(accuracy(found_runs, k[:-4])) if k in ('val_acc', 'test_acc') else
                                  cell(*ours[k], percent=k.endswith('acc')) for k in METRICS) + ' |')
        lines.append(f'| {name} | difference | | | ' + ' | '.join(
            cell(ours[k][0] - report[k], percent=k.endswith('acc'), signed=True)
            if ours[k][0] is not None and report[k] is not None else '' for k in METRICS) + ' |')
    return '\n'.join(lines + ['', UNCERTAINTY_RULE])


# ---------------------------------------------------------------------------------------------
# Everything, from the command line.


def noise_panels(found):
    """Figure 10's data: a panel per table, a point per setting, the report's estimate beside ours."""
    panels = []
    for experiment in (e for e in EXPERIMENTS if e.table):
        rows = [r for name in experiment.shows for r in found[name]]
        points_ = [figures.NoisePoint(describe(row['setting'], experiment.knob), report_accuracy(row, 'val'),
                                      accuracy(found_runs, 'val') if found_runs else None,
                                      bool(departures(row, found_runs) or progress(found_runs)))
                   for row, found_runs in rows]
        panels.append((experiment.title, points_))
    return panels


def write_figures(args, found, train_x, train_y):
    """Every figure there is something to draw for; returns the names of the files written."""
    written = []
    def save(fig, name):
        figures.save(fig, os.path.join(args.out, name))
        written.append(name)
    if train_x is not None:
        batch = split_for(train_y, args.seed)[0][:args.batch]
        save(figures.first_batch(train_x[batch], train_y[batch]), 'figure1_first_batch.png')
    save(figures.cosine(), 'figure3_cosine.png')
    for experiment in EXPERIMENTS:
        rows = [(describe(row['setting'], experiment.knob), found_runs, progress(found_runs))
                for row, found_runs in found[experiment.name] if found_runs]
        if rows:
            save(figures.curves(experiment.figure, experiment.title, rows), f'figure{experiment.figure}_{experiment.name}.png')
    save(figures.noise(noise_panels(found)), 'figure10_noise.png')
    return written


def tables(args, found, train_y):
    """figures/tables.md: Table 1, Tables 2-7 and the Conclusions, which are also printed."""
    sections = ['# The study, regenerated', '',
                f'From the runs in `{args.runs}/`; made by `python report.py`. Accuracies in %. '
                'The report\'s numbers are from its text (report_results.json).', '']
    if train_y is not None:
        sections += [f'## Table 1: images per class (split seed {args.seed})', '',
                     class_table(train_y, *split_for(train_y, args.seed)), '']
    for experiment in (e for e in EXPERIMENTS if e.table):
        sections += [results_table(experiment, [r for name in experiment.shows for r in found[name]]), '']
    sections += [conclusions(found), '']
    print('\n' + sections[-2] + '\n')  # the section a student should read first
    with open(os.path.join(args.out, 'tables.md'), 'w') as f:
        f.write('\n'.join(sections))
    return ['tables.md']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', default='runs', help='folder of the runs (default: %(default)s)')
    parser.add_argument('--out', default='figures', help='folder for the PNG files and tables.md (default: %(default)s)')
    parser.add_argument('--data-dir', default='data', help='CIFAR-10, for Figure 1 and Table 1 (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='the split shown in Figure 1 and Table 1 (default: %(default)s)')
    parser.add_argument('--batch', type=int, default=128, help='images in Figure 1 (default: %(default)s)')
    only = parser.add_mutually_exclusive_group()
    only.add_argument('--tables', action='store_true', help='make only figures/tables.md')
    only.add_argument('--figures', action='store_true', help='make only the figures')
    args = parser.parse_args(argv)
    with open(os.path.join(HERE, 'report_results.json')) as f:
        report = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    try:
        train_x, train_y, _, _ = load_cifar10(args.data_dir, download=False)
    except DataError as e:
        print(f'skipped: Figure 1 and Table 1: {e}')
        train_x = train_y = None
    found = collect(args.runs, report)
    written = [] if args.figures else tables(args, found, train_y)
    written += [] if args.tables else write_figures(args, found, train_x, train_y)
    print(f'wrote {", ".join(written)} in {args.out}/')


if __name__ == '__main__':
    main()
