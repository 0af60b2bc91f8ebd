"""stats.py promises the textbook numbers: each formula checked against cases computed by hand,
against printed tables, or against a simulation of the noise it describes."""
import math
import random
import statistics

import pytest

from stats import (binomial_se, holm, mcnemar_p, mean_sd_sem, normal_p, seeds_needed, seeds_needed_roughly,
                   sequential_alpha, t_critical, t_p, t_test_power, welch)


def test_binomial_se_by_hand():
    assert binomial_se(0.5, 100) == 0.05                                   # sqrt(0.25 / 100)
    assert binomial_se(0.946, 10_000) == pytest.approx(0.00226, abs=1e-5)  # a quarter of a point at 94.6%
    assert binomial_se(1.0, 50) == 0.0


def test_binomial_se_is_the_spread_of_accuracies_on_fresh_images():
    """Draw 2,000 test sets of 400 images from a classifier that is right 90% of the time: the
    accuracies spread as the formula says."""
    rng = random.Random(0)
    accuracies = [sum(rng.random() < 0.9 for _ in range(400)) / 400 for _ in range(2000)]
    assert statistics.stdev(accuracies) == pytest.approx(binomial_se(0.9, 400), rel=0.05)


def test_mean_sd_sem_by_hand():
    mean, sd, sem = mean_sd_sem([0.94, 0.95, 0.96])
    assert mean == pytest.approx(0.95) and sd == pytest.approx(0.01) and sem == pytest.approx(0.01 / math.sqrt(3))


@pytest.mark.parametrize('b, c, p', [
    (10, 2, 2 * 79 / 4096),       # 2 (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 (1 + 12 + 66) / 4096 = 0.0386
    (2, 10, 2 * 79 / 4096),       # two-sided: the same either way round
    (5, 5, 1.0), (0, 0, 1.0),     # an even split, or no disagreement at all: no evidence
    (6, 0, 2 / 64),               # 6 to 0: 2 / 2^6
    (1, 0, 1.0),                  # one disagreement proves nothing: 2 / 2 capped at 1
])
@pytest.mark.exercise('mcnemar_p')
def test_mcnemar_exact_by_hand(b, c, p):
    assert mcnemar_p(b, c) == pytest.approx(p, rel=1e-12)


@pytest.mark.exercise('mcnemar_p')
def test_mcnemar_holds_for_thousands_of_disagreements():
    """No overflow at the sizes 10,000 images give, and there the normal approximation with a
    continuity correction, z = (|b - c| - 1) / sqrt(b + c) (Edwards 1948), is close."""
    b, c = 1300, 1150
    assert mcnemar_p(b, c) == pytest.approx(normal_p((b - c - 1) / math.sqrt(b + c)), rel=0.01)


@pytest.mark.parametrize('z, p', [(1.959964, 0.05), (2.575829, 0.01), (0.0, 1.0), (-1.959964, 0.05)])
def test_normal_p_against_the_normal_table(z, p):
    assert normal_p(z) == pytest.approx(p, abs=1e-6)


@pytest.mark.parametrize('df, t', [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (10, 2.228), (30, 2.042)])
def test_t_p_against_the_t_table(df, t):
    """The two-sided 5% critical values of Student's t, as printed in every statistics book."""
    assert t_p(t, df) == pytest.approx(0.05, abs=2e-4)


def test_t_p_tends_to_the_normal_with_many_degrees_of_freedom():
    assert t_p(1.959964, 100_000) == pytest.approx(0.05, abs=1e-4)
    assert t_p(0.0, 3) == 1.0 and t_p(-2.776, 4) == t_p(2.776, 4)


@pytest.mark.parametrize('df, alpha, t', [
    (1, 0.05, 12.706), (2, 0.05, 4.303), (3, 0.05, 3.182), (4, 0.05, 2.776), (5, 0.05, 2.571),
    (10, 0.05, 2.228), (30, 0.05, 2.042), (2, 0.01, 9.925), (10, 0.01, 3.169),
])
def test_t_critical_is_the_t_table(df, alpha, t):
    """The two-sided critical values of Student's t at 5% and 1%, as printed in every statistics
    book (e.g. Abramowitz and Stegun 1964, Table 26.10), found here by inverting t_p."""
    assert t_critical(df, alpha) == pytest.approx(t, abs=1e-3)
    assert t_p(t_critical(df, alpha), df) == pytest.approx(alpha, rel=1e-9)


