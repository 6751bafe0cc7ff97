"""The disparity and flow evaluators run as the loop runs them (jitted ``batch_fn`` over batches whose last one is
padded with garbage rows of mask 0), compared with :mod:`mlcv.metrics.stereo` and numpy on the unpadded split."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import padded_batches

from mlcv import evaluators
from mlcv.config import ConfigError
from mlcv.evaluators import flow as flow_ev
from mlcv.evaluators import stereo as stereo_ev
from mlcv.metrics import stereo as ms

N, H, W = 11, 12, 16


def batches(arrays: dict[str, np.ndarray], rng: np.random.Generator, batch_size: int) -> list[dict[str, np.ndarray]]:
    """The split in padded batches (conftest.padded_batches), the last one padded."""
    out = padded_batches(arrays, rng, batch_size)
    assert out[-1]["mask"].sum() < batch_size
    return out


def run(ev: evaluators.Evaluator, data: list[dict[str, np.ndarray]], output_key: str, pred_key: str):
    """One pass as the loop makes it: the prediction under ``pred_key`` in the data, ``output_key`` in the outputs."""
    step = jax.jit(ev.batch_fn)
    for batch in data:
        inputs = {k: v for k, v in batch.items() if k != pred_key}
        ev.update(jax.device_get(step({output_key: batch[pred_key]}, inputs)))
    scalars, extras = ev.result()
    assert set(scalars) == set(ev.directions) and ev.percent <= set(ev.directions)
    assert all(isinstance(v, float) for v in scalars.values())
    return scalars, extras


def disparity_data(rng: np.random.Generator) -> dict[str, np.ndarray]:
    gt = rng.uniform(0, 40, (N, H, W)).astype(np.float32)
    gt[rng.random(gt.shape) < 0.05] = np.nan  # no ground truth at all
    valid = rng.random(gt.shape) < 0.85
    valid[3] = False  # an image without ground truth: left out of the per-image means
    pred = gt + rng.laplace(0, 1.5, gt.shape).astype(np.float32)
    pred[rng.random(gt.shape) < 0.1] = np.nan  # holes, as the classic method leaves them
    pred[rng.random(gt.shape) < 0.05] = -1.0  # another way of saying "no prediction"
    pred[5] = np.nan  # an image without any prediction: its EPE is undefined
    occlusion = rng.random(gt.shape) < 0.15
    return {"pred": pred, "disparity": gt, "disparity_mask": valid, "occlusion": occlusion.astype(np.uint8)}


def reference(arrays: dict[str, np.ndarray]) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """mlcv.metrics.stereo on the concatenated split (negative predictions as NaN), and numpy per-image values."""
    pred = np.where(arrays["pred"] >= 0, arrays["pred"], np.nan)
    gt = np.where(arrays["disparity_mask"], arrays["disparity"], np.nan)
    noc = arrays["occlusion"] == 0
    out = {}
    for sfx, mask in (("", None), ("_noc", noc)):
        for k in (1, 2, 4):
            out[f"bad{k}{sfx}"] = ms.bad_rate(pred, gt, k, mask)
        out[f"epe{sfx}"] = ms.end_point_error(pred, gt, mask)
        out[f"density{sfx}"] = ms.density(pred, gt, mask)
    per_bad2 = np.array([ms.bad_rate(p, g, 2.0) for p, g in zip(pred, gt, strict=True)])
    per_epe = np.array([ms.end_point_error(p, g) for p, g in zip(pred, gt, strict=True)])
    return out, per_bad2, per_epe


def test_disparity_vs_metrics_stereo():
    rng = np.random.default_rng(0)
    arrays = disparity_data(rng)
    ev = evaluators.build({"type": "disparity", "pred_key": "disparity"})
    scalars, extras = run(ev, batches(arrays, rng, 4), "disparity", "pred")
    expected, per_bad2, per_epe = reference(arrays)
    for key, value in expected.items():
        assert scalars[key] == pytest.approx(value, rel=1e-6), key
    np.testing.assert_allclose(extras["per_image_bad2"], per_bad2, rtol=1e-6)
    np.testing.assert_allclose(extras["per_image_epe"], per_epe, rtol=1e-6)
    assert np.isnan(per_bad2[3]) and np.isnan(per_epe[5]) and np.isfinite(per_bad2[5])
    assert scalars["bad2_per_image"] == pytest.approx(np.nanmean(per_bad2), rel=1e-6)
    assert scalars["epe_per_image"] == pytest.approx(np.nanmean(per_epe), rel=1e-6)
    # Missing predictions count as bad: bad-4 is at least the share of missing pixels.
    assert scalars["bad4"] >= 1 - scalars["density"] > 0.1
    assert ev.directions["density"] == "max" and ev.directions["epe"] == "min" and "bad2" in ev.percent
    assert len(extras["disparity_examples"]) == 4
    ev.reset()
    assert np.isnan(ev.result()[0]["epe"])


def test_disparity_independent_of_batching_and_padding():
    rng = np.random.default_rng(1)
    arrays = disparity_data(rng)
    results = []
    for size in (3, 4, 7):
        ev = evaluators.build({"type": "disparity", "pred_key": "disparity", "draw_images": 2})
        results.append(run(ev, batches(arrays, rng, size), "disparity", "pred"))
    for scalars, extras in results[1:]:
        np.testing.assert_equal(scalars, results[0][0])  # NaN-aware, exact: the same per-image sums in order
        np.testing.assert_equal(extras["per_image_bad2"], results[0][1]["per_image_bad2"])
        np.testing.assert_equal(extras["per_image_epe"], results[0][1]["per_image_epe"])
        # The same first examples of the split, whatever the batch size.
        assert extras["disparity_examples"] == results[0][1]["disparity_examples"]


def test_disparity_without_occlusion():
    rng = np.random.default_rng(2)
    arrays = disparity_data(rng)
    del arrays["occlusion"]
    ev = evaluators.build({"type": "disparity", "pred_key": "disparity", "draw_images": 0})
    scalars, extras = run(ev, batches(arrays, rng, 4), "disparity", "pred")
    assert np.isnan(scalars["bad2_noc"]) and np.isfinite(scalars["bad2"]) and extras["disparity_examples"] == []
    ev = evaluators.build({"type": "disparity", "pred_key": "disparity", "occlusion_key": None})
    scalars, _ = run(ev, batches(arrays, rng, 4), "disparity", "pred")
    assert not any(k.endswith("_noc") for k in scalars)
    with pytest.raises(ConfigError, match="focal_px"):
        evaluators.build({"type": "disparity", "focal_px": 700.0})


def test_disparity_plots(tmp_path):
    rng = np.random.default_rng(3)
    arrays = disparity_data(rng)
    ev = evaluators.build(
        {"type": "disparity", "pred_key": "disparity", "focal_px": 700.0, "baseline": 0.54, "draw_size": 8}
    )
    _, extras = run(ev, batches(arrays, rng, 4), "disparity", "pred")
    example = extras["disparity_examples"][0]
    pred = stereo_ev.png_float(example["pred_png"])
    assert pred.shape == (6, 8)  # subsampled by 2 to at most draw_size a side
    expected = np.where(arrays["pred"][0, ::2, ::2] >= 0, arrays["pred"][0, ::2, ::2], np.nan)
    np.testing.assert_allclose(pred, expected, atol=1 / 512)  # NaN where NaN, else to 1/256 px
    paths = ev.plot(extras, tmp_path, "test")
    assert [p.name for p in paths] == ["disparity_test.png", "depth_test.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def flow_data(rng: np.random.Generator) -> dict[str, np.ndarray]:
    gt = rng.normal(0, 20, (N, H, W, 2)).astype(np.float32)
    pred = gt + rng.normal(0, 2.5, gt.shape).astype(np.float32)
    valid = rng.random((N, H, W)) < 0.8
    gt[~valid & (rng.random((N, H, W)) < 0.5)] = np.nan  # invalid pixels may hold anything
    return {"pred": pred, "flow": gt, "flow_mask": valid}


def test_flow_vs_numpy(tmp_path):
    rng = np.random.default_rng(4)
    arrays = flow_data(rng)
    ev = evaluators.build({"type": "flow", "pred_key": "flow", "draw_images": 3})
    scalars, extras = run(ev, batches(arrays, rng, 4), "flow", "pred")
    pred, gt, valid = (arrays[k].astype(np.float64) for k in ("pred", "flow", "flow_mask"))
    valid = valid.astype(bool)
    epe = np.linalg.norm(pred - gt, axis=-1)
    mag = np.linalg.norm(gt, axis=-1)
    assert scalars["flow_epe"] == pytest.approx(epe[valid].mean(), rel=1e-5)
    outliers = (epe > 3) & (epe > 0.05 * mag)
    assert 0.05 < outliers[valid].mean() < 0.95  # both sides of the thresholds are exercised
    assert scalars["flow_outliers"] == pytest.approx(outliers[valid].mean(), rel=1e-12)
    per_image = [e[v].mean() for e, v in zip(epe, valid, strict=True)]
    np.testing.assert_allclose(extras["per_image_epe"], per_image, rtol=1e-5)
    assert scalars["flow_epe_per_image"] == pytest.approx(np.mean(per_image), rel=1e-5)
    assert ev.directions == {"flow_epe": "min", "flow_outliers": "min", "flow_epe_per_image": "min"}
    assert len(extras["flow_examples"]) == 3
    (path,) = ev.plot(extras, tmp_path, "validation")
    assert path == tmp_path / "flow_validation.png" and path.stat().st_size > 0
    # The same on other batch sizes.
    ev = evaluators.build({"type": "flow", "pred_key": "flow", "draw_images": 3})
    assert run(ev, batches(arrays, rng, 5), "flow", "pred") == (scalars, extras)


def test_flow_outlier_needs_both_thresholds():
    """EPE 4 px on a 100 px flow is 4 %: no outlier; EPE 2 px on a 10 px flow is 20 %, but under 3 px: none;
    EPE 4 px on a 10 px flow: an outlier."""
    gt = np.array([[[[100.0, 0.0], [10.0, 0.0], [0.0, 10.0]]]], np.float32)
    pred = gt + np.array([[[[0.0, 4.0], [-2.0, 0.0], [4.0, 0.0]]]], np.float32)
    batch = {"flow": gt, "flow_mask": np.ones((1, 1, 3), bool), "mask": np.ones(1, np.float32)}
    ev = evaluators.build({"type": "flow"})
    ev.update(jax.device_get(jax.jit(ev.batch_fn)({"flow": pred}, batch)))
    scalars, _ = ev.result()
    assert scalars["flow_outliers"] == pytest.approx(1 / 3)
    assert scalars["flow_epe"] == pytest.approx(10 / 3)


def test_colour_wheel_directions():
    import colorsys

    flow = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.5, 0.0], [0.0, 0.0], [np.nan, 0.0]])
    rgb = flow_ev.flow_to_color(flow, max_magnitude=1.0)
    np.testing.assert_allclose(rgb[0], [1, 0, 0])  # +x: red, hue 0
    np.testing.assert_allclose(rgb[1], [0, 1, 1])  # -x: cyan, hue 180
    hues = [colorsys.rgb_to_hsv(*c)[0] * 360 for c in rgb[:4]]
    np.testing.assert_allclose(hues, [0, 180, 90, 270], atol=1e-9)  # +y (image down) at 90, up at 270
    assert colorsys.rgb_to_hsv(*rgb[4])[1] == pytest.approx(0.5)  # half the max magnitude: half saturated
    np.testing.assert_allclose(rgb[5], [1, 1, 1])  # no motion: white
    np.testing.assert_allclose(rgb[6], [0, 0, 0])  # unknown: black
    # Default normalisation: by the largest magnitude, so the longest vector is fully saturated.
    assert colorsys.rgb_to_hsv(*flow_ev.flow_to_color(flow[:5] * 7)[0])[1] == pytest.approx(1.0)


def test_float_png_round_trip():
    x = np.array([[0.0, 1.5, np.nan], [255.99, 300.0, -2.0]])
    y = stereo_ev.png_float(stereo_ev.float_png(x))
    np.testing.assert_allclose(y, [[0.0, 1.5, np.nan], [255.99, 65534 / 256, 0.0]], atol=1 / 512)
