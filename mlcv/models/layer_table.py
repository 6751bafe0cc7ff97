"""Per-layer tables of a model: shapes, parameters, FLOPs, activation memory, receptive fields.

Nothing is computed: ``layer_table`` traces ``model.init`` abstractly (``jax.make_jaxpr``, i.e. ``jax.eval_shape``
plus the equations), so VGG-16 at 224x224 takes ~0.2 s on a 2-core CPU and no memory. Two views of one trace:

- ``flax.linen.intercept_methods`` records every module ``__call__`` (input/output shapes, the module itself with
  its ``kernel_size``/``strides``/``padding``/... attributes) and wraps it in a ``jax.named_scope`` marker, so every
  equation of the trace knows which module calls enclose it;
- the equations then give what modules cannot: pooling is a function (``nn.max_pool``), not a module, and shows up
  as a ``reduce_window_*`` equation (window, strides, padding exact, not guessed from shapes); global pooling as a
  ``reduce_sum``/``reduce_max`` over H and W. They also carry the receptive field along the data flow.

Counting conventions (the course's): FLOPs count each multiply-add as 2 and only multiply-adds of Conv and Dense
layers, so bias adds, normalization, activations and pooling count 0; FLOPs are per example and the totals
multiply them by the batch. Parameters are the ``params`` collection (BatchNorm running statistics in
``batch_stats`` are not parameters). Activation memory is the output of each row's layer (ReLU, add and concat
outputs are not rows). Memory units are decimal: 1 MB = 10^6 bytes.

Receptive field column: tracked per tensor through the whole data flow, r' = r + (K - 1) * d * j, j' = j * S for
every conv/pool (j: the input-pixel jump of one step), and the maximum over inputs where paths join (ResNet adds,
Inception concats). So for branching nets it is the receptive field along the longest path, i.e. the true one.
It is empty once a tensor stops being NHWC with the same H, W (flatten, global pooling, resizing, slicing).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

_MARK = "mlcvsummary"  # prefix of the named-scope markers; unlikely to collide with module names
_ROW_TYPES = (nn.Conv, nn.ConvTranspose, nn.ConvLocal, nn.Dense, nn.DenseGeneral, nn.Embed)
_ROW_TYPES += (nn.BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
_POOLS = {"reduce_window_max": "MaxPool", "reduce_window_sum": "AvgPool", "reduce_window_min": "MinPool"}
_GLOBAL_POOLS = {"reduce_sum": "GlobalAvgPool", "reduce_max": "GlobalMaxPool"}


@dataclasses.dataclass(frozen=True)
class Row:
    """One layer. ``out_shape`` is per example (H, W, C for feature maps, (units,) after flattening)."""

    name: str
    type: str
    out_shape: tuple[int, ...]
    features: int | None = None  # output channels / units
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: str = ""
    dilation: tuple[int, ...] | None = None
    groups: int | None = None
    params: int = 0
    flops: int = 0  # per example, multiply-add = 2
    activation_bytes: int = 0  # output of this layer for the whole batch
    param_bytes: int = 0
    receptive_field: tuple[int, int] | None = None  # (H, W) in input pixels
    batch_size: int = 1
    in_shape: tuple[int, ...] = ()  # per example, of the layer's (first) input
    bias_adds: int = 0  # per example: outputs a bias is added to (FLOPs leave them out; the course counts them)

    @property
    def activations(self) -> int:
        """Output elements per example."""
        return math.prod(self.out_shape)

    @property
    def pads(self) -> str:
        """``padding`` in pixels ("2,3": two before, three after) where it is "SAME" or "VALID" on a known input."""
        if self.padding not in ("SAME", "VALID") or self.type != "Conv" or not self.kernel or not self.in_shape:
            return self.padding
        k = [(k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation or (1,) * len(self.kernel), strict=True)]
        return _pairs(jax.lax.padtype_to_pads(self.in_shape[: len(k)], k, self.stride, self.padding))


@dataclasses.dataclass(frozen=True)
class Totals:
    """Sums over a table; ``flops`` and ``activation_bytes`` are for ``batch_size`` examples."""

    params: int
    flops: int
    activation_bytes: int
    param_bytes: int
    batch_size: int


def receptive_field(layers: Sequence[tuple[int, ...]]) -> list[int]:
    """Receptive field after each layer of a chain of (kernel, stride[, dilation]) layers.

    r_L = sum_l (K_l - 1) * d_l * prod_{i<l} S_i + 1: a dilated kernel spans d(K - 1) + 1 pixels of its input.
    """
    r, jump, out = 1, 1, []
    for k, s, *d in layers:
        r += (k - 1) * (d[0] if d else 1) * jump
        jump *= s
        out.append(r)
    return out


@dataclasses.dataclass
class _Call:
    module: nn.Module
    path: str
    in_shape: tuple[int, ...] = ()
    out: Any = None  # ShapedArray of the first output


def _trace(model: nn.Module, x: jax.ShapeDtypeStruct):
    calls: list[_Call] = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        call = _Call(context.module, "/".join(context.module.path))
        calls.append(call)
        with jax.named_scope(f"{_MARK}{len(calls) - 1}"):
            out = next_fun(*args, **kwargs)
        arrays = [a for a in jax.tree.leaves(args) if hasattr(a, "shape")]
        call.in_shape = tuple(arrays[0].shape) if arrays else ()
        call.out = jax.typeof(jax.tree.leaves(out)[0])
        return out

    def init(x):
        with nn.intercept_methods(interceptor):
            return model.init(jax.random.key(0), x, train=False)

    jaxpr, variables = jax.make_jaxpr(init, return_shape=True)(x)
    return jaxpr.jaxpr, variables, calls


def _sub_jaxpr(eqn):
    """The inner jaxpr of a call-like equation (jit, custom_jvp, remat) whose inputs map one to one."""
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = getattr(eqn.params.get(key), "jaxpr", eqn.params.get(key))
        if hasattr(sub, "eqns") and len(sub.invars) == len(eqn.invars) and len(sub.outvars) == len(eqn.outvars):
            return sub
    return None


def _rf_step(rf, kernel, stride, dilation, base_dilation):
    (r, jump), out_r, out_j = rf, [], []
    for i in range(2):
        j = jump[i] / base_dilation[i]  # a transposed conv's input step is a fraction of an input pixel
        out_r.append(r[i] + (kernel[i] - 1) * dilation[i] * j)
        out_j.append(j * stride[i])
    return tuple(out_r), tuple(out_j)


def _walk(jaxpr, env: dict, prefix: str, visit) -> None:
    """Visits the equations in program order, inlining call-like ones, with RF state ``env`` per variable."""
    for eqn in jaxpr.eqns:
        stack = f"{prefix}/{eqn.source_info.name_stack}"
        sub = _sub_jaxpr(eqn)
        if sub is None:
            visit(eqn, stack, env)
            continue
        inner = {iv: _get(env, ov) for iv, ov in zip(sub.invars, eqn.invars, strict=True)}
        _walk(sub, inner, stack, visit)
        for ov, iv in zip(eqn.outvars, sub.outvars, strict=True):
            env[ov] = _get(inner, iv)


def _get(env: dict, v):
    return None if hasattr(v, "val") else env.get(v)  # literals carry no receptive field


def _propagate(eqn, env: dict) -> None:
    x = _get(env, eqn.invars[0]) if eqn.invars else None
    p, out = eqn.params, None
    if eqn.primitive.name == "conv_general_dilated" and x is not None:
        rhs, dn = eqn.invars[1].aval.shape, p["dimension_numbers"]
        kernel = [rhs[d] for d in dn.rhs_spec[2:]]
        out = _rf_step(x, kernel, p["window_strides"], p["rhs_dilation"], p["lhs_dilation"])
    elif eqn.primitive.name.startswith("reduce_window") and x is not None and "window_dimensions" in p:
        keys = ("window_dimensions", "window_strides", "window_dilation", "base_dilation")
        out = _rf_step(x, *(p[k][1:3] for k in keys))  # NHWC
    elif eqn.primitive.name == "pad" and x is not None:
        out = (x[0], tuple(x[1][i] / (1 + p["padding_config"][i + 1][2]) for i in range(2)))
    else:  # elementwise, concat, ...: the longest path wins where several join
        rfs = [_get(env, v) for v in eqn.invars]
        tracked = [(v, rf) for v, rf in zip(eqn.invars, rfs, strict=True) if rf is not None]
        shape = eqn.outvars[0].aval.shape if eqn.outvars else ()
        if tracked and len(shape) == 4 and shape[1:3] == tracked[0][0].aval.shape[1:3]:
            out = tuple(tuple(max(rf[k][i] for _, rf in tracked) for i in range(2)) for k in range(2))
    for v in eqn.outvars:
        env[v] = out if len(v.aval.shape) == 4 else None


def _pairs(padding) -> str:
    if isinstance(padding, str | int):
        return str(padding)
    pairs = [(q, q) if isinstance(q, int) else tuple(q) for q in padding]
    text = [str(lo) if lo == hi else f"{lo},{hi}" for lo, hi in pairs]  # "0,1": SAME pooling pads one side
    return text[0] if len(set(text)) == 1 else "x".join(text)


def _tuple(v, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, Sequence) else (v,) * n


def _layer_row(call: _Call, own: dict, first: bool, rf, batch_size: int) -> Row:
    m, out_shape, kernel = call.module, tuple(call.out.shape[1:]), own.get("kernel")
    flops = 0
    if kernel is not None and isinstance(m, nn.ConvTranspose):  # each input pixel scatters the whole kernel
        flops = 2 * math.prod(kernel.shape) * math.prod(call.in_shape[1:-1])
    elif kernel is not None and isinstance(m, nn.ConvLocal):  # the kernel already holds one filter per position
        flops = 2 * math.prod(kernel.shape)
    elif kernel is not None and isinstance(m, nn.Conv | nn.Dense | nn.DenseGeneral):
        flops = 2 * math.prod(kernel.shape) * math.prod(out_shape) // math.prod(_tuple(m.features, 1))
    geom = {}
    if getattr(m, "kernel_size", None) is not None:
        n = len(ks := _tuple(m.kernel_size, 1))
        geom = dict(kernel=ks, stride=_tuple(m.strides or 1, n), padding=_pairs(m.padding))
        geom.update(dilation=_tuple(getattr(m, "kernel_dilation", None) or 1, n))
        geom.update(groups=getattr(m, "feature_group_count", None))
    feats = getattr(m, "features", None)
    return Row(
        call.path or type(m).__name__,
        type(m).__name__,
        out_shape,
        feats if isinstance(feats, int) else out_shape[-1],
        params=sum(math.prod(a.shape) for a in own.values()) if first else 0,  # a shared layer counts once
        flops=flops,
        activation_bytes=math.prod(out_shape) * call.out.dtype.itemsize * batch_size,
        param_bytes=sum(math.prod(a.shape) * a.dtype.itemsize for a in own.values()) if first else 0,
        receptive_field=_rf_int(rf),
        batch_size=batch_size,
        in_shape=tuple(call.in_shape[1:]),
        bias_adds=math.prod(out_shape) if flops and "bias" in own else 0,
        **geom,
    )


def _pool_row(eqn, env: dict, name: str, kind: str, batch_size: int) -> Row:
    p, out = eqn.params, eqn.outvars[0].aval
    shape, geom = (1, 1, out.shape[-1]), {}
    if kind in _POOLS.values():
        shape, win = tuple(out.shape[1:]), slice(1, 3)  # NHWC
        geom = dict(kernel=p["window_dimensions"][win], stride=p["window_strides"][win])
        geom.update(padding=_pairs(p["padding"][win]), dilation=p["window_dilation"][win])
    rf, nbytes = _rf_int(env.get(eqn.outvars[0])), math.prod(shape) * out.dtype.itemsize * batch_size
    geom.update(in_shape=tuple(eqn.invars[0].aval.shape[1:]), activation_bytes=nbytes, receptive_field=rf)
    return Row(name, kind, shape, shape[-1], batch_size=batch_size, **geom)


def _pool_kind(eqn) -> str | None:
    """MaxPool/AvgPool/... for a spatial reduce_window, GlobalAvgPool/... for a reduction over H and W."""
    name, p = eqn.primitive.name, eqn.params
    if name in _POOLS and len(p["window_dimensions"]) == 4 and p["window_dimensions"][0::3] == (1, 1):
        return _POOLS[name]  # a window over channels (LRN) is not pooling
    if name in _GLOBAL_POOLS and len(eqn.invars[0].aval.shape) == 4 and tuple(p["axes"]) == (1, 2):
        return _GLOBAL_POOLS[name]
    return None


def _rf_int(rf) -> tuple[int, int] | None:
    return None if rf is None else tuple(round(r) for r in rf[0])


def layer_table(
    model: nn.Module, input_shape: Sequence[int], batch_size: int = 1, *, collapse: Collection[str] = ()
) -> list[Row]:
    """One row per input, Conv/ConvTranspose/Dense/Embed, normalization and pooling layer, in program order.

    Args:
      model: a Linen module with ``__call__(x, *, train=False)``.
      input_shape: one example's shape, (H, W, C) for images.
      batch_size: examples for the activation-memory column (FLOPs stay per example).
      collapse: class names of modules shown as one row each (``"InceptionModule"``, as the GoogLeNet paper's
        Table 1 does): the sums of their layers' parameters, FLOPs and bias adds, and their output, whose
        memory alone is the row's (the layers inside are not rows).

    A module of another type that owns parameters directly and calls no submodule also gets a row (FLOPs 0), so
    the parameter column always sums to the model's total. A module called twice gets a row per call, its
    parameters counted on the first. Pooling rows are numbered within the module that pools.
    """
    jaxpr, variables, calls = _trace(model, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))

    def own(path: str) -> dict:
        node = variables.get("params", {})
        for key in path.split("/") if path else ():
            node = node.get(key, {})
        return {k: v for k, v in node.items() if not isinstance(v, dict)}

    paths = [c.path for c in calls]
    leaf = [not any(p.startswith(c.path + "/") or (p and not c.path) for p in paths) for c in calls]
    is_row = [isinstance(c.module, _ROW_TYPES) or (leaf[i] and bool(own(c.path))) for i, c in enumerate(calls)]
    order: list[int | Row] = []  # layer rows (call indices) and pooling rows, in program order
    layer_rf: dict[int, Any] = {}
    counts: dict[tuple[str, str], int] = {}

    def visit(eqn, stack: str, env: dict) -> None:
        _propagate(eqn, env)
        if not eqn.outvars:  # effects such as debug callbacks
            return
        marks = [int(i) for i in re.findall(rf"{_MARK}(\d+)", stack)]
        owner = next((i for i in marks if is_row[i]), None)  # the outermost row layer around this equation
        if owner is not None:
            if owner not in layer_rf:
                order.append(owner)
            if owner not in layer_rf or env.get(eqn.outvars[0]) is not None:
                layer_rf[owner] = env.get(eqn.outvars[0])  # the last spatial output: after conv, bias add
        elif kind := _pool_kind(eqn):
            scope = calls[marks[-1]].path if marks else ""
            counts[scope, kind] = counts.get((scope, kind), 0) + 1
            name = re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower() + str(counts[scope, kind])
            name = "/".join(filter(None, [scope, name]))
            order.append(_pool_row(eqn, env, name, kind, batch_size))

    _walk(jaxpr, {jaxpr.invars[0]: ((1.0, 1.0), (1.0, 1.0))}, "", visit)
    order += [i for i, r in enumerate(is_row) if r and i not in layer_rf]  # a layer with no equations at all
    inputs = math.prod(input_shape) * 4 * batch_size
    rows = [Row("input", "Input", tuple(input_shape), activation_bytes=inputs, receptive_field=(1, 1))]
    rows[0] = dataclasses.replace(rows[0], batch_size=batch_size)
    seen: set[str] = set()
    for item in order:
        if isinstance(item, int):
            call = calls[item]
            item = _layer_row(call, own(call.path), call.path not in seen, layer_rf.get(item), batch_size)
            seen.add(call.path)
        rows.append(item)
    return _collapse(rows, [c for c in calls if c.path and type(c.module).__name__ in collapse]) if collapse else rows


def _collapse(rows: list[Row], calls: list[_Call]) -> list[Row]:
    """Each run of rows inside one of ``calls``' modules as one row of that module."""
    out, i = [], 0
    while i < len(rows):
        call = min((c for c in calls if rows[i].name.startswith(c.path + "/")), key=lambda c: len(c.path), default=None)
        if call is None:
            out.append(rows[i])
            i += 1
            continue
        j = next((j for j in range(i, len(rows)) if not rows[j].name.startswith(call.path + "/")), len(rows))
        inner, shape, batch = rows[i:j], tuple(call.out.shape[1:]), rows[i].batch_size
        rfs = [r.receptive_field for r in inner if r.receptive_field]  # a concat's: its longest branch's
        sums = {k: sum(getattr(r, k) for r in inner) for k in ("params", "flops", "param_bytes", "bias_adds")}
        nbytes = math.prod(shape) * call.out.dtype.itemsize * batch
        out.append(
            Row(call.path, type(call.module).__name__, shape, shape[-1], activation_bytes=nbytes, batch_size=batch,
                receptive_field=max(rfs) if rfs else None, in_shape=tuple(call.in_shape[1:]), **sums)
        )  # fmt: skip
        i = j
    return out


