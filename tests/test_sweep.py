"""Sweeps: trial expansion, names, overrides, shards, resume after an interruption, the results table, the launcher."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, launch_cmd

from experiments import digits_cnn
from mlcv.config import ConfigError
from mlcv.orchestration import cli, sweep
from mlcv.orchestration import sweep_table as sweep_results
from mlcv.training import loop as train

# ---------------------------------------------------------------- expansion


def test_grid_is_the_cartesian_product_in_listed_order():
    spec = {"type": "grid", "params": {"optim.lr": [1e-3, 3e-3], "seed": [0, 1, 2]}}
    assert sweep.trials(spec) == [
        {"optim.lr": 1e-3, "seed": 0},
        {"optim.lr": 1e-3, "seed": 1},
        {"optim.lr": 1e-3, "seed": 2},
        {"optim.lr": 3e-3, "seed": 0},
        {"optim.lr": 3e-3, "seed": 1},
        {"optim.lr": 3e-3, "seed": 2},
    ]
    assert sweep.repeat_keys(spec) == ["seed"]


def test_grid_repeat_is_crossed_innermost():
    spec = {"type": "grid", "params": {"model.dense": [8, 16]}, "repeat": {"seed": [5, 6]}}
    assert sweep.trials(spec) == [
        {"model.dense": 8, "seed": 5},
        {"model.dense": 8, "seed": 6},
        {"model.dense": 16, "seed": 5},
        {"model.dense": 16, "seed": 6},
    ]


RANDOM = {
    "type": "random",
    "num_trials": 200,
    "seed": 0,
    "params": {
        "optim.lr": ("log_uniform", 1e-4, 1e-1),
        "model.dropout": ("uniform", 0.0, 0.5),
        "model.convs_per_stage": ("int_uniform", 1, 3),
        "optim.name": ("choice", ["sgd", "adam"]),
    },
}


def test_random_draws_stay_in_bounds_and_are_reproducible():
    draws = sweep.trials(RANDOM)
    assert len(draws) == 200
    assert draws == sweep.trials(dict(RANDOM))  # same sweep seed, same trials
    assert draws != sweep.trials({**RANDOM, "seed": 1})
    lrs = [d["optim.lr"] for d in draws]
    assert all(1e-4 <= x <= 1e-1 for x in lrs)
    # Log-uniform over three decades puts about a third of the draws in each;
    # a plain uniform would put 90 % in the top decade.
    per_decade = [sum(lo <= x < lo * 10 for x in lrs) for lo in (1e-4, 1e-3, 1e-2)]
    assert all(count >= 40 for count in per_decade), per_decade
    drops = [d["model.dropout"] for d in draws]
    assert all(0.0 <= x <= 0.5 for x in drops)
    assert sum(x < 0.25 for x in drops) >= 70 and sum(x >= 0.25 for x in drops) >= 70
    assert {d["model.convs_per_stage"] for d in draws} == {1, 2, 3}
    assert {d["optim.name"] for d in draws} == {"sgd", "adam"}
    assert all(type(d["optim.lr"]) is float and type(d["model.convs_per_stage"]) is int for d in draws)


def test_random_repeat_crosses_every_draw():
    spec = {**RANDOM, "num_trials": 4, "repeat": {"seed": [0, 1, 2]}}
    out = sweep.trials(spec)
    assert len(out) == 4 * 3
    assert [t["seed"] for t in out] == [0, 1, 2] * 4
    draws = sweep.trials({**RANDOM, "num_trials": 4})
    for i, draw in enumerate(draws):  # the repeats leave the draws themselves unchanged
        assert [{k: t[k] for k in draw} for t in out[3 * i : 3 * i + 3]] == [draw] * 3


BAD_SWEEPS = {
    "unknown_distribution": (
        {**RANDOM, "params": {"optim.lr": ("loguniform", 1e-4, 1e-1)}},
        ["'optim.lr'", "loguniform"],
    ),
    "log_of_zero": ({**RANDOM, "params": {"optim.lr": ("log_uniform", 0.0, 1e-1)}}, ["'optim.lr'", "0 < low"]),
    "no_distribution": ({**RANDOM, "params": {"model.dropout": [0.1, 0.2]}}, ["'model.dropout'", "distribution"]),
    "empty_grid": ({"type": "grid", "params": {"optim.lr": []}}, ["'optim.lr'", "non-empty"]),
    "unknown_sweep_key": ({"type": "grid", "params": {"seed": [0]}, "num_trails": 3}, ["'num_trails'"]),
    "unknown_type": ({"type": "bayes", "params": {"seed": [0]}}, ["'bayes'"]),
    "bad_mode": ({"type": "grid", "params": {"seed": [0]}, "mode": "maximum"}, ["'mode'", "maximum"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SWEEPS))
def test_malformed_sweeps_raise_naming_the_key(case):
    spec, needles = BAD_SWEEPS[case]
    with pytest.raises(ConfigError) as e:
        sweep.trials(spec)
    for needle in needles:
        assert needle in str(e.value)


# ---------------------------------------------------------------- names and overrides


def test_trial_names_are_readable_stable_distinct_and_safe():
    assert sweep.trial_name({"optim.lr": 0.003, "seed": 1}) == "optim.lr=0.003,seed=1"
    assert sweep.trial_name({"optim.lr": 1e-05, "optim.name": "adam"}) == "optim.lr=1e-05,optim.name=adam"
    names = [sweep.trial_name(t) for t in sweep.trials(RANDOM)]
    assert names == [sweep.trial_name(t) for t in sweep.trials(RANDOM)]
    assert len(set(names)) == len(names)
    odd = [
        {"data.pp_train": "flip_lr|random_crop(8, pad=1)"},
        {"data.pp_train": "flip_lr|random_crop(8, pad=2)"},
        {"model.features": (16, 32)},
        {"data.data_dir": "/a/b"},
        {"data.data_dir": "_a_b"},
        {"optim.lr": 0.1, "data.pp_train": "x" * 200},
        {"optim.lr": 0.1, "data.pp_train": "x" * 199 + "y"},
    ]
    odd_names = [sweep.trial_name(o) for o in odd]
    assert len(set(odd_names)) == len(odd)
    for name in odd_names + names:
        assert re.fullmatch(r"[A-Za-z0-9._+=,~-]+", name) and len(name) <= 100, name
    assert odd_names[4] == "data.data_dir=_a_b"  # exact, so no hash
    assert re.fullmatch(r"data\.data_dir=_a_b~[0-9a-f]{8}", odd_names[3])


def _base():
    config = digits_cnn.get_config("runlocal")
    config.total_steps = 4
    config.eval_every_steps = 4
    config.tensorboard = False
    config.lock()  # as launch.py hands it over
    return config


def test_apply_sets_values_on_a_copy():
    base = _base()
    out = sweep.apply(base, {"optim.lr": 0.1, "model.features": (8, 8), "seed": 3, "total_steps": 7})
    assert (out.optim.lr, out.model.features, out.seed, out.total_steps) == (0.1, (8, 8), 3, 7)
    assert (base.optim.lr, base.seed, base.total_steps) == (3e-3, 0, 4)
    assert out.is_locked


@pytest.mark.parametrize(
    "overrides, needles",
    [
        ({"optim.lr": "fast"}, ["'optim.lr'", "fast"]),
        ({"model.convs_per_stage": 1.5}, ["'model.convs_per_stage'"]),
        ({"optim.lrr": 0.1}, ["'optim.lrr'", "not in the config", "'optim.lr'"]),
        ({"nosuch.lr": 0.1}, ["'nosuch.lr'", "not in the config"]),
        ({"optim": 0.1}, ["'optim'", "section"]),
    ],
)
def test_apply_rejects_bad_keys_and_types(overrides, needles):
    with pytest.raises(ConfigError) as e:
        sweep.apply(_base(), overrides)
    for needle in needles:
        assert needle in str(e.value)


def test_a_mapping_replaces_a_whole_section():
    """An ablation row that swaps the model gives the section's new keys only, and the base is untouched."""
    base = _base()
    out = sweep.apply(base, {"model": {"name": "mlp", "hidden": (16,)}, "model.hidden": (8,)})
    assert out.model.to_dict() == {"name": "mlp", "hidden": (8,)}
    assert base.model.name != "mlp" and "hidden" not in base.model


