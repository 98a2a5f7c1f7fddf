"""What the store keeps for live video, on both backends: stream leases timed by the database's
clock, events and presence written only by the stream's runner, deletions and renames that
reach them, retention, and webhook cursors."""

import time

import numpy as np
import pytest

from conftest import from_outside
from recognizer.errors import NameTaken, UnknownEvent, UnknownStream, UnknownWebhook
from recognizer.store import open_store
from recognizer.store.streams import NewEvent

pytestmark = pytest.mark.store


@pytest.fixture
def store(store_location):
    opened = open_store(store_location)
    yield opened
    opened.close()


def event(kind="appear", track=1, name=None, at=None, encoding=None, snapshot=None):
    return NewEvent(kind, track, at or time.time(), name, 0.9 if name else None,
                    {"top": 1, "right": 2, "bottom": 3, "left": 0}, {}, encoding, snapshot)


def stream(store, name="door"):
    return store.add_stream(name, "rtsp://user:pw@127.0.0.1/x", None, None, None, "now").id


def test_a_stream_is_held_by_one_runner_until_its_lease_runs_out(store):
    first, second = stream(store), stream(store, "yard")
    held = store.lease_streams("a", 0.5, {}, claim=1)
    assert [row.id for row in held] == [first]
    assert [row.id for row in store.lease_streams("b", 0.5, {}, claim=4)] == [second]
    assert store.lease_streams("b", 0.5, {}, claim=4)[0].runner == "b"  # a's is still good
    time.sleep(0.7)  # nobody renewed: both leases ran out by the database's clock
    assert store.stream(first).runner is None
    taken = store.lease_streams("b", 5, {second: {"state": "running"}}, claim=4)
    assert sorted(row.id for row in taken) == [first, second]
    assert store.stream(second).status == {"state": "running"}
    assert store.lease_streams("a", 5, {first: {"state": "running"}}, claim=0) == []


def test_only_the_runner_holding_a_stream_records_its_events(store):
    held = stream(store)
    store.add_face("Ann", np.zeros(128), "test")
    store.lease_streams("a", 30, {}, claim=1)
    assert store.record_events("b", held, [event(name="Ann")], [("Ann", True, 1.0, 0.9)]) == []
    ids = store.record_events("a", held, [event(name="Ann"), event(track=2)],
                              [("Ann", True, 1.0, 0.9)])
    assert ids == sorted(ids) and len(ids) == 2
    assert [(e.name, e.track) for e in store.events()] == [("Ann", 1), (None, 2)]
    assert [(p.name, p.present) for p in store.presence()] == [("Ann", True)]
    store.release_streams("a", {held: {"state": "stopped"}})
    assert [(p.name, p.present) for p in store.presence()] == [("Ann", False)]


def test_a_name_deleted_meanwhile_is_not_recorded(store):
    held = stream(store)
    store.lease_streams("a", 30, {}, claim=1)
    store.record_events("a", held, [event(name="Nobody")], [("Nobody", True, 1.0, 0.9)])
    assert [(e.name, e.confidence) for e in store.events()] == [(None, None)]
    assert store.presence() == []


def test_an_unknown_face_keeps_its_encoding_and_snapshot_and_a_named_one_neither(store):
    held = stream(store)
    store.add_face("Ann", np.zeros(128), "test")
    store.lease_streams("a", 30, {}, claim=1)
    unknown, named = store.record_events("a", held, [
        event(track=1, encoding=np.full(128, 0.25), snapshot=b"jpeg"),
        event(track=2, name="Ann", encoding=np.ones(128), snapshot=b"jpeg")])
    encoding, snapshot = store.event_face(unknown)
    assert np.array_equal(encoding, np.full(128, 0.25)) and snapshot == b"jpeg"
    with pytest.raises(UnknownEvent):
        store.event_face(named)
    assert [e.snapshot for e in store.events()] == [True, False]


