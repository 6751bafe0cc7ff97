"""The selective_search op: padded proposals equal to the function's, its errors, its cache, and the geometric
ops moving proposals exactly as they move padded boxes."""

from __future__ import annotations

import numpy as np
import pytest

from mlcv.data import ops
from mlcv.data.ops import proposals as proposals_lib
from mlcv.ops.selective_search import selective_search

RNG = np.random.default_rng(0)


def _image(h: int = 24, w: int = 32) -> np.ndarray:
    """Three flat rectangles on noise-free grey, so Felzenszwalb finds few regions."""
    image = np.full((h, w, 3), 128, np.uint8)
    image[2:10, 3:12] = (200, 30, 30)
    image[12:22, 5:15] = (30, 200, 30)
    image[4:20, 18:30] = (30, 30, 200)
    return image


@pytest.fixture(autouse=True)
def _empty_cache():
    proposals_lib.cache_clear()
    yield
    proposals_lib.cache_clear()


def _box_moving_ops() -> set[str]:
    return {n for n in ops.names() if "boxes" in ops.moves(n)} - {"pad_boxes", "decode_detection"}


def test_declares_what_it_moves():
    """The op moves its two keys; every geometric op (every op that moves boxes but pad_boxes and decoding) moves
    them too, and has a case in GEOMETRIC below."""
    assert ops.moves("selective_search") == ("proposals", "proposal_mask")
    for name in _box_moving_ops():
        assert {"proposals", "proposal_mask"} <= set(ops.moves(name)), name
    assert {spec.split("(")[0] for spec in GEOMETRIC} == _box_moving_ops()


@pytest.mark.parametrize("max_proposals", [3, 500])
def test_padded_proposals_equal_the_function(max_proposals):
    """The first proposals are selective_search's own, in order; rows past them are zero with mask 0."""
    image = _image()
    expected = selective_search(image, scale=50, min_size=5)[:max_proposals]
    ex = {"image": image, "label": 1}
    out = ops.parse(f"selective_search({max_proposals}, scale=50, min_size=5)")(ex, RNG)
    assert out["proposals"].shape == (max_proposals, 4) and out["proposals"].dtype == np.float32
    assert out["proposal_mask"].shape == (max_proposals,) and out["proposal_mask"].dtype == np.float32
    p = len(expected)
    np.testing.assert_array_equal(out["proposals"][:p], expected)
    np.testing.assert_array_equal(out["proposal_mask"], np.arange(max_proposals) < p)
    assert not out["proposals"][p:].any()
    assert out["image"] is image and out["label"] == 1 and "proposals" not in ex
    assert (p == 3) == (max_proposals == 3)  # 500 is more than this image gives


def test_default_strategies_and_seed():
    """The op's defaults are the function's (the fast mode); its seed is the function's, not the loader's."""
    image = _image()
    out = ops.parse("selective_search(20, seed=4)")({"image": image}, np.random.default_rng(1))
    np.testing.assert_array_equal(out["proposals"], selective_search(image, seed=4)[:20])
    again = ops.parse("selective_search(20, seed=4, cache_entries=0)")({"image": image}, np.random.default_rng(2))
    np.testing.assert_array_equal(again["proposals"], out["proposals"])


@pytest.mark.parametrize(
    "image, message",
    [
        (_image().astype(np.float32) / 255, "float32"),
        (_image()[..., :2], r"uint8 \(24, 32, 2\)"),
    ],
)
def test_non_uint8_image_raises_naming_the_op(image, message):
    with pytest.raises(ValueError, match=rf"selective_search\(10\).*before normalize.*{message}"):
        ops.parse("selective_search(10)")({"image": image}, RNG)


def test_after_normalize_raises():
    with pytest.raises(ValueError, match=r"selective_search\(10\)"):
        ops.parse("normalize|selective_search(10)")({"image": _image()}, RNG)
    out = ops.parse("selective_search(10)|normalize")({"image": _image()}, RNG)
    assert out["image"].dtype == np.float32 and out["proposal_mask"].sum() == 10


def test_bad_arguments_raise_when_parsed():
    with pytest.raises(ValueError, match="at least 1"):
        ops.parse("selective_search(0)")
    with pytest.raises(ValueError, match="colour space 'xyz'"):
        ops.parse("selective_search(10, color_spaces='xyz')")


def test_cache_hits_and_keys():
    """The same image and arguments hit the cache (one entry); other arguments or pixels are other entries; a
    result written to does not change the cache; the cache holds at most cache_entries."""
    op = ops.parse("selective_search(10, scale=50)")
    first = op({"image": _image()}, RNG)
    assert proposals_lib.cache_size() == 1
    first["proposals"][:] = -1
    second = op({"image": _image()}, RNG)
    assert proposals_lib.cache_size() == 1 and (second["proposals"] >= 0).all()
    np.testing.assert_array_equal(second["proposals"], selective_search(_image(), scale=50)[:10])
    ops.parse("selective_search(10, scale=100)")({"image": _image()}, RNG)
    other = _image()
    other[0, 0] = 0
    op({"image": other}, RNG)
    assert proposals_lib.cache_size() == 3
    small = ops.parse("selective_search(10, scale=50, cache_entries=2)")
    small({"image": _image(20, 20)}, RNG)
    assert proposals_lib.cache_size() == 2
    ops.parse("selective_search(10, cache_entries=0)")({"image": _image(30, 30)}, RNG)
    assert proposals_lib.cache_size() == 2


