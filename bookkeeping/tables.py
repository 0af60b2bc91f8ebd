"""The report's tables as markdown, figures/tables.md: report.py works out what each cell holds,
and every verdict; here is only how they are written. And bench.py's table, last."""
import os

UNCERTAINTY_RULE = ('Each ± says what it is. Validation and test accuracy: one run ± its binomial standard error (se), '
                    '√(p(1−p)/n) on its n images (the report\'s: n = 10,000); several seeds: their mean ± their standard '
                    'deviation (sd), with the standard error of the mean (sem = sd/√seeds). Other columns: mean ± sd over '
                    'seeds. Figure 10 draws 95% intervals: 1.96 se for one run, t(seeds − 1) sem for several. '
                    '"ours" says where our runs depart from the report\'s setting.')
CONCLUSIONS_RULES = """\
Δ: the final validation accuracy of the claim's winner minus that of the setting in "against", in points, ± its \
standard error. A difference is beyond noise when noise alone would make one as large less often than \
{alpha:.0%} of the time (two-sided p < {alpha}). A claim that a setting is the best holds only against every rival.

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
noise adds. Past {cap} seeds per setting it says roughly how many (stats.seeds_needed_roughly). `make seeds` \
adds seeds only where a comparison is open, a round at a time (runner/seeds.py).
- **Holm's correction.** A family of comparisons at α 0.05 each (the report's claims make eleven): even if no \
setting differed from another, about one in twenty would pass by chance. Holm's step-down rule (Holm 1979; \
stats.holm) keeps the chance of calling even one of the family real by chance at α: it compares the smallest p of \
m with α/m, the next with α/(m − 1), and so on, and stops at the first that is not below its threshold; it and \
every larger p stay within noise. It holds whatever the dependence between the comparisons, and several share a \
setting. The report's numbers are one family, our comparisons with a test another."""


