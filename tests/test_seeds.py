"""seeds.py promises a study in rounds that adds seeds only where a verdict is open: the first look
at two seeds a setting; a comparison settled only when Welch's p passes the threshold that holds
over all the looks, 0.05 / (MAX_SEEDS - 1); no seed for a comparison settled, at the cap, or with a
diverged or damaged run; a plan printed before each round; and rounds run through make, so that
-j, GPUS and make's checks hold (tests/test_slurm.py runs them as Slurm arrays).

The quick tests write run folders by hand, with accuracies chosen so that each p is worked out in
the docstring; the slow one has make run the rounds for real."""
import json
import math
import os
import re
import subprocess

import pytest

import report
from runner import seeds
from bookkeeping import study
from conftest import A_RUN, MAKE, write_run
from stats import sequential_alpha, t_p

STUDY = study.load()
LR_SWEEP = tuple(e for e in STUDY.experiments if e.name == 'lr-sweep')
BY_LR = {'0.01': 'lr-sweep/lr0.01', '0.1': 'lr-sweep/lr0.1', '0.001': 'lr-sweep/lr0.001'}


def lr_runs(folder, accuracies, flags=None):
    """Finished runs of the lr sweep: {lr: (seed 0's validation accuracy, seed 1's, ...)}."""
    for lr, accs in accuracies.items():
        for seed, acc in enumerate(accs):
            write_run(folder / f'lr-sweep/lr{lr}/seed{seed}', {'lr': float(lr), 'seed': seed} | (flags or {}), (acc,))


def planned(folder, max_seeds):
    """seeds.plan for the lr sweep's two comparisons: {name: (state, why)}, {setting key: new seed numbers}."""
    comparisons, _ = seeds.comparisons_in(STUDY, ['lr-sweep'])
    looks, new = seeds.plan(comparisons, seeds.read(str(folder), STUDY, LR_SWEEP), max_seeds)
    return {lk.comparison.name(): (lk.state, lk.why) for lk in looks}, {key: numbers for key, (numbers, _) in new.items()}


def test_the_first_look_needs_two_seeds_a_setting(tmp_path):
    """One run of each rate (the study as the report ran it): no look yet, so round 1 adds seed 1
    to every setting of the two comparisons, lr 0.01 once though both need it."""
    lr_runs(tmp_path, {'0.01': (0.86,), '0.1': (0.72,), '0.001': (0.79,)})
    looks, new = planned(tmp_path, 5)
    assert looks == {'lr 0.01 against lr 0.1': ('open', '1 and 1 seeds: the first look needs 2 a setting'),
                     'lr 0.01 against lr 0.001': ('open', '1 and 1 seeds: the first look needs 2 a setting')}
    assert new == {BY_LR['0.01']: [1], BY_LR['0.1']: [1], BY_LR['0.001']: [1]}


@pytest.mark.exercise('welch')
def test_after_round_1_only_the_open_comparison_gets_seeds(tmp_path):
    """Two seeds of each rate, each pair 2 points apart, so sd √2 points and sem 1 point each:
    lr 0.01 at 86 and 88%, lr 0.1 at 72 and 74%, lr 0.001 at 79 and 81%. Welch's se of a difference
    is √(1² + 1²) = √2 points, with df = (1 + 1)² / (1 / 1 + 1 / 1) = 2, where Student's t has a
    closed form, p = 1 - |t| / √(2 + t²). With MAX_SEEDS = 3 there are at most 2 looks, at 2 and 3
    seeds, and each must pass 0.05 / 2 = 0.025:
        lr 0.01 against lr 0.1:   means 87 and 73, t = 14 / √2 = 9.90, t² = 98,
                                  p = 1 - √(98 / 100) = 0.0101 < 0.025: settled, reproduced
        lr 0.01 against lr 0.001: means 87 and 80, t = 7 / √2 = 4.95, t² = 24.5,
                                  p = 1 - √(24.5 / 26.5) = 0.0385: below 0.05, as the tables
                                  would call it, but not below 0.025: open
    So round 2 adds seed 2 to lr 0.01 and lr 0.001, and none to lr 0.1."""
    lr_runs(tmp_path, {'0.01': (0.86, 0.88), '0.1': (0.72, 0.74), '0.001': (0.79, 0.81)})
    assert 1 - math.sqrt(98 / 100) == pytest.approx(t_p(math.sqrt(98), 2)) == pytest.approx(0.0101, abs=1e-4)
    assert 1 - math.sqrt(24.5 / 26.5) == pytest.approx(t_p(math.sqrt(24.5), 2)) == pytest.approx(0.0385, abs=1e-4)
    assert sequential_alpha(2) == 0.025
    looks, new = planned(tmp_path, 3)
    assert looks['lr 0.01 against lr 0.1'] == ('settled', 'reproduced: +14.00 ± 1.41 (se), Welch t 9.9, df 2, '
                                                          '2 and 2 seeds: p = 0.010 < 0.025')
    assert looks['lr 0.01 against lr 0.001'] == ('open', '+7.00 ± 1.41 (se), Welch t 4.9, df 2, 2 and 2 seeds: '
                                                         'p = 0.038, not below 0.025')
    assert new == {BY_LR['0.01']: [2], BY_LR['0.001']: [2]}
    # With a single look (MAX_SEEDS = 2) the threshold is 0.05 itself: both settled, nothing to add.
    looks, new = planned(tmp_path, 2)
    assert [state for state, _ in looks.values()] == ['settled', 'settled'] and new == {}


