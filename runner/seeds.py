"""Seeds where they decide: the study in rounds, each adding seeds only where a verdict is open.

    make seeds                                        every claim's comparisons, up to 5 seeds a setting
    make seeds EXP='lr-sweep schedule' MAX_SEEDS=3    those experiments' comparisons, up to 3 seeds
    make -j4 seeds GPUS='0 1 2 3'                     each round's runs four at a time, a GPU each
    make seeds SLURM='--gres=gpu:1 --time=6:00:00'    each round one Slurm job array, waited for

`make study SEEDS='0 1 2'` triples every setting: 42 runs. Yet five of the report's eleven
comparisons are beyond the noise of one run, and some of the others would need more seeds than
anyone can afford (the Conclusions' "seeds to settle"). So, as Colas, Sigaud and Oudeyer (2018,
"How many random seeds?") do it: look at what the runs say, add seeds only to the settings of the
comparisons still open, and look again.

A round:
 1. Read the runs of every setting in play (runs.collect) and judge each comparison of a claim,
    its winner against one rival, by the tables' own test (report.our_margin), as one of
      settled     at a look so far (below), Welch's p over the seeds was below the threshold
      at the cap  both have MAX_SEEDS seeds, and it is not settled: within noise, for good
      stuck       a run of one of the two diverged, or is damaged: no verdict from seeds
      open        the rest: fewer than two seeds a setting, so no look yet, or p not below the threshold
 2. Bring both settings of each open comparison to one seed more than the fewer of them has (two,
    for the first look), never past MAX_SEEDS; a setting of two open comparisons takes the larger.
    Each gets the lowest seed numbers it has no finished run of; seed N is seedN/ and --seed N.
 3. Run them, through make (so -j, GPUS= and make's checks of the run folders hold), or with SLURM
    as one job array that sbatch --wait waits for; then look again. Stop when none is open.

The looks. A comparison is looked at with two seeds a setting, then three, ..., up to MAX_SEEDS:
at most MAX_SEEDS - 1 looks, the look at n seeds taking each setting's n lowest-numbered seeds.
So a setting that gains seeds for another comparison changes no look already made, and a
comparison once settled stays settled; and a study stopped half-way and started again (make
seeds again) makes the same looks, since they are read from the run folders each time.

The threshold: Bonferroni over the looks. Each look is another chance for noise to pass for a
difference, and stopping at the first p below 0.05 would call one that is not there in about 7%
of such studies at MAX_SEEDS = 5, not 5% (simulated in tests/test_stats.py). So each look must pass
    p < 0.05 / (MAX_SEEDS - 1)            (stats.sequential_alpha: 0.0125 at 5 seeds, 0.025 at 3)
and then, whatever the looks have in common, P(some look passes by chance) <= the sum over the
looks of 0.05 / (MAX_SEEDS - 1) = 0.05. Why this rule and not another: it needs no table, it holds
for however the looks are correlated (they share their seeds), and it is easy to check. Its price
is caution: the true rate is below 0.05, and a difference needs a larger t than Pocock's (1977)
constant threshold or O'Brien and Fleming's (1979) would ask at the last look. Decide MAX_SEEDS
before the first round: the threshold follows it.

What the tables show is the same runs by the same test, at p < 0.05 as if the seeds had been
fixed in advance; what this prints is the verdict that holds over the looks.
"""
import contextlib
import io
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
from typing import NamedTuple

import report
from bookkeeping import flags, runs, study, tables
from runner import checks, slurm
from stats import ALPHA, sequential_alpha

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project, where make runs


class Comparison(NamedTuple):
    """A claim's winner against one of its rivals, as the Conclusions show it."""
    winner: study.Shown
    rival: study.Shown

    def name(self):
        return f'{self.winner.label} against {self.rival.label}'


class Look(NamedTuple):
    """What the runs say of one comparison before a round: its state and the line that says why."""
    comparison: Comparison
    state: str  # 'settled', 'at the cap', 'stuck' or 'open'
    why: str


# ---------------------------------------------------------------------------------------------
# A round, planned: the pure part, which the tests check on run folders written by hand.