def results(number, title, rows):
    """Table N from report.results' Rows; under it, the runs left out as damaged, and what each ± is."""
    lines = [f'## Table {number}: {title}', '',
             '| setting | | epochs | seeds | train loss | train acc % | val loss | val acc % | test loss | test acc % |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for row in rows:
        lines.append(f'| {row.label} | report | {row.epochs} | 1 | {numbers(row.report)} |' if row.report else
                     f'| {row.label} | report | | | no number |' + ' |' * 5)
        if not row.ours:
            lines.append(f'| {row.label} | ours | | 0 | no run |' + ' |' * 5)
            continue
        lines.append(f'| {row.label} | ours{f" ({row.note})" if row.note else ""} | {row.our_epochs} | {row.seeds} | '
                     f'{numbers(row.ours)} |')
        lines.append(f'| {row.label} | difference | | | ' + ' | '.join(
            cell(value, percent=key.endswith('acc'), signed=True) for key, value in row.difference.items()) + ' |')
    notes = [f'Left out of {row.label}: {line}.' for row in rows for line in row.left_out]
    return '\n'.join(lines + [''] + notes + ([''] if notes else []) + [UNCERTAINTY_RULE])


def numbers(values):
    """A line's cells, from {metric: an accuracy's Estimate, or a (mean, sd) pair}."""
    return ' | '.join(accuracy_cell(value) if key in ('val_acc', 'test_acc') else
                      cell(*value, percent=key.endswith('acc')) for key, value in values.items())


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


def conclusions(compared, families, alpha, cap):
    """The Conclusions from report.conclusions' values, with their rules at `alpha` and `cap` seeds."""
    lines = ['## Conclusions: which of the report\'s claims survive the noise', '',
             '| the report\'s claim | against | report: Δ val acc | beyond one run\'s noise? | '
             'ours: Δ val acc | our test | verdict |',
             '|---|---|---:|---|---:|---|---|']
    settling = ['### With Holm\'s correction, and the seeds that would settle each comparison', '',
                '| comparison | the report, with Holm\'s correction | ours, with Holm\'s correction | seeds to settle |',
                '|---|---|---|---|']
    for c in compared:
        lines.append(f'| {c.claim} | {c.rival} | {points(c.theirs) if c.theirs else "no number"} | '
                     f'{(("yes, " if c.beyond else "no, ") + p_text(c.theirs.p)) if c.theirs else ""} | '
                     f'{points(c.ours) if c.ours else ""} | {f"{c.ours.test}: {p_text(c.ours.p)}" if c.ours else ""} | '
                     f'{c.verdict} |')
        settling.append(f'| {c.winner} against {c.rival} | {held(c.theirs, c.their_holm, alpha) if c.theirs else ""} | '
                        f'{held(c.ours, c.our_holm, alpha) if c.ours else ""} | {seeds(c.seeds, cap) if c.seeds else ""} |')
    theirs, ours = families
    chance = (by_chance('these {} comparisons, by the report\'s numbers,', alpha, *theirs) if theirs else
              'The report has no numbers for them.')
    chance += ' ' + (by_chance('the {} with a test of ours,', alpha, *ours) if ours else 'None has a test of ours yet.')
    return '\n'.join(lines + [''] + settling + ['', chance, '', CONCLUSIONS_RULES.format(alpha=alpha, cap=cap)])


def points(margin):
    return f'{100 * margin.difference:+.2f} ± {100 * margin.se:.2f} (se)'


def p_text(p, exact=False):
    """p to three places; below 0.001, 'p < 0.001', or if `exact` to two figures, where Holm's thresholds can lie."""
    return f'p = {p:.3f}' if p >= 0.001 or (exact and p == 0) else (f'p = {p:.1e}' if exact else 'p < 0.001')


def held(margin, holm, alpha):
    """A margin's verdict with Holm's correction (a report.Held), its p and its step's threshold."""
    but = ', but a smaller p was not below its own' if holm.below and not holm.rejected else ''
    return (f'{holm.verdict}: {p_text(margin.p, exact=True)}, {"below" if holm.below else "not below"} '
            f'{alpha}/{holm.step} = {alpha / holm.step:.4f}{but}')


def by_chance(which, alpha, m, beyond, kept):
    """How many of a family of m comparisons chance alone would call beyond noise, and how many are
    (`beyond` alone, `kept` with Holm's correction); `which` names the family, its size in {}."""
    return (f'Of {which.format(m)} about {m} × {alpha} = {m * alpha:.2f} would be beyond noise by chance '
            f'alone at α {alpha}, were no setting better than another: {beyond} are at p < {alpha}, and {kept} stay '
            f'beyond noise with Holm\'s correction, which holds the chance of even one such call by chance at {alpha}.')


def seeds(settle, cap):
    """'11 a setting', or 'about 80 a setting, past the cap of 20', from a report.Seeds."""
    if settle.roughly == float('inf'):  # stats.seeds_needed_roughly's answer for a margin of 0
        return 'none would: the margin is 0'
    at_least, adds = ('at least ', ': training noise adds') if settle.floor else ('', '')
    if settle.needed is None:
        return f'{at_least}about {settle.roughly:,} a setting, past the cap of {cap}{adds}'
    missed = (f' (it has {settle.have}: at power 0.80, one study in five misses such a margin)'
              if settle.needed <= settle.have else '')
    return f'{at_least}{settle.needed} a setting{adds}{missed}'


def write(out, runs_dir, seed, table1, tables, conclusions_):
    """figures/tables.md: Table 1 (None without the data set), Tables 2-7, and the Conclusions, also printed."""
    sections = ['# The study, regenerated', '',
                f'From the runs in `{runs_dir}/`; made by `python report.py`. Accuracies in %. '
                f'The report\'s numbers are from its text, as study.toml gives them.', '']
    if table1 is not None:
        sections += [f'## Table 1: images per class (split seed {seed})', '', table1, '']
    sections += [text for table in tables + [conclusions_] for text in (table, '')]
    print('\n' + conclusions_ + '\n')  # the section a student should read first
    with open(os.path.join(out, 'tables.md'), 'w') as f:
        f.write('\n'.join(sections))
    return ['tables.md']


def bench(compared, study_epochs, compiling=None):
    """bench.py's table: a row per pipeline as bench.compare() gives it. With compiling, (seconds
    spent, seconds saved per 40k epoch, epochs after which it pays), a line on what torch.compile costs."""
    lines = [f'\n| pipeline | train images/s | eval images/s | s per 40k epoch | vs plain | whole study ({study_epochs:,} epochs) |',
             '|---|---:|---:|---:|---:|---:|']
    lines += [f'| {label} | {train:,.0f} | {evals:,.0f} | {epoch:.2f} | {faster:.1f}x | {hours:.1f} h |'
              for label, train, evals, epoch, faster, hours in compared]
    if compiling:
        spent, saved, pays_after = compiling
        lines.append(f'\ntorch.compile spent {spent:.0f} s compiling before its first steps; ' + (
            f'it saves {saved:.1f} s per 40k epoch, so it pays for itself after {pays_after:.1f} epochs.'
            if pays_after is not None else 'it saves no time per epoch here.'))
    return '\n'.join(lines)
