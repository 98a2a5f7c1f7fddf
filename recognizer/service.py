"""The face service: load images from their sources, recognise, enrol, build from folders.

This is the one object the HTTP and CLI edges call. It owns the settings and the store, and
imports the dlib-backed ``faces`` module only when a face has to be found.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import bulk, encodings_file, fetch, images, quality
from .access import Gate
from .config import Settings
from .errors import ImageTooLarge, InvalidParameter, RecognizerError, UnusableFace
from .matching import SAME_PERSON_LIMIT, Candidate, Match, best_match
from .store import Person, PersonRecord, Store, open_store

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[\w .'\-]{1,100}")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
PAGE_SIZE, MAX_PAGE_SIZE, MAX_PAGE = 100, 1000, 1_000_000
MAX_FACE_ID = 2**63 - 1  # the largest id both store backends hold


@dataclass(frozen=True)
class Picture:
    """Decoded RGB pixels and where they came from (never a URL: a hash of it)."""

    pixels: np.ndarray
    source: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


@dataclass(frozen=True)
class Face:
    """One face found in an image and the decision about who it is."""

    box: dict
    name: str | None
    distance: float | None
    confidence: float | None
    candidates: list[Candidate]


@dataclass(frozen=True)
class Recognition:
    """Every face in an image, largest first, and the image's size."""

    faces: list[Face]
    width: int
    height: int


@dataclass(frozen=True)
class Enrolment:
    """The face just added, the person's face count now, and any sign of a wrong label."""

    name: str
    face_id: int
    faces: int
    warnings: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class PeoplePage:
    """One page of the people enrolled, in name order, and where it sits in the whole list."""

    people: list[Person]
    total: int
    page: int
    size: int
    pages: int


@dataclass(frozen=True)
class Renamed:
    """A person's name now, their face count, and whether they joined a person already
    enrolled under that name."""

    name: str
    faces: int
    merged: bool


@dataclass(frozen=True)
class Imported:
    """What importing an encodings file added, and how many people its rows name."""

    imported: int
    people: int
    already_imported: bool


@dataclass(frozen=True)
class Exported:
    """How many faces of how many people an export wrote, and the file's absolute path."""

    exported: int
    people: int
    file: str


@dataclass
class BuildReport:
    """What build did with each file under the folder-per-person tree."""

    files: list[dict] = field(default_factory=list)

    def add(self, path: str, person: str, outcome: str, warnings: list[dict]) -> None:
        """Note one file's outcome, and any sign that it is in the wrong person's folder."""
        entry = {"file": path, "person": person, "outcome": outcome}
        self.files.append(entry | ({"warnings": warnings} if warnings else {}))

    def summary(self) -> dict[str, int]:
        """How many files had each outcome."""
        counts: dict[str, int] = {}
        for entry in self.files:
            counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
        return dict(sorted(counts.items()))


@dataclass(frozen=True)
class _BuildFile:
    """A file of build's tree, and its outcome when that is known before a face is looked for."""

    relative: str  # its path under the tree's root
    folder: str  # its person's folder, as named on disk
    person: str = ""  # the folder's name, checked
    digest: str = ""
    outcome: str | None = None


