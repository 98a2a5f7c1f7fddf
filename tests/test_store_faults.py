"""The store under faults: writers killed with SIGKILL and many concurrent writers (on this
run's backend), and, on SQLite, deletion that must leave nothing behind in any file (main
database, -wal, -shm; PostgreSQL's table file is checked in test_store.py).

Child processes come from multiprocessing's fork server, which imports ``recognizer.store`` once
and then forks a clean child per round (no SQLite connection is ever carried across a fork); the
child runs a small program through ``exec``, so it imports nothing else. Encodings are synthetic:
no dlib is needed.
"""

import contextlib
import hashlib
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKEND, gallery, postgres_admin
from recognizer.errors import UnknownPerson
from recognizer.names import skeleton
from recognizer.store import encoding_to_blob, open_store
from recognizer.store.sqlite import SqliteStore

pytestmark = pytest.mark.store  # run on both store backends

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 200


@pytest.fixture(scope="module")
def context():
    """A fork server that has imported the store and numpy (with one OpenBLAS thread)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "recognizer.store"])
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # the fork server starts with the next start()
    try:
        warm = ctx.Process(target=exec, args=("pass", {}))
        warm.start()
        warm.join(60)
    finally:
        if saved is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved
    return ctx


def digest(encoding) -> str:
    return hashlib.sha256(encoding_to_blob(encoding)).hexdigest()[:16]


def integrity(store) -> list:
    """The backend's own check (SQLite), and that no face or file points at nothing."""
    problems = store.query("PRAGMA integrity_check") if BACKEND == "sqlite" else []
    problems = [row for row in problems if row != ("ok",)]
    problems += store.query("SELECT 'orphan face', f.id FROM faces f LEFT JOIN people p"
                            " ON p.id = f.person_id WHERE p.id IS NULL")
    problems += store.query("SELECT 'orphan file', r.path FROM files r LEFT JOIN faces f"
                            " ON f.id = r.face_id WHERE r.face_id IS NOT NULL AND f.id IS NULL")
    return problems or [("ok",)]


# -- crash test: kill -9 at random moments -----------------------------------------------------

# Runs in the child. Every operation is announced before it starts ("begin") and acknowledged
# after the store's method has returned, that is after COMMIT ("done"). A message is one write()
# of well under PIPE_BUF bytes, so a kill never leaves half a message in the pipe.
CRASH_CHILD = """
import hashlib, random
import numpy as np
from recognizer.store import encoding_to_blob, open_store

rng = random.Random(seed)
store = open_store(path)
conn.send(("ready",))
names = [f"p{i}" for i in range(5)]
files = [f"p{i}/{j}.jpg" for i in range(5) for j in range(2)]
while True:
    encoding = np.random.default_rng(rng.getrandbits(64)).normal(size=128) * 0.1
    digest = hashlib.sha256(encoding_to_blob(encoding)).hexdigest()[:16]
    roll = rng.random()
    if roll < 0.65:
        name = rng.choice(names)
        conn.send(("begin", ("add", name, digest)))
        face_id, count = store.add_face(name, encoding, "url:" + digest)
        conn.send(("done", face_id, count))
    elif roll < 0.9:
        path_ = rng.choice(files)
        enrolled = rng.random() < 0.75
        conn.send(("begin", ("record", path_, path_.split("/")[0], digest if enrolled else None)))
        face_id = store.record_file(path_, digest, path_.split("/")[0],
                                    "enrolled" if enrolled else "no_face",
                                    encoding if enrolled else None)
        conn.send(("done", face_id, None))
    else:
        people = [person.name for person in store.people()]
        if people:
            name = rng.choice(people)
            conn.send(("begin", ("forget", name)))
            conn.send(("done", None, store.forget(name)))
"""


class Model:
    """What the store must hold: faces {id: (person, digest)}, files {path: (person, face id)}."""

    def __init__(self, faces=None, files=None):
        self.faces = dict(faces or {})
        self.files = dict(files or {})

    def applied(self, op, new_id):
        """A copy with one operation applied; new_id is the id its new face got, if any."""
        after = Model(self.faces, self.files)
        kind = op[0]
        if kind == "add":
            _, name, code = op
            after.faces[new_id] = (name, code)
        elif kind == "record":
            _, path, person, code = op
            old = after.files.get(path, (None, None))[1]
            if old is not None:
                del after.faces[old]
            after.files[path] = (person, new_id if code is not None else None)
            if code is not None:
                after.faces[new_id] = (person, code)
        else:
            _, name = op
            after.faces = {i: face for i, face in after.faces.items() if face[0] != name}
            after.files = {p: entry for p, entry in after.files.items() if entry[0] != name}
        return after

    def state(self):
        return self.faces, self.files

    def count(self, name):
        return sum(1 for person, _ in self.faces.values() if person == name)


