"""The gallery's exact search path: a float32 matrix of every person's centroid, scanned with
one matrix-vector product. Each candidate within the float32 rounding of the k-th nearest is
kept, so that re-ranking them in float64 gives a float64 brute force's answers. Pure numpy."""

from __future__ import annotations

import math

import numpy as np

from .arrays import fit
from .limits import ENCODING_SIZE

# Unit roundoff of float32: bounds the error of the float32 scan.
_ROUNDOFF = 2.0 ** -24


class ExactScan:
    """Centroids by slot (a row each), with their squared norms; free slots never match."""

    def __init__(self, size: int = 0) -> None:
        self.matrix = np.zeros((size, ENCODING_SIZE), np.float32)
        self.sq_norms = np.full(size, np.inf, np.float32)  # of matrix's rows; inf: a free slot
        self.max_sq = 0.0  # at least the largest of sq_norms

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return self.matrix.nbytes + self.sq_norms.nbytes

    def set(self, slots: np.ndarray, vectors: np.ndarray, freed: np.ndarray, size: int) -> None:
        """Put people's float32 centroids in their slots, and blank freed slots.

        :param size: slots handed out so far (the arrays grow to it)
        """
        self.matrix = fit(self.matrix, size)
        self.sq_norms = fit(self.sq_norms, size, np.inf)
        self.matrix[freed], self.sq_norms[freed] = 0.0, np.inf
        self.matrix[slots] = vectors
        sq_norms = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
        self.sq_norms[slots] = sq_norms
        self.max_sq = max(self.max_sq, float(sq_norms.max(initial=0.0)))

    def candidates(self, probe: np.ndarray, k: int, used: int) -> np.ndarray:
        """Slots among the first ``used`` that include the k nearest centroids."""
        approximate = self.matrix[:used] @ probe.astype(np.float32)
        approximate *= -2.0
        approximate += self.sq_norms[:used]  # the squared distance less |probe|^2
        kth = np.partition(approximate, k - 1)[k - 1]
        return np.flatnonzero(approximate <= kth + self._slack(probe))

    def _slack(self, probe: np.ndarray) -> float:
        """Twice the largest error of a float32 squared distance: the rounding of the centroid,
        the probe and the squared norm, and of a 128-term dot product (Higham's bound,
        128 u |c| |p|)."""
        radius, length = math.sqrt(self.max_sq), float(np.linalg.norm(probe))
        return 2.0 * _ROUNDOFF * (4.0 * self.max_sq + 264.0 * radius * length)