@pytest.mark.exercise('welch')
def test_welch_by_hand():
    """Two settings, three seeds each: means 0.95 and 0.94, each sd 0.01, so each sem 0.01/sqrt(3):
    t = 0.01 / sqrt(2 0.01^2 / 3) = 1.22, df = 4 (equal spreads: 3 + 3 - 2)."""
    sem = 0.01 / math.sqrt(3)
    t, df, p = welch(0.95, sem, 3, 0.94, sem, 3)
    assert t == pytest.approx(math.sqrt(1.5)) and df == 4 and p == pytest.approx(t_p(math.sqrt(1.5), 4))
    assert 0.25 < p < 0.35  # a point apart, yet within the noise of three seeds
    assert welch(0.9, 0.0, 2, 0.9, 0.0, 2)[2] == 1.0 and welch(0.91, 0.0, 2, 0.9, 0.0, 2)[2] == 0.0


@pytest.mark.exercise('welch')
def test_welch_degrees_of_freedom_with_unequal_spreads_and_seeds_by_hand():
    """Where Welch differs from Student: 2 seeds with sem 0.01 against 10 seeds with sem 0.002.
        df = (0.01^2 + 0.002^2)^2 / (0.01^4 / (2 - 1) + 0.002^4 / (10 - 1))
           = (1.04e-4)^2 / (1e-8 + 1.78e-12) = 1.0816e-8 / 1.00018e-8 = 1.081, rounded down to 1
    Student's k1 + k2 - 2 would say 10, and the seeds swapped 9: both far surer than 2 seeds allow.
        t = (0.95 - 0.93) / sqrt(1.04e-4) = 1.961"""
    t, df, p = welch(0.95, 0.01, 2, 0.93, 0.002, 10)
    assert df == 1 and t == pytest.approx(0.02 / math.sqrt(1.04e-4))
    assert p == pytest.approx(t_p(t, 1)) and p > 0.29  # at df 1: about 0.3, where df 10 would give 0.078
    assert welch(0.93, 0.002, 10, 0.95, 0.01, 2)[1] == 1  # the same the other way round
    # 5 seeds against 3, sem 0.004 and 0.003: (2.5e-5)^2 / (0.004^4 / 4 + 0.003^4 / 2) = 6.25e-10 / 1.045e-10 = 5.98 -> 5
    assert welch(0.9, 0.004, 5, 0.88, 0.003, 3)[1] == 5


@pytest.mark.parametrize('d, n', [(0.5, 64), (0.8, 26), (1.0, 17)])
def test_seeds_needed_is_cohens_table(d, n):
    """Cohen (1988), "Statistical Power Analysis for the Behavioral Sciences", Table 2.4.1, the n
    per group for the two-sided t-test at alpha 0.05 and power 0.80: d 0.5 -> 64, 0.8 -> 26,
    1.0 -> 17 (64 and 26 also in Cohen 1992, "A power primer", Table 2). d is margin / sd.
    Not every entry is exact: d 0.2 prints 393 and d 1.4 prints 9, where the exact power falls
    just short, 0.7996 at 393 and 0.7961 at 9 (here and in scipy.stats.nct alike), so 394 and 10."""
    assert seeds_needed(d, 1.0, cap=100) == n
    assert t_test_power(d, 1.0, n - 1) < 0.8 <= t_test_power(d, 1.0, n)
    assert seeds_needed(2 * d, 2.0, cap=100) == n  # only the ratio matters


