"""k-nearest neighbours: the algorithm lives in :mod:`mlcv.ops.knn`, where evaluators may use it too.

Re-exported here for the classic methods (``classic.methods.knn``, ``classic.methods.bovw``) and their tests;
see :mod:`mlcv.ops.knn` for the tie rules and the chunking.
"""

from mlcv.ops.knn import (  # noqa: F401  (_chunk_neighbours: its compiled shapes are tested)
    _chunk_neighbours,
    grid_accuracy,
    neighbours,
    predict,
    reduced_distances,
    vote,
)

__all__ = ["grid_accuracy", "neighbours", "predict", "reduced_distances", "vote"]
