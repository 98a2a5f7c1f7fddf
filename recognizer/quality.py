"""The enrolment quality gate: whether a measured face is good enough to enrol (pure Python).

faces.measure gives each face's width (of dlib's box, which spans brows to chin, in the
original image's pixels), its sharpness (variance of the Laplacian of the grey face shrunk to 64
pixels across, so it does not depend on the face's size) and its head pose (yaw, pitch, roll in
degrees from a generic 3-D face fitted to dlib's 68 landmarks; 0 is frontal). problems compares
them with QualityLimits, the reasons modelled on AWS Rekognition's quality filter.

The defaults were measured with this code (HOG, upsample 1) on the photos in ../shared/faces:
463 LFW crops (the centre face of lfw_dev/, about 90-130 pixels across) and the 23 photos in
people/, which must pass, and blurred, shrunk and turned copies, which must not.

- min_face_size 60: LFW faces are 74-154 pixels across, people/ 62 (a 240p video frame) to 452.
  A photo shrunk until the face is about 30 pixels across (found with upsample 2) reads 31.
- min_sharpness 60: the geometric mean of the softest real face (LFW 77; LFW 1st percentile 138,
  median 588; people/ at least 613) and the sharpest people/ photo after a Gaussian blur of
  sigma 3% of the face's width (49, re-detected). Such 3% blurs of LFW read below 60 in 96% of
  cases, 4% blurs in 99.7%; 2% blurs (soft rather than blurred) in 47% (people/ 22%).
- max_yaw 50: LFW |yaw| has median 19, 99th percentile 47 and maximum 54; people/ at most 37.
  Three LFW faces, strong three-quarter views, read above 50. By eye, the generic model reads
  turned faces as more turned than they look, and the landmarks of hard faces are uncertain by a few
  degrees (up to 10-20 for the worst: compare a photo with its mirror image).
- max_pitch 30: LFW |pitch| 99th percentile 22, one face above 30 (36, chin raised high);
  people/ at most 19.
- max_roll 35: LFW |roll| 99th percentile 20, maximum 30; people/ at most 13. Copies of a
  frontal photo rotated in the image plane by 30 and 40 degrees read 29 and 36. Roll does not
  hurt the encoding (dlib aligns the face first); beyond about 40 degrees the landmarks no
  longer follow the face and the angles read smaller than they are, so this limit is a sanity
  check, not a guarantee.

With these defaults 4 of the 463 LFW faces are refused, all extreme_pose; no people/ photo is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .errors import QUALITY_REASONS

# Every reason problems can give, in the order it gives them.
REASONS = QUALITY_REASONS


class Measured(Protocol):
    """What problems reads from a face: faces.FaceQuality, or anything with these attributes."""

    @property
    def width(self) -> int: ...

    @property
    def sharpness(self) -> float: ...

    @property
    def yaw(self) -> float: ...

    @property
    def pitch(self) -> float: ...

    @property
    def roll(self) -> float: ...


@dataclass(frozen=True)
class QualityLimits:
    """The least size and sharpness and the largest head angles (either sign) a face may have."""

    min_face_size: int = 60  # pixels across (FaceQuality.width)
    min_sharpness: float = 60.0
    max_yaw: float = 50.0  # degrees
    max_pitch: float = 30.0  # degrees
    max_roll: float = 35.0  # degrees


def problems(quality: Measured, limits: QualityLimits) -> list[str]:
    """Reasons to refuse this face for enrolment, most fundamental first; [] when it is fine.

    A value equal to its limit passes; a value that is not a number (NaN) fails.

    :return: some of REASONS, in that order: small_face, blurry, extreme_pose
    """
    found: list[str] = []
    if not quality.width >= limits.min_face_size:
        found.append("small_face")
    if not quality.sharpness >= limits.min_sharpness:
        found.append("blurry")
    if not (abs(quality.yaw) <= limits.max_yaw and abs(quality.pitch) <= limits.max_pitch
            and abs(quality.roll) <= limits.max_roll):
        found.append("extreme_pose")
    return found