def look(comparison, found, max_seeds):
    """Judge one comparison from `found` (runs.collect's): settled, at the cap, stuck or open."""
    pair = (comparison.winner, comparison.rival)
    for shown in pair:
        setting_found = found[shown.setting.key]
        if setting_found.left_out:  # one line of its own, runs.Damaged's: which file, what to do
            return Look(comparison, 'stuck', f'{shown.label} has a damaged run: {setting_found.left_out[0]}')
        gone = [r for r in setting_found.runs if report.diverged(r)]
        if gone:
            return Look(comparison, 'stuck', f'{shown.label} diverged ({os.path.basename(gone[0]["folder"])}, at epoch '
                                             f'{gone[0]["summary"]["diverged_at"]}): no verdict from seeds')
    done = [sorted(report.finished(found[shown.setting.key].runs), key=seed_number) for shown in pair]
    have, threshold = min(map(len, done)), sequential_alpha(max_seeds - 1)
    if have < 2:
        return Look(comparison, 'open', f'{len(done[0])} and {len(done[1])} seeds: the first look needs 2 a setting')
    for n in range(2, min(have, max_seeds) + 1):  # every look so far, at n seeds a setting: each one's first n
        margin = report.our_margin(done[0][:n], done[1][:n])
        said = f'{tables.points(margin)}, {margin.test}: {tables.p_text(margin.p, exact=True)}'
        if margin.p < threshold:
            return Look(comparison, 'settled', f'{"reproduced" if margin.difference > 0 else "reversed"}: {said} '
                                               f'< {threshold:.4g}')
    if have >= max_seeds:
        return Look(comparison, 'at the cap', f'within noise at {max_seeds} seeds a setting: {said}, not below {threshold:.4g}')
    return Look(comparison, 'open', f'{said}, not below {threshold:.4g}')


def plan(comparisons, found, max_seeds):
    """The next round: a Look for each comparison, and {setting key: (new seed numbers, the names of
    the open comparisons they are for)} for each setting that gets seeds; {} when none is open."""
    looks = [look(c, found, max_seeds) for c in comparisons]
    wanted = {}  # setting key: (how many finished seeds it is to have, for which comparisons)
    for open_ in (lk for lk in looks if lk.state == 'open'):
        pair = (open_.comparison.winner, open_.comparison.rival)
        fewer = min(len(report.finished(found[shown.setting.key].runs)) for shown in pair)
        target = min(max_seeds, max(2, fewer + 1))
        for shown in pair:
            count, why = wanted.get(shown.setting.key, (0, []))
            wanted[shown.setting.key] = (max(count, target), why + [open_.comparison.name()])
    new = {}
    for key, (target, why) in wanted.items():
        have = {seed_number(r) for r in report.finished(found[key].runs)}
        if target > len(have):
            new[key] = (list(itertools.islice((n for n in itertools.count() if n not in have), target - len(have))), why)
    return looks, new


def seed_number(run):
    """N, of a run in RUNS/EXPERIMENT/SETTING/seedN (runs.collect reads only those)."""
    return int(os.path.basename(run['folder'])[len('seed'):])


def comparisons_in(the_study, experiments):
    """The claims' comparisons whose two settings are both in `experiments`; and what is left out:
    a line for each with one setting in them and one not, and one line counting the rest."""
    kept, halves, others = [], [], 0
    for claim in the_study.claims:
        for rival in claim.rivals:
            comparison = Comparison(claim.winner, rival)
            outside = [shown.setting for shown in comparison if shown.setting.experiment not in experiments]
            if not outside:
                kept.append(comparison)
            elif len(outside) == 1:
                halves.append(f'left out: {comparison.name()}: {outside[0].key} is not in EXP; add '
                              f'{outside[0].experiment} to EXP to settle it too')
            else:
                others += 1
    return kept, halves + [f'left out: {others} comparison{"s" * (others != 1)} of settings outside EXP'] * bool(others)


def printed(looks, new, the_study, round_number, max_seeds):
    """What a round says before it runs: each comparison's state and why, then each setting that
    gets seeds, which, and for which comparisons."""
    counts = {state: sum(lk.state == state for lk in looks) for state in ('open', 'settled', 'at the cap', 'stuck')}
    lines = [f'round {round_number}: ' + ', '.join(f'{n} {state}' for state, n in counts.items() if n)
             + f' (settled at Welch\'s p < {ALPHA} / {max_seeds - 1} looks = {sequential_alpha(max_seeds - 1):.4g})']
    lines += [f'  {lk.state + ":":11s} {lk.comparison.name()}: {lk.why}' for lk in looks]
    settings = {s.key: s for s in the_study.settings()}
    for key, (numbers, why) in new.items():
        seeds = f'seed{"s" * (len(numbers) > 1)} {", ".join(map(str, numbers))}'
        lines.append(f'    {key} ({settings[key].label}): {seeds}, for {"; ".join(dict.fromkeys(why))}')
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# Running a round: through make, or as one Slurm job array, waited for.