def test_shards_partition_the_trials():
    items = list(range(11))
    for n in (1, 2, 3, 4, 11, 12):
        shards = [sweep.shard_of(items, (i, n)) for i in range(n)]
        assert sorted(x for s in shards for x in s) == items  # union is all, and no item twice
        for i, s in enumerate(shards):
            assert s == [x for x in items if x % n == i]
    assert sweep.shard_of(items, (1, 4)) == [1, 5, 9]
    for bad in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ConfigError):
            sweep.shard_of(items, bad)
    assert cli.parse_shard("1/4") == (1, 4) and cli.parse_shard(" 0 / 1 ") == (0, 1)
    for text in ("3/2", "2/2", "1", "a/b", "-1/2", "1/0", ""):
        with pytest.raises(ConfigError, match="--sweep_shard"):
            cli.parse_shard(text)


def test_log_axis_for_log_uniform_keys_and_wide_ranges():
    assert sweep_results.log_axis([1e-3, 3e-3, 1e-2]) is False  # one decade
    assert sweep_results.log_axis([1e-3, 1e-2, 1e-1]) is True  # two
    assert sweep_results.log_axis([0.002, 0.003], log_uniform=True) is True
    assert sweep_results.log_axis([0, 1, 1000]) is False  # zero has no place on a log axis


