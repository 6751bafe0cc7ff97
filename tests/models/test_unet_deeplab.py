"""U-Net and DeepLab v3: shapes, skip channels and parameters by hand, receptive fields of dilated convolutions
by the hand formula, torchvision's published DeepLab sizes, and gradients through every ASPP branch.

Shapes and parameter counts are traced abstractly (``jax.eval_shape``, the layer table): nothing is computed, so
even ResNet-101 costs a fraction of a second. Only the gradient tests run the models, on tiny widths.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlcv.models import deeplab, unet
from mlcv.models import layer_table as summary
from mlcv.models.resnet import BasicBlock, ResNet

# XLA's RngBitGenerator keys: initialisers compile in a fraction of threefry's time on a CPU; test inputs come
# from NumPy for the same reason.
KEY = jax.random.key(0, impl="rbg")


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _params(model: nn.Module, shape: tuple[int, ...]) -> dict:
    return jax.eval_shape(lambda x: model.init(KEY, x), jnp.zeros(shape))["params"]


def _count(tree) -> int:
    return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


def _intermediates(model: nn.Module, shape: tuple[int, ...]) -> dict:
    """The output shape of every submodule's ``__call__``, traced abstractly."""

    def run(x):
        variables = model.init(KEY, x)
        return model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])[1]

    return jax.eval_shape(run, jnp.zeros(shape))["intermediates"]


# --- U-Net -----------------------------------------------------------------------------------------------------


def test_unet_tiny_parameters_by_hand():
    """UNetTiny (4 channels, depth 2, BN, 3x3 convs without bias) on 1-channel input, 2 classes."""
    enc0 = 3 * 3 * 1 * 4 + 2 * 4 + 3 * 3 * 4 * 4 + 2 * 4  # 196: two convs, BN scale + bias each
    enc1 = 3 * 3 * 4 * 8 + 2 * 8 + 3 * 3 * 8 * 8 + 2 * 8  # 896
    bottom = 3 * 3 * 8 * 16 + 2 * 16 + 3 * 3 * 16 * 16 + 2 * 16  # 3520
    up1 = 2 * 2 * 16 * 8 + 8  # 520: 2x2 transposed conv with bias, 16 -> 8 channels
    dec1 = 3 * 3 * (8 + 8) * 8 + 2 * 8 + 3 * 3 * 8 * 8 + 2 * 8  # 1760: reads the skip (8) and the up-conv (8)
    up0 = 2 * 2 * 8 * 4 + 4  # 132
    dec0 = 3 * 3 * (4 + 4) * 4 + 2 * 4 + 3 * 3 * 4 * 4 + 2 * 4  # 448
    classifier = 4 * 2 + 2  # 10
    hand = enc0 + enc1 + bottom + up1 + dec1 + up0 + dec0 + classifier
    assert hand == 7482
    assert _count(_params(unet.UNetTiny(num_classes=2), (1, 16, 16, 1))) == hand
    # The paper's conv + bias version: each 3x3 conv's channels get a bias instead of a BN scale and bias.
    channels = 2 * (4 + 8 + 16 + 8 + 4)  # two convs a block: enc0, enc1, bottom, dec1, dec0
    plain = unet.UNetTiny(num_classes=2, batch_norm=False)
    assert _count(_params(plain, (1, 16, 16, 1))) == hand - 2 * channels + channels


@pytest.mark.parametrize("features,depth,size", [(4, 2, 16), (4, 3, 32), (2, 4, 32)])
def test_unet_output_shape(features, depth, size):
    model = unet.UNet(num_classes=5, features=features, depth=depth)
    out = jax.eval_shape(lambda x: model.init_with_output(KEY, x)[0], jnp.zeros((2, size, 48, 3)))
    assert out.shape == (2, size, 48, 5)


def test_unet_runs_in_training_mode():
    """One real forward pass: finite logits at the input's size, BN statistics updated."""
    model = unet.UNetTiny(num_classes=3)
    x = _normal(1, (2, 16, 16, 1))

    @jax.jit  # one compilation: faster than op by op
    def run(x):
        return model.apply(model.init(KEY, x), x, train=True, mutable=["batch_stats"])

    out, state = run(x)
    assert out.shape == (2, 16, 16, 3) and bool(jnp.all(jnp.isfinite(out)))
    assert not jnp.allclose(state["batch_stats"]["enc0"]["bn0"]["mean"], 0.0)


