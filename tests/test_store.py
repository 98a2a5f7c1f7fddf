"""The SQLite store: persistence, sharing between processes, deletion that really deletes."""

import multiprocessing
import sqlite3

import numpy as np
import pytest

from recognizer.errors import UnknownPerson
from recognizer.store import Store, blob_to_encoding, encoding_to_blob

rng = np.random.default_rng(11)


def encoding():
    return rng.normal(size=128) * 0.1


def test_a_restart_loses_nothing(tmp_path):
    path = tmp_path / "store.sqlite3"
    first = Store(path)
    face_id, count = first.add_face("ada", encoding(), "url:abc")
    first.add_face("ada", encoding(), "sha256:def")
    first.close()
    reopened = Store(path)
    assert [(p.name, p.faces) for p in reopened.people()] == [("ada", 2)]
    assert reopened.gallery().names == ("ada",) and reopened.gallery().faces == 2
    assert (face_id, count) == (1, 1)


def test_another_connection_sees_new_faces_without_a_restart(tmp_path):
    server, cli = Store(tmp_path / "s.sqlite3"), Store(tmp_path / "s.sqlite3")
    server.add_face("ada", encoding(), "url:a")
    assert server.gallery().names == ("ada",)
    cli.add_face("bob", encoding(), "url:b")
    assert server.gallery().names == ("ada", "bob")
    cli.forget("ada")
    assert server.gallery().names == ("bob",)


def test_the_gallery_is_reused_until_something_changes(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    store.add_face("ada", encoding(), "url:a")
    assert store.gallery() is store.gallery()
    before = store.gallery()
    store.add_face("ada", encoding(), "url:b")
    assert store.gallery() is not before and store.gallery().faces == 2


def full_reads(statements):
    return [s for s in statements if "FROM faces f JOIN people p" in s and "WHERE" not in s]


def test_a_change_elsewhere_reads_only_the_faces_that_changed(tmp_path):
    server, cli = Store(tmp_path / "s.sqlite3"), Store(tmp_path / "s.sqlite3")
    for name in ("ada", "bob", "cy"):
        cli.add_face(name, encoding(), "url:x")
    statements = []
    server._db.set_trace_callback(statements.append)
    assert server.gallery().faces == 3 and len(full_reads(statements)) == 1  # the first load
    statements.clear()
    new = encoding()
    cli.add_face("dee", new, "url:d")
    cli.forget("ada")
    gallery = server.gallery()
    assert gallery.names == ("bob", "cy", "dee")
    assert gallery.distance_to("dee", new) == pytest.approx(0.0)
    assert full_reads(statements) == []
    reads = [s for s in statements if "WHERE f.id IN" in s]
    assert len(reads) == 1 and reads[0].endswith("WHERE f.id IN (4)")  # dee's face alone


def test_a_reused_face_id_is_not_mistaken_for_the_old_face(tmp_path):
    server, cli = Store(tmp_path / "s.sqlite3"), Store(tmp_path / "s.sqlite3")
    cli.add_face("ada", encoding(), "url:a")
    last_id, _ = cli.add_face("bob", encoding(), "url:b")
    assert server.gallery().names == ("ada", "bob")
    cli.forget("bob")
    reused, _ = cli.add_face("cy", newest := encoding(), "url:c")
    assert reused == last_id  # SQLite hands out the deleted id again
    gallery = server.gallery()
    assert gallery.names == ("ada", "cy") and gallery.distance_to("cy", newest) == 0.0


def test_a_process_too_far_behind_reloads_everything(tmp_path, monkeypatch):
    monkeypatch.setattr("recognizer.store._CHANGES_KEPT", 2)
    server, cli = Store(tmp_path / "s.sqlite3"), Store(tmp_path / "s.sqlite3")
    cli.add_face("ada", encoding(), "url:a")
    assert server.gallery().names == ("ada",)
    for name in ("bob", "cy", "dee", "eve"):
        cli.add_face(name, encoding(), "url:x")
    cli.forget("bob")
    (kept,) = cli._db.execute("SELECT COUNT(*) FROM face_changes").fetchone()
    assert kept <= 3
    assert server.gallery().names == ("ada", "cy", "dee", "eve")


def test_forget_deletes_the_encoding_bytes_from_every_file(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    secret = encoding()
    store.add_face("ada", secret, "url:a")
    store.add_face("bob", encoding(), "url:b")
    needle = encoding_to_blob(secret)
    files = [path, path.with_name(path.name + "-wal")]
    assert any(needle in f.read_bytes() for f in files if f.exists())
    assert store.forget("ada") == 1
    assert not any(needle in f.read_bytes() for f in files if f.exists())
    with pytest.raises(UnknownPerson):
        store.forget("ada")


def test_the_store_file_is_private_to_its_owner(tmp_path):
    Store(tmp_path / "s.sqlite3")
    assert (tmp_path / "s.sqlite3").stat().st_mode & 0o077 == 0


def test_encodings_round_trip_as_raw_floats_and_bad_ones_are_refused(tmp_path):
    original = encoding()
    assert np.array_equal(blob_to_encoding(encoding_to_blob(original)), original)
    for bad in (np.zeros(127), np.full(128, np.nan), np.full(128, np.inf)):
        with pytest.raises(ValueError):
            encoding_to_blob(bad)
    with pytest.raises(ValueError):
        blob_to_encoding(np.full(128, np.nan).tobytes())
    store = Store(tmp_path / "s.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):  # the schema itself refuses a short blob
        with store._write() as db:
            db.execute("INSERT INTO people (name, created_at) VALUES ('x', 'now')")
            db.execute("INSERT INTO faces (person_id, encoding, source, created_at)"
                       " VALUES (1, x'00', 's', 'now')")
    assert store.counts() == (0, 0)


def test_a_corrupt_row_is_left_out_and_logged(tmp_path, caplog):
    store = Store(tmp_path / "s.sqlite3")
    store.add_face("ada", encoding(), "url:a")
    store.add_face("bob", encoding(), "url:b")
    with store._write() as db:  # tampering from outside the service
        db.execute("UPDATE faces SET encoding = ? WHERE id = 2", (np.full(128, np.nan).tobytes(),))
    assert store.gallery().names == ("ada",)
    assert "face 2 has a corrupt encoding" in caplog.text


def test_build_records_replace_the_face_of_a_changed_file(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    store.record_file("ada/1.jpg", "hash1", "ada", "enrolled", encoding())
    assert store.file_is_current("ada/1.jpg", "hash1")
    assert not store.file_is_current("ada/1.jpg", "hash2")
    store.record_file("ada/1.jpg", "hash2", "ada", "enrolled", encoding())
    assert store.counts() == (1, 1)
    store.record_file("ada/1.jpg", "hash3", "ada", "no_face")
    assert store.counts() == (0, 0) and store.people() == []
    assert store.file_is_current("ada/1.jpg", "hash3")


def test_a_forgotten_persons_files_are_built_again(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    store.record_file("ada/1.jpg", "hash1", "ada", "enrolled", encoding())
    store.forget("ada")
    assert not store.file_is_current("ada/1.jpg", "hash1")


def _enrol_many(path, worker, count):
    store = Store(path)
    for index in range(count):
        store.add_face(f"person-{worker}", np.full(128, worker + index / 1000), f"url:{index}")
    store.close()


def test_concurrent_writers_from_several_processes_lose_nothing(tmp_path):
    path = tmp_path / "s.sqlite3"
    Store(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_enrol_many, args=(path, w, 25)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    store = Store(path)
    assert store.counts() == (4, 100)
    assert store._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
