"""stats.py promises the textbook numbers: each formula checked against cases computed by hand,
against printed tables, or against a simulation of the noise it describes."""
import math
import random
import statistics

import pytest

from stats import binomial_se, mcnemar_p, mean_sd_sem, normal_p, t_p, welch


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
def test_mcnemar_exact_by_hand(b, c, p):
    assert mcnemar_p(b, c) == pytest.approx(p, rel=1e-12)


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


def test_welch_by_hand():
    """Two settings, three seeds each: means 0.95 and 0.94, each sd 0.01, so each sem 0.01/sqrt(3):
    t = 0.01 / sqrt(2 0.01^2 / 3) = 1.22, df = 4 (equal spreads: 3 + 3 - 2)."""
    sem = 0.01 / math.sqrt(3)
    t, df, p = welch(0.95, sem, 3, 0.94, sem, 3)
    assert t == pytest.approx(math.sqrt(1.5)) and df == 4 and p == pytest.approx(t_p(math.sqrt(1.5), 4))
    assert 0.25 < p < 0.35  # a point apart, yet within the noise of three seeds
    assert welch(0.9, 0.0, 2, 0.9, 0.0, 2)[2] == 1.0 and welch(0.91, 0.0, 2, 0.9, 0.0, 2)[2] == 0.0


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
