"""Face detection and encoding: the one module that imports face_recognition (and so dlib).

Detection runs on a copy downscaled to a maximum side, because HOG's cost grows with pixels;
the boxes are mapped back to the original pixels and the encodings are computed there.
Each image is detected once, and the boxes are handed to the encoder.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass

import cv2
import dlib
import numpy as np
from PIL import ImageFile

with warnings.catch_warnings():  # face_recognition_models still imports pkg_resources
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import face_recognition

# face_recognition sets this to True, process-wide, when it is imported. Our policy is to refuse
# truncated images (images.decode answers 415 image_truncated), so undo it here.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# dlib's detector and ResNet keep per-call state; one call at a time per process.
_dlib_lock = threading.Lock()
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Box:
    """A face's box in image pixels, in face_recognition's (top, right, bottom, left) order."""

    top: int
    right: int
    bottom: int
    left: int

    @property
    def area(self) -> int:
        """Pixels covered by the box."""
        return max(0, self.bottom - self.top) * max(0, self.right - self.left)

    def overlap(self, other: "Box") -> float:
        """Intersection over union with another box: 1 for the same box, 0 for disjoint ones."""
        height = max(0, min(self.bottom, other.bottom) - max(self.top, other.top))
        width = max(0, min(self.right, other.right) - max(self.left, other.left))
        union = self.area + other.area - height * width
        return height * width / union if union else 0.0

    def as_css(self) -> tuple[int, int, int, int]:
        """The tuple face_recognition takes as a face location."""
        return (self.top, self.right, self.bottom, self.left)


def blas_enabled() -> bool:
    """Whether the dlib in use was built against a BLAS library (4x faster encodings)."""
    return bool(getattr(dlib, "DLIB_USE_BLAS", False))


if not blas_enabled():
    log.warning("dlib was built without BLAS: encodings take about 4x longer (see README)")


def detect(image: np.ndarray, model: str = "hog", upsample: int = 1,
           max_side: int = 1024) -> list[Box]:
    """Find faces, largest first, detecting on a copy no larger than max_side.

    :param model: "hog" (CPU) or "cnn" (dlib's MMOD CNN; slow without a GPU)
    :param upsample: times to upsample the (downscaled) image; finds smaller faces, costs 4x each
    :return: boxes in the original image's pixels
    """
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    small = image
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    with _dlib_lock:
        found = face_recognition.face_locations(small, number_of_times_to_upsample=upsample,
                                                model=model)
    boxes = [_to_original(location, scale, width, height) for location in found]
    return sorted((box for box in boxes if box.area > 0), key=lambda box: box.area, reverse=True)


def encode(image: np.ndarray, boxes: list[Box], num_jitters: int = 1) -> list[np.ndarray]:
    """Compute the 128-d encoding of each box, at the image's full resolution."""
    if not boxes:
        return []
    with _dlib_lock:
        encodings = face_recognition.face_encodings(
            image, [box.as_css() for box in boxes], num_jitters=num_jitters
        )
    return [np.asarray(encoding, dtype=np.float64) for encoding in encodings]


def _to_original(location: tuple[int, int, int, int], scale: float, width: int,
                 height: int) -> Box:
    top, right, bottom, left = (round(value / scale) for value in location)
    return Box(top=max(0, top), right=min(width, right), bottom=min(height, bottom),
               left=max(0, left))
