"""Learned stereo and flow models (MC-CNN, DispNet-C, FlowNet-C, GC-Net, Monodepth) on their tiny variants."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlcv import models
from mlcv.models import dispnet, gcnet, mccnn, monodepth
from mlcv.ops import cost_volume

# Values, not speed, are checked: compile without backend optimisation (several times faster on a CPU).
_jit = partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

PUBLIC = ["mccnn_fast", "mccnn_accurate", "dispnet_c", "flownet_c", "gcnet", "monodepth"]
TINY = {
    "_mccnn_fast_tiny": mccnn.MCCNNFast,
    "_mccnn_accurate_tiny": mccnn.MCCNNAccurate,
    "_dispnet_tiny": dispnet.DispNetC,
    "_flownet_tiny": dispnet.FlowNetC,
    "_gcnet_tiny": gcnet.GCNet,
    "_monodepth_tiny": monodepth.Monodepth,
}
H, W = 16, 32


def _images(n: int, shape=(2, H, W, 1), seed: int = 0) -> list[jax.Array]:
    keys = jax.random.split(jax.random.key(seed), n)
    return [jax.random.normal(k, shape) for k in keys]


def _inputs(name: str) -> tuple[jax.Array, ...]:
    if "mccnn" in name:
        p = models.get(name).patch_size
        return tuple(_images(2, (3, p, p, 1)))
    if "monodepth" in name:
        return tuple(_images(1))
    return tuple(_images(2))


def _init(name: str):
    model = models.get(name)
    args = _inputs(name)
    variables = _jit(model.init)(jax.random.key(1), *args)
    return model, variables, args


def test_registered():
    assert set(PUBLIC) <= set(models.names())
    for name, cls in TINY.items():
        assert name not in models.names()
        assert isinstance(models.get(name), cls)


def test_mccnn_dense_features_equal_patch_network():
    """At interior pixels the 'SAME' dense features are the patch network's; match_scores is the patch score."""
    left, right = _images(2, (1, 12, 14, 1), seed=3)
    for name in ("_mccnn_fast_tiny", "_mccnn_accurate_tiny"):
        model, variables, _ = _init(name)
        r = model.num_layers
        y, x, d = 6, 8, 3
        feats = model.apply(variables, left, method="features")
        assert feats.shape == (1, 12, 14, model.channels)
        patch_l = left[:, y - r : y + r + 1, x - r : x + r + 1]
        patch_r = right[:, y - r : y + r + 1, x - d - r : x - d + r + 1]
        tower = model.apply(variables, patch_l, method=lambda m, p: m.tower(p, dense=False))
        want = tower[0, 0, 0]
        if name == "_mccnn_fast_tiny":
            want = want / jnp.linalg.norm(want)
        np.testing.assert_allclose(feats[0, y, x], want, rtol=1e-4, atol=1e-5)
        score = model.apply(variables, patch_l, patch_r)["score"]
        assert score.shape == (1,)
        volume = model.apply(variables, left, right, 4, method="match_scores")
        assert volume.shape == (1, 12, 14, 5)
        np.testing.assert_allclose(volume[0, y, x, d], score[0], rtol=1e-4, atol=1e-5)
        if name == "_mccnn_fast_tiny":
            assert np.all(np.abs(np.asarray(volume)) <= 1 + 1e-5)  # cosines
        else:  # past the left edge the partner is a zero vector, as in concat_cost_volume
            pair = jnp.concatenate([feats[0, y, 1], jnp.zeros(model.channels)])
            edge = model.apply(variables, pair, method=lambda m, p: m._head(p))
            np.testing.assert_allclose(volume[0, y, 1, 2], edge, rtol=1e-4, atol=1e-5)
        # Training scores a few disparities per pixel: the volume's entries, wherever x - d is in the image.
        picks = jax.random.randint(jax.random.key(4), (1, 12, 14, 2), 0, 5)
        pairs = np.asarray(model.apply(variables, left, right, picks, method="pair_scores"))
        want = np.take_along_axis(np.asarray(volume), np.asarray(picks), -1)
        inside = np.arange(14)[None, None, :, None] >= np.asarray(picks)
        np.testing.assert_allclose(pairs[inside], want[inside], rtol=1e-4, atol=1e-5)


