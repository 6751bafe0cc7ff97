"""Bag of visual words: a k-means codebook of local descriptors, histogram and VLAD encodings, a linear classifier.

One run builds the codebook from the training images' descriptors
(:mod:`mlcv.classic.algorithms.descriptors`; k-means of :mod:`mlcv.classic.algorithms.kmeans`) and
classifies three image representations side by side:

- ``pixels``: the raw image as one vector (the baseline);
- ``histogram``: counts of each descriptor's nearest codeword, L1-normalised;
- ``vlad``: for every codeword, the sum of the residuals ``x - c_k`` of the
  descriptors assigned to it, the K blocks of D concatenated, then power-
  (``sign(v) |v|^alpha``) and L2-normalised (Jegou et al., 2010).

Each representation gets its own classifier, its hyper-parameter chosen on
the validation split; ``config.bovw.encoding`` names the one of the headline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mlcv import data
from mlcv.classic.algorithms import descriptors, kmeans, knn
from mlcv.classic.algorithms.encodings import fit_ridge, histogram, nearest_words, vlad
from mlcv.classic.base import FittedMethod, LogFn
from mlcv.config import ConfigError

ENCODINGS = ("pixels", "histogram", "vlad")
DESCRIPTORS = ("patch", "sift")
CLASSIFIERS = ("ridge", "knn")


class _Classifier:
    """The classifier of one encoding: ridge (hyper-parameter lambda) or kNN with p = 2 (hyper-parameter k)."""

    def __init__(self, kind: str, train: tuple[np.ndarray, np.ndarray], num_classes: int):
        self.kind, self.train, self.num_classes = kind, train, num_classes
        self.value = None

    def set(self, value: float) -> _Classifier:
        self.value = value
        if self.kind == "ridge":
            self.w, self.b = fit_ridge(*self.train, value, self.num_classes)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "ridge":
            return np.argmax(np.asarray(x, np.float64) @ self.w + self.b, 1)
        return knn.predict(*self.train, x, int(self.value), 2.0)


class BagOfWords(FittedMethod):
    """Face vs non-face (or any labelled image set) from raw pixels, word histograms and VLAD.

    Config (``config.bovw``): ``encoding`` (the headline's: pixels, histogram,
    vlad), ``descriptor`` (patch, sift), ``grid_step``, ``patch_sizes``
    (smallest, largest side drawn per keypoint), ``patch_samples`` (a patch's
    side after resampling), ``patch_contrast_eps`` (added to a patch's std
    before dividing by it), ``sift_c_dog``, ``codebook_size``,
    ``max_descriptors`` (k-means sample), ``kmeans_n_init``,
    ``kmeans_max_iter``, ``vlad_alpha``, ``classifier`` (ridge, knn) and its
    grid ``ridge_lambdas`` or ``knn_ks``. ``config.data.name`` names the
    dataset; ``config.seed`` draws patch sizes, the k-means sample and seeding.
    """

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        b = config.bovw
        for key, value, valid in (
            ("encoding", b.encoding, ENCODINGS),
            ("descriptor", b.descriptor, DESCRIPTORS),
            ("classifier", b.classifier, CLASSIFIERS),
        ):
            if value not in valid:
                raise ConfigError(f"config.bovw.{key} must be one of {', '.join(valid)}, got {value!r}")
        checks = (
            ("grid_step", b.grid_step >= 1, "must be >= 1"),
            ("patch_sizes", len(b.patch_sizes) == 2 and 0 < b.patch_sizes[0] <= b.patch_sizes[1], "must be 0 < a <= b"),
            ("patch_samples", b.patch_samples >= 2, "must be >= 2"),
            ("patch_contrast_eps", b.patch_contrast_eps > 0, "must be > 0"),
            ("codebook_size", b.codebook_size >= 1, "must be >= 1"),
            ("max_descriptors", b.max_descriptors >= b.codebook_size, "must be >= config.bovw.codebook_size"),
            ("kmeans_n_init", b.kmeans_n_init >= 1, "must be >= 1"),
            ("kmeans_max_iter", b.kmeans_max_iter >= 1, "must be >= 1"),
            ("vlad_alpha", 0 < b.vlad_alpha <= 1, "must be in (0, 1]"),
            ("ridge_lambdas", len(b.ridge_lambdas) > 0 and min(b.ridge_lambdas) > 0, "must be positive values"),
            ("knn_ks", len(b.knn_ks) > 0 and min(b.knn_ks) >= 1, "must be integers >= 1"),
        )
        for key, ok, what in checks:
            if not ok:
                raise ConfigError(f"config.bovw.{key} {what}, got {b[key]!r}")
        self.splits = {}
        for role in ("train", "validation", "test"):
            arrays = data.load_arrays(config.data.name, role, data_dir=config.data.get("data_dir"))
            image = arrays["image"]
            scale = 255.0 if image.dtype == np.uint8 else 1.0
            image = image[..., None] if image.ndim == 3 else image
            self.splits[role] = (image.astype(np.float32) / scale, np.asarray(arrays["label"]))
        self.classes = np.unique(self.splits["train"][1])
        train_images = self.splits["train"][0]
        if b.descriptor == "patch":
            n_desc = len(train_images) * len(descriptors.grid_centres(*train_images.shape[1:3], b.grid_step))
            if b.codebook_size > n_desc:
                raise ConfigError(f"config.bovw.codebook_size {b.codebook_size} exceeds the {n_desc} training patches")
        self.features: dict[str, dict[str, np.ndarray]] = {}
        self.chosen: dict[str, _Classifier] = {}

    def _descriptors(self, key: jax.Array, images: np.ndarray):
        b = self.config.bovw
        if b.descriptor == "sift":
            return descriptors.sift_descriptors(images, c_dog=b.sift_c_dog)
        return descriptors.patch_descriptors(
            key, images, b.grid_step, tuple(b.patch_sizes), b.patch_samples, b.patch_contrast_eps
        )

    def fit(self, log: LogFn) -> dict[str, Any]:
        """Descriptors, codebook, the three encodings and one classifier each, chosen on validation."""
        b = self.config.bovw
        keys = dict(
            zip(("local", "sample", "kmeans"), jax.random.split(jax.random.key(self.config.seed), 3), strict=True)
        )
        # Descriptors and encodings are computed over every split's images at once (one shape to compile): each
        # image's depend on that image (and the codebook) alone, and only the training split's build the codebook.
        roles = list(self.splits)
        images = np.concatenate([self.splits[r][0] for r in roles])
        starts = dict(zip(roles, np.cumsum([0] + [len(self.splits[r][0]) for r in roles]), strict=False))
        desc, mask, points = self._descriptors(keys["local"], images)
        n_train = len(self.splits["train"][0])
        self.keypoints = points[starts["train"] : starts["train"] + n_train]
        pool = desc[starts["train"] : starts["train"] + n_train][mask[starts["train"] : starts["train"] + n_train]]
        if len(pool) < b.codebook_size:
            raise ConfigError(
                f"config.bovw.codebook_size {b.codebook_size} exceeds the {len(pool)} training descriptors"
            )
        if len(pool) > b.max_descriptors:
            pick = jax.random.choice(keys["sample"], len(pool), (b.max_descriptors,), replace=False)
            pool = pool[np.sort(np.asarray(pick))]
        book = kmeans.kmeans(keys["kmeans"], pool, b.codebook_size, n_init=b.kmeans_n_init, max_iter=b.kmeans_max_iter)
        self.codebook = book.centres
        log(0, {"kmeans/inertia": book.inertia, "kmeans/n_iter": book.n_iter, "kmeans/descriptors": len(pool)})
        hist = histogram(nearest_words(desc, self.codebook), mask, b.codebook_size)
        every = {
            "pixels": images.reshape(len(images), -1),
            "histogram": hist / np.maximum(hist.sum(1, keepdims=True), 1),
            "vlad": vlad(desc, mask, self.codebook, b.vlad_alpha),
        }
        for r in roles:
            self.features[r] = {enc: f[starts[r] : starts[r] + len(self.splits[r][0])] for enc, f in every.items()}
        grid = list(b.ridge_lambdas) if b.classifier == "ridge" else [int(k) for k in b.knn_ks]
        name = "lambda" if b.classifier == "ridge" else "k"
        y_val = np.searchsorted(self.classes, self.splits["validation"][1])
        facts: dict[str, Any] = {"kmeans_inertia": book.inertia, "descriptors_per_image": float(mask.sum(1).mean())}
        step = 1
        for enc in ENCODINGS:
            train = (self.features["train"][enc], np.searchsorted(self.classes, self.splits["train"][1]))
            best = None
            for value in grid:
                clf = _Classifier(b.classifier, train, len(self.classes)).set(value)
                acc = float(np.mean(clf.predict(self.features["validation"][enc]) == y_val))
                log(step, {f"{enc}/{name}": value, f"{enc}/validation/accuracy": acc})
                step += 1
                if best is None or acc > best[0]:  # ties keep the first in the grid's order
                    best = (acc, clf)
            self.chosen[enc] = best[1]
            facts[f"{enc}_{name}"] = best[1].value
            facts[f"{enc}_dims"] = int(train[0].shape[1])
        return facts

    def evaluate(self, role: str) -> dict[str, Any]:
        """Accuracy of the configured encoding (``accuracy``) and of all three (``<encoding>/accuracy``)."""
        y = np.searchsorted(self.classes, self.splits[role][1])
        out = {
            f"{enc}/accuracy": float(np.mean(self.chosen[enc].predict(self.features[role][enc]) == y))
            for enc in ENCODINGS
        }
        out["accuracy"] = out[f"{self.config.bovw.encoding}/accuracy"]
        return out

    def plot(self, plots_dir: Path) -> None:
        """``bovw_keypoints.png`` (training images with their keypoints) and, for patches, ``bovw_codebook.png``."""
        import matplotlib.pyplot as plt

        from mlcv.report import plots  # noqa: F401 - sets the Agg backend before pyplot is imported

        images = self.splits["train"][0]
        fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
        for ax, image, points in zip(axes, images[:4], self.keypoints[:4], strict=False):
            ax.imshow(image.mean(-1), cmap="gray")
            for r, c, s in points:
                if s > 0:
                    ax.add_patch(
                        plt.Rectangle((c - s / 2, r - s / 2), s, s, fill=False, lw=0.5, ec="yellow", alpha=0.6)
                    )
            ax.axis("off")
        fig.suptitle(f"{self.config.bovw.descriptor} keypoints on training images")
        fig.tight_layout()
        fig.savefig(plots_dir / "bovw_keypoints.png", dpi=100)
        plt.close(fig)
        if self.config.bovw.descriptor != "patch":
            return
        s, c = self.config.bovw.patch_samples, images.shape[-1]
        k = len(self.codebook)
        cols = int(np.ceil(np.sqrt(k)))
        rows = int(np.ceil(k / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows), squeeze=False)
        for i, ax in enumerate(axes.ravel()):
            if i < k:
                word = self.codebook[i].reshape(s, s, c)
                word = (word - word.min()) / max(float(np.ptp(word)), 1e-6)
                ax.imshow(word[..., 0] if c == 1 else word, cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
        fig.suptitle(f"codebook: {k} visual words")
        fig.tight_layout()
        fig.savefig(plots_dir / "bovw_codebook.png", dpi=100)
        plt.close(fig)

    def headline(self, summary: dict[str, Any]) -> str:
        """``test accuracy 96.67 % (vlad; pixels 90.00 %, histogram 93.33 %, vlad 96.67 %)``."""
        test = summary["test"]
        each = ", ".join(f"{enc} {100 * test[f'{enc}/accuracy']:.2f} %" for enc in ENCODINGS)
        return f"test accuracy {100 * test['accuracy']:.2f} % ({self.config.bovw.encoding}; {each})"
