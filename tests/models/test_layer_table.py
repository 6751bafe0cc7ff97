"""Layer tables and receptive fields against hand arithmetic and published figures (papers, Distill)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from experiments import digits_cnn
from mlcv import models
from mlcv.models import layer_table as summary


class _Tiny(nn.Module):
    """conv 3x3 s1 p1 x8 on 8x8x1 -> max pool 2 -> dense 10."""

    @nn.compact
    def __call__(self, x, *, train=False):
        x = nn.relu(nn.Conv(8, (3, 3), padding=1, name="conv")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        return nn.Dense(10, name="fc")(x.reshape((x.shape[0], -1)))


def test_tiny_model_rows_by_hand():
    rows = summary.layer_table(_Tiny(), (8, 8, 1), batch_size=2)
    assert [(r.name, r.type, r.out_shape) for r in rows] == [
        ("input", "Input", (8, 8, 1)),
        ("conv", "Conv", (8, 8, 8)),
        ("max_pool1", "MaxPool", (4, 4, 8)),
        ("fc", "Dense", (10,)),
    ]
    _, conv, pool, fc = rows
    assert (conv.kernel, conv.stride, conv.padding, conv.dilation, conv.groups, conv.features) == (
        (3, 3), (1, 1), "1", (1, 1), 1, 8,
    )  # fmt: skip
    assert conv.params == 3 * 3 * 1 * 8 + 8 == 80
    assert conv.flops == 2 * (3 * 3 * 1) * 8 * (8 * 8) == 9216  # multiply-adds x 2, bias adds not counted
    assert (pool.kernel, pool.stride, pool.padding, pool.params, pool.flops) == ((2, 2), (2, 2), "0", 0, 0)
    assert fc.params == 4 * 4 * 8 * 10 + 10 == 1290
    assert fc.flops == 2 * 128 * 10 == 2560
    assert [r.activations for r in rows] == [64, 512, 128, 10]
    assert [r.activation_bytes for r in rows] == [64 * 4 * 2, 512 * 4 * 2, 128 * 4 * 2, 10 * 4 * 2]
    assert [r.receptive_field for r in rows] == [(1, 1), (3, 3), (4, 4), None]  # pool: 3 + (2 - 1) * 1
    t = summary.totals(rows)
    assert (t.params, t.param_bytes, t.batch_size) == (1370, 1370 * 4, 2)
    assert t.flops == 2 * (9216 + 2560) == 23552  # per example times the batch of 2
    assert t.activation_bytes == (64 + 512 + 128 + 10) * 4 * 2 == 5712
    text = summary.format_table(rows, t)
    assert "| conv | Conv | 8x8x8 | 3 | 1 | 1 | 1 | 1 | 3 |" in text and "1,370 parameters" in text


class _Branchy(nn.Module):
    """Inception-style concat, a residual add, a grouped strided conv, a dilated conv and global pooling."""

    @nn.compact
    def __call__(self, x, *, train=False):
        a = nn.Conv(4, (1, 1), name="b1x1")(x)  # RF 1
        b = nn.Conv(4, (5, 5), name="b5x5")(x)  # RF 5
        x = jnp.concatenate([a, b], axis=-1)  # the longest path: 5
        y = nn.Conv(8, (3, 3), name="res")(x)  # 7
        x = nn.BatchNorm(use_running_average=not train, name="bn")(x + y)  # add: max(5, 7) = 7
        x = nn.Conv(16, (3, 3), strides=2, feature_group_count=4, name="grouped")(x)  # 9, jump 2
        x = nn.Conv(16, (3, 3), kernel_dilation=2, name="dilated")(x)  # 9 + 2 * 2 * 2 = 17
        return nn.Dense(3, name="head")(jnp.mean(x, axis=(1, 2)))


def test_branching_model_groups_dilation_and_longest_path():
    rows = {r.name: r for r in summary.layer_table(_Branchy(), (8, 8, 3))}
    assert list(rows) == ["input", "b1x1", "b5x5", "res", "bn", "grouped", "dilated", "global_avg_pool1", "head"]
    rf = {n: r.receptive_field for n, r in rows.items()}
    assert rf == {
        "input": (1, 1), "b1x1": (1, 1), "b5x5": (5, 5), "res": (7, 7), "bn": (7, 7),
        "grouped": (9, 9), "dilated": (17, 17), "global_avg_pool1": None, "head": None,
    }  # fmt: skip
    g = rows["grouped"]
    assert (g.out_shape, g.groups, g.stride) == ((4, 4, 16), 4, (2, 2))
    assert g.params == 3 * 3 * (8 // 4) * 16 + 16 == 304
    assert g.flops == 2 * 3 * 3 * (8 // 4) * 16 * (4 * 4) == 9216  # C_in / groups inputs per output
    assert rows["dilated"].dilation == (2, 2)
    assert rows["bn"].params == 2 * 8 and rows["bn"].flops == 0  # scale + bias; running stats are not parameters
    assert rows["global_avg_pool1"].out_shape == (1, 1, 16)


class _Scale(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x * self.param("s", nn.initializers.ones, (x.shape[-1],))


class _Odd(nn.Module):
    """A transposed conv, a custom layer with its own parameter, a conv called twice, average pooling."""

    @nn.compact
    def __call__(self, x, *, train=False):
        x = _Scale(name="scale")(nn.ConvTranspose(2, (3, 3), strides=(2, 2), name="up")(x))
        shared = nn.Conv(2, (3, 3), name="shared")
        x = nn.avg_pool(shared(shared(x)), (2, 2), (2, 2))
        return nn.LayerNorm(name="ln")(x)


def test_transposed_shared_and_custom_layers():
    rows = summary.layer_table(_Odd(), (4, 4, 4))
    got = [(r.name, r.type, r.out_shape, r.params, r.flops) for r in rows]
    assert got == [
        ("input", "Input", (4, 4, 4), 0, 0),
        ("up", "ConvTranspose", (8, 8, 2), 3 * 3 * 4 * 2 + 2, 2 * (3 * 3 * 4 * 2) * (4 * 4)),  # per input pixel
        ("scale", "_Scale", (8, 8, 2), 2, 0),
        ("shared", "Conv", (8, 8, 2), 3 * 3 * 2 * 2 + 2, 2 * (3 * 3 * 2 * 2) * (8 * 8)),
        ("shared", "Conv", (8, 8, 2), 0, 2 * (3 * 3 * 2 * 2) * (8 * 8)),  # parameters once, FLOPs per call
        ("avg_pool1", "AvgPool", (4, 4, 2), 0, 0),
        ("ln", "LayerNorm", (4, 4, 2), 2 + 2, 0),
    ]
    assert summary.totals(rows).params == 74 + 2 + 38 + 4


class _Block(nn.Module):
    """Two branches concatenated: a 1x1 conv and a 3x3/1 max-pool."""

    @nn.compact
    def __call__(self, x):
        pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding="SAME")
        return jnp.concatenate([nn.Conv(4, (1, 1), name="b1")(x), pooled], axis=-1)


class _Blocks(nn.Module):
    """A 'SAME' strided conv, a block, a max-pool, a block without bias, a head."""

    @nn.compact
    def __call__(self, x, *, train=False):
        x = _Block(name="block1")(nn.Conv(2, (7, 7), strides=(2, 2), padding="SAME", name="stem")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        x = _Block(name="block2")(x)
        return nn.Dense(3, use_bias=False, name="head")(x.reshape((x.shape[0], -1)))


def test_collapsed_modules_padding_pixels_and_bias_adds():
    rows = summary.layer_table(_Blocks(), (16, 16, 3), batch_size=2)
    names = [r.name for r in rows]  # pools numbered within the module that pools
    assert names == [
        "input",
        "stem",
        "block1/max_pool1",
        "block1/b1",
        "max_pool1",
        "block2/max_pool1",
        "block2/b1",
        "head",
    ]
    stem = rows[1]
    assert (stem.padding, stem.pads, stem.in_shape) == ("SAME", "2,3", (16, 16, 3))  # (8 - 1) * 2 + 7 - 16 = 5
    assert rows[4].pads == "0,1" and rows[4].in_shape == (8, 8, 6)  # pooling pads are explicit already
    assert [r.bias_adds for r in rows] == [0, 8 * 8 * 2, 0, 8 * 8 * 4, 0, 0, 4 * 4 * 4, 0]  # head: no bias
    collapsed = summary.layer_table(_Blocks(), (16, 16, 3), batch_size=2, collapse=("_Block",))
    assert [(r.name, r.type, r.out_shape) for r in collapsed] == [
        ("input", "Input", (16, 16, 3)),
        ("stem", "Conv", (8, 8, 2)),
        ("block1", "_Block", (8, 8, 6)),  # 4 conv channels + the 2 pooled
        ("max_pool1", "MaxPool", (4, 4, 6)),
        ("block2", "_Block", (4, 4, 10)),
        ("head", "Dense", (3,)),
    ]
    block1 = collapsed[2]
    assert (block1.params, block1.flops, block1.bias_adds) == (2 * 4 + 4, 2 * (2 * 4) * 64, 64 * 4)
    assert (block1.activation_bytes, block1.in_shape) == (8 * 8 * 6 * 4 * 2, (8, 8, 2))
    assert summary.totals(collapsed).params == summary.totals(rows).params


def test_receptive_field_known_answers():
    assert summary.receptive_field([(3, 1, 1)] * 3) == [3, 5, 7]
    assert summary.receptive_field([(7, 2), (3, 2)]) == [7, 11]  # 7 + (3 - 1) * 2
    assert summary.receptive_field([(3, 1, 1), (3, 1, 2), (3, 1, 4)]) == [3, 7, 15]  # 1 + 2 * (1 + 2 + 4)
    # VGG-16 (3x3 s1 convs, 2x2 s2 pools): 2 convs, pool: 3, 5, 6 (jump 2); 2 convs: 10, 14, pool 16 (jump 4);
    # 3 convs: 24, 32, 40, pool 44 (jump 8); 3 convs: 60, 76, 92, pool 100 (jump 16); conv5_1-3: 132, 164, 196.
    vgg = []
    for convs in (2, 2, 3, 3, 3):
        vgg += [(3, 1, 1)] * convs + [(2, 2, 1)]
    assert summary.receptive_field(vgg[:-1])[-1] == 196  # conv5_3, the published figure


class _GroupedAlexNet(nn.Module):
    """The paper's two-tower AlexNet as one network: conv2, conv4, conv5 see half the channels (groups=2)."""

    @nn.compact
    def __call__(self, x, *, train=False):
        spec = [(96, 11, 4, 0, 1), (256, 5, 1, 2, 2), (384, 3, 1, 1, 1), (384, 3, 1, 1, 2), (256, 3, 1, 1, 2)]
        for i, (f, k, s, p, g) in enumerate(spec):
            x = nn.relu(nn.Conv(f, (k, k), s, p, feature_group_count=g, name=f"conv{i + 1}")(x))
            if i in (0, 1, 4):
                x = nn.max_pool(x, (3, 3), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        for name, units in (("fc6", 4096), ("fc7", 4096), ("fc8", 1000)):
            x = nn.Dense(units, name=name)(x)
        return x


# Single-tower AlexNet at 227x227, multiply-adds by hand: K*K*C_in*C_out*H*W per conv, in*out per fc.
_ALEXNET_MACS = (
    11 * 11 * 3 * 96 * 55 * 55  # conv1   105,415,200
    + 5 * 5 * 96 * 256 * 27 * 27  # conv2 447,897,600
    + 3 * 3 * 256 * 384 * 13 * 13  # conv3 149,520,384
    + 3 * 3 * 384 * 384 * 13 * 13  # conv4 224,280,576
    + 3 * 3 * 384 * 256 * 13 * 13  # conv5 149,520,384
    + 9216 * 4096
    + 4096 * 4096
    + 4096 * 1000  # fc6-8 58,621,952
)


def test_two_tower_alexnet_by_hand():
    """Krizhevsky et al.'s two-tower AlexNet as one net with groups=2 in conv2, conv4, conv5, at 227x227: those
    convs see half the channels, so they cost half; 724 M mult-adds and 60,965,224 parameters by hand. (The course
    gives 1.136 G mult-adds for the single-tower net: tests/models/test_course_tables.py.)"""
    t = summary.totals(summary.layer_table(_GroupedAlexNet(), (227, 227, 3)))
    halved = (5 * 5 * 96 * 256 * 27 * 27 + 3 * 3 * 384 * 384 * 13 * 13 + 3 * 3 * 384 * 256 * 13 * 13) // 2
    assert t.flops == 2 * (_ALEXNET_MACS - halved) == 2 * 724_406_816
    assert t.params == 62_378_344 - (5 * 5 * 96 * 256 + 3 * 3 * 384 * 384 + 3 * 3 * 384 * 256) // 2 == 60_965_224


def _registered(name: str) -> None:
    if name not in models.names():
        pytest.skip(f"model {name!r} is not registered yet")


def _totals(model, size: int) -> summary.Totals:
    rows = summary.layer_table(model, (size, size, 3))
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), jnp.zeros((1, size, size, 3)))
    assert sum(r.params for r in rows) == sum(a.size for a in jax.tree.leaves(variables["params"]))
    return summary.totals(rows)


