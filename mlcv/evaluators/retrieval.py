"""Retrieval over a whole split: Recall@K, MAP@R, R-precision, kNN accuracy, and identification by enrolment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from mlcv.config import ConfigError
from mlcv.evaluators import plots
from mlcv.evaluators.base import Evaluator
from mlcv.evaluators.registry import register
from mlcv.metrics import retrieval
from mlcv.ops import knn

ENROL_KEY = "config.evals.*.enrol_per_class of evaluator 'retrieval'"


def thumbnails(images: jax.Array, size: int) -> jax.Array:
    """Images ``[B, H, W(, C)]`` shrunk so that the longer side is at most ``size``, min-max scaled per image to
    uint8 ``[B, h, w, C]``: small enough to keep every image of a split on the host for the figures."""
    x = images.astype(jnp.float32)
    x = x[..., None] if x.ndim == 3 else x
    b, h, w, c = x.shape
    factor = min(1.0, size / max(h, w))
    x = jax.image.resize(x, (b, max(1, round(h * factor)), max(1, round(w * factor)), c), "linear", antialias=True)
    lo = jnp.min(x, axis=(1, 2, 3), keepdims=True)
    hi = jnp.max(x, axis=(1, 2, 3), keepdims=True)
    return jnp.round(255 * (x - lo) / jnp.where(hi > lo, hi - lo, 1.0)).astype(jnp.uint8)


def pca_2d(emb: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The embeddings projected on their first two principal components (SVD of the centred matrix), and the
    fraction of the variance each explains. Signs are fixed so that each component's largest loading is
    positive; fewer than two dimensions leave zeros."""
    x = np.asarray(emb, np.float64)
    x = x - x.mean(0)
    out, explained = np.zeros((len(x), 2)), [0.0, 0.0]
    if len(x) < 2:
        return out, explained
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    m = min(2, len(s))
    comps = vt[:m] * np.sign(vt[:m][np.arange(m), np.argmax(np.abs(vt[:m]), 1)])[:, None]
    out[:, :m] = x @ comps.T
    total = float(np.sum(s**2))
    explained[:m] = (s[:m] ** 2 / total).tolist() if total > 0 else [0.0] * m
    return out, explained


