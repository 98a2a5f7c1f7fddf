"""What the service's operations return: frozen records whose fields are the JSON answers'
fields (``dataclasses.asdict`` gives the body)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .matching import Candidate
from .record import Record
from .store import Person


@dataclass(frozen=True)
class RecognizedFace(Record):
    """One face found in an image and the decision about who it is."""

    box: dict
    name: str | None
    distance: float | None
    confidence: float | None
    candidates: list[Candidate]


@dataclass(frozen=True)
class ImageSize(Record):
    """An image's size in pixels."""

    width: int
    height: int


@dataclass(frozen=True)
class Recognition(Record):
    """Every face in an image, largest first, and the image's size."""

    faces: list[RecognizedFace]
    image: ImageSize


@dataclass(frozen=True)
class Enrolment(Record):
    """The face just added (or, for an image enrolled to the person before, the face it gave
    then: ``duplicate``), the person's face count now, and any sign of a wrong label."""

    name: str
    face_id: int
    face_count: int
    warnings: list[dict] = field(default_factory=list)
    duplicate: bool = False


@dataclass(frozen=True)
class Shot(Record):
    """One frame of a clip enrolled as a face: its time in the clip, the face's box in the
    frame (as decoded: at most clips.MAX_SIDE across) and what the quality gate saw."""

    face_id: int
    time: float
    box: dict
    sharpness: float
    yaw: float | None
    pitch: float | None
    roll: float | None


@dataclass(frozen=True)
class ClipEnrolment(Record):
    """The faces a clip gave a person (``duplicate`` when every one of them was theirs
    already, from the same clip), the person's face count now, and any sign of a wrong
    label."""

    name: str
    face_ids: list[int]
    face_count: int
    shots: list[Shot]
    warnings: list[dict] = field(default_factory=list)
    duplicate: bool = False


@dataclass(frozen=True)
class PeoplePage(Record):
    """One page of the people enrolled, in name order, and where it sits in the whole list."""

    people: list[Person]
    total: int
    page: int
    size: int
    pages: int


@dataclass(frozen=True)
class EnrolledFace(Record):
    """One enrolled face's id and whose it is."""

    face_id: int
    name: str


@dataclass(frozen=True)
class FacesPage(Record):
    """One page of the faces enrolled (everyone's, or one person's), in the order they were
    added, and where it sits in the whole list."""

    faces: list[EnrolledFace]
    total: int
    page: int
    size: int
    pages: int


@dataclass(frozen=True)
class Forgotten(Record):
    """A person deleted, and how many faces went with them."""

    name: str
    deleted_faces: int


@dataclass(frozen=True)
class FaceForgotten(Record):
    """One face deleted, and how many its person has left (0: the person went with it)."""

    name: str
    deleted_face: int
    faces_left: int


@dataclass(frozen=True)
class Renamed(Record):
    """A person's name now, their face count, whether they joined a person already enrolled
    under that name, and any sign that the new name is the wrong one (it looks like a third
    person's)."""

    name: str
    face_count: int
    merged: bool
    warnings: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Imported(Record):
    """What importing an encodings file added, and how many people its rows name."""

    imported: int
    person_count: int
    already_imported: bool


@dataclass(frozen=True)
class Exported(Record):
    """How many faces of how many people an export wrote, and the file's absolute path."""

    exported: int
    person_count: int
    file: str


@dataclass(frozen=True)
class Health(Record):
    """Liveness, and the size of the gallery this process recognises against (left out when
    API keys are set: a liveness probe needs no key, and learns nothing)."""

    status: str
    person_count: int | None = None
    face_count: int | None = None

    def __native_types__(self) -> dict:
        return {key: value for key, value in super().__native_types__().items()
                if value is not None}


@dataclass(frozen=True)
class Readiness(Record):
    """Whether this process can recognise now, and why not."""

    ready: bool
    models_loaded: bool
    store_reachable: bool


@dataclass(frozen=True)
class FaceQuality(Record):
    """What the enrolment gate sees in a face, and whether it would let it through."""

    width: int
    sharpness: float
    yaw: float | None
    pitch: float | None
    roll: float | None
    enrollable: bool
    problems: list[str]


@dataclass(frozen=True)
class DetectedFace(Record):
    """A face's box, its landmarks (dlib's 5 and 68 points, as [x, y]) and its quality."""

    box: dict
    landmarks: dict
    quality: FaceQuality


@dataclass(frozen=True)
class Detection(Record):
    """Every face in an image, largest first, and the image's size."""

    faces: list[DetectedFace]
    image: ImageSize


@dataclass(frozen=True)
class Verification(Record):
    """Whether two faces are the same person (or a face is an enrolled person): the decision
    at ``threshold``, the distance, and the calibrated probability."""

    same_person: bool
    distance: float
    probability: float
    threshold: float
    face: dict  # the first image's face: {"box": ...}
    other: dict  # the second image's face, {"box": ...}, or the person: {"name": ...}