# ---------------------------------------------------------------- running (fast: train.run replaced)


class _FakeTrain:
    """Stands in for train.run: writes a summary whose numbers depend on lr and seed, and records each call."""

    def __init__(self, diverge_lr: float | None = None):
        self.calls: list[str] = []
        self.diverge_lr = diverge_lr

    def __call__(self, config, workdir):
        wd = Path(workdir)
        self.calls.append(wd.name)
        wd.mkdir(parents=True, exist_ok=True)
        (wd / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))
        if config.optim.lr == self.diverge_lr:
            raise train.NonFiniteError("non-finite train/loss (nan) at step 3; stopped.")
        acc = 0.5 + config.optim.lr + 0.01 * config.seed
        summary = {
            "validation": {"accuracy": acc, "loss": 1 - acc},
            "test": {"accuracy": acc - 0.1, "loss": 1.1 - acc},
            "wall_time_s": 2.0,
        }
        (wd / "summary.json").write_text(json.dumps(summary))
        return summary


def test_bad_sweep_fails_before_any_trial_runs(tmp_path, monkeypatch):
    fake = _FakeTrain()
    monkeypatch.setattr(train, "run", fake)
    for params in ({"optim.lrr": [0.1]}, {"optim.lr": [0.1, "fast"]}, {"seed": [0, 1.5]}):
        with pytest.raises(ConfigError, match=re.escape(repr(next(iter(params))))):
            sweep.run(_base(), {"type": "grid", "params": params}, tmp_path / "wd")
    assert fake.calls == [] and not (tmp_path / "wd").exists()


def test_diverged_trial_is_recorded_and_not_retried(tmp_path, monkeypatch):
    fake = _FakeTrain(diverge_lr=0.25)
    monkeypatch.setattr(train, "run", fake)
    spec = {"type": "grid", "params": {"optim.lr": [0.125, 0.25]}, "metric": "loss", "mode": "min"}
    records = sweep.run(_base(), spec, tmp_path)
    assert [r["status"] for r in records] == ["complete", "diverged"]
    assert sweep.run(_base(), spec, tmp_path)[1]["ran"] is False
    assert fake.calls == ["optim.lr=0.125", "optim.lr=0.25"]
    md = (tmp_path / "sweep.md").read_text()
    assert "Diverged: optim.lr=0.25." in md
    # No repeat keys: the selected trial is marked in the trial table, and there is no grouped table.
    assert "complete (selected)" in md and "Mean ±" not in md
    res = sweep_results.results(tmp_path)
    assert res["selected"]["name"] == "optim.lr=0.125" and res["selected"]["test"] == pytest.approx(0.475)


