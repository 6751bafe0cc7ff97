"""Layer tables and receptive fields against hand arithmetic and the course's published figures."""

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


def test_grouped_alexnet_is_the_courses_0_72_g_mult_adds():
    """The course's ~0.72 G mult-adds and ~61 M params are the grouped (two-GPU) AlexNet: the grouped convs halve."""
    t = summary.totals(summary.layer_table(_GroupedAlexNet(), (227, 227, 3)))
    halved = (5 * 5 * 96 * 256 * 27 * 27 + 3 * 3 * 384 * 384 * 13 * 13 + 3 * 3 * 384 * 256 * 13 * 13) // 2
    assert t.flops == 2 * (_ALEXNET_MACS - halved) == 2 * 724_406_816
    assert t.params == 60_965_224


def _registered(name: str) -> None:
    if name not in models.names():
        pytest.skip(f"model {name!r} is not registered yet")


def _totals(model, size: int) -> summary.Totals:
    rows = summary.layer_table(model, (size, size, 3))
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), jnp.zeros((1, size, size, 3)))
    assert sum(r.params for r in rows) == sum(a.size for a in jax.tree.leaves(variables["params"]))
    return summary.totals(rows)


def test_alexnet_course_table():
    _registered("alexnet")
    try:  # the paper's 55x55 conv1 needs 227x227 inputs and no padding (see mlcv/models/alexnet.py)
        model = models.get("alexnet", num_classes=1000, conv1=(11, 4, 0))
    except Exception:
        model = models.get("alexnet", num_classes=1000)
    rows = {r.name: r for r in summary.layer_table(model, (227, 227, 3))}
    assert rows["conv1"].params == 11 * 11 * 3 * 96 + 96 == 34_944
    assert rows["conv1"].out_shape == (55, 55, 96)  # (227 - 11) / 4 + 1 = 55
    assert rows["fc6"].params == 6 * 6 * 256 * 4096 + 4096 == 37_752_832
    t = summary.totals(list(rows.values()))
    assert t.params == pytest.approx(62.4e6, rel=0.01)  # 62,378,344: one tower (the paper's two: 60,965,224)
    assert t.flops == pytest.approx(2 * _ALEXNET_MACS, rel=0.01)  # 1.135 G mult-adds; grouped: 0.72 G (above)


def test_vgg16_course_table():
    _registered("vgg16")
    t = _totals(models.get("vgg16", num_classes=1000), 224)
    assert t.params == pytest.approx(138.36e6, rel=0.01)  # 138,357,544 (Simonyan & Zisserman Table 2: 138 M)
    assert t.flops == pytest.approx(2 * 15.47e9, rel=0.01)  # 15.35 G in the convs + 0.12 G in the fcs


def test_googlenet_course_table():
    _registered("googlenet")
    t = _totals(models.get("googlenet", num_classes=1000), 224)
    # Szegedy et al. 2015 Table 1 with biases and the 1000-way fc, no auxiliary heads: 6,998,552 parameters
    # (BatchNorm instead of biases adds < 0.2 %). Its "1.5 G" ops column sums to 1.502 G but lists conv1 as 34 M
    # where 7*7*3*64*112*112 = 118 M; counted in full, convs + fc are 1.583 G mult-adds.
    assert t.params == pytest.approx(7.0e6, rel=0.01)
    assert t.flops == pytest.approx(2 * 1.583e9, rel=0.01)


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
