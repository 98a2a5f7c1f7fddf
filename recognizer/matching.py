"""Decide who a face is, or that it is nobody enrolled. Pure numpy, no dlib; the people to
search are a :class:`~recognizer.gallery.Gallery`.

The rule, measured on an open-set protocol (``scripts/eval_openset.py``):

1. **A person is the mean of their faces.** Each enrolled person is represented by the
   centroid of their encodings, which averages out the pose, light and expression of single
   photos. With two photos per person it names more people than the nearest single photo.
2. **The nearest person must be near:** their distance is at most ``tolerance``. This is the
   ceiling on how unlike the enrolled faces a probe may be and still be named.
3. **And clearly nearer than anybody else:** their distance is at most ``ratio`` times the
   second-nearest person's (Lowe's ratio test). A stranger tends to sit about as far from
   several enrolled people, and is refused; a genuine probe is much nearer its own person. The
   second distance is capped at :data:`IMPOSTOR_DISTANCE`, the typical distance between two
   different people, so that a gallery of one or two people behaves like a large one.

``confidence`` is the estimated probability that a name is right, from a logistic model of the
nearest distance and the ratio, fitted by ``scripts/eval_openset.py --fit`` on lfw_dev.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .gallery import Gallery
from .record import Record

# The median distance between encodings of two different people on lfw_dev (106,464 pairs).
IMPOSTOR_DISTANCE = 0.81
# 99% of pairs of photos of the same person on lfw_dev (489 pairs) are closer than this: a new
# face further than this from a person's centroid is likely to carry the wrong name.
SAME_PERSON_LIMIT = 0.6
# log-odds(name is right) = A + B * distance + C * ratio, fitted by scripts/eval_openset.py --fit
CONFIDENCE_MODEL = (29.25, -17.77, -23.44)
# A few thousand probes support no claim finer than one in a thousand either way.
CONFIDENCE_LIMITS = (0.001, 0.999)


@dataclass(frozen=True)
class Candidate(Record):
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


def best_match(encoding: np.ndarray, gallery: Gallery, tolerance: float, ratio: float,
               top_k: int = 3, without: int | None = None) -> Match:
    """Decide who the face with this encoding is.

    :param tolerance: largest distance at which the nearest person is named (lower is stricter)
    :param ratio: largest fraction of the second-nearest person's distance that the nearest
        person's may be (lower is stricter; 1 turns the test off)
    :param top_k: how many nearest people to list as candidates
    :param without: a face id to leave out of the gallery (e.g. the face being replaced)
    :return: Match naming the nearest person when both tests pass, else name None
    """
    people = gallery.nearest(encoding, max(top_k, 2), without)
    if not people:
        return Match(name=None, distance=None, confidence=None, candidates=[])
    candidates = [Candidate(name, round(distance, 4)) for name, distance in people[:top_k]]
    nearest = people[0][1]
    relative = ratio_to_second(nearest, people[1][1] if len(people) > 1 else None)
    if nearest > tolerance or relative > ratio:
        return Match(name=None, distance=None, confidence=None, candidates=candidates)
    return Match(name=people[0][0], distance=round(nearest, 4),
                 confidence=confidence(nearest, relative), candidates=candidates)


def ratio_to_second(nearest: float, second: float | None) -> float:
    """The nearest person's distance over the second-nearest's, the second capped at
    IMPOSTOR_DISTANCE (and taken as that when there is nobody else)."""
    cap = IMPOSTOR_DISTANCE if second is None else min(second, IMPOSTOR_DISTANCE)
    return nearest / max(cap, 1e-9)


def confidence(distance: float, relative: float) -> float:
    """The estimated probability that naming the nearest person is right.

    :param distance: distance to the nearest person
    :param relative: that distance over the second-nearest person's (capped as in best_match)
    :return: a probability within CONFIDENCE_LIMITS, rounded to 4 places; it falls as either
        argument grows
    """
    intercept, per_distance, per_ratio = CONFIDENCE_MODEL
    log_odds = intercept + per_distance * distance + per_ratio * relative
    low, high = CONFIDENCE_LIMITS
    return round(min(high, max(low, 1.0 / (1.0 + math.exp(-log_odds)))), 4)
