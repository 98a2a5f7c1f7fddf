"""The open-set identification protocol that the decision rule is measured by. Pure numpy.

A folder-per-person tree is split into **known people** (more photos than are enrolled: some
photos are enrolled, the rest are probes that should be named) and **strangers** (one photo:
never enrolled, and should be answered as unknown). Each split enrols a different photo of each
known person, so every photo serves as a probe in some split.

Rates: the identification rate is the share of known probes named correctly; the false-accept
rate is the share of strangers named as anybody; wrong names are known probes named as somebody
else. A photo in which no face was found counts as not named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from .matching import Gallery, best_match

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
