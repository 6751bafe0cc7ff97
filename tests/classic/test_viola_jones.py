"""Viola-Jones end to end: the launcher's workdir, config errors, the cascade's scan and the scaled detector."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import ROOT, launch_cmd

import mlcv
from experiments import faces_viola_jones
from mlcv.classic.methods import viola_jones
from mlcv.classic.methods.face_windows import load_scene
from mlcv.config import ConfigError
from mlcv.ops.integral import integral_image


@pytest.fixture(scope="module")
def fitted():
    """The runlocal detector, fitted once for the module."""
    method = viola_jones.ViolaJones(faces_viola_jones.get_config("runlocal"))
    records = []
    facts = method.fit(lambda step, scalars: records.append((step, scalars)))
    return method, facts, records


def _cascade_numpy(cascade, windows):
    """Each window's cascade decision from plain numpy pixel sums: a Haar feature is the weighted sum of its
    rectangles' pixels over the window's population std (floored at min_std); a stump votes +alpha when
    polarity * value < polarity * threshold, else -alpha; a window passes a stage when the votes reach its
    threshold, and is a face when it passes every stage (Viola and Jones, 2004)."""
    std = np.maximum(windows.reshape(len(windows), -1).std(1), cascade.min_std)
    alive = np.ones(len(windows), bool)
    for stage in cascade.stages:
        score = np.zeros(len(windows))
        for t in range(len(stage.stumps)):
            value = sum(
                weight * windows[:, ry : ry + rh, rx : rx + rw].sum((1, 2))
                for (rx, ry, rw, rh), weight in zip(stage.features.rects[t], stage.features.weights[t], strict=True)
                if weight != 0
            )
            p = stage.stumps.polarity[t]
            score += np.where(p * value / std < p * stage.stumps.threshold[t], 1.0, -1.0) * stage.stumps.alpha[t]
        alive &= score >= stage.threshold
    return alive


def _windows_scanned(shape, window, detect):
    """Windows a multi-scale scan tries, by the rule cascade.detect documents: scales from min_size / window
    times scale_factor while the window fits, grid step max(1, round(step * scale)), positions 0, step, ..."""
    scale, total = max(1.0, detect.min_size / window), 0
    while round(window * scale) <= min(shape):
        size, step = round(window * scale), max(1, round(detect.step * scale))
        total += len(range(0, shape[0] - size + 1, step)) * len(range(0, shape[1] - size + 1, step))
        scale *= detect.scale_factor
    return total


def test_launch_runlocal_writes_the_workdir(tmp_path, fitted):
    """Expected values: the window metrics recomputed in numpy from the fitted cascade (the module fixture, the
    same config and seed as the launch), the scene windows counted by hand from the scan rule."""
    workdir = tmp_path / "vj"
    out = subprocess.run(
        launch_cmd(
            "--config", str(ROOT / "experiments" / "faces_viola_jones.py") + ":runlocal", "--workdir", str(workdir)
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith(str(workdir))]
    assert len(line) == 1 and "test recall" in line[0] and "wall time" in line[0]
    assert json.loads((workdir / "config.json").read_text())["task"] == "viola_jones"
    summary = json.loads((workdir / "summary.json").read_text())
    method = fitted[0]
    config = faces_viola_jones.get_config("runlocal")
    for role in ("validation", "test"):
        # The window metrics recomputed from the fitted cascade by plain pixel sums (_cascade_numpy).
        x, y = method.split[role]
        accepted = _cascade_numpy(method.cascade, x)
        assert summary[role]["recall"] == pytest.approx(accepted[y == 1].mean())
        assert summary[role]["false_positive_rate"] == pytest.approx(accepted[y == 0].mean())
        assert summary[role]["accuracy"] == pytest.approx(np.mean(accepted == (y == 1)))
        # The scene windows counted by hand from the scan rule; every one is a false positive if accepted, so the
        # rate is a whole number of them over that count.
        shapes = [load_scene(name).shape for name in config.negatives[f"{role}_scenes"]]
        windows = sum(_windows_scanned(shape, config.window, config.detect) for shape in shapes)
        assert summary[role]["scene_windows"] == windows
        raw = summary[role]["scene_false_positive_rate"] * windows
        assert raw == pytest.approx(round(raw), abs=1e-6)
    assert summary["test"]["astronaut_windows"] > 0
    assert summary["fit"]["stages"] == len(summary["fit"]["features_per_stage"]) >= 1
    records = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in records if "train_error" in r]
    stages = [r for r in records if "stage/features" in r]
    assert len(rounds) == sum(summary["fit"]["features_per_stage"])
    assert len(stages) == summary["fit"]["stages"]
    assert all(0 < r["weighted_error"] < 0.5 for r in rounds)
    assert (workdir / "plots" / "haar_features.png").stat().st_size > 0
    assert (workdir / "plots" / "astronaut_detections.png").stat().st_size > 0
    # the same config fitted again in this process gives the same numbers (module fixture, same seed)
    for role in ("validation", "test"):
        again = method.evaluate(role)
        for key, value in summary[role].items():
            if key != "astronaut_seconds":
                assert again[key] == value, (role, key)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cascade.stage_recall", 1.5, "config.cascade.stage_recall"),
        ("features.types", ("two_h", "five"), "config.features.types"),
        ("negatives.test_scenes", ("brick",), "config.negatives.test_scenes"),  # brick trains: not disjoint
        ("negatives.train_scenes", ("astronaut",), "config.negatives.train_scenes"),  # has a face
        ("window", 4, "config.window"),
        ("detect.gt_box", (10, 10, 5, 20), "config.detect.gt_box"),
        ("detect.grouping", "opencv", "config.detect.grouping"),
        ("negatives.min_pool_step", 0, "config.negatives.min_pool_step"),
        ("positives.max_rotation", 90.0, "config.positives.max_rotation"),
        ("detect.paste_sizes", (8,), "config.detect.paste_sizes"),  # smaller than the runlocal window
    ],
)
def test_bad_config_raises_naming_the_key_before_writing(tmp_path, key, value, message):
    config = faces_viola_jones.get_config("runlocal")
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        mlcv.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_stage_thresholds_keep_the_validation_faces(fitted):
    method, facts, records = fitted
    # stage_recall 0.99 of at most 40 validation faces (20 and their mirror images) keeps all of them
    assert method.evaluate("validation")["recall"] == 1.0
    stages = [s for _, s in records if "stage/validation_recall" in s]
    assert [s["stage/validation_recall"] for s in stages] == [1.0] * facts["stages"]


def test_scan_agrees_with_the_windows_it_cuts_and_with_the_2x_scaled_detector(fitted):
    method, _, _ = fitted
    cascade = method.cascade
    w = cascade.window
    rng = np.random.default_rng(0)
    # a mix of faces pasted on noise, so that some windows pass and some do not
    image = rng.random((60, 72)) * 0.5
    faces = method.split["train"][0][method.split["train"][1] == 1]
    for k, (y, x) in enumerate([(3, 5), (30, 40), (20, 10)]):
        image[y : y + w, x : x + w] = faces[k]
    ii, ii2 = integral_image(image, pad=True), integral_image(image**2, pad=True)
    x0, y0, size, _, tried = cascade.scan(ii, ii2, 1.0, 1)
    assert size == w and tried == (60 - w + 1) * (72 - w + 1)
    cut = np.lib.stride_tricks.sliding_window_view(image, (w, w)).reshape(-1, w, w)
    accepted, _ = cascade.classify_windows(cut)
    ys, xs = np.divmod(np.flatnonzero(accepted), 72 - w + 1)
    assert 0 < len(xs) < tried
    assert set(zip(x0.tolist(), y0.tolist(), strict=True)) == set(zip(xs.tolist(), ys.tolist(), strict=True))
    # the detector scaled by 2 on the image with every pixel doubled accepts the same windows, at twice the place
    big = np.kron(image, np.ones((2, 2)))
    jj, jj2 = integral_image(big, pad=True), integral_image(big**2, pad=True)
    bx, by, bsize, _, _ = cascade.scan(jj, jj2, 2.0, 2)
    assert bsize == 2 * w
    np.testing.assert_array_equal(np.sort(bx * 1000 + by), np.sort(2 * x0 * 1000 + 2 * y0))


def test_augment_faces_rotates_like_skimage():
    from skimage.transform import resize, rotate

    from mlcv.classic.methods import face_windows

    faces = np.random.default_rng(1).random((3, 24, 24))
    out = face_windows.augment_faces(faces, mirror=True, jitter=2, max_rotation=10.0, rng=np.random.default_rng(5))
    assert out.shape == (3 * 2 * 3, 24, 24)
    np.testing.assert_array_equal(out[3:6], faces[:, :, ::-1])
    # replay the draws: a crop side, its corner, then an angle, per variant
    rng = np.random.default_rng(5)
    base = np.concatenate([faces, faces[:, :, ::-1]])
    for k in range(2):
        side = int(rng.integers(22, 25))
        x0, y0 = rng.integers(0, 24 - side + 1, size=2)
        angle = rng.uniform(-10, 10)
        expected = [
            resize(rotate(f, angle, order=1, mode="edge")[y0 : y0 + side, x0 : x0 + side], (24, 24), order=1)
            for f in base
        ]
        np.testing.assert_allclose(out[6 + 6 * k : 12 + 6 * k], expected, atol=1e-9)


def test_mining_goes_to_a_finer_grid_when_the_coarse_one_runs_out(fitted):
    method = fitted[0]
    before = method.config.negatives.min_pool_step
    method.config.negatives.min_pool_step = 1  # runlocal mines on an 8-pixel grid
    try:
        mine = method._pool(np.random.default_rng(0))
    finally:
        method.config.negatives.min_pool_step = before
    from mlcv.classic.algorithms import cascade as cascade_lib
    from mlcv.classic.methods import face_windows

    n, w = method.config.negatives, method.window
    levels = [
        lvl
        for name in n.train_scenes
        for lvl in face_windows.pyramid(name, face_windows.load_scene(name), w, n.pyramid_factor, n.max_side)
    ]
    non_faces = int((method.split["train"][1] == 0).sum())
    every = sum((lvl.image.shape[0] - w + 1) * (lvl.image.shape[1] - w + 1) for lvl in levels)
    coarse = sum(
        len(range(0, lvl.image.shape[0] - w + 1, 8)) * len(range(0, lvl.image.shape[1] - w + 1, 8)) for lvl in levels
    )
    # an empty cascade accepts everything: asking for fewer than the 8-pixel grid holds stays on it ...
    got, rate = mine(cascade_lib.Cascade(w, 0.02), coarse, np.random.default_rng(1))
    assert len(got) == coarse and rate == 1.0
    # ... asking for more halves the step down to 1 pixel, where every window of every level is a candidate
    got, rate = mine(cascade_lib.Cascade(w, 0.02), 10**9, np.random.default_rng(1))
    assert len(got) == every + non_faces and rate == 1.0


def test_paste_faces_puts_each_resized_face_at_its_box():
    from skimage.transform import resize

    from mlcv.classic.methods import face_windows

    rng = np.random.default_rng(0)
    scene, faces = rng.random((100, 130)), rng.random((5, 25, 25))
    image, boxes = face_windows.paste_faces(scene, faces, (24, 40), np.random.default_rng(3))
    # cells of 1.5 * 40 = 60 pixels: two columns fit in 130, three rows need 180 rows (the scene is mirrored down)
    assert image.shape == (180, 130)
    np.testing.assert_array_equal(boxes[:, 2] - boxes[:, 0], [24, 40, 24, 40, 24])
    assert (np.diff(boxes[:, [0, 2]]) > 0).all() and (boxes[:, 2:] <= [[130, 180]]).all()
    assert box_overlaps(boxes) == 0
    for face, (x0, y0, x1, y1) in zip(faces, boxes.astype(int), strict=True):
        expected = resize(face, (y1 - y0, x1 - x0), order=1, anti_aliasing=True, mode="edge")
        np.testing.assert_allclose(image[y0:y1, x0:x1], expected, atol=1e-12)
    # away from the pasted faces the scene is untouched
    mask = np.ones(image.shape, bool)
    for x0, y0, x1, y1 in boxes.astype(int):
        mask[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(image[:100][mask[:100]], scene[mask[:100]])


def box_overlaps(boxes: np.ndarray) -> int:
    """Pairs of distinct boxes that intersect."""
    from mlcv.ops import boxes as box_ops

    inter = box_ops.iou(boxes, boxes) > 0
    return int((inter.sum() - len(boxes)) // 2)


def test_average_precision_equals_pycocotools(fitted):
    """The detector's AP on its scenes with known faces is COCO's, as pycocotools computes it."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    method = fitted[0]
    method._scored = []
    method._pasted("test", method.config.negatives.test_scenes[0])
    method._astronaut()
    scored = list(method._scored)
    ours = method._average_precision()
    images, annotations, detections = [], [], []
    for i, (gt, boxes, scores) in enumerate(scored):
        images.append({"id": i})
        for b in np.asarray(gt, float).reshape(-1, 4):  # (x0, y0, x1, y1) -> COCO's (x, y, w, h)
            w, h = b[2] - b[0], b[3] - b[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1, "bbox": [b[0], b[1], w, h],
                                "area": w * h, "iscrowd": 0})  # fmt: skip
        for b, s in zip(np.asarray(boxes, float).reshape(-1, 4), scores, strict=True):
            detections.append({"image_id": i, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                               "score": float(s)})  # fmt: skip
    if not detections:
        pytest.skip("the runlocal detector found nothing on these scenes")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1}]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(detections), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    want = [None if v < 0 else v for v in ev.stats[:3]]
    got = [ours["ap"], ours["ap50"], ours["ap75"]]
    for g, w in zip(got, want, strict=True):
        assert (np.isnan(g) and w is None) or g == pytest.approx(w, abs=1e-9)
