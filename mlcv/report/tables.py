"""Result tables: Markdown and CSV from rows, mean ± std over repeats.

Kept apart from any one producer (sweeps today, ablations and benchmarks
later) so that every table of results in the project reads the same way.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def format_value(value: Any, digits: int | None = None) -> str:
    """A table cell for one value; ``None`` is an empty cell.

    Floats print with ``digits`` decimals (metrics), or with no ``digits`` as
    their shortest exact repr (hyper-parameters: ``0.003``, ``1e-05``).
    """
    if value is None:
        return ""
    if isinstance(value, float) and digits is not None and math.isfinite(value):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(format_value(v, digits) for v in value) + ")"
    return repr(value) if isinstance(value, float) else str(value)


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1); the std is None for fewer than two values."""
    if not values:
        raise ValueError("mean_std of no values")
    vals = [float(v) for v in values]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def format_mean_std(values: Sequence[float], digits: int = 4) -> str:
    """``"0.9861 ± 0.0040"``; a single value prints alone, since its spread is unknown, not zero."""
    return format_mean_std_of(*mean_std(values), digits)


def format_mean_std_of(mean: float, std: float | None, digits: int = 4) -> str:
    """:func:`format_mean_std` of a mean and std computed already (std None: the mean alone)."""
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _cell(value: Any) -> str:
    # A pipe would end the cell and a newline the row.
    return (value if isinstance(value, str) else format_value(value, 4)).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` holds one of ``l``/``r``/``c`` per column."""
    align = align or "l" * len(header)
    if len(align) != len(header) or any(len(r) != len(header) for r in rows):
        raise ValueError("every row and the alignment need one entry per header column")
    rule = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "| " + " | ".join(rule[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV with one row per mapping; keys missing from a row are empty cells; floats keep full precision."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_value(row.get(c)) for c in columns})
    return buf.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return format_value(value)
    return value


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes through a temporary file and a rename, so readers (and parallel shards) never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def is_number(x: Any) -> bool:
    """True for ints and floats, not for bools (which are ints to Python)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _hashable(x: Any) -> Any:
    return tuple(_hashable(v) for v in x) if isinstance(x, (list, tuple)) else x


def group_rows(rows: Sequence[Mapping[str, Any]], by: Sequence[str], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Groups flat rows by their values in the ``by`` columns, in order of first appearance.

    Each group is ``{"key": {by column: value}, "rows": [...], "values": {column: [numbers]}}``;
    a row without a number in a column (a run not finished yet) adds nothing to that column.
    """
    groups: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        k = tuple(_hashable(row.get(c)) for c in by)
        group = groups.setdefault(
            k, {"key": {c: row.get(c) for c in by}, "rows": [], "values": {c: [] for c in columns}}
        )
        group["rows"].append(row)
        for c in columns:
            if is_number(row.get(c)):
                group["values"][c].append(row[c])
    return list(groups.values())


def best_index(scores: Sequence[float | None], mode: str) -> int | None:
    """The index of the best score (``mode`` ``max`` or ``min``); ties go to the first; None and NaN never win."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    best = None
    for i, s in enumerate(scores):
        if s is None or math.isnan(s):
            continue
        if best is None or (s > scores[best] if mode == "max" else s < scores[best]):
            best = i
    return best


def grouped_markdown(
    groups: Sequence[Mapping[str, Any]], by: Sequence[str], columns: Sequence[tuple[str, str, int]]
) -> str:
    """A Markdown table of :func:`group_rows` groups: mean ± sample std of each column over a group's rows.

    ``columns`` holds ``(column, header, digits)``; the ``n`` column counts the
    rows with a value in the first column out of the group's rows; a group
    with ``"selected": True`` is marked in the last column.
    """
    header = [*by, "n", *(h for _, h, _ in columns), ""]
    body = []
    for g in groups:
        v = g["values"]
        cells = [format_mean_std(v[c], d) if v[c] else "" for c, _, d in columns]
        n = f"{len(v[columns[0][0]])}/{len(g['rows'])}"
        body.append([*(format_value(g["key"][k]) for k in by), n, *cells, "**selected**" if g.get("selected") else ""])
    return markdown_table(header, body, "l" * len(by) + "r" * (len(columns) + 1) + "l")
