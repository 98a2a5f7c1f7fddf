"""Build: enrol every photo of a folder-per-person tree (``known_faces/<person>/*.jpg``).

This process walks the tree, reads and hashes each file, and skips the files already built.
Worker processes (``pool``) find and encode the faces. Each outcome is recorded once it and
all before it are known: in the tree's order, so the report and the label warnings do not
depend on the workers. An interrupted build keeps what it recorded, and the next one resumes.

A file keeps its outcome until its bytes change: "unchanged" for a face still enrolled, the
reason again for a file refused before (``REFUSED``). Files are recorded by their full path,
with their tree's root: two trees never share a record, and ``prune`` forgets the faces of
files that have left this tree and no other.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from .. import enrolment, images, quality
from ..config import Settings
from ..errors import QUALITY_REASONS, InvalidParameter, RecognizerError, UnusableFace
from ..live_gallery import LiveGallery
from ..names import check_name
from ..pictures import sha256
from ..record import Record
from . import pool

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
# Outcomes of a file that was not enrolled for a reason its owner can fix: the command line
# exits with REFUSED_EXIT after a build that reports any.
REFUSED = ("no_face", "multiple_faces", *QUALITY_REASONS, "unreadable", "invalid_name",
           "outside_tree", "crashed")
REFUSED_EXIT = 3
log = logging.getLogger(__name__)
# The command line's progress bar: on stderr, so that stdout holds only the report.
progress_bar = functools.partial(tqdm, desc="build", unit="file", file=sys.stderr)


@dataclass(frozen=True)
class BuildReport(Record):
    """What build did with each file, how many files had each outcome, and how many people
    the store holds now."""

    files: list[dict]
    summary: dict[str, int]
    person_count: int

    @property
    def exit_code(self) -> int:
        """The command line's exit status: REFUSED_EXIT when any file was refused, else 0."""
        return REFUSED_EXIT if any(self.summary.get(reason) for reason in REFUSED) else 0


@dataclass
class _Outcomes:
    files: list[dict] = field(default_factory=list)

    def add(self, path: str, person: str, outcome: str, warnings: list[dict]) -> None:
        entry = {"file": path, "person": person, "outcome": outcome}
        self.files.append(entry | ({"warnings": warnings} if warnings else {}))

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.files:
            counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
        return dict(sorted(counts.items()))


@dataclass(frozen=True)
class _File:
    """A file of the tree, and its outcome when that is known before a face is looked for."""

    relative: str  # its path under the tree's root
    folder: str  # its person's folder, as named on disk
    person: str = ""  # the folder's name, checked
    digest: str = ""
    outcome: str | None = None


def build(settings: Settings, gallery: LiveGallery, *directory: str | Path,
          force: bool = False, prune: bool = False, workers: int | None = None,
          progress: Callable[..., Iterable] | None = None) -> BuildReport:
    """Enrol every image of a folder-per-person tree; files already built are skipped.

    :param directory: the tree's root, at most one; ``known_faces/`` by default
    :param force: enrol faces that fail the quality gate (and retry files it refused)
    :param prune: forget the faces of files recorded under this root that have left it
    :param workers: processes that encode, one per core by default; 1 encodes in this one
    :param progress: wraps the outcomes as they come, as ``progress(outcomes, total=files)``:
        e.g. :data:`progress_bar`
    :raises InvalidParameter: more than one directory, or not a directory
    :raises KeyboardInterrupt: Ctrl-C, between two files: what was recorded is kept
    """
    if len(directory) > 1:
        raise InvalidParameter("directory", "one_directory_only")
    root = Path(directory[0] if directory else settings.known_faces_dir).resolve()
    if not root.is_dir():
        raise InvalidParameter("directory", "not_a_directory")
    files = list(_tree(root))
    retry = quality.REASONS if force else ()  # outcomes that do not make a file current
    jobs = (_job(settings, gallery.store, root, folder, path, retry) for folder, path in files)
    secretless = replace(settings, store="", api_keys=())  # workers need neither
    work = functools.partial(file_outcome, secretless, force=force)
    report = _Outcomes()
    with contextlib.closing(pool.run(work, jobs, workers or pool.usable_cores())) as done:
        for job, result in done if progress is None else progress(done, total=len(files)):
            with pool.ctrl_c_deferred():  # a Ctrl-C stops the build between two files
                outcome, warnings = _record(settings, gallery, root, job, result)
                report.add(job.relative, job.folder, outcome, warnings)
    if prune:
        kept = {_key(root, path.relative_to(root).as_posix()) for _, path in files}
        for path, person in gallery.store.prune_files(str(root), kept):
            report.add(path[len(str(root)) + 1:], person, "pruned", [])
    return BuildReport(report.files, report.summary(), len(gallery.current()))


def _job(settings: Settings, store, root: Path, folder: str, path: Path,
         retry: Iterable[str]) -> tuple[_File, bytes | None]:
    """A file of the tree, and its bytes if a face is to be looked for in them: not when
    its folder's name or its link is refused, it cannot be read, or it is built already."""
    relative = path.relative_to(root).as_posix()
    try:
        person = check_name(folder)
    except InvalidParameter:
        return _File(relative, folder, outcome="invalid_name"), None
    if path.is_symlink() and not path.resolve().is_relative_to(root):
        return _File(relative, folder, person, outcome="outside_tree"), None
    try:
        data = images.read_file(path, settings.max_image_bytes)
    except RecognizerError:
        return _File(relative, folder, person, outcome="unreadable"), None
    file = _File(relative, folder, person, sha256(data))
    known = store.current_outcome(_key(root, relative), file.digest, retry, legacy=relative)
    if known is not None:  # the same bytes as last time: the same outcome, or "unchanged"
        return replace(file, outcome="unchanged" if known == "enrolled" else known), None
    return file, data


def _record(settings: Settings, gallery: LiveGallery, root: Path, file: _File,
            result: tuple[str, np.ndarray | None] | Exception | None) -> tuple[str, list[dict]]:
    """Store what became of a file; with a new face, the signs that it is misfiled.

    A file whose worker died is not stored, so the next build tries it again.
    """
    if file.outcome is not None:
        return file.outcome, []
    if isinstance(result, pool.WorkerCrashed):
        log.error("build: a worker process died on a file, reported as crashed")
        return "crashed", []
    outcome, encoded = result
    warnings = []
    key = _key(root, file.relative)
    if encoded is not None:
        replacing = gallery.store.file_face(key)
        warnings = enrolment.label_warnings(settings, gallery, file.person, encoded, replacing)
    gallery.store.record_file(key, file.digest, file.person, outcome, encoded, str(root),
                              source=f"file:{file.relative}")
    return outcome, warnings


def _key(root: Path, relative: str) -> str:
    """A file's record: its path, root included (two trees may hold the same relative path)."""
    return f"{root}/{relative}"


def file_outcome(settings: Settings, data: bytes,
                 force: bool = False) -> tuple[str, np.ndarray | None]:
    """What build makes of one file's bytes, without the store: the work of its workers.

    :param force: skip the quality gate
    :return: ("enrolled", the encoding), or (the reason, None): "unreadable", or a reason of
        UnusableFace (``no_face``, ``multiple_faces``, a quality reason)
    """
    try:
        pixels = images.decode(data, settings.max_image_pixels)
        return "enrolled", enrolment.encoding(settings, pixels, force=force)
    except UnusableFace as error:
        return error.message, None
    except RecognizerError:
        return "unreadable", None


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
