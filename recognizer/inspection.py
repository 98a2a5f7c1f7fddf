"""Looking at faces without the store's people: every face's landmarks and quality
(``/detect``), and whether two faces are the same person (``/verify``)."""

from __future__ import annotations

import math

import numpy as np

from . import quality, verification
from .config import Settings
from .errors import UnusableFace
from .pictures import Picture, box_in_image
from .results import DetectedFace, Detection, FaceQuality, ImageSize


def detect(settings: Settings, picture: Picture, model: str | None = None,
           upsample: int | None = None) -> Detection:
    """Every face (the largest ``max_faces``) with its box, its 5 and 68 landmarks, and what
    the enrolment quality gate makes of it."""
    from . import faces

    found = []
    for box in _boxes(settings, picture, model, upsample)[:settings.max_faces]:
        sixty_eight = faces.landmarks(picture.pixels, box)
        measured = faces.measure(picture.pixels, box, sixty_eight)
        problems = quality.problems(measured, settings.quality_limits)
        angles = [None if math.isnan(a) else round(a, 1)
                  for a in (measured.yaw, measured.pitch, measured.roll)]
        found.append(DetectedFace(
            box_in_image(picture, box),
            {"five": _points(picture, faces.landmarks(picture.pixels, box, points=5)),
             "sixty_eight": _points(picture, sixty_eight)},
            FaceQuality(round(measured.width / picture.scale[0]), round(measured.sharpness, 1),
                        *angles, enrollable=not problems, problems=list(problems))))
    return Detection(found, ImageSize(*picture.size))


def one_face(settings: Settings, picture: Picture, largest_face: bool,
             field: str = "image") -> tuple[dict, np.ndarray]:
    """(box, encoding with the recognition jitters) of a picture's one face.

    :raises UnusableFace: ``no_face``, or ``multiple_faces`` unless largest_face
    """
    from . import faces

    boxes = _boxes(settings, picture)
    if not boxes:
        raise UnusableFace("no_face", field)
    if len(boxes) > 1 and not largest_face:
        raise UnusableFace("multiple_faces", field)
    (encoding,) = faces.encode(picture.pixels, boxes[:1], settings.jitters)
    return box_in_image(picture, boxes[0]), encoding


def decision(between: float, threshold: float) -> tuple[bool, float, float]:
    """(same person, distance, probability) for two encodings this far apart."""
    return between <= threshold, round(between, 4), verification.probability(between)


def _boxes(settings: Settings, picture: Picture, model: str | None = None,
           upsample: int | None = None) -> list:
    from . import faces

    return faces.detect(picture.pixels, model=settings.model if model is None else model,
                        upsample=settings.upsample if upsample is None else upsample,
                        max_side=settings.detect_max_side)


def _points(picture: Picture, points: list[tuple[int, int]]) -> list[list[int]]:
    across, down = picture.scale
    return [[round(x / across), round(y / down)] for x, y in points]
