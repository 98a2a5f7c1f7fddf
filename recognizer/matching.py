"""Decide who a face is, or that it is nobody enrolled. Pure numpy, no dlib; the people to
search are a :class:`~recognizer.gallery.Gallery`.

The rule, measured on an open-set protocol (``scripts/eval_openset.py``, docs/accuracy.md):

1. **A person is the mean of their faces.** Each enrolled person is represented by the
   centroid of their encodings, which averages out the pose, light and expression of single
   photos. From two photos up it names more people than their nearest photo does.
2. **The nearest person must be near:** their distance is at most ``tolerance``. This is the
   ceiling on how unlike the enrolled faces a probe may be and still be named; beside the
   test below it matters mostly in galleries of a few people.
3. **And clearly nearer than the gallery around them:** their distance, over the *local
   scale*, is at most a bound. The local scale is the geometric mean of two distances: the
   probe's to the second-nearest person (how far the probe is from people in general: Lowe's
   ratio test) and the nearest person's to *their* nearest enrolled neighbour (how crowded the
   gallery is around the candidate). A stranger's nearest person sits about as far as these;
   a genuine face is much nearer. Both are capped at :data:`IMPOSTOR_DISTANCE`, so that a
   gallery of one or two people behaves like a larger one.
4. **The bound rises slowly with the gallery's size.** In a larger gallery the nearest few
   people of any face crowd together, strangers' ratios come closer to 1, and a fixed bound
   turns away more and more genuine faces. A stranger's chance of a ratio under r is about
   r^m, where m, the steepness of the lower tail of distances to other people, grows with the
   logarithm of the number of people N (extreme-value statistics): m is proportional to
   TAIL_OFFSET + ln N. The bound for N people is the one that keeps that chance where
   ``ratio`` puts it at :data:`REFERENCE_PEOPLE`: ``ratio ** (m(1000) / m(N))``.
5. **And with the nearest person's number of photos.** The mean of k photos is a sharper
   template: photo-to-photo noise shrinks around it by sqrt((1 + 1/k) / 2) against one photo,
   and the tail's exponent grows by the inverse of that (:func:`sharpening`: 1 for one photo,
   1.15 for two, 1.22 for three).

``confidence`` is the estimated probability that a name is right, a logistic function of the
strength of the evidence (``m(N) * ln(scale / distance)``), fitted by
``scripts/eval_openset.py --fit`` on lfw_dev at every gallery size it measures.
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
# The lower tail of the distances from a face to N other people gets steeper as N grows: its
# exponent is proportional to TAIL_OFFSET + ln N. The exponent of the synthetic people's
# distances (fillers) grows as 5 + ln N would; real pairs of lfw_dev show no growth measurable
# between 1% and 0.1% of pairs (a few hundred pairs, look-alikes among them): 8 sits between.
TAIL_OFFSET = 8.0
# The gallery size at which the ``ratio`` setting is the bound itself.
REFERENCE_PEOPLE = 1000
# log-odds(name is right) = A + B * strength, fitted by scripts/eval_openset.py --fit
CONFIDENCE_MODEL = (1.83, 0.60)
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


@dataclass(frozen=True)
class Evidence:
    """What the decision reads from the gallery about one face's nearest person."""

    distance: float  # to the nearest person
    scale: float  # the local scale: sqrt(second-nearest distance x the nearest's neighbour)
    people: int  # enrolled people
    photos: int = 1  # the nearest person's faces

    @property
    def ratio(self) -> float:
        """The distance over the local scale: small for a face clearly nearest one person;
        infinite when the scale is 0 (two people enrolled with the very same face)."""
        return self.distance / self.scale if self.scale > 0 else math.inf

    @property
    def strength(self) -> float:
        """How clearly nearest the face is, for the confidence: m(N) * ln(scale / d), -ln of
        a stranger's estimated chance of so small a ratio among one-photo people."""
        return tail_exponent(self.people) * math.log(max(self.scale, 1e-9)
                                                     / max(self.distance, 1e-9))