def snapshot(store):
    """(faces, files, people) as stored."""
    faces = {face_id: (name, hashlib.sha256(blob).hexdigest()[:16]) for face_id, name, blob in
             store.query("SELECT f.id, p.name, f.encoding FROM faces f"
                         " JOIN people p ON p.id = f.person_id")}
    files = {path: (person, face_id) for path, person, face_id in
             store.query("SELECT path, person, face_id FROM files")}
    people = {name for (name,) in store.query("SELECT name FROM people")}
    return faces, files, people


def run_until_killed(context, path, seed, delay, wait_ready):
    """Start a child that writes to the store, SIGKILL it after `delay` seconds (counted from
    its "ready" when wait_ready, else from its start); returns every message it sent."""
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=exec, args=(CRASH_CHILD, {"path": str(path), "seed": seed,
                                                             "conn": sender}))
    child.start()
    sender.close()
    messages = []
    try:
        if wait_ready:
            assert receiver.poll(60), "the child never reported ready"
            messages.append(receiver.recv())
        time.sleep(delay)  # the pipe holds far more than the child writes meanwhile
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(60)
    assert child.exitcode == -signal.SIGKILL, child.exitcode
    while receiver.poll(0):
        try:
            messages.append(receiver.recv())
        except EOFError:
            break
    receiver.close()
    return messages


@pytest.mark.timeout(900)
def test_writers_killed_at_random_moments_never_corrupt_or_lose_a_commit(tmp_path, context,
                                                                         store_location):
    path = store_location
    chance = random.Random(20240607)
    model = Model()
    observer = None  # sometimes a long-lived reader (a server worker) is open during the round
    stats = Counter()
    for round_ in range(ROUNDS):
        if observer is None and chance.random() < 0.5:
            observer = open_store(path)
        elif observer is not None and chance.random() < 0.3:
            observer.close()
            observer = None
        wait_ready = chance.random() < 0.85  # else the kill may land while the child opens
        delay = chance.uniform(0, 0.06) if wait_ready else chance.uniform(0, 0.03)
        messages = run_until_killed(context, path, chance.getrandbits(32), delay, wait_ready)

        in_flight = None
        for message in messages:
            if message[0] == "begin":
                in_flight = message[1]
            elif message[0] == "done":
                _, face_id, count = message
                model = model.applied(in_flight, face_id)
                if in_flight[0] == "add":  # the count the store answered is the model's
                    assert count == model.count(in_flight[1])
                elif in_flight[0] == "forget":
                    assert count >= 1
                in_flight = None
                stats["done"] += 1
        stats["ready"] += any(m[0] == "ready" for m in messages)

        store = open_store(path)  # it opens after every kill
        try:
            assert integrity(store) == [("ok",)], f"round {round_}"
            faces, files, people = snapshot(store)
            counted = store.counts()
        finally:
            store.close()
        assert people == {name for name, _ in faces.values()}, "a person without faces"
        assert counted == (len(people), len(faces))
        n = len(model.faces)
        if in_flight is not None and in_flight[0] == "add":  # the brief's form of the check
            assert len(faces) in (n, n + 1), f"round {round_}: {len(faces)} faces, n={n}"
        new_ids = set(faces) - set(model.faces)
        candidates = [model]
        if in_flight is not None:
            candidates.append(model.applied(in_flight, min(new_ids) if new_ids else None))
        matches = [c for c in candidates if c.state() == (faces, files)]
        assert matches, (f"round {round_}: the store matches neither the committed operations"
                         f" nor those plus the interrupted {in_flight}")
        model = matches[-1]
        if in_flight is not None:
            stats["interrupted: committed" if len(matches) == 2 or matches[0] is not candidates[0]
                  else "interrupted: rolled back"] += 1
        if observer is not None:  # a reader that stayed open sees exactly the committed state
            by_person = {}
            for name, code in faces.values():
                by_person.setdefault(name, []).append(code)
            seen = {name: sorted(digest(e) for e in encodings)
                    for name, encodings in observer.encodings().items()}
            assert seen == {name: sorted(codes) for name, codes in by_person.items()}
            assert gallery(observer).face_count == len(faces)
    if observer is not None:
        observer.close()
    leftovers = {p.name for p in tmp_path.iterdir()} - {"store.sqlite3", "store.sqlite3-wal",
                                                         "store.sqlite3-shm"}
    assert not leftovers
    print(f"\ncrash test: {ROUNDS} kills, {dict(stats)}, {len(model.faces)} faces at the end")
    # the loop tested something: operations completed, and kills landed inside operations
    assert stats["done"] >= ROUNDS // 4 and stats["ready"] >= ROUNDS // 2
    assert stats["interrupted: committed"] + stats["interrupted: rolled back"] >= ROUNDS // 4


