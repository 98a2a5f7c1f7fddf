"""Face detection and encoding: the one module that imports face_recognition (and so dlib).

Detection runs on a copy downscaled to a maximum side, because HOG's cost grows with pixels;
the boxes are mapped back to the original pixels and the encodings are computed there.
Each image is detected once, and the boxes are handed to the encoder.

One request can use two cores: HOG's image pyramid is split in two halves of about equal work
(its two finest levels, and the rest), detected on two threads (dlib releases the GIL), and a
request's faces are encoded on threads, each with its own copy of dlib's models.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import dlib
import numpy as np
from PIL import Image, ImageFile

from . import timing

with warnings.catch_warnings():  # face_recognition_models still imports pkg_resources
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import face_recognition
    import face_recognition_models

# face_recognition sets this to True, process-wide, when it is imported. Our policy is to refuse
# truncated images (images.decode answers 415 image_truncated), so undo it here.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# dlib's CNN detector and landmark models are shared and keep per-call state: one call at a time
# per process. The HOG detector is cheap to make, so each thread has its own; encodings use a
# few copies of the 5-point predictor and the ResNet (_encoders), one per core at most.
_dlib_lock = threading.Lock()
_local = threading.local()
# HOG's pyramid shrinks each level by 5/6; its two finest levels hold 52% of the work (1 - (5/6)^4),
# so they run on one thread and the coarser levels, on a copy 25/36 the size, on another.
_FINE_LEVELS = 2
_PYRAMID, _DOUBLE = dlib.pyramid_down(6), dlib.pyramid_down(2)
# dlib's serialized frontal face detector: window 80x80, then max_pyramid_levels (1000, as dlib
# writes an int: its byte count, then little-endian bytes). The fine half's copy has 2 levels.
_LEVELS_FIELD = bytes([1, 80, 1, 80, 2, 0xE8, 0x03])
# Two detections of one face overlap this much at least (intersection over union), or one lies
# this much inside the other: dlib's own rule for the frontal face detector, on the split levels.
_SAME_FACE_IOU, _SAME_FACE_COVERED = 0.5, 0.95
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_encoders: queue.LifoQueue = queue.LifoQueue()  # (5-point predictor, ResNet) copies, idle
_CORES = max(2, len(os.sched_getaffinity(0)))
_encoder_slots = threading.BoundedSemaphore(_CORES)
# Images narrower than this hold no detectable face (HOG's window is 80 px, 20 px at upsample 2);
# dlib's CNN detector corrupts memory on images of a few pixels, so they never reach it.
MIN_DETECT_SIDE = 20
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


@dataclass(frozen=True)
class FaceQuality:
    """What the enrolment quality gate looks at in one face (see measure and quality.py).

    Angles are in degrees, 0 for a face that looks straight at the camera. yaw > 0: the nose
    points to the image's right (the subject's left); pitch > 0: the face looks up; roll > 0:
    the face is turned clockwise in the image (the top of the head leans to the image's right).
    """

    width: int  # box width in original image pixels
    sharpness: float  # variance of the Laplacian, on the face at most 64 pixels across
    yaw: float
    pitch: float
    roll: float


def blas_enabled() -> bool:
    """Whether the dlib in use was built against a BLAS library (4x faster encodings)."""
    return bool(getattr(dlib, "DLIB_USE_BLAS", False))


if not blas_enabled():
    log.warning("dlib was built without BLAS: encodings take about 4x longer (see README)")


def detect(image: np.ndarray, model: str = "hog", upsample: int = 1,
           max_side: int = 640, threads: int = 1) -> list[Box]:
    """Find faces, largest first, detecting on a copy no larger than max_side.

    :param model: "hog" (CPU) or "cnn" (dlib's MMOD CNN; slow without a GPU)
    :param upsample: times to upsample the (downscaled) image; finds smaller faces, costs 4x each
    :param threads: 2 splits HOG's pyramid over two threads (see split_hog)
    :return: boxes in the original image's pixels
    """
    return detect_scaled(image, min(1.0, max_side / max(image.shape[:2])), model, upsample,
                         threads)


def detect_scaled(image: np.ndarray, scale: float, model: str = "hog",
                  upsample: int = 1, threads: int = 1) -> list[Box]:
    """Find faces, largest first, detecting on a copy resized by scale (1 = as it is).

    :return: boxes in the original image's pixels
    """
    height, width = image.shape[:2]
    resized = image
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1
                             else cv2.INTER_LINEAR)
    if min(resized.shape[:2]) < MIN_DETECT_SIDE:  # no face fits; dlib's CNN crashes on these
        return []
    with timing.stage("detect"):
        if model == "hog" and threads > 1:
            found = split_hog(resized, upsample)
        else:
            found = _locate(resized, model, upsample)
    boxes = [_to_original(location, scale, width, height) for location in found]
    return sorted((box for box in boxes if box.area > 0), key=lambda box: box.area, reverse=True)


def _locate(image: np.ndarray, model: str, upsample: int) -> list[tuple[int, int, int, int]]:
    """Face rectangles as (top, right, bottom, left). HOG runs on this thread's own detector,
    without the lock (dlib releases the GIL, so threads detect in parallel)."""
    if model == "cnn":
        with _dlib_lock:
            found = [face.rect for face in face_recognition.api.cnn_face_detector(image, upsample)]
    else:
        found = list(_hog_detector()(image, upsample))
    return [(rect.top(), rect.right(), rect.bottom(), rect.left()) for rect in found]


def split_hog(image: np.ndarray, upsample: int) -> list[tuple[int, int, int, int]]:
    """HOG on two threads, as (top, right, bottom, left): the pyramid's two finest levels with
    a copy of the detector limited to them, and its coarser levels on a copy of the image
    already shrunk to the third level; overlapping detections are then merged as dlib does."""
    coarse = _threads().submit(_coarse_levels, image, upsample)
    rects, scores, _ = _hog_detector(fine=True).run(image, upsample, 0.0)
    found = [(score, (r.top(), r.right(), r.bottom(), r.left())) for r, score in
             zip(rects, scores)] + coarse.result()
    kept: list[tuple[int, int, int, int]] = []
    for _, box in sorted(found, reverse=True):
        if not any(_same_face(box, other) for other in kept):
            kept.append(box)
    return kept


def _coarse_levels(image: np.ndarray, upsample: int) -> list[tuple[float, tuple]]:
    """(score, (top, right, bottom, left)) of the pyramid's levels from _FINE_LEVELS on: the
    image upsampled as dlib does it, shrunk by dlib's own pyramid step, scanned whole."""
    height, width = image.shape[:2]
    copy = dlib.resize_image(image, height << upsample, width << upsample) if upsample else image
    for _ in range(_FINE_LEVELS):
        copy = _PYRAMID(copy)
    if min(copy.shape[:2]) < 80:  # smaller than HOG's window: the fine levels were all there was
        return []
    rects, scores, _ = _hog_detector().run(copy, 0, 0.0)
    found = []
    for rect, score in zip(rects, scores):
        for _ in range(_FINE_LEVELS):
            rect = _PYRAMID.rect_up(rect)
        for _ in range(upsample):
            rect = _DOUBLE.rect_down(rect)
        found.append((score, (rect.top(), rect.right(), rect.bottom(), rect.left())))
    return found


def _same_face(one: tuple[int, int, int, int], other: tuple[int, int, int, int]) -> bool:
    """Whether two (top, right, bottom, left) detections are one face (dlib's overlap test)."""
    first, second = Box(*one), Box(*other)
    height = max(0, min(first.bottom, second.bottom) - max(first.top, second.top))
    width = max(0, min(first.right, second.right) - max(first.left, second.left))
    inside = height * width / max(1, min(first.area, second.area))
    return first.overlap(second) > _SAME_FACE_IOU or inside > _SAME_FACE_COVERED


def _hog_detector(fine: bool = False):
    """dlib's HOG face detector for the calling thread (a detector keeps per-call state); with
    fine, a copy that scans only the pyramid's _FINE_LEVELS finest levels."""
    name = "fine_hog" if fine else "hog"
    if not hasattr(_local, name):
        detector = dlib.get_frontal_face_detector()
        setattr(_local, name, _limited(detector) if fine else detector)
    return getattr(_local, name)


def _limited(detector):
    """A copy of a HOG detector that scans only its pyramid's _FINE_LEVELS finest levels."""
    with tempfile.TemporaryDirectory(prefix="facerec-hog-") as folder:
        path = os.path.join(folder, "detector.svm")
        detector.save(path)
        with open(path, "rb") as saved:
            data = saved.read()
        if data.count(_LEVELS_FIELD) != 1:
            raise RuntimeError("dlib's detector is not serialized as expected")
        with open(path, "wb") as patched:
            patched.write(data.replace(_LEVELS_FIELD, _LEVELS_FIELD[:4] + bytes([1, _FINE_LEVELS])))
        return dlib.fhog_object_detector(path)


def _threads() -> ThreadPoolExecutor:
    """The threads that run a request's second half of detection and its other encodings."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(2, len(os.sched_getaffinity(0))),
                                       thread_name_prefix="facerec-faces")
        return _pool


def warm_up() -> None:
    """Run detection and an encoding once, so that dlib's models are loaded and their first
    call's set-up is done before a request needs them; and make every copy of the encoding
    models now, so that a worker's memory does not grow under its first concurrent load."""
    image = np.zeros((120, 120, 3), np.uint8)
    detect(image)
    boxes = [Box(10, 110, 110, 10)] * _CORES
    with ThreadPoolExecutor(_CORES) as warming:  # each thread takes (and makes) its own copy
        list(warming.map(lambda box: encode(image, [box, box]), boxes))


def nearest_centre(boxes: list[Box], width: int, height: int) -> Box:
    """The box whose centre is nearest the image's: the labelled face of an LFW-style crop."""
    return min(boxes, key=lambda b: (b.left + b.right - width) ** 2
               + (b.top + b.bottom - height) ** 2)


def encode(image: np.ndarray, boxes: list[Box], num_jitters: int = 1,
           threads: int = 1) -> list[np.ndarray]:
    """Compute the 128-d encoding of each box, at the image's full resolution, as
    face_recognition.face_encodings does (5-point alignment, dlib's ResNet).

    :param threads: encode this many faces at once, each with its own copy of the models
    """
    if not boxes:
        return []
    with timing.stage("encode"):
        if threads > 1 and len(boxes) > 1:
            first = _threads().map(lambda box: _encode_one(image, box, num_jitters), boxes[1:])
            return [_encode_one(image, boxes[0], num_jitters), *first]
        return [_encode_one(image, box, num_jitters) for box in boxes]


def _encode_one(image: np.ndarray, box: Box, num_jitters: int) -> np.ndarray:
    with _encoder_slots:
        try:
            predictor, network = _encoders.get_nowait()
        except queue.Empty:  # a copy per core at most, made when first needed
            models = face_recognition_models
            predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
            network = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        try:
            rect = dlib.rectangle(box.left, box.top, box.right, box.bottom)
            return np.asarray(network.compute_face_descriptor(image, predictor(image, rect),
                                                              num_jitters), dtype=np.float64)
        finally:
            _encoders.put((predictor, network))


def _to_original(location: tuple[int, int, int, int], scale: float, width: int,
                 height: int) -> Box:
    top, right, bottom, left = (round(value / scale) for value in location)
    return Box(top=max(0, top), right=min(width, right), bottom=min(height, bottom),
               left=max(0, left))


# The sharpness of a face is measured on its crop shrunk to at most this many pixels across.
_SHARPNESS_SIDE = 64
# The usual generic 3-D face for head pose (nose tip at the origin, arbitrary units), in the
# camera's axes: x to the image's right, y down, z away from the camera. Rows: nose tip, chin,
# outer corner of the image-left eye, of the image-right eye, image-left and right mouth corner.
_FACE_MODEL = np.array([(0.0, 0.0, 0.0), (0.0, 330.0, 65.0), (-225.0, -170.0, 135.0),
                        (225.0, -170.0, 135.0), (-150.0, 150.0, 125.0), (150.0, 150.0, 125.0)])
# The same six points among dlib's 68 landmarks (iBUG 300-W numbering).
_FACE_MODEL_LANDMARKS = (30, 8, 36, 45, 48, 54)


def landmarks(image: np.ndarray, box: Box, points: int = 68) -> list[tuple[int, int]]:
    """dlib's 68 (iBUG 300-W order) or 5 (eye corners, then the base of the nose) landmarks
    of one face, as (x, y) image pixels."""
    rect = dlib.rectangle(box.left, box.top, box.right, box.bottom)
    with _dlib_lock:
        predictor = (face_recognition.api.pose_predictor_68_point if points == 68
                     else face_recognition.api.pose_predictor_5_point)
        shape = predictor(image, rect)
    return [(part.x, part.y) for part in shape.parts()]


def measure(image: np.ndarray, box: Box,
            landmarks68: list[tuple[int, int]] | None = None) -> FaceQuality:
    """Measure the size, sharpness and head pose of one face, for the enrolment quality gate.

    Sharpness is the variance of the Laplacian of the grey face crop, shrunk (never enlarged)
    to at most 64 pixels across: see _sharpness. The pose comes from dlib's 68 landmarks fitted
    to a generic 3-D face (cv2.solvePnP); angles are NaN if the fit fails.

    :param image: the (height, width, 3) uint8 RGB image, at full resolution
    :param box: the face, in that image's pixels (as detect returns it)
    :param landmarks68: the face's 68 landmarks, if they are known already
    """
    found = landmarks68 if landmarks68 is not None else landmarks(image, box)
    points = np.array([found[index] for index in _FACE_MODEL_LANDMARKS], dtype=np.float64)
    yaw, pitch, roll = _head_pose(points, box, focal=float(image.shape[1]))
    return FaceQuality(width=box.right - box.left, sharpness=_sharpness(image, box), yaw=yaw,
                       pitch=pitch, roll=roll)


def _sharpness(image: np.ndarray, box: Box) -> float:
    """Variance of the Laplacian of the grey face, shrunk to _SHARPNESS_SIDE pixels across.

    A fixed size makes the measure independent of the face's size in pixels. Shrinking uses
    Pillow's antialiased Lanczos: cv2's INTER_AREA blends neighbouring pixels when it shrinks by
    a little, so a face 66 pixels across read half as sharp as the same face 64 pixels across.
    Smaller faces are measured as they are: enlarging interpolates, which smooths, and would
    report a small sharp face as blurry (it is refused as too small, the real reason, anyway).
    """
    top, bottom = max(0, box.top), min(image.shape[0], box.bottom)
    left, right = max(0, box.left), min(image.shape[1], box.right)
    if bottom - top < 3 or right - left < 3:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(image[top:bottom, left:right]), cv2.COLOR_RGB2GRAY)
    scale = _SHARPNESS_SIDE / max(grey.shape)
    if scale < 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.LANCZOS))
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _head_pose(points: np.ndarray, box: Box, focal: float) -> tuple[float, float, float]:
    """(yaw, pitch, roll) of six landmarks fitted to _FACE_MODEL, in degrees (NaN on failure).

    The camera has the image width as focal length and its principal point at the face's centre,
    so the pose is relative to the line of sight: a frontal face off-centre in a wide photo
    still reads as frontal. The fit starts from a frontal face at the distance its eye span
    implies, which keeps solvePnP out of the mirrored (upside-down, behind the camera) solution.
    """
    centre = ((box.left + box.right) / 2, (box.top + box.bottom) / 2)
    camera = np.array([[focal, 0.0, centre[0]], [0.0, focal, centre[1]], [0.0, 0.0, 1.0]])
    eye_span = max(1.0, float(np.linalg.norm(points[3] - points[2])))
    model_span = float(_FACE_MODEL[3, 0] - _FACE_MODEL[2, 0])
    translation = np.array([[0.0], [0.0], [focal * model_span / eye_span]])
    found, rotation, _ = cv2.solvePnP(_FACE_MODEL, points, camera, None, np.zeros((3, 1)),
                                      translation, useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
    if not found:
        return float("nan"), float("nan"), float("nan")
    return _angles(cv2.Rodrigues(rotation)[0])


def _angles(matrix: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a model-to-camera rotation, signed as in FaceQuality.

    The matrix is decomposed as Rz(roll) @ Ry(-yaw) @ Rx(-pitch) in the camera's axes (y down).
    """
    yaw = np.arctan2(matrix[2, 0], np.hypot(matrix[2, 1], matrix[2, 2]))
    pitch = -np.arctan2(matrix[2, 1], matrix[2, 2])
    roll = np.arctan2(matrix[1, 0], matrix[0, 0])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))
