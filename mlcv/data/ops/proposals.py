"""Region proposals as data: the ``selective_search`` op (course §10.2, R-CNN's proposals).

``selective_search(max_proposals, ...)`` adds ``proposals`` float32 ``[max_proposals, 4]`` ``(ymin, xmin, ymax,
xmax)`` in pixels of the current image (max exclusive, as ``boxes``), best ranked first
(:func:`mlcv.ops.selective_search.selective_search`), and ``proposal_mask`` float32 ``[max_proposals]``: 1 for a
real proposal, 0 for a zero padding row. It reads the uint8 ``image``, so it goes before ``normalize``.

Geometric ops after it move the proposals as they move ``boxes`` (flipped, cropped, resized or rotated, then
clipped; see :func:`set_proposals`), with one difference: a proposal a crop leaves empty becomes a zero row with
mask 0 in place, so the rows keep their count and ranking but the real ones need not be a prefix any more.

Putting the op BEFORE the random geometric ops is what makes its cache work: selective search costs tens of ms an
image (see :mod:`mlcv.ops.selective_search`) and would run again every epoch on each new crop, whereas on the
stored image it runs once per process and later epochs read the result from memory. The cache is a
least-recently-used dict per process, keyed by a hash of the image bytes and the op's arguments, holding at most
``cache_entries`` results of ``max_proposals x 16`` bytes (48 MB at 10,000 images of 300 proposals). With the
default in-process loading (``worker_count`` 0) it lasts the whole run, evaluations included; grain worker
processes each keep their own, which ends with them (an evaluation loader's workers at each evaluation).
Measured with ``benchmarks/selective_search.py`` (200 scenes, load average 4.6 on the shared 2-core CPU): a miss
costs 142 ms a record (the search), an in-process hit 0.07 ms (hashing the image), a file hit 1.1 ms.

``cache_dir`` adds a file cache that outlives the process, for runs that see the same images again (seeds, sweeps,
resumed runs, evaluation workers): one ``.npz`` a result, named by the same key plus :data:`VERSION`, holding the
padded proposals and their blake2b digest. A file that cannot be read or whose digest does not match is reported
(a warning), recomputed and rewritten; files are written to a temporary name and renamed, so concurrent loaders
never read half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlcv.data.ops.registry import Example, Op, register
from mlcv.ops import selective_search as ss

PROPOSAL_KEYS = ("proposals", "proposal_mask")
_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_LOCK = threading.Lock()  # loaders may call ops from several threads
# Part of every file cache key: bump it when selective search's output changes, so older files are not read.
VERSION = "1"


def _digest(a: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).digest()


def read_cached(path: Path) -> np.ndarray | None:
    """The proposals stored at ``path``, or None when it is missing; a corrupt file is reported and None."""
    if not path.exists():
        return None
    try:
        with np.load(path) as stored:
            proposals, digest = stored["proposals"], stored["digest"].tobytes()
        if _digest(proposals) == digest and proposals.dtype == np.float32:
            return proposals
        reason = "its digest does not match its proposals"
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        reason = f"it cannot be read ({type(e).__name__}: {e})"
    logging.getLogger(__name__).warning("selective_search cache file %s is corrupt: %s; recomputing", path, reason)
    return None


def write_cached(path: Path, proposals: np.ndarray) -> None:
    """Stores ``proposals`` and their digest at ``path``, through a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, proposals=proposals, digest=np.frombuffer(_digest(proposals), np.uint8))
    os.replace(tmp, path)


def set_proposals(out: Example, proposals: np.ndarray, height: int, width: int) -> Example:
    """Stores transformed ``proposals`` in ``out`` clipped to a ``height x width`` image.

    A proposal left with zero area (or already padding, ``proposal_mask`` 0) becomes a zero row with mask 0, in
    place, so the count stays ``max_proposals``.
    """
    p = np.clip(np.asarray(proposals, np.float32).reshape(-1, 4), 0, np.array([height, width] * 2, np.float32))
    valid = (p[:, 2] > p[:, 0]) & (p[:, 3] > p[:, 1]) & (np.asarray(out["proposal_mask"]) > 0)
    p[~valid] = 0
    out["proposals"] = p
    out["proposal_mask"] = valid.astype(np.float32)
    return out


