"""Synthetic people to fill a gallery beyond the real ones, for the evaluation and the gallery
benchmark. Pure numpy.

A person's encodings are modelled as their own mean plus photo-to-photo noise: the means are
drawn from a Gaussian with the real people's mean and *between-person* covariance, and each
photo adds noise with the real *within-person* covariance (both through an eigendecomposition:
dlib's encodings span only ~85 of the 128 dimensions, and the draws stay in that subspace).
One photo per person then has the encodings' whole covariance; several photos average like a
real person's do. Values are rounded to float32, as dlib's are. Matching the first two moments
matches the distances that make search and decisions hard, but a Gaussian has no look-alikes:
real faces have a heavier tail of close strangers (``scripts/eval_openset.py`` prints both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .limits import ENCODING_SIZE

_BLOCK = 65536  # people drawn at a time


@dataclass(frozen=True)
class FillerModel:
    """The Gaussian model of people and their photos (see the module docstring)."""

    mean: np.ndarray
    between: np.ndarray  # mean + between @ z (z standard normal) has the people's covariance
    within: np.ndarray  # within @ z has one photo's covariance around its person's mean

    @classmethod
    def fit(cls, by_person: dict[str, list[np.ndarray]]) -> "FillerModel":
        """The model of these people's encodings; people with two photos or more give the
        within-person covariance.

        :raises ValueError: fewer than two people have two photos or more
        """
        rows = [np.asarray(row, np.float64) for encodings in by_person.values()
                for row in encodings]
        several = [np.asarray(e, np.float64) for e in by_person.values() if len(e) > 1]
        if len(several) < 2:
            raise ValueError("the within-person covariance needs two people with two photos")
        residuals = np.concatenate([group - group.mean(axis=0) for group in several])
        within = residuals.T @ residuals / sum(len(group) - 1 for group in several)
        total = np.cov(np.array(rows), rowvar=False)
        return cls(np.mean(rows, axis=0), _root(total - within), _root(within))

    def draw(self, count: int, photos: int = 1, seed: int = 0) -> np.ndarray:
        """Encodings of ``count`` synthetic people with ``photos`` photos each, as a
        (count, photos, 128) float32 array; the same count and seed give the same people."""
        rng = np.random.default_rng(seed)
        drawn = np.empty((count, photos, ENCODING_SIZE), np.float32)
        for start in range(0, count, _BLOCK):
            size = min(_BLOCK, count - start)
            means = self.mean + rng.standard_normal((size, ENCODING_SIZE)) @ self.between.T
            for photo in range(photos):
                noise = rng.standard_normal((size, ENCODING_SIZE)) @ self.within.T
                drawn[start:start + size, photo] = means + noise
        return drawn


def _root(covariance: np.ndarray) -> np.ndarray:
    """A such that A @ A.T is the covariance, negative eigenvalues (noise) taken as 0."""
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    return vectors * np.sqrt(np.clip(values, 0.0, None))
