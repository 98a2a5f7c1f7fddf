"""DeepStack's face API (``/v1/vision/face...``, docs/deepstack.md) in the service's terms: its
``{"success": ..., "predictions": [...]}`` answers for the service's records, and
``{"success": false, "error": ...}`` for the service's errors. Pure Python.

A face is named (``userid``) when the service names it and its confidence, the similarity that
CompreFace's surface gives the same face and person (``compreface.similarity``), is at least the
caller's ``min_confidence``; otherwise it is ``"unknown"`` with confidence 0, as DeepStack
answers.
"""

from __future__ import annotations

from ..results import Detection, Recognition
from . import compreface
from .error_bodies import first_code, message

PREFIX = "/v1/vision/"
UNKNOWN = "unknown"
# The service's error codes whose DeepStack answer has another status than the service's own:
# DeepStack refuses what it cannot use in an image or a form with 400.
STATUSES = {"no_face": 400, "multiple_faces": 400, "small_face": 400, "blurry": 400,
            "extreme_pose": 400, "image_too_complex": 400, "too_much_work": 400,
            "unsupported_image": 400, "image_truncated": 400, "name_looks_like_another": 400}


def box(found: dict) -> dict:
    """A face's box (the service's top, right, bottom, left) as DeepStack's."""
    return {"y_min": found["top"], "x_min": found["left"], "y_max": found["bottom"],
            "x_max": found["right"]}


def detected(record: Detection, duration: int) -> dict:
    """Every face's box; the service's detectors give no score, so each is certain (1.0)."""
    return {"success": True, "duration": duration,
            "predictions": [{"confidence": compreface.DETECTION_PROBABILITY, **box(face.box)}
                            for face in record.faces]}


def recognized(record: Recognition, min_confidence: float, duration: int) -> dict:
    """Every face, named or ``unknown`` (see the module's docstring)."""
    predictions = []
    for face in record.faces:
        confidence = (0.0 if face.name is None
                      else compreface.similarity(face.distance, named=True))
        named = face.name is not None and confidence >= min_confidence
        predictions.append({"confidence": confidence if named else 0.0,
                            "userid": face.name if named else UNKNOWN, **box(face.box)})
    return {"success": True, "duration": duration, "predictions": predictions}


def registered() -> dict:
    """A face added to a userid."""
    return {"success": True, "message": "face added"}


def listed(names: list[str]) -> dict:
    """Every userid with a face."""
    return {"success": True, "faces": names}


def deleted() -> dict:
    """A userid deleted, with every face of theirs."""
    return {"success": True}


def error(status: int, body: dict) -> tuple[int, dict]:
    """DeepStack's answer to one of the service's errors: its status and
    ``{"success": false, "error": ...}``, the error naming each field, code and detail."""
    return STATUSES.get(first_code(body), status), {"success": False, "error": message(body)}
