"""The store, on this run's backend: persistence, sharing between processes, people management,
deletion that really deletes. Backend-specific behaviour is marked with its backend."""

import multiprocessing
import sqlite3
from pathlib import Path

import numpy as np
import psycopg
import pytest

from conftest import BACKEND, from_outside, gallery, postgres_admin
from recognizer.errors import NameConflict, StoreUnavailable, UnknownFace, UnknownPerson
from recognizer.names import skeleton
from recognizer.store import blob_to_encoding, core, encoding_to_blob, open_store

pytestmark = pytest.mark.store  # run on both store backends

rng = np.random.default_rng(11)


def encoding():
    return rng.normal(size=128) * 0.1


@pytest.fixture
def two(store_location):
    """Two connections to one store: a server worker and the CLI (or two hosts)."""
    server, cli = open_store(store_location), open_store(store_location)
    yield server, cli
    server.close()
    cli.close()


def record_sql(store):
    """Every statement the store runs from now on."""
    statements = []
    store.before_statement = statements.append
    return statements


def face_reads(statements):
    return [s for s in statements if "FROM faces f JOIN people p ON p.id = f.person_id" in s]


def test_a_restart_loses_nothing(store_location):
    first = open_store(store_location)
    face_id, count = first.add_face("ada", encoding(), "url:abc")
    first.add_face("ada", encoding(), "sha256:def")
    first.close()
    reopened = open_store(store_location)
    assert [(p.name, p.face_count) for p in reopened.people()] == [("ada", 2)]
    assert gallery(reopened).names == ("ada",) and gallery(reopened).face_count == 2
    assert count == 1 and [f.id for f in reopened.person("ada").faces][0] == face_id


def test_another_connection_sees_new_faces_without_a_restart(two):
    server, cli = two
    server.add_face("ada", encoding(), "url:a")
    assert gallery(server).names == ("ada",)
    cli.add_face("bob", encoding(), "url:b")
    assert gallery(server).names == ("ada", "bob")
    cli.forget("ada")
    assert gallery(server).names == ("bob",)


def test_the_gallery_is_not_read_again_until_something_changes(two):
    server, cli = two
    cli.add_face("ada", encoding(), "url:a")
    assert gallery(server).face_count == 1
    statements = record_sql(server)
    for _ in range(3):
        assert gallery(server).names == ("ada",)
    assert face_reads(statements) == [] and not any("face_changes WHERE seq >" in s
                                                     for s in statements)
    cli.add_face("ada", encoding(), "url:b")
    assert gallery(server).face_count == 2


def test_a_change_elsewhere_reads_only_the_faces_that_changed(two):
    server, cli = two
    for name in ("ada", "bob", "cy"):
        cli.add_face(name, encoding(), "url:x")
    statements = record_sql(server)
    assert gallery(server).face_count == 3 and len(face_reads(statements)) == 1  # the first load
    statements.clear()
    new = encoding()
    dee, _ = cli.add_face("dee", new, "url:d")
    cli.forget("ada")
    current = gallery(server)
    assert current.names == ("bob", "cy", "dee")
    assert current.distance_to("dee", new) == pytest.approx(0.0)
    reads = face_reads(statements)
    assert len(reads) == 1 and reads[0].endswith("WHERE f.id IN (?)")  # dee's face alone


def test_a_deleted_face_id_is_never_handed_out_again(two):
    server, cli = two
    cli.add_face("ada", encoding(), "url:a")
    bob, _ = cli.add_face("bob", encoding(), "url:b")
    assert gallery(server).names == ("ada", "bob")
    cli.forget("bob")
    cy, _ = cli.add_face("cy", newest := encoding(), "url:c")
    assert cy > bob  # a client holding bob's face id can never delete cy's face with it
    current = gallery(server)
    assert current.names == ("ada", "cy") and current.distance_to("cy", newest) == 0.0


def test_a_process_too_far_behind_reloads_everything(two, monkeypatch):
    monkeypatch.setattr(core, "CHANGES_KEPT", 2)
    server, cli = two
    cli.add_face("ada", encoding(), "url:a")
    assert gallery(server).names == ("ada",)
    for name in ("bob", "cy", "dee", "eve"):
        cli.add_face(name, encoding(), "url:x")
    cli.forget("bob")
    ((kept,),) = cli.query("SELECT COUNT(*) FROM face_changes")
    assert kept <= 3
    assert gallery(server).names == ("ada", "cy", "dee", "eve")


