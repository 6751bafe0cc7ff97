"""Class-filtered splits: a TFDS split string with options that keep some classes, and some images of each.

Metric learning tests on classes that training never saw (open-set), so its splits are sets of classes, which
TFDS split strings cannot say. A split string here is a TFDS split, optionally followed by ``|`` options::

    "train+test|classes=0:100|images=:90%"

- ``classes=A:B``: the records whose label id lies in ``[A, B)``. ``A`` and ``B`` are ids, or percentages of the
  class count (``"50%"``, rounded half up); either may be left out (``:50%``, ``100:``).
- ``images=C%:D%``: of each kept class, the images at positions ``[round(n C / 100), round(n D / 100))`` of its ``n``
  in record order: ``:90%`` and ``90%:`` part every class 9 : 1, a stratified hold-out of seen classes' images
  (so not class-disjoint). TFDS stores records in a fixed shuffled order, so this is the same on every machine.
- ``min_images=N``: after the two above, drops the classes left with fewer than ``N`` images (P x K batches of
  :class:`~mlcv.data.samplers.IdentitySampler` need ``N = K``).

A label that is a name (a TFDS ``Text`` feature, as LFW's person names) is mapped to ids by sorted unique name
over the whole TFDS split, and the records carry that id in its place, with or without options.

Cost: the filter needs every label of the TFDS split. It reads them once, skipping the decoding of images (each
record is read and parsed, no JPEG is decoded), and caches them in ``mlcv-labels-<hash>.json`` beside the
ArrayRecord files of a prepared dataset (the TFDS version directory, so a new version reads them again). Where that
directory cannot be written (or under ``tfds.testing.mock_data``, whose records have no files) every process pays
the read; for a catalogue dataset of 10-20 thousand photographs that is seconds, not minutes.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlcv.config import ConfigError

_OPTIONS = ("classes", "images", "min_images")
_SPLIT_KEYS = "config.data.train_split / validation_split / test_split"
_CHUNK = 1024  # records read at once when reading labels


@dataclasses.dataclass(frozen=True)
class ClassOptions:
    """The parsed options of a split string (see the module docstring).

    Attributes:
      classes: the bounds ``(A, B)`` of the kept label ids; each an int id, a float percentage of the class count,
        or None (open).
      images: the bounds ``(C, D)`` in percent of each class's images; None keeps them all.
      min_images: the fewest images a kept class must have; 0 keeps every class.
      text: the option string as written, for messages.
    """

    classes: tuple[int | float | None, int | float | None] = (None, None)
    images: tuple[float, float] | None = None
    min_images: int = 0
    text: str = ""


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def _bound(text: str, split: str, *, percent_only: bool) -> int | float | None:
    text = text.strip()
    if not text:
        return None
    try:
        if text.endswith("%"):
            value = float(text[:-1])
            if 0 <= value <= 100:
                return value
        elif not percent_only and int(text) >= 0:
            return int(text)
    except ValueError:
        pass
    want = "a percentage 0%..100%" if percent_only else "a class id >= 0 or a percentage 0%..100%"
    raise ConfigError(f"split {split!r} ({_SPLIT_KEYS}): bound {text!r} is not {want}")


def parse(split: str) -> tuple[str, ClassOptions | None]:
    """The TFDS split of a split string and its class-filter options (None when it has none).

    Raises:
      ConfigError: an unknown option or a malformed value, naming the split string.
    """
    base, *parts = str(split).split("|")
    if not parts:
        return split, None
    if not base.strip():
        raise ConfigError(f"split {split!r} ({_SPLIT_KEYS}): no TFDS split before the first '|'")
    kw: dict[str, Any] = {"text": "|".join(parts)}
    for part in parts:
        key, eq, value = part.partition("=")
        key = key.strip()
        if key not in _OPTIONS or not eq:
            raise ConfigError(
                f"split {split!r} ({_SPLIT_KEYS}): {part!r} is not an option; the options are "
                "classes=A:B, images=C%:D% and min_images=N"
            )
        if key in kw:
            raise ConfigError(f"split {split!r} ({_SPLIT_KEYS}): {key} given twice")
        if key == "min_images":
            if not value.strip().isdigit():
                raise ConfigError(f"split {split!r} ({_SPLIT_KEYS}): min_images={value} is not a count")
            kw[key] = int(value)
            continue
        lo, colon, hi = value.partition(":")
        if not colon:
            raise ConfigError(f"split {split!r} ({_SPLIT_KEYS}): {key}={value} is not a range A:B")
        bounds = (_bound(lo, split, percent_only=key == "images"), _bound(hi, split, percent_only=key == "images"))
        kw[key] = bounds if key == "classes" else (bounds[0] or 0.0, 100.0 if bounds[1] is None else bounds[1])
    return base.strip(), ClassOptions(**kw)


def _is_text(values: np.ndarray) -> bool:
    return values.dtype.kind in "OSU"


def _label_feature(source: Any, label_key: str) -> Any:
    features = getattr(getattr(source, "dataset_info", None), "features", None)
    try:
        return None if features is None else features[label_key]
    except (KeyError, TypeError):
        return None


def _cache_path(source: Any, label_key: str) -> str | None:
    """Where the labels of a prepared TFDS split are cached: beside its ArrayRecord files, if they are on disk."""
    info, split = getattr(source, "dataset_info", None), getattr(source, "split", None)
    data_dir = str(getattr(info, "data_dir", "") or "")
    if split is None or not os.path.isdir(data_dir) or not glob.glob(os.path.join(data_dir, "*.array_record*")):
        return None
    digest = hashlib.sha1(f"{split}|{label_key}".encode()).hexdigest()[:12]
    return os.path.join(data_dir, f"mlcv-labels-{digest}.json")


def _plain(value: Any) -> Any:
    value = np.asarray(value).item() if not isinstance(value, str | bytes) else value
    return value.decode() if isinstance(value, bytes) else value


def _read_raw(source: Any, label_key: str) -> list[Any]:
    """Labels of a TFDS data source from its raw records, its images left undecoded."""
    import tensorflow_datasets as tfds

    features = source.dataset_info.features
    skip = {k: tfds.decode.SkipDecoding() for k, f in features.items() if isinstance(f, tfds.features.Image)}
    skip.pop(label_key, None)
    raw_source = source.data_source
    # Looked up on the type: tfds.testing.mock_data sets an instance attribute that is not a working method.
    getitems = getattr(type(raw_source), "__getitems__", None)
    out = []
    for start in range(0, len(source), _CHUNK):
        keys = list(range(start, min(start + _CHUNK, len(source))))
        records = getitems(raw_source, keys) if getitems is not None else [raw_source[k] for k in keys]
        out.extend(_plain(features.deserialize_example_np(r, decoders=skip)[label_key]) for r in records)
    return out


def read_labels(source: Any, label_key: str = "label") -> np.ndarray:
    """The label of every record of ``source``, in record order.

    A :class:`ClassFilteredSource` has them already; a TFDS data source's are read without decoding images and
    cached beside its files (module docstring); any other sequence of records is read record by record.
    """
    if isinstance(source, ClassFilteredSource):
        return source.labels
    if not (hasattr(source, "data_source") and hasattr(getattr(source, "dataset_info", None), "features")):
        return np.asarray([_plain(source[i][label_key]) for i in range(len(source))])
    path = _cache_path(source, label_key)
    if path is not None and os.path.exists(path):
        with open(path) as f:
            cached = json.load(f)
        if cached.get("split") == str(source.split) and cached.get("num_records") == len(source):
            return np.asarray(cached["labels"])
    labels = _read_raw(source, label_key)
    if path is not None:
        try:
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump({"split": str(source.split), "num_records": len(labels), "labels": labels}, f)
            os.replace(tmp, path)  # atomic: processes that read it together see one whole file
        except OSError:
            pass  # a read-only data dir: every run reads the labels again
    return np.asarray(labels)


def _select(ids: np.ndarray, options: ClassOptions, num_classes: int) -> np.ndarray:
    """Indices (in record order) of the records the options keep, given each record's label id."""

    def bound(b: int | float | None, default: int) -> int:
        if b is None:
            return default
        return _round(num_classes * b / 100) if isinstance(b, float) else b

    keep = np.flatnonzero((ids >= bound(options.classes[0], 0)) & (ids < bound(options.classes[1], num_classes)))
    if options.images is not None or options.min_images:
        order = keep[np.argsort(ids[keep], kind="stable")]  # grouped by class, record order within
        _, starts, counts = np.unique(ids[order], return_index=True, return_counts=True)
        n = np.repeat(counts, counts)
        position = np.arange(len(order)) - np.repeat(starts, counts)
        lo, hi = options.images or (0.0, 100.0)
        mask = (position >= np.floor(n * lo / 100 + 0.5)) & (position < np.floor(n * hi / 100 + 0.5))
        kept, kept_ids = order[mask], ids[order[mask]]
        classes, per_class = np.unique(kept_ids, return_counts=True)
        keep = np.sort(kept[np.isin(kept_ids, classes[per_class >= options.min_images])])
    return keep