def totals(rows: Sequence[Row]) -> Totals:
    """Sums of a table's columns; FLOPs multiplied by the table's batch size."""
    batch = rows[0].batch_size if rows else 1
    params, flops = sum(r.params for r in rows), sum(r.flops for r in rows) * batch
    return Totals(params, flops, sum(r.activation_bytes for r in rows), sum(r.param_bytes for r in rows), batch)


def _si(x: float, unit: str = "") -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= factor:
            return f"{x / factor:.2f} {prefix}{unit}"
    return f"{x:g} {unit}".rstrip()


def dims(v: tuple[int, ...] | None) -> str:
    """A kernel, stride or shape as printed: ``3`` for (3, 3), ``3x5`` for (3, 5), empty for none."""
    return "" if not v else str(v[0]) if len(set(v)) == 1 else "x".join(map(str, v))


def format_table(rows: Sequence[Row], totals: Totals) -> str:
    """The table as Markdown: exact parameters per row, FLOPs and bytes in decimal units (1 MB = 10^6 B)."""
    head = ["layer", "type", "output", "kernel", "stride", "pad", "dil", "groups", "RF", "params", "FLOPs", "act. mem"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        geom = [dims(r.kernel), dims(r.stride), r.padding, dims(r.dilation), str(r.groups or "")]
        cells = [r.name, r.type, "x".join(map(str, r.out_shape)), *geom, dims(r.receptive_field)]
        cells += [f"{r.params:,}" if r.params else "", _si(r.flops, "FLOPs") if r.flops else ""]
        lines.append("| " + " | ".join([*cells, _si(r.activation_bytes, "B")]) + " |")
    t = totals
    lines.append(
        f"\nTotal: {t.params:,} parameters ({t.params / 1e6:.2f} M, {t.param_bytes / 1e6:.1f} MB); "
        f"{t.flops / 1e9:.3f} GFLOPs ({t.flops / 2e9:.3f} G multiply-adds) and "
        f"{t.activation_bytes / 1e6:.1f} MB of layer outputs for a batch of {t.batch_size}."
    )
    return "\n".join(lines) + "\n"
