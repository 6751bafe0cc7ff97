"""Training recipes inside a run: snapshot ensembles, cycle averaging, schedules in epochs, schedule plots."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss

from experiments import digits_cnn
from mlcv import data, models
from mlcv.report import read_metrics
from mlcv.training import loop as train
from mlcv.training.checkpoint import read_state


def _config(steps: int):
    config = digits_cnn.get_config("runlocal")
    config.total_steps = steps
    config.eval_every_steps = steps
    config.log_every_steps = 1
    config.tensorboard = False
    return config


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_snapshot_ensemble_and_cycle_average(tmp_path):
    """Three cosine cycles: snapshots at 8, 16, 24 are kept and ensembled; the cycle average is their mean.

    The members' and the ensemble's test metrics are recomputed from the saved snapshot checkpoints: each member's
    model applied (eval mode) to the raw test split normalised by hand, softmax in numpy, the ensemble the mean
    of the members' probabilities; accuracy, mean class accuracy and cross-entropy by scikit-learn.
    """
    config = _config(24)
    config.optim.schedule = "cosine_restarts"
    config.optim.cycles = 3
    config.snapshot_ensemble = True
    config.averaging.kind = "cycle"
    config.checkpoint.keep = 1
    wd = tmp_path / "snap"
    summary = train.run(config, wd)
    ens = summary["test_snapshot_ensemble"]
    assert [m["step"] for m in ens["members"]] == [8, 16, 24]
    snaps = [read_state(wd / "checkpoints" / str(s)) for s in (8, 16, 24)]
    test = data.load_arrays("digits", "test")
    norm = data.get("digits").op_defaults["normalize"]  # the pp_eval "normalize"'s mean and std of the pixels
    x = (test["image"].astype(np.float32) - norm["mean"]) / norm["std"]
    model = models.from_config(config.model, num_classes=10)
    probs = [
        _softmax(np.asarray(model.apply({"params": s["params"], "batch_stats": s["batch_stats"]}, x), np.float64))
        for s in snaps
    ]
    y = test["label"]
    for got, p in [*zip(ens["members"], probs, strict=True), (ens["ensemble"], np.mean(probs, axis=0))]:
        assert got["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(-1)))
        assert got["mean_class_accuracy"] == pytest.approx(balanced_accuracy_score(y, p.argmax(-1)))
        assert got["loss"] == pytest.approx(log_loss(y, p, labels=range(10)), rel=1e-4)
    expected = jax.tree.map(lambda *xs: np.mean(xs, axis=0), *[s["params"] for s in snaps])
    got = snaps[-1]["avg"]["params"]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert int(snaps[-1]["avg"]["count"]) == 3
    assert (wd / "plots" / "schedule.png").is_file()
    # The logged lr restarts at the start of each cycle.
    lrs = {r["step"]: r["lr"] for r in read_metrics(wd / "metrics.jsonl") if "lr" in r}
    assert lrs[9] == pytest.approx(lrs[1]) and lrs[17] == pytest.approx(lrs[1])


def test_step_schedule_in_epochs(tmp_path):
    """milestones_epochs=(1,) divides the lr by 10 after one epoch (19 steps of 64 on 1,257 images)."""
    config = _config(25)
    config.optim.schedule = "step"
    config.optim.milestones_epochs = (1.0,)
    summary = train.run(config, tmp_path / "step")
    assert summary["step"] == 25
    lrs = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "step" / "metrics.jsonl") if "lr" in r}
    lr = config.optim.lr
    # The record of step s logs the lr that step s used, i.e. the schedule at s - 1.
    assert lrs[19] == pytest.approx(lr) and lrs[20] == pytest.approx(lr / 10)


def test_plateau_divides_lr_and_checkpoints_the_factor(tmp_path):
    """An unreachable min_delta makes every eval after the first a plateau: lr x 0.1 after steps 6 and 9."""
    config = _config(12)
    config.eval_every_steps = 3
    config.optim.schedule = "constant"
    config.optim.plateau_factor = 0.1
    config.optim.plateau_patience_evals = 1
    config.optim.plateau_min_delta = 1e9
    wd = tmp_path / "plateau"
    train.run(config, wd)
    lrs = {r["step"]: r["lr"] for r in read_metrics(wd / "metrics.jsonl") if "lr" in r}
    lr = config.optim.lr
    assert [lrs[s] for s in (1, 6)] == pytest.approx([lr, lr])
    assert lrs[7] == pytest.approx(lr * 0.1) and lrs[10] == pytest.approx(lr * 0.01)
    # The factor after the eval of step 12 (x 0.001) is in that step's checkpoint.
    state = read_state(wd / "checkpoints" / "12")
    assert float(jax.tree.leaves(state["opt_state"])[-1]) == pytest.approx(1e-3)


def test_newton_trains_the_linear_model_and_refuses_a_cnn(tmp_path):
    """Newton steps (damping 0.1) train the 650-parameter linear model; a 30k-parameter CNN is refused."""
    from experiments import digits_linear
    from mlcv.config import ConfigError

    config = digits_linear.get_config("runlocal")
    config.optim.name = "newton"
    config.optim.lr = 1.0
    config.optim.schedule = "constant"
    config.data.batch_size = 256
    config.total_steps = 6
    config.eval_every_steps = 6
    config.tensorboard = False
    assert train.run(config, tmp_path / "linear")["test"]["accuracy"] > 0.8
    cnn = _config(2)
    cnn.optim.name = "newton"
    with pytest.raises(ConfigError, match="full Hessian"):
        train.run(cnn, tmp_path / "cnn")


def test_bfloat16_computes_in_bf16_and_keeps_float32_state(tmp_path):
    """config.dtype='bfloat16': parameters and optimizer state stay float32; losses track float32 to bf16 precision."""
    runs = {}
    for dtype in ("float32", "bfloat16"):
        config = _config(4)
        config.dtype = dtype
        train.run(config, tmp_path / dtype)
        runs[dtype] = [r["train/loss"] for r in read_metrics(tmp_path / dtype / "metrics.jsonl") if "train/loss" in r]
    state = read_state(tmp_path / "bfloat16" / "checkpoints" / "4")
    assert {str(x.dtype) for x in jax.tree.leaves(state["params"])} == {"float32"}
    assert {str(x.dtype) for x in jax.tree.leaves(state["opt_state"]) if x.ndim} == {"float32"}
    # bf16 keeps 8 bits of mantissa: about 0.4 % relative error per operation.
    np.testing.assert_allclose(runs["bfloat16"], runs["float32"], rtol=0.05)
    assert runs["bfloat16"] != runs["float32"]  # the computation really ran in another precision