def test_people_are_listed_in_name_order_a_page_at_a_time(store_location):
    store = open_store(store_location)
    for name in ("Émile", "bob", "Ada", "ada", "Zoë"):
        store.add_face(name, encoding(), "url:x")
    store.add_face("bob", encoding(), "url:y")
    everyone = [(p.name, p.face_count) for p in store.people()]
    assert everyone == [("Ada", 1), ("Zoë", 1), ("ada", 1), ("bob", 2), ("Émile", 1)]
    assert [p.name for p in store.people(offset=1, limit=2)] == ["Zoë", "ada"]
    assert store.people(offset=5) == [] and store.counts() == (5, 6)


def test_a_person_lists_their_faces_with_ids_sources_and_dates(store_location):
    store = open_store(store_location)
    first, _ = store.add_face("ada", encoding(), "url:abc")
    second, _ = store.add_face("ada", encoding(), "file:ada/2.jpg")
    record = store.person("ada")
    assert record.name == "ada" and record.created_at.endswith("+00:00")
    assert [(f.id, f.source) for f in record.faces] == [(first, "url:abc"),
                                                        (second, "file:ada/2.jpg")]
    with pytest.raises(UnknownPerson):
        store.person("bob")


def test_deleting_one_face_leaves_the_others_and_the_last_takes_the_person(two):
    server, cli = two
    first, _ = cli.add_face("ada", one := encoding(), "url:a")
    second, _ = cli.add_face("ada", other := encoding(), "url:b")
    cli.add_face("bob", encoding(), "url:c")
    assert gallery(server).distance_to("ada", (one + other) / 2) == pytest.approx(0.0)
    with pytest.raises(UnknownFace):
        cli.delete_face("bob", first)  # ada's face, not bob's
    assert cli.delete_face("ada", first) == 1
    assert gallery(server).distance_to("ada", other) == pytest.approx(0.0)
    assert cli.delete_face("ada", second) == 0
    assert gallery(server).names == ("bob",) and [p.name for p in cli.people()] == ["bob"]
    with pytest.raises(UnknownPerson):
        cli.delete_face("ada", second)


def test_a_face_deleted_from_a_built_file_is_not_built_again(store_location):
    store = open_store(store_location)
    face_id = store.record_file("ada/1.jpg", "hash1", "ada", "enrolled", encoding())
    store.record_file("ada/2.jpg", "hash2", "ada", "enrolled", encoding())
    store.delete_face("ada", face_id)
    assert store.file_is_current("ada/1.jpg", "hash1")
    assert not store.file_is_current("ada/1.jpg", "hash3")  # new bytes are built


def test_deleting_a_persons_last_face_forgets_their_files_as_forget_does(store_location):
    store = open_store(store_location)
    first = store.record_file("ada/1.jpg", "hash1", "ada", "enrolled", encoding())
    second = store.record_file("ada/2.jpg", "hash2", "ada", "enrolled", encoding())
    store.record_file("ada/3.jpg", "hash3", "ada", "blurry")
    store.record_file("bob/1.jpg", "hash4", "bob", "enrolled", encoding())
    store.delete_face("ada", first)
    assert store.query("SELECT path, outcome FROM files WHERE person = 'ada' ORDER BY path") == [
        ("ada/1.jpg", "deleted"), ("ada/2.jpg", "enrolled"), ("ada/3.jpg", "blurry")]
    assert store.delete_face("ada", second) == 0
    assert store.query("SELECT path, person FROM files") == [("bob/1.jpg", "bob")]
    assert not store.file_is_current("ada/1.jpg", "hash1")  # built again, as after forget


def test_rename_gives_the_faces_a_new_name_or_merges_them(two):
    server, cli = two
    cli.add_face("ada", a := encoding(), "url:a")
    cli.record_file("ada/1.jpg", "h", "ada", "enrolled", b := encoding())
    cli.add_face("Ada L", c := encoding(), "url:c")
    assert gallery(server).names == ("Ada L", "ada")
    assert cli.rename("ada", "Ada Lovelace") == (2, False)
    assert gallery(server).names == ("Ada L", "Ada Lovelace")
    assert cli.rename("Ada L", "Ada Lovelace") == (3, True)
    current = gallery(server)
    assert current.names == ("Ada Lovelace",) and current.face_count == 3
    assert current.distance_to("Ada Lovelace", (a + b + c) / 3) == pytest.approx(0.0)
    assert cli.rename("Ada Lovelace", "Ada Lovelace") == (3, False)
    with pytest.raises(UnknownPerson):
        cli.rename("ada", "x")
    assert cli.forget("Ada Lovelace") == 3
    assert not cli.file_is_current("ada/1.jpg", "h")  # the file went with its new owner


