"""Upsampling for dense prediction: fixed nearest and bilinear, the transposed convolution, and its bilinear start.

All arrays are NHWC (kernels HWIO) unless a function says otherwise.

Conventions, decided here once and checked in ``tests/models/test_upsample_fcn.py``:

- **Pixel alignment.** Bilinear upsampling by ``f`` uses half-pixel centres: output pixel ``o`` samples
  input coordinate ``(o + 0.5) / f - 0.5`` (``jax.image.resize``, OpenCV's ``INTER_LINEAR``, PyTorch's
  ``align_corners=False``), so an ``H``-pixel image becomes exactly ``f * H`` pixels covering the same
  extent. Samples that fall outside the image (the first and last ``f // 2`` rows and columns) take the
  edge value.
- **Transposed convolution** (:func:`transposed_conv2d`): each input value scales the kernel, the scaled
  kernels are placed ``stride`` apart and summed where they overlap; no padding, so the output has
  ``(H - 1) * stride + k`` rows.
- **Flax's kernel flip.** ``flax.linen.ConvTranspose`` (``transpose_kernel=False``, its default) is
  ``jax.lax.conv_transpose``: a correlation of the zero-dilated input with the kernel *as stored*. The
  scatter definition above is that correlation with the kernel rotated by 180 degrees, so
  ``ConvTranspose(kernel=K[::-1, ::-1])`` with padding ``k - 1`` on each side equals
  ``transposed_conv2d(x, K)``. With ``transpose_kernel=True`` flax flips the spatial axes and swaps the
  last two itself, and a kernel stored ``[kh, kw, O, I]`` is placed unflipped. The bilinear kernel is
  symmetric, so the flip does not matter for it.
- **Bilinear ConvTranspose** (FCN's initialisation, Long et al. 2015): kernel ``2f - f % 2``, stride
  ``f``, padding ``"SAME"`` in flax. That crops ``f // 2`` rows and columns from each side of the full
  transposed convolution (Caffe's ``pad = ceil((f - 1) / 2)``; in flax's explicit form,
  ``k - 1 - f // 2`` on each side), which leaves exactly ``f * H`` rows and puts every output pixel at the
  half-pixel coordinate above: in the interior it *is* :func:`upsample_bilinear`. At the borders it
  differs: the missing neighbour outside the image counts as zero rather than as the edge value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
    """``[B, H, W, C]`` -> ``[B, f*H, f*W, C]``, each pixel repeated into an ``f x f`` block."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def upsample_bilinear(x: jax.Array, factor: int) -> jax.Array:
    """``[B, H, W, C]`` -> ``[B, f*H, f*W, C]`` by bilinear interpolation with half-pixel centres.

    Output pixel ``o`` reads input coordinate ``(o + 0.5) / f - 0.5``; near the borders, where that
    falls outside ``[0, H - 1]``, the edge pixel is repeated (as OpenCV's ``INTER_LINEAR`` does).
    Not learned.
    """
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, h * factor, w * factor, c), "bilinear")


