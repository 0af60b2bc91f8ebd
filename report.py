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
as the Makefile lays them out: RUNS/EXPERIMENT/SETTING/seedN/. Here is every number and verdict, as
plain values; bookkeeping/tables.py writes them as markdown and bookkeeping/figures.py draws them. A
run whose training flags depart from its setting's (fewer epochs, a training or evaluation subset,
another batch size...) says so wherever its numbers appear; several seeds of a setting give their
mean, with their spread; a run with a damaged file is left out, and each table and verdict it would
have been in says so.

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

from bookkeeping import figures, flags, runs, study, tables
from data import CLASSES, DataError, class_table, load_cifar10, split_for
from schedule import cosine_lr
from stats import (ALPHA, binomial_se, holm, mcnemar_p, mean_sd_sem, normal_p, seeds_needed, seeds_needed_roughly,
                   t_critical, welch)

REPORT_IMAGES = 10_000  # the report's validation set, and its test set
SEEDS_CAP = 20          # the most seeds per setting the Conclusions count to; past it, they say roughly how many
NORMAL_95 = statistics.NormalDist().inv_cdf(0.975)  # 1.96: 95% of a normal lies within 1.96 sd of its mean
METRICS = ['train_loss', 'train_acc', 'val_loss', 'val_acc', 'test_loss', 'test_acc']
ACCURACIES = ('val_acc', 'test_acc')  # the numbers measured on images, so with an uncertainty of their own


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


# ---------------------------------------------------------------------------------------------
# How a claim is judged against the noise: the report's margins by z, ours by McNemar's test or
# Welch's, each accuracy with its uncertainty.


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


def accuracy(found_runs, split):
    """Our final accuracy on 'val' or 'test' over the runs of one setting that have not diverged,
    or None before any has one."""
    found_runs = [r for r in found_runs if not diverged(r)]
    values = [v for v in (final(r)[f'{split}_acc'] for r in found_runs) if v is not None]
    if len(values) > 1:
        return Estimate(*mean_sd_sem(values), seeds=len(values))
    return Estimate(values[0], None, binomial_se(values[0], found_runs[0]['config']['sizes'][split])) if values else None


def final(run):
    """A run's final numbers: its last epoch's line, and the test numbers once it has finished."""
    last, summary = run['metrics'][-1], run['summary'] or {}
    return {k: summary.get(k) if k.startswith('test') else last[k] for k in METRICS}


def diverged(run):
    return 'diverged_at' in (run['summary'] or {})


def finished(found_runs):
    """The runs that ended with their numbers: a summary, and no divergence."""
    return [r for r in found_runs if r['summary'] and not diverged(r)]


# ---------------------------------------------------------------------------------------------
# The Conclusions: each claim judged, alone and as one of a family, and what would settle it.


class Compared(NamedTuple):
    """A claim's winner against one of its rivals, as the Conclusions show it."""
    claim: str               # the claim's text, on its first comparison only
    winner: str
    rival: str
    theirs: Margin | None    # the report's margin, by z; None where it has no number for one of the two
    beyond: bool             # whether the report's margin alone is beyond noise, p < ALPHA
    ours: Margin | None      # ours, by our_margin's test; None while either has no finished run
    verdict: str             # ours, and what it stands on (judged)
    their_holm: 'Held | None'  # with Holm's correction across the report's margins; None outside them
    our_holm: 'Held | None'    # across ours
    seeds: 'Seeds | None'      # what would settle a comparison within noise; None for one beyond it


