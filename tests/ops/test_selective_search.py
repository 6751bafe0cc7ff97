"""Selective search: features and similarities by hand, grouping on hand label images, flat-colour images through
Felzenszwalb, ranking and determinism, and proposal recall on the digit_scenes validation split."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import felzenszwalb

from mlcv.ops import region_features as rf
from mlcv.ops import selective_search as ss

# A 20 x 30 image of four flat rectangles: A left, B top right, C bottom right with D inside it.
A, B, C, D = 0, 1, 2, 3
HAND_LABELS = np.full((20, 30), C)
HAND_LABELS[:, :10] = A
HAND_LABELS[:8, 10:] = B
HAND_LABELS[12:16, 15:22] = D
RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
HAND_IMAGE = np.array([RED, GREEN, BLUE, YELLOW], np.uint8)[HAND_LABELS]
BOX = {A: [0, 0, 20, 10], B: [0, 10, 8, 30], C: [8, 10, 20, 30], D: [12, 15, 16, 22]}
WHOLE = [0, 0, 20, 30]


def _hand_regions(space: str = "rgb") -> rf.Regions:
    channels, color_bins, texture_bins = rf.image_bins(HAND_IMAGE, space)
    return rf.regions(HAND_LABELS, color_bins, texture_bins)


# --- features and similarity terms by hand ---


def test_adjacency_is_four_connected():
    """A 2 x 2 checkerboard of regions: the diagonal pairs (0, 3) and (1, 2) touch at a corner only."""
    labels = np.array([[0, 0, 1], [2, 3, 1], [2, 2, 2]])
    np.testing.assert_array_equal(rf.adjacent_pairs(labels), [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
    np.testing.assert_array_equal(rf.adjacent_pairs(np.array([[0, 1], [2, 3]])), [[0, 1], [0, 2], [1, 3], [2, 3]])
    np.testing.assert_array_equal(rf.adjacent_pairs(HAND_LABELS), [[A, B], [A, C], [B, C], [C, D]])


def test_sizes_and_boxes_by_hand():
    """Sizes in pixels (C has D's 4 x 7 hole) and boxes with exclusive max."""
    regions = _hand_regions()
    np.testing.assert_array_equal(regions.size, [200, 160, 12 * 20 - 28, 28])
    np.testing.assert_array_equal(regions.boxes, [BOX[k] for k in (A, B, C, D)])


def test_color_histogram_by_hand():
    """Values 0, 100, 255 fall in bins 0, floor(100 / 255 * 25) = 9 and 24 (the top value in the last bin);
    each channel's 25 bins hold a third of the L1-normalised mass."""
    image = np.array([[[0, 100, 255], [100, 100, 0]], [[7, 7, 7], [7, 7, 7]]], np.uint8)
    labels = np.array([[0, 0], [1, 1]])
    _, color_bins, texture_bins = rf.image_bins(image, "rgb")
    hist = rf.regions(labels, color_bins, texture_bins).color
    expected = np.zeros((2, 75))
    expected[0, [0, 9]] = 1 / 6  # red: 0 and 100
    expected[0, 25 + 9] = 2 / 6  # green: 100 twice
    expected[0, [50 + 0, 50 + 24]] = 1 / 6  # blue: 255 and 0
    expected[1, [0, 25, 50]] = 1 / 3  # 7 / 255 * 25 = 0.69: bin 0
    np.testing.assert_allclose(hist, expected)


def test_texture_responses_of_a_ramp_by_hand():
    """Away from the border a Gaussian-smoothed ramp I = x / 40 has d/dx = 1/40 and d/dy = 0, so direction
    a responds max(0, cos a) / 40: 1, .71, 0, 0, 0, 0, 0, .71 (x40) for a = 0, 45, ..., 315 degrees."""
    ramp = np.broadcast_to(np.arange(40.0) / 40, (12, 40))[..., None]
    responses = rf.texture_responses(ramp)
    assert responses.shape == (8, 12, 40)
    h = np.sqrt(0.5)
    # To 1e-4: scipy truncates the Gaussian kernel at 4 sigma.
    np.testing.assert_allclose(responses[:, 6, 20] * 40, [1, h, 0, 0, 0, 0, 0, h], atol=1e-4)
    # The transposed ramp grows downwards: direction 90 degrees (y down) responds fully.
    np.testing.assert_allclose(
        rf.texture_responses(ramp.transpose(1, 0, 2))[:, 20, 6] * 40, [0, h, 1, h, 0, 0, 0, 0], atol=1e-4
    )


def test_texture_histogram_by_hand():
    """Each direction's 10 bins span [0, its largest response]; a flat region puts all in bin 0 of each."""
    image = np.zeros((10, 10, 3), np.uint8)
    image[:, 5:] = 200
    labels = np.zeros((10, 10), np.int64)
    labels[:, 8:] = 1  # region 1: flat (three pixels from the edge, where sigma-1 responses are ~1e-3 of the peak)
    _, color_bins, texture_bins = rf.image_bins(image, "rgb")
    texture = rf.regions(labels, color_bins, texture_bins).texture
    assert texture.shape == (2, 3 * 8 * 10)
    np.testing.assert_allclose(texture.sum(axis=1), 1)
    np.testing.assert_allclose(texture[1, ::10], 1 / 24)
    # Region 0 holds the rising edge: direction 0 (x to the right) reaches its top bin there, direction 180 not.
    assert texture[0, 9] > 0 and texture[0, 4 * 10 + 9] == 0


def test_similarity_terms_by_hand():
    """Colour: the flat colours share 1 of 3 channels' bins (A-B, A-C, B-C: 1/3) or none (C-D: 0): red
    (24, 0, 0), green (0, 24, 0), blue (0, 0, 24), yellow (24, 24, 0) in bins of R, G, B.
    Size: 1 - (s_i + s_j) / 600. Fill: 1 - (box_ij - s_i - s_j) / 600."""
    regions = _hand_regions()
    i, j = np.array([A, A, B, C]), np.array([B, C, C, D])
    np.testing.assert_allclose(rf.similarity(regions, i, j, ["color"], 600), [1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(rf.similarity(regions, i, j, ["size"], 600), 1 - np.array([360, 412, 372, 240]) / 600)
    np.testing.assert_allclose(
        rf.similarity(regions, i, j, ["fill"], 600), 1 - np.array([600 - 360, 600 - 412, 400 - 372, 0]) / 600
    )
    both = rf.similarity(regions, i, j, ["color", "size"], 600)
    np.testing.assert_allclose(
        both, rf.similarity(regions, i, j, ["color"], 600) + 1 - np.array([360, 412, 372, 240]) / 600
    )
    assert rf.histogram_intersection(np.array([0.5, 0.5, 0]), np.array([0, 0.25, 0.75])) == 0.25


# --- hierarchical grouping ---


@pytest.mark.parametrize(
    "terms, merges, boxes",
    [
        # size: C-D (240 px) first, then A-B (360), then the rest.
        ("s", [(C, D), (A, B), (4, 5)], [BOX[C], [0, 0, 20, 30], WHOLE]),
        # fill: C-D fill their box exactly (1.0), then B-CD (its box is B and CD: 1.0), then A.
        ("f", [(C, D), (B, 4), (A, 5)], [BOX[C], [0, 10, 20, 30], WHOLE]),
        # colour: A-B, A-C, B-C tie at 1/3, the lowest numbers go first; then AB-C (1/3) before C-D (0).
        ("c", [(A, B), (C, 4), (D, 5)], [[0, 0, 20, 30], WHOLE, WHOLE]),
    ],
)
def test_grouping_by_hand(terms, merges, boxes):
    """Merges of the four rectangles under one similarity term, worked out in the comments."""
    hierarchy = ss.hierarchical_grouping(HAND_LABELS, _hand_regions(), terms)
    np.testing.assert_array_equal(hierarchy.merges, merges)
    np.testing.assert_array_equal(hierarchy.boxes, [BOX[k] for k in (A, B, C, D)] + boxes)


def test_merged_histograms_are_size_weighted():
    """Colour only, A (red, 200 px) and B (green, 160 px) merge first: AB's red channel has 200/360 of its third
    in bin 24 and 160/360 in bin 0, green the other way round, blue all in bin 0; CD's mix C (blue, 212 px) and
    D (yellow, 28 px) likewise."""
    hierarchy = ss.hierarchical_grouping(HAND_LABELS, _hand_regions(), "c")
    ab = np.zeros(75)
    ab[[24, 0, 25 + 0, 25 + 24, 50]] = np.array([200, 160, 200, 160, 360]) / 360 / 3
    np.testing.assert_allclose(hierarchy.histograms[4], ab)
    np.testing.assert_array_equal(hierarchy.sizes, [200, 160, 212, 28, 360, 572, 600])
    whole = np.zeros(75)
    whole[[24, 0, 25 + 24, 25 + 0, 50 + 0, 50 + 24]] = np.array([228, 372, 188, 412, 388, 212]) / 600 / 3
    np.testing.assert_allclose(hierarchy.histograms[-1], whole)


def test_first_merge_is_the_most_similar_adjacent_pair():
    """On a real scene's segmentation, the first merge is the argmax of the similarity over adjacent pairs."""
    image = _scenes(1)[0]["image"]
    channels, color_bins, texture_bins = rf.image_bins(image, "hsv")
    labels = felzenszwalb(channels, scale=50, sigma=0.8, min_size=10)
    regions = rf.regions(labels, color_bins, texture_bins)
    pairs = rf.adjacent_pairs(labels)
    terms = ("color", "texture", "size", "fill")
    sims = rf.similarity(regions, pairs[:, 0], pairs[:, 1], terms, labels.size)
    hierarchy = ss.hierarchical_grouping(labels, regions, terms)
    np.testing.assert_array_equal(hierarchy.merges[0], pairs[np.argmax(sims)])


# --- through Felzenszwalb ---


def test_flat_rectangles_are_proposed():
    """Every rectangle's exact box and the whole image are among the proposals, under each strategy, with
    regions - 1 merges ending in the whole image."""
    proposals = ss.selective_search(HAND_IMAGE).tolist()
    for box in [*BOX.values(), WHOLE]:
        assert box in proposals
    assert len(proposals) == len({tuple(p) for p in proposals})
    for space, k, terms in ss.strategies(ss.FAST_COLOR_SPACES, ss.FAST_SCALES, ss.FAST_SIMILARITIES):
        channels, color_bins, texture_bins = rf.image_bins(HAND_IMAGE, space)
        labels = felzenszwalb(channels, scale=k, sigma=0.8, min_size=10)
        n = labels.max() + 1
        hierarchy = ss.hierarchical_grouping(labels, rf.regions(labels, color_bins, texture_bins), terms)
        assert len(hierarchy.merges) == n - 1 and len(hierarchy.boxes) == 2 * n - 1
        np.testing.assert_array_equal(hierarchy.boxes[-1], WHOLE)


def test_flat_image_is_one_proposal():
    """One initial region: no merge, the whole image is the only proposal."""
    np.testing.assert_array_equal(ss.selective_search(np.full((7, 9, 3), 90, np.uint8)), [[0, 0, 7, 9]])


def test_merges_are_regions_minus_one_on_scenes():
    """On real scenes every strategy merges n - 1 times and ends with the whole image."""
    image = _scenes(1)[0]["image"]
    for space in ("rgb", "lab", "rgi", "i"):
        channels, color_bins, texture_bins = rf.image_bins(image, space)
        labels = felzenszwalb(channels, scale=100, sigma=0.8, min_size=10)
        hierarchy = ss.hierarchical_grouping(labels, rf.regions(labels, color_bins, texture_bins), "ctsf")
        assert len(hierarchy.merges) == labels.max() and labels.max() > 10
        np.testing.assert_array_equal(hierarchy.boxes[-1], [0, 0, 96, 96])


def test_ranking_is_perturbed_hierarchy_position():
    """One strategy: box b (of m, in creation order) gets (m - b) * u_b, u from default_rng(seed); sorted, deduped."""
    image = _scenes(1)[0]["image"]
    got = ss.selective_search(image, scale=100, color_spaces="hsv", similarities="ctsf", seed=3)
    channels, color_bins, texture_bins = rf.image_bins(image, "hsv")
    labels = felzenszwalb(channels, scale=100, sigma=0.8, min_size=10)
    boxes = ss.hierarchical_grouping(labels, rf.regions(labels, color_bins, texture_bins), "ctsf").boxes
    values = np.random.default_rng(3).random(len(boxes)) * np.arange(len(boxes), 0, -1)
    expected, seen = [], set()
    for b in np.argsort(values, kind="stable"):
        if tuple(boxes[b]) not in seen:
            seen.add(tuple(boxes[b]))
            expected.append(boxes[b])
    np.testing.assert_array_equal(got, expected)


def test_deterministic_and_seeded():
    """The same call gives the same proposals; another seed reorders the same set."""
    image = _scenes(1)[0]["image"]
    first, again = ss.selective_search(image), ss.selective_search(image)
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float32 and first.shape[1] == 4
    other = ss.selective_search(image, seed=1)
    assert not np.array_equal(first, other)
    assert {tuple(b) for b in first} == {tuple(b) for b in other}
    assert (first[:, 2:] > first[:, :2]).all() and (first >= 0).all() and (first <= 96).all()


def test_grey_images_are_equal_rgb():
    grey = HAND_IMAGE.mean(axis=2).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_array_equal(ss.selective_search(grey), ss.selective_search(rgb))
    np.testing.assert_array_equal(ss.selective_search(grey[..., None]), ss.selective_search(rgb))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="uint8"):
        ss.selective_search(HAND_IMAGE.astype(np.float32))
    with pytest.raises(ValueError, match="colour space 'xyz'"):
        ss.selective_search(HAND_IMAGE, color_spaces="xyz")
    with pytest.raises(ValueError, match="similarity terms"):
        ss.selective_search(HAND_IMAGE, similarities="cx")
    assert ss.parse_similarities("tsf") == ("texture", "size", "fill")
    assert ss.strategies("hsv", 50, ("color", "size")) == [("hsv", 50.0, ("color", "size"))]


# --- recall on digit_scenes ---


def _scenes(n: int) -> list[dict[str, np.ndarray]]:
    from mlcv.data.sources.scenes_builder import DigitScenes

    return list(DigitScenes.generate("validation", n))


def recall(scenes: list[dict[str, np.ndarray]], proposals: list[np.ndarray], top: int, threshold: float) -> float:
    """The fraction of ground-truth boxes with IoU >= ``threshold`` to one of the ``top`` first proposals
    (IoU by pycocotools)."""
    from pycocotools import mask as mask_utils

    def xywh(b: np.ndarray) -> np.ndarray:
        b = b.astype(np.float64)
        return np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=1)

    hit = total = 0
    for scene, props in zip(scenes, proposals, strict=True):
        iou = mask_utils.iou(xywh(props[:top]), xywh(scene["boxes"]), [0] * len(scene["boxes"]))
        hit += int((np.asarray(iou).max(axis=0) >= threshold).sum())
        total += len(scene["boxes"])
    return hit / total


@pytest.mark.parametrize("n", [pytest.param(200, marks=pytest.mark.slow), 30])
def test_recall_on_digit_scenes(n):
    """Ground-truth digits covered by the top 100 / 300 proposals at IoU 0.5 / 0.7 (floors well below measured)."""
    scenes = _scenes(n)
    proposals = [ss.selective_search(s["image"]) for s in scenes]
    figures = {(top, t): recall(scenes, proposals, top, t) for top in (100, 300) for t in (0.5, 0.7)}
    print(f"recall on {n} validation scenes:", {f"top{k}@{t}": round(v, 3) for (k, t), v in figures.items()})
    assert figures[100, 0.5] >= 0.6 and figures[300, 0.5] >= 0.8
    assert figures[100, 0.7] >= 0.4 and figures[300, 0.7] >= 0.6
