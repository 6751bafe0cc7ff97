"""The course tables of ``experiments/course_tables.py``, row by row, against hand arithmetic on the layer specs.

What is checked against what:

- every row that mlcv prints (kernels, kernel size, stride, padding, output shape, activations, parameters,
  multiply-adds, FLOPs for the minibatch of 128, activation and parameter memory) against hand arithmetic on the
  layer specs written out below: AlexNet as the course gives it (conv1 96 x 11x11 stride 4 padding 2 on 224x224,
  one tower), VGG-16 (configuration D of Simonyan & Zisserman 2015) and GoogLeNet as in Szegedy et al. 2015,
  Table 1 (the course's GoogLeNet table is said to have wrong rows; that they are Table 1's is an assumption
  this repository cannot check);
- the printed figures known here (no copy of the course's pages is in this repository, so none of its per-row
  figures is checked): the course's totals of 62,386.56 K (AlexNet) and 138.382 M (VGG-16) parameters and its
  1.136 G multiply-adds an image for the single-tower AlexNet; and every output size, params and ops figure of
  Table 1 of the GoogLeNet paper;
- ``ERRATA``: exactly the printed figures that the arithmetic contradicts, with the arithmetic's figure. A printed
  figure agrees when it is the arithmetic rounded or truncated to its last printed digit (Table 1 does both).
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction

import pytest
from conftest import ROOT

from experiments import course_tables
from mlcv.models import course_table, layer_table
from mlcv.orchestration import layers

BATCH, COPIES, MIB = 128, 3, 2**20  # the course's minibatch; weights + gradient + momentum (SGD with momentum)

# Layer specs, in the table's row order: ("conv", name, C_out, kernel, stride, padding, output side),
# ("pool", name, kernel, stride, padding, side), ("fc", name, C_out), ("module", name, (#1x1, #3x3 reduce, #3x3,
# #5x5 reduce, #5x5, pool proj), side), ("gpool", name). A padding (lo, hi) pads unevenly ("SAME"). The sides
# are written out; the test also derives them: side' = (side + lo + hi - kernel) // stride + 1.
ALEXNET = (
    ("conv", "conv1", 96, 11, 4, 2, 55),  # (224 + 4 - 11) // 4 + 1
    ("pool", "max_pool1", 3, 2, 0, 27),
    ("conv", "conv2", 256, 5, 1, 2, 27),
    ("pool", "max_pool2", 3, 2, 0, 13),
    ("conv", "conv3", 384, 3, 1, 1, 13),
    ("conv", "conv4", 384, 3, 1, 1, 13),
    ("conv", "conv5", 256, 3, 1, 1, 13),
    ("pool", "max_pool3", 3, 2, 0, 6),
    ("fc", "fc6", 4096),  # fan-in 6 * 6 * 256 = 9216
    ("fc", "fc7", 4096),
    ("fc", "fc8", 1000),
)
VGG16 = (
    ("conv", "conv0", 64, 3, 1, 1, 224),
    ("conv", "conv1", 64, 3, 1, 1, 224),
    ("pool", "max_pool1", 2, 2, 0, 112),
    ("conv", "conv2", 128, 3, 1, 1, 112),
    ("conv", "conv3", 128, 3, 1, 1, 112),
    ("pool", "max_pool2", 2, 2, 0, 56),
    *(("conv", f"conv{i}", 256, 3, 1, 1, 56) for i in (4, 5, 6)),
    ("pool", "max_pool3", 2, 2, 0, 28),
    *(("conv", f"conv{i}", 512, 3, 1, 1, 28) for i in (7, 8, 9)),
    ("pool", "max_pool4", 2, 2, 0, 14),
    *(("conv", f"conv{i}", 512, 3, 1, 1, 14) for i in (10, 11, 12)),
    ("pool", "max_pool5", 2, 2, 0, 7),
    ("fc", "fc0", 4096),  # fan-in 7 * 7 * 512 = 25088
    ("fc", "fc1", 4096),
    ("fc", "head", 1000),
)
GOOGLENET = (
    ("conv", "conv1", 64, 7, 2, (2, 3), 112),  # "SAME": (112 - 1) * 2 + 7 - 224 = 5 pixels, 2 before, 3 after
    ("pool", "max_pool1", 3, 2, (0, 1), 56),
    ("conv", "conv2_reduce", 64, 1, 1, 0, 56),
    ("conv", "conv2", 192, 3, 1, 1, 56),
    ("pool", "max_pool2", 3, 2, (0, 1), 28),
    ("module", "inception3a", (64, 96, 128, 16, 32, 32), 28),
    ("module", "inception3b", (128, 128, 192, 32, 96, 64), 28),
    ("pool", "max_pool3", 3, 2, (0, 1), 14),
    ("module", "inception4a", (192, 96, 208, 16, 48, 64), 14),
    ("module", "inception4b", (160, 112, 224, 24, 64, 64), 14),
    ("module", "inception4c", (128, 128, 256, 24, 64, 64), 14),
    ("module", "inception4d", (112, 144, 288, 32, 64, 64), 14),
    ("module", "inception4e", (256, 160, 320, 32, 128, 128), 14),
    ("pool", "max_pool4", 3, 2, (0, 1), 7),
    ("module", "inception5a", (256, 160, 320, 32, 128, 128), 7),
    ("module", "inception5b", (384, 192, 384, 48, 128, 128), 7),
    ("gpool", "global_avg_pool1"),
    ("fc", "head", 1000),
)
SPECS = {"alexnet": ALEXNET, "vgg16": VGG16, "googlenet": GOOGLENET}


def _module_weights(c_in: int, n: tuple[int, ...]) -> tuple[int, int, int]:
    """Weights, biases and output channels of an Inception module on ``c_in`` channels (its max-pool has none)."""
    n1, r3, n3, r5, n5, proj = n
    weights = c_in * n1 + c_in * r3 + 3 * 3 * r3 * n3 + c_in * r5 + 5 * 5 * r5 * n5 + c_in * proj
    return weights, n1 + r3 + n3 + r5 + n5 + proj, n1 + n3 + n5 + proj


def expected_rows(spec) -> list[dict]:
    """The table by hand: one dict of the course's columns per row, from 224x224x3 on.

    A conv's or module's multiply-adds are (weights per output + 1 for the bias) x outputs, i.e. (weights +
    biases) x H x W; an fc's (C_in + 1) x C_out; pooling none. Activation memory: outputs x 4 B x 2 (value and
    gradient; the input once) x 128 images; parameter memory: parameters x 4 B x 3 copies.
    """
    side, c = 224, 3
    rows = [dict(name="input", kernels=None, geometry=("", "", ""), out=(224, 224, 3), params=0, mult_adds=0)]
    for kind, name, *a in spec:
        if kind == "conv":
            c_out, k, s, p, want = a
            lo, hi = p if isinstance(p, tuple) else (p, p)
            side2 = (side + lo + hi - k) // s + 1
            pad = str(p) if lo == hi else f"{lo},{hi}"
            params = k * k * c * c_out + c_out
            row = dict(kernels=c_out, geometry=(str(k), str(s), pad), out=(side2, side2, c_out), params=params)
            row["mult_adds"] = (k * k * c + 1) * side2 * side2 * c_out
            side, c = side2, c_out
        elif kind == "pool":
            k, s, p, want = a
            lo, hi = p if isinstance(p, tuple) else (p, p)
            side = (side + lo + hi - k) // s + 1
            pad = str(p) if lo == hi else f"{lo},{hi}"
            row = dict(kernels=None, geometry=(str(k), str(s), pad), out=(side, side, c), params=0, mult_adds=0)
            side2 = side
        elif kind == "module":
            n, want = a
            weights, biases, c_out = _module_weights(c, n)
            row = dict(kernels=c_out, geometry=("", "", ""), out=(side, side, c_out), params=weights + biases)
            row["mult_adds"] = (weights + biases) * side * side
            side2, c = side, c_out
        elif kind == "gpool":
            row = dict(kernels=None, geometry=(str(side), "1", "0"), out=(1, 1, c), params=0, mult_adds=0)
            side = side2 = want = 1
        else:  # fc on the flattened input
            (c_out,) = a
            fan_in = side * side * c
            row = dict(kernels=c_out, geometry=("", "", ""), out=(c_out,), params=fan_in * c_out + c_out)
            row["mult_adds"] = (fan_in + 1) * c_out
            side, c, side2, want = 1, c_out, 1, 1
        assert side2 == want, f"{name}: output side {side2} by the formula, {want} written in the spec"
        rows.append(dict(name=name, **row))
    for i, r in enumerate(rows):
        r["activations"] = math.prod(r["out"])
        r["flops"] = 2 * r["mult_adds"] * BATCH
        r["activation_mib"] = r["activations"] * 4 * (1 if i == 0 else 2) * BATCH / MIB
        r["param_mib"] = r["params"] * 4 * COPIES / MIB
    return rows


@functools.cache
def _table(name: str) -> tuple[int, tuple[course_table.CourseRow, ...]]:
    """What ``--mode=summary`` prints for ``course_tables.py:<name>``: its optimizer copies and rows."""
    config = course_tables.get_config(name)
    model, shape, _ = layers.model_and_input(config)
    rows = layer_table.layer_table(model, shape, config.summary.batch_size, collapse=config.summary.collapse)
    copies = layers.optimizer_copies(config, model, shape)
    return copies, tuple(course_table.course_rows(rows, optimizer_copies=copies))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_row_against_hand_arithmetic(name):
    """Every printed row and column equals the arithmetic on the layer specs above; the totals are their sums."""
    copies, table = _table(name)
    assert copies == COPIES  # config.optim: SGD with momentum
    want = expected_rows(SPECS[name])
    assert [c.name for c in table] == [w["name"] for w in want]
    for c, w in zip(table, want, strict=True):
        got = dict(kernels=c.kernels, geometry=(c.kernel, c.stride, c.padding), out=c.out_shape, params=c.params)
        got.update(mult_adds=c.mult_adds, activations=c.activations, flops=c.flops)
        got.update(activation_mib=pytest.approx(c.activation_mib), param_mib=pytest.approx(c.param_mib))
        assert got == {k: v for k, v in w.items() if k != "name"}, c.name
    t = course_table.totals(table)
    assert t.params == sum(w["params"] for w in want) and t.mult_adds == sum(w["mult_adds"] for w in want)
    assert t.activation_mib == pytest.approx(sum(w["activation_mib"] for w in want))


def test_hand_totals():
    """The sums of the specs' arithmetic, written out: what the three tables' totals rows print."""
    totals = {}
    for name, spec in SPECS.items():
        rows = expected_rows(spec)
        totals[name] = (sum(r["params"] for r in rows), sum(r["mult_adds"] for r in rows))
    assert totals == {
        "alexnet": (62_378_344, 1_135_915_368),  # weights alone: 1,135,256,096 mult-adds
        "vgg16": (138_357_544, 15_483_821_032),  # weights alone: 15,470,264,320
        "googlenet": (6_998_552, 1_585_899_032),  # weights alone: 1,582,671,872
    }


def _fc_layers(spec) -> list[tuple[int, int]]:
    """(C_in, C_out) of the fully-connected layers of a spec, by the same walk as :func:`expected_rows`."""
    rows = expected_rows(spec)
    return [(math.prod(rows[i - 1]["out"]), r["out"][0]) for i, r in enumerate(rows) if len(r["out"]) == 1]


# The course's fully-connected parameter formula, C_in * C_out + C_in, should read C_in * C_out + C_out (one bias
# per output). Its AlexNet and VGG-16 totals follow the formula as printed: each fc layer gains C_in - C_out.
def course_fc_params(c_in: int, c_out: int) -> int:
    """The course's formula as printed."""
    return c_in * c_out + c_in


