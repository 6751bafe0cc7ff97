"""Learning curves: the region rule on hand-made errors, the report of a hand-made ablation workdir, the experiment."""

from __future__ import annotations

import json

import pytest

from experiments import digits_learning_curves
from mlcv.config import ConfigError
from mlcv.orchestration import ablation
from mlcv.orchestration import learning_curves as lc

# (size, width) -> (training accuracy, validation accuracy) per seed, written by hand. The reference is the
# least validation error, (1000, 16): 3 %, gap 3 points, so over-fitting needs a gap above 5.
FAKE = {
    (1000, 1): [(0.50, 0.45), (0.60, 0.55)],  # training error 45 %, gap 5: under-fitting
    (1000, 4): [(0.95, 0.90), (0.95, 0.90)],  # training 5 >= gap 5: under-fitting
    (1000, 16): [(1.00, 0.97), (1.00, 0.97)],  # the reference
    (1000, 64): [(1.00, 0.965), (1.00, 0.965)],  # gap 3.5
    (1000, 256): [(1.00, 0.94), (1.00, 0.94)],  # gap 6 > 5: over-fitting
    (100, 16): [(1.00, 0.80), (1.00, 0.80)],  # gap 20: over-fitting
    (300, 16): [(1.00, 0.965), (1.00, 0.965)],  # gap 3.5
}


def test_regions_by_hand():
    # Under: training error >= max(1, gap). Over: otherwise, gap > reference gap + 2.
    assert lc.regions([45, 5, 0, 0, 0], [50, 10, 3, 3.5, 6], reference_gap=3) == ["under", "under", "", "", "over"]
    # 0.5 % training error under a 0.2-point gap is below the 1-point floor: a good fit, not under-fitting.
    assert lc.regions([0.5, 0], [0.7, 1], reference_gap=0) == ["", ""]
    # A small model that memorises its few images over-fits too (width 8 on 100 digits).
    assert lc.regions([0.33], [19.63], reference_gap=1.11) == ["over"]


@pytest.fixture
def fake_workdir(tmp_path):
    for (n, w), seeds in FAKE.items():
        for s, (train, val) in enumerate(seeds):
            run = tmp_path / "sweep" / f"size={n},width={w}" / f"seed={s}"
            run.mkdir(parents=True)
            summary = {"train": {"accuracy": train}, "validation": {"accuracy": val}, "test": {"accuracy": val}}
            (run / "summary.json").write_text(json.dumps(summary))
    return tmp_path / "sweep"


def test_report_of_a_fake_ablation(fake_workdir, tmp_path):
    png = tmp_path / "plot.png"
    width, size = lc.write(fake_workdir, png)  # (1000, 16) is on both; no curve at size 100: one width
    assert (width.key, width.fixed, width.x) == ("width", {"size": 1000}, [1, 4, 16, 64, 256])
    assert width.train[0] == pytest.approx((45.0, 7.0711), abs=1e-3) and width.seeds == [2] * 5
    assert width.regions == ["under", "under", "", "", "over"]
    assert (size.key, size.fixed, size.x, size.regions) == ("size", {"width": 16}, [100, 300, 1000], ["over", "", ""])
    assert png.stat().st_size > 10_000
    table = (fake_workdir / "learning_curves.md").read_text()
    assert table.startswith("Reference (least mean validation error): 1000 training images, width 16, gap 3.00")
    assert "| 1 | 2 | 45.00 ± 7.07 | 50.00 ± 7.07 | 5.00 | under |" in table


def test_runs_without_training_metrics_are_refused(fake_workdir):
    summary = fake_workdir / "size=100,width=16" / "seed=0" / "summary.json"
    summary.write_text(json.dumps({"validation": {"accuracy": 0.8}, "test": {"accuracy": 0.8}}))
    with pytest.raises(ConfigError, match="evaluate_train"):
        lc.read(fake_workdir)


def test_the_experiment_resolves():
    for arg in (None, "runlocal"):
        config = digits_learning_curves.get_config(arg)
        rows = digits_learning_curves.get_ablation(arg)
        ablation.check(rows, config)  # every override is a key of the config, with its type
        assert all(lc._point(r.id) for r in rows) and config.evaluate_train
    assert len(rows) == 4 and rows[0].seeds == (0,) and config.total_steps == 20