def test_unet_skip_concatenation_channels():
    """Decoder level i's first conv reads [skip_i, up_i]: features * 2**i channels from each (params tree)."""
    features, depth = 4, 3
    params = _params(unet.UNet(num_classes=2, features=features, depth=depth), (1, 32, 32, 3))
    # Level i has 4 * 2**i channels: 4, 8, 16 and the bottom 32.
    assert {i: params[f"dec{i}"]["conv0"]["kernel"].shape for i in range(depth)} == {
        0: (3, 3, 4 + 4, 4),
        1: (3, 3, 8 + 8, 8),
        2: (3, 3, 16 + 16, 16),
    }
    assert params["bottom"]["conv1"]["kernel"].shape == (3, 3, 32, 32)
    assert params["enc0"]["conv0"]["kernel"].shape == (3, 3, 3, 4)  # the image's 3 channels


def test_unet_transposed_convolution_halves_channels_and_doubles_resolution():
    features, depth, h, w = 4, 3, 32, 16
    model = unet.UNet(num_classes=2, features=features, depth=depth)
    shapes = _intermediates(model, (2, h, w, 1))
    params = _params(model, (2, h, w, 1))
    below = shapes["bottom"]["__call__"][0].shape
    assert below == (2, h // 8, w // 8, 32)
    for i in reversed(range(depth)):
        up = shapes[f"up{i}"]["__call__"][0].shape
        # Twice the height and width, half the channels of the level below.
        assert up == (2, 2 * below[1], 2 * below[2], below[3] // 2) == (2, h >> i, w >> i, features << i)
        assert params[f"up{i}"]["kernel"].shape == (2, 2, features << (i + 1), features << i)
        below = shapes[f"dec{i}"]["__call__"][0].shape
    rows = {r.name: r for r in summary.layer_table(model, (h, w, 1))}
    assert (rows["up0"].kernel, rows["up0"].stride, rows["up0"].padding) == ((2, 2), (2, 2), "VALID")


def test_unet_rejects_sizes_not_divisible_by_2_to_the_depth():
    model = unet.UNet(num_classes=2, features=2, depth=3)
    with pytest.raises(ValueError, match=r"36x32 .*\(2, 36, 32, 1\).*2\*\*depth = 8"):
        _params(model, (2, 36, 32, 1))
    _params(model, (1, 40, 8, 1))  # multiples of 8 pass


# --- DeepLab: shapes, strides, parameters ---------------------------------------------------------------------


@pytest.mark.parametrize("output_stride", [8, 16])
def test_deeplab_output_shape_and_backbone_stride(output_stride):
    model = deeplab.DeepLabTiny(num_classes=3, output_stride=output_stride)
    rows = {r.name: r for r in summary.layer_table(model, (64, 64, 3))}
    n = 64 // output_stride  # 8 or 4
    assert rows["backbone/stage4_block0/conv2"].out_shape == (n, n, 8)  # the backbone's last map
    assert rows["aspp/project"].out_shape == (n, n, 8)
    assert rows["classifier"].out_shape == (n, n, 3)
    # The strides the dilation replaced: stage 4 (and stage 3 at 8) keep stride 1.
    assert rows["backbone/stage3_block0/conv1"].stride == ((2, 2) if output_stride == 16 else (1, 1))
    assert rows["backbone/stage4_block0/conv1"].stride == (1, 1)
    for shape in [(2, 64, 64, 3), (1, 60, 44, 3)]:  # bilinear upsampling back to the input, any size
        out = jax.eval_shape(lambda x: model.init_with_output(KEY, x)[0], jnp.zeros(shape))
        assert out.shape == (*shape[:3], 3)


def test_deeplab_resnet_sizes_match_torchvision():
    """torchvision publishes 42,004,074 (ResNet-50) and 60,996,202 (ResNet-101) parameters for its DeepLab v3 with
    21 classes. Its head adds a 3x3 conv + BN after ASPP (9 * 256 * 256 + 2 * 256 = 590,336) and an auxiliary FCN
    head on the stride-16 stage (3x3 conv 1024 -> 256 + BN + 1x1 classifier: 2,365,205), which the paper has not."""
    extra = 9 * 256 * 256 + 2 * 256 + (9 * 1024 * 256 + 2 * 256 + 256 * 21 + 21)
    assert extra == 590_336 + 2_365_205
    r50 = _count(_params(deeplab.DeepLabV3ResNet50(num_classes=21), (1, 64, 64, 3)))
    r101 = _count(_params(deeplab.DeepLabV3ResNet101(num_classes=21), (1, 64, 64, 3)))
    assert (r50, r101) == (42_004_074 - extra, 60_996_202 - extra)
    # By hand: ResNet-50 without its 1000-way fc, ASPP on 2048 channels, the 21-way classifier.
    aspp = 2048 * 256 + 3 * 9 * 2048 * 256 + 2048 * 256 + 5 * 256 * 256 + 6 * 2 * 256  # 1x1, atrous, pool, project
    assert r50 == (25_557_032 - (2048 * 1000 + 1000)) + aspp + (256 * 21 + 21)


def test_deeplab_rejects_bad_strides():
    shape = (1, 32, 32, 3)
    with pytest.raises(ValueError, match="power of two"):
        _params(deeplab.DeepLabTiny(num_classes=2, output_stride=12), shape)
    with pytest.raises(ValueError, match="whole dilations"):
        _params(deeplab.DeepLabTiny(num_classes=2, output_stride=32, rates=(1, 2, 3)), shape)
    short = deeplab.DeepLab(num_classes=2, stage_sizes=(1, 1), block=BasicBlock, widths=(8, 8), output_stride=16)
    with pytest.raises(ValueError, match="do not reach it"):  # stem (4) and two stages reach stride 8 only
        _params(short, shape)


# --- Receptive fields of dilated convolutions ------------------------------------------------------------------


class _DilatedStack(nn.Module):
    """3x3 convolutions with dilations 1, 2, 4, ..., 2**(layers - 1), stride 1 (Yu & Koltun's context module)."""

    layers: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        for i in range(self.layers):
            x = nn.Conv(2, (3, 3), kernel_dilation=2**i, name=f"conv{i}")(x)
        return x


def test_dilated_stack_receptive_field_grows_exponentially():
    """Layer l (from 0) adds 2 * 2**l pixels: after l + 1 layers 1 + 2 * (2**(l + 1) - 1) = 2**(l + 2) - 1."""
    layers = 5
    hand = [2 ** (i + 2) - 1 for i in range(layers)]
    assert hand == [3, 7, 15, 31, 63]
    rows = summary.layer_table(_DilatedStack(layers), (64, 64, 1))
    assert [r.receptive_field for r in rows[1:]] == [(rf, rf) for rf in hand]
    assert [r.out_shape for r in rows[1:]] == [(64, 64, 2)] * layers  # no resolution lost
    assert summary.receptive_field([(3, 1, 2**i) for i in range(layers)]) == hand
    # Undilated, the same five layers reach 11: linear growth.
    assert summary.receptive_field([(3, 1, 1)] * layers)[-1] == 11


# The tiny backbone by hand, r' = r + (k - 1) * d * j, j' = j * s: stem 7x7/2 -> 7 (j 2); max pool 3/2 -> 11 (j 4);
# stage 1 (two 3x3): 19, 27; stage 2 (first 3x3 stride 2): 35 (j 8), 51. Then at output stride 8: stage 3
# dilation 2: 51 + 2 * 2 * 8 = 83, 115; stage 4 dilation 4: 179, 243. At 16: stage 3 stride 2: 67 (j 16), 99;
# stage 4 dilation 2: 163, 227. Undilated (stride 32): stage 3 as at 16; stage 4 stride 2: 131 (j 32), 195.
_BACKBONE_RF = {8: 243, 16: 227, 32: 195}


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilated_backbone_and_aspp_receptive_fields(output_stride):
    """The backbone's RF by hand; an ASPP branch of rate r on a map of jump s adds 2 * r * s."""
    model = deeplab.DeepLabTiny(num_classes=3, output_stride=output_stride)
    rf = {r.name: r.receptive_field for r in summary.layer_table(model, (64, 64, 3))}
    backbone = _BACKBONE_RF[output_stride]
    assert rf["backbone/stage4_block0/conv2"] == (backbone, backbone)
    assert rf["aspp/conv1x1"] == (backbone, backbone)
    rates = {8: (12, 24, 36), 16: (6, 12, 18)}[output_stride]  # the paper's rates, doubled at stride 8
    assert model.scaled_rates() == rates
    for i, r in enumerate(rates):
        want = backbone + (3 - 1) * r * output_stride
        assert rf[f"aspp/atrous{i}"] == (want, want)
    # Both dilated strides reach the same share of the image with the paper's rates (2 * 6 * 16 = 2 * 12 * 8).
    assert rf["aspp/atrous2"][0] - backbone == 2 * 18 * 16
    undilated = ResNet(
        num_classes=1, stage_sizes=(1, 1, 1, 1), block=BasicBlock, widths=(8, 8, 8, 8), features_only=True
    )
    last = {r.name: r for r in summary.layer_table(undilated, (64, 64, 3))}["stage4_block0/conv2"]
    assert (last.receptive_field, last.out_shape) == ((_BACKBONE_RF[32],) * 2, (2, 2, 8))


def test_aspp_branch_receptive_field_on_its_input():
    """On its own input (jump 1), a 3x3 branch of rate r sees 2r + 1 pixels; the 1x1 branch sees 1."""
    rates = (1, 2, 5)
    rf = {r.name: r.receptive_field for r in summary.layer_table(deeplab.ASPP(4, rates), (16, 16, 4))}
    assert rf["conv1x1"] == (1, 1)
    assert [rf[f"atrous{i}"] for i in range(3)] == [(3, 3), (5, 5), (11, 11)]
    assert rf["project"] == (11, 11)  # the longest path; the pooled branch (the whole map) has no column


# --- Gradients through ASPP ------------------------------------------------------------------------------------


def test_every_aspp_branch_contributes_in_training():
    """A training-mode gradient of a loss on the logits reaches every branch's kernel and the backbone's stem.

    Two different images: BN of the pooled branch normalizes one value per image and channel, so two identical
    images (or a batch of one) would make that branch constant and its gradient zero.
    """
    model = deeplab.DeepLabTiny(num_classes=3, output_stride=8)
    x = _normal(1, (2, 32, 32, 3))
    weights = _normal(2, (2, 32, 32, 3))

    @jax.jit  # one compilation: faster than op by op
    def grads(x):
        variables = model.init(KEY, x)

        def loss(params):
            out, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
            return jnp.sum(out * weights)

        return jax.grad(loss)(variables["params"])

    grads = grads(x)
    branches = ["conv1x1", "atrous0", "atrous1", "atrous2", "pool_conv", "project"]
    norms = {b: float(jnp.abs(grads["aspp"][b]["kernel"]).sum()) for b in branches}
    assert all(v > 0 for v in norms.values()), norms
    assert float(jnp.abs(grads["backbone"]["stem_conv"]["kernel"]).sum()) > 0


def test_rates_beyond_the_map_leave_only_the_centre_tap():
    """The paper's Fig. 4: on an n x n map a tap at offset +-r reaches a pixel of the map from some position
    iff r < n. Rates 1 and 7 on an 8x8 map train all 9 taps; rate 8 only the centre one."""
    aspp = deeplab.ASPP(16, rates=(1, 7, 8), image_pooling=False)  # 16 channels: some ReLU open at each pixel
    x = _normal(1, (1, 8, 8, 3))

    @jax.jit
    def grads(x):
        variables = aspp.init(KEY, x)
        return jax.grad(lambda p: jnp.sum(aspp.apply({**variables, "params": p}, x) ** 2))(variables["params"])

    grads = grads(x)
    taps = {i: jnp.abs(grads[f"atrous{i}"]["kernel"]).sum(axis=(2, 3)) > 0 for i in range(3)}
    assert bool(jnp.all(taps[0])) and bool(jnp.all(taps[1]))
    centre_only = jnp.zeros((3, 3), bool).at[1, 1].set(True)
    assert bool(jnp.all(taps[2] == centre_only))


@pytest.mark.parametrize("image_pooling", [True, False])
def test_image_pooling_makes_the_output_depend_on_far_pixels(image_pooling):
    """Output pixel (0, 0) with rates 1, 2 sees inputs at most 2 pixels away, (15, 15) only through pooling.

    Evaluation mode: in training, BN's batch statistics would couple every pixel to every other anyway.
    """
    aspp = deeplab.ASPP(8, rates=(1, 2), image_pooling=image_pooling)
    x = _normal(1, (1, 16, 16, 3))
    variables = jax.jit(aspp.init)(KEY, x)
    dx = jax.jit(jax.grad(lambda x: jnp.sum(aspp.apply(variables, x)[0, 0, 0])))(x)
    reach = jnp.abs(dx[0]).sum(-1)
    assert float(reach[2, 2]) > 0  # inside the rate-2 branch's 5x5
    assert bool(jnp.all(reach[3:, :] == 0) & jnp.all(reach[:, 3:] == 0)) != image_pooling
    assert (float(reach[15, 15]) > 0) == image_pooling
