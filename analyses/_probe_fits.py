"""The probes of `analyses.word_index_probes` and their position-only yardsticks, for any unit.

- `fit_probe`: standardised multinomial logistic regression (scikit-learn), one BLAS thread;
- `lookup_predict`: the best position-only guess (the most frequent training label per position);
- `balanced_subset`: test examples balanced for absolute position (position alone then predicts
  at most chance), and `balanced_chance`, the best position-only accuracy on given examples.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from jaxtyping import Float, Int
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

__all__ = ["balanced_chance", "balanced_subset", "fit_probe", "lookup_predict"]


def fit_probe(
    X_train: Float[np.ndarray, "n f"],
    y_train: Int[np.ndarray, " n"],
    X_test: Float[np.ndarray, "m f"],
    C: float = 1.0,
    max_iter: int = 500,
) -> Int[np.ndarray, " m"]:
    """Standardise, fit a multinomial logistic regression, predict the test labels.

    Standardising first matters: residual streams have large, uneven scales and positions run into
    the hundreds, which slows lbfgs and makes the (default) L2 penalty act unevenly. On a single
    feature the multinomial model partitions the line into intervals, one per class, so it acts as
    an ordinal threshold fit of the word index on that feature.
    """
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    # One BLAS thread: on these small problems OpenBLAS threads fighting other jobs for 2 cores
    # made fits ~50x slower (measured 5.4 s vs 0.1 s).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # a few more lbfgs iterations change nothing visible; the warning would flood the output
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(np.asarray(X_train, dtype=np.float64), y_train)
        return clf.predict(np.asarray(X_test, dtype=np.float64))


def lookup_predict(
    x_train: Int[np.ndarray, " n"], y_train: Int[np.ndarray, " n"], x_test: Int[np.ndarray, " m"]
) -> Int[np.ndarray, " m"]:
    """The best position-only guess: the most frequent training label at each value of ``x``
    (the nearest seen value for unseen ones). No linear model can beat it using position alone."""
    df = pd.DataFrame({"x": x_train, "y": y_train})
    table = df.groupby("x")["y"].agg(lambda s: s.value_counts().index[0])
    seen = table.index.to_numpy()
    nearest = seen[np.abs(np.asarray(x_test)[:, None] - seen[None, :]).argmin(1)]
    return table.loc[nearest].to_numpy()


def balanced_subset(
    abs_pos: Int[np.ndarray, " n"], labels: Int[np.ndarray, " n"], rng: np.random.Generator, min_per_class: int = 2
) -> Int[np.ndarray, " m"]:
    """Indices of a subset balanced for absolute position.

    At each absolute position, keep the labels with at least ``min_per_class`` examples there; if at
    least two remain, sample the same number of examples (the smallest count) of each. Within every
    kept position the labels are then uniform, so position alone predicts at most chance.
    """
    keep: list[np.ndarray] = []
    for p in np.unique(abs_pos):
        at = np.flatnonzero(abs_pos == p)
        classes, counts = np.unique(labels[at], return_counts=True)
        ok = classes[counts >= min_per_class]
        if len(ok) < 2:
            continue
        m = int(counts[counts >= min_per_class].min())
        for c in ok:
            members = at[labels[at] == c]
            keep.append(rng.choice(members, size=m, replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=int)


def balanced_chance(abs_pos: Int[np.ndarray, " n"], labels: Int[np.ndarray, " n"]) -> float:
    """Expected accuracy of the best guess that knows only the absolute position (per-position
    majority class), on the given examples; on a balanced subset this is the mean of 1/k."""
    if len(labels) == 0:
        return float("nan")
    df = pd.DataFrame({"p": abs_pos, "y": labels})
    return float(df.groupby("p")["y"].agg(lambda s: s.value_counts().iloc[0]).sum() / len(df))
