"""Tests of mlcv.models: output shapes, parameter counts by hand, a few SGD steps, and the registry."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mlcv import models
from mlcv.config import ConfigError

# Parameter counts of each model's default config on (N, 8, 8, 1) inputs and 10 classes, by hand.
LINEAR_PARAMS = 64 * 10 + 10  # W (64 x 10) + b = 650
MLP_PARAMS = 64 * 128 + 128 + 128 * 10 + 10  # hidden0 + head = 9610
CNN_PARAMS = (
    # stage 0 (8x8 -> pool -> 4x4): two 3x3 convs without bias (norm batch), BN scale + bias per channel
    3 * 3 * 1 * 32
    + 2 * 32
    + 3 * 3 * 32 * 32
    + 2 * 32
    # stage 1 (4x4 -> pool -> 2x2)
    + 3 * 3 * 32 * 64
    + 2 * 64
    + 3 * 3 * 64 * 64
    + 2 * 64
    # fc on the flattened 2 * 2 * 64 = 256 features, then the head
    + 256 * 128
    + 128
    + 128 * 10
    + 10
)  # = 99370
EXPECTED_PARAMS = {"linear": LINEAR_PARAMS, "mlp": MLP_PARAMS, "cnn": CNN_PARAMS}
# The small models tested here on 8x8 inputs; the image-classification zoo is tested in test_zoo.py.
SMALL_MODELS = ["cnn", "linear", "mlp"]


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_names():
    """The registry holds the three small models (and the zoo, tested in test_zoo.py)."""
    assert set(SMALL_MODELS) <= set(models.names())
    assert (LINEAR_PARAMS, MLP_PARAMS, CNN_PARAMS) == (650, 9610, 99370)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_init_shape_and_param_count(name):
    """Init on (2, 8, 8, 1) with 10 classes gives (2, 10) logits and the hand-counted number of parameters."""
    model = models.get(name, num_classes=10)
    x = jnp.zeros((2, 8, 8, 1), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    assert _count(variables["params"]) == EXPECTED_PARAMS[name]
    out = jax.jit(model.apply)(variables, x)
    assert out.shape == (2, 10)
    if name == "cnn":
        # running mean and variance for each of the 32 + 32 + 64 + 64 BN channels
        assert _count(variables["batch_stats"]) == 2 * (32 + 32 + 64 + 64)
    else:
        assert set(variables) == {"params"}


def _train_losses(model, variables, x, y, steps=5):
    """Loss on the batch before each of `steps` SGD(0.1) steps and after the last, in training mode."""
    params = variables["params"]
    extra = {k: v for k, v in variables.items() if k != "params"}
    mutable = list(extra)
    tx = optax.sgd(0.1)
    opt_state = tx.init(params)

    def loss_fn(params, extra, rng):
        variables = {"params": params, **extra}
        if mutable:
            logits, new_extra = model.apply(variables, x, train=True, mutable=mutable, rngs={"dropout": rng})
        else:
            logits, new_extra = model.apply(variables, x, train=True, rngs={"dropout": rng}), {}
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_extra

    @jax.jit
    def step(params, extra, opt_state, rng):
        (loss, new_extra), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, extra, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), {**extra, **new_extra}, opt_state, loss

    values = []
    for i in range(steps + 1):  # the extra step's loss is the loss after `steps` updates
        params, extra, opt_state, loss = step(params, extra, opt_state, jax.random.key(i))
        values.append(float(loss))
    return values


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_sgd_steps_lower_the_loss(name):
    """Five SGD steps (lr 0.1, cross-entropy) on a fixed random batch of 16 lower the loss."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(16, 8, 8, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, size=16))
    model = models.get(name, num_classes=10)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    values = _train_losses(model, variables, x, y)
    assert all(np.isfinite(values))
    assert values[-1] < 0.9 * values[0], values


