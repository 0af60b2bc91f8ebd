"""The report's tables and figures, regenerated from the runs, and a verdict on each of its claims.

    python report.py                      # everything: figures/*.png and figures/tables.md
    python report.py --tables             # only figures/tables.md (make tables)
    python report.py --figures            # only the PNG files (make figures)

The report ran each setting once and picked winners by margins, some smaller than the noise of a
single run. So the lesson here is the Conclusions: for each claim, its margin in the report and
ours, each with its uncertainty (stats.py), and whether either is beyond noise; the same with
Holm's correction across the family of comparisons; and, for a margin within noise, how many
seeds would settle it.

What to show comes from study.toml (bookkeeping/study.py): each experiment's settings, the report's numbers,
the claims. What is shown is made from what the runs wrote (bookkeeping/runs.py reads their folders), laid out
as the Makefile lays them out: RUNS/EXPERIMENT/SETTING/seedN/. A run whose training flags depart
from its setting's (fewer epochs, a training or evaluation subset, another batch size...) says so
wherever its numbers appear; several seeds of a setting give their mean, with their spread; a run
with a damaged file is left out, and each table and verdict it would have been in says so.

  Figure 1   the first 128 images of the training split, in its seeded order, with class names
  Table 1    images per class in the training and validation splits
  Figure 3   the cosine learning rate over 300 epochs, from schedule.py
  Figures 2, 4-9 and Tables 2-7, as study.toml numbers them: loss (top) and accuracy (bottom)
             against epoch, training and validation, a column per setting; the final numbers
  Conclusions   each claim: its margin, ours, and whether either is beyond noise, alone and with Holm's
                correction; the seeds that would settle a margin within noise
  Figure 10  every setting's final validation accuracy with its error bar, the report's beside it
"""
import argparse
import math
import os
import statistics
from typing import NamedTuple

from bookkeeping.environment import needs
needs('torch', 'matplotlib')  # a Python without them: one line that says which Python, and how to get them
import torch

from bookkeeping import figures, flags, runs, study
from data import CLASSES, DataError, class_table, load_cifar10, split_for
from schedule import cosine_lr
from stats import (ALPHA, binomial_se, holm, mcnemar_p, mean_sd_sem, normal_p, seeds_needed, seeds_needed_roughly,
                   t_critical, welch)

REPORT_IMAGES = 10_000  # the report's validation set, and its test set
SEEDS_CAP = 20          # the most seeds a setting the Conclusions count to; past it, they say roughly how many
NORMAL_95 = statistics.NormalDist().inv_cdf(0.975)  # 1.96: 95% of a normal lies within 1.96 sd of its mean
METRICS = ['train_loss', 'train_acc', 'val_loss', 'val_acc', 'test_loss', 'test_acc']


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
became nan or inf, and the run stopped). A verdict on runs that depart from the report's setting says on what it stands.
- **Seeds to settle**, for a comparison within noise (ours where we have runs, else the report's): how many seeds \
a setting a t-test over seeds needs to tell its margin apart four times in five (power 0.80, two-sided α 0.05), \
taking the margin seen as the true one (Colas, Sigaud and Oudeyer 2018, "How many random seeds?"; \
stats.seeds_needed). The spread of one seed's accuracy is the standard deviation of a setting's seeds where it has \
two or more. With one run it is the binomial standard error of its accuracy: a floor, since another seed also \
draws other weights, another data order and other augmentations, so the count is *at least* that, and training \
noise adds. Past {SEEDS_CAP} seeds a setting it says roughly how many (stats.seeds_needed_roughly). `make seeds` \
adds seeds only where a comparison is open, a round at a time (runner/seeds.py).
- **Holm's correction.** A family of comparisons at α 0.05 each (the report's claims make eleven): even if no \
setting differed from another, about one in twenty would pass by chance. Holm's step-down rule (Holm 1979; \
stats.holm) keeps the chance of calling even one of the family real by chance at α: it compares the smallest p of \
m with α/m, the next with α/(m − 1), and so on, and stops at the first that is not below its threshold; it and \
every larger p stay within noise. It holds whatever the dependence between the comparisons, and several share a \
setting. The report's numbers are one family, our comparisons with a test another."""


# ---------------------------------------------------------------------------------------------
# The runs of each setting (runs.collect finds them): how they depart from it, and their numbers.


def departures(setting, found_runs):
    """How the runs depart from their setting's flags, in flags.departures' words ('epochs 3, not 15',
    'train-subset 8000, not none'), each once; [] for runs of the setting itself. Another seed is
    the same setting."""
    notes = []
    for run in found_runs:
        have = run['config']['flags']
        notes += flags.departures(have, setting.flags | {'seed': have.get('seed', flags.DEFAULTS['seed'])})
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
# Our accuracies and the report's, with their uncertainty, and the verdict on each claim.


def accuracy(found_runs, split):
    """Our final accuracy on 'val' or 'test' over the runs of one setting that have not diverged,
    or None before any has one."""
    found_runs = [r for r in found_runs if not diverged(r)]
    values = [v for v in (final(r)[f'{split}_acc'] for r in found_runs) if v is not None]
    if len(values) > 1:
        return Estimate(*mean_sd_sem(values), seeds=len(values))
    return Estimate(values[0], None, binomial_se(values[0], found_runs[0]['config']['sizes'][split])) if values else None


def report_accuracy(setting, split):
    """The report's accuracy: one run, on its 10,000 validation or test images; None where it has none."""
    acc = setting.report.get(f'{split}_acc')
    return None if acc is None else Estimate(acc, None, binomial_se(acc, REPORT_IMAGES))


