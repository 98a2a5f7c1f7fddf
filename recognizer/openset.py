"""The open-set identification protocol that the decision rule is measured by, at any gallery
size. Pure numpy, but for :func:`load_tree`, which encodes a tree's photos as the service does
(with dlib).

A folder-per-person tree is split by identity into folds. In each fold's **trials**:

- **strangers** are the fold's people with several photos: every photo of theirs is a probe that
  should be answered as unknown, and nobody of theirs is enrolled;
- **known people** are the other people with more photos than are enrolled: ``enroll`` photos
  each are enrolled, the rest are probes that should be named. Each trial of a fold enrols a
  different photo of each known person (a rotation), so every photo serves as a probe;
- **distractors** are enrolled and never probed: the people with one photo (and, enrolling
  several, the non-strangers with too few photos to be known), then, for a larger gallery,
  synthetic people (``fillers``), as AWS's and MegaFace's protocols add distractors.

Rates: the identification rate is the share of known probes named correctly; the false-accept
rate is the share of strangers' photos named as anybody; wrong names are known probes named as
somebody else. A known probe in which no face was found counts as not named.
"""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from . import images, matching, quality
from .config import Settings
from .fillers import FillerModel
from .gallery import Gallery
from .limits import ENCODING_SIZE

Encoding = Optional[np.ndarray]
# Face ids of the real people in a trial's gallery: above any filler's.
REAL_IDS = 10 ** 12


@dataclass(frozen=True)
class Trial:
    """One gallery's real people and the probes to decide against it: (encoding or None when
    no face was found, true name or None for a stranger)."""

    fold: int
    known: dict[str, list[np.ndarray]]
    distractors: dict[str, list[np.ndarray]]
    probes: list[tuple[Encoding, str | None]]


@dataclass(frozen=True)
class Decision:
    """What the service's rule made of one probe, with what it read (NaN where nobody was
    found: a probe without a face)."""

    fold: int
    truth: str | None
    nearest: str | None  # the nearest person, named or not
    named: str | None  # the name given
    people: int  # in the gallery
    photos: int  # the nearest person's
    distance: float  # to the nearest person
    second: float  # to the second-nearest person
    relative: float  # matching.Evidence.ratio: the distance over the local scale
    strength: float  # matching.Evidence.strength
    confidence: float  # of the name given (NaN when unnamed)


@dataclass(frozen=True)
class Rates:
    """How a rule did over all trials."""

    identified: float
    false_accepts: float
    wrong_names: float
    known_probes: int
    strangers: int


def folds(people: dict[str, list], count: int = 4) -> list[list[str]]:
    """The people with several photos, dealt into ``count`` folds in name order."""
    several = sorted(name for name, rows in people.items() if len(rows) > 1)
    return [several[index::count] for index in range(count)]


def trials(people: dict[str, list[Encoding]], enroll: int = 1, fold_count: int = 4,
           probing: dict[str, list[Encoding]] | None = None) -> Iterator[Trial]:
    """The protocol's trials over {person: [encoding or None, ...]} (photos in a fixed order).

    :param enroll: photos enrolled per known person
    :param fold_count: identity folds; each fold's people are the strangers of its trials
    :param probing: the probes' encodings, if not the enrolled ones (same shape as people)
    """
    probing = people if probing is None else probing
    for fold, strangers in enumerate(folds(people, fold_count)):
        outside = {name: rows for name, rows in people.items() if name not in set(strangers)}
        known = {name: rows for name, rows in outside.items() if len(rows) > enroll}
        distractors = {name: _faces(rows) for name, rows in sorted(
            outside.items(), key=lambda item: (len(item[1]) == 1, item[0])) if name not in known}
        lost = [(row, None) for name in strangers for row in probing[name] if row is not None]
        for turn in range(max((len(rows) for rows in known.values()), default=0)):
            enrolled, probes = {}, []
            for name, rows in known.items():
                chosen = {(turn + step) % len(rows) for step in range(enroll)}
                enrolled[name] = _faces(rows[i] for i in sorted(chosen))
                probes += [(probing[name][i], name) for i in range(len(rows)) if i not in chosen]
            yield Trial(fold, enrolled, {k: v for k, v in distractors.items() if v},
                        probes + lost)


def _faces(rows: Iterable[Encoding]) -> list[np.ndarray]:
    return [row for row in rows if row is not None]


def gallery_faces(trial: Trial, size: int) -> list[tuple[str, np.ndarray]]:
    """(name, encoding) of the real people enrolled in a gallery of ``size`` people: every
    known person, then distractors in order up to the size."""
    people = list(trial.known.items()) + list(trial.distractors.items())
    known = sum(1 for rows in trial.known.values() if rows)
    chosen = [(name, rows) for name, rows in people if rows][:max(size, known)]
    return [(name, row) for name, rows in chosen for row in rows]


