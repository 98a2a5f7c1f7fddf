"""CompreFace's REST API (``/api/v1/...``, docs/compreface.md) in the service's terms: its JSON
for the service's records, its similarity for the service's distances and decisions, and its
error body for the service's errors. Pure Python.

**Similarity** is the probability that a face is a subject, read off the table that /verify's
``probability`` comes from (``verification.probability`` of the distance to the subject's
faces, as ``/verify?name=`` measures it). A face keeps the service's decision: the subject it
is named as comes first, and every subject the service does not name it as (all of them, for
an unknown face) is listed with at most :data:`NOT_NAMED_CEILING`. So the nearest subjects of an
unknown face are still there, with a low similarity, as CompreFace lists them, and a client's
own threshold above the ceiling agrees with the service.
"""

from __future__ import annotations

from .. import verification
from ..results import Detection, Enrolment, FacesPage, Recognition, Verification
from .error_bodies import first_code, message

PREFIX = "/api/v1/"
# A face the service does not name as a subject is, by that decision, no more likely than not
# to be them: no similarity listed for it claims more.
NOT_NAMED_CEILING = 0.5
# dlib's detectors (HOG, MMOD) decide face or no face, with no score: every face found is
# reported as certain, so every det_prob_threshold keeps it.
DETECTION_PROBABILITY = 1.0
# The stages the service times (recognizer.timing), by CompreFace's names where it has one.
STAGES = {"decode": "decoder", "detect": "detector", "encode": "calculator", "match": "matcher"}
DETECTORS = {"hog": "dlib.hog_frontal_face_detector", "cnn": "dlib.mmod_human_face_detector"}
CALCULATOR = "dlib.face_recognition_resnet_model_v1"

# The service's error codes whose CompreFace answer differs from its own: (status, CompreFace's
# code). Any other code keeps its status, with code 26 (a validation error) for a 400 and 0
# (CompreFace's "undefined") otherwise.
ERRORS = {
    "no_face": (400, 28), "multiple_faces": (400, 31), "small_face": (400, 26),
    "blurry": (400, 26), "extreme_pose": (400, 26), "image_too_complex": (400, 26),
    "too_much_work": (400, 26), "unsupported_image": (400, 21), "image_truncated": (400, 21),
    "missing_parameter": (400, 33), "missing_image": (400, 34),
    "name_looks_like_another": (400, 43), "unknown_person": (404, 42), "unknown_face": (404, 11),
    "missing_api_key": (401, 20),
}


def box(found: dict) -> dict:
    """A face's box (the service's top, right, bottom, left) as CompreFace's."""
    return {"probability": DETECTION_PROBABILITY, "x_max": found["right"],
            "y_max": found["bottom"], "x_min": found["left"], "y_min": found["top"]}


def similarity(distance: float, named: bool) -> float:
    """The similarity of a face to a subject this far away (see the module's docstring)."""
    probability = verification.probability(distance)
    return probability if named else min(probability, NOT_NAMED_CEILING)


def execution_time(spent: dict[str, float]) -> dict[str, float]:
    """Milliseconds by stage, by CompreFace's names, to 0.1 ms."""
    return {STAGES.get(name, name): round(ms, 1) for name, ms in spent.items()}


def plugins_versions(model: str) -> dict[str, str]:
    """What each stage runs, as CompreFace's ``plugins_versions`` says."""
    return {"detector": DETECTORS.get(model, model), "calculator": CALCULATOR}


def recognized(record: Recognition, limit: int = 0, timed: dict | None = None) -> list[dict]:
    """Each face (the largest ``limit``, 0 for all) with its subjects, nearest first, and the
    time its stages took (``timed``, with ``status=true``)."""
    return [_timed({"box": box(face.box),
                    "subjects": [{"subject": candidate.name,
                                  "similarity": similarity(candidate.distance,
                                                           candidate.name == face.name)}
                                 for candidate in face.candidates]}, timed)
            for face in record.faces[:limit or None]]


def detected(record: Detection, limit: int = 0, timed: dict | None = None) -> list[dict]:
    """Each face's box (the largest ``limit``, 0 for all)."""
    return [_timed({"box": box(face.box)}, timed) for face in record.faces[:limit or None]]


def verified(record: Verification, timed: dict | None = None) -> list[dict]:
    """The source image's face and its match in the target image, with /verify's probability
    as the similarity."""
    match = {"box": box(record.other["box"]), "similarity": record.probability}
    return [{"source_image_face": _timed({"box": box(record.face["box"])}, timed),
             "face_matches": [_timed(match, timed)]}]


def _timed(face: dict, timed: dict | None) -> dict:
    return face if timed is None else {**face, "execution_time": timed}


def answer(result: list[dict], model: str | None = None, ignored: tuple[str, ...] = ()) -> dict:
    """CompreFace's answer around a result: the ``plugins_versions`` (with ``status=true``,
    the detection model given), and the face plugins asked for that the service does not
    have, which it ignored."""
    body: dict = {"result": result}
    if model is not None:
        body["plugins_versions"] = plugins_versions(model)
    if ignored:
        body["ignored_face_plugins"] = list(ignored)
    return body


def enrolled(record: Enrolment) -> dict:
    """A face added to a subject: its id (a string, as CompreFace's UUIDs are) and subject."""
    return {"image_id": str(record.face_id), "subject": record.name}


def faces_page(page: FacesPage, page_number: int) -> dict:
    """A page of the faces enrolled, numbered from 0 as CompreFace numbers them."""
    return {"faces": [{"image_id": str(face.face_id), "subject": face.name}
                      for face in page.faces],
            "page_number": page_number, "page_size": page.size, "total_pages": page.pages,
            "total_elements": page.total}


def error(status: int, body: dict) -> tuple[int, dict]:
    """CompreFace's answer to one of the service's errors: its status and
    ``{"message": ..., "code": ...}``, the message naming each field, code and detail."""
    code = first_code(body)
    if code in ERRORS:
        status, number = ERRORS[code]
    else:
        number = 26 if status == 400 else 0
    return status, {"message": message(body), "code": number}