# -- names that look alike -------------------------------------------------------------------


def test_a_look_alike_is_another_person_whose_name_has_the_same_skeleton(two):
    server, cli = two
    for name in ("Obama", "Osama", "obama"):
        cli.add_face(name, encoding(), "url:x")
    assert server.look_alike("0bama") == "Obama"  # a zero
    assert server.look_alike("\u041ebama") == "Obama"  # a Cyrillic O
    assert server.look_alike("Obama") is None  # not a look-alike of themselves
    assert server.look_alike("0bama", "Obama") is None  # besides: the person being renamed
    cli.add_face("\u041ebama", encoding(), "url:y")
    assert server.look_alike("Obama") == "\u041ebama"
    assert server.look_alike("0bama") == "Obama"  # the first by name (code point)
    cli.forget("Obama")
    assert server.look_alike("0bama") == "\u041ebama"
    cli.rename("\u041ebama", "Barack")
    assert server.look_alike("0bama") is None


def test_strict_adding_and_renaming_refuse_a_look_alike_in_the_same_transaction(two):
    server, cli = two
    cli.add_face("Obama", encoding(), "url:a")
    cli.add_face("Joe", encoding(), "url:b")
    with pytest.raises(NameConflict) as refused:
        server.add_face_once("0bama", encoding(), "url:c", "sha-c", distinct=True)
    assert (refused.value.field, refused.value.other) == ("name", "Obama")
    with pytest.raises(NameConflict) as refused:
        server.rename("Joe", "0bama", distinct=True)
    assert (refused.value.field, refused.value.other) == ("new_name", "Obama")
    assert [p.name for p in cli.people()] == ["Joe", "Obama"] and cli.counts() == (2, 2)
    assert server.add_face_once("Obama", encoding(), "url:d", "sha-d", distinct=True)[1] == 2
    assert server.rename("Obama", "0bama", distinct=True) == (2, False)  # their own look-alike


def test_an_older_store_gets_the_skeleton_of_every_name_when_it_opens(store_location):
    store = open_store(store_location)
    names = [f"person {index} \u041e" for index in range(2 * core.ID_CHUNK + 3)] + ["Obama"]
    store.import_encodings(names, np.stack([encoding() for _ in names]), "npz:older")
    store.close()
    from_outside(store_location, ("DROP INDEX people_by_skeleton", ()),
                 ("ALTER TABLE people DROP COLUMN skeleton", ()))
    reopened = open_store(store_location)
    stored = dict(reopened.query("SELECT name, skeleton FROM people"))
    assert stored == {name: skeleton(name) for name in names}
    assert reopened.look_alike("0bama") == "Obama"
    assert reopened.look_alike("person 7 O") == "person 7 \u041e"


def test_finding_a_look_alike_is_one_indexed_query_among_many_people(store_location):
    store = open_store(store_location)
    store.add_face("Obama", encoding(), "url:a")
    many = ("INSERT INTO people (name, created_at, skeleton) SELECT 'p' || i, '', 'p' || i FROM"
            + (" generate_series(1, 200000) AS i" if BACKEND == "postgresql" else
               " (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
               " WHERE i < 200000) SELECT i FROM n)"))
    from_outside(store_location, (many, ()))
    statements = record_sql(store)
    assert store.look_alike("0bama") == "Obama"
    (statement,) = statements
    explain = "EXPLAIN QUERY PLAN " if BACKEND == "sqlite" else "EXPLAIN "
    plan = " ".join(str(row) for row in store.query(explain + statement,
                                                    (skeleton("0bama"), "0bama")))
    assert "people_by_skeleton" in plan, plan


def test_import_adds_every_face_at_once_and_only_once(two):
    server, cli = two
    names = ["ada", "bob", "ada"]
    encodings = np.stack([encoding() for _ in names])
    assert cli.import_encodings(names, encodings, "import:abc") == 3
    assert cli.import_encodings(names, encodings, "import:abc") == 0
    assert gallery(server).names == ("ada", "bob") and gallery(server).face_count == 3
    assert [f.source for f in cli.person("ada").faces] == ["import:abc#0", "import:abc#2"]
    with pytest.raises(ValueError):  # nothing at all is added when one row is bad
        cli.import_encodings(["cy", "dee"], np.stack([encoding(), np.full(128, np.nan)]), "i:x")
    assert gallery(server).face_count == 3 and cli.counts() == (2, 3)