def test_file_cache_is_read_back_and_checked(tmp_path, caplog):
    """A result goes to one file in cache_dir; a new process (memory cache empty) reads that file, not the image
    (a valid file with other boxes proves it); a flipped byte is detected, reported, recomputed and rewritten."""
    spec = f"selective_search(10, scale=50, cache_dir={str(tmp_path)!r})"
    expected = selective_search(_image(), scale=50)[:10]
    np.testing.assert_array_equal(ops.parse(spec)({"image": _image()}, RNG)["proposals"], expected)
    (path,) = tmp_path.iterdir()
    assert path.suffix == ".npz"
    planted = np.tile(np.array([[1, 2, 3, 4]], np.float32), (10, 1))
    proposals_lib.write_cached(path, planted)
    proposals_lib.cache_clear()
    np.testing.assert_array_equal(ops.parse(spec)({"image": _image()}, RNG)["proposals"], planted)
    raw = bytearray(path.read_bytes())
    offset = raw.index(planted.tobytes())  # npz stores arrays uncompressed: flip one byte of the boxes
    raw[offset] ^= 1
    path.write_bytes(bytes(raw))
    proposals_lib.cache_clear()
    with caplog.at_level("WARNING"):
        out = ops.parse(spec)({"image": _image()}, RNG)
    assert "corrupt" in caplog.text and str(path) in caplog.text
    np.testing.assert_array_equal(out["proposals"], expected)
    np.testing.assert_array_equal(proposals_lib.read_cached(path), expected)
    path.write_bytes(b"not a zip file")
    assert proposals_lib.read_cached(path) is None
    assert proposals_lib.read_cached(tmp_path / "missing.npz") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind


GEOMETRIC = [
    "flip_lr(p=1.0)",
    "flip_ud(p=1.0)",
    "random_crop((16, 20), pad=4)",
    "center_crop((18, 22))",
    "resize((48, 64))",
    "resize((12, 16))",
    "resize_short(15)",
    "resize_short(15, max_size=18)",
    "pad_to((30, 40))",
    "random_resized_crop((20, 24), scale=(0.3, 1.0))",
    "random_scale(0.6, 1.6)",
    "rotate(35)",
    "rotate(90)",
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("spec", GEOMETRIC)
def test_geometric_ops_move_proposals_like_padded_boxes(spec, seed):
    """With the proposals also given as padded boxes, every geometric op leaves the two equal: same rows, same
    masks (crops zero the rows they empty, in place)."""
    ex = ops.parse("selective_search(40, scale=50)")({"image": _image()}, RNG)
    ex |= {"boxes": ex["proposals"][ex["proposal_mask"] > 0], "box_labels": np.zeros(40, np.int32)}
    ex = ops.parse("pad_boxes(40)")(ex, RNG)
    out = ops.parse(spec)(ex, np.random.default_rng(seed))
    np.testing.assert_array_equal(out["proposals"], out["boxes"])
    np.testing.assert_array_equal(out["proposal_mask"], out["box_mask"])
    assert out["proposals"].dtype == np.float32 and out["proposal_mask"].dtype == np.float32


def test_crop_empties_proposals_in_place_by_hand():
    """A central 10 x 10 crop of a 20 x 20 image (at 5, 5) empties [15, 15, 20, 20] (zeroed, mask 0, in place) and
    cuts [2, 3, 12, 14] to [0, 0, 7, 9]; a left-right flip of width 10 sends columns 0..9 to 1..10."""
    ex = {
        "image": np.zeros((20, 20, 3), np.uint8),
        "proposals": np.array([[15, 15, 20, 20], [2, 3, 12, 14], [0, 0, 0, 0]], np.float32),
        "proposal_mask": np.array([1, 1, 0], np.float32),
    }
    out = ops.parse("center_crop(10)")(ex, RNG)
    np.testing.assert_array_equal(out["proposals"], [[0, 0, 0, 0], [0, 0, 7, 9], [0, 0, 0, 0]])
    np.testing.assert_array_equal(out["proposal_mask"], [0, 1, 0])
    out = ops.parse("flip_lr(p=1.0)")(out, RNG)
    np.testing.assert_array_equal(out["proposals"], [[0, 0, 0, 0], [0, 1, 7, 10], [0, 0, 0, 0]])
    np.testing.assert_array_equal(out["proposal_mask"], [0, 1, 0])


def test_stereo_flip_refuses_proposals():
    """A left-right flip of a stereo pair makes the right view the left one, which the proposals do not describe."""
    ex = {"image": _image(), "image_right": _image(), "proposals": np.zeros((2, 4), np.float32)}
    with pytest.raises(ValueError, match="proposals"):
        ops.parse("flip_lr(p=1.0)")(ex, RNG)