def report_margin(winner, rival):
    """The report's margin, or None where it has no number for one of the two. One run each and
    no predictions, so the only rule left: z = difference / sqrt(se_a^2 + se_b^2)."""
    a, b = report_accuracy(winner, 'val'), report_accuracy(rival, 'val')
    if a is None or b is None:
        return None
    se = math.hypot(a.se, b.se)
    return Margin(a.mean - b.mean, se, normal_p((a.mean - b.mean) / se), 'z')


def our_margin(winner, rival):
    """Our margin, from the finished runs of the two settings, or None while either has none. The
    test, in order: one run each on the same images: McNemar's exact test on the images exactly
    one gets right; two seeds or more each: Welch's t over the seeds; otherwise z, as for the report."""
    if not winner or not rival:
        return None
    pa, pb = (winner[0]['predictions'], rival[0]['predictions']) if len(winner) == len(rival) == 1 else (None, None)
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


def points(margin):
    return f'{100 * margin.difference:+.2f} ± {100 * margin.se:.2f} (se)'


def p_text(p):
    return 'p < 0.001' if p < 0.001 else f'p = {p:.3f}'


def conclusions(the_study, found):
    """The Conclusions section: for each claim and each setting it says its winner beats, the
    report's margin and whether it is beyond noise, ours, and the verdict; then, for each of these
    comparisons, the verdicts with Holm's correction across the family, and for those within noise
    the seeds that would settle them."""
    lines = ['## Conclusions: which of the report\'s claims survive the noise', '',
             '| the report\'s claim | against | report: Δ val acc | beyond one run\'s noise? | '
             'ours: Δ val acc | our test | verdict |',
             '|---|---|---:|---|---:|---|---|']
    compared = []  # (the pair, the report's margin, ours), in the table's order
    for claim in the_study.claims:
        winner = found[claim.winner.setting.key]
        for i, rival in enumerate(claim.rivals):
            theirs = report_margin(claim.winner.setting, rival.setting)
            ours = our_margin(finished(winner.runs), finished(found[rival.setting.key].runs))
            compared.append(((claim.winner, rival), theirs, ours))
            lines.append(f'| {claim.text if i == 0 else ""} | {rival.label} | {points(theirs) if theirs else "no number"} | '
                         f'{(("yes, " if theirs.p < ALPHA else "no, ") + p_text(theirs.p)) if theirs else ""} | '
                         f'{points(ours) if ours else ""} | {f"{ours.test}: {p_text(ours.p)}" if ours else ""} | '
                         f'{judged(ours, (claim.winner, rival), found)} |')
    return '\n'.join(lines + [''] + settling(compared, found) + ['', CONCLUSIONS_RULES])