def test_a_tie_on_validation_goes_to_the_first_and_is_said(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "run", _FakeTrain())  # its scores ignore model.dense: both groups tie
    sweep.run(_base(), {"type": "grid", "params": {"model.dense": [16, 8]}, "repeat": {"seed": [0, 1]}}, tmp_path)
    selected = sweep_results.results(tmp_path)["selected"]
    assert selected["name"] == "model.dense=16" and selected["tied_with"] == ["model.dense=8"]
    assert "(tied on validation with model.dense=8; the first listed wins)" in (tmp_path / "sweep.md").read_text()


def test_a_changed_base_config_is_not_mixed_with_finished_trials(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "run", _FakeTrain())
    spec = {"type": "grid", "params": {"seed": [0]}}
    sweep.run(_base(), spec, tmp_path)
    changed = _base()
    changed.unlock().total_steps = 8
    with pytest.raises(ConfigError, match=r"different config \(keys total_steps\)"):
        sweep.run(changed, spec, tmp_path)


def _experiment_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_sweep.py"
    path.write_text(
        textwrap.dedent(
            """
            from experiments import digits_cnn
            from mlcv.config import parse_arg

            def get_config(arg=None):
                parse_arg(arg, lrs=3, key="optim.lr")
                return digits_cnn.get_config("runlocal")

            def get_sweep(arg=None):
                args = parse_arg(arg, lrs=3, key="optim.lr")
                lrs = [0.125, 0.25, 0.375][: args.lrs]
                return {"type": "grid", "params": {args.key: lrs}, "repeat": {"seed": [0, 1]}}
            """
        )
    )
    return path


def test_cli_runs_the_sweep_of_the_config_file_with_its_arg(tmp_path, monkeypatch, capsys):
    fake = _FakeTrain()
    monkeypatch.setattr(train, "run", fake)
    monkeypatch.chdir(tmp_path)
    path = _experiment_file(tmp_path)
    assert cli.main(_base(), None, config_path=f"{path}:lrs=2", sweep=True, sweep_shard="1/2") == 0
    assert fake.calls == ["optim.lr=0.125,seed=1", "optim.lr=0.25,seed=1"]  # lrs=2 reached get_sweep
    out = capsys.readouterr().out
    assert "2/4 trials complete (2 run now)" in out and "Selected on validation accuracy" in out
    assert (tmp_path / "runs" / "tiny_sweep_sweep" / "sweep.md").is_file()


# ---------------------------------------------------------------- a real sweep, interrupted and resumed

GRID = {"type": "grid", "params": {"optim.lr": [1e-3, 1e-2], "seed": [0, 1]}}
NAMES = ["optim.lr=0.001,seed=0", "optim.lr=0.001,seed=1", "optim.lr=0.01,seed=0", "optim.lr=0.01,seed=1"]


@pytest.fixture(scope="module")
def interrupted_sweep(tmp_path_factory):
    """Runs shard 0/2 of four real trials, then the whole sweep, then again after losing one summary."""
    wd = tmp_path_factory.mktemp("sweep")
    calls: list[list[str]] = []
    real_run = train.run

    def counting_run(config, workdir):
        calls[-1].append(Path(workdir).name)
        return real_run(config, workdir)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "run", counting_run)
        calls.append([])
        sweep.run(_base(), GRID, wd, shard=(0, 2))
        partial = sweep_results.results(wd)
        calls.append([])
        sweep.run(_base(), GRID, wd)
        first = json.loads((wd / NAMES[0] / "summary.json").read_text())
        (wd / NAMES[0] / "summary.json").unlink()  # as if killed after training, before the summary
        calls.append([])
        records = sweep.run(_base(), GRID, wd)
    return {"wd": wd, "calls": calls, "partial": partial, "first": first, "records": records}


