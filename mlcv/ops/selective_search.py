"""Selective search region proposals (Uijlings et al., "Selective Search for Object Recognition", IJCV 2013).

Course §10.2: the class-agnostic proposals that R-CNN and Fast R-CNN classify. NumPy, not jnp: the number of
regions depends on the image, so this runs in the input pipeline (``selective_search`` of
:mod:`mlcv.data.ops.proposals`) rather than under ``jit``.

For each strategy (a colour space, a Felzenszwalb ``k`` and a set of similarity terms):

1. initial regions: scikit-image's ``felzenszwalb`` (Felzenszwalb and Huttenlocher 2004) on the image in that
   colour space, channels scaled to [0, 1] (scikit-image's ``scale`` is the paper's ``k`` on 0..255 values);
2. hierarchical grouping (the paper's Algorithm 1): repeatedly merge the most similar pair of adjacent regions
   until one region is left, so a strategy gives ``2n - 1`` regions from ``n`` initial ones; similarity is the
   sum of the chosen terms (:mod:`mlcv.ops.region_features`): colour, texture, size and fill. A merged region
   takes the size-weighted average of the histograms, the union box and the union of the neighbours;
3. each region's box, ranked by the paper's "hierarchy level with pseudo-random perturbation": the region made
   by the last merge (the whole image) has position 1, the one before 2, and so on; a box's value is its
   position times a uniform random number in [0, 1) (seeded), and all strategies' boxes are sorted by it, lowest
   first, duplicates kept at their first (best) place.

Departures from the paper: regions are adjacent when they share a horizontal or vertical pixel edge
(4-connectivity; the paper leaves it open); texture is a half-wave rectified first Gaussian derivative steered
to 8 directions (0, 45, ..., 315 degrees: the 4 axes both ways), each histogram over [0, the image's largest
response] (see :mod:`mlcv.ops.region_features`); initial regions are numbered by Felzenszwalb's labels, which
only orders the initial regions among themselves before the perturbation. Ties between equally similar pairs
go to the lowest region numbers, so the output depends on the image, the arguments and ``seed`` only.

Defaults: the paper's "fast" mode (HSV and Lab, ``k`` 50 and 100, similarities C+T+S+F and T+S+F: 8 strategies)
with ``min_size`` 10 for 96 x 96 images.

Measured with ``python benchmarks/selective_search.py`` on the 200 ``digit_scenes`` validation scenes (663 digits),
the defaults give 687 proposals an image on average and recall (digits with IoU >= 0.5 / 0.7 to a proposal) of
85.1 / 60.6 % in the top 100, 97.6 / 83.4 % in the top 300 and 99.8 / 93.1 % in all; one strategy (HSV, k 100,
C+T+S+F) gives 139 proposals and 86.4 / 67.7, 91.1 / 70.6 %. Time, on the 2-core CPU shared with other jobs
(load average 4.6; the figures follow the load): 134 ms an image for the defaults and 25.6 ms for the one
strategy, against 13.3 ms for one of the defaults' four scikit-image ``felzenszwalb`` calls alone in the same run;
in a quieter minute the defaults took 86 ms (5 images). About 40 % of the defaults' time is Felzenszwalb, 40 % the
grouping loop (Python, one NumPy intersection a merge) and the rest the colour spaces and histograms.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from mlcv.ops import region_features as rf

SIMILARITY_CODES = {"c": "color", "t": "texture", "s": "size", "f": "fill"}
FAST_COLOR_SPACES = ("hsv", "lab")
FAST_SCALES = (50.0, 100.0)
FAST_SIMILARITIES = ("ctsf", "tsf")


class Hierarchy(NamedTuple):
    """One strategy's grouping: every region in creation order and the merges that made the new ones.

    ``boxes`` float32 ``[2n - 1, 4]`` ``(ymin, xmin, ymax, xmax)``: the ``n`` initial regions (numbered by their
    label), then region ``n + m`` made by merge ``m``; ``merges`` int64 ``[n - 1, 2]``: the pair merge ``m`` joined;
    ``sizes`` ``[2n - 1]`` in pixels; ``histograms`` ``[2n - 1, D]``: the colour then the texture histogram of each
    region, those of the similarity terms used (``D`` = 0 with neither).
    """

    boxes: np.ndarray
    merges: np.ndarray
    sizes: np.ndarray
    histograms: np.ndarray


def parse_similarities(terms: str | Sequence[str]) -> tuple[str, ...]:
    """Similarity term names from letter codes (``"tsf"``) or names (``("texture", "size", "fill")``)."""
    names = [SIMILARITY_CODES.get(t, t) for t in terms] if isinstance(terms, str) else list(terms)
    bad = [t for t in names if t not in rf.SIMILARITY_TERMS]
    if bad or not names:
        raise ValueError(
            f"similarity terms {terms!r}: choose from {', '.join(rf.SIMILARITY_TERMS)} or the letters "
            f"{''.join(SIMILARITY_CODES)}"
        )
    return tuple(dict.fromkeys(names))


def hierarchical_grouping(labels: np.ndarray, regions: rf.Regions, terms: Sequence[str]) -> Hierarchy:
    """The paper's Algorithm 1 on an over-segmentation ``labels`` ``[H, W]`` (regions ``0 .. n - 1``).

    ``regions`` holds the initial regions' features (:func:`mlcv.ops.region_features.regions`); ``terms`` the
    similarity terms summed (:func:`mlcv.ops.region_features.similarity`). A pair's similarity never changes while
    both regions live, so a heap with stale entries skipped gives the most similar live adjacent pair at each
    step; among equal similarities the lowest region numbers merge first.
    """
    terms = parse_similarities(terms)
    n = len(regions.size)
    area = float(labels.size)
    use_size, use_fill = "size" in terms, "fill" in terms
    # Colour and texture intersections summed are one intersection of the concatenated histograms.
    used = [h for name, h in (("color", regions.color), ("texture", regions.texture)) if name in terms]
    hist = np.zeros((2 * n - 1, sum(h.shape[1] for h in used)), np.float64)
    if used:
        hist[:n] = np.concatenate(used, axis=1)
    pairs = rf.adjacent_pairs(labels)
    i, j = pairs[:, 0], pairs[:, 1]
    sims = np.minimum(hist[i], hist[j]).sum(axis=1)
    if use_size:
        sims += rf.size_similarity(regions.size[i], regions.size[j], area)
    if use_fill:
        sims += rf.fill_similarity(regions.boxes[i], regions.boxes[j], regions.size[i], regions.size[j], area)
    heap = [(-s, i, j) for s, (i, j) in zip(sims.tolist(), pairs.tolist(), strict=True)]
    heapq.heapify(heap)
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for i, j in pairs.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
    # Python scalars and lists in the loop: it runs once a merge on a few regions, where NumPy's per-call cost
    # would dominate. Size and fill are the formulas of region_features in the same order of operations.
    sizes, boxes, alive = regions.size.tolist(), regions.boxes.tolist(), [True] * n
    merges = []
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        _, i, j = pop(heap)
        if not (alive[i] and alive[j]):
            continue
        t = len(sizes)
        si, sj = sizes[i], sizes[j]
        st = si + sj
        (a0, a1, a2, a3), (b0, b1, b2, b3) = boxes[i], boxes[j]
        y0, x0, y1, x1 = min(a0, b0), min(a1, b1), max(a2, b2), max(a3, b3)
        sizes.append(st)
        boxes.append([y0, x0, y1, x1])
        ht = hist[t]
        np.multiply(hist[i], si / st, out=ht)
        ht += hist[j] * (sj / st)
        alive[i] = alive[j] = False
        alive.append(True)
        around = (neighbours[i] | neighbours[j]) - {i, j}
        for k in around:
            neighbours[k].discard(i)
            neighbours[k].discard(j)
            neighbours[k].add(t)
        neighbours.append(around)
        others = sorted(around)
        for k, s in zip(others, np.minimum(hist[others], ht).sum(axis=1).tolist(), strict=True):
            if use_size:
                s += 1.0 - (st + sizes[k]) / area
            if use_fill:
                k0, k1, k2, k3 = boxes[k]
                # max(y1, k2) - min(y0, k0) and the same along x, without the builtins' call cost.
                height = (y1 if y1 > k2 else k2) - (y0 if y0 < k0 else k0)
                width = (x1 if x1 > k3 else k3) - (x0 if x0 < k1 else k1)
                s += 1.0 - (height * width - st - sizes[k]) / area
            push(heap, (-s, k, t))
        merges.append((i, j))
    return Hierarchy(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(merges, np.int64).reshape(-1, 2),
        np.asarray(sizes, np.float64),
        hist[: len(sizes)],
    )


def is_image(image: np.ndarray) -> bool:
    """Whether ``image`` is one :func:`selective_search` takes: uint8 ``[H, W, 3]``, ``[H, W, 1]`` or ``[H, W]``."""
    return image.dtype == np.uint8 and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3)))


def _as_tuple(value: float | str | Sequence) -> tuple:
    return (value,) if isinstance(value, (int, float, str)) else tuple(value)


def strategies(
    color_spaces: str | Sequence[str], scale: float | Sequence[float], similarities: str | Sequence[str | Sequence[str]]
) -> list[tuple[str, float, tuple[str, ...]]]:
    """Every ``(colour space, k, similarity terms)`` combination, in the order selective search runs them.

    ``similarities`` is one set of terms (``"ctsf"``) or several (``("ctsf", "tsf")``); a set is letters or a
    sequence of names.
    """
    spaces = _as_tuple(color_spaces)
    for space in spaces:
        if space not in rf.COLOR_SPACES:
            raise ValueError(f"colour space {space!r}: choose from {', '.join(rf.COLOR_SPACES)}")
    if isinstance(similarities, str) or (similarities and all(s in rf.SIMILARITY_TERMS for s in similarities)):
        similarities = (similarities,)
    sets = [parse_similarities(s) for s in similarities]
    ks = [float(k) for k in _as_tuple(scale)]
    if not (spaces and ks and sets):
        raise ValueError("selective search needs at least one colour space, one scale and one similarity set")
    return [(space, k, terms) for space in spaces for k in ks for terms in sets]


def selective_search(
    image: np.ndarray,
    *,
    scale: float | Sequence[float] = FAST_SCALES,
    sigma: float = 0.8,
    min_size: int = 10,
    color_spaces: str | Sequence[str] = FAST_COLOR_SPACES,
    similarities: str | Sequence[str | Sequence[str]] = FAST_SIMILARITIES,
    seed: int = 0,
) -> np.ndarray:
    """Selective search proposals of one image, best ranked first.

    Args:
      image: uint8 ``[H, W, 3]`` RGB; a grey ``[H, W]`` or ``[H, W, 1]`` image is taken as equal R, G and B.
      scale: Felzenszwalb's ``k`` (one or several); larger gives fewer, larger initial regions.
      sigma: the Gaussian smoothing of Felzenszwalb's segmentation.
      min_size: the smallest initial region in pixels (Felzenszwalb's post-processing).
      color_spaces: one or several of ``rgb``, ``hsv``, ``lab``, ``rgi``, ``i``.
      similarities: one set of similarity terms or several: letters of ``c``\\ olour, ``t``\\ exture, ``s``\\ ize,
        ``f``\\ ill (``"ctsf"``) or tuples of the names.
      seed: seeds the ranking's perturbation.

    Returns:
      float32 ``[P, 4]`` distinct boxes ``(ymin, xmin, ymax, xmax)`` in pixels, max exclusive, ranked as the paper
      (see the module docstring); every strategy's last box is the whole image.
    """
    image = np.asarray(image)
    if not is_image(image):
        raise ValueError(f"selective_search takes a uint8 [H, W, 3] or grey image, got {image.dtype} {image.shape}")
    image = np.broadcast_to(image.reshape(*image.shape[:2], -1), (*image.shape[:2], 3))
    from skimage.segmentation import felzenszwalb  # deferred: scikit-image's import costs ~0.3 s

    rng = np.random.default_rng(seed)
    all_boxes, all_values = [], []
    converted: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    segmented: dict[tuple[str, float], tuple[np.ndarray, rf.Regions]] = {}
    for space, k, terms in strategies(color_spaces, scale, similarities):
        if space not in converted:
            converted[space] = rf.image_bins(image, space)
        channels, color_bins, texture_bins = converted[space]
        if (space, k) not in segmented:
            labels = felzenszwalb(channels, scale=k, sigma=sigma, min_size=min_size, channel_axis=-1)
            segmented[space, k] = (labels, rf.regions(labels, color_bins, texture_bins))
        labels, initial = segmented[space, k]
        boxes = hierarchical_grouping(labels, initial, terms).boxes
        position = np.arange(len(boxes), 0, -1)  # the last region made is 1
        all_boxes.append(boxes)
        all_values.append(rng.random(len(boxes)) * position)
    boxes, values = np.concatenate(all_boxes), np.concatenate(all_values)
    boxes = boxes[np.argsort(values, kind="stable")]
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]
