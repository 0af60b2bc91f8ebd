"""Which differences are real: the noise in an accuracy, and tests for the difference of two.

An accuracy is a count of right answers on n images, and the images are a sample: another
10,000 would give another number. A run is a sample too: another seed gives another
validation split (data.split_for), other weights, another data order and other augmentations,
and another accuracy. A difference between two settings means something only when it is larger
than what these two kinds of noise make of nothing. report.py uses what is here for every accuracy it shows and every claim it judges.

Standard library only: math.comb for the exact binomial sums, math.erfc for the normal tail.
"""
import math
import statistics

ALPHA = 0.05  # a difference is called real when noise alone would make one as large less often than this


def binomial_se(p, n):
    """The standard error of an accuracy p measured on n images: sqrt(p (1 - p) / n).

    Each image is right with probability p, independently, so the count of right answers is
    binomial(n, p) and its share has this standard deviation. At p = 0.946 and n = 10,000 it is
    0.23 points: one run's accuracy is known to about a quarter of a point at best."""
    return math.sqrt(p * (1 - p) / n)


def mean_sd_sem(values):
    """Mean, standard deviation and standard error of the mean of k > 1 seeds' results:
    sem = sd / sqrt(k). The standard deviation is the spread of one run; the standard error is
    how well k of them pin down the mean. Only seeds see the noise of training itself."""
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    return mean, sd, sd / math.sqrt(len(values))


def mcnemar_p(b, c):
    """McNemar's exact test for two classifiers on the same images (McNemar 1947; recommended for
    this use by Dietterich 1998, "Approximate statistical tests for comparing supervised
    classification learning algorithms").

    b images are right for the first classifier only and c for the second only; images both get
    right or both get wrong say nothing about which is better. If the two were equally good,
    each of the b + c disagreements would go either way with probability 1/2, so
        p = min(1, 2 * sum_{k <= min(b, c)} C(b + c, k) / 2^(b + c)),
    the two-sided chance of a split at least as lopsided as the one seen. Exact integers up to
    the one division, so it holds for any number of disagreements."""
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n)


def normal_p(z):
    """Two-sided p of a standard normal statistic: P(|Z| >= |z|) = erfc(|z| / sqrt(2))."""
    return math.erfc(abs(z) / math.sqrt(2))


def t_p(t, df):
    """Two-sided p of Student's t with a whole number of degrees of freedom: P(|T| >= |t|).

    Closed form of Abramowitz and Stegun (1964), 26.7.3 and 26.7.4, with theta = atan(|t| / sqrt(df)):
        df odd:  P(|T| < t) = 2/pi (theta + sin(theta) (cos(theta) + 2/3 cos^3(theta) + ... + a_(df-2) cos^(df-2)(theta)))
        df even: P(|T| < t) = sin(theta) (1 + 1/2 cos^2(theta) + ... + a_(df-2) cos^(df-2)(theta))
    where each term is the one before times (k + 1) / (k + 2) cos^2(theta)."""
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2, sin = math.cos(theta) ** 2, math.sin(theta)
    k, term = (1, math.cos(theta)) if df % 2 else (0, 1.0)
    total = 0.0
    while k <= df - 2:
        total += term
        term *= (k + 1) / (k + 2) * cos2
        k += 2
    inside = 2 / math.pi * (theta + sin * total) if df % 2 else sin * total
    return max(0.0, 1 - inside)


def welch(mean1, se1, k1, mean2, se2, k2):
    """Welch's t-test of two means, each over k seeds with standard error se (the sem):
    t = (mean1 - mean2) / sqrt(se1^2 + se2^2), with the Welch-Satterthwaite degrees of freedom
        df = (se1^2 + se2^2)^2 / (se1^4 / (k1 - 1) + se2^4 / (k2 - 1)),
    rounded down, which only makes the test more cautious. Returns (t, df, p).
    With few seeds this matters: t = 2 is p = 0.12 at df = 4, where the normal would say 0.046."""
    se = math.hypot(se1, se2)
    if se == 0:  # every seed of each side gave the same accuracy
        return (0.0, k1 + k2 - 2, 1.0) if mean1 == mean2 else (math.copysign(math.inf, mean1 - mean2), k1 + k2 - 2, 0.0)
    df = max(1, math.floor(se ** 4 / (se1 ** 4 / (k1 - 1) + se2 ** 4 / (k2 - 1))))
    t = (mean1 - mean2) / se
    return t, df, t_p(t, df)
