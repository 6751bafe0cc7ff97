"""The ablation driver: rows over seeds, rows that read other rows' runs, resume, and bad rows."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest

from experiments import digits_ablation, digits_cnn, scenes_detection_ablation, scenes_segmentation
from mlcv.config import ConfigError
from mlcv.orchestration import ablation, cli
from mlcv.orchestration.ablation import Row, RunsOf
from mlcv.training import loop as train
from mlcv.training import runs


def _config():
    config = digits_cnn.get_config("runlocal")
    config.total_steps = 6
    config.eval_every_steps = 6
    config.tensorboard = False
    config.averaging.kind = "ema"
    return config


ROWS = [
    Row("base", "baseline", "runlocal CNN", seeds=(0, 1)),
    Row("lr", "optimizer", "lr 0.01", overrides={"optim.lr": 0.01}, seeds=(0,)),
    Row("ema", "averaging", "EMA", kind="average", source="base", seeds=(0, 1)),
    Row("ens", "ensemble", "2-seed ensemble", kind="ensemble", source="base", size=2, seeds=(0,)),
    Row(
        "student",
        "distillation",
        "distilled",
        overrides={"task": "distillation", "distill.teacher_workdirs": RunsOf("base", (0, 1))},
        seeds=(0,),
    ),
    Row("again", "evaluation", "evaluated again", kind="evaluate", source="base", seeds=(0, 1)),
    Row(
        "few",
        "evaluation",
        "40 test images",
        overrides={"data.test_split": "test[:40]"},
        kind="evaluate",
        source="base",
        seeds=(1,),
    ),
]


def _summary(wd, row, seed):
    return json.loads((ablation.run_dir(wd, row, seed) / "summary.json").read_text())


def test_table_values_and_resume(tmp_path, monkeypatch):
    """Each cell is the mean ± std of the runs' own summaries; a second call trains nothing."""
    wd = tmp_path / "abl"
    order = []
    train_run, evaluate = ablation.mlcv.run, ablation._evaluate
    monkeypatch.setattr(ablation.mlcv, "run", lambda c, out: (order.append(out.parent.name), train_run(c, out))[1])
    monkeypatch.setattr(ablation, "_evaluate", lambda r, s, w: (order.append(f"{r.id} {s}"), evaluate(r, s, w))[1])
    table = ablation.run(_config(), ROWS, wd)
    # Each evaluate row follows the run it reads at once (its checkpoint may go after that), not the last run.
    assert order == ["base", "again 0", "base", "again 1", "few 1", "lr", "student"]
    monkeypatch.undo()
    base = [_summary(wd, "base", s) for s in (0, 1)]
    accs = [100 * s["test"]["accuracy"] for s in base]
    assert table[0][:3] == ["baseline", "runlocal CNN", 2]
    assert table[0][3] == f"{statistics.fmean(accs):.2f} ± {statistics.stdev(accs):.2f}"
    assert table[1][3] == f"{100 * _summary(wd, 'lr', 0)['test']['accuracy']:.2f}"
    ema = [100 * s["test_avg"]["accuracy"] for s in base]
    assert table[2][3] == f"{statistics.fmean(ema):.2f} ± {statistics.stdev(ema):.2f}"
    members = [runs.load_run(ablation.run_dir(wd, "base", s)) for s in (0, 1)]
    assert table[3][3] == f"{100 * runs.evaluate_runs(members)['ensemble']['accuracy']:.2f}"
    student_cfg = json.loads((ablation.run_dir(wd, "student", 0) / "config.json").read_text())
    assert student_cfg["distill"]["teacher_workdirs"] == [str(ablation.run_dir(wd, "base", s)) for s in (0, 1)]
    # An evaluate row with no overrides is each run's own test figure again, through the evaluate path.
    assert table[5][3] == table[0][3]
    # With 40 test images the accuracy is a multiple of 1/40, and the seed's own evaluation.json holds it.
    few = json.loads((ablation.run_dir(wd, "few", 1) / "evaluation.json").read_text())
    assert round(40 * few["test"]["accuracy"], 6) == int(round(40 * few["test"]["accuracy"]))
    assert table[6][3] == f"{100 * few['test']['accuracy']:.2f}"
    assert (wd / "ablation.md").read_text().count("\n| ") == len(ROWS) + 1
    assert (wd / "ablation.png").is_file() and (wd / "ablation.csv").is_file()

    calls = []
    monkeypatch.setattr(train, "run", lambda *a, **k: calls.append(a))
    ablation.run(_config(), ROWS, wd)
    assert calls == []