def judged(ours, pair, found):
    """The verdict on one pair of a claim, and what it stands on: the runs' departures from their
    settings, and the runs left out as damaged; or which of the two diverged."""
    verdict_ = verdict(ours)
    gone = [shown.label for shown in pair if any(map(diverged, found[shown.setting.key].runs))]
    if ours is None and gone:  # no verdict, and not for want of runs
        return ' and '.join(gone) + ' diverged'
    departed = [note for shown in pair for note in departures(shown.setting, finished(found[shown.setting.key].runs))]
    on = '; '.join(dict.fromkeys(departed + versions(pair, found)))
    left = [f'{shown.label} without {left_out(found[shown.setting.key])}' for shown in pair if found[shown.setting.key].left_out]
    return verdict_ + (f', on {on}' if ours and on else '') + ''.join(f'; {note}' for note in left)


def versions(pair, found):
    """['torch 2.9.1 and 2.14.1'] if the finished runs of the pair were made with more than one torch
    (config.json records each run's): its kernels round differently, a difference of its own; else []."""
    made = sorted({run['config'].get('torch', 'unknown') for shown in pair
                   for run in finished(found[shown.setting.key].runs)})
    return [f'torch {" and ".join(made)}'] if len(made) > 1 else []


def left_out(setting_found):
    """'seed1 (damaged)': the run folders of a setting left out."""
    return ', '.join(f'{os.path.basename(d.folder)} (damaged)' for d in setting_found.left_out)


# ---------------------------------------------------------------------------------------------
# What would settle each comparison, and what a family of comparisons costs.


def settling(compared, found):
    """The Conclusions' second table: each comparison's verdict with Holm's correction across its
    family, the report's numbers one family and our tests another, and for a comparison within
    noise the seeds a setting that would settle it; under it, what chance alone would pass."""
    their_margins = [theirs for _, theirs, _ in compared if theirs]
    our_margins = [ours for _, _, ours in compared if ours]
    their_cells = holm_cells(their_margins, lambda margin: 'beyond noise', 'within noise')
    our_cells = holm_cells(our_margins, lambda margin: 'reproduced' if margin.difference > 0 else 'reversed', 'within noise')
    lines = ['### With Holm\'s correction, and the seeds that would settle each comparison', '',
             '| comparison | the report, with Holm\'s correction | ours, with Holm\'s correction | seeds to settle |',
             '|---|---|---|---|']
    for pair, theirs, ours in compared:
        lines.append(f'| {pair[0].label} against {pair[1].label} | {next(their_cells) if theirs else ""} | '
                     f'{next(our_cells) if ours else ""} | {to_settle(pair, theirs, ours, found)} |')
    return lines + ['', by_chance(their_margins, 'these {} comparisons, by the report\'s numbers,',
                                  'The report has no numbers for them.')
                    + ' ' + by_chance(our_margins, 'the {} with a test of ours,', 'None has a test of ours yet.')]


def holm_cells(margins, called, kept):
    """A cell for each margin, in order: Holm's verdict across all of them (stats.holm), and the
    threshold its step held its p to, alpha / (m - i) for the i-th smallest of m."""
    pvalues = [margin.p for margin in margins]
    step = {j: len(pvalues) - i for i, j in enumerate(sorted(range(len(pvalues)), key=lambda j: pvalues[j]))}
    for j, (margin, rejected) in enumerate(zip(margins, holm(pvalues))):
        threshold = f'{ALPHA}/{step[j]} = {ALPHA / step[j]:.4f}'
        if rejected:
            yield f'{called(margin)}: {exact_p(margin.p)}, below {threshold}'
        elif margin.p < ALPHA / step[j]:  # below its own threshold, yet a smaller p stopped the steps before it
            yield f'{kept}: {exact_p(margin.p)}, below {threshold}, but a smaller p was not below its own'
        else:
            yield f'{kept}: {exact_p(margin.p)}, not below {threshold}'


def exact_p(p):
    """p to three places, or to two figures below 0.001, where Holm's thresholds can lie."""
    return f'p = {p:.3f}' if p >= 0.001 or p == 0 else f'p = {p:.1e}'