@register("retrieval")
class RetrievalEvaluator(Evaluator):
    """Leave-one-out retrieval over the split (:mod:`mlcv.metrics.retrieval`): every item a query, the others
    its gallery.

    Scalars: ``recall_at_<k>`` for each of ``recall_ks``, ``map_at_r``, ``r_precision``, ``knn_accuracy``
    (a ``knn_k``-NN vote over the others), and, with ``enrol_per_class > 0``, ``identification_accuracy``:
    the first ``enrol_per_class`` items of each identity (in split order) are enrolled as the gallery, the
    rest are probes identified by an ``identification_k``-NN vote over it (no retraining). Every identity of
    the split needs more than ``enrol_per_class`` items, or :meth:`result` raises a ConfigError.

    Extras: ``embedding_2d`` (a PCA projection, ``[[x, y], ...]``, of at most ``projection_points`` items
    drawn with ``seed``), ``embedding_2d_labels``, ``embedding_2d_variance`` (the fraction of the variance
    each axis explains), ``retrieval_examples`` (for ``draw_queries`` queries drawn with ``seed``: their index
    and label, their 4 nearest others' indices and labels, whether each matches, and when the batch holds
    ``image_key``, thumbnails of all five as PNG strings), and with enrolment, ``identification_counts``
    (gallery and probe sizes).

    ``batch_fn`` returns the embeddings (and thumbnails of at most ``thumbnail_size`` pixels, uint8);
    ``update`` keeps the unpadded rows, so memory grows with the split.
    """

    def __init__(
        self,
        embedding_key: str = "embedding",
        label_key: str = "label",
        recall_ks: Sequence[int] = (1, 2, 4, 8),
        knn_k: int = 5,
        enrol_per_class: int = 0,
        identification_k: int = 1,
        image_key: str | None = "image",
        draw_queries: int = 6,
        thumbnail_size: int = 32,
        projection_points: int = 2000,
        seed: int = 0,
        batch_size: int = 256,
    ):
        self.recall_ks = tuple(int(k) for k in recall_ks)
        checks = (
            ("knn_k", knn_k, 1),
            ("enrol_per_class", enrol_per_class, 0),
            ("identification_k", identification_k, 1),
        )
        for name, value, least in checks:
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
                raise ConfigError(f"config.evals: evaluator 'retrieval' needs {name} >= {least}, not {value!r}")
        if not self.recall_ks or min(self.recall_ks) < 1:
            raise ConfigError(f"config.evals: evaluator 'retrieval' needs recall_ks >= 1, not {tuple(recall_ks)}")
        self.embedding_key = embedding_key
        self.label_key = label_key
        self.knn_k = int(knn_k)
        self.enrol_per_class = int(enrol_per_class)
        self.identification_k = int(identification_k)
        self.image_key = image_key
        self.draw_queries = int(draw_queries)
        self.thumbnail_size = int(thumbnail_size)
        self.projection_points = int(projection_points)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        names = [f"recall_at_{k}" for k in self.recall_ks] + ["map_at_r", "r_precision", "knn_accuracy"]
        names += ["identification_accuracy"] if self.enrol_per_class else []
        self.directions = dict.fromkeys(names, "max")
        self.percent = frozenset(names)
        self.reset()

    def batch_fn(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        out = {"embedding": outputs[self.embedding_key], "label": batch[self.label_key], "mask": batch["mask"]}
        if self.draw_queries and self.image_key is not None and self.image_key in batch:
            out["thumbnail"] = thumbnails(batch[self.image_key], self.thumbnail_size)
        return out

    def reset(self) -> None:
        self.embeddings: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.thumbnails: list[np.ndarray] = []

    def update(self, fetched: Mapping[str, Any]) -> None:
        real = np.asarray(fetched["mask"]) > 0
        self.embeddings.append(np.asarray(fetched["embedding"], np.float32)[real])
        self.labels.append(np.asarray(fetched["label"]).reshape(len(real), -1)[real, 0])
        if "thumbnail" in fetched:
            self.thumbnails.append(np.asarray(fetched["thumbnail"])[real])

    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        emb = np.concatenate(self.embeddings) if self.embeddings else np.zeros((0, 1), np.float32)
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0, int)
        scalars = retrieval.retrieval_metrics(emb, labels, self.recall_ks, self.batch_size)
        scalars["knn_accuracy"] = retrieval.knn_accuracy(emb, labels, self.knn_k, self.batch_size)
        rng = np.random.default_rng(self.seed)
        shown = np.sort(rng.choice(len(emb), min(len(emb), self.projection_points), replace=False))
        xy, explained = pca_2d(emb[shown])
        extras: dict[str, Any] = {
            "embedding_2d": xy.tolist(),
            "embedding_2d_labels": labels[shown].tolist(),
            "embedding_2d_variance": explained,
            "retrieval_examples": self._examples(emb, labels, rng),
        }
        if self.enrol_per_class:
            scalars["identification_accuracy"], extras["identification_counts"] = self._identify(emb, labels)
        return scalars, extras

    def _identify(self, emb: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, int]]:
        if len(labels) == 0:
            return float("nan"), {"gallery": 0, "probes": 0}
        gallery, probes = retrieval.enrolment_split(labels, self.enrol_per_class, ENROL_KEY)
        predicted = retrieval.enrol_and_identify(
            emb[gallery], labels[gallery], emb[probes], self.identification_k, ENROL_KEY, self.batch_size
        )
        return float(np.mean(predicted == labels[probes])), {"gallery": len(gallery), "probes": len(probes)}

    def _examples(self, emb: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> list[dict[str, Any]]:
        """A few queries and their 4 nearest others (ties: the lower index first), with thumbnails if kept."""
        n = len(emb)
        if n < 2 or not self.draw_queries or not np.isfinite(emb).all():
            return []
        queries = np.sort(rng.choice(n, min(n, self.draw_queries), replace=False))
        idx = knn.neighbours(emb[queries], emb, min(5, n), 2.0, self.batch_size)
        thumbs = np.concatenate(self.thumbnails) if self.thumbnails else None
        out = []
        for q, row in zip(queries, idx, strict=True):
            near = [int(i) for i in row if i != q][:4]
            example = {
                "query": int(q),
                "label": labels[q].item(),
                "neighbours": near,
                "neighbour_labels": labels[near].tolist(),
                "match": (labels[near] == labels[q]).tolist(),
            }
            if thumbs is not None:
                example["images_png"] = [plots.image_png(thumbs[i]) for i in [int(q), *near]]
            out.append(example)
        return out

    def plot(self, extras: Mapping[str, Any], directory: Path, prefix: str) -> list[Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = [plot_embedding_2d(extras, directory / f"embedding_2d_{prefix}.png", prefix)]
        if extras.get("retrieval_examples"):
            paths.append(plot_retrieval(extras["retrieval_examples"], directory / f"retrieval_{prefix}.png", prefix))
        return paths


def plot_embedding_2d(extras: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """The PCA projection as a scatter coloured by class (a legend up to 10 classes)."""
    xy = np.asarray(extras["embedding_2d"], np.float64).reshape(-1, 2)
    classes, colour = np.unique(np.asarray(extras["embedding_2d_labels"]), return_inverse=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "nipy_spectral")
    for i, c in enumerate(classes):
        at = colour.ravel() == i
        ax.scatter(xy[at, 0], xy[at, 1], s=6, color=cmap(i if len(classes) <= 20 else i / len(classes)), label=c)
    if 0 < len(classes) <= 10:
        ax.legend(fontsize=7, markerscale=2)
    variance = extras.get("embedding_2d_variance", [0.0, 0.0])
    ax.set_xlabel(f"PC 1 ({100 * variance[0]:.1f} % of the variance)")
    ax.set_ylabel(f"PC 2 ({100 * variance[1]:.1f} %)")
    ax.set_title(f"{title}: embeddings, 2-D PCA")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_retrieval(examples: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> Path:
    """One row per query: the query, then its nearest others framed green (same label) or red."""
    cols = 1 + max(len(e["neighbours"]) for e in examples)
    fig, axes = plt.subplots(len(examples), cols, figsize=(1.6 * cols, 1.7 * len(examples)), squeeze=False)
    for row, example in zip(axes, examples, strict=True):
        labels = [example["label"], *example["neighbour_labels"]]
        frames = ["black", *("green" if m else "red" for m in example["match"])]
        images = example.get("images_png")
        for j, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(labels):
                ax.axis("off")
                continue
            if images:
                ax.imshow(plots.png_image(images[j]), cmap="gray")
            else:
                ax.text(0.5, 0.5, str(labels[j]), ha="center", va="center", fontsize=14)
            for spine in ax.spines.values():
                spine.set_color(frames[j])
                spine.set_linewidth(3)
            ax.set_title(("query " if j == 0 else f"{j}: ") + str(labels[j]), fontsize=7)
    fig.suptitle(f"{title}: queries and their nearest neighbours", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
