"""What a face must be to be enrolled, shared by ``/enroll`` and ``build``: exactly one face
(or the largest, if asked), through the quality gate, encoded with enrolment's jitters, and
checked for signs that it carries the wrong name, the name itself included."""

from __future__ import annotations

import numpy as np

from . import clips, quality, shots
from .config import Settings
from .errors import NameConflict, UnusableFace
from .live_gallery import LiveGallery
from .matching import SAME_PERSON_LIMIT, best_match
from .store import Store


def encoding(settings: Settings, pixels: np.ndarray, largest_face: bool = False,
             force: bool = False) -> np.ndarray:
    """Return the encoding of an image's one usable face, computed with enrolment's jitters.

    :param largest_face: with several faces, take the largest instead of refusing
    :param force: skip the quality gate
    :raises UnusableFace: ``no_face``, ``multiple_faces`` unless largest_face, or a quality
        reason (``small_face``, ``blurry``, ``extreme_pose``) unless force
    """
    from . import faces

    boxes = faces.detect(pixels, model=settings.model, upsample=settings.upsample,
                         max_side=settings.detect_max_side)
    if not boxes:
        raise UnusableFace("no_face")
    if len(boxes) > 1 and not largest_face:
        raise UnusableFace("multiple_faces")
    if not force:
        found = quality.problems(faces.measure(pixels, boxes[0]), settings.quality_limits)
        if found:
            raise UnusableFace(found[0])
    (encoded,) = faces.encode(pixels, boxes[:1], settings.enroll_jitters)
    return encoded


def clip_encodings(settings: Settings, data: bytes, max_shots: int = shots.MAX_SHOTS,
                   force: bool = False) -> list[tuple[shots.Face, np.ndarray]]:
    """Return the shots to enrol from a clip of one person (see ``shots``), each with its
    encoding computed with enrolment's jitters.

    :param force: skip the quality gate
    :raises UnsupportedVideo, VideoTooComplex: see ``clips.frames``
    :raises UnusableFace: ``no_face``, ``multiple_people``, or the quality reason most faces
        failed for unless force (field ``video``)
    """
    from . import faces

    frames = ((frame.index, frame.time, frame.pixels)
              for frame in clips.frames(data, settings.max_video_seconds))
    found = shots.measure(frames, settings.model, settings.upsample, settings.detect_max_side)
    chosen = shots.choose(shots.the_person(found), max_shots,
                          None if force else settings.quality_limits)
    return [(face, faces.encode(face.crop, [faces.Box(*face.crop_box)],
                                settings.enroll_jitters)[0]) for face in chosen]


def label_warnings(settings: Settings, live: LiveGallery, name: str, encoded: np.ndarray,
                   replacing: int | None = None) -> list[dict]:
    """Return the signs that a new face may carry the wrong name: the name looks like another
    person's (see :func:`name_warnings`), the face is unlike the person's other faces
    (``unlike_existing_faces``), or it would be recognised as somebody else
    (``resembles_another_person``).

    :param replacing: the face the new one replaces, left out of the comparison
    """
    warnings = name_warnings(live.store, name)
    gallery = live.current()
    own = gallery.distance_to(name, encoded, without=replacing)
    if own is not None and own > SAME_PERSON_LIMIT:
        warnings.append({"code": "unlike_existing_faces", "distance": round(own, 4)})
    match = best_match(encoded, gallery, settings.tolerance, settings.ratio, without=replacing)
    if match.name not in (None, name):
        warnings.append({"code": "resembles_another_person", "person": match.name,
                         "distance": match.distance})
    return warnings


def shot_warnings(settings: Settings, live: LiveGallery, name: str,
                  encodings: list[np.ndarray]) -> list[dict]:
    """Return :func:`label_warnings` for several new faces of one person, each warning once
    (the first of each code and other person)."""
    seen, warnings = set(), []
    for encoded in encodings:
        for warning in label_warnings(settings, live, name, encoded):
            key = (warning["code"], warning.get("person"))
            if key not in seen:
                seen.add(key)
                warnings.append(warning)
    return warnings


def name_warnings(store: Store, name: str, *besides: str, strict: bool = False) -> list[dict]:
    """Return the sign that a name may be the wrong one: it looks like an enrolled person's
    (Unicode's confusables: Cyrillic "Оbama" beside "Obama"), ``looks_like_existing_person``.

    :param besides: names that do not count (the person being renamed); the name itself never
    :param strict: refuse such a name instead (``FACEREC_STRICT_NAMES``)
    :raises NameConflict: strict, and the name looks like another person's (field ``name``)
    """
    other = store.look_alike(name, *besides)
    if other is None:
        return []
    if strict:
        raise NameConflict("name", other)
    return [{"code": "looks_like_existing_person", "person": other}]