def conclusions(the_study, found):
    """The Conclusions: for each claim and each setting it says its winner beats, a Compared: the
    report's margin and whether it is beyond noise, ours, the verdict, each with Holm's correction
    across its family, and for those within noise the seeds that would settle them. Then, for the
    report's family and for ours, (m, beyond noise alone, beyond with Holm's), or None if empty."""
    pairs = [(claim.text if i == 0 else '', (claim.winner, rival))
             for claim in the_study.claims for i, rival in enumerate(claim.rivals)]
    theirs = [report_margin(winner.setting, rival.setting) for _, (winner, rival) in pairs]
    ours = [our_margin(*(finished(found[shown.setting.key].runs) for shown in pair)) for _, pair in pairs]
    their_holm = with_holm(theirs, lambda margin: 'beyond noise')
    our_holm = with_holm(ours, lambda margin: 'reproduced' if margin.difference > 0 else 'reversed')
    compared = [Compared(text, pair[0].label, pair[1].label, a, a is not None and a.p < ALPHA, b,
                         judged(b, pair, found), held_a, held_b, to_settle(pair, a, b, found))
                for (text, pair), a, b, held_a, held_b in zip(pairs, theirs, ours, their_holm, our_holm)]
    return compared, [family(theirs), family(ours)]


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


class Held(NamedTuple):
    """A margin under Holm's rule: its verdict, whether its step called it beyond noise, the step's
    m - i (its p held to ALPHA / (m - i)), and whether its p is below that threshold: it may be, and
    stay within noise, when a smaller p failed its own step first, since the steps stop there."""
    verdict: str
    rejected: bool
    step: int
    below: bool


def with_holm(margins, called):
    """A Held for each margin, in order, None for a missing one: Holm's verdict across all of them
    (stats.holm), `called(margin)` or 'within noise', and the threshold its step held its p to,
    alpha / (m - i) for the i-th smallest of m."""
    family_ = [margin for margin in margins if margin]
    pvalues = [margin.p for margin in family_]
    step = {j: len(pvalues) - i for i, j in enumerate(sorted(range(len(pvalues)), key=lambda j: pvalues[j]))}
    held = iter([Held(called(margin) if rejected else 'within noise', rejected, step[j], margin.p < ALPHA / step[j])
                 for j, (margin, rejected) in enumerate(zip(family_, holm(pvalues)))])
    return [next(held) if margin else None for margin in margins]


def family(margins):
    """A family of comparisons, against what chance alone would pass in it (about m ALPHA of m): its
    size m, how many are beyond noise alone (p < ALPHA), how many with Holm's correction; or None."""
    pvalues = [margin.p for margin in margins if margin]
    return (len(pvalues), sum(p < ALPHA for p in pvalues), sum(holm(pvalues))) if pvalues else None


def to_settle(pair, theirs, ours, found):
    """For a comparison within noise, the seeds per setting that would settle it, from our runs where
    we have them, else from the report's numbers; None for one beyond noise, or with no number."""
    if ours is not None:
        if verdict(ours) != 'within noise':
            return None
        a, b = (accuracy(finished(found[shown.setting.key].runs), 'val') for shown in pair)
        return seeds(ours.difference, a, b, have=min(a.seeds, b.seeds))
    if theirs is None or theirs.p < ALPHA:
        return None
    return seeds(theirs.difference, *(report_accuracy(shown.setting, 'val') for shown in pair))


class Seeds(NamedTuple):
    """The seeds per setting at which a t-test over seeds sees a margin at power 0.80: `needed`, or
    None past SEEDS_CAP, where `roughly` says about how many (inf for a margin of 0: none would);
    whether that is a `floor`; and how many the fewer of the two settings `have`."""
    needed: int | None
    roughly: float | None
    floor: bool
    have: int


def seeds(margin, a, b, have=1):
    """The Seeds of `margin` (stats.seeds_needed), given the two settings' Estimates. A seed's
    spread is a setting's sd over its seeds, or with one run its binomial se, a floor ('at least':
    training noise adds); the two are pooled as Student's t-test pools them, sd^2 = (sd_a^2 + sd_b^2) / 2."""
    floor = a.sd is None or b.sd is None
    sd = math.sqrt(((a.se if a.sd is None else a.sd) ** 2 + (b.se if b.sd is None else b.sd) ** 2) / 2)
    needed = seeds_needed(margin, sd, cap=SEEDS_CAP) if margin else None
    return Seeds(needed, None if needed else seeds_needed_roughly(margin, sd), floor, have)


# ---------------------------------------------------------------------------------------------
# Our numbers: what Tables 2-7 and Figures 2-10 hold.


