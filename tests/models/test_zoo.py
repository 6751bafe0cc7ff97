"""Tests of the image-classification zoo (AlexNet ... MobileNet): published parameter counts, shapes, training.

Big models are only traced (``jax.eval_shape``: no memory, no compute); real init/apply/training runs on tiny
variants at 16x16 or 32x32.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mlcv import models
from mlcv.models import alexnet, resnet

# AlexNet at 227x227 and 1000 classes, from the layer table (weights + biases):
ALEXNET_PARAMS = (
    (11 * 11 * 3 * 96 + 96)  # conv1: 34,944
    + (5 * 5 * 96 * 256 + 256)  # conv2: 614,656
    + (3 * 3 * 256 * 384 + 384)  # conv3: 885,120
    + (3 * 3 * 384 * 384 + 384)  # conv4: 1,327,488
    + (3 * 3 * 384 * 256 + 256)  # conv5: 884,992
    + (6 * 6 * 256 * 4096 + 4096)  # fc6 on the flattened 6x6x256 map (227 -> 55/56 -> 27 -> 13 -> 6): 37,752,832
    + (4096 * 4096 + 4096)  # fc7: 16,781,312
    + (4096 * 1000 + 1000)  # fc8: 4,097,000
)  # = 62,378,344
# ZFNet: AlexNet with a 7x7 conv1 (and a strided conv2, which does not change its weights).
ZFNET_PARAMS = ALEXNET_PARAMS - (11 * 11 - 7 * 7) * 3 * 96  # = 62,357,608

# GoogLeNet, Szegedy et al. 2015 Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) and input channels.
GOOGLENET_TABLE = [
    (192, 64, 96, 128, 16, 32, 32),  # 3a
    (256, 128, 128, 192, 32, 96, 64),  # 3b
    (480, 192, 96, 208, 16, 48, 64),  # 4a
    (512, 160, 112, 224, 24, 64, 64),  # 4b
    (512, 128, 128, 256, 24, 64, 64),  # 4c
    (512, 112, 144, 288, 32, 64, 64),  # 4d
    (528, 256, 160, 320, 32, 128, 128),  # 4e
    (832, 256, 160, 320, 32, 128, 128),  # 5a
    (832, 384, 192, 384, 48, 128, 128),  # 5b
]


def _inception_params(c, n1, r3, n3, r5, n5, pp):
    return (c * n1 + n1) + (c * r3 + r3) + (9 * r3 * n3 + n3) + (c * r5 + r5) + (25 * r5 * n5 + n5) + (c * pp + pp)


GOOGLENET_PARAMS = (
    (7 * 7 * 3 * 64 + 64)
    + (64 * 64 + 64)
    + (3 * 3 * 64 * 192 + 192)
    + sum(_inception_params(*row) for row in GOOGLENET_TABLE)
    + 1024 * 1000
    + 1000
)  # = 6,998,552; the paper's Table 1 (weights only, per-layer counts rounded) sums to about 6.8 M.

# Published counts (1000 classes): torchvision's model cards for AlexNet, VGG, ResNet, ResNeXt; timm for SE-ResNet-50
# (seresnet50, SE with biased fc layers, r = 16); Howard et al. 2017 Table 8 / Keras for MobileNet v1.
PUBLISHED = {
    "alexnet": (227, 62.38e6),
    "zfnet": (224, ZFNET_PARAMS),  # no widely published count for the single-tower ZFNet: the hand count above
    "vgg11": (224, 132.86e6),
    "vgg13": (224, 133.05e6),
    "vgg16": (224, 138.36e6),
    "vgg19": (224, 143.67e6),
    "googlenet": (224, 7.0e6),
    "resnet18": (224, 11.69e6),
    "resnet34": (224, 21.80e6),
    "resnet50": (224, 25.56e6),
    "resnet101": (224, 44.55e6),
    "resnet152": (224, 60.19e6),
    "resnext50_32x4d": (224, 25.03e6),
    "se_resnet50": (224, 28.09e6),
    "dilated_resnet50": (224, 25.56e6),  # dilation changes no weights: ResNet-50's count
    "mobilenet_v1": (224, 4.23e6),
}
# He et al. 2016 Table 6 (CIFAR-10, so 10 classes, 32x32 inputs, option-A shortcuts), printed to 2 significant digits.
CIFAR_PUBLISHED = {"resnet20": 0.27e6, "resnet32": 0.46e6, "resnet44": 0.66e6, "resnet56": 0.85e6, "resnet110": 1.7e6}
# Option B (the default) adds two 1x1 projections with their BN: 16 -> 32 and 32 -> 64 channels.
OPTION_B_EXTRA = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)  # = 2,752
ZOO = sorted(PUBLISHED) + sorted(CIFAR_PUBLISHED)


# XLA's CPU backend spends seconds optimising even a tiny network's init (mostly the random initialisers); these
# tests check values, not speed, so they compile without backend optimisation (about 5x faster to compile).
_jit = partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _trace(model, size, channels=3, train=False):
    """Shapes of (logits, variables) of model at a (1, size, size, channels) input, by tracing only."""
    x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
    return jax.eval_shape(partial(model.init_with_output, train=train), jax.random.key(0), x)


def test_registry_names():
    """Every zoo model is registered under its lowercase name; the tiny test variant is hidden but buildable."""
    assert set(ZOO) <= set(models.names())
    assert "_resnet_tiny" not in models.names()
    assert isinstance(models.get("_resnet_tiny", num_classes=3), resnet.ResNet)


def test_hand_counts():
    assert ALEXNET_PARAMS == 62_378_344
    assert ZFNET_PARAMS == 62_357_608
    assert GOOGLENET_PARAMS == 6_998_552
    assert OPTION_B_EXTRA == 2_752


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_param_count_and_output_shape(name):
    """1000 classes at the paper's input size: the published count within 0.5 %, (1, 1000) logits (shapes only)."""
    size, published = PUBLISHED[name]
    logits, variables = _trace(models.get(name, num_classes=1000), size)
    assert logits.shape == (1, 1000)
    count = _count(variables["params"])
    assert count == pytest.approx(published, rel=0.005), count
    if name == "alexnet":
        assert count == ALEXNET_PARAMS
    if name == "googlenet":
        assert count == GOOGLENET_PARAMS