def test_course_totals_follow_its_fc_formula():
    """The course's 62,386.56 K and 138.382 M are the arithmetic with its fc formula in place of + C_out."""
    for name, printed in (("alexnet", 62_386_560), ("vgg16", 138_381_632)):
        fcs = _fc_layers(SPECS[name])
        excess = sum(course_fc_params(i, o) - (i * o + o) for i, o in fcs)
        assert excess == sum(i - o for i, o in fcs) == {"alexnet": 8_216, "vgg16": 24_088}[name]
        assert sum(r["params"] for r in expected_rows(SPECS[name])) + excess == printed


# Printed figures: (table, row, column) -> the figure as printed. AlexNet and VGG-16: the course's totals.
# GoogLeNet: Szegedy et al. 2015, Table 1, whose params column counts weights without biases in units of 1024
# (its conv 3x3 row's 112K is 114,688 / 1024 and its linear row's 1000K is 1,024,000 / 1024, both exact) and
# whose ops column counts multiply-adds of the weights in units of 10^6 (360M: 114,688 x 56 x 56 = 359.7 M).
# Its dropout and softmax rows print no figures; its convolution 3x3 row is conv2_reduce and conv2 together.
PRINTED = {
    ("alexnet", "total", "params (K)"): "62386.56",
    ("alexnet", "total", "mult-adds an image (G)"): "1.136",
    ("vgg16", "total", "params (M)"): "138.382",
}
TABLE1 = {  # row(s) of mlcv's table: (output size, params (K), ops (M)) as printed in Table 1
    ("conv1",): ("112x112x64", "2.7", "34"),
    ("max_pool1",): ("56x56x64", None, None),
    ("conv2_reduce", "conv2"): ("56x56x192", "112", "360"),
    ("max_pool2",): ("28x28x192", None, None),
    ("inception3a",): ("28x28x256", "159", "128"),
    ("inception3b",): ("28x28x480", "380", "304"),
    ("max_pool3",): ("14x14x480", None, None),
    ("inception4a",): ("14x14x512", "364", "73"),
    ("inception4b",): ("14x14x512", "437", "88"),
    ("inception4c",): ("14x14x512", "463", "100"),
    ("inception4d",): ("14x14x528", "580", "119"),
    ("inception4e",): ("14x14x832", "840", "170"),
    ("max_pool4",): ("7x7x832", None, None),
    ("inception5a",): ("7x7x832", "1072", "54"),
    ("inception5b",): ("7x7x1024", "1388", "71"),
    ("global_avg_pool1",): ("1x1x1024", None, None),
    ("head",): ("1x1x1000", "1000", "1"),
}
for rows, figures in TABLE1.items():
    for column, figure in zip(("output", "params (Ki, weights)", "ops (M, weights)"), figures, strict=True):
        if figure is not None:
            PRINTED["googlenet", "+".join(rows), column] = figure

