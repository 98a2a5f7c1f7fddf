"""Decide who a face is: the nearest enrolled person, then the tolerance. Pure numpy, no dlib.

A person's distance is the minimum over that person's encodings. The name given is the
nearest person's, and only when that distance is within the tolerance: never the first of
several people who happen to be within it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ENCODING_SIZE = 128


@dataclass(frozen=True)
class Candidate:
    """One enrolled person and their distance to the probe face."""

    name: str
    distance: float


@dataclass(frozen=True)
class Match:
    """The decision for one face: a name (or None for unknown) and the ranked candidates."""

    name: str | None
    distance: float | None
    confidence: float | None
    candidates: list[Candidate] = field(default_factory=list)


@dataclass(frozen=True)
class Gallery:
    """All enrolled encodings in memory, grouped by person for a vectorised per-person minimum.

    Rows of ``encodings`` are ordered by person; person ``i`` owns rows
    ``starts[i]:starts[i + 1]``.
    """

    names: tuple[str, ...]
    starts: np.ndarray
    encodings: np.ndarray
    sq_norms: np.ndarray

    @classmethod
    def from_encodings(cls, by_person: dict[str, list[np.ndarray]]) -> "Gallery":
        """Build a gallery from {name: [encoding, ...]}; people without encodings are left out."""
        names = tuple(name for name, rows in sorted(by_person.items()) if len(rows))
        if not names:
            return cls.empty()
        counts = [len(by_person[name]) for name in names]
        encodings = np.ascontiguousarray(
            np.vstack([np.asarray(by_person[name], dtype=np.float64) for name in names])
        )
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.intp)
        return cls(names, starts, encodings, np.einsum("ij,ij->i", encodings, encodings))

    @classmethod
    def empty(cls) -> "Gallery":
        """A gallery with nobody in it."""
        return cls((), np.zeros(0, np.intp), np.zeros((0, ENCODING_SIZE)), np.zeros(0))

    def __len__(self) -> int:
        return len(self.encodings)

    def person_distances(self, encoding: np.ndarray) -> np.ndarray:
        """Euclidean distance from encoding to each person (their nearest encoding)."""
        squared = self.sq_norms - 2.0 * (self.encodings @ encoding) + float(encoding @ encoding)
        distances = np.sqrt(np.maximum(squared, 0.0))
        return np.minimum.reduceat(distances, self.starts)


def best_match(encoding: np.ndarray, gallery: Gallery, tolerance: float, top_k: int = 3) -> Match:
    """Decide who the face with this encoding is.

    :param tolerance: largest distance at which the nearest person is named (0.6 is typical;
        lower is stricter)
    :param top_k: how many nearest people to list as candidates
    :return: Match with the nearest person's name when within tolerance, else name None
    """
    if not len(gallery):
        return Match(name=None, distance=None, confidence=None, candidates=[])
    distances = gallery.person_distances(encoding)
    order = np.argsort(distances, kind="stable")[:top_k]
    candidates = [Candidate(gallery.names[i], round(float(distances[i]), 4)) for i in order]
    nearest = candidates[0]
    if nearest.distance > tolerance:
        return Match(name=None, distance=None, confidence=None, candidates=candidates)
    return Match(name=nearest.name, distance=nearest.distance,
                 confidence=confidence(nearest.distance, tolerance), candidates=candidates)


def confidence(distance: float, tolerance: float) -> float:
    """A 0..1 score that falls as the distance grows, 0.5 at the tolerance itself.

    This is the mapping from face_recognition's wiki ("Calculating Accuracy as a Percentage"):
    linear in the distance, then pushed towards 1 well inside the tolerance.
    """
    if distance > tolerance:
        span = 1.0 - tolerance
        return round(max(0.0, (1.0 - distance) / (span * 2.0)), 4)
    linear = 1.0 - distance / (tolerance * 2.0)
    return round(linear + (1.0 - linear) * ((linear - 0.5) * 2.0) ** 0.2, 4)
