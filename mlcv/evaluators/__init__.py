"""Evaluators: plug-in metrics that accumulate over a whole split and compute once.

Each entry of ``config.evals`` names a registered evaluator and its arguments, e.g.
``{"type": "classification"}`` or ``{"type": "average_precision", "positive_class": 1}``;
:func:`build` instantiates it, filling ``num_classes`` / ``class_names`` from the dataset. See
:mod:`mlcv.evaluators.base` for the contract (``batch_fn`` on device inside the jitted eval step,
``update`` on the host per batch, ``result`` once per split, ``reset``).
"""

# The evaluator modules register themselves on import.
from mlcv.evaluators import (  # noqa: F401
    classification,
    detection,
    flow,
    loss,
    ranking,
    retrieval,
    segmentation,
    stereo,
    verification,
)
from mlcv.evaluators.base import Evaluator, SummingEvaluator
from mlcv.evaluators.classification import ClassificationEvaluator
from mlcv.evaluators.detection import DetectionEvaluator
from mlcv.evaluators.flow import FlowEvaluator, flow_to_color
from mlcv.evaluators.loss import LossEvaluator
from mlcv.evaluators.ranking import AveragePrecisionEvaluator, average_precision, precision_recall_curve
from mlcv.evaluators.registry import build, get, names, register
from mlcv.evaluators.retrieval import RetrievalEvaluator
from mlcv.evaluators.segmentation import SegmentationEvaluator, segmentation_scores
from mlcv.evaluators.stereo import DisparityEvaluator
from mlcv.evaluators.verification import VerificationEvaluator

__all__ = [
    "AveragePrecisionEvaluator",
    "ClassificationEvaluator",
    "DetectionEvaluator",
    "DisparityEvaluator",
    "Evaluator",
    "FlowEvaluator",
    "LossEvaluator",
    "RetrievalEvaluator",
    "SegmentationEvaluator",
    "SummingEvaluator",
    "VerificationEvaluator",
    "average_precision",
    "build",
    "flow_to_color",
    "get",
    "names",
    "precision_recall_curve",
    "register",
    "segmentation_scores",
]
