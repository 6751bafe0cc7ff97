"""Datasets by name: the built-in offline datasets and the TFDS catalogue, and what their records hold.

TFDS is the storage: a built-in dataset is a TFDS builder (:mod:`mlcv.data.sources`) prepared once into
the TFDS data dir as ArrayRecord files, and every dataset, built-in or from the catalogue, is read back
as a random-access ``tfds`` data source that the grain pipelines of :mod:`mlcv.data.pipeline` index into.

- :mod:`.registry`: :class:`DatasetSpec`, ``get(name)``, ``source(spec, split)``, ``load_arrays``,
  ``meta(spec)``, ``num_classes(src)``, ``builtin_names()``;
- :mod:`.features`: :class:`Feature` and :class:`DatasetMeta`, the declared contents of records;
- :mod:`.sources`: the built-in datasets' generators and TFDS builders.
"""

from mlcv.data.features import KINDS, DatasetMeta, Feature
from mlcv.data.registry import (
    ROLES,
    DatasetSpec,
    Splits,
    builtin_names,
    get,
    load_arrays,
    meta,
    num_classes,
    register,
    source,
)

__all__ = [
    "KINDS",
    "ROLES",
    "DatasetMeta",
    "DatasetSpec",
    "Feature",
    "Splits",
    "builtin_names",
    "get",
    "load_arrays",
    "meta",
    "num_classes",
    "register",
    "source",
]