def transposed_conv2d(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """The transposed convolution as the course defines it, written out: the reference for ``ConvTranspose``.

    Every input value scales the whole kernel; the scaled kernel of input pixel ``(i, j)`` is placed with
    its top-left corner at ``(stride * i, stride * j)``, and where placed kernels overlap they add up. No
    padding: the output is ``((H - 1) * stride + kh, (W - 1) * stride + kw)``.

    The course's worked example (input ``[[0, 1], [2, 3]]``, kernel ``[[0, 1], [2, 3]]``) states stride 2
    but its 3x3 answer ``[[0, 0, 1], [0, 4, 6], [4, 12, 9]]`` is the stride-1 result: with stride 2 the four
    placed 2x2 kernels do not overlap and the output is 4x4 (``[[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3],
    [4, 6, 6, 9]]``). The tests check the course's table at stride 1 and the 4x4 result at stride 2.

    Args:
      x: a single-channel ``[H, W]`` image, or a batch ``[B, H, W, I]``.
      kernel: ``[kh, kw]`` for a 2-D ``x``, else ``[kh, kw, I, O]`` (HWIO: input channel ``i`` adds
        ``x[..., i] * kernel[:, :, i, o]`` to output channel ``o``).
      stride: the spacing of the placed kernels, the same along both axes.

    Returns:
      ``[(H - 1) * stride + kh, (W - 1) * stride + kw]``, or with the batch and ``O`` channels around it.
    """
    if x.ndim == 2:
        if kernel.ndim != 2:
            raise ValueError(f"transposed_conv2d: a 2-D input needs a 2-D kernel, got kernel {kernel.shape}")
        return transposed_conv2d(x[None, :, :, None], kernel[:, :, None, None], stride)[0, :, :, 0]
    if x.ndim != 4 or kernel.ndim != 4 or x.shape[-1] != kernel.shape[2]:
        raise ValueError(f"transposed_conv2d: expected NHWC input and HWIO kernel, got {x.shape} and {kernel.shape}")
    b, h, w, _ = x.shape
    kh, kw, _, o = kernel.shape
    # scaled[n, i, j] is the kernel scaled by input pixel (i, j) (summed over input channels).
    scaled = jnp.einsum("nhwi,klio->nhwklo", x, kernel)
    out = jnp.zeros((b, (h - 1) * stride + kh, (w - 1) * stride + kw, o), scaled.dtype)
    # Place them all at once, one kernel entry (a, c) at a time: pixel (i, j) puts it at (a + s*i, c + s*j).
    for a in range(kh):
        for c in range(kw):
            rows = slice(a, a + (h - 1) * stride + 1, stride)
            cols = slice(c, c + (w - 1) * stride + 1, stride)
            out = out.at[:, rows, cols, :].add(scaled[:, :, :, a, c, :])
    return out


def bilinear_kernel_size(factor: int) -> int:
    """FCN's bilinear kernel size for upsampling by ``factor``: ``2f - f % 2`` (4 for 2x, 8 for 4x, 16 for 8x)."""
    return 2 * factor - factor % 2


def _tent(size: int) -> np.ndarray:
    """The 1-D bilinear weights of ``size`` taps: ``1 - |t - centre| / factor``, factor ``(size + 1) // 2``."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 else factor - 0.5
    return 1.0 - np.abs(np.arange(size) - centre) / factor


def bilinear_kernel(size: int) -> np.ndarray:
    """The ``[size, size]`` bilinear interpolation kernel (FCN's ``upsample_filt``), symmetric.

    The factor is ``(size + 1) // 2`` and the kernel is the outer product of the 1-D tent
    ``1 - |t - centre| / factor`` with ``centre = factor - 1`` (odd size) or ``factor - 0.5`` (even size):
    ``[0.25, 0.75, 0.75, 0.25]`` for 2x.
    """
    return np.outer(_tent(size), _tent(size))


def bilinear_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """A Flax initializer for ``nn.ConvTranspose`` kernels ``[kh, kw, C, C]``: channel ``c`` upsamples channel ``c``.

    The kernel is diagonal across channels (no mixing) with :func:`bilinear_kernel` on the diagonal, so
    that with stride ``f``, kernel size ``2f - f % 2`` and padding ``"SAME"`` the layer starts as bilinear
    upsampling (see the module docstring). ``key`` is unused: the initialisation is deterministic.
    """
    del key
    kh, kw, cin, cout = shape
    if cin != cout:
        raise ValueError(f"bilinear_init: input and output channels must match (one filter per channel), got {shape}")
    spatial = np.outer(_tent(kh), _tent(kw))
    return jnp.asarray(spatial[:, :, None, None] * np.eye(cin)[None, None], dtype)


def bilinear_conv_transpose(features: int, factor: int, **kwargs: Any) -> nn.ConvTranspose:
    """A ``ConvTranspose`` that upsamples ``features`` channels by ``factor`` and starts as bilinear upsampling.

    Kernel ``2f - f % 2``, stride ``f``, padding ``"SAME"`` (crops ``f // 2`` from each side of the full
    output, leaving ``f * H``), :func:`bilinear_init` and no bias, as FCN's ``upscore`` layers; ``kwargs``
    (``name``, ``dtype``, ...) go to ``nn.ConvTranspose``. Its input must have ``features`` channels.
    """
    k = bilinear_kernel_size(factor)
    kwargs.setdefault("use_bias", False)
    return nn.ConvTranspose(
        features, (k, k), strides=(factor, factor), padding="SAME", kernel_init=bilinear_init, **kwargs
    )