class Row(NamedTuple):
    """A setting's lines of Tables 2-7. report, ours: {metric: its final value}, each accuracy an
    Estimate and each other number a (mean, sd over seeds) pair, sd None for one value; None where
    the report has no number, or we have no run. difference: ours minus the report's, or None."""
    label: str
    epochs: int        # the report's
    report: dict | None
    ours: dict | None
    difference: dict
    note: str          # how our runs depart from the report's setting, or that they are unfinished
    our_epochs: str    # the epochs our runs ran: '15', or '3, 15'
    seeds: int
    left_out: list     # a line for each run left out as damaged


def results(the_study, found):
    """Tables 2-7, in their order: each table's number and title, and a Row per setting, the
    report's final numbers beside ours and the difference. Ours are over the runs that did not
    diverge; a diverged run's are nan."""
    numbered = []
    for experiment in sorted((e for e in the_study.experiments if e.table), key=lambda e: e.table):
        rows = []
        for shown in experiment.rows():
            setting, (found_runs, damaged) = shown.setting, found[shown.setting.key]
            means = {k: mean_sd([final(r)[k] for r in found_runs if not diverged(r)]) for k in METRICS}
            report = {k: report_accuracy(setting, k[:-4]) if k in ACCURACIES else (setting.report.get(k), None)
                      for k in METRICS}
            ours = {k: accuracy(found_runs, k[:-4]) if k in ACCURACIES else means[k] for k in METRICS}
            difference = {k: means[k][0] - setting.report[k] if means[k][0] is not None and k in setting.report
                          else None for k in METRICS}
            note = '; '.join(n for n in [progress(found_runs)] + departures(setting, found_runs) if n)
            rows.append(Row(shown.label, setting.flags.get('epochs', flags.DEFAULTS['epochs']),
                            report if setting.report else None, ours if found_runs else None, difference, note,
                            ', '.join(sorted({str(len(r['metrics'])) for r in found_runs})), len(found_runs),
                            [str(d) for d in damaged]))
        numbered.append((experiment.table, experiment.title, rows))
    return numbered


def mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def departures(setting, found_runs):
    """How the runs depart from their setting's flags, in flags.departures' words ('epochs 3, not 15',
    'train-subset 8000, not none'), each once; [] for runs of the setting itself. Another seed is
    the same setting."""
    notes = []
    for run in found_runs:
        have = run['config']['flags']
        notes += flags.departures(have, setting.flags | {'seed': have.get('seed', flags.DEFAULTS['seed'])})
    return list(dict.fromkeys(notes))  # once each, in order


def progress(found_runs):
    """'' when every run has finished, else what the others are: in progress, or diverged."""
    notes = [f'in progress: epoch {len(r["metrics"])}/{r["config"]["flags"]["epochs"]}' for r in found_runs
             if not r['summary']]
    return '; '.join(notes + [f'diverged at epoch {r["summary"]["diverged_at"]}' for r in found_runs if diverged(r)])


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
        split = split_for(train_y, args.seed)
        batch = split[0][:args.batch]
        first_batch, table1 = (train_x[batch], train_y[batch], CLASSES), class_table(train_y, *split)
    except DataError as e:
        print(f'skipped: Figure 1 and Table 1: {e}')
        first_batch = table1 = None
    found = runs.collect(args.runs, the_study)
    written = [] if args.figures else tables.write(
        args.out, args.runs, args.seed, table1, [tables.results(*table) for table in results(the_study, found)],
        tables.conclusions(*conclusions(the_study, found), ALPHA, SEEDS_CAP))
    written += [] if args.tables else figures.write(
        args.out, first_batch, ([cosine_lr(e, 300, 0.01) for e in range(300)], 0.01), curves(the_study, found),
        (the_study.noise_figure, noise_panels(the_study, found)))
    print(f'wrote {", ".join(written)} in {args.out}/')
    damaged = [d for f in found.values() for d in f.left_out]
    if damaged:
        print(f'left out {len(damaged)} damaged run{"s" * (len(damaged) > 1)}, named above and under their tables')
    return 1 if damaged else 0


if __name__ == '__main__':
    raise SystemExit(main())
