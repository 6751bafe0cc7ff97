"""A random forest classifier grown breadth-first, over a feature matrix or over feature callbacks.

Each tree is trained on a bootstrap sample (bagging). A level of a tree is grown at once: every node
of the level draws its own ``max_features`` candidate features from a :class:`FeatureSource`, the
candidates are evaluated for all samples of the level in one call, and the best (feature, threshold)
of every node is found by one vectorised search over all sorted thresholds (information gain with
Shannon entropy in bits, as in Shotton et al. 2011, or Gini impurity). Each candidate's values over
the whole level are ordered by one sort of packed (node, value, label) keys, and the class counts
left of every threshold are running sums, one class at a time, that restart at each node. Every node keeps the class
distribution of its training samples, so a forest can also predict as if it had been grown to a
smaller depth (:meth:`RandomForest.predict_proba` with ``max_depth``); prediction averages the trees'
distributions.

The threshold convention follows scikit-learn: the midpoint of two consecutive sorted values, and a
sample goes left when its value is ``<= threshold``.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

# Elements (samples x candidate features) of the sorted values and class counts held at once.
_CHUNK_ELEMENTS = 1_000_000
# Bits of the packed sort key (node, value, label); a level whose key needs more sorts by argsort instead.
_KEY_BITS = 64


class FeatureSource(Protocol):
    """Features of a fixed set of samples, drawn at random and evaluated in batches."""

    num_samples: int

    def sample(self, rng: np.random.Generator, num_nodes: int, k: int) -> np.ndarray:
        """``k`` random candidate feature parameters for each of ``num_nodes`` nodes: (num_nodes, k, P)."""
        ...

    def evaluate(self, ids: np.ndarray, params: np.ndarray) -> np.ndarray:
        """Values (m, k) of the features ``params`` (m, k, P) on the samples ``ids`` (m,)."""
        ...


class MatrixFeatures:
    """A feature matrix (n, F) as a :class:`FeatureSource`: a feature is a column index."""

    def __init__(self, x: np.ndarray):
        self.x = np.asarray(x, np.float32)
        self.num_samples = self.x.shape[0]

    def sample(self, rng: np.random.Generator, num_nodes: int, k: int) -> np.ndarray:
        """``k`` distinct columns per node (all of them, in random order, when k >= F)."""
        f = self.x.shape[1]
        k = min(k, f)
        keys = rng.random((num_nodes, f))
        cols = np.argpartition(keys, k - 1, axis=1)[:, :k] if k < f else np.argsort(keys, axis=1)
        return cols[..., None].astype(np.int64)

    def evaluate(self, ids: np.ndarray, params: np.ndarray) -> np.ndarray:
        """The chosen columns of the chosen rows."""
        flat = ids[:, None] * self.x.shape[1] + params[..., 0]
        return np.take(self.x.reshape(-1), flat)  # a flat gather is faster than a 2-index fancy one


@dataclasses.dataclass
class Tree:
    """One tree in breadth-first order; node 0 is the root and children are ``left``, ``left + 1``.

    Attributes:
      params: (nodes, P) the feature of each split node (undefined on leaves).
      threshold: (nodes,) a sample goes left when its feature value is ``<= threshold``.
      left: (nodes,) index of the left child, -1 on a leaf.
      depth: (nodes,) depth of each node (the root is 0).
      distribution: (nodes, classes) class frequencies of the node's training samples.
      impurity: (nodes,) entropy (bits) or Gini impurity of those samples.
      num_samples: (nodes,) how many training samples (bootstrap duplicates counted) reached the node.
    """

    params: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    depth: np.ndarray
    distribution: np.ndarray
    impurity: np.ndarray
    num_samples: np.ndarray

    def apply(self, source: FeatureSource, ids: np.ndarray, max_depth: int | None = None) -> np.ndarray:
        """The node each sample ``ids`` reaches, descending at most ``max_depth`` levels."""
        node = np.zeros(len(ids), np.int64)
        limit = int(self.depth.max()) if max_depth is None else max_depth
        for _ in range(limit):  # one step down per level, all samples at once
            go = np.flatnonzero(self.left[node] >= 0)
            if go.size == 0:
                break
            n = node[go]
            value = source.evaluate(ids[go], self.params[n][:, None])[:, 0]
            node[go] = self.left[n] + (value > self.threshold[n])
        return node


def _impurity_times_n(counts: np.ndarray, n: np.ndarray, criterion: str) -> np.ndarray:
    """n * impurity of class counts (..., C) with totals n (...): the quantity a split minimises."""
    counts = counts.astype(np.float64)
    n = n.astype(np.float64)
    if criterion == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            clog = np.where(counts > 0, counts * np.log2(np.maximum(counts, 1)), 0.0).sum(-1)
            return np.where(n > 0, n * np.log2(np.maximum(n, 1)) - clog, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, n - (counts**2).sum(-1) / np.maximum(n, 1), 0.0)


def _value_code(values: np.ndarray) -> np.ndarray:
    """uint32 codes of float32 values whose integer order is the float order (-0.0 is coded as 0.0)."""
    bits = (np.asarray(values, np.float32) + np.float32(0.0)).view(np.uint32)
    flip = bits >> np.uint32(31)
    np.negative(flip, out=flip)  # all ones for a negative value (unsigned wrap-around), else zero
    flip |= np.uint32(0x80000000)
    bits ^= flip
    return bits


def _code_value(code: np.ndarray) -> np.ndarray:
    """The float32 values of codes made by :func:`_value_code`."""
    code = np.asarray(code, np.uint32)
    return (code ^ np.where(code >> 31, np.uint32(0x80000000), np.uint32(0xFFFFFFFF))).view(np.float32)


def _sorted_rows(values: np.ndarray, slot: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    """Each row of ``values`` (kc, m) sorted by (slot, value): the value codes and the labels in that order.

    Slot, value code and label are packed into one uint64 key where they fit, so that one plain sort orders
    a row, with no argsort and no gathers; how equal values are ordered does not change any split's counts.
    """
    code = _value_code(values)
    label_bits = max(1, int(num_classes - 1).bit_length())
    if max(1, int(slot[-1]).bit_length()) + 32 + label_bits <= _KEY_BITS:
        key = code.astype(np.uint64)
        key <<= np.uint64(label_bits)
        key |= (slot.astype(np.uint64) << np.uint64(32 + label_bits)) | y.astype(np.uint64)
        key.sort(axis=1)
        label = (key & np.uint64((1 << label_bits) - 1)).astype(np.int32)
        key >>= np.uint64(label_bits)
        return key.astype(np.uint32), label
    order = np.argsort((slot.astype(np.uint64) << np.uint64(32)) | code, axis=1, kind="stable")
    return np.take_along_axis(code, order, 1), y[order].astype(np.int32)


def best_splits(
    values: np.ndarray,
    slot: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    criterion: str = "entropy",
    min_samples_leaf: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best split of every node among its candidate features, over every threshold.

    Args:
      values: (m, k) candidate feature values; column j is node ``slot[i]``'s j-th candidate.
      slot: (m,) node of each sample, sorted ascending, every node in 0..L-1 non-empty.
      y: (m,) class labels.
      num_classes: number of classes C.
      criterion: ``entropy`` or ``gini``.
      min_samples_leaf: fewest samples either child may get.

    Returns:
      score (L,): n_left * impurity_left + n_right * impurity_right of the best split, inf if none;
      feature (L,): its candidate column; threshold (L,): its threshold.
    """
    m, k = values.shape
    slot = np.asarray(slot, np.int64)
    y = np.asarray(y, np.int64)
    starts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
    sizes = np.diff(np.r_[starts, m])
    num_nodes = len(starts)
    totals = np.bincount(slot * num_classes + y, minlength=num_nodes * num_classes).reshape(num_nodes, num_classes)
    # n * impurity = table[n] - sum_c table[count_c] (entropy, bits) or n - sum_c count_c^2 / n (Gini).
    counts = np.arange(m + 1, dtype=np.float64)
    table = (counts * np.log2(np.maximum(counts, 1)) if criterion == "entropy" else counts**2).astype(np.float32)
    n_left = np.arange(1, m + 1) - starts[slot]  # (m,) samples left of a split after each sorted position
    n_right = sizes[slot] - n_left
    valid_n = (np.r_[slot[1:] == slot[:-1], False]) & (n_left >= min_samples_leaf) & (n_right >= min_samples_leaf)
    best = np.full(num_nodes, np.inf)
    best_feature = np.zeros(num_nodes, np.int64)
    best_threshold = np.zeros(num_nodes)
    chunk = max(1, _CHUNK_ELEMENTS // m)
    # Work buffers reused for every class and chunk: fresh temporaries this large cost page faults each time.
    buf = {
        name: np.empty(min(chunk, k) * m, dt)
        for name, dt in [("n", np.intp), ("i", np.intp), ("f", np.float32), ("b", bool)]
    }
    for c0 in range(0, k, chunk):  # chunks of candidate features, to bound memory
        code, ys = _sorted_rows(np.ascontiguousarray(values[:, c0 : c0 + chunk].T), slot, y, num_classes)
        kc = len(code)
        count, other, term, is_c = (b[: kc * m].reshape(kc, m) for b in buf.values())
        sum_left = np.zeros((kc, m), np.float32)
        sum_right = np.zeros((kc, m), np.float32)
        for c in np.flatnonzero(totals.any(0)):  # class counts left of each sorted position, a class at a time
            np.equal(ys, c, out=is_c)
            np.copyto(count, is_c)
            # Minus the previous node's count of c at each node's first sample: the running sum restarts per node.
            count[:, starts[1:]] -= totals[:-1, c]
            np.cumsum(count, axis=1, out=count)
            np.take(table, count, out=term, mode="clip")  # indices are in range; "clip" skips the checks
            sum_left += term
            np.subtract(np.repeat(totals[:, c], sizes), count, out=other)
            np.take(table, other, out=term, mode="clip")
            sum_right += term
        if criterion == "entropy":
            score = table[n_left] - sum_left + table[n_right] - sum_right
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                score = n_left - sum_left / n_left + n_right - sum_right / np.maximum(n_right, 1)
        nxt = np.concatenate([code[:, 1:], code[:, -1:]], 1)
        score = np.where(valid_n & (code != nxt), score, np.inf)
        node_min = np.minimum.reduceat(score, starts, axis=1)  # (kc, L)
        first = np.where(score == node_min[:, slot], np.arange(m), m)
        pos = np.minimum.reduceat(first, starts, axis=1)  # first position reaching each node's minimum
        col = np.argmin(node_min, axis=0)
        row = np.arange(num_nodes)
        chunk_best = node_min[col, row].astype(np.float64)
        better = chunk_best < best
        p = np.minimum(pos[col, row], m - 1)
        lo = _code_value(code[col, p]).astype(np.float64)
        hi = _code_value(nxt[col, p]).astype(np.float64)
        mid = lo / 2 + hi / 2
        mid = np.where(mid >= hi, lo, mid)  # rounding must not send the upper value left
        best = np.where(better, chunk_best, best)
        best_feature = np.where(better, c0 + col, best_feature)
        best_threshold = np.where(better, mid, best_threshold)
    return best, best_feature, best_threshold


@dataclasses.dataclass(frozen=True)
class ForestParams:
    """Hyper-parameters of :class:`RandomForest` (``max_features``: candidate features per node)."""

    num_trees: int = 3
    max_depth: int = 20
    max_features: int = 50
    min_samples_leaf: int = 1
    min_samples_split: int = 2
    criterion: str = "entropy"
    bootstrap: bool = True


def grow_tree(
    source: FeatureSource,
    y: np.ndarray,
    num_classes: int,
    params: ForestParams,
    rng: np.random.Generator,
    ids: np.ndarray | None = None,
) -> Tree:
    """Grows one tree breadth-first on the samples ``ids`` (default: all) of ``source`` labelled ``y``."""
    ids = np.arange(source.num_samples) if ids is None else np.asarray(ids)
    lab = np.asarray(y)[ids]
    node = np.zeros(len(ids), np.int64)  # node of each sample still in play
    out: dict[str, list] = {k: [] for k in ("params", "threshold", "left", "depth", "dist", "impurity", "n")}
    level_start, level_size = 0, 1
    for level in range(params.max_depth + 1):
        slot = node - level_start
        counts = np.bincount(slot * num_classes + lab, minlength=level_size * num_classes)
        counts = counts.reshape(level_size, num_classes)
        n = counts.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["dist"].append(counts / np.maximum(n, 1)[:, None])
            out["impurity"].append(_impurity_times_n(counts, n, params.criterion) / np.maximum(n, 1))
        out["n"].append(n)
        out["depth"].append(np.full(level_size, level))
        split_ok = (
            (n >= max(params.min_samples_split, 2 * params.min_samples_leaf))
            & (counts.max(1) < n)
            & (level < params.max_depth)
        )
        left = np.full(level_size, -1)
        thr = np.zeros(level_size)
        feat = None
        keep = split_ok[slot]
        if keep.any():
            cand_nodes = np.flatnonzero(split_ok)
            rank = np.full(level_size, -1)
            rank[cand_nodes] = np.arange(len(cand_nodes))
            order = np.argsort(rank[slot[keep]], kind="stable")
            s_ids, s_lab, s_rank = ids[keep][order], lab[keep][order], rank[slot[keep]][order]
            cand = source.sample(rng, len(cand_nodes), params.max_features)
            values = source.evaluate(s_ids, cand[s_rank])
            score, col, threshold = best_splits(
                values, s_rank, s_lab, num_classes, params.criterion, params.min_samples_leaf
            )
            found = np.isfinite(score)
            split_nodes = cand_nodes[found]
            # Children of this level are numbered after it, two per split node, in node order.
            child = level_start + level_size + 2 * np.arange(len(split_nodes))
            left[split_nodes] = child
            thr[split_nodes] = threshold[found]
            feat = np.zeros((level_size, *cand.shape[2:]), cand.dtype)
            feat[cand_nodes] = cand[np.arange(len(cand_nodes)), col]
            # Send the samples of split nodes to their children.
            go = left[slot] >= 0
            s = slot[go]
            value = source.evaluate(ids[go], feat[s][:, None])[:, 0]
            ids, lab = ids[go], lab[go]
            node = left[s] + (value > thr[s])
        out["params"].append(feat)
        out["left"].append(left)
        out["threshold"].append(thr)
        new_size = 2 * int((left >= 0).sum())
        level_start, level_size = level_start + level_size, new_size
        if new_size == 0:
            break
    pdim = next((p for p in out["params"] if p is not None), np.zeros((0, 1), np.int64))
    out["params"] = [
        np.zeros((len(t), *pdim.shape[1:]), pdim.dtype) if p is None else p
        for p, t in zip(out["params"], out["left"], strict=True)
    ]
    return Tree(
        params=np.concatenate(out["params"]),
        threshold=np.concatenate(out["threshold"]),
        left=np.concatenate(out["left"]),
        depth=np.concatenate(out["depth"]),
        distribution=np.concatenate(out["dist"]).astype(np.float32),
        impurity=np.concatenate(out["impurity"]),
        num_samples=np.concatenate(out["n"]),
    )


class RandomForest:
    """Bagged trees with random candidate features per node; predicts the mean class distribution."""

    def __init__(self, params: ForestParams, num_classes: int, seed: int = 0):
        if params.criterion not in ("entropy", "gini"):
            raise ValueError(f"criterion must be 'entropy' or 'gini', got {params.criterion!r}")
        self.params = params
        self.num_classes = num_classes
        self.seed = seed
        self.trees: list[Tree] = []

    def fit(self, source: FeatureSource, y: np.ndarray) -> RandomForest:
        """Grows ``num_trees`` trees, each on its own bootstrap sample (or on all samples without bagging)."""
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(self.params.num_trees)]
        self.trees = []
        for rng in rngs:
            n = source.num_samples
            ids = rng.integers(0, n, n) if self.params.bootstrap else np.arange(n)
            self.trees.append(grow_tree(source, y, self.num_classes, self.params, rng, ids))
        return self

    def predict_proba(self, source: FeatureSource, max_depth: int | None = None) -> np.ndarray:
        """Mean over trees of the class distribution (n, C) at the node each sample reaches."""
        ids = np.arange(source.num_samples)
        total = np.zeros((len(ids), self.num_classes), np.float32)
        for tree in self.trees:
            total += tree.distribution[tree.apply(source, ids, max_depth)]
        return total / len(self.trees)

    def predict(self, source: FeatureSource, max_depth: int | None = None) -> np.ndarray:
        """The most probable class of each sample."""
        return np.argmax(self.predict_proba(source, max_depth), axis=1)
