"""Every bad value ends in exit 2 and one ``error:`` line naming the key (or path) and the range, before
anything is written; a full disk ends in one line naming the path; a run at chance ends with a warning.

Most cases go through :func:`mlcv.orchestration.cli.main` in-process, which is what ``launch.py`` calls
once its flags are parsed: they fail before any data is read or JAX computes, so the whole file stays
fast. A few run ``launch.py`` itself, to cover the flag parsing in front of it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import textwrap

import ml_collections
import pytest
from conftest import ROOT, launch_cmd

from experiments import digits_cnn
from mlcv import config as config_lib
from mlcv.config import ConfigError
from mlcv.orchestration import cli, failures
from mlcv.training import checkpoint, sanity, setup

CONFIG_PATH = "experiments/digits_cnn.py:runlocal"

# key -> (bad value, what the error line must also say). Each is set on the runlocal digits config.
BAD = {
    "data.batch_size": (0, "an integer >= 1"),
    "data.batch_size ": (-1, "an integer >= 1"),  # the trailing space only makes the id unique
    "data.batch_size  ": (5000, "[1, 1257]"),  # more than the training examples
    "data.eval_batch_size": (0, "an integer >= 1"),
    "total_steps": (-5, "an integer >= 1"),
    "total_steps ": (0, "an integer >= 1"),
    "total_epochs": (-1.0, "a finite number > 0"),
    "eval_every_steps": (0, "an integer >= 1"),
    "eval_every_steps ": (-3, "an integer >= 1"),
    "log_every_steps": (0, "an integer >= 1"),
    "checkpoint.keep": (0, "an integer >= 1"),
    "checkpoint.every_steps": (0, "an integer >= 1"),
    "optim.lr": (float("nan"), "a finite number > 0"),
    "optim.lr ": (float("inf"), "a finite number > 0"),
    "optim.lr  ": (-1.0, "a finite number > 0"),
    "optim.warmup_steps": (-1, "an integer >= 0"),
    "optim.weight_decay": (-0.1, "a finite number >= 0"),
    "optim.momentum": (1.5, "[0, 1)"),
    "optim.cycles": (0, "an integer >= 1"),
    "model.dropout": (1.5, "[0, 1)"),
    "label_smoothing": (2.0, "[0, 1)"),
    # Grain's sampler refuses a negative seed (JAX would take it): refused up front, not mid-start.
    "seed": (-1, "[0, 4294967295]"),
    "early_stopping.patience_evals": (-1, "an integer >= 0"),
    "early_stopping.metric": ("foo", "not a metric of the evaluators"),
    "model.features": (("abc",), "Sequence[int]"),  # a model kwarg of the wrong type
}


def _set(config, key: str, value) -> None:
    *path, last = key.strip().split(".")
    for part in path:
        config = config[part]
    config[last] = value


def _main(capsys, config, workdir) -> tuple[int, list[str]]:
    """``cli.main`` as ``launch.py`` runs it: the exit status and the stderr lines."""
    rc = cli.main(config, str(workdir), config_path=CONFIG_PATH)
    return rc, capsys.readouterr().err.splitlines()


def _one_error(lines: list[str]) -> str:
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, lines
    assert not any("Traceback" in ln for ln in lines), lines
    return errors[0]


@pytest.mark.parametrize("key", list(BAD))
def test_bad_value_fails_before_anything_is_written(key, tmp_path, capsys):
    """Exit 2, one line naming the key, its value and the accepted range; the workdir never appears."""
    value, needle = BAD[key]
    config = digits_cnn.get_config("runlocal")
    _set(config, key, value)
    rc, lines = _main(capsys, config, tmp_path / "run")
    assert rc == 2, lines
    line = _one_error(lines)
    assert f"config.{key.strip()}=" in line and needle in line, line
    assert not (tmp_path / "run").exists()


def test_unset_duration_names_both_keys(tmp_path, capsys):
    config = digits_cnn.get_config("runlocal")
    config.total_epochs = None
    rc, lines = _main(capsys, config, tmp_path / "run")
    assert rc == 2 and "config.total_steps and config.total_epochs are both unset" in _one_error(lines)


@pytest.mark.parametrize("override", ["--config.data.batch_size=0", "--config.optim.lr=nan"])
def test_launch_bad_value(override, tmp_path):
    """The issue's own commands, through launch.py's flag parsing."""
    wd = tmp_path / "run"
    proc = subprocess.run(
        launch_cmd(f"--config={CONFIG_PATH}", override, f"--workdir={wd}"), cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [_one_error(proc.stderr.splitlines())]
    assert override.removeprefix("--") in proc.stderr
    assert not wd.exists()


def _workdirs(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    return {
        "existing_file": (a_file, "it exists and is not a directory"),
        "parent_is_a_file": (a_file / "run", "is a file, not a directory"),
        "no_permission": (tmp_path / "locked" / "run", "Permission denied"),
        "proc": ("/proc/mlcv-test-run", "cannot write /proc/"),  # only an attempt reveals it
    }


@pytest.mark.parametrize("case", ["existing_file", "parent_is_a_file", "no_permission", "proc"])
def test_unusable_workdir(case, tmp_path, capsys, monkeypatch):
    """One line naming the path and the cause, exit 2, nothing created."""
    path, needle = _workdirs(tmp_path)[case]
    if case == "no_permission":
        # Tests run as root, for whom chmod does not bar writing: os.access answers as for a plain user.
        (tmp_path / "locked").mkdir()
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if "locked" in str(p) else real_access(p, mode))
    if case == "proc" and not os.path.isdir("/proc"):
        pytest.skip("no /proc")
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, lines = _main(capsys, digits_cnn.get_config("runlocal"), path)
    assert rc == 2, lines
    line = _one_error(lines)
    assert f"cannot write {path}" in line and needle in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_check_workdir_accepts_a_new_path(tmp_path):
    failures.check_workdir(tmp_path / "a" / "b")  # nothing raised, nothing created
    assert not (tmp_path / "a").exists()


def _disk_full(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_write_failures(tmp_path):
    """A full disk is a failure mid-run (exit 1); a path that cannot be used is a bad --workdir (exit 2)."""
    from mlcv.workdirs import WorkdirError

    summary = tmp_path / "run" / "summary.json"
    for e in (WorkdirError(summary, _disk_full(summary)), _disk_full(summary)):
        assert failures.write_failure(e, "wd") == (
            f"cannot write {summary}: no space left on device; free space and re-run to resume",
            1,
        )
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS), str(summary))
    assert failures.write_failure(read_only, "wd") == (f"cannot write {summary}: Read-only file system", 2)
    assert failures.write_failure(ValueError("RESOURCE_EXHAUSTED: Out of memory"), "wd") is None


def test_disk_full_during_a_checkpoint_save(tmp_path, capsys, monkeypatch):
    """Orbax's RESOURCE_EXHAUSTED at the second save: one line naming the file; the first checkpoint stays."""
    wd = tmp_path / "run"
    real_save = checkpoint.Checkpoints.save
    saves = []

    def save(self, step, *args, **kwargs):
        saves.append(step)
        if len(saves) == 2:
            self.wait()  # the first save is committed, as one is when a later one finds the disk full
            # Tensorstore's wording of ENOSPC, as orbax re-raises it.
            target = wd / "checkpoints" / f"{step}.orbax-checkpoint-tmp" / "_sharding"
            raise ValueError(
                f'RESOURCE_EXHAUSTED: Error writing local file "{target}": Failed to write 9645 bytes to '
                "file 11: No space left on device [os_error_code='28']"
            )
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpoint.Checkpoints, "save", save)
    config = digits_cnn.get_config("runlocal")
    config.update(total_steps=4, eval_every_steps=2, log_every_steps=2, tensorboard=False)
    # A linear model and one train-step executable compile in a fraction of the CNN's time.
    config.model = ml_collections.ConfigDict({"name": "linear"})
    config.split_train_step = "never"
    rc, lines = _main(capsys, config, wd)
    assert rc == 1, lines
    line = _one_error(lines)
    assert "checkpoints/4.orbax-checkpoint-tmp" in line and "no space left on device" in line, line
    assert (wd / "checkpoints" / "2").is_dir()


