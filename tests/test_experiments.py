"""Experiment files resolve to the configs of the snapshot, and stay short, readable and independent.

``tests/data/experiment_configs.json`` holds, for every experiment file and every arg the repo uses
(tests, README, docstrings), what ``get_config(arg)`` (and ``get_sweep``/``get_ablation``) resolved to
when the files were rewritten on ``mlcv.defaults``: the values (``to_dict()``, tuples as lists) and the
type of every leaf (so ``5`` against ``5.0``, ``()`` against ``[]`` or a placeholder against ``None``
count as changes). A change of a resolved config is meant to be deliberate: rewrite the snapshot with
``python tests/test_experiments.py --write`` in the same commit and say why in its message.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import ml_collections
import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "data" / "experiment_configs.json"
EXPERIMENTS = ROOT / "experiments"

# experiment -> the args it is run with somewhere in the repo (None: no arg).
CASES: dict[str, tuple[str | None, ...]] = {
    "digits_cnn": (None, "runlocal"),
    "bodies_fcn": (None, "runlocal"),
    "bodies_unet": (None, "runlocal"),
    "bodies_deeplab": (None, "runlocal"),
    "scenes_centernet": (None, "runlocal"),
    "scenes_localization": (None, "runlocal"),
    "digits_linear": (None, "runlocal", "loss=rmse", "loss=rmse,runlocal"),
    "digits_mlp": (None, "runlocal", "activation=sigmoid"),
    "digits_ablation": (None, "runlocal"),
    "digits_sweep": (None, "runlocal"),
    "digits_knn": (None, "runlocal"),
    "faces_bovw": (None, "runlocal"),
    "faces_viola_jones": (None, "runlocal"),
    "bodies_forest": (None, "runlocal"),
    "motorcycle_block_matching": (None, "runlocal"),
    "cifar_resnet": (
        None,
        "depth=20",
        "depth=32",
        "depth=44",
        "depth=56",
        "depth=110",
        "depth=20,runlocal",
        "depth=56,runlocal",
        "depth=110,runlocal",
    ),
    "imagenet_resnet50": (None, "runlocal", "schedule=step", "schedule=step,label_smoothing=0.0"),
    "scenes_retinanet": (None, "runlocal"),
    "scenes_yolov3": (None, "runlocal"),
    "scenes_detection_ablation": (None, "runlocal", "steps=1000"),
    "retinanet_r50_fpn": (
        None,
        "runlocal",
        "dataset=coco",
        "dataset=voc",
        "dataset=coco,runlocal",
        "dataset=voc,runlocal",
    ),
    "scenes_rcnn": (None, "runlocal"),
    "scenes_fast_rcnn": (None, "runlocal"),
    "scenes_faster_rcnn": (None, "runlocal"),
    "scenes_mask_rcnn": (None, "runlocal"),
    "faster_rcnn_r50_fpn": (None, "runlocal", "dataset=coco", "dataset=voc", "dataset=coco,runlocal"),
    "scenes_segmentation": (
        None,
        "runlocal",
        "model=fcn16s",
        "model=fcn8s",
        "model=unet",
        "model=deeplab",
        "model=deeplab,runlocal",
    ),
    "digits_metric_learning": (None, "runlocal", *(f"method={m},runlocal" for m in ("arcface", "deepface"))),
    "faces_verification": (None, "runlocal", "loss=arcface"),
    "planes_stereo": (
        None,
        *(
            f"model={m}{r}"
            for m in ("dispnet", "gcnet", "monodepth", "mccnn_fast", "mccnn_accurate")
            for r in ("", ",runlocal")
        ),
    ),
    "planes_monodepth_ablation": (None, "runlocal"),
    "layers_flownet": (None, "runlocal"),
    "course_tables": ("alexnet", "vgg16", "googlenet"),
    "digits_learning_curves": (None, "runlocal"),
    "circles_polar": (None, "runlocal", "features=polar", "features=polar,runlocal"),
    "retrieval_catalogue": (
        None,
        "runlocal",
        "dataset=cars",
        "dataset=lfw",
        "dataset=cub,runlocal",
        "dataset=cars,runlocal",
        "dataset=lfw,runlocal",
    ),
}
# Longer than MAX_LINES on purpose: an ablation's table is its rows; Viola-Jones documents a detector
# whose every stage of training, mining and grouping has keys of its own.
MAX_LINES = 60
LONG_FILES = {
    "digits_ablation",
    "digits_metric_learning",
    "faces_viola_jones",
    "scenes_detection_ablation",
    "scenes_segmentation",
}
PAPER_RECIPES = ("cifar_resnet", "imagenet_resnet50", "retinanet_r50_fpn", "faster_rcnn_r50_fpn")


def _types(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, str]:
    """The type of every leaf of ``config``, placeholders as ``placeholder(<type>)``."""
    out = {}
    for key, value in config._fields.items():  # the raw fields: FieldReferences are not resolved
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            out.update(_types(value, path + "."))
        elif isinstance(value, ml_collections.FieldReference):
            out[path] = f"placeholder({value.get_type().__name__})"
        else:
            out[path] = type(value).__name__
    return out


def _jsonable(value: Any) -> Any:
    """``value`` as the snapshot stores it: tuples as lists, dataclasses as dicts, through JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"not serialisable: {value!r}")


