"""The order of a target's images: canonical, so that a ranking does not depend on how the files were listed.

Every step of :func:`helpers.rank.rank_models` that batches or splits the target (feature extraction, FU's
batches, the linear probe's folds, k-NN's neighbour ties, the bootstrap) works on the target in its
*canonical order*: the images sorted by a SHA-256 of their content (shape, pixels) and label. The same images
listed in any order (a class-sorted folder, a sorted or shuffled CSV, an ``.npz``) therefore reach every metric
in the same order and give identical scores, bit for bit. On top of it, the steps that need a mix of classes
(FU's batches) draw a seeded, class-stratified permutation of that order (:func:`helpers.metrics.fu.fu_batches`).

Images with the same content and label are interchangeable, so their relative order does not matter; the
same content with two labels is ordered by the label.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

__all__ = ["content_keys", "canonical_order", "canonicalize"]


def content_keys(images, labels) -> list[str]:
    """One hex digest per image: SHA-256 of its shape, dtype, pixels and label row."""
    labels = np.asarray(labels)
    keys = []
    for im, y in zip(images, labels):
        a = np.ascontiguousarray(im)
        h = hashlib.sha256()
        h.update(f"{a.shape}|{a.dtype.str}|".encode())
        h.update(a.tobytes())
        h.update(b"|")
        h.update(np.ascontiguousarray(y).tobytes())
        keys.append(h.hexdigest())
    return keys


def canonical_order(images, labels) -> np.ndarray:
    """Indices that sort the images by :func:`content_keys` (stable, so exact duplicates keep their order,
    which cannot change any result)."""
    keys = content_keys(images, labels)
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def canonicalize(target):
    """The :class:`~helpers.rank.targets.Target` with its images (and labels, files, groups) in canonical
    order; ``description`` is unchanged. Already-canonical targets come back as they are."""
    order = canonical_order(target.images, target.labels)
    if np.array_equal(order, np.arange(len(order))):
        return target
    changes = {"images": [target.images[i] for i in order], "labels": np.asarray(target.labels)[order],
               "_fingerprint": None}
    if getattr(target, "files", None) is not None:
        changes["files"] = [target.files[i] for i in order]
    if getattr(target, "groups", None) is not None:
        changes["groups"] = np.asarray(target.groups)[order]
    return replace(target, **changes)
