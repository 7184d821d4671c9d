"""Verdicts: a claim's "holds / does not hold" as a statistical test that can come out either way.

Every claim the book checks ends in a :class:`Verdict`: the statistic that was measured, its
interval, the test and its p-value, how many samples entered and how many were censored or
excluded (and why), and one of :data:`VERDICTS`. Chapters call the functions here (or a
chapter-specific test in the analysis modules that returns a :class:`Verdict`), glue
``str(verdict)`` into the prose and save ``verdict.as_dict()`` in their JSON under ``verdicts``.

The rule that turns a test into a word is the same everywhere:

* ``"holds"``: the test rejects its null hypothesis (the claim is false) at level ``alpha``;
* ``"does not hold"``: it does not (on data without the effect this happens with probability
  at least ``1 - alpha``; on data with an effect too small for the sample it happens too: "does
  not hold" means "this run does not show it", and the interval says how large an effect is
  still compatible with the data);
* ``"not testable at this profile"``: the sample is too small for the test ever to reach
  ``alpha`` (for example a sign test over 4 seeds, whose smallest p-value is 1/16), so neither
  word would mean anything;
* ``"holds in part"``: only for a claim made of several parts (:func:`combine`), some of which
  hold and some of which do not.

Generic tests here:

* :func:`sign_test`: paired or one-sample, exact binomial; works with censored outcomes (an
  event that never happened within the budget is ``+inf`` and still has a sign), so nothing is
  dropped.
* :func:`bootstrap_interval`: percentile bootstrap of any statistic of a sample.
* :func:`mean_test`: one-sample t-test of a mean against a value, for finite samples whose
  mean is the claim (refuses non-finite values; counts them in the error message).
* :func:`combine`: the verdict of a claim that is the conjunction of parts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import stats as _st

from ..core._checks import check_choice, check_int, check_seed
from ..core.errors import InvalidParameterError

HOLDS = "holds"
HOLDS_IN_PART = "holds in part"
DOES_NOT_HOLD = "does not hold"
NOT_TESTABLE = "not testable at this profile"
VERDICTS = (HOLDS, HOLDS_IN_PART, DOES_NOT_HOLD, NOT_TESTABLE)
ALTERNATIVES = ("greater", "less", "two-sided")


def check_level(name: str, value) -> float:
    """``value`` as a number strictly between 0 and 1 (a test level or an interval's coverage);
    :class:`InvalidParameterError` naming ``name`` otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < v < 1.0:
        raise InvalidParameterError(f"{name} must be in (0, 1), got {value!r}")
    return v


def _alpha(alpha) -> float:
    return check_level("alpha", alpha)


@dataclass(frozen=True)
class Verdict:
    """The outcome of testing one claim.

    Attributes
    ----------
    claim : str
        The claim in one sentence, as the book states it.
    verdict : str
        One of :data:`VERDICTS`.
    statistic : float
        The measured quantity the claim is about (e.g. a median difference, an accuracy).
    interval : tuple of float or None
        Its confidence interval (``level``), or None where none is defined.
    p : float or None
        The test's p-value (None for a combined verdict, or when not testable with no data).
    test : str
        What test was run, in words (e.g. "exact sign test, one-sided, 12 pairs").
    n : int
        Number of samples (pairs, seeds, members) that entered the test.
    excluded : int
        Samples left out of the statistic, with ``note`` saying which and why; censored samples
        that the test uses are not excluded (see ``note``).
    alpha : float
        The test's level.
    level : float
        The interval's coverage (e.g. 0.95).
    note : str
        Anything a reader needs besides the numbers (censoring, what the interval is over).
    parts : dict
        For a combined verdict: part name -> that part's :class:`Verdict`.
    figure : str
        The paper's figure and panel the claim is read from (e.g. "Fig. 9b"), or "beyond the
        paper"; set with :meth:`with_figure`. The book's claims table shows it.
    """

    claim: str
    verdict: str
    statistic: float
    interval: tuple[float, float] | None
    p: float | None
    test: str
    n: int
    excluded: int = 0
    alpha: float = 0.05
    level: float = 0.95
    note: str = ""
    parts: Mapping[str, "Verdict"] = field(default_factory=dict)
    figure: str = ""

    def __post_init__(self):
        check_choice("Verdict.verdict", self.verdict, VERDICTS)
        if self.p is not None and not (0.0 <= self.p <= 1.0):
            raise InvalidParameterError(f"Verdict.p must be in [0, 1] or None, got {self.p!r}")
        check_int("Verdict.n", self.n, 0)
        check_int("Verdict.excluded", self.excluded, 0)

    @property
    def holds(self) -> bool:
        return self.verdict == HOLDS

    def with_figure(self, figure: str) -> "Verdict":
        """This verdict with ``figure`` (the paper's figure and panel, or "beyond the paper")."""
        if not isinstance(figure, str):
            raise InvalidParameterError(f"Verdict.figure must be a string, got {type(figure).__name__}")
        return replace(self, figure=figure)

    def as_dict(self) -> dict:
        """Plain-JSON form (the chapter JSON's ``verdicts[claim_id]``)."""
        d = asdict(self)
        d["interval"] = None if self.interval is None else [float(x) for x in self.interval]
        d["parts"] = {k: v.as_dict() for k, v in self.parts.items()}
        return d

    def __str__(self) -> str:
        bits = []
        if self.p is not None:
            bits.append(f"p = {_fmt_p(self.p)}")
        if self.interval is not None:
            lo, hi = self.interval
            bits.append(f"{self.level:.0%} interval [{lo:.3g}, {hi:.3g}]")
        bits.append(self.test)
        if self.excluded:
            bits.append(f"{self.excluded} excluded")
        return f"{self.verdict} ({'; '.join(bits)})"


def _fmt_p(p: float) -> str:
    if p < 1e-4:
        return f"{p:.1e}"
    return f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def decide(p: float | None, alpha: float, min_p: float | None = None) -> str:
    """The verdict word for a test with p-value ``p`` at level ``alpha``: "holds" if p < alpha;
    "not testable at this profile" if the smallest p-value the test can reach at this sample
    size (``min_p``) is not below alpha, or p is None; else "does not hold"."""
    alpha = _alpha(alpha)
    if p is None or (min_p is not None and min_p >= alpha):
        return NOT_TESTABLE
    return HOLDS if p < alpha else DOES_NOT_HOLD


def _sample(x, name: str, allow_inf: bool) -> np.ndarray:
    x = np.asarray(x, dtype=float).ravel()
    n_nan = int(np.sum(np.isnan(x)))
    if n_nan:
        raise InvalidParameterError(f"{name}: {n_nan} of {x.size} values are NaN; count and report them "
                                    "instead of passing them (a censored outcome is +-inf)")
    if not allow_inf and not np.all(np.isfinite(x)):
        k = int(np.sum(~np.isfinite(x)))
        raise InvalidParameterError(f"{name}: {k} of {x.size} values are infinite; this test needs finite "
                                    "values (use sign_test for censored outcomes)")
    return x


def median(x) -> float:
    """Median of ``x`` that is exact with infinite entries (``np.median`` interpolates
    ``inf - inf`` to NaN when both middle values are infinite). With ``-inf`` and ``+inf`` as the
    two middle values (an even sample, half censored each way) the median is 0, the point with as
    many values below as above."""
    s = np.sort(np.asarray(x, dtype=float).ravel())
    if s.size == 0:
        return float("nan")
    a, b = s[(s.size - 1) // 2], s[s.size // 2]
    if a == b:
        return float(a)
    if np.isinf(a) and np.isinf(b):  # -inf and +inf in the middle: as many below zero as above
        return 0.0
    return float(0.5 * (a + b))


def _row_medians(A) -> np.ndarray:
    """:func:`median` of every row of ``A`` (m, n), n >= 1, in one sort."""
    s = np.sort(A, axis=1)
    a, b = s[:, (s.shape[1] - 1) // 2], s[:, s.shape[1] // 2]
    with np.errstate(invalid="ignore"):
        mid = 0.5 * (a + b)
    return np.where(a == b, a, np.where(np.isinf(a) & np.isinf(b), 0.0, mid))


def bootstrap_interval(x, statistic: Callable[[np.ndarray], float] = np.mean, level: float = 0.95,
                       n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the entries of ``x`` (n,) (resampled with
    replacement, ``n_boot`` times, from ``seed``). ``statistic`` maps an (n,) array to a number;
    infinite entries are allowed if the statistic handles them (e.g. :func:`median`). With one entry
    the interval is that entry's statistic twice."""
    x = _sample(x, "bootstrap_interval: x", allow_inf=True)
    if x.size == 0:
        raise InvalidParameterError("bootstrap_interval: x is empty")
    n_boot = check_int("bootstrap_interval: n_boot", n_boot, 1)
    level = _alpha(level)
    rng = np.random.default_rng(check_seed(seed, "bootstrap_interval: seed"))
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    if statistic is median:  # all resamples at once, the same numbers as row by row
        vals = _row_medians(x[idx])
    else:
        vals = np.array([statistic(x[i]) for i in idx], dtype=float)
    # no interpolation between bootstrap values (exact with infinite ones)
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return float(lo), float(hi)


def sign_test(x, y=None, *, claim: str, alternative: str = "greater", alpha: float = 0.05,
              level: float = 0.95, seed: int = 0, what: str = "pairs") -> Verdict:
    """Exact sign test that ``x`` exceeds ``y`` (paired, (n,) each) or 0 (``y=None``).

    The statistic is the median of the differences ``d = x - y``, with a bootstrap interval; the
    test counts positive against negative differences (exact binomial, ties dropped and counted in
    ``note``). Censored outcomes are allowed as ``+-inf`` and enter with their sign (an event that
    never happened within the budget has ``inf`` epochs: ``inf - finite > 0``); a difference of two
    infinities of the same sign is undefined and counted as excluded. NaN raises (count and report
    failed runs before calling).

    ``alternative``: "greater" (claim: x > y), "less" (claim: x < y) or "two-sided".
    """
    alternative = check_choice("sign_test: alternative", alternative, ALTERNATIVES)
    alpha = _alpha(alpha)
    x = _sample(x, "sign_test: x", allow_inf=True)
    if y is not None:
        y = _sample(y, "sign_test: y", allow_inf=True)
        if y.shape != x.shape:
            raise InvalidParameterError(f"sign_test: x and y must have one length, got {x.size} and {y.size}")
        with np.errstate(invalid="ignore"):
            d = x - y
    else:
        d = x
    undefined = np.isnan(d)
    d = d[~undefined]
    n_pos, n_neg = int(np.sum(d > 0)), int(np.sum(d < 0))
    ties = int(d.size - n_pos - n_neg)
    n = n_pos + n_neg
    censored = int(np.sum(~np.isfinite(d)))
    stat = median(d)
    if n == 0:
        p, min_p = None, None
    else:
        k = n_pos if alternative != "less" else n_neg
        alt = "greater" if alternative != "two-sided" else "two-sided"
        p = float(_st.binomtest(k, n, 0.5, alternative=alt).pvalue)
        min_p = 0.5 ** n * (2 if alternative == "two-sided" else 1)
    interval = bootstrap_interval(d, median, level=level, seed=seed) if d.size > 1 else None
    notes = [f"{n_pos} of {n} {what} positive, {n_neg} negative"]
    if ties:
        notes.append(f"{ties} ties dropped from the test")
    if censored:
        notes.append(f"{censored} censored (infinite) differences counted by their sign")
    if undefined.any():
        notes.append(f"{int(undefined.sum())} undefined (both censored) excluded")
    side = {"greater": "one-sided, > 0", "less": "one-sided, < 0", "two-sided": "two-sided"}[alternative]
    return Verdict(claim=claim, verdict=decide(p, alpha, min_p), statistic=stat, interval=interval, p=p,
                   test=f"exact sign test ({side}), {n} {what}", n=int(d.size), excluded=int(undefined.sum()),
                   alpha=alpha, level=level, note="; ".join(notes))


def mean_test(x, null: float = 0.0, *, claim: str, alternative: str = "greater", alpha: float = 0.05,
              level: float = 0.95, what: str = "samples") -> Verdict:
    """One-sample t-test of ``mean(x)`` against ``null`` (claim: mean > null for "greater").

    The statistic is the mean with its t interval. All values must be finite: a run that failed or
    never reached its event must be counted and reported by the caller (or use :func:`sign_test`,
    which handles censored outcomes). With fewer than 2 values: not testable.
    """
    alternative = check_choice("mean_test: alternative", alternative, ALTERNATIVES)
    alpha = _alpha(alpha)
    level = _alpha(level)
    x = _sample(x, "mean_test: x", allow_inf=False)
    if x.size < 2:
        m = float(x[0]) if x.size else float("nan")
        return Verdict(claim=claim, verdict=NOT_TESTABLE, statistic=m, interval=None, p=None,
                       test=f"one-sample t-test needs >= 2 {what}, got {x.size}", n=int(x.size),
                       alpha=alpha, level=level)
    m = float(np.mean(x))
    se = float(np.std(x, ddof=1) / np.sqrt(x.size))
    if se == 0.0:
        p = 0.0 if {"greater": m > null, "less": m < null, "two-sided": m != null}[alternative] else 1.0
        interval = (m, m)
    else:
        res = _st.ttest_1samp(x, null, alternative=alternative)
        p = float(res.pvalue)
        q = _st.t.ppf((1 + level) / 2, x.size - 1)
        interval = (m - q * se, m + q * se)
    side = {"greater": f"one-sided, mean > {null:g}", "less": f"one-sided, mean < {null:g}",
            "two-sided": f"two-sided, mean != {null:g}"}[alternative]
    return Verdict(claim=claim, verdict=decide(p, alpha), statistic=m, interval=interval, p=p,
                   test=f"one-sample t-test ({side}), {x.size} {what}", n=int(x.size), alpha=alpha, level=level,
                   note=f"mean {m:.4g} +- {se:.2g} (standard error)")


def combine(claim: str, parts: Mapping[str, Verdict]) -> Verdict:
    """The verdict of a claim made of several parts that must all hold: "holds" if every part
    holds, "does not hold" if none does, "holds in part" otherwise; "not testable at this profile"
    if any part is not testable. The statistic is the number of parts that hold."""
    if not parts:
        raise InvalidParameterError("combine: parts is empty")
    for k, v in parts.items():
        if not isinstance(v, Verdict):
            raise InvalidParameterError(f"combine: part {k!r} is a {type(v).__name__}, not a Verdict")
    words = [v.verdict for v in parts.values()]
    n_hold = sum(w == HOLDS for w in words)
    if NOT_TESTABLE in words:
        word = NOT_TESTABLE
    elif n_hold == len(words):
        word = HOLDS
    elif n_hold == 0 and HOLDS_IN_PART not in words:
        word = DOES_NOT_HOLD
    else:
        word = HOLDS_IN_PART
    return Verdict(claim=claim, verdict=word, statistic=float(n_hold), interval=None, p=None,
                   test=f"{n_hold} of {len(words)} parts hold", n=len(words), parts=dict(parts),
                   note="; ".join(f"{k}: {v.verdict}" for k, v in parts.items()))


def verdict_table(verdicts: Mapping[str, Verdict]) -> dict:
    """``{claim_id: verdict.as_dict()}`` for a chapter's JSON (checks every value is a Verdict)."""
    out = {}
    for k, v in verdicts.items():
        if not isinstance(v, Verdict):
            raise InvalidParameterError(f"verdict_table: {k!r} is a {type(v).__name__}, not a Verdict")
        out[str(k)] = v.as_dict()
    return out


__all__ = ["median", "VERDICTS", "HOLDS", "HOLDS_IN_PART", "DOES_NOT_HOLD", "NOT_TESTABLE", "Verdict", "decide",
           "bootstrap_interval", "sign_test", "mean_test", "combine", "verdict_table"]