def test_single_tower_alexnet_at_227_by_hand():
    """The paper's 227x227 input without conv1 padding: 55x55 after conv1, the multiply-adds of _ALEXNET_MACS."""
    _registered("alexnet")
    model = models.get("alexnet", num_classes=1000, conv1=(11, 4, 0))
    rows = {r.name: r for r in summary.layer_table(model, (227, 227, 3))}
    assert rows["conv1"].params == 11 * 11 * 3 * 96 + 96 == 34_944
    assert rows["conv1"].out_shape == (55, 55, 96)  # (227 - 11) / 4 + 1 = 55
    assert rows["fc6"].params == 6 * 6 * 256 * 4096 + 4096 == 37_752_832
    t = summary.totals(list(rows.values()))
    assert t.params == 62_378_344  # by hand in tests/models/test_course_tables.py (224x224, padding 2: the same)
    assert t.flops == 2 * _ALEXNET_MACS == 2 * 1_135_256_096  # bias adds not counted (the course's 1.136 G does)


def test_vgg16_totals_by_hand():
    """VGG-16 (configuration D) at 224x224: 138,357,544 parameters (Simonyan & Zisserman 2015, Table 2: 138 M)."""
    _registered("vgg16")
    t = _totals(models.get("vgg16", num_classes=1000), 224)
    convs = [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56), (256, 256, 56)]
    convs += [(256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 28)] + [(512, 512, 14)] * 3
    fcs = [(7 * 7 * 512, 4096), (4096, 4096), (4096, 1000)]
    assert t.params == sum(9 * i * o + o for i, o, _ in convs) + sum(i * o + o for i, o in fcs) == 138_357_544
    macs = sum(9 * i * o * s * s for i, o, s in convs) + sum(i * o for i, o in fcs)
    assert t.flops == 2 * macs == 2 * 15_470_264_320  # 15.35 G in the convs + 0.12 G in the fcs


