"""The open-set identification protocol that the decision rule is measured by. Pure numpy, but
for :func:`load_tree`, which encodes a tree's photos as the service does (with dlib).

A folder-per-person tree is split into **known people** (more photos than are enrolled: some
photos are enrolled, the rest are probes that should be named) and **strangers** (one photo:
never enrolled, and should be answered as unknown). Each split enrols a different photo of each
known person, so every photo serves as a probe in some split.

Rates: the identification rate is the share of known probes named correctly; the false-accept
rate is the share of strangers named as anybody; wrong names are known probes named as somebody
else. A photo in which no face was found counts as not named.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from . import images, quality
from .config import Settings
from .gallery import Gallery
from .matching import best_match

Encoding = Optional[np.ndarray]


@dataclass(frozen=True)
class Split:
    """One enrolment of the known people, and the probes to decide: (encoding, true name or
    None for a stranger)."""

    enrolled: dict[str, list[np.ndarray]]
    probes: list[tuple[Encoding, str | None]]


@dataclass(frozen=True)
class Rates:
    """How a rule did over all splits."""

    identified: float
    false_accepts: float
    wrong_names: float
    known_probes: int
    strangers: int


def splits(people: dict[str, list[Encoding]], enroll: int = 1,
           count: int | None = None) -> Iterator[Split]:
    """The protocol's splits over {person: [encoding or None, ...]} (photos in a fixed order).

    :param enroll: photos enrolled per known person; people with more are known, people with
        one photo are strangers, anybody else is left out
    :param count: how many splits (default: as many as the most photos any known person has)
    """
    known = {name: rows for name, rows in people.items() if len(rows) > enroll}
    strangers = [rows[0] for rows in people.values() if len(rows) == 1]
    count = count or max((len(rows) for rows in known.values()), default=1)
    for index in range(count):
        enrolled, probes = {}, []
        for name, rows in known.items():
            chosen = {(index + step) % len(rows) for step in range(enroll)}
            enrolled[name] = [rows[i] for i in sorted(chosen) if rows[i] is not None]
            probes += [(rows[i], name) for i in range(len(rows)) if i not in chosen]
        yield Split(enrolled, probes + [(row, None) for row in strangers])


def rates(decisions: list[tuple[str | None, str | None]]) -> Rates:
    """Rates from (name given, true name or None for a stranger) pairs."""
    known = [(given, truth) for given, truth in decisions if truth is not None]
    strangers = [given for given, truth in decisions if truth is None]
    return Rates(
        identified=_share(sum(given == truth for given, truth in known), len(known)),
        false_accepts=_share(sum(given is not None for given in strangers), len(strangers)),
        wrong_names=_share(sum(given not in (None, truth) for given, truth in known), len(known)),
        known_probes=len(known), strangers=len(strangers),
    )


def evaluate(all_splits: list[Split], tolerance: float, ratio: float) -> Rates:
    """The service's decision rule (matching.best_match) over every split."""
    decisions = []
    for split in all_splits:
        gallery = Gallery.from_encodings(split.enrolled)
        for encoding, truth in split.probes:
            given = None if encoding is None else best_match(encoding, gallery, tolerance,
                                                             ratio, top_k=1).name
            decisions.append((given, truth))
    return rates(decisions)


def evaluate_tutorial(all_splits: list[Split], tolerance: float = 0.6) -> Rates:
    """The face_recognition tutorial's rule: the first enrolled face within tolerance."""
    decisions = []
    for split in all_splits:
        names = [name for name, rows in split.enrolled.items() for _ in rows]
        known = np.array([row for rows in split.enrolled.values() for row in rows])
        for encoding, truth in split.probes:
            hits = [] if encoding is None else np.flatnonzero(
                np.linalg.norm(known - encoding, axis=1) <= tolerance)
            decisions.append((names[hits[0]] if len(hits) else None, truth))
    return rates(decisions)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def encode_photo(path: Path) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """(enrolment encoding, probe encoding, quality problems) of the face nearest the centre."""
    from . import faces

    settings = Settings.from_env()
    pixels = images.decode(images.read_file(path, settings.max_image_bytes),
                           settings.max_image_pixels)
    boxes = faces.detect(pixels, settings.model, settings.upsample, settings.detect_max_side)
    if not boxes:
        return None, None, ["no_face"]
    box = faces.nearest_centre(boxes, pixels.shape[1], pixels.shape[0])
    problems = quality.problems(faces.measure(pixels, box), settings.quality_limits)
    (enrolment,) = faces.encode(pixels, [box], settings.enroll_jitters)
    (probe,) = faces.encode(pixels, [box], settings.jitters)
    return enrolment, probe, problems


def load_tree(tree: Path, workers: int) -> dict[str, list[tuple]]:
    """{person: [encode_photo(photo), ...]} for every person's photos, in name order."""
    paths = [(folder.name, photo) for folder in sorted(tree.iterdir()) if folder.is_dir()
             for photo in sorted(folder.iterdir())
             if photo.suffix.lower() in {".jpg", ".jpeg", ".png"}]
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(encode_photo, [path for _, path in paths], chunksize=8))
    people: dict[str, list[tuple]] = {}
    for (person, _), result in zip(paths, results):
        people.setdefault(person, []).append(result)
    return people


def protocol(people: dict[str, list[tuple]], enroll: int) -> list[Split]:
    """The splits, with enrolment encodings enrolled and probe encodings probing."""
    enrolling = {name: [row[0] for row in rows] for name, rows in people.items()}
    probing = {name: [row[1] for row in rows] for name, rows in people.items()}
    result = []
    for enrol, probe in zip(splits(enrolling, enroll), splits(probing, enroll)):
        result.append(Split(enrol.enrolled, probe.probes))
    return result