# -- many concurrent writers -------------------------------------------------------------------

WRITER_CHILD = """
import hashlib
import numpy as np
from recognizer.store import encoding_to_blob, open_store

store = open_store(path)
start.wait(120)
done = []
rng = np.random.default_rng(worker)
for index in range(count):
    name = "shared" if index % 5 == 0 else f"w{worker}"
    encoding = rng.normal(size=128) * 0.1
    face_id, faces = store.add_face(name, encoding, f"url:{worker}-{index}")
    done.append((face_id, name, faces, hashlib.sha256(encoding_to_blob(encoding)).hexdigest()[:16]))
store.close()
conn.send(done)
"""


@pytest.mark.timeout(600)
def test_eight_processes_enrolling_fifty_faces_each_lose_nothing(store_location, context):
    path = store_location
    open_store(path).close()
    observer = open_store(path)
    assert gallery(observer).face_count == 0
    start = context.Event()
    pipes, workers = [], []
    for worker in range(8):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=exec, args=(WRITER_CHILD, {
            "path": str(path), "worker": worker, "count": 50, "start": start, "conn": sender}))
        process.start()
        sender.close()
        pipes.append(receiver)
        workers.append(process)
    start.set()  # all at once
    reports = []
    for receiver in pipes:
        assert receiver.poll(300), "a writer did not finish"
        reports.extend(receiver.recv())
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0] * 8

    store = open_store(path)
    assert integrity(store) == [("ok",)]
    faces, _, people = snapshot(store)
    assert store.counts() == (9, 400) and len(faces) == 400
    assert len({face_id for face_id, *_ in reports}) == 400  # no id handed out twice
    assert faces == {face_id: (name, code) for face_id, name, _, code in reports}
    # every add counted the person's faces inside its own transaction: the answers are 1..n
    by_person = {}
    for _, name, count, _ in reports:
        by_person.setdefault(name, []).append(count)
    assert sorted(by_person.pop("shared")) == list(range(1, 81))
    assert all(sorted(counts) == list(range(1, 41)) for counts in by_person.values())
    assert len(by_person) == 8
    ((changes,),) = store.query("SELECT COUNT(*) FROM face_changes WHERE added = 1")
    assert changes == 400
    # a reader opened before all of it sees every face, read incrementally
    assert gallery(observer).face_count == 400
    assert sorted(gallery(observer).names) == sorted(people)
    observer.close()
    store.close()


# -- deletion ----------------------------------------------------------------------------------

rng = np.random.default_rng(20240607)


def encoding():
    return rng.normal(size=128) * 0.1


def store_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.parent.glob(path.name + "*")}


def traces(files: dict[str, bytes], encodings, extra: list[bytes] = ()) -> list[str]:
    """Where any of the encodings (or any one of their 8-byte numbers) or extra bytes occur."""
    found = []
    for name, data in files.items():
        for index, encoding in enumerate(encodings):
            blob = encoding_to_blob(encoding)
            if blob in data:
                found.append(f"{name}: encoding {index}")
            elif any(blob[i:i + 8] in data for i in range(0, 1024, 8)):
                found.append(f"{name}: a number of encoding {index}")
        found += [f"{name}: {needle!r}" for needle in extra if needle in data]
    return found