# Szegedy et al. 2015, Table 1, ops column (M multiply-adds an image) as printed, conv1 to linear.
TABLE1_OPS = {"conv1": 34, "conv2": 360, "3a": 128, "3b": 304, "4a": 73, "4b": 88, "4c": 100, "4d": 119, "4e": 170}
TABLE1_OPS |= {"5a": 54, "5b": 71, "linear": 1}


def test_googlenet_against_table1_ops_column():
    """GoogLeNet's multiply-adds against the paper's ops column, once its two errata are corrected.

    The column sums to 1,502 M; its conv1 34M should be 7*7*3*64 * 112*112 = 118 M and its 5a 54M 51 M
    (tests/models/test_course_tables.py pins both and checks every other row), giving 1,583 M. mlcv counts the
    weights' multiply-adds (bias adds left out, as Table 1 does), within the rounding of the 12 printed rows.
    """
    _registered("googlenet")
    t = _totals(models.get("googlenet", num_classes=1000), 224)
    assert t.params == 6_998_552  # with biases and the 1000-way fc, no auxiliary heads: by hand in test_course_tables
    assert sum(TABLE1_OPS.values()) == 1502
    corrected = sum(TABLE1_OPS.values()) - 34 + 118 - 54 + 51
    assert abs(t.flops / 2 / 1e6 - corrected) < len(TABLE1_OPS)  # each printed figure within 1 M of its row
    assert t.flops == 2 * 1_582_671_872