def best_match(encoding: np.ndarray, gallery: Gallery, tolerance: float, ratio: float,
               top_k: int = 3, without: int | None = None) -> Match:
    """Decide who the face with this encoding is.

    :param tolerance: largest distance at which the nearest person is named (lower is stricter)
    :param ratio: largest distance over the local scale with which the nearest person is named
        in a gallery of REFERENCE_PEOPLE; it rises with the gallery's size (see
        :func:`ratio_bound`; lower is stricter; 1 turns the test off)
    :param top_k: how many nearest people to list as candidates
    :param without: a face id to leave out of the gallery (e.g. the face being replaced)
    :return: Match naming the nearest person when both tests pass, else name None
    """
    people = gallery.nearest(encoding, max(top_k, 2), without)
    if not people:
        return Match(name=None, distance=None, confidence=None, candidates=[])
    candidates = [Candidate(name, round(distance, 4)) for name, distance in people[:top_k]]
    found = evidence(gallery, people, without)
    if not decide(found, tolerance, ratio):
        return Match(name=None, distance=None, confidence=None, candidates=candidates)
    return Match(name=people[0][0], distance=round(found.distance, 4),
                 confidence=confidence(found.strength), candidates=candidates)


def decide(found: Evidence, tolerance: float, ratio: float) -> bool:
    """Whether the evidence names the nearest person (see :func:`best_match`)."""
    return found.distance <= tolerance and (
        ratio >= 1 or found.ratio <= ratio_bound(found.people, ratio, found.photos))


def evidence(gallery: Gallery, people: list[tuple[str, float]],
             without: int | None = None) -> Evidence:
    """The evidence about the nearest of ``people`` (the gallery's nearest, nearest first, at
    least one of them; the second if there is one)."""
    nearest, distance = people[0]
    second = people[1][1] if len(people) > 1 else None
    neighbour = gallery.neighbour_distance(nearest, without)
    scale = math.sqrt(_capped(second) * _capped(neighbour))
    return Evidence(distance, scale, gallery.people_count(without),
                    max(1, gallery.faces_of(nearest, without)))


def _capped(distance: float | None) -> float:
    return IMPOSTOR_DISTANCE if distance is None else min(distance, IMPOSTOR_DISTANCE)


def tail_exponent(people: int) -> float:
    """m(N), up to a constant factor: how steep the lower tail of the distances from a face to
    N other people is."""
    return TAIL_OFFSET + math.log(max(people, 1))


def sharpening(photos: int) -> float:
    """How much steeper that tail is when the people are means of this many photos:
    sqrt(2 / (1 + 1/k)), 1 for one photo."""
    return math.sqrt(2 / (1 + 1 / max(photos, 1)))


def ratio_bound(people: int, ratio: float, photos: int = 1) -> float:
    """The largest distance over the local scale with which a face is named in a gallery of
    this many people, when the nearest has this many photos: ``ratio`` at REFERENCE_PEOPLE
    and one photo, higher above or with more photos, lower below (with the defaults, for one
    photo: 0.74 for one person, 0.83 for 200, 0.88 for 100,000)."""
    return ratio ** (tail_exponent(REFERENCE_PEOPLE)
                     / (tail_exponent(people) * sharpening(photos)))


def confidence(strength: float) -> float:
    """The estimated probability that naming the nearest person is right.

    :param strength: :attr:`Evidence.strength` of the named face
    :return: a probability within CONFIDENCE_LIMITS, rounded to 4 places; it rises with the
        strength
    """
    intercept, slope = CONFIDENCE_MODEL
    log_odds = intercept + slope * strength
    low, high = CONFIDENCE_LIMITS
    if log_odds < -30:
        return low
    return round(min(high, max(low, 1.0 / (1.0 + math.exp(-log_odds)))), 4)
