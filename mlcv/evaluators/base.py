"""The contract every evaluator follows.

An evaluator turns a model's outputs over a whole split into metrics. It
splits the work between the device and the host, because the eval step is
one jitted function while some metrics (average precision, retrieval
recall) need every example of the split before anything can be computed:

1. :meth:`Evaluator.batch_fn` runs inside the jitted eval step, once per
   batch. It is pure and jittable and returns a small pytree of arrays:
   already reduced over the batch where the metric allows (sums, counts, a
   confusion matrix), per-example arrays where it does not (scores).
2. The loop fetches that pytree with ``jax.device_get`` and hands it to
   :meth:`Evaluator.update`, which accumulates on the host.
3. After the last batch, :meth:`Evaluator.result` computes the metrics once:
   ``(scalars, extras)``.
4. :meth:`Evaluator.reset` readies the evaluator for the next pass.

Fitting on another split: an evaluator whose metric needs something learned from data other than the
split it scores (a verification threshold chosen on validation, the weights of a learned distance fitted on
train) lists those splits' roles in :attr:`Evaluator.fit_roles`. Before the final test pass the training loop
evaluates each of those roles, in the order train, validation, and after the pass's last :meth:`Evaluator.update`,
before :meth:`Evaluator.result` and :meth:`Evaluator.reset`, calls :meth:`Evaluator.fit` with the role; the
evaluator fits from its own accumulated state and keeps what it fitted through later resets.

Padding: the last batch of a split is padded to the batch size, padded rows
having ``batch["mask"] == 0``. An evaluator must leave them out, either by
weighting them with the mask in ``batch_fn`` or by dropping them in
``update``; then no metric depends on how the split was batched.

A new evaluator subclasses :class:`Evaluator` (or :class:`SummingEvaluator`
when its state is a sum over batches), declares :attr:`Evaluator.directions`
and :attr:`Evaluator.percent`, takes its config keys as constructor keyword
arguments, and registers itself with ``@mlcv.evaluators.register("name")``.
Constructor arguments named ``num_classes`` and ``class_names`` are filled
from the dataset's metadata when the config leaves them out.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import jax
import numpy as np


class Evaluator(abc.ABC):
    """Accumulates what a family of metrics needs over a split, then computes them once.

    Subclasses leave the evaluator reset at the end of their constructor, so
    that a freshly built one is ready for its first pass.
    """

    #: Every scalar that :meth:`result` returns, mapped to ``"max"`` or ``"min"``: which way is
    #: better. Model selection and early stopping read it; e.g. ``{"accuracy": "max"}``.
    directions: ClassVar[dict[str, str]] = {}
    #: The scalars that are fractions in [0, 1] and are shown as percentages in reports.
    percent: ClassVar[frozenset[str]] = frozenset()
    #: Scalars that a healthy run never leaves non-finite: a NaN on validation stops the run
    #: (the loss does; an average precision without positives is NaN for a legitimate reason).
    must_be_finite: ClassVar[frozenset[str]] = frozenset()
    #: The roles (``"train"``, ``"validation"``) whose passes :meth:`fit` learns from, in the order the loop
    #: evaluates them (train first). Empty for an evaluator that fits nothing; an instance may set its own.
    fit_roles: tuple[str, ...] = ()

    @abc.abstractmethod
    def batch_fn(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> Any:
        """What the device computes from one batch; runs traced inside the jitted eval step.

        Args:
          outputs: the task's forward outputs for the batch, e.g. ``{"logits": [B, C], "loss": [B]}``.
          batch: the batch's arrays, including ``"mask"`` ([B], 0 marks a padded row).

        Returns:
          A pytree of arrays, small enough to fetch every batch. It must be a pure function of
          its arguments and of the evaluator's constructor settings (never of accumulated state).
        """

    @abc.abstractmethod
    def reset(self) -> None:
        """Forgets everything accumulated, ready for a new pass over a split."""

    @abc.abstractmethod
    def update(self, fetched: Any) -> None:
        """Accumulates one batch on the host: ``fetched`` is ``jax.device_get(batch_fn(...))``."""

    @abc.abstractmethod
    def result(self) -> tuple[dict[str, float], dict[str, Any]]:
        """The metrics over everything accumulated since the last reset.

        Returns:
          ``(scalars, extras)``: ``scalars`` maps each name in :attr:`directions` to a Python
          float (NaN where the split leaves it undefined); ``extras`` holds JSON-able non-scalar
          results (lists, nested lists, numbers) such as per-class values or curves.
        """

    def fit(self, role: str) -> None:
        """Learns what later passes use from the pass over ``role`` just accumulated (one of :attr:`fit_roles`).

        Called after that pass's last :meth:`update` and before its :meth:`result` and :meth:`reset`; what it
        fits survives :meth:`reset` and applies to every later pass. The default fits nothing.
        """
        del role  # nothing to fit unless a subclass declares fit_roles

    def plot(self, extras: Mapping[str, Any], directory: Path, prefix: str) -> list[Path]:
        """Draws figures of ``extras`` (as :meth:`result` returned them) into ``directory``.

        File names should contain ``prefix`` (the split, e.g. ``"test"``) so that several splits
        share a directory. Returns the paths written; the default draws nothing.
        """
        del extras, directory, prefix  # no figures unless a subclass draws some
        return []


class SummingEvaluator(Evaluator):
    """An evaluator whose state is a sum over batches.

    ``batch_fn`` returns a dict of partial sums (the keys of :meth:`zeros`); ``update`` adds each
    to a float64 total on the host, so counts stay exact to 2**53 and sums of float32 batch values
    round only once per batch.
    """

    totals: dict[str, np.ndarray]

    @abc.abstractmethod
    def zeros(self) -> dict[str, np.ndarray]:
        """The totals of an empty split: one float64 array (or scalar) per key of ``batch_fn``'s dict."""

    def reset(self) -> None:
        self.totals = self.zeros()

    def update(self, fetched: Mapping[str, Any]) -> None:
        for key, total in self.totals.items():
            self.totals[key] = total + np.asarray(fetched[key], np.float64)