# Where the printed figure and the arithmetic differ: the arithmetic's figure at the printed precision, and why.
ERRATA = {
    ("alexnet", "total", "params (K)"): ("62378.34", "fc formula '+ C_in' for '+ C_out': fc6 +5,120, fc8 +3,096"),
    ("vgg16", "total", "params (M)"): ("138.358", "fc formula '+ C_in' for '+ C_out': fc0 +20,992, head +3,096"),
    ("googlenet", "conv1", "params (Ki, weights)"): ("9.2", "7*7*3*64 = 9,408 = 9.19 Ki"),
    ("googlenet", "conv1", "ops (M, weights)"): ("118", "9,408 x 112 x 112; 34M / 112^2 = its 2.7K"),
    ("googlenet", "inception3b", "params (Ki, weights)"): ("379", "388,096 = 379.0 Ki (with biases 379.6)"),
    ("googlenet", "inception4a", "params (Ki, weights)"): ("367", "375,552 = 366.75 Ki"),
    ("googlenet", "inception4b", "params (Ki, weights)"): ("438", "448,512 = 438.0 Ki"),
    ("googlenet", "inception4c", "params (Ki, weights)"): ("498", "509,440 = 497.5 Ki"),
    ("googlenet", "inception4d", "params (Ki, weights)"): ("591", "604,672 = 590.5 Ki"),
    ("googlenet", "inception4e", "params (Ki, weights)"): ("847", "867,328 = 847.0 Ki"),
    ("googlenet", "inception5a", "params (Ki, weights)"): ("1018", "1,042,432 = 1018.0 Ki"),
    ("googlenet", "inception5a", "ops (M, weights)"): ("51", "1,042,432 x 7 x 7; 54M / 7^2 = its 1072K"),
    ("googlenet", "inception5b", "params (Ki, weights)"): ("1409", "1,442,816 = 1409.0 Ki"),
}