def test_t_test_power_against_the_noncentral_t():
    """Cohen's table stops at d = 1.4; seeds are few and margins large here, so d = 2 too. These
    are scipy.stats.nct's (1.17.1) values of P(|T'| > t_critical), written down, not imported:
    d 2 -> 0.790542 at 5 seeds and 0.876418 at 6, so 6 seeds a setting; d 1 -> 0.807037 at 17."""
    assert t_test_power(2.0, 1.0, 5) == pytest.approx(0.790542, abs=1e-5)
    assert t_test_power(2.0, 1.0, 6) == pytest.approx(0.876418, abs=1e-5)
    assert t_test_power(1.0, 1.0, 17) == pytest.approx(0.807037, abs=1e-5)
    assert seeds_needed(2.0, 1.0) == 6


def test_three_seeds_see_only_margins_of_about_three_sd():
    """By hand, treating the estimated sd as known: the difference of two means of 3 has standard
    error sd sqrt(2 / 3) = 0.816 sd; to pass t_critical(4) = 2.776 four times in five, the true
    difference must sit z_0.80 = 0.842 standard errors beyond it: 3.618 se = 2.95 sd. The sd
    estimated from 3 seeds is itself noisy, which costs a little more: exactly (this code, and
    scipy.stats.nct by root finding) 80% power is reached at margin = 3.0709 sd."""
    assert 0.816 * (2.776 + 0.842) == pytest.approx(2.95, abs=0.01)
    assert t_test_power(3.07, 1.0, 3) < 0.8 < t_test_power(3.075, 1.0, 3)
    assert t_test_power(3.0, 1.0, 3) == pytest.approx(0.782554, abs=1e-5)  # scipy.stats.nct
    assert seeds_needed(3.0, 1.0) == 4 and seeds_needed(3.1, 1.0) == 3


@pytest.mark.parametrize('k', [2, 3, 10])
@pytest.mark.parametrize('alpha', [0.05, 0.01])
def test_power_without_a_difference_is_alpha(k, alpha):
    """With no difference the test calls one only by chance: exactly alpha of the time."""
    assert t_test_power(0.0, 1.0, k, alpha) == pytest.approx(alpha, abs=1e-6)


def test_power_grows_with_seeds_and_margin():
    by_seeds = [t_test_power(1.0, 1.0, k) for k in range(2, 21)]
    by_margin = [t_test_power(margin, 1.0, 3) for margin in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert by_seeds == sorted(by_seeds) and len(set(by_seeds)) == len(by_seeds)
    assert by_margin == sorted(by_margin) and by_margin[-1] == pytest.approx(1.0, abs=1e-4)
    assert t_test_power(-1.0, 1.0, 5) == t_test_power(1.0, 1.0, 5)  # two-sided


def test_seeds_needed_past_the_cap():
    """A margin of half an sd needs 64 seeds a setting (Cohen's table above): past the cap of 20,
    so seeds_needed says None and seeds_needed_roughly says how far. Guenther's normal
    approximation, by hand at d = 0.5: 2 (1.960 + 0.842)^2 / 0.25 + 1.960^2 / 4 = 62.79 + 0.96
    = 63.75, so 64; at d = 0.1, 1570.7, so 1571, the n Cohen's Table 2.4.1 prints."""
    assert seeds_needed(0.5, 1.0) is None and seeds_needed_roughly(0.5, 1.0) == 64
    assert seeds_needed_roughly(0.1, 1.0) == 1571
    assert seeds_needed_roughly(1.0, 1.0) == seeds_needed(1.0, 1.0) == 17
    assert seeds_needed(0.0, 1.0) is None and seeds_needed_roughly(0.0, 1.0) == math.inf
    assert seeds_needed(0.01, 0.0) == 2  # no noise: two seeds show any margin


def test_sequential_alpha_by_hand():
    assert sequential_alpha(1) == 0.05 and sequential_alpha(4) == 0.0125 and sequential_alpha(4, 0.01) == 0.0025


def _study(rng, difference, seeds=5):
    """Two settings, one more seed each per round from 2 up to `seeds`, each seed's result the
    setting's mean plus normal noise of sd 1: Welch's p at every look."""
    a, b = [rng.gauss(difference, 1) for _ in range(2)], [rng.gauss(0, 1) for _ in range(2)]
    pvalues = []
    while True:
        (mean_a, _, sem_a), (mean_b, _, sem_b) = mean_sd_sem(a), mean_sd_sem(b)
        pvalues.append(welch(mean_a, sem_a, len(a), mean_b, sem_b, len(b))[2])
        if len(a) == seeds:
            return pvalues
        a.append(rng.gauss(difference, 1))
        b.append(rng.gauss(0, 1))


@pytest.mark.exercise('welch')
def test_looking_after_every_round_needs_the_sequential_threshold():
    """4,000 studies with no true difference, looked at after 2, 3, 4 and 5 seeds, stopping at the
    first look that calls a difference. At p < 0.05 on every look, noise passes in about 7% of
    studies, beyond alpha plus 3 simulation standard errors (sqrt(0.05 0.95 / 4000) = 0.0034);
    at sequential_alpha(4) = 0.0125 on every look it stays below alpha, well below (welch's df
    rounded down makes each look cautious too)."""
    rng, studies, alpha = random.Random(0), 4000, 0.05
    pvalues = [_study(rng, 0.0) for _ in range(studies)]
    sequential = sum(min(p) < sequential_alpha(4) for p in pvalues) / studies
    naive = sum(min(p) < alpha for p in pvalues) / studies
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / studies)
    print(f'no difference, {studies} studies: false positives {sequential:.4f} at sequential_alpha(4),',
          f'{naive:.4f} at 0.05 every look')
    assert sequential <= bound
    assert naive > bound  # the simulation is sharp enough to catch the naive rule