class ClassFilteredSource:
    """The records of a data source that a split string's options keep, as a random-access source.

    Records keep their order; a name label (a ``Text`` feature) becomes its id, the rank of the name among the
    split's sorted unique names (``class_names``). Built on first use, so opening one (``meta`` reads only its
    ``dataset_info``) reads no labels.

    Args:
      source: the TFDS data source of the whole split (or any sequence of dict records).
      options: the parsed options; None keeps every record (to map names to ids).
      label_key: the record key holding the class.
    """

    def __init__(self, source: Sequence[dict[str, Any]], options: ClassOptions | None, label_key: str = "label"):
        self.source = source
        self.options = options
        self.label_key = label_key
        self._built: tuple[np.ndarray, np.ndarray, tuple[str, ...] | None] | None = None

    @property
    def dataset_info(self) -> Any:
        """The TFDS ``dataset_info`` of the wrapped source."""
        return self.source.dataset_info

    def _build(self) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
        if self._built is None:
            values = read_labels(self.source, self.label_key)
            names = None
            if _is_text(values):
                names_array, ids = np.unique(values.astype(str), return_inverse=True)
                names, num_classes = tuple(names_array.tolist()), len(names_array)
            else:
                ids = values.astype(np.int64)
                feature = _label_feature(self.source, self.label_key)
                num_classes = int(getattr(feature, "num_classes", 0) or (ids.max(initial=-1) + 1))
            ids = ids.astype(np.int64).reshape(-1)
            index = np.arange(len(ids)) if self.options is None else _select(ids, self.options, num_classes)
            self._built = (index, ids[index], names)
        return self._built

    @property
    def indices(self) -> np.ndarray:
        """The kept records' indices into the wrapped source."""
        return self._build()[0]

    @property
    def labels(self) -> np.ndarray:
        """The kept records' label ids (int64), in order."""
        return self._build()[1]

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """For a name label: every name of the split in id order; else None (the ClassLabel names them)."""
        return self._build()[2]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} of a class-filtered source of {len(self)} records")
        record = dict(self.source[int(self.indices[index])])
        if self.class_names is not None:
            record[self.label_key] = np.int64(self.labels[index])
        return record

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self[i] for i in indices]

    def __getstate__(self) -> dict[str, Any]:
        self._build()  # grain workers get the index instead of reading the labels again
        return dict(self.__dict__)

    def __repr__(self) -> str:
        text = self.options.text if self.options is not None else "names to ids"
        return f"ClassFilteredSource({text!r}, label_key={self.label_key!r}, of {self.source!r})"


def wrap(source: Any, options: ClassOptions | None, label_key: str = "label") -> Any:
    """``source`` filtered by ``options`` (a :class:`ClassFilteredSource`), or as it is when there are none and
    its label is not a name."""
    import tensorflow_datasets as tfds

    if options is None and not isinstance(_label_feature(source, label_key), tfds.features.Text):
        return source
    return ClassFilteredSource(source, options, label_key)