def decide(trials_: Iterable[Trial], size: int, photos: int, model: FillerModel | None,
           tolerance: float, ratio: float, index_above: int, seed: int = 0) -> list[Decision]:
    """Decide every probe of every trial with the service's rule (matching.best_match's), in a
    gallery of ``size`` people: the trial's real people and as many fillers with ``photos``
    photos each as it takes. The fillers are drawn once, and the gallery changed from trial to
    trial as the service's gallery changes."""
    gallery, decided, real_ids, fillers = Gallery(index_above=index_above), [], [], 0
    drawn = None
    for trial in trials_:
        real = gallery_faces(trial, size)
        wanted = max(0, size - len({name for name, _ in real}))
        if wanted and drawn is None:
            if model is None:
                raise ValueError("a gallery larger than the real people needs a filler model")
            drawn = model.draw(wanted + 64, photos, seed).reshape(-1, ENCODING_SIZE)
        changed = _filler_changes(fillers, wanted, photos, drawn)
        added = [(REAL_IDS + i, name, row) for i, (name, row) in enumerate(real)]
        gallery.apply(real_ids + changed[0], changed[1] + added)
        real_ids, fillers = [face_id for face_id, _, _ in added], wanted
        decided += [_decision(gallery, trial.fold, encoding, truth, tolerance, ratio)
                    for encoding, truth in trial.probes]
    return decided


def _filler_changes(have: int, wanted: int, photos: int,
                    drawn: np.ndarray | None) -> tuple[list[int], list[tuple]]:
    """(face ids to remove, faces to add) to go from ``have`` fillers to ``wanted``: always the
    first ones drawn (filler i's faces are ids i * photos ...)."""
    if wanted <= have:
        return list(range(wanted * photos, have * photos)), []
    if wanted * photos > len(drawn):
        raise ValueError("more fillers wanted than drawn")
    ids = range(have * photos, wanted * photos)
    return [], [(i, f"filler {i // photos:07d}", drawn[i].astype(np.float64)) for i in ids]


def _decision(gallery: Gallery, fold: int, encoding: Encoding, truth: str | None,
              tolerance: float, ratio: float) -> Decision:
    nan = math.nan
    people = [] if encoding is None else gallery.nearest(encoding, 2)
    if not people:
        return Decision(fold, truth, None, None, len(gallery), 0, nan, nan, nan, nan, nan)
    found = matching.evidence(gallery, people)
    named = matching.decide(found, tolerance, ratio)
    second = people[1][1] if len(people) > 1 else nan
    return Decision(fold, truth, people[0][0], people[0][0] if named else None, found.people,
                    found.photos, found.distance, second, found.ratio, found.strength,
                    matching.confidence(found.strength) if named else nan)


def rates(decisions: Iterable[tuple[str | None, str | None]]) -> Rates:
    """Rates from (name given, true name or None for a stranger) pairs."""
    decisions = list(decisions)
    known = [(given, truth) for given, truth in decisions if truth is not None]
    strangers = [given for given, truth in decisions if truth is None]
    return Rates(
        identified=_share(sum(given == truth for given, truth in known), len(known)),
        false_accepts=_share(sum(given is not None for given in strangers), len(strangers)),
        wrong_names=_share(sum(given not in (None, truth) for given, truth in known), len(known)),
        known_probes=len(known), strangers=len(strangers),
    )


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


def load_tree(tree: Path, workers: int, cache: Path | None = None) -> dict[str, list[tuple]]:
    """{person: [encode_photo(photo), ...]} for every person's photos, in name order.

    :param cache: a folder to keep the encodings in, keyed by the photos' paths and sizes and
        the settings that change an encoding; a later call with the same key reads them back
        (jitters are random: a cached run repeats its figures exactly, a fresh one moves a little)
    """
    paths = [(folder.name, photo) for folder in sorted(tree.iterdir()) if folder.is_dir()
             for photo in sorted(folder.iterdir())
             if photo.suffix.lower() in {".jpg", ".jpeg", ".png"}]
    stored = None if cache is None else cache / f"{tree.name}-{_cache_key(tree, paths)}.npz"
    if stored is not None and stored.is_file():
        results = _read_cache(stored)
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(encode_photo, [path for _, path in paths], chunksize=8))
        if stored is not None:
            _write_cache(stored, results)
    people: dict[str, list[tuple]] = {}
    for (person, _), result in zip(paths, results, strict=True):
        people.setdefault(person, []).append(result)
    return people


def _cache_key(tree: Path, paths: list[tuple[str, Path]]) -> str:
    settings = Settings.from_env()
    described = [f"{path.relative_to(tree)}:{path.stat().st_size}" for _, path in paths]
    described.append(f"{settings.model} {settings.upsample} {settings.detect_max_side}"
                     f" {settings.enroll_jitters} {settings.jitters}")
    return hashlib.sha256("\n".join(described).encode()).hexdigest()[:16]


def _write_cache(path: Path, results: list[tuple]) -> None:
    blank = np.full(ENCODING_SIZE, np.nan)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, enrolment=np.array([blank if e is None else e for e, _, _ in results]),
             probe=np.array([blank if p is None else p for _, p, _ in results]),
             problems=np.array([",".join(found) for _, _, found in results]))


def _read_cache(path: Path) -> list[tuple]:
    with np.load(path, allow_pickle=False) as stored:
        rows = zip(stored["enrolment"], stored["probe"], stored["problems"].tolist())
        return [(None if np.isnan(e[0]) else e, None if np.isnan(p[0]) else p,
                 [found for found in problems.split(",") if found]) for e, p, problems in rows]
