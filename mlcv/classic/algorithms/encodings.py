"""Encodings of a set of local descriptors against a codebook (word histograms, VLAD) and a ridge classifier."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mlcv.classic.algorithms import kmeans


def nearest_words(desc: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest codeword of every descriptor: (n_images, m)."""
    n, m, d = desc.shape
    return np.asarray(kmeans.assign(jnp.asarray(desc.reshape(n * m, d)), jnp.asarray(centres))).reshape(n, m)


def histogram(words: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Counts of each codeword among an image's real descriptors: (n_images, k)."""
    return ((words[..., None] == np.arange(k)) & mask[..., None]).sum(1)


def power_l2(v: np.ndarray, alpha: float) -> np.ndarray:
    """``sign(v) |v|^alpha`` then each row divided by its L2 norm (an all-zero row stays zero)."""
    v = np.sign(v) * np.abs(v) ** alpha
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


@jax.jit
def _residual_sums(desc: jax.Array, mask: jax.Array, centres: jax.Array) -> jax.Array:
    onehot = jax.nn.one_hot(kmeans.assign(desc.reshape(-1, desc.shape[-1]), centres), centres.shape[0])
    onehot = onehot.reshape(*desc.shape[:2], -1) * mask[..., None]
    # sum over x assigned to c_j of (x - c_j) = (sum of those x) - (their count) * c_j
    return jnp.einsum("nmk,nmd->nkd", onehot, desc) - onehot.sum(1)[..., None] * centres[None]


def vlad(desc: np.ndarray, mask: np.ndarray, centres: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """VLAD vectors (n_images, k * d): per codeword the summed residuals of its descriptors, power- and L2-normed.

    Block j of the vector (entries ``j*d`` to ``(j+1)*d``) belongs to codeword j.
    """
    v = np.asarray(_residual_sums(jnp.asarray(desc, jnp.float32), jnp.asarray(mask), jnp.asarray(centres, jnp.float32)))
    return power_l2(v.reshape(len(v), -1), alpha)


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest least squares on +-1 targets with an L2 penalty ``lam`` on the weights, not the bias.

    Returns (weights (d, classes), bias (classes,)). Solved in whichever of the
    primal (d x d) and dual (n x n) systems is smaller; both give the same w.
    """
    x = np.asarray(x, np.float64)
    mean = x.mean(0)
    xc = x - mean
    t = 2.0 * np.eye(num_classes)[y] - 1.0
    tmean = t.mean(0)
    if xc.shape[1] <= xc.shape[0]:
        w = np.linalg.solve(xc.T @ xc + lam * np.eye(xc.shape[1]), xc.T @ (t - tmean))
    else:
        w = xc.T @ np.linalg.solve(xc @ xc.T + lam * np.eye(xc.shape[0]), t - tmean)
    return w, tmean - mean @ w