def arithmetic(table: str, row: str, column: str) -> Fraction | str:
    """The hand arithmetic's value of one printed figure, exact (a Fraction) or as text (an output size)."""
    rows = {r["name"]: r for r in expected_rows(SPECS[table])}
    if row == "total":
        params, mult_adds = sum(r["params"] for r in rows.values()), sum(r["mult_adds"] for r in rows.values())
        units = {"params (K)": (params, 10**3), "params (M)": (params, 10**6)}
        return Fraction(*units.get(column, (mult_adds, 10**9)))
    parts = [rows[n] for n in row.split("+")]
    if column == "output":
        out = parts[-1]["out"]
        return "x".join(map(str, out if len(out) == 3 else (1, 1, *out)))
    # Weights alone: the parameters less one bias per output channel of every conv (a module's: of every branch).
    weights = [r["params"] - _biases(table, r["name"]) for r in parts]
    if column == "params (Ki, weights)":
        return Fraction(sum(weights), 1024)
    positions = [math.prod(r["out"][:-1]) for r in parts]  # H x W; 1 for an fc
    return Fraction(sum(w * p for w, p in zip(weights, positions, strict=True)), 10**6)


def _biases(table: str, name: str) -> int:
    kind, _, *a = next(s for s in SPECS[table] if s[1] == name)
    if kind == "module":
        return sum(a[0])
    return a[0] if kind in ("conv", "fc") else 0


