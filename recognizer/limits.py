"""Every numeric bound of the service, declared once. Settings, request parameters, CLI options
and the tests of openapi.yaml read them from here. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidParameter

ENCODING_SIZE = 128  # numbers in one face encoding (dlib's ResNet)


@dataclass(frozen=True)
class Bound:
    """A closed range of allowed values, ``low`` excluded when ``above`` is set."""

    low: float
    high: float
    whole: bool = True  # whole numbers only
    above: bool = False  # low itself is not allowed: value > low

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.whole and not float(value).is_integer():
            return False
        return (value > self.low if self.above else value >= self.low) and value <= self.high

    @property
    def rule(self) -> str:
        """The range in words, as error messages and help texts give it."""
        if self.above:
            return f"a number > {_number(self.low)} and <= {_number(self.high)}"
        kind = "a whole number" if self.whole else "a number"
        return f"{kind} from {_number(self.low)} to {_number(self.high)}"

    def check(self, field: str, value: object) -> object:
        """Return value if it is in range.

        :raises InvalidParameter: field, ``out_of_range`` with the rule as its detail
        """
        if value not in self:
            raise InvalidParameter(field, "out_of_range", self.rule)
        return value


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# Request parameters (HTTP and CLI)
TOLERANCE = Bound(0, 1, whole=False, above=True)
TOP_K = Bound(1, 10)
UPSAMPLE = Bound(0, 2)
PAGE = Bound(1, 1_000_000)
PAGE_SIZE = Bound(1, 1000)
FACE_ID = Bound(1, 2**63 - 1)  # the largest id both store backends hold
BUILD_WORKERS = Bound(1, 64)
VIDEO_SCALE = Bound(0.1, 4, whole=False)
VIDEO_EVERY = Bound(1, 300)
# ... of the CompreFace and DeepStack surfaces (recognizer.compat)
FACE_LIMIT = Bound(0, 1000)  # CompreFace's limit: the largest faces to answer for, 0 for all
PROBABILITY = Bound(0, 1, whole=False)  # det_prob_threshold, min_confidence
ZERO_BASED_PAGE = Bound(0, PAGE.high - 1)  # CompreFace numbers pages from 0
MAX_SHOTS = Bound(1, 20)  # frames of a clip enrolled

# Settings (FACEREC_* variables) that are not also request parameters
RATIO = Bound(0, 1, whole=False, above=True)
JITTERS = Bound(1, 100)
JITTER_MARGIN = Bound(0, 1, whole=False)  # a distance; 0: never re-encode, 1: always jitter
REQUEST_THREADS = Bound(1, 2)  # HOG's pyramid is split in two
ANGLE = Bound(0, 180, whole=False)  # the quality gate's largest yaw, pitch and roll
FACE_SIZE = Bound(0, 100_000)  # the quality gate's smallest face, in pixels across
SHARPNESS = Bound(0, 1e12, whole=False)  # the quality gate's least sharpness
DETECT_MAX_SIDE = Bound(160, 100_000)
MAX_FACES = Bound(1, 1000)
FETCH_TIMEOUT = Bound(0, 120, whole=False, above=True)
RATE_LIMIT = Bound(0, 10_000, whole=False)
RATE_BURST = Bound(1, 100_000)
AUTH_FAILURES = Bound(0, 100_000)
BYTES = Bound(1, 2**40)  # an image's bytes
PIXELS = Bound(1, 2**40)  # an image's pixels
VIDEO_SECONDS = Bound(0, 300, whole=False, above=True)  # of an enrolment clip, read
INDEX_ABOVE = Bound(0, 2**62)  # people above which the gallery searches with an index
DETECT_WORK = Bound(1, 2**40)  # a detection's budget: pixels x 4^upsample x model factor
RETENTION = Bound(60, 3650 * 86400, whole=False)  # seconds events are kept

# Live video's request parameters
LIVE_FPS = Bound(1, 30)  # frames a second of a live view
EVENT_ID = Bound(0, 2**63 - 1)  # an event's id (0: before the first)
EVENT_LIMIT = Bound(1, 1000)  # events a page lists


# What detection costs against HOG at the same size and upsampling (dlib's CNN on a CPU).
MODEL_COST = {"hog": 1, "cnn": 30}


def detection_work(width: int, height: int, max_side: int, upsample: int, model: str) -> int:
    """A detection's work: the pixels it runs on (the image shrunk to max_side) times 4 for
    each upsampling, times the model's cost."""
    scale = min(1.0, max_side / max(width, height, 1))
    pixels = round(width * scale) * round(height * scale)
    return pixels * 4 ** upsample * MODEL_COST[model]