def _conv3x3_relu_pool_numpy(x, kernel, bias):
    """3x3 cross-correlation with zero 'SAME' padding, bias, ReLU, 2x2 max pooling of stride 2, flattened (H, W, C)."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = sum(padded[:, i : i + h, j : j + w] @ kernel[i, j] for i in range(3) for j in range(3)) + bias
    act = np.maximum(conv, 0.0)
    pooled = act.reshape(n, h // 2, 2, w // 2, 2, -1).max(axis=(2, 4))
    return pooled.reshape(n, -1)


def test_cnn_with_dropout_and_without_normalization():
    """The CNN without batch norm has conv biases and no batch_stats. Expected values from numpy: at test the
    logits are a numpy conv + bias + ReLU + max pool + dense head on the initialised parameters; in training the
    dropout layer (rate 0.5, seen with capture_intermediates) keeps each unit as 0 or x / (1 - 0.5), zeroes about
    half of the 878 units ReLU left alive (binomial: 0.5 +- 0.1 is about six standard deviations, 0.017 each), and
    the head reads that layer's output."""
    rate = 0.5
    model = models.get("cnn", num_classes=3, features=(4,), convs_per_stage=1, dense=0, dropout=rate, norm="none")
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype(np.float32)
    variables = model.init(jax.random.key(0), jnp.asarray(x))
    assert set(variables) == {"params"}
    # conv 3*3*1*4 + 4 bias; pool 8 -> 4; head on 4*4*4 = 64 features: 64*3 + 3
    assert _count(variables["params"]) == 3 * 3 * 1 * 4 + 4 + 64 * 3 + 3
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    features = _conv3x3_relu_pool_numpy(x.astype(np.float64), p["stage0_conv0"]["kernel"], p["stage0_conv0"]["bias"])

    def head(f):
        return f @ p["head"]["kernel"] + p["head"]["bias"]

    np.testing.assert_allclose(model.apply(variables, x), head(features), rtol=1e-5, atol=1e-5)
    masks = []
    for seed in (1, 2):
        logits, state = model.apply(
            variables, x, train=True, rngs={"dropout": jax.random.key(seed)}, capture_intermediates=True
        )
        dropped = np.asarray(state["intermediates"]["Dropout_0"]["__call__"][0], np.float64)
        live = features > 1e-6  # units that ReLU left at 0 stay 0 either way
        kept = np.isclose(dropped, features / (1 - rate), rtol=1e-5)
        assert np.all(kept[live] | (dropped[live] == 0)) and np.all(np.abs(dropped[~live]) < 1e-5)
        assert abs(1 - kept[live].mean() - rate) < 0.1, kept[live].mean()
        np.testing.assert_allclose(logits, head(dropped), rtol=1e-5, atol=1e-5)
        masks.append(kept[live])
    assert (masks[0] != masks[1]).any()  # another rng, another mask


def test_cnn_layer_norm_by_hand():
    """norm="layer": per example, mean and variance over all H x W x C units (course section 6.2), then a scale
    and shift per channel; the same in training and at test, and no example sees another's statistics."""
    model = models.get("cnn", num_classes=2, features=(2,), convs_per_stage=1, dense=0, norm="layer")
    x = jnp.zeros((2, 2, 2, 1), jnp.float32)
    variables = model.init(jax.random.key(0), x)
    assert set(variables) == {"params"}  # no running statistics
    # conv 3*3*1*2 + 2 (a bias: layer norm keeps it), LN scale + shift per channel 2 + 2, head (1*1*2)*2 + 2
    assert _count(variables["params"]) == 18 + 2 + 4 + 6
    params = jax.tree.map(np.asarray, variables["params"])
    # A kernel that copies the pixel into channel 0 and doubles it into channel 1 (centre tap only), bias (0, 1).
    kernel = np.zeros((3, 3, 1, 2), np.float32)
    kernel[1, 1, 0] = (1.0, 2.0)
    params["stage0_conv0"] = {"kernel": kernel, "bias": np.array([0.0, 1.0], np.float32)}
    params["stage0_ln0"] = {"scale": np.array([1.0, 2.0], np.float32), "bias": np.array([0.0, 0.5], np.float32)}
    image = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    batch = jnp.asarray(np.stack([image, 10 * image])[..., None])
    _, state = model.apply({"params": params}, batch, capture_intermediates=True)
    ln = np.asarray(state["intermediates"]["stage0_ln0"]["__call__"][0])
    # Example 0: channel 0 = 1, 2, 3, 4; channel 1 = 2x + 1 = 3, 5, 7, 9. Mean of the 8 units 4.25,
    # variance (3.25^2 + 2.25^2 + 1.25^2 + 0.25^2 + 1.25^2 + 0.75^2 + 2.75^2 + 4.75^2) / 8 = 49.5 / 8 = 6.1875.
    sd = np.sqrt(6.1875 + 1e-5)
    np.testing.assert_allclose(ln[0, ..., 0].ravel(), (np.array([1, 2, 3, 4]) - 4.25) / sd, rtol=1e-5)
    np.testing.assert_allclose(ln[0, ..., 1].ravel(), 2 * (np.array([3, 5, 7, 9]) - 4.25) / sd + 0.5, rtol=1e-5)
    # Example 1 (x10): channel 0 = 10..40, channel 1 = 21, 41, 61, 81; mean 304 / 8 = 38, variance
    # (28^2 + 18^2 + 8^2 + 2^2 + 17^2 + 3^2 + 23^2 + 43^2) / 8 = 3852 / 8 = 481.5.
    sd1 = np.sqrt(481.5 + 1e-5)
    np.testing.assert_allclose(ln[1, ..., 0].ravel(), (np.array([10, 20, 30, 40]) - 38) / sd1, rtol=1e-5)
    alone = model.apply({"params": params}, batch[:1], train=True, capture_intermediates=True)[1]
    np.testing.assert_allclose(alone["intermediates"]["stage0_ln0"]["__call__"][0], ln[:1], rtol=1e-6)