def test_train_and_evaluate_rows_resume_from_json_records_alone(tmp_path, monkeypatch):
    """With every checkpoint, plot and lock removed (what docs/scenes_detection_ablation commits), the ablation
    trains and evaluates nothing again and writes the same table."""
    import shutil

    rows = [Row("base", "g", "x", seeds=(0,)), Row("again", "g", "y", kind="evaluate", source="base", seeds=(0,))]
    wd = tmp_path / "abl"
    table = ablation.run(_config(), rows, wd)
    kept = {"config.json", "metrics.jsonl", "summary.json", "evaluation.json"}
    for path in sorted(wd.glob("*/seed=0/*"), reverse=True):
        if path.name not in kept:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert {p.name for p in wd.glob("*/seed=0/*")} == kept
    monkeypatch.setattr(ablation.mlcv, "run", lambda *a: pytest.fail("trained again"))
    monkeypatch.setattr(runs, "load_run", lambda *a: pytest.fail("read a checkpoint"))
    assert ablation.run(_config(), rows, wd) == table


def test_a_stopped_ablation_leaves_the_table_of_its_complete_runs(tmp_path, monkeypatch):
    """Stopped after its first run, the table holds that run alone; the rest are blank until resumed."""
    rows = [Row("base", "g", "x", seeds=(0, 1)), Row("again", "g", "y", kind="evaluate", source="base", seeds=(0, 1))]
    rows.append(Row("lr", "g", "z", overrides={"optim.lr": 0.01}, seeds=(0,)))
    wd = tmp_path / "abl"
    train_run, calls = ablation.mlcv.run, []

    def stop_after_one(config, out):
        if calls:
            raise KeyboardInterrupt
        calls.append(out)
        return train_run(config, out)

    monkeypatch.setattr(ablation.mlcv, "run", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        ablation.run(_config(), rows, wd)
    acc = f"{100 * _summary(wd, 'base', 0)['test']['accuracy']:.2f}"
    md = (wd / "ablation.md").read_text()
    assert f"| g | x | 1 | {acc} |" in md and f"| g | y | 1 | {acc} |" in md  # one run: no ± (spread unknown)
    assert "| g | z | 0 |  |  |" in md and "1 of 3 training runs" in md and "Not finished" in md
    monkeypatch.undo()
    table = ablation.run(_config(), rows, wd)
    assert [row[2] for row in table] == [2, 2, 1] and "Not finished" not in (wd / "ablation.md").read_text()


@pytest.mark.parametrize(
    "rows,match",
    [
        ([Row("a", "g", "x"), Row("a", "g", "y")], "repeat"),
        ([Row("a", "g", "x", kind="magic")], "unknown kind"),
        ([Row("e", "g", "x", kind="average", source="nope")], "not a train row"),
        ([Row("a", "g", "x", overrides={"optim.lrr": 0.1})], "optim.lrr"),
        ([Row("a", "g", "x", seeds=(0,)), Row("e", "g", "y", kind="ensemble", source="a", size=2)], "needs"),
        (
            [Row("a", "g", "x", seeds=(0,)), Row("e", "g", "y", kind="evaluate", source="a", seeds=(1,))],
            "does not train",
        ),
        ([Row("a", "g", "x"), Row("e", "g", "y", kind="evaluate", source="a", overrides={"nms": 0.1})], "'nms'"),
    ],
)
def test_bad_rows_are_refused_before_any_run(rows, match, tmp_path):
    """Duplicate ids, unknown kinds, dangling sources, unknown keys, too few runs: ConfigError, nothing written."""
    with pytest.raises(ConfigError, match=match):
        ablation.run(_config(), rows, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_table_shows_the_metrics_a_task_reports_beside_its_headline(tmp_path):
    """A detector's table: AP, then AP50 and AP75 (``headline_metric.also``), each the mean ± std over seeds."""
    tests = {0: {"ap": 0.50, "ap50": 0.80, "ap75": 0.40}, 1: {"ap": 0.60, "ap50": 0.90, "ap75": None}}
    headline = {"name": "ap", "mode": "max", "percent": True, "also": {"ap50": True, "ap75": True}}
    for seed, test in tests.items():
        out = ablation.run_dir(tmp_path, "base", seed)
        out.mkdir(parents=True)
        summary = {"headline_metric": headline, "validation": test, "test": test, "wall_time_s": 10.0 + seed}
        (out / "summary.json").write_text(json.dumps(summary))
        # The NMS row: the same runs evaluated again, AP75 measured this time.
        evaluation = {"test": {"ap": 0.4, "ap50": 0.7 + 0.1 * seed, "ap75": 0.2}, "wall_time_s": 2.0}
        (ablation.run_dir(tmp_path, "nms", seed) / "evaluation.json").parent.mkdir(parents=True)
        (ablation.run_dir(tmp_path, "nms", seed) / "evaluation.json").write_text(json.dumps(evaluation))
    rows = [Row("base", "detector", "RetinaNet"), Row("nms", "NMS", "0.3", kind="evaluate", source="base")]
    rows = [dataclasses.replace(r, seeds=(0, 1)) for r in rows]
    table, stats, columns = ablation._table(rows, tmp_path)
    assert columns == ["ap (%)", "ap50 (%)", "ap75 (%)"]
    # By hand: AP 50 and 60 -> 55.00 ± 7.07 (sample std 10 / sqrt 2); AP75 of seed 1 is missing -> one value.
    assert table[0] == ["detector", "RetinaNet", 2, "55.00 ± 7.07", "85.00 ± 7.07", "40.00", "10"]
    assert table[1] == ["NMS", "0.3", 2, "40.00 ± 0.00", "75.00 ± 7.07", "20.00 ± 0.00", "2"]
    assert stats[0] == pytest.approx(("detector: RetinaNet", 55.0, 7.0710678))


@pytest.mark.parametrize(
    "module", [digits_ablation, scenes_detection_ablation, scenes_segmentation], ids=lambda m: m.__name__
)
def test_ablation_files_are_consistent(module):
    """The committed ablations' rows pass the checks against their base config (keys exist, sources resolve)."""
    for arg in (None, "runlocal"):
        ablation.check(module.get_ablation(arg), module.get_config(arg))


EXPERIMENT = """
from experiments import digits_cnn
from mlcv.orchestration.ablation import Row


def get_config(arg=None):
    config = digits_cnn.get_config("runlocal")
    config.total_steps = 4
    config.eval_every_steps = 4
    config.tensorboard = False
    return config


def get_ablation(arg=None):
    return [Row("base", "baseline", "tiny", seeds=(0,))]
"""


def test_launcher_runs_an_ablation_file(tmp_path, capsys):
    """--sweep on a file with get_ablation runs the rows and writes ablation.md; a shard is refused."""
    path = tmp_path / "tiny_ablation.py"
    path.write_text(EXPERIMENT)
    namespace = {}
    exec(compile(EXPERIMENT, str(path), "exec"), namespace)
    config = namespace["get_config"]()
    wd = tmp_path / "abl"
    assert cli.main(config, str(wd), config_path=str(path), sweep=True) == 0
    assert "| baseline | tiny | 1 |" in (wd / "ablation.md").read_text()
    assert cli.main(config, str(wd), config_path=str(path), sweep=True, sweep_shard="0/2") == 2
    assert "--sweep_shard applies to sweeps" in capsys.readouterr().err


def test_finished_runs_of_another_config_are_refused(tmp_path):
    """After the base config changes, the old runs are not silently mixed into the new table."""
    rows = [Row("base", "baseline", "tiny", seeds=(0,))]
    config = _config()
    config.total_steps = 2
    config.eval_every_steps = 2
    ablation.run(config, rows, tmp_path / "abl")
    config.optim.lr = 0.5
    with pytest.raises(ConfigError, match="different config"):
        ablation.run(config, rows, tmp_path / "abl")