@pytest.mark.exercise('welch')
def test_a_comparison_once_settled_stays_settled(tmp_path):
    """As above, and lr 0.01 gained a seed 2 at 20% for its other comparison. The look at 2 seeds a
    setting takes each one's first two, seeds 0 and 1, and still finds p = 0.010: settled, and lr
    0.1 gets nothing, though all of lr 0.01's seeds against lr 0.1's would now be within noise.
    Looking again at the same question with the extra seed would be a look the threshold did not pay for."""
    lr_runs(tmp_path, {'0.01': (0.86, 0.88, 0.20), '0.1': (0.72, 0.74), '0.001': (0.79, 0.81, 0.80)})
    looks, new = planned(tmp_path, 3)
    assert looks['lr 0.01 against lr 0.1'][0] == 'settled' and 'p = 0.010 < 0.025' in looks['lr 0.01 against lr 0.1'][1]
    assert BY_LR['0.1'] not in new
    found = seeds.read(str(tmp_path), STUDY, LR_SWEEP)
    assert report.our_margin(found[BY_LR['0.01']].runs, found[BY_LR['0.1']].runs).p > 0.5


@pytest.mark.exercise('welch')
def test_a_look_that_passed_counts_though_a_later_look_would_not(tmp_path):
    """Both settings now have three seeds, so there is a later look to make: at 2 seeds a setting,
    lr 0.01 at 86, 88% against lr 0.1 at 72, 74%, p = 0.010 < 0.025 (as above); seed 2 of each, 20%
    and 73%, makes the look at 3 seeds within noise. Every look so far is judged, the first too: the
    comparison stays settled, and is not called within noise at the cap."""
    lr_runs(tmp_path, {'0.01': (0.86, 0.88, 0.20), '0.1': (0.72, 0.74, 0.73)})
    looks, new = planned(tmp_path, 3)
    assert looks['lr 0.01 against lr 0.1'] == ('settled', 'reproduced: +14.00 ± 1.41 (se), Welch t 9.9, df 2, '
                                                          '2 and 2 seeds: p = 0.010 < 0.025')
    assert BY_LR['0.1'] not in new
    found = seeds.read(str(tmp_path), STUDY, LR_SWEEP)
    assert report.our_margin(found[BY_LR['0.01']].runs, found[BY_LR['0.1']].runs).p > 0.5


@pytest.mark.exercise('welch')
def test_within_noise_at_the_cap_gets_no_more_seeds(tmp_path):
    """Three seeds of lr 0.01 and lr 0.1, as in tests/test_report.py: 86, 87, 88% against 80, 82,
    84%, t = 3.873 at df 2, p = 1 - 3.873 / √(2 + 15) = 0.061: with MAX_SEEDS = 3 at the cap,
    within noise for good. With MAX_SEEDS = 4, one more look: seed 3 to both, 0.05 / 3 to pass."""
    lr_runs(tmp_path, {'0.01': (0.86, 0.87, 0.88), '0.1': (0.80, 0.82, 0.84)})
    looks, new = planned(tmp_path, 3)
    assert looks['lr 0.01 against lr 0.1'] == ('at the cap', 'within noise at 3 seeds a setting: +5.00 ± 1.29 (se), '
                                                             'Welch t 3.9, df 2, 3 and 3 seeds: p = 0.061, not below 0.025')
    assert 1 - 3.873 / math.sqrt(17) == pytest.approx(0.061, abs=1e-3)
    assert looks['lr 0.01 against lr 0.001'][0] == 'open' and new == {BY_LR['0.001']: [0, 1]}  # no run yet: two seeds
    looks, new = planned(tmp_path, 4)
    assert looks['lr 0.01 against lr 0.1'][1].endswith('p = 0.061, not below 0.01667')
    assert new == {BY_LR['0.01']: [3], BY_LR['0.1']: [3], BY_LR['0.001']: [0, 1]}