@pytest.mark.parametrize("name", sorted(CIFAR_PUBLISHED))
def test_cifar_resnet_param_count(name):
    """CIFAR ResNets at 10 classes (the paper's CIFAR-10 setting, not 1000) on 32x32 inputs.

    With the paper's option-A shortcuts the count matches Table 6 to its printed precision (half a unit of the last
    digit: 0.005 M, or 0.05 M for "1.7 M"; a relative 0.5 % is tighter than the table's rounding). The default option
    B is exactly OPTION_B_EXTRA more.
    """
    published = CIFAR_PUBLISHED[name]
    logits_a, variables_a = _trace(models.get(name, num_classes=10, shortcut="A"), 32)
    logits_b, variables_b = _trace(models.get(name, num_classes=10), 32)
    assert logits_a.shape == logits_b.shape == (1, 10)
    count_a, count_b = _count(variables_a["params"]), _count(variables_b["params"])
    half_unit = 0.05e6 if published >= 1e6 else 0.005e6
    assert abs(count_a - published) <= half_unit, count_a
    assert count_b == count_a + OPTION_B_EXTRA
    # depth 6n + 2: the hand count with option A and 10 classes
    n = (int(name.removeprefix("resnet")) - 2) // 6
    conv_bn = lambda cin, cout: 9 * cin * cout + 2 * cout  # noqa: E731
    hand = conv_bn(3, 16) + 64 * 10 + 10
    for i, width in enumerate((16, 32, 64)):
        hand += conv_bn(width // 2 if i else width, width) + conv_bn(width, width)  # first block
        hand += (n - 1) * 2 * conv_bn(width, width)
    assert count_a == hand


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_apply_shape_at_paper_size(name):
    """Applying the model (eval and training mode) to a batch of two gives (2, 1000) logits, by tracing only."""
    size = PUBLISHED[name][0]
    model = models.get(name, num_classes=1000)
    _, variables = _trace(model, size)
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    assert jax.eval_shape(partial(model.apply, train=False), variables, x).shape == (2, 1000)
    mutable = [k for k in variables if k != "params"]

    def train_apply(variables, x):
        return model.apply(variables, x, train=True, mutable=mutable, rngs={"dropout": jax.random.key(0)})

    logits, _ = jax.eval_shape(train_apply, variables, x)
    assert logits.shape == (2, 1000)


def _intermediate_shapes(model, size):
    _, variables = _trace(model, size)
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]), variables, x
    )
    return variables, {k: v["__call__"][0].shape[1:] for k, v in state["intermediates"].items() if k != "__call__"}