def test_resnet18_params():
    _registered("resnet18")
    # 11,689,512 at 1000 classes (He et al. 2016; torchvision). A CIFAR stem (3x3 conv, no max-pool) differs
    # by 7,680 parameters only; FLOPs depend on the stem, so they are not checked here.
    assert _totals(models.get("resnet18", num_classes=1000), 224).params == pytest.approx(11.69e6, rel=0.01)


# Araujo, Norris & Sim, "Computing receptive fields of convolutional neural networks" (Distill 2019): AlexNet 195,
# VGG-16 212 (pool5; conv5_3 196, above), MobileNet v1 315. Their ResNet-50 (TF-slim, stride in each stage's last
# unit) is 483; with the stride in the first block's 3x3 conv (torchvision v1.5, as here) by hand: stem 7x7/2 -> 7,
# pool 3/2 -> 11 (jump 4); stage 1: 3 x 2*4 -> 35; stage 2: 8 + 3 x 16 -> 91 (jump 8); stage 3: 16 + 5 x 32 -> 267
# (jump 16); stage 4: 32 + 2 x 64 -> 427.
@pytest.mark.parametrize("name,rf", [("alexnet", 195), ("vgg16", 212), ("mobilenet_v1", 315), ("resnet50", 427)])
def test_receptive_field_column_published_figures(name, rf):
    _registered(name)
    rows = summary.layer_table(models.get(name, num_classes=1000), (224, 224, 3))
    assert max(r.receptive_field for r in rows if r.receptive_field) == (rf, rf)


