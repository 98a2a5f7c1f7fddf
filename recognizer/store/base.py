"""What every store does with people, faces and build's file records, in SQL that both
SQLite and PostgreSQL run (see ``core`` for transactions and the change log)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Sequence

import numpy as np

from ..errors import NameConflict, UnknownFace, UnknownPerson
from ..limits import ENCODING_SIZE
from ..names import skeleton
from .core import FETCH_ROWS, ID_CHUNK
from .records import Export, FaceRecord, Person, PersonRecord, encoding_to_blob, parse_rows
from .streams import StreamTables
from .webhooks import WebhookTables


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store(StreamTables, WebhookTables):
    """People, their faces and build's records of files (and, from ``streams`` and
    ``webhooks``, what live video sees and where its events go). A store object is safe to use
    from several threads; every process opens its own."""

    # How names are ordered: by code point in both backends, as Python sorts them.
    _NAME_ORDER = "p.name"

    def _add_columns(self) -> None:
        """Bring an older store's tables up to date, and give the people it holds the skeletons
        of their names (``names.skeleton``), a chunk per transaction."""
        super()._add_columns()
        while True:
            with self._write():
                rows = self._execute("SELECT id, name FROM people WHERE skeleton IS NULL"
                                     " LIMIT ?", (ID_CHUNK,)).fetchall()
                if rows:
                    values = ", ".join("(CAST(? AS BIGINT), ?)" for _ in rows)
                    self._execute("UPDATE people SET skeleton = v.column2 FROM"
                                  f" (VALUES {values}) AS v WHERE people.id = v.column1",
                                  [value for person_id, name in rows
                                   for value in (person_id, skeleton(name))])
            if len(rows) < ID_CHUNK:
                return

    # -- enrolment ---------------------------------------------------------------------------

    def add_face(self, name: str, encoding: np.ndarray, source: str,
                 image_sha256: str | None = None) -> tuple[int, int]:
        """Add one face to a person, creating the person if needed.

        :param image_sha256: the SHA-256 of the image it came from, to find it again
        :return: (face_id, number of faces the person has now)
        """
        blob = encoding_to_blob(encoding)
        with self._write():
            return self._insert_face(name, blob, source, image_sha256)

    def add_face_once(self, name: str, encoding: np.ndarray, source: str,
                      image_sha256: str | None, distinct: bool = False) -> tuple[int, int, bool]:
        """Add a face to a person unless one from the same image (by SHA-256) is theirs
        already, checked and added in one transaction.

        :param distinct: refuse a name that looks like another person's (see look_alike)
        :return: (the new or existing face's id, the person's face count, whether it existed)
        :raises NameConflict: distinct, and the name looks like another person's
        """
        blob = encoding_to_blob(encoding)
        with self._write():
            found = None if image_sha256 is None else self.face_of_image(name, image_sha256)
            if found is not None:
                return (*found, True)
            if distinct:
                self._refuse_look_alike("name", name)
            return (*self._insert_face(name, blob, source, image_sha256), False)

    def add_faces_once(self, name: str, faces: Sequence[tuple[np.ndarray, str, str]],
                       distinct: bool = False) -> tuple[list[tuple[int, bool]], int]:
        """Add several faces to a person in one transaction (all of them, or none on any
        error), each unless one with the same image SHA-256 is theirs already.

        :param faces: (encoding, source, image SHA-256) of each face
        :param distinct: refuse a name that looks like another person's (see look_alike)
        :return: ([(each face's new or existing id, whether it existed)], their face count)
        :raises NameConflict: distinct, and the name looks like another person's
        """
        blobs = [(encoding_to_blob(encoding), source, digest) for encoding, source, digest in faces]
        added: list[tuple[int, bool]] = []
        with self._write():
            for blob, source, digest in blobs:
                found = self.face_of_image(name, digest)
                if found is None and distinct and all(existed for _, existed in added):
                    self._refuse_look_alike("name", name)  # before the first face is added
                added.append((found[0], True) if found is not None else
                             (self._insert_face(name, blob, source, digest)[0], False))
            person = self._person_id(name)
            count = 0 if person is None else self._face_count(person)
        return added, count

    def face_of_image(self, name: str, image_sha256: str) -> tuple[int, int] | None:
        """A person's face from the image with this SHA-256, if any: (its id, their count)."""
        with self._lock:
            row = self._one("SELECT f.id, f.person_id FROM faces f JOIN people p ON"
                            " p.id = f.person_id WHERE p.name = ? AND f.image_sha256 = ?"
                            " ORDER BY f.id LIMIT 1", (name, image_sha256))
            return None if row is None else (int(row[0]), self._face_count(row[1]))

    def _person_id(self, name: str, create: bool = False) -> int | None:
        if create:
            self._execute("INSERT INTO people (name, created_at, skeleton) VALUES (?, ?, ?)"
                          " ON CONFLICT (name) DO NOTHING", (name, _now(), skeleton(name)))
        row = self._one("SELECT id FROM people WHERE name = ?", (name,))
        return None if row is None else int(row[0])

    def _insert_face(self, name: str, blob: bytes, source: str,
                     image_sha256: str | None = None) -> tuple[int, int]:
        person_id = self._person_id(name, create=True)
        (face_id,) = self._one("INSERT INTO faces (person_id, encoding, source, created_at,"
                               " image_sha256) VALUES (?, ?, ?, ?, ?) RETURNING id",
                               (person_id, blob, source, _now(), image_sha256))
        return int(face_id), self._face_count(person_id)

    def _face_count(self, person_id: int) -> int:
        return int(self._one("SELECT COUNT(*) FROM faces WHERE person_id = ?", (person_id,))[0])

    def _drop_if_empty(self, person_id: int) -> None:
        self._execute("DELETE FROM people WHERE id = ? AND NOT EXISTS"
                      " (SELECT 1 FROM faces WHERE person_id = ?)", (person_id, person_id))

    def record_file(self, path: str, sha256: str, person: str, outcome: str,
                    encoding: np.ndarray | None = None, root: str | None = None,
                    source: str | None = None) -> int | None:
        """Record what build made of a file, replacing the face an older version of it gave.

        :param encoding: the file's face, added to ``person``, when the outcome is "enrolled"
        :param root: the tree the file is in (only its builds prune it)
        :param source: the face's source, ``file:<path>`` by default
        :return: the new face's id, if one was added
        """
        blob = None if encoding is None else encoding_to_blob(encoding)
        with self._write():
            old = self._one("SELECT f.id, f.person_id FROM files r JOIN faces f"
                            " ON f.id = r.face_id WHERE r.path = ?", (path,))
            if old:
                self._execute("DELETE FROM faces WHERE id = ?", (old[0],))
            face_id = None if blob is None else self._insert_face(
                person, blob, source or f"file:{path}")[0]
            self._execute(
                "INSERT INTO files (path, sha256, person, outcome, face_id, updated_at, root)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET"
                " sha256 = excluded.sha256, person = excluded.person,"
                " outcome = excluded.outcome, face_id = excluded.face_id,"
                " updated_at = excluded.updated_at, root = excluded.root",
                (path, sha256, person, outcome, face_id, _now(), root),
            )
            if old:
                self._drop_if_empty(old[1])
            return face_id

    def file_is_current(self, path: str, sha256: str, retry: Iterable[str] = ()) -> bool:
        """Whether build already processed these exact bytes at this path (and kept the result).

        :param retry: outcomes that do not count as current (build tries those files again)
        """
        return self.current_outcome(path, sha256, retry) is not None

    def current_outcome(self, path: str, sha256: str, retry: Iterable[str] = (),
                        legacy: str | None = None) -> str | None:
        """What build made of these exact bytes at this path, if it still holds: its outcome
        ("enrolled" with its face still stored, or why not); None when the file is to be
        processed again.

        :param retry: outcomes that do not count (build tries those files again)
        :param legacy: the path as stores recorded it before paths carried their tree's root
            (relative to it): such a record becomes this path's
        """
        with self._lock:
            if legacy is not None and self._one("SELECT 1 FROM files WHERE path = ? AND root IS"
                                                " NULL", (legacy,)):
                with self._write():
                    self._execute("UPDATE files SET path = ?, root = ? WHERE path = ?",
                                  (path, path[:-len(legacy) - 1], legacy))
            row = self._one("SELECT outcome, face_id IS NOT NULL FROM files"
                            " WHERE path = ? AND sha256 = ?", (path, sha256))
        if not row or row[0] in set(retry) or (row[0] == "enrolled" and not row[1]):
            return None
        return row[0]

    def prune_files(self, root: str, kept: set[str]) -> list[tuple[str, str]]:
        """Forget the files of a tree that are not in it any more, with the faces they gave.

        :param kept: the paths still in the tree
        :return: (path, person) of each file forgotten
        """
        with self._write():
            gone = [(path, person, face_id) for path, person, face_id in self._execute(
                "SELECT path, person, face_id FROM files WHERE root = ? ORDER BY path",
                (root,)).fetchall() if path not in kept]
            for path, _, face_id in gone:
                owner = self._one("SELECT person_id FROM faces WHERE id = ?", (face_id,))
                self._execute("DELETE FROM files WHERE path = ?", (path,))
                self._execute("DELETE FROM faces WHERE id = ?", (face_id,))
                if owner:
                    self._drop_if_empty(owner[0])
        if gone:
            self._reclaim()
        return [(path, person) for path, person, _ in gone]

    def file_face(self, path: str) -> int | None:
        """The face that build enrolled from this path, if it still has one."""
        with self._lock:
            row = self._one("SELECT face_id FROM files WHERE path = ?", (path,))
        return None if row is None or row[0] is None else int(row[0])

    def import_encodings(self, names: Sequence[str], encodings: np.ndarray,
                         source: str) -> int:
        """Add many precomputed faces in one transaction: all of them, or none on any error.

        :param source: where they came from; face i gets the source ``f"{source}#{i}"``
        :return: how many faces were added; 0 when any face from this source is still stored
        """
        blobs = [encoding_to_blob(row) for row in encodings]
        with self._write():
            prefix = f"{source}#"
            if self._one("SELECT 1 FROM faces WHERE substr(source, 1, ?) = ? LIMIT 1",
                         (len(prefix), prefix)):
                return 0
            ids = self._people_ids(sorted(set(names)))
            now = _now()
            self._insert_faces([(ids[name], blob, f"{source}#{row}", now)
                                for row, (name, blob) in enumerate(zip(names, blobs))])
        return len(blobs)

    def _people_ids(self, names: list[str]) -> dict[str, int]:
        """Ids of these people, created if new."""
        ids: dict[str, int] = {}
        now = _now()
        for start in range(0, len(names), ID_CHUNK):
            chunk = names[start:start + ID_CHUNK]
            values = ", ".join("(?, ?, ?)" for _ in chunk)
            self._execute(f"INSERT INTO people (name, created_at, skeleton) VALUES {values}"
                          " ON CONFLICT (name) DO NOTHING",
                          [value for name in chunk for value in (name, now, skeleton(name))])
            marks = ", ".join("?" for _ in chunk)
            rows = self._execute(f"SELECT name, id FROM people WHERE name IN ({marks})", chunk)
            ids.update((name, int(person_id)) for name, person_id in rows.fetchall())
        return ids

    # -- people ------------------------------------------------------------------------------

    def look_alike(self, name: str, *besides: str) -> str | None:
        """An enrolled person whose name looks like this one (the same skeleton, see
        ``names.skeleton``), the first by name when there are several: one indexed query.

        :param besides: names that do not count; the name itself never does
        """
        with self._lock:
            return self._look_alike(name, besides)

    def _look_alike(self, name: str, besides: Sequence[str] = ()) -> str | None:
        others = (name, *besides)
        row = self._one(f"SELECT p.name FROM people p WHERE p.skeleton = ? AND p.name NOT IN"
                        f" ({', '.join('?' * len(others))}) AND EXISTS (SELECT 1 FROM faces f"
                        f" WHERE f.person_id = p.id) ORDER BY {self._NAME_ORDER} LIMIT 1",
                        (skeleton(name), *others))
        return None if row is None else row[0]

    def _refuse_look_alike(self, field: str, name: str, *besides: str) -> None:
        other = self._look_alike(name, besides)
        if other is not None:
            raise NameConflict(field, other)

    def people(self, offset: int = 0, limit: int = 1000) -> list[Person]:
        """People with their face counts, in name order, from offset, at most limit of them."""
        with self._lock:
            rows = self._execute(
                "SELECT p.name, COUNT(f.id) FROM people p JOIN faces f ON f.person_id = p.id"
                f" GROUP BY p.id, p.name ORDER BY {self._NAME_ORDER} LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        return [Person(name, int(count)) for name, count in rows]

    def people_named(self, names: Sequence[str]) -> list[Person]:
        """These people with their face counts, in name order (those enrolled)."""
        found: list[Person] = []
        with self._lock:
            for start in range(0, len(names), ID_CHUNK):
                chunk = list(names[start:start + ID_CHUNK])
                found += [Person(name, int(count)) for name, count in self._execute(
                    "SELECT p.name, COUNT(f.id) FROM people p JOIN faces f ON f.person_id ="
                    f" p.id WHERE p.name IN ({','.join('?' * len(chunk))}) GROUP BY p.id,"
                    " p.name", chunk).fetchall()]
        return sorted(found, key=lambda person: person.name)

    def faces(self, offset: int = 0, limit: int = 1000,
              name: str | None = None) -> tuple[list[tuple[int, str]], int]:
        """Faces with their person's name, in the order they were added (by id): from offset, at
        most limit of them, and how many there are in all, everyone's or one person's."""
        where, parameters = ("", ()) if name is None else (" WHERE p.name = ?", (name,))
        joined = "FROM faces f JOIN people p ON p.id = f.person_id" + where
        with self._snapshot():
            (total,) = self._one(f"SELECT COUNT(*) {joined}", parameters)
            rows = self._execute(f"SELECT f.id, p.name {joined} ORDER BY f.id LIMIT ? OFFSET ?",
                                 (*parameters, limit, offset)).fetchall()
        return [(int(face_id), owner) for face_id, owner in rows], int(total)

    def face_owner(self, face_id: int) -> str | None:
        """The name of the person whose face this is, if it is stored."""
        with self._lock:
            row = self._one("SELECT p.name FROM faces f JOIN people p ON p.id = f.person_id"
                            " WHERE f.id = ?", (face_id,))
        return None if row is None else row[0]

    def person(self, name: str) -> PersonRecord:
        """A person and their faces.

        :raises UnknownPerson: nobody of that name is enrolled
        """
        with self._snapshot():
            row = self._one("SELECT id, created_at FROM people WHERE name = ?", (name,))
            faces = [] if row is None else self._execute(
                "SELECT id, source, created_at FROM faces WHERE person_id = ? ORDER BY id",
                (row[0],)).fetchall()
        if not faces:
            raise UnknownPerson(name)
        return PersonRecord(name, row[1], [FaceRecord(int(i), s, c) for i, s, c in faces])

    def forget(self, name: str) -> int:
        """Delete a person, every face of theirs and build's records of their files.

        :return: how many faces were deleted
        :raises UnknownPerson: nobody of that name is enrolled
        """
        with self._write():
            person_id = self._person_id(name)
            if person_id is None:
                raise UnknownPerson(name)
            count = self._face_count(person_id)
            self._execute("DELETE FROM files WHERE person = ?", (name,))
            self._execute("DELETE FROM faces WHERE person_id = ?", (person_id,))
            self._execute("DELETE FROM people WHERE id = ?", (person_id,))
            self._forget_sightings(name)
        self._reclaim()
        return count

    def delete_face(self, name: str, face_id: int) -> int:
        """Delete one of a person's faces. A file that build enrolled the face from is not
        enrolled again until its bytes change; but the person goes with their last face, and
        build's records of their files with them, as with :meth:`forget`.

        :return: how many faces the person has left
        :raises UnknownPerson: nobody of that name is enrolled
        :raises UnknownFace: the person has no face with that id
        """
        with self._write():
            person_id = self._person_id(name)
            if person_id is None:
                raise UnknownPerson(name)
            if not self._one("SELECT 1 FROM faces WHERE id = ? AND person_id = ?",
                             (face_id, person_id)):
                raise UnknownFace()
            self._execute("UPDATE files SET outcome = 'deleted', face_id = NULL"
                          " WHERE face_id = ?", (face_id,))
            self._execute("DELETE FROM faces WHERE id = ?", (face_id,))
            left = self._face_count(person_id)
            if not left:
                self._execute("DELETE FROM files WHERE person = ?", (name,))
                self._execute("DELETE FROM people WHERE id = ?", (person_id,))
                self._forget_sightings(name)
        self._reclaim()
        return left

    def rename(self, name: str, new_name: str, distinct: bool = False) -> tuple[int, bool]:
        """Give a person's faces to new_name: a new person, or one already enrolled (a merge).
        The old name leaves the store's files as a deleted person's does.

        :param distinct: refuse a new name that looks like a third person's (see look_alike)
        :return: (faces new_name has now, whether they were merged into an existing person)
        :raises UnknownPerson: nobody called name is enrolled
        :raises NameConflict: distinct, and new_name looks like another person's
        """
        with self._write():
            source = self._person_id(name)
            if source is None:
                raise UnknownPerson(name)
            if new_name == name:
                return self._face_count(source), False
            if distinct:
                self._refuse_look_alike("new_name", new_name, name)
            merged = self._person_id(new_name) is not None
            target = self._person_id(new_name, create=True)
            self._execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (target, source))
            self._execute("UPDATE files SET person = ? WHERE person = ?", (new_name, name))
            self._execute("DELETE FROM people WHERE id = ?", (source,))
            self._rename_sightings(name, new_name)
            count = self._face_count(target)
        self._reclaim(faces=False)
        return count, merged

    # -- reading faces -----------------------------------------------------------------------

    def export(self) -> Export:
        """Every stored encoding and its person's name, by name then in the order added."""
        names: list[str] = []
        chunks = [np.zeros((0, ENCODING_SIZE))]
        with self._snapshot():
            cursor = self._execute("SELECT f.id, p.name, f.encoding FROM faces f JOIN people p"
                                   f" ON p.id = f.person_id ORDER BY {self._NAME_ORDER}, f.id")
            while rows := cursor.fetchmany(FETCH_ROWS):
                _, chunk_names, encodings = parse_rows(rows)
                names += chunk_names
                chunks.append(encodings)
        return Export(names, np.concatenate(chunks))

    def encodings(self) -> dict[str, list[np.ndarray]]:
        """Every stored encoding, by person."""
        by_person: dict[str, list[np.ndarray]] = {}
        export = self.export()
        for name, encoding in zip(export.names, export.encodings):
            by_person.setdefault(name, []).append(encoding)
        return by_person
