"""Discrete AdaBoost with decision stumps, as the course gives it, with the best stump per feature found by sorting.

Round ``t``: normalise the weights; for every feature ``j`` find the stump
``h_j(x) = 1 if p f_j(x) < p theta else 0`` of least weighted error
``epsilon_j``; keep the best; ``beta = (1 - epsilon) / epsilon``; multiply the
weights of the examples it gets wrong by ``beta``; ``alpha = ln beta``. The
strong classifier is the sign of ``sum_t alpha_t (2 h_t(x) - 1)`` (``> 0`` is a
face), the same as Viola and Jones' ``sum alpha h >= 1/2 sum alpha`` and as
two-class SAMME with learning rate 1.

The best threshold of a feature comes from one pass over its examples in
sorted order: with ``D_i`` the running sum of the signed weights (``+w`` for
positives, ``-w`` for negatives) of the ``i`` smallest values, putting the
threshold after the ``i``-th value costs ``T+ - D_i`` with polarity +1 (below
is a face) and ``T- + D_i`` with polarity -1. The sort does not depend on the
weights, so it is done once (:func:`sort_features`); a round is a gather, a
cumulative sum and an arg-min per feature.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from mlcv.classic.base import LogFn


@dataclasses.dataclass(frozen=True)
class SortedFeatures:
    """Per-feature sort of the training values, computed once.

    Attributes:
      order: ``(F, N)`` example indices in increasing feature value.
      tied: ``(F, N - 1)``: True where the sorted values ``i`` and ``i + 1`` are
        equal, so no threshold can separate them.
    """

    order: np.ndarray
    tied: np.ndarray

    @property
    def num_examples(self) -> int:
        """``N``, the number of training examples."""
        return self.order.shape[1]


def sort_features(values: np.ndarray, *, chunk: int = 4096) -> SortedFeatures:
    """Sorts the ``(F, N)`` feature values of each feature (chunked to bound the temporaries)."""
    f, n = values.shape
    order = np.empty((f, n), np.int16 if n < 2**15 else np.int32)
    tied = np.empty((f, max(n - 1, 0)), bool)
    for s in range(0, f, chunk):
        o = np.argsort(values[s : s + chunk], axis=1, kind="stable")
        v = np.take_along_axis(values[s : s + chunk], o, axis=1)
        order[s : s + chunk] = o
        tied[s : s + chunk] = v[:, 1:] == v[:, :-1]
    return SortedFeatures(order, tied)


def best_stumps(
    sf: SortedFeatures, y: np.ndarray, w: np.ndarray, rows: np.ndarray | None = None, *, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The least-error stump of each feature in ``rows`` (default all) under weights ``w``.

    Returns:
      ``(error, position, polarity)``, each ``(len(rows),)``: the weighted error,
      how many of the sorted examples fall below the threshold (0 ... N), and
      ``p`` in {+1, -1}.
    """
    y = np.asarray(y).astype(bool)
    w = np.asarray(w, np.float64)
    rows = np.arange(sf.order.shape[0]) if rows is None else np.asarray(rows)
    signed = np.where(y, w, -w)
    t_pos, t_neg = w[y].sum(), w[~y].sum()
    err = np.empty(len(rows))
    pos = np.empty(len(rows), np.int64)
    pol = np.empty(len(rows), np.int8)
    for s in range(0, len(rows), chunk):
        r = rows[s : s + chunk]
        d = np.cumsum(signed[sf.order[r]], axis=1)  # d[:, i - 1] = D_i
        # a threshold between two equal values does not exist; after the last value it always does
        blocked = np.concatenate([sf.tied[r], np.zeros((len(r), 1), bool)], axis=1)
        j_max = np.argmax(np.where(blocked, -np.inf, d), axis=1)
        j_min = np.argmin(np.where(blocked, np.inf, d), axis=1)
        d_max = np.maximum(d[np.arange(len(r)), j_max], 0.0)  # D_0 = 0: threshold below every value
        d_min = np.minimum(d[np.arange(len(r)), j_min], 0.0)
        i_max = np.where(d[np.arange(len(r)), j_max] > 0, j_max + 1, 0)
        i_min = np.where(d[np.arange(len(r)), j_min] < 0, j_min + 1, 0)
        e_plus, e_minus = t_pos - d_max, t_neg + d_min
        plus = e_plus <= e_minus
        err[s : s + chunk] = np.where(plus, e_plus, e_minus)
        pos[s : s + chunk] = np.where(plus, i_max, i_min)
        pol[s : s + chunk] = np.where(plus, 1, -1)
    return np.clip(err, 0.0, None), pos, pol


