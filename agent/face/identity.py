"""Whether enrollment images show one person (pure): pairwise distances within a limit.

A template must be one person's: every pair of its embeddings within the engine's
loosest match distance (level 1). :func:`consistent` keeps the largest group it can find
greedily: while some pair is too far apart, the image with the most too-far partners
(then the largest summed distance, then the later one) goes; a removed image comes back
when it is within the limit of every image kept. With two images of different people
the first stays. Each removed image is reported with its largest distance to the kept ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.face.engine import Embedding


@dataclass(frozen=True)
class Consistency:
    """The indices kept, and for each removed index its largest distance to the kept ones."""

    kept: tuple[int, ...]
    outliers: dict[int, float]


def distances(embeddings: Sequence[Embedding]) -> np.ndarray:
    """The matrix of Euclidean distances between ``embeddings`` (n x n, float64)."""
    if not embeddings:
        return np.zeros((0, 0))
    stack = np.stack([np.asarray(e, dtype=np.float64) for e in embeddings])
    return np.asarray(np.linalg.norm(stack[:, None, :] - stack[None, :, :], axis=2))


def consistent(embeddings: Sequence[Embedding], limit: float) -> Consistency:
    """Keep a set of ``embeddings`` whose pairwise distances are all at most ``limit``."""
    matrix = distances(embeddings)
    kept = list(range(len(embeddings)))
    while True:
        sub = matrix[np.ix_(kept, kept)]
        far = sub > limit
        if not far.any():
            break
        counts = far.sum(axis=1)
        sums = sub.sum(axis=1)
        worst = max(range(len(kept)), key=lambda i: (int(counts[i]), float(sums[i]), kept[i]))
        kept.pop(worst)
    removed = [i for i in range(len(embeddings)) if i not in kept]
    for index in removed:  # one that was only far from images removed later comes back
        if all(matrix[index, k] <= limit for k in kept):
            kept.append(index)
    kept.sort()
    outliers = {i: float(max(matrix[i, k] for k in kept)) for i in range(len(embeddings)) if i not in kept}
    return Consistency(tuple(kept), outliers)