def _at_precision(value: Fraction | str, printed: str) -> tuple[str, str]:
    """``value`` rounded (half up) and truncated to the decimals of ``printed``, as text."""
    if isinstance(value, str):
        return value, value
    decimals = -Decimal(printed).as_tuple().exponent
    scaled = value * 10**decimals
    rounded, truncated = (str(Decimal(math.floor(v)).scaleb(-decimals)) for v in (scaled + Fraction(1, 2), scaled))
    return rounded, truncated


def test_errata_are_exactly_the_printed_figures_the_arithmetic_contradicts():
    """Each printed figure is the arithmetic rounded or truncated, except those in ERRATA (the arithmetic rounded)."""
    mismatches = {}
    for key, printed in PRINTED.items():
        figures = _at_precision(arithmetic(*key), printed)
        if printed not in figures:
            mismatches[key] = figures[0]
    assert mismatches == {key: figure for key, (figure, _) in ERRATA.items()}


def test_printed_figures_mlcv_reproduces():
    """The agreeing printed figures, through mlcv's rows: AlexNet's 1.136 G needs the bias adds (1.135 G without)."""
    _, alexnet = _table("alexnet")
    mult_adds = course_table.totals(alexnet).mult_adds
    bias_adds = sum(c.activations for c in alexnet if c.params)  # one per output of a layer with parameters
    assert (f"{mult_adds / 1e9:.3f}", f"{(mult_adds - bias_adds) / 1e9:.3f}") == ("1.136", "1.135")
    _, googlenet = _table("googlenet")
    rows = {c.name: c for c in googlenet}
    for names, (size, *_) in TABLE1.items():
        out = rows[names[-1]].out_shape
        assert "x".join(map(str, out if len(out) == 3 else (1, 1, *out))) == size


@pytest.mark.parametrize("optimizer,copies", [("sgd", 2), ("momentum", 3), ("nesterov", 3), ("adam", 4)])
def test_parameter_memory_copies_come_from_config_optim(optimizer, copies):
    """Weights and gradient, plus the optimizer state's arrays of the parameters' size, counted from optax."""
    config = course_tables.get_config("googlenet")
    config.optim.name = optimizer
    model, shape, _ = layers.model_and_input(config)
    assert layers.optimizer_copies(config, model, shape) == copies


@pytest.mark.parametrize("name", sorted(SPECS))
def test_summary_runs_without_any_dataset(name, tmp_path):
    """The real launcher, with an empty TFDS data dir: exit 0, the table printed, TFDS never imported."""
    tfds_dir, wd = tmp_path / "tfds", tmp_path / "wd"
    tfds_dir.mkdir()
    code = (
        "import runpy, sys\n"
        "try:\n    runpy.run_path('launch.py', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'tensorflow_datasets' not in sys.modules, 'TFDS was imported'\n"
    )
    argv = ["launch.py", f"--config=experiments/course_tables.py:{name}", "--mode=summary", f"--workdir={wd}"]
    env = dict(os.environ, TFDS_DATA_DIR=str(tfds_dir))
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.argv = {argv!r}\n{code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    params = sum(r["params"] for r in expected_rows(SPECS[name]))
    assert f"Total: {params:,} parameters" in proc.stdout and "| **total** |" in proc.stdout
    assert "3 copies: weights, gradient and 1 optimizer-state copy" in proc.stdout
    assert (wd / "layers.md").read_text() in proc.stdout
    assert not any(tfds_dir.iterdir())
