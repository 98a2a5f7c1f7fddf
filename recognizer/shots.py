"""Which frames of one person to enrol, from a sequence of frames (a clip, a webcam, a stream's
track): follow the faces through the frames, make sure there is one person, and choose a few
sharp frames that differ in pose, not near-copies of one another.

:func:`measure` finds, measures and quickly encodes the faces of RGB frames (with dlib);
:func:`follow` groups faces into people and :func:`choose` picks the shots, both pure numpy,
so that a caller with its own detections (a tracker's) builds :class:`Face` records and
reuses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from . import quality
from .errors import UnusableFace
from .matching import SAME_PERSON_LIMIT
from .quality import QualityLimits

MAX_SHOTS = 5  # shots enrolled from one clip, by default
# Faces measured in one frame, the largest: enough to see a second person, and a crowd costs
# no more than this many encodings a frame.
MAX_FACES_PER_FRAME = 3
# Two faces in frames next to each other whose boxes overlap this much are the same person
# (intersection over union), whatever their encodings say (a head turning changes them).
FOLLOW_OVERLAP = 0.3
# A person seen in fewer frames than this is a stray detection, not a second person.
MIN_FRAMES = 2
# Shots must differ from each other by this much head pose (degrees of yaw and pitch), or by
# this much encoding (a change of expression or light): less is a near-copy.
MIN_POSE_STEP = 6.0
MIN_ENCODING_STEP = 0.25
# Faces less than this share of the clip's median sharpness are left out when others are
# sharper (motion blur between sharp frames).
SOFT = 0.5
_MARGIN = 0.5  # a face's crop keeps this much of its box's size on every side


@dataclass(frozen=True)
class Face:
    """One face in one frame: where, how good, a quick encoding (to follow it), and a crop of
    the frame around it (to encode it again for enrolment)."""

    frame: int
    time: float | None
    box: tuple[int, int, int, int]  # (top, right, bottom, left) in the frame
    quality: quality.Measured
    encoding: np.ndarray
    crop: np.ndarray | None = None  # RGB pixels around the face
    crop_box: tuple[int, int, int, int] | None = None  # the box in the crop's pixels

    @property
    def pose(self) -> tuple[float, float]:
        """(yaw, pitch) in degrees."""
        return float(self.quality.yaw), float(self.quality.pitch)


def measure(frames: Iterable[tuple[int, float | None, np.ndarray]], model: str = "hog",
            upsample: int = 1, max_side: int = 640) -> list[Face]:
    """The faces of (frame number, time, RGB pixels) frames (the largest MAX_FACES_PER_FRAME of
    each), found as the service finds faces, measured for the quality gate and encoded once
    (no jitters), with a crop kept."""
    from . import faces

    found = []
    for number, when, pixels in frames:
        boxes = faces.detect(pixels, model=model, upsample=upsample,
                             max_side=max_side)[:MAX_FACES_PER_FRAME]
        encodings = faces.encode(pixels, boxes)
        for box, encoding in zip(boxes, encodings, strict=True):
            crop, crop_box = _crop(pixels, box.as_css())
            found.append(Face(number, when, box.as_css(), faces.measure(pixels, box), encoding,
                              crop, crop_box))
    return found


def _crop(pixels: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, tuple]:
    top, right, bottom, left = box
    margin = int(_MARGIN * max(bottom - top, right - left))
    y0, x0 = max(0, top - margin), max(0, left - margin)
    y1, x1 = min(pixels.shape[0], bottom + margin), min(pixels.shape[1], right + margin)
    crop = np.ascontiguousarray(pixels[y0:y1, x0:x1])
    return crop, (top - y0, right - x0, bottom - y0, left - x0)


def follow(faces: Sequence[Face]) -> list[list[Face]]:
    """Group faces into people, most frames first: a face continues a person when its box
    overlaps their last one in an earlier frame (FOLLOW_OVERLAP), and people whose mean
    encodings are within SAME_PERSON_LIMIT are one person. People seen in fewer than
    MIN_FRAMES frames are left out."""
    tracks = _tracks(faces)
    merged = True
    while merged:
        merged = False
        for i, j in [(i, j) for i in range(len(tracks)) for j in range(i + 1, len(tracks))]:
            if _mean_distance(tracks[i], tracks[j]) <= SAME_PERSON_LIMIT:
                tracks[i] = sorted(tracks[i] + tracks.pop(j), key=lambda face: face.frame)
                merged = True
                break
    people = [track for track in tracks if len({f.frame for f in track}) >= MIN_FRAMES]
    return sorted(people, key=len, reverse=True)


def _tracks(faces: Sequence[Face]) -> list[list[Face]]:
    tracks: list[list[Face]] = []
    for face in sorted(faces, key=lambda f: f.frame):
        previous = [t for t in tracks if t[-1].frame < face.frame]
        best = max(previous, key=lambda t: _overlap(t[-1].box, face.box), default=None)
        if best is not None and _overlap(best[-1].box, face.box) >= FOLLOW_OVERLAP:
            best.append(face)
        else:
            tracks.append([face])
    return tracks


def _overlap(a: tuple, b: tuple) -> float:
    height = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    width = max(0, min(a[1], b[1]) - max(a[3], b[3]))
    area = lambda box: max(0, box[2] - box[0]) * max(0, box[1] - box[3])  # noqa: E731
    union = area(a) + area(b) - height * width
    return height * width / union if union else 0.0


def _mean_distance(one: list[Face], other: list[Face]) -> float:
    return float(np.linalg.norm(np.mean([f.encoding for f in one], axis=0)
                                - np.mean([f.encoding for f in other], axis=0)))


def the_person(faces: Sequence[Face]) -> list[Face]:
    """The faces of the one person in a sequence of frames.

    :raises UnusableFace: ``no_face``, or ``multiple_people`` (field ``video``)
    """
    people = follow(faces)
    if not people:
        raise UnusableFace("no_face", "video")
    if len(people) > 1:
        raise UnusableFace("multiple_people", "video")
    return people[0]


def choose(faces: Sequence[Face], max_shots: int = MAX_SHOTS,
           limits: QualityLimits | None = QualityLimits()) -> list[Face]:
    """Up to max_shots faces of one person to enrol: sharp, and spread over the poses the
    frames show. The first is the sharpest of the most frontal faces; each next one is the
    face whose pose is furthest from those chosen (the sharper on a tie), as long as it is no
    near-copy of any of them (MIN_POSE_STEP, MIN_ENCODING_STEP).

    :param limits: the quality gate a face must pass (None: no gate)
    :raises UnusableFace: no face passes the gate: the reason most faces failed for
    """
    usable = [face for face in faces if limits is None or not quality.problems(face.quality,
                                                                                limits)]
    if not usable:
        raise UnusableFace(_main_problem(faces, limits), "video")
    typical = float(np.median([face.quality.sharpness for face in usable]))
    sharp = [face for face in usable if face.quality.sharpness >= SOFT * typical] or usable
    first = max(sharp, key=lambda f: (-round(_turn(f.pose) / MIN_POSE_STEP),
                                      f.quality.sharpness))
    chosen = [first]
    while len(chosen) < max_shots:
        distinct = [f for f in sharp if all(_differs(f, c) for c in chosen)]
        if not distinct:
            break
        chosen.append(max(distinct, key=lambda f: (
            round(min(_pose_distance(f, c) for c in chosen), 1), f.quality.sharpness)))
    return sorted(chosen, key=lambda face: face.frame)


def _turn(pose: tuple[float, float]) -> float:
    turned = math.hypot(*pose)
    return 180.0 if math.isnan(turned) else turned  # an unknown pose (forced) counts as turned


def _pose_distance(one: Face, other: Face) -> float:
    apart = math.hypot(one.pose[0] - other.pose[0], one.pose[1] - other.pose[1])
    return 0.0 if math.isnan(apart) else apart


def _differs(one: Face, other: Face) -> bool:
    return (_pose_distance(one, other) >= MIN_POSE_STEP
            or float(np.linalg.norm(one.encoding - other.encoding)) >= MIN_ENCODING_STEP)


def _main_problem(faces: Sequence[Face], limits: QualityLimits | None) -> str:
    counts: dict[str, int] = {}
    for face in faces:
        for problem in quality.problems(face.quality, limits or QualityLimits())[:1]:
            counts[problem] = counts.get(problem, 0) + 1
    return max(counts, key=counts.get) if counts else "no_face"