def by_chance(margins, which, none):
    """How many of a family of comparisons chance alone would call beyond noise, and how many are;
    `which` names the family, its size in {}; `none` is said of a family with no comparison."""
    if not margins:
        return none
    m, beyond, kept = len(margins), sum(margin.p < ALPHA for margin in margins), sum(holm([x.p for x in margins]))
    return (f'Of {which.format(m)} about {m} × {ALPHA} = {m * ALPHA:.2f} would be beyond noise by chance '
            f'alone at α {ALPHA}, were no setting better than another: {beyond} are at p < {ALPHA}, and {kept} stay '
            f'beyond noise with Holm\'s correction, which holds the chance of even one such call by chance at {ALPHA}.')


def to_settle(pair, theirs, ours, found):
    """For a comparison within noise, the seeds a setting that would settle it, from our runs where
    we have them, else from the report's numbers; '' for one beyond noise, or with no number."""
    if ours is not None:
        if verdict(ours) != 'within noise':
            return ''
        a, b = (accuracy(finished(found[shown.setting.key].runs), 'val') for shown in pair)
        return seeds_text(ours.difference, a, b, have=min(a.seeds, b.seeds))
    if theirs is None or theirs.p < ALPHA:
        return ''
    return seeds_text(theirs.difference, *(report_accuracy(shown.setting, 'val') for shown in pair))


def seeds_text(margin, a, b, have=1):
    """'11 a setting', or 'about 80 a setting, past the cap of 20': the seeds a setting at which a
    t-test over seeds sees `margin` at power 0.80 (stats.seeds_needed), given the two settings'
    Estimates. A seed's spread is a setting's sd over its seeds, or with one run its binomial se, a
    floor ('at least'); the two are pooled as Student's t-test pools them, sd^2 = (sd_a^2 + sd_b^2) / 2."""
    floor = a.sd is None or b.sd is None
    sd = math.sqrt(((a.se if a.sd is None else a.sd) ** 2 + (b.se if b.sd is None else b.sd) ** 2) / 2)
    at_least, adds = ('at least ', ': training noise adds') if floor else ('', '')
    if margin == 0:
        return 'none would: the margin is 0'
    needed = seeds_needed(margin, sd, cap=SEEDS_CAP)
    if needed is None:
        return f'{at_least}about {seeds_needed_roughly(margin, sd):,} a setting, past the cap of {SEEDS_CAP}{adds}'
    missed = f' (it has {have}: at power 0.80, one study in five misses such a margin)' if needed <= have else ''
    return f'{at_least}{needed} a setting{adds}{missed}'


# ---------------------------------------------------------------------------------------------
# Tables 1-7 as markdown.


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


def mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def results_table(experiment, found):
    """Table N: for each setting the report's final numbers, ours, and the difference; under it,
    the runs left out as damaged."""
    lines = [f'## Table {experiment.table}: {experiment.title}', '',
             '| setting | | epochs | seeds | train loss | train acc % | val loss | val acc % | test loss | test acc % |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    notes = []
    for shown in experiment.rows():
        setting, (found_runs, damaged) = shown.setting, found[shown.setting.key]
        report = {k: setting.report.get(k) for k in METRICS}
        if setting.report:
            lines.append(f'| {shown.label} | report | {setting.flags.get("epochs", flags.DEFAULTS["epochs"])} | 1 | ' + ' | '.join(
                accuracy_cell(report_accuracy(setting, k[:-4])) if k in ('val_acc', 'test_acc') else
                cell(report[k], percent=k.endswith('acc')) for k in METRICS) + ' |')
        else:
            lines.append(f'| {shown.label} | report | | | no number |' + ' |' * 5)
        notes += [f'Left out of {shown.label}: {d}.' for d in damaged]
        if not found_runs:
            lines.append(f'| {shown.label} | ours | | 0 | no run |' + ' |' * 5)
            continue
        ours = {k: mean_sd([final(r)[k] for r in found_runs if not diverged(r)]) for k in METRICS}
        note = '; '.join(n for n in [progress(found_runs)] + departures(setting, found_runs) if n)
        epochs = ', '.join(sorted({str(len(r['metrics'])) for r in found_runs}))
        lines.append(f'| {shown.label} | ours{f" ({note})" if note else ""} | {epochs} | {len(found_runs)} | '
                     + ' | '.join(accuracy_cell(accuracy(found_runs, k[:-4])) if k in ('val_acc', 'test_acc') else
                                  cell(*ours[k], percent=k.endswith('acc')) for k in METRICS) + ' |')
        lines.append(f'| {shown.label} | difference | | | ' + ' | '.join(
            cell(ours[k][0] - report[k], percent=k.endswith('acc'), signed=True)
            if ours[k][0] is not None and report[k] is not None else '' for k in METRICS) + ' |')
    return '\n'.join(lines + [''] + notes + ([''] if notes else []) + [UNCERTAINTY_RULE])


# ---------------------------------------------------------------------------------------------
# What Figures 2-10 hold.


def curves(the_study, found):
    """Figures 2 and 4-9: for each experiment its figure's number, name and title, and a column per
    setting with runs: its label, its runs, and what they are where unfinished."""
    return [(experiment.figure, experiment.name, experiment.title,
             [(shown.label, found[shown.setting.key].runs, progress(found[shown.setting.key].runs))
              for shown in experiment.rows() if found[shown.setting.key].runs])
            for experiment in the_study.experiments]


class NoisePoint(NamedTuple):
    """One setting of Figure 10: its name, the report's accuracy and ours (an Estimate or None),
    and whether our runs depart from the report's setting or are unfinished."""
    name: str
    report: Estimate | None
    ours: Estimate | None
    departs: bool


def noise_panels(the_study, found):
    """Figure 10's data: a panel per table, a point per setting, the report's estimate beside ours."""
    return [(experiment.title, [NoisePoint(shown.label, report_accuracy(shown.setting, 'val'),
                                           accuracy(found[shown.setting.key].runs, 'val'),
                                           bool(departures(shown.setting, found[shown.setting.key].runs)
                                                or progress(found[shown.setting.key].runs)))
                                for shown in experiment.rows()])
            for experiment in the_study.experiments if experiment.table]


# ---------------------------------------------------------------------------------------------
# Everything, from the command line.


def tables(args, the_study, found, train_y):
    """figures/tables.md: Table 1, the experiments' tables and the Conclusions, which are also printed."""
    sections = ['# The study, regenerated', '',
                f'From the runs in `{args.runs}/`; made by `python report.py`. Accuracies in %. '
                f'The report\'s numbers are from its text, as study.toml gives them.', '']
    if train_y is not None:
        sections += [f'## Table 1: images per class (split seed {args.seed})', '',
                     class_table(train_y, *split_for(train_y, args.seed)), '']
    for experiment in sorted((e for e in the_study.experiments if e.table), key=lambda e: e.table):
        sections += [results_table(experiment, found), '']
    verdicts = conclusions(the_study, found)
    sections += [verdicts, '']
    print('\n' + verdicts + '\n')  # the section a student should read first
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
    parser.add_argument('--study', default=study.STUDY, help='the study\'s file (default: study.toml)')
    only = parser.add_mutually_exclusive_group()
    only.add_argument('--tables', action='store_true', help='make only figures/tables.md')
    only.add_argument('--figures', action='store_true', help='make only the figures')
    args = parser.parse_args(argv)
    try:
        the_study = study.load(args.study)
    except study.StudyError as e:
        parser.exit(1, f'report.py: error: {e}\n')
    os.makedirs(args.out, exist_ok=True)
    try:
        train_x, train_y, _, _ = load_cifar10(args.data_dir, download=False)
    except DataError as e:
        print(f'skipped: Figure 1 and Table 1: {e}')
        train_x = train_y = None
    found = runs.collect(args.runs, the_study)
    written = [] if args.figures else tables(args, the_study, found, train_y)
    batch = None if train_y is None else split_for(train_y, args.seed)[0][:args.batch]
    written += [] if args.tables else figures.write(
        args.out, None if batch is None else (train_x[batch], train_y[batch], CLASSES),
        ([cosine_lr(e, 300, 0.01) for e in range(300)], 0.01), curves(the_study, found),
        (the_study.noise_figure, noise_panels(the_study, found)))
    print(f'wrote {", ".join(written)} in {args.out}/')
    damaged = [d for f in found.values() for d in f.left_out]
    if damaged:
        print(f'left out {len(damaged)} damaged run{"s" * (len(damaged) > 1)}, named above and under their tables')
    return 1 if damaged else 0


if __name__ == '__main__':
    raise SystemExit(main())