@pytest.mark.exercise('welch')
def test_sequential_looks_still_find_a_large_difference():
    """With a true difference of 2 sd, the sequential rule finds it in about half the studies
    within 5 seeds, most of them at the later looks. For scale, one look at 5 seeds and the same
    0.0125 has power 0.52 by t_test_power; Welch's cautious df takes a little of that back."""
    rng, studies = random.Random(1), 1000
    found, seeds_used = 0, 0
    for pvalues in (_study(rng, 2.0) for _ in range(studies)):
        stop = next((look for look, p in enumerate(pvalues) if p < sequential_alpha(4)), None)
        found += stop is not None
        seeds_used += 2 + stop if stop is not None else 5
    power, mean_seeds = found / studies, seeds_used / studies
    print(f'difference of 2 sd, {studies} studies: power {power:.3f}, mean seeds a setting {mean_seeds:.2f}')
    assert 0.3 < power < 0.7 and 3.5 < mean_seeds < 5


def test_holm_by_hand():
    """p = 0.01, 0.04, 0.03, 0.005 at alpha 0.05, m = 4. Sorted, with thresholds alpha / (m - i):
        0.005 < 0.05 / 4 = 0.0125   rejected (the 4th)
        0.01  < 0.05 / 3 = 0.0167   rejected (the 1st)
        0.03 >= 0.05 / 2 = 0.025    kept, and the steps stop here:
        0.04  < 0.05 / 1 = 0.05     yet kept, because an earlier step failed.
    The answer is in the order given, not the sorted one."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == [True, False, False, True]
    assert holm([0.005, 0.01, 0.03, 0.04]) == [True, True, False, False]


def test_holm_rejects_what_bonferroni_does_and_more():
    """p = 0.01, 0.02, 0.015: Bonferroni's 0.05 / 3 = 0.0167 rejects only 0.01 and 0.015. Holm:
    0.01 < 0.0167, 0.015 < 0.025, 0.02 < 0.05: all three."""
    assert holm([0.01, 0.02, 0.015]) == [True, True, True]
    assert [p < 0.05 / 3 for p in (0.01, 0.02, 0.015)] == [True, False, True]
    assert holm([0.04]) == [True] and holm([0.05]) == [False] and holm([]) == []  # one comparison: plain p < alpha
    assert holm([0.02, 0.02]) == [True, True] and holm([0.03, 0.03]) == [False, False]  # ties: 0.03 >= 0.025 stops both