def run_round(folders, seeds, options, round_number):
    """Run the run folders of a round to their end, with this Python (a Slurm task's too: it builds
    no .venv of its own). Returns '' if each ended (finished, or diverged), else the line that says
    which did not, and where to look."""
    if options.sbatch is None:
        made = subprocess.run([options.make, '--no-print-directory', '-C', ROOT, '-o', '.venv/installed',
                               f'PY={sys.executable}', f'RUNS={options.runs}', f'SEEDS={seeds}', f'ARGS={options.args}',
                               f'GPUS={options.gpus}', *(f'{folder}/summary.json' for folder in folders)],
                              pass_fds=jobserver())
        failure = f'make exited with status {made.returncode}; its output above says why'
    else:  # --wait: sbatch returns when the array has ended, with its highest exit status
        print(f'  one Slurm job array, seeds-round{round_number}, waited for (squeue --name seeds-round{round_number})')
        try:
            slurm.submit(folders, f'{options.sbatch} --wait', [f'RUNS={options.runs}', f'SEEDS={seeds}', f'ARGS={options.args}',
                                                               f'PY={sys.executable}'], f'seeds-round{round_number}', options.runs)
            failure = ''
        except SystemExit as e:  # sbatch refused the job; or, with --wait, a task failed: the run folders say which
            failure = str(e)
    unended = [f for f in folders if not os.path.exists(os.path.join(f, 'summary.json'))]
    if not unended:
        return ''
    which = f'{len(unended)} of its {len(folders)} runs did not end ({unended[0]}{" and others" * (len(unended) > 1)})'
    if options.sbatch is None:
        return f'round {round_number}: {which}: {failure}'
    if not any(os.path.exists(os.path.join(f, 'slurm.log')) for f in unended):  # no task ran: sbatch's own line
        return f'round {round_number}: {which}: {failure}'
    return f'round {round_number}: {which}; each one\'s slurm.log ends with why, {unended[0]}/slurm.log for one'


def jobserver():
    """The file descriptors of make's job slots, which `make -jN seeds` hands this process (the
    recipe line names $(MAKE)) and which the make it starts must inherit, or it runs one job at a
    time; Python closes every other descriptor of a child. GNU make 4.4's named pipe needs none."""
    found = re.search(r'--jobserver-(?:auth|fds)=(\d+),(\d+)', os.environ.get('MAKEFLAGS', ''))
    fds = tuple(int(fd) for fd in found.groups()) if found else ()
    with contextlib.suppress(OSError):
        return tuple(fd for fd in fds if os.fstat(fd))
    return ()


def dry_run():
    """Whether make was asked only to show what it would do (make -n seeds), which runs this recipe
    anyway, as it runs every recipe that starts make."""
    flags = os.environ.get('MAKEFLAGS', '')
    first = flags.split()[0] if flags.strip() and not flags.startswith((' ', '-')) else ''
    return 'n' in first and '=' not in first


# ---------------------------------------------------------------------------------------------
# From the command line (make seeds).


def stale(found, settings, args):
    """A line for each run of the settings in play made with other training flags than this study
    asks for (make's check, runner/checks.py): a quick try's runs are not seeds of the study."""
    lines = []
    for setting in settings:
        for run in found[setting.key].runs:
            asked = shlex.split(flags.command_line(setting.flags)) + ['--seed', str(seed_number(run))] + shlex.split(args)
            phrases = checks.examined(run['folder'], asked).departures
            if phrases:
                lines.append(f'  {run["folder"]}: {"; ".join(phrases)}')
    return lines


def read(runs_dir, the_study, experiments):
    """runs.collect of the chosen experiments, without its line for each setting with no run yet:
    what is damaged, a Look says."""
    with contextlib.redirect_stdout(io.StringIO()):
        return runs.collect(runs_dir, the_study._replace(experiments=experiments))