@pytest.mark.backend("sqlite")
def test_forgetting_a_person_leaves_none_of_their_encodings_in_any_file(tmp_path):
    path = tmp_path / "s.sqlite3"
    cli, server = open_store(path), open_store(path)  # the CLI and a server worker
    for index in range(20):
        cli.add_face(f"before-{index}", encoding(), "url:before")
    ada, sources = [], []
    for index in range(40):
        ada.append(encoding())
        sources.append(hashlib.sha256(f"ada-{index}".encode()).hexdigest())
        (cli if index % 2 else server).add_face("Ada Lovelace", ada[-1], f"url:{sources[-1]}")
        if index % 3 == 0:
            server.add_face(f"between-{index}", encoding(), "url:between")
        if index % 10 == 9:  # some of her faces reach the main file, later ones stay in the WAL
            checkpoint(path)
        if index % 7 == 0:
            assert "Ada Lovelace" in gallery(server).names
    for index in range(6):  # faces enrolled by build, one file's face replaced by a new one
        ada.append(encoding())
        cli.record_file(f"Ada Lovelace/{index % 5}.jpg", f"hash{index}", "Ada Lovelace",
                        "enrolled", ada[-1])
    before = store_files(path)
    assert traces(before, ada), "the test must see her encodings before the deletion"
    assert server.encodings()["Ada Lovelace"]

    assert server.forget("Ada Lovelace") == 45  # 40 enrolled, 5 from files (one replaced)
    for index in range(30):  # other people are written after, by both connections
        (cli if index % 2 else server).add_face(f"after-{index}", encoding(), "url:after")
        if index % 10 == 9:
            checkpoint(path)
    assert "Ada Lovelace" not in gallery(cli).names
    assert "Ada Lovelace" not in server.encodings()
    with pytest.raises(UnknownPerson):
        cli.forget("Ada Lovelace")

    files = store_files(path)
    assert {"s.sqlite3", "s.sqlite3-wal", "s.sqlite3-shm"} <= set(files)
    assert traces(files, ada) == []
    # her name and the sources of her faces (hashes of the image URLs) go with them
    assert traces(files, [], [s.encode() for s in sources] + [b"Ada Lovelace"]) == []

    # the change log only ever holds ids, and no other table holds an encoding-sized blob
    columns = [(row[1], row[2]) for row in cli.query("PRAGMA table_info(face_changes)")]
    assert columns == [("seq", "INTEGER"), ("face_id", "INTEGER"), ("added", "INTEGER")]
    for (table,) in cli.query("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in cli.query(f"SELECT * FROM {table}"):
            blobs = [v for v in row if isinstance(v, bytes)]
            assert table == "faces" or not blobs, table
    assert integrity(cli) == [("ok",)]

    cli.close()
    server.close()
    assert traces(store_files(path), ada) == []


@pytest.mark.backend("sqlite")
def test_forgetting_after_a_restart_of_every_connection(tmp_path):
    """Her faces all in the main file (every connection closed, the WAL merged and removed),
    then a fresh process forgets her."""
    path = tmp_path / "s.sqlite3"
    store = open_store(path)
    ada = [encoding() for _ in range(12)]
    for index, face in enumerate(ada):
        store.add_face("ada", face, "url:a")
        store.add_face(f"other-{index}", encoding(), "url:o")
    store.close()
    assert set(store_files(path)) == {"s.sqlite3"} and traces(store_files(path), ada)
    store = open_store(path)
    assert store.forget("ada") == 12
    store.add_face("late", encoding(), "url:l")
    assert traces(store_files(path), ada) == []
    store.close()


# -- deletion that is interrupted or held up ------------------------------------------------


def checkpoint(path):
    """Copy a SQLite store's WAL into its main file, from another connection."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")


def ada_and_bob(path):
    """A store with two people; returns it and ada's encoding, the one that must disappear."""
    store, secret = open_store(str(path)), encoding()
    store.add_face("ada", secret, "url:a")
    store.add_face("bob", encoding(), "url:b")
    return store, secret


@pytest.mark.backend("sqlite")
def test_forget_with_a_long_reader_open_still_deletes_from_every_file(tmp_path):
    path = tmp_path / "s.sqlite3"
    store, secret = ada_and_bob(path)
    backup = sqlite3.connect(path, isolation_level=None)  # e.g. a backup, or a sqlite3 shell
    backup.execute("BEGIN")
    backup.execute("SELECT COUNT(*) FROM faces").fetchone()
    # the store waits up to 30 s for readers; the reader here outlasts a 0.2 s wait instead
    store.close()
    store = SqliteStore(path, busy_timeout=0.2)
    assert store.forget("ada") == 1  # reported as done
    backup.execute("COMMIT")
    backup.close()
    for index in range(5):  # the service goes on writing
        store.add_face(f"later-{index}", encoding(), "url:l")
    assert traces(store_files(path), [secret]) == []


CRASH_AT_CHECKPOINT = """
import os, signal, sys
from recognizer.store import open_store

def crash_at_checkpoint(sql):
    if "wal_checkpoint" in sql:  # forget() has committed; die before the checkpoint
        os.kill(os.getpid(), signal.SIGKILL)

store = open_store(sys.argv[1])
store.before_statement = crash_at_checkpoint
store.forget("ada")
"""


@pytest.mark.backend("sqlite")
def test_a_crash_inside_forget_leaves_no_encodings_after_the_restart(tmp_path):
    path = tmp_path / "s.sqlite3"
    store, secret = ada_and_bob(path)
    store.close()
    child = subprocess.run([sys.executable, "-c", CRASH_AT_CHECKPOINT, str(path)], cwd=ROOT,
                           timeout=120)
    assert child.returncode == -signal.SIGKILL
    restarted = open_store(path)  # the server comes back and carries on
    assert [p.name for p in restarted.people()] == ["bob"]  # the deletion was committed
    for index in range(20):
        restarted.add_face(f"later-{index}", encoding(), "url:l")
    found = traces(store_files(path), [secret])
    restarted.close()
    assert found == []


# -- nothing left of a person: their name, their photos' paths and hashes, on both backends -------


def store_bytes(location: str) -> dict[str, bytes]:
    """Every file that holds the store's rows: SQLite's main file, -wal and -shm; on PostgreSQL
    the files of every table and index of the store's schema (TOAST included), checkpointed."""
    if BACKEND == "sqlite":
        return store_files(Path(location))
    schema = location.rsplit("%3D", 1)[1]
    with postgres_admin() as admin:
        admin.execute("CHECKPOINT")
        folder = Path(admin.execute("SHOW data_directory").fetchone()[0])
        rows = admin.execute(
            "WITH own AS (SELECT c.oid, c.reltoastrelid FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s)"
            " SELECT relname, pg_relation_filepath(oid) FROM pg_class WHERE oid IN"
            " (SELECT oid FROM own UNION SELECT reltoastrelid FROM own UNION SELECT i.indexrelid"
            " FROM pg_index i JOIN own ON i.indrelid = own.reltoastrelid)", (schema,)).fetchall()
    assert {"people", "files", "faces", "people_by_skeleton"} <= {name for name, _ in rows}
    return {name: (folder / path).read_bytes() for name, path in rows if path}


NAME = "Émilie du Châtelet"  # stored NFC; her skeleton, "Érnilie du Châtelet", is NFD
ROOT_DIR = "/srv/known_faces"


def _emilie(store) -> tuple[int, list[bytes], list[bytes]]:
    """Enrol her as build does (one photo enrolled, one refused), among other people.

    :return: her face's id, the traces that must go with her (name, skeleton, paths, hashes,
        sources), and those that only a deletion removes (paths, hashes, sources)
    """
    for index in range(8):
        store.add_face(f"before {index}", encoding(), "url:before")
    paths = [f"{ROOT_DIR}/emilie/portrait {n}.jpg" for n in (1, 2)]
    hashes = [hashlib.sha256(path.encode()).hexdigest() for path in paths]
    face_id = store.record_file(paths[0], hashes[0], NAME, "enrolled", encoding(), ROOT_DIR,
                                source="file:emilie/portrait 1.jpg")
    store.record_file(paths[1], hashes[1], NAME, "blurry", None, ROOT_DIR)
    store.add_face(NAME, encoding(), f"url:{hashes[1][::-1]}")
    for index in range(8):
        store.add_face(f"after {index}", encoding(), "url:after")
    files = [*paths, *hashes, "file:emilie/portrait 1.jpg", f"url:{hashes[1][::-1]}"]
    return face_id, [n.encode() for n in (NAME, skeleton(NAME))], [f.encode() for f in files]


@pytest.mark.parametrize("operation", ["delete her last face", "forget her", "rename her"])
def test_deleting_or_renaming_a_person_leaves_no_name_path_or_hash_in_any_file(store_location,
                                                                               operation):
    store = open_store(store_location)
    face_id, name, files = _emilie(store)
    assert present(store_bytes(store_location), name + files) == name + files, "seen at first"
    if operation == "delete her last face":
        (http_face,) = [f.id for f in store.person(NAME).faces if f.id != face_id]
        assert store.delete_face(NAME, http_face) == 1
        assert present(store_bytes(store_location), name) == name  # she is still enrolled
        assert store.delete_face(NAME, face_id) == 0
    elif operation == "forget her":
        assert store.forget(NAME) == 2
    else:
        assert store.rename(NAME, "Madame Du Chastellet") == (2, False)
        files = []  # her photos are the renamed person's, still recorded
    store.add_face("later", encoding(), "url:later")  # the service goes on writing
    found = store_bytes(store_location)
    assert traces(found, [], name + files) == []
    assert {p.name for p in store.people()} >= {"before 0", "after 7", "later"}
    if operation == "rename her":
        renamed = [b"Madame Du Chastellet", f"{ROOT_DIR}/emilie/portrait 1.jpg".encode()]
        assert present(found, renamed) == renamed
    store.close()


def present(files: dict[str, bytes], needles: list[bytes]) -> list[bytes]:
    """The needles found in any of the files."""
    return [needle for needle in needles if any(needle in data for data in files.values())]