def threshold_at(values: np.ndarray, position: int) -> float:
    """The threshold that puts the ``position`` smallest of ``values`` below it: a midpoint, or +-inf at the ends."""
    v = np.sort(np.asarray(values, np.float64))
    if position <= 0:
        return -np.inf
    if position >= len(v):
        return np.inf
    return float((v[position - 1] + v[position]) / 2)


@dataclasses.dataclass
class Stumps:
    """A boosted sum of stumps ``sum_t alpha_t (2 h_t - 1)``, ``h_t(x) = [p_t f(x) < p_t theta_t]``."""

    feature: np.ndarray
    threshold: np.ndarray
    polarity: np.ndarray
    alpha: np.ndarray

    @classmethod
    def empty(cls) -> Stumps:
        """No stumps yet: the score of every example is 0."""
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int8), np.zeros(0))

    def __len__(self) -> int:
        return len(self.feature)

    def append(self, feature: int, threshold: float, polarity: int, alpha: float) -> None:
        """Adds one weighted stump."""
        self.feature = np.append(self.feature, feature)
        self.threshold = np.append(self.threshold, threshold)
        self.polarity = np.append(self.polarity, polarity).astype(np.int8)
        self.alpha = np.append(self.alpha, alpha)

    def weak(self, values: np.ndarray) -> np.ndarray:
        """Weak decisions ``h`` in {0, 1}, ``(N, T)``, from the values ``(N, T)`` of the stumps' own features."""
        return (self.polarity * values < self.polarity * self.threshold).astype(np.int8)

    def score(self, values: np.ndarray) -> np.ndarray:
        """``sum_t alpha_t (2 h_t - 1)`` for each row of ``values`` ``(N, T)``."""
        return (2.0 * self.weak(values) - 1.0) @ self.alpha


def boost(
    sf: SortedFeatures,
    column: Callable[[int], np.ndarray],
    y: np.ndarray,
    rounds: int,
    *,
    stumps: Stumps | None = None,
    weights: np.ndarray | None = None,
    per_round: int = 0,
    rng: np.random.Generator | None = None,
    log: LogFn | None = None,
    log_step: int = 0,
    log_prefix: str = "",
) -> tuple[Stumps, np.ndarray, list[float], bool]:
    """Runs ``rounds`` rounds of AdaBoost on sorted features.

    Args:
      sf: :func:`sort_features` of the training values.
      column: ``f -> (N,)`` values of feature ``f`` on the training examples
        (the threshold is a midpoint of them).
      y: ``(N,)`` labels in {0, 1}.
      rounds: rounds to add.
      stumps, weights: continue from an earlier call (weights as it returned them).
      per_round: > 0 searches only a random subset of that many features each round.
      rng: draws the subsets.
      log: called after each round with the weighted error, alpha and training error.

    Returns:
      ``(stumps, weights, training_errors, perfect)``: the training error of the
      strong classifier (score > 0 is class 1) after each round of this call;
      ``perfect`` is True when a stump made no weighted error (``beta`` would be
      infinite), which ends the boosting.
    """
    y = np.asarray(y).astype(bool)
    n = len(y)
    stumps = Stumps.empty() if stumps is None else stumps
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, np.float64).copy()
    score = np.zeros(n)
    for t in range(len(stumps)):
        score += stumps.alpha[t] * (2.0 * stumps.weak(column(int(stumps.feature[t]))[:, None])[:, 0] - 1.0)
    errors: list[float] = []
    f_total = sf.order.shape[0]
    for _ in range(rounds):
        w = w / w.sum()
        rows = None
        if 0 < per_round < f_total:
            rows = np.sort((rng or np.random.default_rng(0)).choice(f_total, per_round, replace=False))
        err, pos, pol = best_stumps(sf, y, w, rows)
        k = int(np.argmin(err))
        f = int(k if rows is None else rows[k])
        values = column(f)
        theta = threshold_at(values, int(pos[k]))
        h = pol[k] * values < pol[k] * theta
        wrong = h != y
        eps = float(w[wrong].sum())  # the stump's own error, recomputed from its decisions
        eps_c = max(eps, 1e-12)
        beta = (1.0 - eps_c) / eps_c
        alpha = float(np.log(beta))
        stumps.append(f, theta, int(pol[k]), alpha)
        w = np.where(wrong, w * beta, w)
        score += alpha * np.where(h, 1.0, -1.0)
        errors.append(float(((score > 0) != y).mean()))
        if log is not None:
            log(
                log_step + len(errors) - 1,
                {
                    f"{log_prefix}weighted_error": eps,
                    f"{log_prefix}alpha": alpha,
                    f"{log_prefix}train_error": errors[-1],
                },
            )
        if eps <= 0.0:
            return stumps, w / w.sum(), errors, True
    return stumps, w / w.sum(), errors, False
