"""Results of a sweep workdir: the trial table, the grouped mean ± std table, the selection, the plots.

Reads only what :func:`mlcv.orchestration.sweep.run` wrote (``sweep.json`` and each
trial's ``summary.json``), so it works on a sweep that is finished, partial,
or spread over machines by shards.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlcv.config import ConfigError
from mlcv.report import plots, tables

DIVERGED = "diverged.txt"  # marks a trial whose loss went non-finite: a result, not something to retry


def status(trial_dir: str | Path) -> str:
    """``complete`` (a readable summary.json), ``diverged``, or ``pending`` (not started or cut short)."""
    trial_dir = Path(trial_dir)
    try:
        summary = json.loads((trial_dir / "summary.json").read_text())
        if "validation" in summary and "test" in summary:
            return "complete"
    except (OSError, ValueError):
        pass
    return "diverged" if (trial_dir / DIVERGED).exists() else "pending"


def _trial_row(workdir: Path, trial: Mapping[str, Any]) -> dict[str, Any]:
    """One flat row: name, overrides, ``val/*`` and ``test/*`` metrics, wall time, status."""
    state = status(workdir / trial["name"])
    row = {"trial": trial["name"], **trial["overrides"], "status": state}
    if state == "complete":
        summary = json.loads((workdir / trial["name"] / "summary.json").read_text())
        for split, prefix in (("validation", "val"), ("test", "test")):
            row.update({f"{prefix}/{k}": float(v) for k, v in summary[split].items() if tables.is_number(v)})
        row["wall_time_s"] = summary.get("wall_time_s")
    return row


def _group_name(group: Mapping[str, Any], repeats: bool) -> str:
    if not repeats:  # one trial a group
        return group["rows"][0]["trial"]
    return ",".join(f"{k}={tables.format_value(v)}" for k, v in group["key"].items()) or "all trials"


def results(workdir: str | Path) -> dict[str, Any]:
    """Reads a sweep workdir, finished or not, and selects the best trial or group on validation.

    Returns ``metric``, ``mode``, ``keys``, ``repeat_keys``, ``rows`` (one flat
    dict per trial, as in sweep.csv), ``columns`` (the metric columns),
    ``groups`` (mean over the repeat keys; one group per trial without them)
    and ``selected``: None while no trial is complete, else its ``name``,
    ``trials``, ``n``, and the mean and sample std of the selection metric on
    validation and on test. The choice reads validation only; rows carry test
    metrics for sweep.csv, but sweep.md shows test for the selection alone.
    """
    workdir = Path(workdir)
    try:
        meta = json.loads((workdir / "sweep.json").read_text())
    except FileNotFoundError:
        raise ConfigError(f"{workdir} holds no sweep.json; run the sweep first") from None
    rows = [_trial_row(workdir, t) for t in meta["trials"]]
    metric, mode, rep = meta["metric"], meta["mode"], meta["repeat_keys"]
    present = {c for r in rows for c in r if c.startswith(("val/", "test/"))}
    if present and f"val/{metric}" not in present:
        have = ", ".join(sorted(c[4:] for c in present if c.startswith("val/")))
        raise ConfigError(f"sweep metric {metric!r} is not a validation metric of the trials; they have {have}")
    columns = []
    for split in ("val", "test"):  # the selection metric first, then the others by name
        first = f"{split}/{metric}"
        columns += [first, *sorted(c for c in present if c.startswith(f"{split}/") and c != first)]
    groups = tables.group_rows(rows, [k for k in meta["keys"] if k not in rep], [*columns, "wall_time_s"])
    means = [tables.mean_std(g["values"][columns[0]])[0] if g["values"][columns[0]] else None for g in groups]
    best = tables.best_index(means, mode)
    selected = None
    if best is not None:
        g = groups[best]
        val, val_std = tables.mean_std(g["values"][columns[0]])
        test_values = g["values"][f"test/{metric}"]  # absent only if a task reports other metrics on test
        test, test_std = tables.mean_std(test_values) if test_values else (None, None)
        selected = {
            "name": _group_name(g, bool(rep)),
            # Small validation sets tie often; a reader should know the choice was a tie-break.
            "tied_with": [
                _group_name(h, bool(rep)) for h, m in zip(groups, means, strict=True) if h is not g and m == val
            ],
            "overrides": g["key"],
            "trials": [r["trial"] for r in g["rows"] if r["status"] == "complete"],
            "n": len(g["values"][columns[0]]),
            "validation": val,
            "validation_std": val_std,
            "test": test,
            "test_std": test_std,
        }
    for i, g in enumerate(groups):
        g["selected"] = i == best
    out = {k: meta[k] for k in ("metric", "mode", "keys", "repeat_keys", "log_keys")}
    return {**out, "rows": rows, "columns": columns, "groups": groups, "selected": selected}


def selected_line(res: Mapping[str, Any]) -> str:
    """The one line that reports the selection, and the only test number of the sweep."""
    sel, metric = res["selected"], res["metric"]
    if sel is None:
        return "Selected: none yet, no trial is complete."
    text = {
        k: "n/a" if sel[k] is None else tables.format_mean_std_of(sel[k], sel[f"{k}_std"])
        for k in ("validation", "test")
    }
    n = f"{sel['n']} trial" + ("s" if sel["n"] != 1 else "")
    over = f", mean of {n} over {', '.join(res['repeat_keys'])}" if res["repeat_keys"] else ""
    return (
        f"Selected on validation {metric} ({res['mode']}{over}): {sel['name']}: validation {metric} "
        f"{text['validation']}, test {metric} {text['test']}"
        + (
            f" (tied on validation with {', '.join(sel['tied_with'])}; the first listed wins)"
            if sel["tied_with"]
            else ""
        )
    )


def _markdown(res: Mapping[str, Any], title: str) -> str:
    rows, keys, rep = res["rows"], res["keys"], res["repeat_keys"]
    val_cols = [c for c in res["columns"] if c.startswith("val/")]
    by_state = {s: [r["trial"] for r in rows if r["status"] == s] for s in ("complete", "pending", "diverged")}
    lines = [f"# Sweep {title}", "", f"{len(by_state['complete'])}/{len(rows)} trials complete."]
    lines += [f"{s.capitalize()}: {', '.join(names)}." for s, names in by_state.items() if s != "complete" and names]
    lines += ["", f"**{selected_line(res)}**", "", "Selection reads validation only; test is reported above, once."]
    # Without repeat keys every group is one trial, so the selected trial is marked in the trial table.
    chosen = set() if rep else {r["trial"] for g in res["groups"] if g["selected"] for r in g["rows"]}
    header = ["#", *keys, *(c.replace("/", " ") for c in val_cols), "wall time (s)", "status"]
    body = [
        [i + 1, *(tables.format_value(r[k]) for k in keys), *(r.get(c) for c in val_cols)]
        + [tables.format_value(r.get("wall_time_s"), 1), r["status"] + (" (selected)" if r["trial"] in chosen else "")]
        for i, r in enumerate(rows)
    ]
    lines += [
        "",
        "## Trials",
        "",
        tables.markdown_table(header, body, "r" + "l" * len(keys) + "r" * len(val_cols) + "rl"),
    ]
    if rep:
        columns = [(c, c.replace("/", " "), 4) for c in val_cols] + [("wall_time_s", "wall time (s)", 1)]
        free = [k for k in keys if k not in rep]
        lines += [
            f"## Mean ± sample std over {', '.join(rep)}",
            "",
            tables.grouped_markdown(res["groups"], free, columns),
        ]
    return "\n".join(lines)


def log_axis(values: Sequence[float], log_uniform: bool = False) -> bool:
    """Whether a swept key is plotted on a log axis: drawn log-uniformly, or positive and spanning >= 2 decades."""
    return log_uniform or (min(values) > 0 and max(values) >= 100 * min(values))


def collect(workdir: str | Path) -> dict[str, Any]:
    """Writes sweep.csv, sweep.md and plots/sweep_<key>.png for a sweep workdir; returns :func:`results`.

    Works on a partial sweep: trials not finished are listed as pending.
    """
    workdir = Path(workdir)
    res = results(workdir)
    columns = ["trial", *res["keys"], *res["columns"], "wall_time_s", "status"]
    tables.write_text(workdir / "sweep.csv", tables.csv_text(res["rows"], columns))
    tables.write_text(workdir / "sweep.md", _markdown(res, workdir.name))
    for key in res["keys"]:
        col = f"val/{res['metric']}"
        pts = [(r[key], r[col]) for r in res["rows"] if r["status"] == "complete" and col in r]
        log = (
            bool(pts)
            and all(tables.is_number(x) for x, _ in pts)
            and log_axis([x for x, _ in pts], key in res["log_keys"])
        )
        plots.plot_sweep_key(pts, key, f"validation {res['metric']}", log, workdir / "plots" / f"sweep_{key}.png")
    return res