@pytest.mark.parametrize(
    ("size", "conv1", "conv1_size"),
    [(227, (11, 4, 0), 55), (224, (11, 4, 2), 55), (227, (11, 4, 2), 56)],
)
def test_alexnet_feature_sizes(size, conv1, conv1_size):
    """227 without padding and 224 with padding 2 give the paper's 55x55 conv1 maps; all reach 6x6x256 before fc6."""
    variables, shapes = _intermediate_shapes(models.get("alexnet", num_classes=1000, conv1=conv1), size)
    assert shapes["conv1"] == (conv1_size, conv1_size, 96)
    assert shapes["conv2"] == (27, 27, 256)
    assert shapes["conv5"] == (13, 13, 256)
    assert variables["params"]["fc6"]["kernel"].shape == (6 * 6 * 256, 4096)


def test_zfnet_feature_sizes():
    """ZFNet on 224x224 reproduces Zeiler & Fergus Fig. 3: conv1 110x110, conv2 26x26, conv3-5 13x13."""
    _, shapes = _intermediate_shapes(models.get("zfnet", num_classes=1000), 224)
    assert shapes["conv1"] == (110, 110, 96)
    assert shapes["conv2"] == (26, 26, 256)
    assert shapes["conv5"] == (13, 13, 256)


def test_googlenet_module_outputs():
    """Each inception module's output size matches the paper's Table 1 on 224x224 inputs."""
    _, shapes = _intermediate_shapes(models.get("googlenet", num_classes=1000), 224)
    expected = {
        "3a": (28, 256), "3b": (28, 480), "4a": (14, 512), "4b": (14, 512), "4c": (14, 512),
        "4d": (14, 528), "4e": (14, 832), "5a": (7, 832), "5b": (7, 1024),
    }  # fmt: skip
    for name, (size, channels) in expected.items():
        assert shapes[f"inception{name}"] == (size, size, channels), name
    assert shapes["conv1"] == (112, 112, 64)


def test_lrn_by_hand():
    """LRN divides each activation by (k + alpha * sum of squares over 5 neighbouring channels) ** beta."""
    x = np.arange(1.0, 8.0, dtype=np.float32).reshape(1, 1, 1, 7) * 10
    out = np.asarray(alexnet.local_response_norm(jnp.asarray(x), size=5, k=2.0, alpha=1e-4, beta=0.75))
    a = x[0, 0, 0]
    # channel 0 sees channels 0..2, channel 3 sees 1..5, channel 6 sees 4..6
    assert out[0, 0, 0, 0] == pytest.approx(a[0] / (2 + 1e-4 * (a[0] ** 2 + a[1] ** 2 + a[2] ** 2)) ** 0.75, rel=1e-6)
    assert out[0, 0, 0, 3] == pytest.approx(a[3] / (2 + 1e-4 * np.sum(a[1:6] ** 2)) ** 0.75, rel=1e-6)
    assert out[0, 0, 0, 6] == pytest.approx(a[6] / (2 + 1e-4 * np.sum(a[4:7] ** 2)) ** 0.75, rel=1e-6)
    # LRN has no parameters: switching it on keeps AlexNet's count
    _, variables = _trace(models.get("alexnet", num_classes=1000, lrn=True), 227)
    assert _count(variables["params"]) == ALEXNET_PARAMS


# Cheap models that really run: (name, kwargs, input size).
SMALL = {
    "resnet20": ("resnet20", {}, 32),
    "tiny_basic": ("_resnet_tiny", {}, 32),
    "tiny_bottleneck": ("_resnet_tiny", {"block": resnet.BottleneckBlock}, 16),
    "tiny_se": ("_resnet_tiny", {"block": partial(resnet.BottleneckBlock, se_reduction=4)}, 16),
    "tiny_resnext": ("_resnet_tiny", {"block": partial(resnet.BottleneckBlock, groups=2, base_width=64)}, 16),
    "mobilenet_0.25": ("mobilenet_v1", {"width": 0.25}, 32),
}


@pytest.mark.parametrize("case", ["resnet20", "tiny_basic", "mobilenet_0.25"])
def test_real_init_apply_small(case):
    """Real init + apply at 32x32: (2, 10) finite logits, equal to the traced shapes; batch_stats exist."""
    name, kwargs, size = SMALL[case]
    model = models.get(name, num_classes=10, **kwargs)
    x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    variables = _jit(model.init)(jax.random.key(0), x)
    logits = _jit(model.apply)(variables, x)
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits))
    assert "batch_stats" in variables