def test_export_returns_every_encoding_by_name(store_location):
    store = open_store(store_location)
    faces = [("bob", encoding()), ("ada", encoding()), ("bob", encoding())]
    for name, face in faces:
        store.add_face(name, face, "url:x")
    exported = store.export()
    assert exported.names == ["ada", "bob", "bob"]
    assert np.array_equal(exported.encodings, np.stack([faces[1][1], faces[0][1], faces[2][1]]))
    assert store.encodings()["bob"][1].tolist() == faces[2][1].tolist()


def test_encodings_round_trip_as_raw_floats_and_bad_ones_are_refused(store_location):
    original = encoding()
    assert np.array_equal(blob_to_encoding(encoding_to_blob(original)), original)
    for bad in (np.zeros(127), np.full(128, np.nan), np.full(128, np.inf)):
        with pytest.raises(ValueError):
            encoding_to_blob(bad)
    with pytest.raises(ValueError):
        blob_to_encoding(np.full(128, np.nan).tobytes())
    store = open_store(store_location)
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):  # the schema refuses
        from_outside(store_location,
                     ("INSERT INTO people (name, created_at) VALUES ('x', 'now')", ()),
                     ("INSERT INTO faces (person_id, encoding, source, created_at)"
                      " SELECT id, ?, 's', 'now' FROM people", (b"\0",)))
    assert store.counts() == (0, 0)


def test_a_corrupt_row_is_left_out_and_logged(store_location, caplog):
    store = open_store(store_location)
    store.add_face("ada", encoding(), "url:a")
    bob, _ = store.add_face("bob", encoding(), "url:b")
    from_outside(store_location, ("UPDATE faces SET encoding = ? WHERE id = ?",
                                  (np.full(128, np.nan).tobytes(), bob)))
    assert gallery(store).names == ("ada",)
    assert f"face {bob} has a corrupt encoding" in caplog.text


def test_build_records_replace_the_face_of_a_changed_file(store_location):
    store = open_store(store_location)
    store.record_file("ada/1.jpg", "hash1", "ada", "enrolled", encoding())
    assert store.file_is_current("ada/1.jpg", "hash1")
    assert not store.file_is_current("ada/1.jpg", "hash2")
    store.record_file("ada/1.jpg", "hash2", "ada", "enrolled", encoding())
    assert store.counts() == (1, 1)
    store.record_file("ada/1.jpg", "hash3", "ada", "no_face")
    assert store.counts() == (0, 0) and store.people() == []
    assert store.file_is_current("ada/1.jpg", "hash3")


def test_a_forgotten_persons_files_are_built_again(store_location):
    store = open_store(store_location)
    store.record_file("ada/1.jpg", "hash1", "ada", "enrolled", encoding())
    store.forget("ada")
    assert not store.file_is_current("ada/1.jpg", "hash1")
    with pytest.raises(UnknownPerson):
        store.forget("ada")


def interrupt_after(store, statement):
    """Make the store's next `statement` run, then raise KeyboardInterrupt (a Ctrl-C that lands
    as the statement returns)."""

    def interrupted(sql):
        if sql == statement:
            store.after_statement = None
            raise KeyboardInterrupt

    store.after_statement = interrupted


@pytest.mark.parametrize("statement", ["BEGIN IMMEDIATE" if BACKEND == "sqlite" else "BEGIN",
                                       "COMMIT"])
def test_a_ctrl_c_inside_a_write_is_raised_and_the_store_goes_on(two, statement):
    server, cli = two
    server.add_face("ada", encoding(), "url:a")
    interrupt_after(server, statement)
    with pytest.raises(KeyboardInterrupt):  # not a failed ROLLBACK in its place
        server.add_face("ada", encoding(), "url:b")
    committed = statement == "COMMIT"
    assert server.person("ada").faces[-1].source == ("url:b" if committed else "url:a")
    assert gallery(cli).face_count == gallery(server).face_count == 1 + committed
    server.add_face("grace", encoding(), "url:c")  # no transaction was left open
    assert cli.counts() == (2, 2 + committed)


def _enrol_many(location, worker, count):
    store = open_store(location)
    for index in range(count):
        store.add_face(f"person-{worker}", np.full(128, worker + index / 1000), f"url:{index}")
    store.close()


def test_concurrent_writers_from_several_processes_lose_nothing(store_location):
    observer = open_store(store_location)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_enrol_many, args=(store_location, w, 25))
               for w in range(4)]
    for worker in workers:
        worker.start()
    seen = []
    while any(worker.is_alive() for worker in workers):
        seen.append(gallery(observer).face_count)  # a reader following along never goes back
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert seen == sorted(seen) and observer.counts() == (4, 100)
    assert open_store(store_location).counts() == (4, 100)