def parse(argv):
    parser = flags.Parser(prog='seeds.py', description='Add seeds, a round at a time, only where a comparison of the '
                                                       'report\'s claims is open (make seeds).')
    parser.add_argument('--runs', default='runs', help='folder of the runs (make\'s RUNS; default: %(default)s)')
    parser.add_argument('--exp', default='', help='the experiments whose comparisons to settle (make\'s EXP; default: all)')
    parser.add_argument('--max-seeds', type=int, default=5, help='the most seeds a setting (MAX_SEEDS; default: %(default)s)')
    parser.add_argument('--args', default='', help='train.py flags added to every run (make\'s ARGS)')
    parser.add_argument('--gpus', default='', help='GPUs for the runs to take, one each (make\'s GPUS)')
    parser.add_argument('--sbatch', help='sbatch options: each round a Slurm job array (make\'s SLURM)')
    parser.add_argument('--make', default='make', help='the make that runs a round (default: %(default)s)')
    parser.add_argument('--study', default=study.STUDY, help='the study\'s file (default: study.toml)')
    options = parser.parse_args(argv)
    if options.max_seeds < 2:
        parser.error(f'MAX_SEEDS={options.max_seeds}: the first look needs 2 seeds a setting')
    checker = flags.parser()  # ARGS as train.py will read them: a bad flag, one line now, not one per run
    checker.error = lambda message: parser.error(f'ARGS={options.args!r}: {message}')
    try:
        flags.check(checker.parse_args(shlex.split(options.args) + ['--out', 'unused']))
    except ValueError as e:
        checker.error(str(e))
    return parser, options


def main(argv=None):
    parser, options = parse(argv)
    sys.stdout.reconfigure(line_buffering=True)  # in order with make's and train.py's lines
    try:
        the_study = study.load(options.study)
    except study.StudyError as e:
        parser.exit(1, f'seeds.py: error: {e}\n')
    names = options.exp.split() or [e.name for e in the_study.experiments]
    unknown = [n for n in names if n not in {e.name for e in the_study.experiments}]
    if unknown:
        parser.error(f'EXP: no experiment {unknown[0]!r} in study.toml; its experiments: '
                     f'{" ".join(e.name for e in the_study.experiments)}')
    experiments = tuple(e for e in the_study.experiments if e.name in names)
    comparisons, left = comparisons_in(the_study, names)
    for line in left:
        print(line)
    if not comparisons:
        parser.exit(1, f'seeds.py: error: no claim compares two settings of {" ".join(names)}\n')
    found = read(options.runs, the_study, experiments)
    differ = stale(found, [s for e in experiments for s in e.settings], options.args)
    if differ:
        print('\n'.join(differ), file=sys.stderr)
        parser.exit(1, f'seeds.py: error: {len(differ)} run folder{"s" * (len(differ) > 1)} above {"hold" if len(differ) > 1 else "holds"} a run made with '
                       f'other training flags than asked for, so none is a seed of this study, and nothing was run: '
                       f'put this study in another folder (RUNS=...), or delete them\n')
    return rounds(options, the_study, experiments, comparisons, found)


def rounds(options, the_study, experiments, comparisons, found):
    """Round after round until no comparison is open; the last look, printed. Exit status 1 if a
    round's runs did not end, or a damaged run was left out."""
    for round_number in itertools.count(1):
        looks, new = plan(comparisons, found, options.max_seeds)
        if not new:
            break
        print(printed(looks, new, the_study, round_number, options.max_seeds))
        settings = {s.key: s for s in the_study.settings()}
        folders = [os.path.join(options.runs, settings[key].experiment, settings[key].folder, f'seed{n}')
                   for key, (numbers, _) in new.items() for n in numbers]
        seeds = ' '.join(map(str, sorted({n for numbers, _ in new.values() for n in numbers})))
        if dry_run():
            print(f'make -n: round {round_number} would run {len(folders)} runs (SEEDS=\'{seeds}\'), and nothing is run')
            return 0
        failure = run_round(folders, seeds, options, round_number)
        if failure:
            sys.exit(f'seeds.py: error: {failure}')
        found = read(options.runs, the_study, experiments)
    print(f'done after {round_number - 1} round{"s" * (round_number != 2)}: no comparison is open')
    for lk in looks:
        print(f'  {lk.state + ":":11s} {lk.comparison.name()}: {lk.why}')
    print(f'make tables RUNS={shlex.quote(options.runs)} sets them among the Conclusions, at p < {ALPHA} as if the seeds '
          f'had been fixed in advance')
    return 1 if any(f.left_out for f in found.values()) else 0


if __name__ == '__main__':
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # piped into a program that ends (| head): stop quietly
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C reaches make and its runs too: each stops with its last epoch on disk
        sys.exit('\nstopped: make seeds again goes on from here; finished runs count, interrupted ones resume')