def test_mobilenet_width_multiplier():
    """Width 0.25 gives a quarter of the channels: 8 in the stem, 256 before the classifier."""
    _, variables = _trace(models.get("mobilenet_v1", num_classes=10, width=0.25), 32)
    params = variables["params"]
    assert params["stem_conv"]["kernel"].shape == (3, 3, 3, 8)
    # depthwise: one 3x3 filter per channel
    assert params["block0"]["dw_conv"]["kernel"].shape == (3, 3, 1, 8)
    assert params["block0"]["pw_conv"]["kernel"].shape == (1, 1, 8, 16)
    assert params["head"]["kernel"].shape == (256, 10)


@pytest.mark.parametrize(
    "case", ["tiny_basic", "tiny_bottleneck", "resnet20", "tiny_se", "tiny_resnext", "mobilenet_0.25"]
)
def test_train_steps_lower_the_loss(case):
    """Three SGD-with-momentum steps on a fixed batch of 8 (training mode, batch_stats updated) lower the loss."""
    name, kwargs, size = SMALL[case]
    model = models.get(name, num_classes=10, **kwargs)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(8, size, size, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, size=8))
    variables = _jit(model.init)(jax.random.key(0), x)
    params, batch_stats = variables["params"], variables["batch_stats"]
    tx = optax.sgd(0.05, momentum=0.9)
    opt_state = tx.init(params)

    def loss_fn(params, batch_stats):
        logits, state = model.apply(
            {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), state["batch_stats"]

    @_jit
    def step(params, batch_stats, opt_state):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    losses = []
    for _ in range(4):  # the fourth call's loss is the loss after three updates
        new_params, new_stats, opt_state, loss = step(params, batch_stats, opt_state)
        losses.append(float(loss))
        assert not jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new_stats, batch_stats))
        params, batch_stats = new_params, new_stats
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("block", [resnet.BasicBlock, resnet.BottleneckBlock])
def test_zero_init_residual(block):
    """The last BN scale of every residual branch is zero at init (the other BN scales are one)."""
    model = models.get("_resnet_tiny", num_classes=10, block=block, zero_init_residual=True)
    _, variables = _trace(model, 16)
    last = "bn2" if block is resnet.BasicBlock else "bn3"
    blocks = {k: v for k, v in variables["params"].items() if "_block" in k}
    assert len(blocks) == 3
    # eval_shape gives shapes only: init for real, it is tiny
    params = _jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    for name in blocks:
        for bn, value in params[name].items():
            if bn.startswith("bn") or bn == "proj_bn":
                expected = 0.0 if bn == last else 1.0
                np.testing.assert_array_equal(value["scale"], expected, err_msg=f"{name}/{bn}")
    # without the option, the last scale is one
    params = _jit(models.get("_resnet_tiny", num_classes=10, block=block).init)(
        jax.random.key(0), jnp.zeros((1, 16, 16, 3))
    )["params"]
    np.testing.assert_array_equal(params["stage1_block0"][last]["scale"], 1.0)


@pytest.mark.parametrize(("block", "features"), [(resnet.BasicBlock, 8), (resnet.BottleneckBlock, 2)])
@pytest.mark.parametrize("train", [False, True])
def test_zero_init_block_is_identity(block, features, train):
    """With zero_init_residual a block whose shape does not change starts as relu(x) (identity shortcut)."""
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 8))
    module = block(features, zero_init_residual=True)
    variables = module.init(jax.random.key(0), x)
    out = module.apply(variables, x, train=train, mutable=["batch_stats"])[0] if train else module.apply(variables, x)
    np.testing.assert_allclose(out, jax.nn.relu(x), atol=1e-6)


@pytest.mark.parametrize(("block", "features"), [(resnet.BasicBlock, 3), (resnet.BottleneckBlock, 1)])
@pytest.mark.parametrize("train", [False, True])
def test_option_a_shortcut_takes_the_even_pixels_and_zero_pads_channels(block, features, train):
    """Option A (He et al. 2016, section 3.3) at stride 2: the input's pixels at even rows and columns, the new
    channels zero. With zero_init_residual the branch is zero, so a block changing 4x4x1 to 2x2x3 outputs
    relu(shortcut(x)); the expected map is written out by hand from x = 1 ... 16 in raster order. Sampling the odd
    pixels instead would give 6 8 / 14 16."""
    x = jnp.arange(1.0, 17.0).reshape(1, 4, 4, 1)  # rows 1 2 3 4 / 5 6 7 8 / 9 10 11 12 / 13 14 15 16
    module = block(features, strides=2, zero_init_residual=True, shortcut="A")
    variables = module.init(jax.random.key(0), x)
    assert "proj_conv" not in variables["params"]  # no projection: option A has no parameters
    out = module.apply(variables, x, train=train, mutable=["batch_stats"])[0] if train else module.apply(variables, x)
    expected = np.zeros((1, 2, 2, features * block.expansion))
    expected[0, :, :, 0] = [[1, 3], [9, 11]]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(("output_stride", "size"), [(8, 28), (16, 14), (None, 7)])
