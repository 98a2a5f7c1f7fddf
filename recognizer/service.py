"""The face service: load images from their sources, recognise, enrol, build from folders.

This is the one object the HTTP and CLI edges call. It owns the settings and the store, and
imports the dlib-backed ``faces`` module only when a face has to be found.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from . import fetch, images, quality
from .access import Gate
from .config import Settings
from .errors import ImageTooLarge, InvalidParameter, RecognizerError, UnusableFace
from .matching import SAME_PERSON_LIMIT, Candidate, Match, best_match
from .store import Person, Store, open_store

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[\w .'\-]{1,100}")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


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


class FaceService:
    """Recognition and enrolment over one store, with one set of settings."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else open_store(settings.store, settings.index_above)
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
        from . import faces

        boxes = self._detect(picture)
        _check_face_count(len(boxes), largest_face)
        if not force:
            found = quality.problems(faces.measure(picture.pixels, boxes[0]),
                                     self.settings.quality_limits)
            if found:
                raise UnusableFace(found[0])
        (encoding,) = faces.encode(picture.pixels, boxes[:1], self.settings.enroll_jitters)
        return encoding

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

    def people(self) -> list[Person]:
        """Everyone enrolled."""
        return self.store.people()

    def forget(self, name: str) -> int:
        """Delete a person and all their data; returns how many faces were deleted."""
        deleted = self.store.forget(check_name(name))
        log.info("deleted a person (%d faces)", deleted)
        return deleted

    def health(self) -> dict[str, int | str]:
        """Liveness plus the store's size."""
        people, faces = self.store.counts()
        return {"status": "ok", "people": people, "faces": faces}

    # -- build --------------------------------------------------------------------------------

    def build(self, directory: str | Path | None = None, force: bool = False,
              progress: Callable[[Iterable], Iterable] = iter) -> BuildReport:
        """Enrol every image of a folder-per-person tree; files already built are skipped.

        :param directory: the tree's root, ``known_faces/`` by default
        :param force: enrol faces that fail the quality gate (and retry files it refused)
        :param progress: wraps the list of files, e.g. a tqdm progress bar
        """
        root = Path(directory or self.settings.known_faces_dir).resolve()
        if not root.is_dir():
            raise InvalidParameter("directory", "not_a_directory")
        report = BuildReport()
        for person, path in progress(list(_tree(root))):
            relative = path.relative_to(root).as_posix()
            outcome, warnings = self._build_file(root, person, path, relative, force)
            report.add(relative, person, outcome, warnings)
        return report

    def _build_file(self, root: Path, person: str, path: Path, relative: str,
                    force: bool) -> tuple[str, list[dict]]:
        try:
            person = check_name(person)
        except InvalidParameter:
            return "invalid_name", []
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            return "outside_tree", []
        try:
            data = images.read_file(path, self.settings.max_image_bytes)
        except RecognizerError:
            return "unreadable", []
        digest = _sha256(data)
        if self.store.file_is_current(relative, digest, retry=quality.REASONS if force else ()):
            return "unchanged", []
        outcome, encoding, warnings = "enrolled", None, []
        try:
            picture = Picture(self._decode(data), f"file:{relative}")
            encoding = self._enrolment_encoding(picture, largest_face=False, force=force)
            warnings = self._label_warnings(person, encoding, self.store.file_face(relative))
        except UnusableFace as error:
            outcome = error.message
        except RecognizerError:
            outcome = "unreadable"
        self.store.record_file(relative, digest, person, outcome, encoding)
        return outcome, warnings


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