def test_disk_full_logs_are_quieted():
    """Orbax's logged copies of the error are dropped; other records pass."""
    import logging

    f = failures._DiskFullLogFilter()
    record = logging.LogRecord("absl", logging.ERROR, "x.py", 1, "save failed", None, None)
    assert f.filter(record)
    try:
        raise ValueError('RESOURCE_EXHAUSTED: Error writing local file "/x": No space left on device')
    except ValueError as e:
        record.exc_info = (ValueError, e, e.__traceback__)
    assert not f.filter(record)


BAD_FILES = {
    # Assigning a key a locked config does not have.
    "locked": ("config.lock()\n    config.optim.lrr = 1", "unknown config key 'lrr'"),
    # Reading a key that does not exist.
    "missing": ("config.total_steps = config.optim.lrr", "unknown config key 'lrr'"),
    # Any other mistake of the file.
    "type_error": ('config.total_steps = "x" + 1', "TypeError"),
}


def _experiment(tmp_path, body: str):
    path = tmp_path / "bad_experiment.py"
    path.write_text(
        textwrap.dedent(
            """\
            from mlcv import defaults


            def get_config(arg=None):
                config = defaults.classification(defaults.data("digits"), {"name": "cnn"})
                BODY
                return config
            """
        ).replace("BODY", body)
    )
    return path


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_mistake_in_a_config_file_names_the_file_and_line(case, tmp_path):
    """Not reported as a bad override: the line says where in the experiment file."""
    body, needle = BAD_FILES[case]
    path = _experiment(tmp_path, body)
    import importlib.util

    spec = importlib.util.spec_from_file_location("bad_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["launch.py", f"--config={path}", "--config.optim.lr=0.1"]
    with pytest.raises(Exception) as info:
        module.get_config()
    line = cli._explain(info.value, argv)
    assert line.startswith(f"{path}:{6 + body.count(chr(10))}: ") and needle in line, line
    assert "override" not in line


def test_launch_mistake_in_a_config_file(tmp_path):
    """The same through launch.py, where ml_collections loads the file while parsing the flags."""
    path = _experiment(tmp_path, BAD_FILES["locked"][0])
    wd = tmp_path / "run"
    proc = subprocess.run(
        launch_cmd(f"--config={path}", "--config.optim.lr=0.1", f"--workdir={wd}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f'error: {path}:7: unknown config key \'lrr\' (did you mean "lr" instead of "lrr"?)'
    ]
    assert not wd.exists()


def test_ranges_read_as_written():
    assert str(config_lib.POSITIVE_INT) == "an integer >= 1"
    assert str(config_lib.FRACTION) == "a number in [0, 1)"
    assert str(config_lib.Range(0, 2**32 - 1, integer=True)) == "an integer in [0, 4294967295]"
    assert not config_lib.POSITIVE.accepts(True) and not config_lib.POSITIVE.accepts(float("inf"))
    assert config_lib.POSITIVE_INT.accepts(3.0) and not config_lib.POSITIVE_INT.accepts(2.5)


def test_model_field_types():
    """Values are checked against the model's declared field types; unknown kinds pass."""
    from mlcv.models.cnn import SmallCNN

    model = SmallCNN(num_classes=10)
    setup.check_model_fields({"name": "cnn", "features": [16, 32], "dropout": 0, "norm": "none"}, model)
    for key, value in (("features", (16, "x")), ("dense", 1.5), ("norm", "lyer")):
        with pytest.raises(ConfigError, match=f"config.model.{key}="):
            setup.check_model_fields({"name": "cnn", key: value}, model)


def test_not_learned():
    """A metric within 10 % of chance is at chance, in either direction; unknown metrics are not judged."""
    chance, directions = {"accuracy": 0.1, "err": 1.0}, {"accuracy": "max", "err": "min"}
    assert "accuracy 0.105" in sanity.not_learned({"accuracy": 0.105}, chance, directions)
    assert sanity.not_learned({"accuracy": 0.5, "err": 0.5}, chance, directions) is None
    assert "err" in sanity.not_learned({"accuracy": 0.5, "err": 0.95}, chance, directions)
    assert sanity.not_learned({"loss": 9.0}, chance, directions) is None


def test_warn_if_not_learned_records_the_warning():
    """Adam at lr=1e6 on digits: validation accuracy 12.2 %, mean class accuracy exactly chance."""

    class Task:
        def chance(self):
            return {"accuracy": 0.1, "mean_class_accuracy": 0.1}

    said = []
    summary = {"validation": {"accuracy": 0.1222, "mean_class_accuracy": 0.1, "loss": 2.3e6}}
    sanity.warn_if_not_learned(summary, Task(), {"accuracy": "max", "mean_class_accuracy": "max"}, said.append)
    assert said == [f"warning: {summary['warnings'][0]}"] and "did not learn" in said[0]
    learned = {"validation": {"accuracy": 0.9, "mean_class_accuracy": 0.9}, "validation_avg": {"accuracy": 0.1}}
    sanity.warn_if_not_learned(learned, Task(), {}, said.append)
    assert "warnings" not in learned and len(said) == 1


def test_classification_chance():
    from mlcv.tasks.classification import ClassificationTask

    task = ClassificationTask.__new__(ClassificationTask)  # chance reads only the meta
    task.meta = type("Meta", (), {"num_classes": 4})()
    assert task.chance() == {"accuracy": 0.25, "mean_class_accuracy": 0.25}
