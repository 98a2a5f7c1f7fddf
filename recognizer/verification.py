"""1:1 verification: are two faces the same person, or is a face a given enrolled person?

The answer is the distance between the two encodings (or between the face and the person's
centroid), a decision at :data:`THRESHOLD`, and a probability read off a table of distances.
Both were fitted by ``scripts/eval_verify.py`` on lfw_dev's pairs: the threshold lets through
1% of the pairs of different people, and the probability (isotonic regression, so it only
falls as the distance grows) is calibrated for a caller to whom same-person and
different-person pairs are equally likely (docs/accuracy.md has the figures). Pure numpy.
"""

from __future__ import annotations

import numpy as np

# The distance below which two faces are the same person: 1% of lfw_dev's different-person
# pairs are as close (scripts/eval_verify.py).
THRESHOLD = 0.60
# The same for a face against an enrolled person's centroid (the mean of their faces), which
# sits nearer every face than one photo does: 1% of lfw_dev's photos are as close to the
# centroid of somebody else.
PERSON_THRESHOLD = 0.56
# (distance, probability of the same person), fitted by scripts/eval_verify.py --fit
PROBABILITY_TABLE = ((0.3, 1.0), (0.44, 1.0), (0.46, 0.999), (0.48, 0.998), (0.5, 0.994),
                     (0.52, 0.978), (0.54, 0.955), (0.56, 0.928), (0.58, 0.704), (0.6, 0.255),
                     (0.62, 0.095), (0.68, 0.095), (0.7, 0.0), (0.9, 0.0))
PROBABILITY_LIMITS = (0.001, 0.999)


def distance(one: np.ndarray, other: np.ndarray) -> float:
    """The Euclidean distance between two encodings."""
    return float(np.linalg.norm(np.asarray(one, np.float64) - np.asarray(other, np.float64)))


def probability(between: float) -> float:
    """The estimated probability that two faces this far apart are the same person, when the
    two answers are equally likely beforehand; within PROBABILITY_LIMITS, to 4 places."""
    distances, probabilities = zip(*PROBABILITY_TABLE)
    low, high = PROBABILITY_LIMITS
    return round(min(high, max(low, float(np.interp(between, distances, probabilities)))), 4)

