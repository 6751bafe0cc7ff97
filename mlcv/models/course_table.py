"""The course's model-summary tables: per layer the geometry, activations, parameters, FLOPs and training memory.

The rows are :func:`mlcv.models.layer_table.layer_table`'s (traced, nothing computed); this module only changes
the columns and conventions to the course's:

- kernels (output channels or units), kernel size, stride and padding in pixels ("2,3": two before, three
  after, where "SAME" pads unevenly), output H x W x C, activations (output elements of one image);
- parameters in K (10^3), weights and biases;
- FLOPs in M (10^6) for the whole minibatch: 2 x multiply-adds x batch, where a Conv or Dense layer's
  multiply-adds are (weights per output + 1 for the bias) x outputs, i.e. each bias add counts as one
  multiply-add (the single-tower AlexNet's 1.136 G an image comes out only so; ``--mode=layers`` leaves bias
  adds out and gets 1.135 G); pooling counts 0;
- activation memory in MiB (2^20 bytes) for the minibatch: each layer's output stored for the backward pass
  plus its gradient (x 2); the input row counts its value alone, since nothing needs the images' gradient;
- parameter memory in MiB: weights x the copies that training holds (weights, gradient and the optimizer's
  state, e.g. 3 for SGD with momentum, 4 for Adam, 2 for plain SGD).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from mlcv.models.layer_table import Row, dims

MIB = 2**20


@dataclasses.dataclass(frozen=True)
class CourseRow:
    """One row of the course's table. ``activations`` and ``mult_adds`` are per image, ``flops`` per minibatch."""

    name: str
    type: str
    kernels: int | None
    kernel: str
    stride: str
    padding: str
    out_shape: tuple[int, ...]
    activations: int
    params: int
    mult_adds: int
    flops: int
    activation_mib: float
    param_mib: float


def course_rows(rows: Sequence[Row], *, optimizer_copies: int) -> list[CourseRow]:
    """The course's columns of ``rows`` (traced with the minibatch as their ``batch_size``).

    ``optimizer_copies``: how many arrays of the parameters' size training holds (weights, gradient, state).
    """
    out = []
    for r in rows:
        kernel, stride, padding = dims(r.kernel), dims(r.stride), r.pads
        if r.type.startswith("Global") and len(r.in_shape) == 3:  # a global pool is a pool as large as its input
            kernel, stride, padding = dims(r.in_shape[:2]), "1", "0"
        mult_adds = r.flops // 2 + r.bias_adds
        grads = 1 if r.type == "Input" else 2
        out.append(
            CourseRow(
                r.name,
                r.type,
                r.features if r.flops or r.params else None,
                kernel,
                stride,
                padding,
                r.out_shape,
                r.activations,
                r.params,
                mult_adds,
                2 * mult_adds * r.batch_size,
                r.activation_bytes * grads / MIB,
                r.param_bytes * optimizer_copies / MIB,
            )
        )
    return out


def format_course_table(
    rows: Sequence[Row], *, optimizer_copies: int, optimizer: str = "", collapsed: Collection[str] = ()
) -> str:
    """The course's table of ``rows`` as Markdown, with a totals row and a footer that states the conventions.

    ``optimizer`` names where ``optimizer_copies`` comes from (``"config.optim.name='momentum'"``); ``collapsed``:
    the module types that ``rows`` show as one row each (``layer_table(..., collapse=...)``).
    """
    batch = rows[0].batch_size if rows else 1
    table = course_rows(rows, optimizer_copies=optimizer_copies)
    head = ["layer", "type", "kernels", "kernel", "stride", "pad", "output", "activations", "params (K)"]
    head += [f"FLOPs (M), batch {batch}", "act. mem (MiB)", "param. mem (MiB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 6 + "---:|" * (len(head) - 6)]
    for c in table:
        cells = [c.name, c.type, "" if c.kernels is None else str(c.kernels), c.kernel, c.stride, c.padding]
        cells += ["x".join(map(str, c.out_shape)), f"{c.activations:,}", f"{c.params / 1e3:,.2f}" if c.params else ""]
        cells += [f"{c.flops / 1e6:,.1f}" if c.flops else "", f"{c.activation_mib:,.2f}"]
        cells.append(f"{c.param_mib:,.2f}" if c.params else "")
        lines.append("| " + " | ".join(cells) + " |")
    t = totals(table)
    cells = ["**total**", *[""] * 6, f"{t.activations:,}", f"{t.params / 1e3:,.2f}", f"{t.flops / 1e6:,.1f}"]
    lines.append("| " + " | ".join([*cells, f"{t.activation_mib:,.2f}", f"{t.param_mib:,.2f}"]) + " |")
    weights_only = sum(r.flops for r in rows) // 2
    state = optimizer_copies - 2
    copies = f"weights, gradient and {state} optimizer-state cop{'y' if state == 1 else 'ies'}" if state else ""
    copies = copies or "weights and gradient"
    lines += [
        "",
        f"Total: {t.params:,} parameters ({t.params / 1e3:,.2f} K); {t.mult_adds / 1e9:.3f} G multiply-adds an image "
        f"counting each bias add as one ({weights_only / 1e9:.3f} G in the weights alone), "
        f"{t.flops / 1e9:,.1f} GFLOPs for the minibatch of {batch}.",
        f"Memory (4-byte floats, 1 MiB = 2^20 B): activations {t.activation_mib:,.2f} MiB for {batch} images, each "
        f"layer's output and its gradient (the input once); parameters {t.param_mib:,.2f} MiB, {optimizer_copies} "
        f"copies: {copies}" + (f" ({optimizer})." if optimizer else "."),
    ]
    if any(r.type in collapsed for r in rows):
        lines.append(
            "Rows of a module (such as an Inception module) sum its layers' parameters and FLOPs; their activation "
            "columns count the module's output alone, not the branch outputs inside it."
        )
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class CourseTotals:
    """Sums of a course table's columns."""

    activations: int
    params: int
    mult_adds: int
    flops: int
    activation_mib: float
    param_mib: float


def totals(table: Sequence[CourseRow]) -> CourseTotals:
    """The totals row of ``table``."""
    fields = ("activations", "params", "mult_adds", "flops", "activation_mib", "param_mib")
    return CourseTotals(*(sum(getattr(c, f) for c in table) for f in fields))
