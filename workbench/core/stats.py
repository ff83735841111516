"""How sure a score is: bootstrap intervals of a run's test scores, paired comparisons of two runs on
the same faces (bootstrap of the difference, exact McNemar test), and intervals over repeated seeds."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from workbench import NUM_CLASSES

# The scores that get an interval, in the order scores() returns them.
SCORED = ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy")
LEVEL = 0.95
RESAMPLES = 2000
SEED = 0  # intervals are part of a run's record: the same predictions give the same interval
ALPHA = 0.05


def scores(y_true: np.ndarray, y_pred: np.ndarray, axis: int = -1) -> np.ndarray:
    """SCORED for label arrays of shape (..., n) -> shape (4, ...); equal to scikit-learn's
    accuracy, macro/weighted F1 (7 labels, zero_division=0) and balanced accuracy."""
    y_true, y_pred = np.moveaxis(y_true, axis, -1), np.moveaxis(y_pred, axis, -1)
    classes = np.arange(NUM_CLASSES)
    truth, guess = y_true[..., None] == classes, y_pred[..., None] == classes  # (..., n, 7)
    hits = (truth & guess).sum(-2)
    support, predicted = truth.sum(-2), guess.sum(-2)
    f1 = np.divide(
        2 * hits, support + predicted, out=np.zeros(hits.shape), where=support + predicted > 0
    )
    recall = np.divide(hits, support, out=np.zeros(hits.shape), where=support > 0)
    present = support > 0
    return np.stack(
        [
            hits.sum(-1) / y_true.shape[-1],
            f1.mean(-1),
            (f1 * support).sum(-1) / support.sum(-1),
            (recall * present).sum(-1) / present.sum(-1),
        ]
    )


def _interval(data: tuple[np.ndarray, ...], statistic, method: str = "BCa") -> np.ndarray:
    """(low, high) rows per statistic output, from scipy's paired bootstrap (seeded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # handled below
        warnings.simplefilter("ignore", RuntimeWarning)  # its 0/0 on a constant score, too
        result = _bootstrap(data, statistic, method)
    ci = np.array([result.confidence_interval.low, result.confidence_interval.high]).T
    if method == "BCa" and np.isnan(ci).any():  # BCa is undefined for a constant score
        return _interval(data, statistic, "percentile")
    return ci


def _bootstrap(data, statistic, method: str):
    return stats.bootstrap(
        data,
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=RESAMPLES,
        confidence_level=LEVEL,
        method=method,
        random_state=np.random.default_rng(SEED),
        batch=250,
    )


def intervals(y_true: np.ndarray, y_pred: np.ndarray, prefix: str = "test_") -> dict[str, float]:
    """`<prefix><score>_ci_low` / `_ci_high` for every score in SCORED (95% bootstrap over faces)."""
    ci = _interval((y_true, y_pred), scores)
    out = {}
    for name, (low, high) in zip(SCORED, ci):
        out[f"{prefix}{name}_ci_low"], out[f"{prefix}{name}_ci_high"] = float(low), float(high)
    return out


def with_interval(metrics: dict[str, float], key: str, digits: int = 4) -> str:
    """`0.4257 [0.374, 0.477]` (the bare score when no interval was logged)."""
    text = f"{metrics[key]:.{digits}f}"
    if f"{key}_ci_low" in metrics:
        text += f" [{metrics[f'{key}_ci_low']:.3f}, {metrics[f'{key}_ci_high']:.3f}]"
    return text


@dataclass
class Paired:
    """Run A against run B on the same faces."""

    faces: int
    accuracy: tuple[float, float, float]  # A - B, and its 95% interval
    macro_f1: tuple[float, float, float]
    only_a: int  # faces A gets right and B gets wrong
    only_b: int
    p_value: float  # exact McNemar: binomial test of only_a among the discordant faces

    def figures(self) -> dict:
        """The comparison as JSON-ready figures (gains are A - B with their 95% intervals)."""
        return {
            "accuracy_gain": list(self.accuracy),
            "macro_f1_gain": list(self.macro_f1),
            "only_a_right": self.only_a,
            "only_b_right": self.only_b,
            "mcnemar_p": self.p_value,
        }

    @property
    def verdict(self) -> str:
        if self.p_value >= ALPHA:
            return f"no difference at the {ALPHA:.0%} level (McNemar p = {self.p_value:.3g})"
        better = "A" if self.only_a > self.only_b else "B"
        return f"{better} better at the {ALPHA:.0%} level (McNemar p = {self.p_value:.3g})"


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the discordant faces split as a fair coin would split them."""
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> Paired:
    def difference(t, a, b, axis=-1):
        return scores(t, a, axis)[:2] - scores(t, b, axis)[:2]

    point = difference(y_true, pred_a, pred_b)
    ci = _interval((y_true, pred_a, pred_b), difference)
    right_a, right_b = pred_a == y_true, pred_b == y_true
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    return Paired(
        len(y_true),
        (float(point[0]), *map(float, ci[0])),
        (float(point[1]), *map(float, ci[1])),
        only_a,
        only_b,
        mcnemar_exact(only_a, only_b),
    )


def unpaired_difference(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], score: str = "accuracy"
) -> tuple[float, float, float]:
    """score(a) - score(b) for two runs on different faces ((labels, predictions) each), with a 95%
    bootstrap interval: each test set resampled on its own, each face keeping its prediction."""
    k = SCORED.index(score)

    def difference(code_a, code_b, axis=-1):  # a face's label and prediction as one number
        one = scores(code_a // NUM_CLASSES, code_a % NUM_CLASSES, axis)[k]
        return one - scores(code_b // NUM_CLASSES, code_b % NUM_CLASSES, axis)[k]

    codes = [t.astype(np.int64) * NUM_CLASSES + p for t, p in (a, b)]
    result = stats.bootstrap(
        codes,
        difference,
        vectorized=True,
        n_resamples=RESAMPLES,
        confidence_level=LEVEL,
        method="percentile",
        random_state=np.random.default_rng(SEED),
        batch=250,
    )
    ci = result.confidence_interval
    return float(difference(*codes)), float(ci.low), float(ci.high)


def seed_summary(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and 95% t-interval of one score over seeds."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "std": 0.0, "ci_low": mean, "ci_high": mean}
    sem = stats.sem(x)
    low, high = (
        stats.t.interval(LEVEL, len(x) - 1, loc=mean, scale=sem) if sem > 0 else (mean, mean)
    )
    return {"mean": mean, "std": float(x.std(ddof=1)), "ci_low": float(low), "ci_high": float(high)}


def faces_for_gain(gain: float, accuracy: float, level: float = LEVEL) -> int:
    """Test faces needed before an accuracy `gain` at `accuracy` is outside the interval's half-width
    (normal approximation): what a study must test on to see that gain."""
    z = stats.norm.ppf(0.5 + level / 2)
    return int(np.ceil((z / gain) ** 2 * accuracy * (1 - accuracy)))
