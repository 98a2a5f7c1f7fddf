"""The face service: the operations the HTTP and CLI edges call, over one store and one set of
settings. Each operation checks its input, does its work through the modules below it, and
returns a record from ``results``; ``faces`` (which loads dlib's models) is imported only when
a face has to be found.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import build as building
from . import (
    clips,
    encodings_file,
    enrolment,
    inspection,
    limits,
    metrics,
    pictures,
    shots,
    timing,
    verification,
)
from .access import Gate
from .config import Settings
from .errors import InvalidParameter, StoreUnavailable, TooMuchWork, UnknownFace, UnknownPerson
from .live_gallery import LiveGallery
from .matching import Evidence, Match, best_match, evidence, ratio_bound
from .names import check_name, check_names
from .pictures import Picture
from .results import (
    ClipEnrolment,
    Detection,
    EnrolledFace,
    Enrolment,
    Exported,
    FaceForgotten,
    FacesPage,
    Forgotten,
    Health,
    ImageSize,
    Imported,
    PeoplePage,
    Readiness,
    Recognition,
    RecognizedFace,
    Renamed,
    Shot,
    Verification,
)
from .sandbox import Decoders
from .store import PersonRecord, Store, open_store
from .sessions import Sessions
from .streams.operations import LiveVideo

log = logging.getLogger(__name__)
PAGE_SIZE = 100  # people per page of /people, by default


class FaceService:
    """Recognition and enrolment over one store, with one set of settings."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else open_store(settings.store)
        self.gallery = LiveGallery(self.store, settings.index_above)
        self.gate = Gate(settings.api_keys, settings.rate_limit, settings.rate_burst,
                         settings.rate_state_path, settings.auth_failures)
        self.announced = False  # whether a server has logged what it runs with
        self.decoders = Decoders()  # a request's images are decoded in these processes
        # streams, events, presence, webhooks; and webcam sessions (in this process)
        self.live = LiveVideo(settings, self.store, self.identify)
        self.sessions = Sessions(self)
        self._working, self._working_lock = 0, threading.Lock()  # recognitions under way
        # at most a recognition per core computes at once; a worker's other threads wait here
        # without the GIL, so that its cheap requests (/health, /people) are answered at once
        self._computing = threading.BoundedSemaphore(max(1, len(os.sched_getaffinity(0))))

    # -- images -------------------------------------------------------------------------------

    def picture_from_request(self, image_url: str | None = None, image: object = None,
                             image_base64: object = None, prefix: str = "") -> Picture:
        """The image of an HTTP request, from whichever field carries it (see ``pictures``).

        :param prefix: ``other_`` for a request's second image
        """
        return pictures.from_request(self.settings, image_url, image, image_base64, prefix,
                                     decode=self.decoders.decode)

    def picture_from_path(self, path: str | Path) -> Picture:
        """The image in a local file (CLI only)."""
        return pictures.from_path(self.settings, path)

    def clip_from_request(self, video: object, image_url: str | None = None,
                          image: object = None, image_base64: object = None) -> clips.Clip:
        """The video clip of an HTTP request (see ``clips.from_request``)."""
        return clips.from_request(video, self.settings.max_video_bytes, image_url, image,
                                  image_base64)

    # -- faces --------------------------------------------------------------------------------

    def recognize(self, picture: Picture, tolerance: float | None = None, top_k: int = 3,
                  model: str | None = None, upsample: int | None = None) -> Recognition:
        """Find every face, the largest ``max_faces`` of them, and decide who each one is (see
        ``matching`` for the rule). The cap bounds the work a crowd photo can cause.

        Each face is encoded once without jitter, and again with ``jitters`` only when that
        first decision is near a boundary (see ``near_boundary``): nearly as accurate as
        jittering every face, at a fraction of the cost."""
        from . import faces

        limits.TOP_K.check("top_k", top_k)
        if tolerance is not None:
            limits.TOLERANCE.check("tolerance", tolerance)
        model, upsample = self._detection(picture, model, upsample)
        margin, jitters = self.settings.jitter_margin, self.settings.jitters
        with self.working() as threads:
            boxes = faces.detect(picture.pixels, model=model, upsample=upsample,
                                 max_side=self.settings.detect_max_side,
                                 threads=threads)[:self.settings.max_faces]
            first = jitters if margin >= 1 else 1
            encodings = faces.encode(picture.pixels, boxes, first, threads)
            matches = [self.identify(encoding, tolerance, max(top_k, 2)) for encoding in encodings]
            close = [index for index, match in enumerate(matches) if first < jitters
                     and near_boundary(match, self.evidence(match), self._tolerance(tolerance),
                                       self.settings.ratio, margin)]
            again = faces.encode(picture.pixels, [boxes[i] for i in close], jitters, threads)
            for index, encoding in zip(close, again, strict=True):
                matches[index] = self.identify(encoding, tolerance, max(top_k, 2))
        metrics.faces_found(len(boxes), len(close))
        found = [RecognizedFace(pictures.box_in_image(picture, box), match.name, match.distance,
                                match.confidence, match.candidates[:top_k])
                 for box, match in zip(boxes, matches, strict=True)]
        return Recognition(found, ImageSize(*picture.size))

    @contextlib.contextmanager
    def working(self) -> Iterator[int]:
        """Count a recognition under way; gives the threads it may use: FACEREC_REQUEST_THREADS
        when it is the process's only one, else 1 (when the cores are busy anyway, splitting
        work only adds to it)."""
        with self._working_lock:
            self._working += 1
            alone = self._working == 1
        try:
            with self._computing:
                yield self.settings.request_threads if alone else 1
        finally:
            with self._working_lock:
                self._working -= 1

    def _tolerance(self, tolerance: float | None) -> float:
        return self.settings.tolerance if tolerance is None else tolerance

    def evidence(self, match: Match) -> Evidence | None:
        """The evidence a decision rests on (see ``matching``), from its candidates."""
        if not match.candidates:
            return None
        return evidence(self.gallery.current(),
                        [(candidate.name, candidate.distance) for candidate in match.candidates])

    def identify(self, encoding: np.ndarray, tolerance: float | None = None,
                 top_k: int = 3) -> Match:
        """Decide who one face encoding is, against the store as it is now."""
        tolerance = self._tolerance(tolerance)
        with timing.stage("match"):
            return best_match(encoding, self.gallery.current(), tolerance, self.settings.ratio,
                              top_k)

    def enroll(self, name: str, picture: Picture, largest_face: bool = False,
               force: bool = False) -> Enrolment:
        """Add the one face in the picture to a person (created if new).

        :param largest_face: with several faces, take the largest instead of refusing
        :param force: enrol a face that fails the quality gate
        :raises UnusableFace: see ``enrolment.encoding``
        :raises NameConflict: the name looks like another person's, and names are strict
        """
        name = check_name(name)
        if picture.digest and (found := self.store.face_of_image(name, picture.digest)):
            return Enrolment(name, *found, duplicate=True)  # a retry adds nothing
        strict = self.settings.strict_names
        if strict:  # refused before a face is looked for; checked again as it is added
            enrolment.name_warnings(self.store, name, strict=True)
        encoding = enrolment.encoding(self.settings, picture.pixels, largest_face, force)
        warnings = enrolment.label_warnings(self.settings, self.gallery, name, encoding)
        face_id, count, duplicate = self.store.add_face_once(
            name, encoding, picture.source, picture.digest or None, distinct=strict)
        log.info("enrolled a face (id %d)%s", face_id, " with warnings" if warnings else "")
        return Enrolment(name, face_id, count, [] if duplicate else warnings, duplicate)

    def enroll_encoding(self, name: str, encoding: np.ndarray, source: str) -> Enrolment:
        """Add a face from a tracked face's encoding ("who is this?" from a webcam session),
        with the same name checks and wrong-label warnings as an image's."""
        name = check_name(name)
        strict = self.settings.strict_names
        if strict:
            enrolment.name_warnings(self.store, name, strict=True)
        warnings = enrolment.label_warnings(self.settings, self.gallery, name, encoding)
        face_id, count, _ = self.store.add_face_once(name, encoding, source, None,
                                                     distinct=strict)
        log.info("enrolled a face (id %d) from a tracked face", face_id)
        return Enrolment(name, face_id, count, warnings)

    def enroll_clip(self, name: str, clip: clips.Clip, max_shots: int | None = None,
                    force: bool = False) -> ClipEnrolment:
        """Add up to max_shots frames of the one person in a short clip to a person (created
        if new): sharp frames, in varied poses (see ``shots``). The same clip again adds
        nothing.

        :param force: enrol faces that fail the quality gate
        :raises UnusableFace: ``no_face``, ``multiple_people`` or a quality reason (``video``)
        :raises UnsupportedVideo, VideoTooComplex: see ``clips.frames``
        :raises NameConflict: the name looks like another person's, and names are strict
        """
        name = check_name(name)
        max_shots = limits.MAX_SHOTS.check(
            "max_shots", shots.MAX_SHOTS if max_shots is None else max_shots)
        strict = self.settings.strict_names
        if strict:  # refused before a face is looked for; checked again as they are added
            enrolment.name_warnings(self.store, name, strict=True)
        chosen = enrolment.clip_encodings(self.settings, clip.data, max_shots, force)
        warnings = enrolment.shot_warnings(self.settings, self.gallery, name,
                                           [encoding for _, encoding in chosen])
        faces = [(encoding, clip.source, pictures.sha256(f"{clip.digest}:{face.frame}".encode()))
                 for face, encoding in chosen]
        added, count = self.store.add_faces_once(name, faces, distinct=strict)
        duplicate = all(existed for _, existed in added)
        log.info("enrolled %d faces from a clip", sum(not existed for _, existed in added))
        return ClipEnrolment(name, [face_id for face_id, _ in added], count,
                             [_shot(face_id, face) for (face_id, _), (face, _) in
                              zip(added, chosen)], [] if duplicate else warnings, duplicate)

    def enroll_path(self, name: str, path: str | Path, largest_face: bool = False,
                    force: bool = False, max_shots: int | None = None
                    ) -> Enrolment | ClipEnrolment:
        """Enrol a local file (CLI only): a video clip as ``enroll_clip``, an image as
        ``enroll``."""
        if clips.looks_like_video(_head(path)):
            return self.enroll_clip(name, clips.from_path(path, self.settings.max_video_bytes),
                                    max_shots, force)
        return self.enroll(name, self.picture_from_path(path), largest_face, force)

    def detect(self, picture: Picture, model: str | None = None,
               upsample: int | None = None) -> Detection:
        """Every face's box, landmarks and quality; no store is read (see ``inspection``)."""
        model, upsample = self._detection(picture, model, upsample)
        return inspection.detect(self.settings, picture, model, upsample)

    def _detection(self, picture: Picture, model: str | None,
                   upsample: int | None) -> tuple[str, int]:
        """The model and upsampling a request asks for (or the defaults), within the budget.

        :raises TooMuchWork: the CNN detector when it is off (FACEREC_ALLOW_CNN), or more
            work than FACEREC_MAX_DETECT_WORK
        """
        if upsample is not None:
            limits.UPSAMPLE.check("upsample", upsample)
        model = self.settings.model if model is None else model
        upsample = self.settings.upsample if upsample is None else upsample
        if model == "cnn" and not self.settings.allow_cnn and self.settings.model != "cnn":
            raise TooMuchWork("model", "model=cnn is off (FACEREC_ALLOW_CNN)")
        height, width = picture.pixels.shape[:2]
        work = limits.detection_work(width, height, self.settings.detect_max_side, upsample,
                                     model)
        if work > self.settings.max_detect_work:
            raise TooMuchWork("upsample", f"{work} pixels of detection work, at most"
                              f" {self.settings.max_detect_work} (FACEREC_MAX_DETECT_WORK)")
        return model, upsample

    def verify(self, picture: Picture, other: Picture | None = None, name: str | None = None,
               largest_face: bool = False) -> Verification:
        """Whether the picture's face is the other picture's person, or the enrolled person
        called name (their centroid): exactly one of the two.

        :raises InvalidParameter: neither or both of other and name
        :raises UnusableFace: ``no_face``; ``multiple_faces`` unless largest_face
        :raises UnknownPerson: nobody called name is enrolled
        """
        if (other is None) == (name is None):
            raise InvalidParameter("name", "missing_parameter" if other is None
                                   else "several_images", "give name or a second image")
        box, encoding = inspection.one_face(self.settings, picture, largest_face)
        if other is not None:
            other_box, other_encoding = inspection.one_face(self.settings, other, largest_face,
                                                            "other_image")
            between, compared = verification.distance(encoding, other_encoding), {
                "box": other_box}
            threshold = verification.THRESHOLD
        else:
            name = check_name(name)
            between = self.gallery.current().distance_to(name, encoding)
            if between is None:
                raise UnknownPerson(name)
            compared, threshold = {"name": name}, verification.PERSON_THRESHOLD
        same, distance, probability = inspection.decision(between, threshold)
        return Verification(same, distance, probability, threshold, {"box": box}, compared)

    # -- people -------------------------------------------------------------------------------

    def people(self, page: int = 1, size: int = PAGE_SIZE,
               search: str | None = None) -> PeoplePage:
        """One page of everyone enrolled (or of those whose name contains ``search``, in any
        case), in name order (by code point), with their face counts. A page past the end is
        empty.

        :raises InvalidParameter: page or size out of range (``limits.PAGE``, ``PAGE_SIZE``),
            a search of more than 100 characters
        """
        limits.PAGE.check("page", page)
        limits.PAGE_SIZE.check("size", size)
        offset = (page - 1) * size
        if search:
            if len(search) > 100:
                raise InvalidParameter("search", "invalid_value", "at most 100 characters")
            folded = search.casefold()
            found = [name for name in self.gallery.current().names if folded in name.casefold()]
            total, listing = len(found), self.store.people_named(found[offset:offset + size])
        else:
            total = len(self.gallery.current())
            listing = self.store.people(offset=offset, limit=size)
        return PeoplePage(listing, total, page, size, pages=-(-total // size))

    def person(self, name: str) -> PersonRecord:
        """A person, when they were first enrolled, and each face's id, source and date.

        :raises UnknownPerson: nobody of that name is enrolled
        """
        return self.store.person(check_name(name))

    def faces(self, page: int = 1, size: int = PAGE_SIZE, name: str | None = None) -> FacesPage:
        """One page of the faces enrolled, everyone's or one person's, in the order they were
        added, each with its person's name. A page past the end is empty.

        :raises InvalidParameter: page or size out of range, or an invalid name
        :raises UnknownPerson: a name, and nobody of that name is enrolled
        """
        limits.PAGE.check("page", page)
        limits.PAGE_SIZE.check("size", size)
        name = None if name is None else check_name(name)
        listing, total = self.store.faces((page - 1) * size, size, name)
        if name is not None and not total:
            raise UnknownPerson(name)
        return FacesPage([EnrolledFace(*face) for face in listing], total, page, size,
                         pages=-(-total // size))

    def forget(self, name: str) -> Forgotten:
        """Delete a person and all their data."""
        name = check_name(name)
        deleted = self.store.forget(name)
        log.info("deleted a person (%d faces)", deleted)
        return Forgotten(name, deleted)

    def forget_face(self, name: str, face_id: int) -> FaceForgotten:
        """Delete one of a person's faces; the person is deleted with their last face.

        :raises UnknownPerson: nobody of that name is enrolled
        :raises UnknownFace: the person has no face with that id
        """
        limits.FACE_ID.check("face_id", face_id)
        name = check_name(name)
        left = self.store.delete_face(name, face_id)
        log.info("deleted a face (id %d, %d left)", face_id, left)
        return FaceForgotten(name, face_id, left)

    def forget_face_by_id(self, face_id: int) -> FaceForgotten:
        """Delete a face known by its id alone, whoever's it is (see forget_face).

        :raises UnknownFace: no face has that id
        """
        limits.FACE_ID.check("face_id", face_id)
        name = self.store.face_owner(face_id)
        if name is None:
            raise UnknownFace()
        return self.forget_face(name, face_id)

    def rename(self, name: str, new_name: str) -> Renamed:
        """Give a person's faces a new name. When somebody already has that name, the two
        become one person (a merge); renaming to the same name changes nothing.

        :raises InvalidParameter: ``name`` or ``new_name`` is not a valid name
        :raises UnknownPerson: nobody called name is enrolled
        :raises NameConflict: new_name looks like a third person's name, and names are strict
        """
        name, new_name = check_name(name), check_name(new_name, field="new_name")
        warnings = [] if new_name == name else enrolment.name_warnings(self.store, new_name, name)
        count, merged = self.store.rename(name, new_name, distinct=self.settings.strict_names)
        log.info("renamed a person (%d faces%s)", count, ", merged" if merged else "")
        return Renamed(new_name, count, merged, warnings)

    # -- in bulk ------------------------------------------------------------------------------

    def build(self, *directory: str | Path, force: bool = False, prune: bool = False,
              workers: int | None = None,
              progress: Callable[..., Iterable] | None = None) -> building.BuildReport:
        """Enrol every photo of a folder-per-person tree (see ``build``)."""
        if workers is not None:
            limits.BUILD_WORKERS.check("workers", workers)
        return building.build(self.settings, self.gallery, *directory, force=force,
                              prune=prune, workers=workers, progress=progress)

    def import_encodings(self, path: str | Path) -> Imported:
        """Add the faces of an encodings file (arrays ``names`` and ``encodings``, as a
        face_recognition script saves them with ``np.savez``): all of them or, on any error,
        none. A file imported before (the same bytes) adds nothing.

        :raises InvalidParameter: field ``file``: see ``encodings_file.read``, or
            ``invalid_name: names[i]`` (the first invalid row; the name itself is not repeated)
        """
        batch = encodings_file.read(path)
        names = check_names(batch.names, "file")
        added = self.store.import_encodings(names, batch.encodings, f"import:{batch.sha256}")
        log.info("imported %d faces", added)
        return Imported(added, len(set(names)), already_imported=not added)

    def export_encodings(self, path: str | Path) -> Exported:
        """Write every stored encoding with its person's name to an encodings file that
        ``import_encodings`` and ``np.load(allow_pickle=False)`` read back (see
        ``encodings_file.write``: atomic, readable by its owner only)."""
        export = self.store.export()
        written = encodings_file.write(path, export.names, export.encodings)
        log.info("exported %d faces", len(export.names))
        return Exported(len(export.names), len(set(export.names)), str(written))

    def health(self, counts: bool = True) -> Health:
        """Liveness, and (with counts) the size of the gallery."""
        if not counts:
            return Health("ok")
        gallery = self.gallery.current()
        return Health("ok", len(gallery), gallery.face_count)

    def metrics(self) -> bytes:
        """Every process's metrics in Prometheus' text format, with this process's gallery
        size (see ``metrics``)."""
        gallery = self.gallery.current()
        return metrics.exposition(len(gallery), gallery.face_count)

    def readiness(self) -> Readiness:
        """Whether this process can recognise now: dlib's models loaded (see warm_up) and the
        store reachable."""
        models = "recognizer.faces" in sys.modules
        try:
            self.gallery.current()
            store = True
        except StoreUnavailable:
            store = False
        return Readiness(models and store, models, store)

    def warm_up(self) -> None:
        """Load dlib's models and the gallery now (a worker's start), not at the first
        request: a face on a small synthetic image runs detection and encoding once."""
        from . import faces

        faces.warm_up()
        self.gallery.current()


def _head(path: str | Path) -> bytes:
    """A local file's first bytes, or none when it cannot be read (the caller says why)."""
    try:
        with open(path, "rb") as opened:
            return opened.read(16)
    except OSError:
        return b""


def _shot(face_id: int, face) -> Shot:
    top, right, bottom, left = face.box
    angles = [None if math.isnan(a) else round(a, 1)
              for a in (face.quality.yaw, face.quality.pitch, face.quality.roll)]
    return Shot(face_id, face.time, {"top": top, "right": right, "bottom": bottom,
                                     "left": left}, round(face.quality.sharpness, 1), *angles)


def near_boundary(match: Match, found: Evidence | None, tolerance: float, ratio: float,
                  margin: float) -> bool:
    """Whether a decision might go the other way with a better encoding: the nearest person is
    within tolerance + margin, and that distance is within margin of the tolerance, or of the
    distance the ratio test allows (its bound times the local scale, see ``matching``), or of
    the second-nearest person's distance.

    :param found: the evidence about the nearest person (``matching.evidence``), None when
        nobody is enrolled
    """
    if found is None or not match.candidates:
        return False
    nearest = found.distance
    if nearest > tolerance + margin:
        return False
    second = match.candidates[1].distance if len(match.candidates) > 1 else None
    limit = (ratio_bound(found.people, ratio, found.photos) * found.scale if ratio < 1
             else math.inf)
    return (abs(nearest - tolerance) <= margin or abs(nearest - limit) <= margin
            or (second is not None and second - nearest <= margin))