@pytest.mark.exercise('welch')
def test_a_setting_behind_is_brought_to_one_more_than_the_fewer_and_gaps_are_filled(tmp_path):
    """lr 0.01 has seeds 0, 1 and 2 (86, 87, 88%), lr 0.001 only seed 0 and seed 2 (86, 88%; seed 1
    was never run), and lr 0.1 none: the comparison of lr 0.01 and lr 0.001 is open, and its next
    look is at one seed more than the fewer has, 3, so lr 0.001 takes seed 1, the lowest it lacks,
    and lr 0.01, which has 3, nothing."""
    lr_runs(tmp_path, {'0.01': (0.86, 0.87, 0.88)})
    for seed, acc in ((0, 0.86), (2, 0.88)):
        write_run(tmp_path / f'lr-sweep/lr0.001/seed{seed}', {'lr': 0.001, 'seed': seed}, (acc,))
    looks, new = planned(tmp_path, 5)
    assert looks['lr 0.01 against lr 0.001'][0] == 'open'  # means 87 and 87: a margin of 0
    assert new[BY_LR['0.001']] == [1] and BY_LR['0.01'] not in new


@pytest.mark.exercise('welch')
def test_a_diverged_or_damaged_run_stops_the_seeds_of_its_comparisons_only(tmp_path):
    """lr 0.1's seed 1 diverged: its comparison has no verdict from seeds, and lr 0.1 gets no more;
    lr 0.001's runs are fine, and its comparison goes on. A damaged run is named, in one line."""
    lr_runs(tmp_path, {'0.01': (0.86, 0.88), '0.001': (0.79, 0.81)})
    write_run(tmp_path / 'lr-sweep/lr0.1/seed0', {'lr': 0.1}, (0.72,))
    write_run(tmp_path / 'lr-sweep/lr0.1/seed1', {'lr': 0.1, 'seed': 1}, (0.3, 0.1), summary='diverged')
    looks, new = planned(tmp_path, 3)
    assert looks['lr 0.01 against lr 0.1'] == ('stuck', 'lr 0.1 diverged (seed1, at epoch 2): no verdict from seeds')
    assert new == {BY_LR['0.01']: [2], BY_LR['0.001']: [2]}
    config = tmp_path / 'lr-sweep/lr0.001/seed1/config.json'
    config.write_text(config.read_text()[:30])
    looks, new = planned(tmp_path, 3)
    state, why = looks['lr 0.01 against lr 0.001']
    assert state == 'stuck' and why.startswith(f'lr 0.001 has a damaged run: {config.parent}: config.json is cut short; ')
    assert len(why.splitlines()) == 1 and new == {}


@pytest.mark.exercise('welch')
def test_the_plan_printed_before_a_round_says_which_settings_get_which_seeds_and_why(tmp_path):
    lr_runs(tmp_path, {'0.01': (0.86, 0.88), '0.1': (0.72, 0.74), '0.001': (0.79, 0.81)})
    comparisons, _ = seeds.comparisons_in(STUDY, ['lr-sweep'])
    looks, new = seeds.plan(comparisons, seeds.read(str(tmp_path), STUDY, LR_SWEEP), 3)
    assert seeds.printed(looks, new, STUDY, 2, 3).splitlines() == [
        "round 2: 1 open, 1 settled (settled at Welch's p < 0.05 / 2 looks = 0.025)",
        '  settled:    lr 0.01 against lr 0.1: reproduced: +14.00 ± 1.41 (se), Welch t 9.9, df 2, 2 and 2 seeds: p = 0.010 < 0.025',
        '  open:       lr 0.01 against lr 0.001: +7.00 ± 1.41 (se), Welch t 4.9, df 2, 2 and 2 seeds: p = 0.038, not below 0.025',
        '    lr-sweep/lr0.01 (lr 0.01): seed 2, for lr 0.01 against lr 0.001',
        '    lr-sweep/lr0.001 (lr 0.001): seed 2, for lr 0.01 against lr 0.001']