# The layer table traces one input: the two-view networks (stereo, flow, MC-CNN's patch pairs) are left out.
TWO_INPUTS = {"mccnn_fast", "mccnn_accurate", "dispnet_c", "flownet_c", "gcnet"}
NO_CLASSES = {"monodepth"}  # one image in, disparities out


@pytest.mark.parametrize("name", sorted(set(models.names()) - TWO_INPUTS))
def test_every_registered_model_rows_sum_to_its_parameters(name):
    model = models.get(name) if name in NO_CLASSES else models.get(name, num_classes=10)
    _totals(model, 224)  # abstract: no memory or FLOPs spent, even at 224x224


def test_run_writes_the_table(tmp_path, monkeypatch):
    """The table of an experiment's model comes from the dataset's declared features: no record is read."""
    from mlcv import data
    from mlcv.orchestration import layers

    def no_reading(*args, **kwargs):
        raise AssertionError("the layer table read the dataset")

    monkeypatch.setattr(data, "source", no_reading)
    table = layers.run(digits_cnn.get_config("runlocal"), str(tmp_path / "wd"))
    assert (tmp_path / "wd" / "layers.md").read_text() == table
    assert "input 8x8x1" in table and "| head | Dense | 10 |" in table
    override = layers.run(digits_cnn.get_config("runlocal"), str(tmp_path / "wd2"), input_shape=(16, 16, 1))
    assert "input 16x16x1" in override and "| stage0_conv0 | Conv | 16x16x" in override