def test_mccnn_rejects_wrong_patch_size():
    model, variables, _ = _init("_mccnn_fast_tiny")
    with pytest.raises(ValueError, match="patches"):
        model.apply(variables, jnp.zeros((1, 7, 7, 1)), jnp.zeros((1, 7, 7, 1)))


@pytest.mark.parametrize(
    ("name", "key", "channels"), [("_dispnet_tiny", "disparities", ()), ("_flownet_tiny", "flows", (2,))]
)
def test_correlation_nets_multiscale(name, key, channels):
    model, variables, args = _init(name)
    out = model.apply(variables, *args)
    full = "disparity" if key == "disparities" else "flow"
    assert set(out) == {full, key}
    assert out[full].shape == (2, H, W, *channels)
    levels = model.depth + 2  # 1 / 2**levels ... 1/2, coarse to fine
    assert [p.shape for p in out[key]] == [(2, H >> s, W >> s, *channels) for s in range(levels, 0, -1)]
    # full resolution = the finest (1/2) prediction upsampled bilinearly, values doubled
    finest = out[key][-1] if channels else out[key][-1][..., None]
    up = dispnet.upsample_prediction(finest, H, W)
    np.testing.assert_allclose(out[full], up if channels else up[..., 0], rtol=1e-5, atol=1e-5)
    const = jnp.ones((1, 4, 8, 2))
    np.testing.assert_allclose(dispnet.upsample_prediction(const, 8, 16)[0, 3, 5], [2.0, 2.0])


def test_gcnet_soft_argmin_of_costs():
    model, variables, args = _init("_gcnet_tiny")
    out = model.apply(variables, *args)
    d = model.max_disparity
    assert out["costs"].shape == (2, d, H, W) and out["disparity"].shape == (2, H, W)
    disp = np.asarray(out["disparity"])
    assert disp.min() >= 0 and disp.max() <= d - 1
    np.testing.assert_allclose(disp, cost_volume.soft_argmin(out["costs"], axis=1), rtol=1e-5, atol=1e-5)


def test_monodepth_positive_bounded():
    model, variables, args = _init("_monodepth_tiny")
    out = model.apply(variables, *args)
    assert set(out) == {"disp_left", "disp_right", "disparity"}
    assert len(out["disp_left"]) == len(out["disp_right"]) == model.num_scales
    for side in ("disp_left", "disp_right"):
        for s, disp in zip(range(model.num_scales - 1, -1, -1), out[side], strict=True):  # coarse to fine
            assert disp.shape == (2, H >> s, W >> s)
            assert np.all(disp > 0) and np.all(disp < model.max_disparity_fraction * (W >> s))
    np.testing.assert_array_equal(out["disparity"], out["disp_left"][-1])


@pytest.mark.parametrize("name", sorted(TINY))
def test_gradients_reach_every_parameter(name):
    model, variables, args = _init(name)
    out = model.apply(variables, *args)
    weights = jax.tree.map(lambda a: jax.random.normal(jax.random.key(7), a.shape), out)

    def loss(params):
        out = model.apply({**variables, "params": params}, *args)
        return sum(jnp.sum(a * w) for a, w in zip(jax.tree.leaves(out), jax.tree.leaves(weights), strict=True))

    grads = _jit(jax.grad(loss))(variables["params"])
    zero = [jax.tree_util.keystr(p) for p, g in jax.tree_util.tree_leaves_with_path(grads) if not np.any(np.asarray(g))]
    assert not zero, f"{name}: zero gradient for {zero}"
