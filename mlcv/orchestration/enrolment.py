"""``launch.py --mode=enrol``: the course's face recognition as a kNN over enrolled embeddings, without retraining.

A finished metric-learning run embeds its test split (identities it never saw). The first ``enrol`` images of each
identity, in split order, are its enrolment images; the others are probes. First every identity but the last
(the largest label) is enrolled and every probe is identified by a kNN vote over the gallery: the last identity's
probes can only be given a wrong name (or, beyond the run's verification threshold, be rejected as unknown).
Then the last identity is enrolled, its embeddings computed by the same network with the same weights, and the
probes are identified again: recognising it took adding its embeddings to the gallery, nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mlcv import data, workdirs
from mlcv.config import ConfigError
from mlcv.data import pipeline
from mlcv.metrics import retrieval
from mlcv.training import runs


def embed_split(run: runs.Run, role: str = "test", batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings [N, D], labels [N])`` of a split through a finished run's evaluation preprocessing."""
    config = run.config
    spec = data.get(config.data.name)
    src = data.source(spec, runs.dataset_split(config, spec, role), data_dir=config.data.get("data_dir"))
    embs, labels = [], []
    for batch in pipeline.eval_batches(
        src, batch_size=batch_size, pp=config.data.pp_eval, op_defaults=spec.op_defaults, keys=("image", "label")
    ):
        real = batch["mask"] > 0
        embs.append(np.asarray(jax.device_get(run.predict(batch)["embedding"]))[real])
        labels.append(batch["label"][real])
    return np.concatenate(embs), np.concatenate(labels)


def _identify(emb, labels, gallery, probes, k, threshold):
    """Predicted identity of each probe (-1: rejected, its nearest gallery image beyond ``threshold``)."""
    pred = retrieval.enrol_and_identify(emb[gallery], labels[gallery], emb[probes], k=k)
    if threshold is not None:
        nearest = np.sqrt(((emb[probes][:, None, :] - emb[gallery][None, :, :]) ** 2).sum(-1)).min(1)
        pred = np.where(nearest > threshold, -1, pred)
    return pred


def run(workdir: str, *, enrol: int = 5, k: int = 1) -> dict[str, Any]:
    """The demonstration on the run in ``workdir``; prints a table and writes ``<workdir>/enrolment.json``."""
    if enrol < 1:
        raise ConfigError(f"--enrol={enrol} leaves the gallery empty: enrol at least one image an identity")
    run_ = runs.load_run(workdir)
    if run_.config.task != "metric_learning":
        raise ConfigError(f"{workdir} is a {run_.config.task!r} run; --mode=enrol needs a metric_learning run")
    emb, labels = embed_split(run_)
    order = np.arange(len(labels))
    rank = np.array([np.sum(labels[:i] == labels[i]) for i in order])  # index of each image within its identity
    ids = np.unique(labels)
    short = [int(c) for c in ids if np.sum(labels == c) <= enrol]
    if short:
        raise ConfigError(f"--enrol={enrol}: identities {short[:5]} have no image left to probe with")
    new = ids[-1]
    summary = json.loads((Path(workdir) / "summary.json").read_text())
    threshold = summary.get("test", {}).get("threshold")
    probes = order[rank >= enrol]
    rows = {}
    for stage, enrolled in (("before", ids[:-1]), ("after", ids)):
        gallery = order[(rank < enrol) & np.isin(labels, enrolled)]
        pred = _identify(emb, labels, gallery, probes, k, None)
        open_set = _identify(emb, labels, gallery, probes, k, threshold) if threshold is not None else None
        is_new = labels[probes] == new
        rows[stage] = {
            "gallery_identities": [int(c) for c in enrolled],
            "gallery_images": int(gallery.size),
            "new_identity_probes_recognised": float(np.mean(pred[is_new] == new)),
            "known_identity_probes_recognised": float(np.mean(pred[~is_new] == labels[probes][~is_new])),
            **(
                {"new_identity_probes_rejected": float(np.mean(open_set[is_new] == -1))} if open_set is not None else {}
            ),
        }
    out = {"workdir": str(workdir), "new_identity": int(new), "enrol": enrol, "k": k, "threshold": threshold, **rows}
    print(f"identity {new}: {enrol} images enrolled per identity, {probes.size} probes, {k}-NN")
    for stage, r in rows.items():
        line = f"  {stage:6s} enrolling {new}: its probes recognised {100 * r['new_identity_probes_recognised']:.1f} %"
        line += f", other identities' {100 * r['known_identity_probes_recognised']:.1f} %"
        if "new_identity_probes_rejected" in r:
            line += f", its probes rejected as unknown {100 * r['new_identity_probes_rejected']:.1f} %"
        print(line)
    workdirs.write_json(Path(workdir) / "enrolment.json", out)
    return out