def check_name(name: object) -> str:
    """Validate a person's name: 1-100 letters, digits, spaces and ._'- with a letter or digit.

    Names are stored as data only and never become paths.

    :raises InvalidParameter: anything else
    """
    if not isinstance(name, str):
        raise InvalidParameter("name", "invalid_name")
    name = unicodedata.normalize("NFC", name)
    if (not NAME_PATTERN.fullmatch(name) or name != name.strip()
            or not any(ch.isalnum() for ch in name)):
        raise InvalidParameter("name", "invalid_name")
    return name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_range(field: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParameter(field, f"must be a whole number from {low} to {high}")


def _new_name(name: object) -> str:
    try:
        return check_name(name)
    except InvalidParameter:
        raise InvalidParameter("new_name", "invalid_name") from None


def _import_names(names: np.ndarray) -> list[str]:
    """The file's names, NFC-normalised; an invalid one is refused by its row, not echoed."""
    checked = []
    for row, name in enumerate(names.tolist()):
        try:
            checked.append(check_name(name))
        except InvalidParameter:
            raise InvalidParameter("file", f"invalid_name: names[{row}]") from None
    return checked


class FaceService:
    """Recognition and enrolment over one store, with one set of settings."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = (store if store is not None
                      else open_store(settings.store, settings.index_above))
        self.gate = Gate(settings.api_keys, settings.rate_limit, settings.rate_burst)

    # -- images -------------------------------------------------------------------------------

    def picture_from_request(self, image_url: str | None, upload: object) -> Picture:
        """The image of an HTTP request: an uploaded file or body, or else a URL to fetch.

        :raises InvalidParameter: neither or both are given, or the upload is not a file
        """
        if upload is not None and image_url is not None:
            raise InvalidParameter("image", "give image_url or an uploaded image, not both")
        if upload is not None:
            if not isinstance(upload, bytes):
                raise InvalidParameter("image", "upload the image as a file or a raw body")
            return self.picture_from_bytes(upload)
        if image_url is None:
            raise InvalidParameter("image_url", "give image_url or an uploaded image")
        return self.picture_from_url(image_url)

    def picture_from_url(self, url: str) -> Picture:
        """Fetch (SSRF-safe, size- and time-bounded) and decode the image at url."""
        data = fetch.fetch(url, max_bytes=self.settings.max_image_bytes,
                           timeout=self.settings.fetch_timeout,
                           allow_private=self.settings.allow_private_networks)
        return Picture(self._decode(data), f"url:{_sha256(url.encode())}")

    def picture_from_bytes(self, data: bytes) -> Picture:
        """Decode an uploaded image."""
        if len(data) > self.settings.max_image_bytes:
            raise ImageTooLarge()
        return Picture(self._decode(data), f"sha256:{_sha256(data)}")

    def picture_from_path(self, path: str | Path) -> Picture:
        """Decode a local file (CLI only); its source is its path under known_faces/ if it is
        there, else a hash of its bytes."""
        data = images.read_file(path, self.settings.max_image_bytes)
        resolved = Path(path).resolve()
        root = self.settings.known_faces_dir.resolve()
        source = (f"file:{resolved.relative_to(root).as_posix()}"
                  if resolved.is_relative_to(root) else f"sha256:{_sha256(data)}")
        return Picture(self._decode(data), source)

    def _decode(self, data: bytes) -> np.ndarray:
        return images.decode(data, self.settings.max_image_pixels)

    # -- faces --------------------------------------------------------------------------------

    def recognize(self, picture: Picture, tolerance: float | None = None, top_k: int = 3,
                  model: str | None = None, upsample: int | None = None) -> Recognition:
        """Find every face, the largest ``max_faces`` of them, and decide who each one is (see
        ``matching`` for the rule). The cap bounds the work a crowd photo can cause."""
        from . import faces

        boxes = self._detect(picture, model, upsample)[:self.settings.max_faces]
        found = []
        encodings = faces.encode(picture.pixels, boxes, self.settings.jitters)
        for box, encoding in zip(boxes, encodings):
            match = self.identify(encoding, tolerance, top_k)
            found.append(Face(box=asdict(box), name=match.name, distance=match.distance,
                              confidence=match.confidence, candidates=match.candidates))
        width, height = picture.size
        return Recognition(faces=found, width=width, height=height)

    def identify(self, encoding: np.ndarray, tolerance: float | None = None,
                 top_k: int = 3) -> Match:
        """Decide who one face encoding is, against the store as it is now."""
        tolerance = self.settings.tolerance if tolerance is None else tolerance
        return best_match(encoding, self.store.gallery(), tolerance, self.settings.ratio, top_k)

    def enroll(self, name: str, picture: Picture, largest_face: bool = False,
               force: bool = False) -> Enrolment:
        """Add the one face in the picture to a person (created if new).

        :param largest_face: with several faces, take the largest instead of refusing
        :param force: enrol a face that fails the quality gate
        :raises UnusableFace: ``no_face``, ``multiple_faces`` unless largest_face, or a quality
            reason (``small_face``, ``blurry``, ``extreme_pose``) unless force
        """
        name = check_name(name)
        encoding = self._enrolment_encoding(picture, largest_face, force)
        warnings = self._label_warnings(name, encoding)
        face_id, count = self.store.add_face(name, encoding, picture.source)
        log.info("enrolled a face (id %d)%s", face_id, " with warnings" if warnings else "")
        return Enrolment(name=name, face_id=face_id, faces=count, warnings=warnings)

    def _enrolment_encoding(self, picture: Picture, largest_face: bool,
                            force: bool) -> np.ndarray:
        """The encoding of the picture's one usable face, computed with enrolment's jitters."""
        return enrolment_encoding(self.settings, picture.pixels, largest_face, force)

    def _label_warnings(self, name: str, encoding: np.ndarray,
                        replacing: int | None = None) -> list[dict]:
        """Signs that a new face may carry the wrong name: it is unlike the person's other faces,
        or it would be recognised as somebody else.

        :param replacing: the face the new one replaces, left out of the comparison
        """
        gallery = self.store.gallery()
        warnings: list[dict] = []
        own = gallery.distance_to(name, encoding, without=replacing)
        if own is not None and own > SAME_PERSON_LIMIT:
            warnings.append({"code": "unlike_existing_faces", "distance": round(own, 4)})
        match = best_match(encoding, gallery, self.settings.tolerance, self.settings.ratio,
                           without=replacing)
        if match.name not in (None, name):
            warnings.append({"code": "resembles_another_person", "person": match.name,
                             "distance": match.distance})
        return warnings

    def _detect(self, picture: Picture, model: str | None = None,
                upsample: int | None = None) -> list:
        from . import faces

        return faces.detect(
            picture.pixels,
            model=self.settings.model if model is None else model,
            upsample=self.settings.upsample if upsample is None else upsample,
            max_side=self.settings.detect_max_side,
        )

    # -- people -------------------------------------------------------------------------------

    def people(self, page: int = 1, size: int = PAGE_SIZE) -> PeoplePage:
        """One page of everyone enrolled, in name order (by code point), with their face counts.
        A page past the end is empty.

        :param page: the page, from 1 (at most 1,000,000)
        :param size: people per page, 1 to 1000
        :raises InvalidParameter: page or size out of range
        """
        _check_range("page", page, 1, MAX_PAGE)
        _check_range("size", size, 1, MAX_PAGE_SIZE)
        total, _ = self.store.counts()
        listing = self.store.people(offset=(page - 1) * size, limit=size)
        return PeoplePage(listing, total, page, size, pages=-(-total // size))

    def person(self, name: str) -> PersonRecord:
        """A person, when they were first enrolled, and each face's id, source and date.

        :raises UnknownPerson: nobody of that name is enrolled
        """
        return self.store.person(check_name(name))

    def forget(self, name: str) -> int:
        """Delete a person and all their data; returns how many faces were deleted."""
        deleted = self.store.forget(check_name(name))
        log.info("deleted a person (%d faces)", deleted)
        return deleted

    def forget_face(self, name: str, face_id: int) -> int:
        """Delete one of a person's faces; the person is deleted with their last face.

        :return: how many faces the person has left
        :raises UnknownPerson: nobody of that name is enrolled
        :raises UnknownFace: the person has no face with that id
        """
        _check_range("face_id", face_id, 1, MAX_FACE_ID)
        left = self.store.delete_face(check_name(name), face_id)
        log.info("deleted a face (id %d, %d left)", face_id, left)
        return left

    def rename(self, name: str, new_name: str) -> Renamed:
        """Give a person's faces a new name. When somebody already has that name, the two
        become one person (a merge); renaming to the same name changes nothing.

        :raises InvalidParameter: ``name`` or ``new_name`` is not a valid name
        :raises UnknownPerson: nobody called name is enrolled
        """
        name, new_name = check_name(name), _new_name(new_name)
        faces, merged = self.store.rename(name, new_name)
        log.info("renamed a person (%d faces%s)", faces, ", merged" if merged else "")
        return Renamed(new_name, faces, merged)

    def import_encodings(self, path: str | Path) -> Imported:
        """Add the faces of an encodings file (arrays ``names`` and ``encodings``, as a
        face_recognition script saves them with ``np.savez``): all of them or, on any error,
        none. A file imported before (the same bytes) adds nothing.

        :raises InvalidParameter: field ``file``: see ``encodings_file.read``, or
            ``invalid_name: names[i]`` (the first invalid row; the name itself is not repeated)
        """
        batch = encodings_file.read(path)
        names = _import_names(batch.names)
        added = self.store.import_encodings(names, batch.encodings, f"import:{batch.sha256}")
        log.info("imported %d faces", added)
        return Imported(imported=added, people=len(set(names)), already_imported=not added)

    def export_encodings(self, path: str | Path) -> Exported:
        """Write every stored encoding with its person's name to an encodings file that
        ``import_encodings`` and ``np.load(allow_pickle=False)`` read back (see
        ``encodings_file.write``: atomic, readable by its owner only)."""
        export = self.store.export()
        written = encodings_file.write(path, export.names, export.encodings)
        log.info("exported %d faces", len(export.names))
        return Exported(len(export.names), len(set(export.names)), str(written))

    def health(self) -> dict[str, int | str]:
        """Liveness plus the store's size."""
        people, faces = self.store.counts()
        return {"status": "ok", "people": people, "faces": faces}

    # -- build --------------------------------------------------------------------------------

    def build(self, directory: str | Path | None = None, force: bool = False,
              progress: Callable[..., Iterable] | None = None,
              workers: int | None = None) -> BuildReport:
        """Enrol every image of a folder-per-person tree; files already built are skipped.

        Worker processes find and encode the faces. This process reads and hashes the files,
        skips those already built, and records each outcome once it and all before it are
        known: in the tree's order, so the report and the label warnings do not depend on the
        workers. An interrupted build keeps what it recorded, and the next one resumes.

        :param directory: the tree's root, ``known_faces/`` by default
        :param force: enrol faces that fail the quality gate (and retry files it refused)
        :param progress: wraps the outcomes as they come, as ``progress(outcomes, total=files)``:
            e.g. tqdm, for a progress bar
        :param workers: processes that encode, one per core by default; 1 encodes in this one
        """
        root = Path(directory or self.settings.known_faces_dir).resolve()
        if not root.is_dir():
            raise InvalidParameter("directory", "not_a_directory")
        files = list(_tree(root))
        retry = quality.REASONS if force else ()  # outcomes that do not make a file current
        jobs = (self._build_job(root, folder, path, retry) for folder, path in files)
        secretless = replace(self.settings, store="", api_keys=())  # workers need neither
        work = functools.partial(file_outcome, secretless, force=force)
        report = BuildReport()
        with contextlib.closing(bulk.run(work, jobs, workers or bulk.usable_cores())) as done:
            for job, result in done if progress is None else progress(done, total=len(files)):
                with bulk.ctrl_c_deferred():  # a Ctrl-C stops the build between two files
                    report.add(job.relative, job.folder, *self._record(job, result))
        return report

    def _build_job(self, root: Path, folder: str, path: Path,
                   retry: Iterable[str]) -> tuple[_BuildFile, bytes | None]:
        """A file of the tree, and its bytes if a face is to be looked for in them: not when
        its folder's name or its link is refused, it cannot be read, or it is built already."""
        relative = path.relative_to(root).as_posix()
        try:
            person = check_name(folder)
        except InvalidParameter:
            return _BuildFile(relative, folder, outcome="invalid_name"), None
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            return _BuildFile(relative, folder, person, outcome="outside_tree"), None
        try:
            data = images.read_file(path, self.settings.max_image_bytes)
        except RecognizerError:
            return _BuildFile(relative, folder, person, outcome="unreadable"), None
        file = _BuildFile(relative, folder, person, _sha256(data))
        if self.store.file_is_current(relative, file.digest, retry=retry):
            return replace(file, outcome="unchanged"), None
        return file, data

    def _record(self, file: _BuildFile,
                result: tuple[str, np.ndarray | None] | Exception | None) -> tuple[str, list[dict]]:
        """Store what became of a file; with a new face, the signs that it is misfiled.

        A file whose worker died is not stored, so the next build tries it again.
        """
        if file.outcome is not None:
            return file.outcome, []
        if isinstance(result, bulk.WorkerCrashed):
            log.error("build: a worker process died on a file, reported as crashed")
            return "crashed", []
        outcome, encoding = result
        warnings = []
        if encoding is not None:
            replacing = self.store.file_face(file.relative)
            warnings = self._label_warnings(file.person, encoding, replacing)
        self.store.record_file(file.relative, file.digest, file.person, outcome, encoding)
        return outcome, warnings


def enrolment_encoding(settings: Settings, pixels: np.ndarray, largest_face: bool = False,
                       force: bool = False) -> np.ndarray:
    """The encoding of an image's one usable face, computed with enrolment's jitters.

    :param largest_face: with several faces, take the largest instead of refusing
    :param force: skip the quality gate
    :raises UnusableFace: ``no_face``, ``multiple_faces`` unless largest_face, or a quality
        reason (``small_face``, ``blurry``, ``extreme_pose``) unless force
    """
    from . import faces

    boxes = faces.detect(pixels, model=settings.model, upsample=settings.upsample,
                         max_side=settings.detect_max_side)
    _check_face_count(len(boxes), largest_face)
    if not force:
        found = quality.problems(faces.measure(pixels, boxes[0]), settings.quality_limits)
        if found:
            raise UnusableFace(found[0])
    (encoding,) = faces.encode(pixels, boxes[:1], settings.enroll_jitters)
    return encoding


def file_outcome(settings: Settings, data: bytes,
                 force: bool = False) -> tuple[str, np.ndarray | None]:
    """What build makes of one file's bytes, without the store: the work of its workers.

    :param force: skip the quality gate
    :return: ("enrolled", the encoding), or (the reason, None): "unreadable", or a reason of
        UnusableFace (``no_face``, ``multiple_faces``, a quality reason)
    """
    try:
        pixels = images.decode(data, settings.max_image_pixels)
        return "enrolled", enrolment_encoding(settings, pixels, force=force)
    except UnusableFace as error:
        return error.message, None
    except RecognizerError:
        return "unreadable", None


def _check_face_count(count: int, largest_face: bool) -> None:
    if count == 0:
        raise UnusableFace("no_face")
    if count > 1 and not largest_face:
        raise UnusableFace("multiple_faces")


def _tree(root: Path) -> Iterator[tuple[str, Path]]:
    """(person, file) for each image file directly inside a person's folder, in order.

    Hidden entries are skipped, and so are folders that are links leading out of the tree.
    """
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        if folder.is_symlink() and not folder.resolve().is_relative_to(root):
            log.warning("build: skipped a folder that links outside the tree")
            continue
        for path in sorted(folder.iterdir()):
            if not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES:
                yield folder.name, path