def test_only_missing_trials_run_again(interrupted_sweep):
    calls, records = interrupted_sweep["calls"], interrupted_sweep["records"]
    assert calls == [[NAMES[0], NAMES[2]], [NAMES[1], NAMES[3]], [NAMES[0]]]
    assert [r["ran"] for r in records] == [True, False, False, False]
    assert all(r["status"] == "complete" for r in records)
    # The trial resumed from its checkpoint and re-evaluated to the same numbers.
    again = json.loads((interrupted_sweep["wd"] / NAMES[0] / "summary.json").read_text())
    assert again["validation"] == pytest.approx(interrupted_sweep["first"]["validation"])
    assert again["step"] == 4


def test_partial_sweep_lists_pending_trials(interrupted_sweep):
    partial = interrupted_sweep["partial"]
    assert [r["status"] for r in partial["rows"]] == ["complete", "pending", "complete", "pending"]
    assert partial["selected"]["n"] == 1


def test_results_table_matches_the_trial_summaries(interrupted_sweep):
    wd = interrupted_sweep["wd"]
    summaries = [json.loads((wd / n / "summary.json").read_text()) for n in NAMES]
    with open(wd / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == NAMES and all(r["status"] == "complete" for r in rows)
    for row, s in zip(rows, summaries, strict=True):
        assert float(row["val/accuracy"]) == pytest.approx(s["validation"]["accuracy"])
        assert float(row["test/accuracy"]) == pytest.approx(s["test"]["accuracy"])
        assert float(row["wall_time_s"]) == pytest.approx(s["wall_time_s"])

    md = (wd / "sweep.md").read_text()
    groups = {"0.001": summaries[:2], "0.01": summaries[2:]}
    val = {lr: [s["validation"]["accuracy"] for s in g] for lr, g in groups.items()}
    lines = {lr: next(ln for ln in md.splitlines() if ln.startswith(f"| {lr} | 2/2 |")) for lr in groups}
    for lr, (a, b) in val.items():
        mean, std = (a + b) / 2, abs(a - b) / math.sqrt(2)  # the sample std of two values
        assert f"| {mean:.4f} ± {std:.4f} |" in lines[lr], (lines[lr], mean, std)
    best = max(groups, key=lambda lr: (statistics.fmean(val[lr]), lr == "0.001"))  # a tie goes to the first
    assert lines[best].endswith("**selected** |")
    assert sum("**selected**" in ln for ln in md.splitlines()) == 1

    selected = sweep_results.results(wd)["selected"]
    test = [s["test"]["accuracy"] for s in groups[best]]
    assert selected["name"] == f"optim.lr={best}"
    assert selected["test"] == pytest.approx(statistics.fmean(test))
    assert selected["test_std"] == pytest.approx(statistics.stdev(test))
    # The test split appears in one line only: the selection's.
    assert [ln for ln in md.splitlines() if "test accuracy" in ln] == [
        f"**{sweep_results.selected_line(sweep_results.results(wd))}**"
    ]
    assert f"test accuracy {statistics.fmean(test):.4f} ± {statistics.stdev(test):.4f}" in md
    for key in ("optim.lr", "seed"):
        assert (wd / "plots" / f"sweep_{key}.png").stat().st_size > 1000


# ---------------------------------------------------------------- the launcher


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--config=experiments/digits_cnn.py", "--sweep"], "defines no get_sweep"),
        (["--config=experiments/digits_sweep.py", "--sweep", "--sweep_shard=3/2"], "--sweep_shard=3/2"),
        (["--config=experiments/digits_sweep.py", "--sweep", "--sweep_shard=half"], "--sweep_shard='half'"),
        (["--config=experiments/digits_sweep.py", "--sweep_shard=0/2"], "needs --sweep"),
        (["--config={tiny}:key=optim.lrr", "--sweep"], "sweep key 'optim.lrr' is not in the config"),
    ],
)
def test_launcher_refuses_bad_sweeps_in_one_line(args, needle, tmp_path):
    tiny = _experiment_file(tmp_path)
    wd = tmp_path / "wd"
    args = [a.format(tiny=tiny) for a in args]
    proc = subprocess.run(launch_cmd(*args, f"--workdir={wd}"), cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not wd.exists()