# -- SQLite ------------------------------------------------------------------------------------


@pytest.mark.backend("sqlite")
def test_sqlite_forget_deletes_the_encoding_bytes_from_every_file(store_location):
    path = Path(store_location)
    store = open_store(store_location)
    secret = encoding()
    store.add_face("ada", secret, "url:a")
    store.add_face("bob", encoding(), "url:b")
    needle = encoding_to_blob(secret)
    files = [path, path.with_name(path.name + "-wal")]
    assert any(needle in f.read_bytes() for f in files if f.exists())
    assert store.forget("ada") == 1
    assert not any(needle in f.read_bytes() for f in files if f.exists())


@pytest.mark.backend("sqlite")
def test_sqlite_store_file_is_private_to_its_owner(store_location):
    open_store(store_location)
    assert Path(store_location).stat().st_mode & 0o077 == 0
    assert open_store(store_location).query("PRAGMA integrity_check") == [("ok",)]


@pytest.mark.backend("sqlite")
def test_sqlite_a_store_from_before_face_ids_were_exposed_stops_reusing_them(store_location):
    old = sqlite3.connect(store_location)
    old.executescript("""
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                             created_at TEXT NOT NULL);
        CREATE TABLE faces (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL
                            REFERENCES people(id) ON DELETE CASCADE, encoding BLOB NOT NULL,
                            source TEXT NOT NULL, created_at TEXT NOT NULL);
        CREATE TABLE files (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, person TEXT NOT NULL,
                            outcome TEXT NOT NULL, face_id INTEGER REFERENCES faces(id)
                            ON DELETE SET NULL, updated_at TEXT NOT NULL);
        INSERT INTO people VALUES (1, 'ada', 'then'), (2, 'bob', 'then');""")
    old.executemany("INSERT INTO faces VALUES (?, ?, ?, 'url:x', 'then')",
                    [(1, 1, encoding_to_blob(encoding())), (2, 2, encoding_to_blob(encoding()))])
    old.execute("INSERT INTO files VALUES ('bob/1.jpg', 'h', 'bob', 'enrolled', 2, 'then')")
    old.commit()
    old.close()
    store = open_store(store_location)
    assert store.file_face("bob/1.jpg") == 2 and gallery(store).names == ("ada", "bob")
    store.forget("bob")
    assert store.add_face("cy", encoding(), "url:c")[0] == 3
    assert store.query("PRAGMA foreign_key_check") == []
    assert store.query("PRAGMA integrity_check") == [("ok",)]


# -- PostgreSQL --------------------------------------------------------------------------------


@pytest.mark.backend("postgresql")
@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_postgresql_forget_deletes_the_encoding_bytes_from_the_table_file(store_location,
                                                                          position):
    """Wherever the row sat in its page (a plain VACUUM leaves the last one's bytes behind)."""
    store = open_store(store_location)
    secret, others = encoding(), {"first": (0, 9), "middle": (4, 5), "last": (9, 0)}[position]
    for index in range(others[0]):
        store.add_face(f"before {index}", encoding(), "url:x")
    store.add_face("ada", secret, "url:a")
    for index in range(others[1]):
        store.add_face(f"after {index}", encoding(), "url:x")
    table = store_location.rsplit("%3D", 1)[1] + ".faces"

    def table_bytes():
        with postgres_admin() as admin:
            admin.execute("CHECKPOINT")
            folder = admin.execute("SHOW data_directory").fetchone()[0]
            path = admin.execute("SELECT pg_relation_filepath(%s)", (table,)).fetchone()[0]
        return (Path(folder) / path).read_bytes()

    needle = encoding_to_blob(secret)
    assert needle in table_bytes()
    assert store.forget("ada") == 1
    assert needle not in table_bytes()


@pytest.mark.backend("postgresql")
def test_postgresql_a_lost_connection_is_a_503_then_reconnects(store_location):
    store = open_store(store_location)
    store.add_face("ada", encoding(), "url:a")
    ((pid,),) = store.query("SELECT pg_backend_pid()")
    with postgres_admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreUnavailable):
        store.add_face("bob", encoding(), "url:b")
    assert store.add_face("bob", encoding(), "url:b")[1] == 1  # a new connection
    assert gallery(store).names == ("ada", "bob")


@pytest.mark.backend("postgresql")
def test_postgresql_an_unreachable_server_is_store_unavailable():
    with pytest.raises(StoreUnavailable):
        open_store("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