def cache_clear() -> None:
    """Empties this process's cache of selective search results."""
    with _LOCK:
        _CACHE.clear()


def cache_size() -> int:
    """How many results this process's cache holds."""
    return len(_CACHE)


@register("selective_search", moves=PROPOSAL_KEYS)
def selective_search(
    max_proposals: int,
    scale: float | Sequence[float] = ss.FAST_SCALES,
    sigma: float = 0.8,
    min_size: int = 10,
    color_spaces: str | Sequence[str] = ss.FAST_COLOR_SPACES,
    similarities: str | Sequence[str | Sequence[str]] = ss.FAST_SIMILARITIES,
    seed: int = 0,
    cache_entries: int = 10_000,
    cache_dir: str = "",
) -> Op:
    """Adds the top ``max_proposals`` selective search boxes of the uint8 ``image`` as ``proposals`` and
    ``proposal_mask`` (zero rows and mask 0 past the last proposal found).

    The other arguments are :func:`mlcv.ops.selective_search.selective_search`'s; ``seed`` seeds its ranking (not
    the loader's random numbers, so an image gets the same proposals every epoch). ``cache_entries`` 0 turns the
    in-process cache off; ``cache_dir`` (``~`` expanded) adds the file cache of the module docstring. Raises
    ValueError, naming the op, on an image that is not uint8 ``[H, W, 3]`` or grey (after ``normalize``, say).
    """
    if int(max_proposals) < 1:
        raise ValueError(f"selective_search({max_proposals}): max_proposals must be at least 1")
    max_proposals = int(max_proposals)
    strategies = ss.strategies(color_spaces, scale, similarities)  # bad names fail when the string is parsed
    args = (max_proposals, tuple(strategies), float(sigma), int(min_size), int(seed))
    directory = Path(cache_dir).expanduser() if cache_dir else None

    def run(image: np.ndarray, key: str) -> np.ndarray:
        path = directory / f"{key}.npz" if directory is not None else None
        if path is not None and (stored := read_cached(path)) is not None:
            return stored
        boxes = ss.selective_search(
            image,
            scale=scale,
            sigma=sigma,
            min_size=min_size,
            color_spaces=color_spaces,
            similarities=similarities,
            seed=seed,
        )[:max_proposals]
        padded = np.zeros((max_proposals, 4), np.float32)
        padded[: len(boxes)] = boxes
        if path is not None:
            write_cached(path, padded)
        return padded

    def op(ex: Example, rng: np.random.Generator) -> Example:
        image = np.asarray(ex["image"])
        if not ss.is_image(image):
            raise ValueError(
                f"selective_search({max_proposals}): needs the uint8 image, RGB or grey (put it before normalize "
                f"and scale), got {image.dtype} {image.shape}"
            )
        key = hashlib.blake2b(repr((image.shape, args, VERSION)).encode() + image.tobytes(), digest_size=16).hexdigest()
        if cache_entries > 0:
            with _LOCK:
                proposals = _CACHE.get(key)
                if proposals is not None:
                    _CACHE.move_to_end(key)
            if proposals is None:
                proposals = run(image, key)  # outside the lock: other threads' hits need not wait
                with _LOCK:
                    _CACHE[key] = proposals
                    while len(_CACHE) > cache_entries:
                        _CACHE.popitem(last=False)
        else:
            proposals = run(image, key)
        out = dict(ex)
        # A copy: later ops and batching must not write into the cached array.
        out["proposals"] = proposals.copy()
        out["proposal_mask"] = (np.arange(max_proposals) < _count(proposals)).astype(np.float32)
        return out

    return op


def _count(padded: np.ndarray) -> int:
    """Real rows of a padded result: selective search boxes are never empty, padding rows are all zero."""
    return int(np.count_nonzero(padded[:, 2] > padded[:, 0]))