def test_resnet_layer_norm_option():
    """ResNet norm="layer": the stem's norm is each example's (x - mean) / sqrt(var + 1e-5) over H x W x C, by
    numpy; the parameters of the batch-norm model, renamed, with no batch statistics; a few steps lower the loss."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 3)), jnp.float32)
    y = jnp.asarray([0, 1])
    bn = models.get("_resnet_tiny", num_classes=2, stem="cifar")
    ln = models.get("_resnet_tiny", num_classes=2, stem="cifar", norm="layer")
    vb, vl = bn.init(jax.random.key(0), x), ln.init(jax.random.key(0), x)
    assert set(vl) == {"params"} and "batch_stats" in vb
    assert _count(vl["params"]) == _count(vb["params"])
    assert "stem_ln" in vl["params"] and "ln1" in vl["params"]["stage1_block0"]
    _, state = ln.apply(vl, x, capture_intermediates=True)
    conv = np.asarray(state["intermediates"]["stem_conv"]["__call__"][0], np.float64)
    mean = conv.mean(axis=(1, 2, 3), keepdims=True)
    var = ((conv - mean) ** 2).mean(axis=(1, 2, 3), keepdims=True)
    got = np.asarray(state["intermediates"]["stem_ln"]["__call__"][0])
    np.testing.assert_allclose(got, (conv - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)  # scale 1, shift 0
    values = _train_losses(ln, vl, x, y)
    assert values[-1] < 0.9 * values[0], values


def test_mlp_sigmoid_runs():
    """An MLP with sigmoid hidden units and two hidden layers gives finite (2, 10) logits and the hand count."""
    model = models.get("mlp", num_classes=10, hidden=(16, 8), activation="sigmoid")
    x = jnp.ones((2, 8, 8, 1), jnp.float32)
    variables = model.init(jax.random.key(0), x)
    assert _count(variables["params"]) == 64 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10
    out = model.apply(variables, x)
    assert out.shape == (2, 10) and np.all(np.isfinite(out))
    # sigmoid differs from the default relu for the same weights
    relu = models.get("mlp", num_classes=10, hidden=(16, 8))
    assert not np.allclose(out, relu.apply(variables, x))


def test_linear_is_affine():
    """The linear model's logits are x_flat @ W + b with its own parameters."""
    model = models.get("linear", num_classes=3)
    x = np.random.default_rng(0).normal(size=(2, 2, 2, 1)).astype(np.float32)
    variables = model.init(jax.random.key(0), x)
    w = np.asarray(variables["params"]["head"]["kernel"])
    b = np.asarray(variables["params"]["head"]["bias"])
    np.testing.assert_allclose(model.apply(variables, x), x.reshape(2, 4) @ w + b, rtol=1e-5, atol=1e-6)


def test_get_unknown_lists_names():
    """An unknown model name raises ConfigError naming it and listing every model."""
    with pytest.raises(ConfigError, match="'nope'") as info:
        models.get("nope", num_classes=10)
    for name in models.names():
        assert name in str(info.value)


def test_get_bad_kwarg_raises():
    """An argument the model does not take raises ConfigError naming the model."""
    with pytest.raises(ConfigError, match="'mlp'"):
        models.get("mlp", num_classes=10, depth=3)
    with pytest.raises(ConfigError, match="'linear'"):
        models.get("linear")  # num_classes is required


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_dropout_off_at_eval_and_unbiased_in_training(name):
    """Eval ignores dropout (equals the dropout-free model); training masks vary and average to the eval output."""
    kwargs = {"hidden": (64,)} if name == "mlp" else {"norm": "none"}
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    with_dropout = models.get(name, num_classes=3, dropout=0.5, **kwargs)
    without = models.get(name, num_classes=3, dropout=0.0, **kwargs)
    variables = with_dropout.init(jax.random.key(0), x)
    eval_out = with_dropout.apply(variables, x, train=False)
    np.testing.assert_allclose(eval_out, without.apply(variables, x, train=False), rtol=1e-6)

    def train_out(key):
        return with_dropout.apply(variables, x, train=True, rngs={"dropout": key})

    outs = jax.vmap(train_out)(jax.random.split(jax.random.key(2), 4000))
    assert float(jnp.abs(outs[0] - outs[1]).max()) > 0  # masks differ between keys
    # Inverted dropout keeps units with probability 1/2 and scales them by 2, so the mean output is unchanged.
    np.testing.assert_allclose(outs.mean(0), eval_out, atol=0.05 * float(jnp.abs(eval_out).max()) + 1e-3)
