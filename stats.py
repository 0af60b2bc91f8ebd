"""Which differences are real: the noise in an accuracy, tests for the difference of two, how
many seeds a difference needs to be seen, and what looking again and comparing many cost.

An accuracy is a count of right answers on n images, and the images are a sample: another
10,000 would give another number. A run is a sample too: another seed gives another
validation split (data.split_for), other weights, another data order and other augmentations,
and another accuracy. A difference between two settings means something only when it is larger
than what these two kinds of noise make of nothing. report.py uses what is here for every accuracy it shows and every claim it judges.
The same noise says how many seeds a setting needs before a difference of a given size shows
(the power of the test), and why each new look at the seeds, and each more comparison in a
family, must be paid for with a stricter threshold.

Standard library only: math.comb for the exact binomial sums, math.erfc for the normal tail,
math.lgamma for the chi density that power integrates over, statistics.NormalDist for quantiles.
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
    # BEGIN SOLUTION
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n)
    # END SOLUTION


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


def t_critical(df, alpha=ALPHA):
    """The two-sided critical value of Student's t: the t with t_p(t, df) = alpha, the t table read
    the other way (t_critical(4) = 2.776). A 95% interval over k seeds is
        mean +- t_critical(k - 1) sem,
    wider than the normal's 1.96 sem because with few seeds the sd is itself a guess (Student 1908).
    Found by bisection: t_p falls steadily from 1 at t = 0 towards 0, so each halving of the
    bracket keeps the crossing inside it."""
    lo, hi = 0.0, 1.0
    while t_p(hi, df) > alpha:  # widen until the crossing is inside: at df 1 and alpha 0.01 it is 63.7
        lo, hi = hi, 2 * hi
    for _ in range(60):  # 60 halvings of a bracket under 64 wide leave it below double precision
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_p(mid, df) > alpha else (lo, mid)
    return (lo + hi) / 2


def welch(mean1, se1, k1, mean2, se2, k2):
    """Welch's t-test of two means, each over k seeds with standard error se (the sem):
    t = (mean1 - mean2) / sqrt(se1^2 + se2^2), with the Welch-Satterthwaite degrees of freedom
        df = (se1^2 + se2^2)^2 / (se1^4 / (k1 - 1) + se2^4 / (k2 - 1)),
    rounded down, which only makes the test more cautious, and never below 1. Returns (t, df, p).
    With few seeds this matters: t = 2 is p = 0.12 at df = 4, where the normal would say 0.046.
    When both spreads are 0 (every seed of each side gave the same accuracy) there is no t to divide
    out: equal means are (0, k1 + k2 - 2, 1.0), unequal ones (+inf or -inf, k1 + k2 - 2, 0.0)."""
    # BEGIN SOLUTION
    se = math.hypot(se1, se2)
    if se == 0:  # every seed of each side gave the same accuracy
        return (0.0, k1 + k2 - 2, 1.0) if mean1 == mean2 else (math.copysign(math.inf, mean1 - mean2), k1 + k2 - 2, 0.0)
    df = max(1, math.floor(se ** 4 / (se1 ** 4 / (k1 - 1) + se2 ** 4 / (k2 - 1))))
    t = (mean1 - mean2) / se
    return t, df, t_p(t, df)
    # END SOLUTION


def t_test_power(margin, sd, k, alpha=ALPHA):
    """The power of the two-sided t-test of two settings with k seeds each: the chance that it
    calls the difference real when the true means are margin apart and each seed's result has
    spread sd. With k equal and sd equal, Welch's test is Student's, with df = 2k - 2 (welch's
    rounded-down df makes it a little more cautious, so its power a little lower), and
        delta = margin / (sd sqrt(2 / k))
    is how many standard errors of the difference the margin is. The t statistic is then noncentral
    t, by its definition T' = (Z + delta) / S with Z standard normal and S = sqrt(V / df), V
    chi-square with df degrees of freedom, independent of Z. Given S = s, T' > c when Z > c s - delta,
    so with c = t_critical(df, alpha) and Phi the normal distribution function,
        power = P(T' > c) + P(T' < -c) = integral over s of g(s) (Phi(delta - c s) + Phi(-delta - c s)) ds,
    where g is the density of S (the chi distribution scaled by sqrt(df)):
        g(s) = 2 (df / 2)^(df / 2) / Gamma(df / 2) s^(df - 1) exp(-df s^2 / 2).
    Both parts are smooth in s, so Simpson's rule on 1,000 panels gets the integral to about 1e-9
    (checked against scipy.stats.nct, which this module does without). Cohen (1988), "Statistical
    Power Analysis for the Behavioral Sciences", ch. 2, tabulates this power and the n it takes;
    margin / sd is his effect size d.

    With a single run per setting there are no seeds to measure sd, and binomial_se(p, n) is the
    floor under it: the noise of the test images alone, with training's noise still to add."""
    if sd == 0:  # no noise at all: any margin is seen, and none is imagined
        return 1.0 if margin else alpha
    df, delta = 2 * k - 2, abs(margin) / (sd * math.sqrt(2 / k))
    c = t_critical(df, alpha)
    log_scale = math.log(2) + df / 2 * math.log(df / 2) - math.lgamma(df / 2)  # in logs: (df/2)^(df/2) overflows past df ~ 300
    def integrand(s):
        if s == 0:  # g(0) = 0 for df >= 2, which k >= 2 seeds give
            return 0.0
        density = math.exp(log_scale + (df - 1) * math.log(s) - df * s * s / 2)
        return density * (math.erfc((c * s - delta) / math.sqrt(2)) + math.erfc((c * s + delta) / math.sqrt(2))) / 2
    # S is 1 give or take 1 / sqrt(2 df): 10 / sqrt(df) either side is 14 of those, past which g is below e^-98
    lo, hi, panels = max(0.0, 1 - 10 / math.sqrt(df)), 1 + 10 / math.sqrt(df), 1000
    h = (hi - lo) / panels
    total = integrand(lo) + integrand(hi) + sum((4 if i % 2 else 2) * integrand(lo + i * h) for i in range(1, panels))
    return min(1.0, total * h / 3)