def test_dilated_resnet50_output_stride(output_stride, size):
    """features_only returns the last feature map: 224 / output_stride (32 without dilation), 2048 channels."""
    model = models.get("dilated_resnet50", num_classes=1000, output_stride=output_stride, features_only=True)
    features, variables = _trace(model, 224)
    assert features.shape == (1, size, size, 2048)
    # the same weights as ResNet-50 without the classifier, which features_only does not build
    assert "head" not in variables["params"]
    assert _count(variables["params"]) == 25_557_032 - (2048 * 1000 + 1000)
    # default: logits from global pooling
    assert _trace(models.get("dilated_resnet50", num_classes=1000), 224)[0].shape == (1, 1000)


def test_dilated_tiny_real():
    """A tiny ImageNet-stem ResNet at 32x32: output stride 8 gives a real 4x4 map, the same weights give 1x1 at 32."""
    kwargs = {"stage_sizes": (1, 1, 1, 1), "widths": (4, 8, 16, 32), "stem": "imagenet", "features_only": True}
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    dilated = models.get("_resnet_tiny", num_classes=10, output_stride=8, **kwargs)
    plain = models.get("_resnet_tiny", num_classes=10, **kwargs)
    variables = _jit(dilated.init)(jax.random.key(0), x)
    features = _jit(dilated.apply)(variables, x)
    assert features.shape == (2, 4, 4, 32) and np.all(np.isfinite(features))
    assert _jit(plain.apply)(variables, x).shape == (2, 1, 1, 32)  # same parameters, no dilation
    with pytest.raises(ValueError, match="output_stride"):
        _trace(models.get("_resnet_tiny", num_classes=10, output_stride=2, **kwargs), 32)


def test_squeeze_excite_by_hand():
    """The SE gate is sigmoid(W2 relu(W1 mean_hw(x) + b1) + b2), one per channel, multiplying x."""
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype(np.float32)
    se = resnet.SqueezeExcite(reduction=2)
    w1 = np.array([[1.0, -1.0], [0.5, 0.0], [0.0, 2.0], [-1.0, 1.0]], np.float32)
    b1 = np.array([0.1, -0.2], np.float32)
    w2 = np.array([[1.0, 0.0, -1.0, 2.0], [0.5, -0.5, 1.0, 0.0]], np.float32)
    b2 = np.array([0.0, 0.1, -0.1, 0.2], np.float32)
    params = {"fc1": {"kernel": w1, "bias": b1}, "fc2": {"kernel": w2, "bias": b2}}
    assert jax.tree.map(np.shape, se.init(jax.random.key(0), x)["params"]) == jax.tree.map(np.shape, params)
    out = np.asarray(se.apply({"params": params}, x))
    squeeze = x.mean(axis=(1, 2))  # (2, 4)
    gate = 1 / (1 + np.exp(-(np.maximum(squeeze @ w1 + b1, 0) @ w2 + b2)))
    np.testing.assert_allclose(out, x * gate[:, None, None, :], rtol=1e-5, atol=1e-6)
    # zero weights and biases: every gate is sigmoid(0) = 1/2
    zeros = jax.tree.map(np.zeros_like, params)
    np.testing.assert_allclose(se.apply({"params": zeros}, x), x / 2, rtol=1e-6)


def test_resnext_grouped_conv_and_se_shapes():
    """ResNeXt-50's first 3x3 is 128 wide in 32 groups of 4; SE-ResNet-50's first SE squeezes 256 -> 16."""
    params = _trace(models.get("resnext50_32x4d", num_classes=1000), 224)[1]["params"]
    assert params["stage1_block0"]["conv2"]["kernel"].shape == (3, 3, 4, 128)
    assert params["stage4_block0"]["conv2"]["kernel"].shape == (3, 3, 32, 1024)
    params = _trace(models.get("se_resnet50", num_classes=1000), 224)[1]["params"]
    assert params["stage1_block0"]["se"]["fc1"]["kernel"].shape == (256, 16)
    assert params["stage4_block2"]["se"]["fc2"]["kernel"].shape == (128, 2048)