def resolve(name: str, arg: str | None) -> dict[str, Any]:
    """What experiment ``name`` resolves to with ``arg``: config values and types, sweep, ablation rows."""
    module = importlib.import_module(f"experiments.{name}")
    config = module.get_config(arg)
    out = {"config": _jsonable(config.to_dict()), "types": _types(config)}
    if hasattr(module, "get_sweep"):
        out["sweep"] = _jsonable(module.get_sweep(arg))
    if hasattr(module, "get_ablation"):
        out["ablation"] = [_jsonable(row) for row in module.get_ablation(arg)]
    return out


def resolve_all() -> dict[str, dict[str, Any]]:
    """Every case of :data:`CASES`, keyed ``"<experiment>:<arg>"``."""
    return {f"{name}:{arg or ''}": resolve(name, arg) for name, args in CASES.items() for arg in args}


def _equal(a: Any, b: Any) -> bool:
    """Equality that holds NaN equal to itself (JSON has no other way to say it)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _snapshot() -> dict[str, Any]:
    return json.loads(SNAPSHOT.read_text())


@pytest.mark.parametrize("case", [f"{n}:{a or ''}" for n, args in CASES.items() for a in args])
def test_experiment_resolves_to_the_snapshot(case):
    """``get_config(arg)`` (and get_sweep / get_ablation) give exactly the snapshot's values and types."""
    name, _, arg = case.partition(":")
    got = resolve(name, arg or None)
    want = _snapshot()[case]
    for part in want:
        if part == "types":
            assert got[part] == want[part], f"{case}: leaf types differ"
        else:
            diffs = _diff(got[part], want[part])
            assert not diffs, f"{case} {part} differs from the snapshot:\n" + "\n".join(diffs[:20])
    assert got.keys() == want.keys()


def _diff(got: Any, want: Any, path: str = "") -> list[str]:
    """Human-readable differences between two JSON values."""
    if isinstance(got, dict) and isinstance(want, dict):
        out = [f"{path}{k}: missing" for k in want.keys() - got.keys()]
        out += [f"{path}{k}: not in the snapshot" for k in got.keys() - want.keys()]
        for k in want.keys() & got.keys():
            out += _diff(got[k], want[k], f"{path}{k}.")
        return out
    return [] if _equal(got, want) else [f"{path.rstrip('.')}: {got!r} != snapshot {want!r}"]


def test_snapshot_covers_every_experiment_file():
    """Every experiment file has cases, and the snapshot holds exactly the cases listed here."""
    files = {p.stem for p in EXPERIMENTS.glob("*.py")} - {"__init__"}
    assert files == set(CASES)
    assert set(_snapshot()) == {f"{n}:{a or ''}" for n, args in CASES.items() for a in args}


@pytest.mark.parametrize("name", sorted(set(CASES) - LONG_FILES))
def test_experiment_file_is_short(name):
    """A config file reads in one screen; the exceptions are listed in LONG_FILES with their reason."""
    lines = (EXPERIMENTS / f"{name}.py").read_text().count("\n")
    assert lines <= MAX_LINES, f"experiments/{name}.py has {lines} lines (at most {MAX_LINES})"


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_paper_recipes_do_not_start_from_the_digits_default(name):
    """A paper recipe is built on mlcv.defaults, so a change of the digits CNN's default cannot move it."""
    tree = ast.parse((EXPERIMENTS / f"{name}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported |= {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert not {m for m in imported if m.startswith("experiments")}, imported
    assert "mlcv.defaults" in imported


def test_defaults_load_without_jax():
    """mlcv.defaults and the config files of the learned models import neither JAX nor TensorFlow."""
    code = (
        "import sys; import mlcv.defaults; "
        "from experiments import digits_cnn, digits_linear, digits_mlp, cifar_resnet, imagenet_resnet50; "
        "bad = [m for m in ('jax', 'tensorflow', 'flax', 'optax') if m in sys.modules]; "
        "assert not bad, bad"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_experiments.py --write   # rewrites the snapshot")
    sys.path.insert(0, str(ROOT))
    SNAPSHOT.write_text(json.dumps(resolve_all(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