def test_exp_picks_the_comparisons_whose_two_settings_it_holds():
    """EXP='erase-p': p 0.5 against p 0.8; p 0.5 against p 1.0 needs erase too, and says so."""
    kept, left = seeds.comparisons_in(STUDY, ['erase-p'])
    assert [c.name() for c in kept] == ['p 0.5 against p 0.8']
    assert left == ['left out: p 0.5 against p 1.0: erase/p1.0 is not in EXP; add erase to EXP to settle it too',
                    'left out: 9 comparisons of settings outside EXP']
    assert len(seeds.comparisons_in(STUDY, [e.name for e in STUDY.experiments])[0]) == 11


def test_make_n_seeds_prints_the_first_round_and_runs_nothing(tmp_path):
    """make -n runs a recipe that starts make, as this one does, so seeds.py itself must not run."""
    shown = subprocess.run([*MAKE, '-n', 'seeds', f'RUNS={tmp_path}/runs', 'EXP=schedule', 'MAX_SEEDS=4'],
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert 'round 1: 1 open (settled at Welch\'s p < 0.05 / 3 looks = 0.01667)' in shown.stdout
    assert '    schedule/constant (constant): seeds 0, 1, for cosine against constant' in shown.stdout
    assert shown.stdout.rstrip().endswith("make -n: round 1 would run 4 runs (SEEDS='0 1'), and nothing is run")
    assert not os.path.exists(tmp_path / 'runs')


@pytest.mark.parametrize('argv, says', [
    (['--max-seeds', '1'], 'seeds.py: error: MAX_SEEDS=1: the first look needs 2 seeds a setting'),
    (['--exp', 'lr'], "seeds.py: error: EXP: no experiment 'lr' in study.toml; its experiments: lr-sweep schedule"),
    (['--args=--lr -1'], "seeds.py: error: ARGS='--lr -1': --lr must be a positive number, got -1.0"),
    (['--args=--no-such-flag'], "seeds.py: error: ARGS='--no-such-flag': unrecognized arguments: --no-such-flag"),
])
def test_bad_input_is_one_line(capsys, tmp_path, argv, says):
    with pytest.raises(SystemExit) as exit_info:
        seeds.main(['--runs', str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith(says) and len(err.splitlines()) == 1, err


def test_runs_made_with_other_flags_are_not_seeds_of_the_study(capsys, tmp_path):
    """A quick try's one-epoch runs in RUNS: named, with how they differ, and nothing is run."""
    lr_runs(tmp_path, {'0.01': (0.5,)}, flags={'epochs': 1})
    with pytest.raises(SystemExit) as exit_info:
        seeds.main(['--runs', str(tmp_path), '--exp', 'lr-sweep'])
    err = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 1 and err[0] == f'  {tmp_path}/lr-sweep/lr0.01/seed0: epochs 1, not 15'
    assert err[1].startswith('seeds.py: error: 1 run folder above holds a run made with other training flags')
    assert sorted(os.listdir(tmp_path / 'lr-sweep')) == ['lr0.01']


def test_a_run_of_seed_n_made_with_its_setting_s_flags_is_a_seed_of_the_study(tmp_path):
    """Seed N is asked for with --seed N, its folder's number: seed 1 of lr 0.1 made with the study's
    flags is not stale; a run of seed 1 in seed2/ is, and says so."""
    write_run(tmp_path / 'lr-sweep/lr0.1/seed1', {'lr': 0.1, 'seed': 1})
    assert seeds.stale(seeds.read(str(tmp_path), STUDY, LR_SWEEP), LR_SWEEP[0].settings, '') == []
    write_run(tmp_path / 'lr-sweep/lr0.1/seed2', {'lr': 0.1, 'seed': 1})
    assert seeds.stale(seeds.read(str(tmp_path), STUDY, LR_SWEEP), LR_SWEEP[0].settings, '') == [
        f'  {tmp_path}/lr-sweep/lr0.1/seed2: seed 1, not 2']


# ---------------------------------------------------------------------------------------------
# make seeds, for real (slow): tiny runs of ResNet-18, two at a time.


def rounds_of(printed):
    """{round: {setting key: [seed numbers]}} from what make seeds printed before each round."""
    rounds, current = {}, None
    for line in printed.splitlines():
        if re.match(r'round \d+: ', line):
            current = rounds.setdefault(int(line.split()[1].rstrip(':')), {})
        elif current is not None and (found := re.match(r'    (\S+) \(.*?\): seeds? ([\d, ]+), for ', line)):
            current[found.group(1)] = [int(n) for n in found.group(2).split(', ')]
    return rounds


@pytest.mark.exercise(*A_RUN, 'BasicBlock.forward', 'cosine_lr', 'welch')
@pytest.mark.slow
def test_make_seeds_adds_seeds_round_by_round_only_where_a_comparison_is_open(cifar_root, tmp_path):
    """make -j2 seeds EXP='lr-sweep schedule' MAX_SEEDS=3, one-epoch runs on the fake data set. The
    lr sweep's seeds 0 and 1 are there already, written by hand with the same flags: lr 0.01
    against lr 0.1 is settled (p = 0.010 < 0.025, as above), and lr 0.01 against lr 0.001 open
    (p = 0.038). The schedule has no run yet. At one epoch, cosine's one rate is lr 0.01, the
    constant rate: the two are the same run for each seed (one thread each), a margin of 0, open
    to the end. So round 1 adds seed 2 to lr 0.01 and lr 0.001, seeds 0 and 1 to constant and
    cosine; round 2 seed 2 to constant and cosine only, since the lr comparison is at the cap; then
    it stops. lr 0.1 gets no seed. Two runs at a time, through make's job slots."""
    runs_dir = tmp_path / 'runs'
    tiny = {'epochs': 1, 'train_subset': 20, 'eval_subset': 10, 'batch_size': 10}
    lr_runs(runs_dir, {'0.01': (0.86, 0.88), '0.1': (0.72, 0.74), '0.001': (0.79, 0.81)}, flags=tiny)
    args = f'--epochs 1 --train-subset 20 --eval-subset 10 --batch-size 10 --device cpu --data-dir {cifar_root}'
    made = subprocess.run([*MAKE, '-j2', 'seeds', f'RUNS={runs_dir}', 'EXP=lr-sweep schedule', 'MAX_SEEDS=3',
                           f'ARGS={args}'], capture_output=True, text=True, env=os.environ | {'OMP_NUM_THREADS': '1'})
    assert made.returncode == 0, made.stdout + made.stderr
    assert 'jobserver unavailable' not in made.stderr  # make's warning when a sub-make cannot share -j's slots
    assert rounds_of(made.stdout) == {
        1: {'lr-sweep/lr0.01': [2], 'lr-sweep/lr0.001': [2], 'schedule/cosine': [0, 1], 'schedule/constant': [0, 1]},
        2: {'schedule/cosine': [2], 'schedule/constant': [2]}}, made.stdout
    assert '  settled:    lr 0.01 against lr 0.1: reproduced: ' in made.stdout
    assert re.search(r'round 2: .*\n(.*\n)*  at the cap: lr 0.01 against lr 0\.001: within noise at 3 seeds|'
                     r'round 2: .*\n(.*\n)*  settled:    lr 0.01 against lr 0\.001: ', made.stdout), made.stdout
    done = made.stdout[made.stdout.index('done after 2 rounds: no comparison is open'):]
    assert '  at the cap: cosine against constant: within noise at 3 seeds a setting: +0.00 ± ' in done, done
    folders = {key: sorted(os.listdir(runs_dir / key)) for key in ('lr-sweep/lr0.01', 'lr-sweep/lr0.1', 'lr-sweep/lr0.001',
                                                                   'schedule/constant', 'schedule/cosine')}
    assert folders == {'lr-sweep/lr0.01': ['seed0', 'seed1', 'seed2'], 'lr-sweep/lr0.1': ['seed0', 'seed1'],
                       'lr-sweep/lr0.001': ['seed0', 'seed1', 'seed2'], 'schedule/constant': ['seed0', 'seed1', 'seed2'],
                       'schedule/cosine': ['seed0', 'seed1', 'seed2']}
    # Round 1's six runs, two at a time: some two of them trained at the same time.
    spans = []
    for key, seed in (('lr-sweep/lr0.01', 2), ('lr-sweep/lr0.001', 2), ('schedule/constant', 0), ('schedule/constant', 1),
                      ('schedule/cosine', 0), ('schedule/cosine', 1)):
        folder = runs_dir / key / f'seed{seed}'
        spans.append((json.loads((folder / 'config.json').read_text())['started'],
                      json.loads((folder / 'summary.json').read_text())['finished']))
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:]), spans