def seeds_needed(margin, sd, alpha=ALPHA, power=0.8, cap=20):
    """The smallest number of seeds per setting, k >= 2, at which t_test_power(margin, sd, k)
    reaches power; None when even cap seeds do not. 80% is Cohen's (1988) convention: missing a
    real difference one time in five is accepted as the price of a study one can afford.
    At margin = sd it takes 17 seeds a setting; three seeds see only margins of about 3 sd."""
    for k in range(2, cap + 1):
        if t_test_power(margin, sd, k, alpha) >= power:
            return k
    return None


def seeds_needed_roughly(margin, sd, alpha=ALPHA, power=0.8):
    """How many seeds per setting it would take, for saying how far past the cap a margin is
    ("about 60 seeds a setting"). The normal approximation with Guenther's (1981, "Sample size
    formulas for normal theory t tests") correction for the t distribution,
        k = 2 ((z_(1 - alpha/2) + z_power) sd / margin)^2 + z_(1 - alpha/2)^2 / 4, rounded up,
    where the last term (0.96 at alpha = 0.05) stands for the seeds the estimated sd costs.
    It is within one seed of seeds_needed, sometimes one too few: use that where it can answer."""
    if margin == 0:  # no number of seeds shows a difference that is not there
        return math.inf
    z_alpha, z_power = statistics.NormalDist().inv_cdf(1 - alpha / 2), statistics.NormalDist().inv_cdf(power)
    return max(2, math.ceil(2 * ((z_alpha + z_power) * sd / margin) ** 2 + z_alpha ** 2 / 4))


def sequential_alpha(looks, alpha=ALPHA):
    """The threshold for each look when seeds are added in rounds and the test is run after every
    round, stopping at the first p below it: Bonferroni's alpha / looks.

    Each look is another chance for noise to pass as a difference. At p < 0.05 on every look, a
    difference that is not there is called in 14% of studies with 5 looks at a normal statistic
    (Armitage, McPherson and Rowe 1969, "Repeated significance tests on accumulating data"), and
    in 7% with Welch's test after 2, 3, 4 and 5 seeds (simulated in the tests), not 5%. If the
    study calls one whenever any look passes, the chance that some look passes by noise is at
    most the sum of the chances of each,
        P(any p_i < alpha / looks) <= looks * alpha / looks = alpha,
    whatever the correlation between looks, and looks at the same growing set of seeds are
    strongly correlated. That makes it conservative: the true rate is below alpha. Pocock's
    (1977, "Group sequential methods in the design and analysis of clinical trials") constant
    threshold is less so, but its value comes from a table for each number of looks; O'Brien and
    Fleming's (1979, "A multiple testing procedure for clinical trials") spends little alpha early
    and keeps nearly all of it for the last look. Bonferroni needs no table and is easy to check."""
    return alpha / looks


def holm(pvalues, alpha=ALPHA):
    """Which of a family of m comparisons are beyond noise, Holm's step-down rule (Holm 1979,
    "A simple sequentially rejective multiple test procedure"). Returns, for each p in the order
    given, whether it is rejected (the difference called real).

    With m comparisons and no real difference among them, about m alpha pass p < alpha by chance:
    one in twenty comparisons at 5%. Bonferroni compares every p with alpha / m. Holm sorts them,
    p_(0) <= p_(1) <= ... <= p_(m-1), and compares the i-th smallest with
        alpha / (m - i),
    stopping at the first that is not below: it and every larger p are kept as noise. Once the
    smallest is rejected, only m - 1 comparisons remain that could still be noise, so the next
    needs to beat only alpha / (m - 1). The chance of calling any non-difference real stays at most
    alpha, as with Bonferroni, yet every p Bonferroni rejects Holm rejects too, and sometimes more."""
    m = len(pvalues)
    rejected = [False] * m
    for i, index in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        if pvalues[index] >= alpha / (m - i):
            break
        rejected[index] = True
    return rejected