def test_deleting_a_person_deletes_their_events_and_presence_and_a_rename_moves_them(store):
    held = stream(store)
    for name in ("Ann", "Bea", "Cy"):
        store.add_face(name, np.zeros(128), "test")
    store.lease_streams("a", 30, {}, claim=1)
    store.record_events("a", held, [event(name="Ann"), event(track=2, name="Bea"),
                                    event(track=3, name="Cy")],
                        [("Ann", True, 1.0, 0.9), ("Bea", True, 2.0, 0.9), ("Cy", True, 3.0, 0.8)])
    store.forget("Ann")
    assert {e.name for e in store.events()} == {"Bea", "Cy"}
    assert {p.name for p in store.presence()} == {"Bea", "Cy"}
    store.rename("Bea", "Cy")  # a merge: both were seen on the stream; the later one stays
    assert {e.name for e in store.events()} == {"Cy"}
    assert [(p.name, p.since) for p in store.presence()] == [("Cy", 3.0)]
    store.rename("Cy", "Dee")
    assert {e.name for e in store.events()} == {"Dee"}
    assert [p.name for p in store.presence()] == ["Dee"]


def test_events_filter_and_expire_with_their_faces(store):
    held, other = stream(store), stream(store, "yard")
    store.add_face("Ann", np.zeros(128), "test")
    store.lease_streams("a", 30, {}, claim=2)
    old = time.time() - 3600
    store.record_events("a", held, [event(at=old, encoding=np.ones(128)), event(name="Ann")])
    store.record_events("a", other, [event(track=5)])
    assert [e.track for e in store.events(stream_id=other)] == [5]
    assert [e.name for e in store.events(name="Ann")] == ["Ann"]
    assert [e.track for e in store.events(unknown=True)] == [1, 5]
    assert [e.id for e in store.events(since_id=2)] == [3]
    assert store.expire_events(time.time() - 60) == 1
    assert store.query("SELECT COUNT(*) FROM event_faces") == [(0,)]
    assert [e.id for e in store.events()] == [2, 3]


def test_deleting_a_stream_deletes_its_events_and_presence(store):
    held = stream(store)
    store.add_face("Ann", np.zeros(128), "test")
    store.lease_streams("a", 30, {}, claim=1)
    store.record_events("a", held, [event(name="Ann"), event(track=2, encoding=np.ones(128))],
                        [("Ann", True, 1.0, 0.9)])
    store.delete_stream(held)
    assert store.events() == [] and store.presence() == []
    assert store.query("SELECT COUNT(*) FROM event_faces") == [(0,)]
    with pytest.raises(UnknownStream):
        store.stream(held)
    with pytest.raises(UnknownStream):
        store.delete_stream(held)


def test_stream_names_are_unique(store):
    stream(store)
    with pytest.raises(NameTaken):
        stream(store)


def test_a_webhook_starts_after_the_events_before_it_and_its_cursor_only_moves_on(store):
    held = stream(store)
    store.lease_streams("a", 30, {}, claim=1)
    store.record_events("a", held, [event()])
    hook = store.add_webhook("http://127.0.0.1/hook", ["appear"], None, True, "s" * 16, "now")
    assert hook.cursor == 1
    assert [row.id for row in store.lease_webhooks("a", 30)] == [hook.id]
    assert store.lease_webhooks("b", 30) == []  # a holds it
    assert store.webhook_progress(hook.id, "a", 5, 2)
    assert not store.webhook_progress(hook.id, "a", 4, 0)  # never backwards
    assert not store.webhook_progress(hook.id, "b", 9, 1)  # not b's
    assert (store.webhook(hook.id).cursor, store.webhook(hook.id).delivered) == (5, 2)
    store.release_webhooks("a")
    assert [row.id for row in store.lease_webhooks("b", 30)] == [hook.id]
    store.delete_webhook(hook.id)
    with pytest.raises(UnknownWebhook):
        store.webhook(hook.id)


def test_a_store_from_before_streams_gets_their_tables(store_location, tmp_path):
    opened = open_store(store_location)
    opened.add_face("Ann", np.zeros(128), "test")
    opened.close()
    from_outside(store_location, ("DROP TABLE event_faces", ()), ("DROP TABLE presence", ()),
                 ("DROP TABLE events", ()), ("DROP TABLE webhooks", ()),
                 ("DROP TABLE streams", ()))
    reopened = open_store(store_location)
    try:
        assert stream(reopened) == 1 and reopened.counts() == (1, 1)
    finally:
        reopened.close()
