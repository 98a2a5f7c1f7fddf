"""The "who is this?" loop of the web app over HTTP: unknown faces the streams saw, grouped
(GET /unknown); enrolling one from its event (POST /events/{id}/enroll); taking a wrong name
back (POST /events/{id}/not); and what the app reads besides: people searched and paged
(GET /people?search), the newest events first (GET /events?newest), and what a key may do
(GET /access).

Events are recorded through the store, as a stream runner records them, with the encodings of
real photos: who groups with whom, and who is recognised, is decided by the real pipeline."""

import json
import time
from urllib.parse import quote

import falcon
import hug
import pytest

import api
from conftest import face, upload
from recognizer import faces, images
from recognizer.store.streams import NewEvent

pytestmark = pytest.mark.store  # run on both store backends

READ, ADMIN = "r-loop-key", "a-loop-key"
KIT, ROSE = "Kit Harington", "Rose Leslie"
BOX = {"top": 40, "right": 160, "bottom": 150, "left": 50}
PHOTOS = {"kit": "people/kit_harington/john1.jpeg", "kit2": "people/kit_harington/john2.jpeg",
          "biden": "people/biden/biden.jpg", "rose": "people/rose_leslie/rose_leslie_img2.jpg"}


@pytest.fixture(scope="module")
def encoding():
    """The one face's encoding in each photo of PHOTOS (the two of Kit Harington are 0.39
    apart, within the tolerance; the others 0.78 or more)."""
    found = {}
    for key, photo in PHOTOS.items():
        pixels = images.decode(face(photo).read_bytes(), 40_000_000)
        (found[key],) = faces.encode(pixels, faces.detect(pixels))
    return found


def call(method, path, key=None, **kwargs):
    headers = kwargs.pop("headers", {}) | ({"X-API-Key": key} if key is not None else {})
    return hug.test.call(method, api, path, headers=headers, **kwargs)


def post_json(path, fields, key=None):
    return call("POST", path, key, body=json.dumps(fields),
                headers={"content-type": "application/json"})


class Runner:
    """Records events on a stream as its runner would: unknown tracks with their mean
    encoding, named ones with the id of the person's nearest face (``face_id``)."""

    def __init__(self, name: str = "porch") -> None:
        added = post_json("streams", {"name": name, "source": "0"})
        assert added.status == falcon.HTTP_201, added.data
        self.stream_id, self.at = added.data["id"], time.time() - 3600
        store = api.get_service().store
        assert store.lease_streams(f"test-{name}", 600, {}, claim=1)[0].id == self.stream_id
        self.runner = f"test-{name}"

    def record(self, *events: NewEvent, presence=()) -> list[int]:
        return api.get_service().store.record_events(self.runner, self.stream_id, events,
                                                     presence)

    def unknown(self, track: int, encoding, kinds=("appear", "leave"), snapshot=None):
        """An unknown face's track: its events' ids."""
        self.at += 10
        return self.record(*[NewEvent(kind, track, self.at + step, None, None, BOX,
                                      {"duration": 2.0} if kind == "leave" else {},
                                      encoding, snapshot if kind == "appear" else None)
                             for step, kind in enumerate(kinds)])

    def named(self, track: int, name: str, encoding) -> int:
        """A face the runner named: its appear event's id."""
        self.at += 10
        face_id = api.get_service().gallery.current().nearest_face(name, encoding)
        assert face_id is not None
        (event_id,) = self.record(NewEvent("appear", track, self.at, name, 0.9, BOX,
                                           {"face_id": face_id}),
                                  presence=[(name, True, self.at, 0.9)])
        return event_id


def enrol(name, photo, key=None):
    body, headers = upload("enroll", face(photo).read_bytes(), {"name": name})
    enrolled = call("POST", "enroll", key, body=body, headers=headers)
    assert enrolled.status == falcon.HTTP_201, enrolled.data
    return enrolled.data["face_id"]


def events_of(stream_id):
    return call("GET", "events", params={"stream": str(stream_id)}).data["events"]


# -- GET /unknown ------------------------------------------------------------------------------


def test_two_tracks_of_one_face_are_one_unknown_face_seen_twice(env, encoding):
    porch = Runner()
    first = porch.unknown(1, encoding["kit"])
    again = porch.unknown(2, encoding["kit2"], snapshot=face(PHOTOS["kit2"]).read_bytes())
    other = porch.unknown(3, encoding["biden"])
    listed = call("GET", "unknown")
    assert listed.status == falcon.HTTP_200
    stream = {"id": porch.stream_id, "name": "porch"}
    by_time = {event["id"]: event["time"] for event in events_of(porch.stream_id)}
    assert listed.data == {"faces": [
        {"event_id": other[0], "stream": stream, "time": by_time[other[0]],
         "last_seen": by_time[other[0]], "seen": 1, "snapshot_event_id": None,
         "event_ids": [other[0]]},
        {"event_id": again[0], "stream": stream, "time": by_time[first[0]],
         "last_seen": by_time[again[0]], "seen": 2, "snapshot_event_id": again[0],
         "event_ids": [again[0], first[0]]}]}
    assert call("GET", "unknown", params={"limit": "1"}).data["faces"][0]["event_id"] == other[0]
    for limit in ("0", "1001", "x"):
        refused = call("GET", "unknown", params={"limit": limit})
        assert refused.status == falcon.HTTP_400
        assert refused.data["errors"] == {"limit": "out_of_range"}


def test_a_face_enrolled_since_is_no_longer_unknown(env, encoding):
    porch = Runner()
    porch.unknown(1, encoding["kit"])
    porch.unknown(2, encoding["biden"])
    assert len(call("GET", "unknown").data["faces"]) == 2
    enrol("Joe Biden", "people/biden/biden2.jpg")  # another photo of him
    (left,) = call("GET", "unknown").data["faces"]
    assert left["seen"] == 1 and left["event_ids"] == [events_of(porch.stream_id)[0]["id"]]


# -- POST /events/{event_id}/enroll ------------------------------------------------------------


def test_who_is_this_enrols_the_track_s_face_and_names_its_events(env, encoding):
    porch = Runner()
    first = porch.unknown(1, encoding["kit"])
    again = porch.unknown(2, encoding["kit2"], snapshot=face(PHOTOS["kit2"]).read_bytes())
    named = post_json(f"events/{again[0]}/enroll", {"name": KIT})
    assert named.status == falcon.HTTP_201, named.data
    face_id = named.data["face_id"]
    assert named.data == {"event_id": again[0], "name": KIT, "face_id": face_id,
                          "face_count": 1}
    (stored,) = call("GET", f"people/{quote(KIT)}").data["faces"]
    assert (stored["id"], stored["source"]) == (face_id, f"event:{again[0]}")
    events = {event["id"]: event for event in events_of(porch.stream_id)}
    assert [events[event_id]["name"] for event_id in again] == [KIT, KIT]  # the whole track
    assert [events[event_id]["name"] for event_id in first] == [None, None]  # not another's
    assert not any(events[event_id]["snapshot"] for event_id in again)
    assert call("GET", f"events/{again[0]}/snapshot").data == {
        "errors": {"event_id": "unknown_event"}}  # its encoding and snapshot are gone
    assert again[0] not in {row.id for row, _ in api.get_service().store.unknown_faces(500)}
    assert call("GET", "unknown").data == {"faces": []}  # the other track is him now
    photo = face("people/kit_harington/johnsnow_test1.jpg").read_bytes()
    (recognised,) = call("POST", "recognize", body=photo,
                         headers={"content-type": "image/jpeg"}).data["faces"]
    assert recognised["name"] == KIT  # a third photo of him, named from the track's face


def test_who_is_this_adds_a_face_to_someone_enrolled(env, encoding):
    enrol(ROSE, "people/rose_leslie/rose_leslie_img1.jpg")
    porch = Runner()
    (appear,) = porch.unknown(1, encoding["rose"], kinds=("appear",))
    named = post_json(f"events/{appear}/enroll", {"name": ROSE})
    assert named.status == falcon.HTTP_201
    assert named.data["face_count"] == 2


def test_who_is_this_needs_an_unknown_face_s_event_and_a_name(env, encoding):
    enrol(ROSE, "people/rose_leslie/rose_leslie_img1.jpg")
    porch = Runner()
    (unknown,) = porch.unknown(1, encoding["kit"], kinds=("appear",))
    (without,) = porch.record(NewEvent("appear", 2, time.time(), None, None, BOX, {}))
    named = porch.named(3, ROSE, encoding["rose"])
    for event_id in (named, without, 999):
        refused = post_json(f"events/{event_id}/enroll", {"name": KIT})
        assert refused.status == falcon.HTTP_404, event_id
        assert refused.data == {"errors": {"event_id": "unknown_event"}}
    for fields, errors in (({}, {"name": "missing_parameter"}),
                           ({"name": "Kit\u200bHarington"}, {"name": "invalid_name"}),
                           ({"name": KIT, "event_id": named}, {"event_id": "only_in_path"})):
        refused = post_json(f"events/{unknown}/enroll", fields)
        assert refused.status == falcon.HTTP_400, fields
        assert refused.data["errors"] == errors
    assert call("GET", f"people/{quote(KIT)}").status == falcon.HTTP_404  # nothing enrolled
    as_form = call("POST", f"events/{unknown}/enroll", body=f"name={quote(KIT)}",
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert as_form.status == falcon.HTTP_201


def test_strict_names_refuse_a_look_alike_from_who_is_this_too(reconfigure, encoding):
    reconfigure(strict_names="on")
    enrol(ROSE, "people/rose_leslie/rose_leslie_img1.jpg")
    porch = Runner()
    (unknown,) = porch.unknown(1, encoding["kit"], kinds=("appear",))
    refused = post_json(f"events/{unknown}/enroll", {"name": "R\u043ese Leslie"})  # Cyrillic о
    assert refused.status == falcon.HTTP_409
    assert refused.data["errors"] == {"name": "name_looks_like_another"}
    assert events_of(porch.stream_id)[0]["name"] is None  # nothing changed
    assert call("GET", "unknown").data["faces"][0]["event_id"] == unknown


# -- POST /events/{event_id}/not ---------------------------------------------------------------


def test_not_x_takes_the_name_back_and_deletes_the_face_who_is_this_enrolled(env, encoding):
    porch = Runner()
    (unknown,) = porch.unknown(1, encoding["kit"], kinds=("appear",))
    loop_face = post_json(f"events/{unknown}/enroll", {"name": KIT}).data["face_id"]
    kept = enrol(KIT, "people/kit_harington/johnsnow_test1.jpg")
    later = porch.named(2, KIT, encoding["kit2"])  # named by the loop's face, the nearer
    other = porch.named(3, KIT, encoding["kit2"])
    corrected = call("POST", f"events/{later}/not")
    assert corrected.status == falcon.HTTP_200, corrected.data
    assert corrected.data == {"event_id": later, "name": KIT, "deleted_face": loop_face}
    assert [f["id"] for f in call("GET", f"people/{quote(KIT)}").data["faces"]] == [kept]
    events = {event["id"]: event for event in events_of(porch.stream_id)}
    assert (events[later]["name"], events[later]["confidence"],
            events[later]["corrected_from"]) == (None, None, KIT)
    assert (events[other]["name"], events[other]["corrected_from"]) == (KIT, None)
    again = call("POST", f"events/{later}/not")
    assert (again.status, again.data) == (falcon.HTTP_404,
                                          {"errors": {"event_id": "unknown_event"}})


def test_not_x_on_the_event_who_is_this_named_deletes_that_face(env, encoding):
    porch = Runner()
    appear, leave = porch.unknown(1, encoding["kit"])
    loop_face = post_json(f"events/{leave}/enroll", {"name": KIT}).data["face_id"]
    elsewhere = porch.named(2, KIT, encoding["kit2"])
    corrected = call("POST", f"events/{appear}/not")
    assert corrected.data == {"event_id": appear, "name": KIT, "deleted_face": loop_face}
    assert call("GET", "people").data["total"] == 0  # it was his only face: he is deleted,
    events = events_of(porch.stream_id)  # with his events; those taken back stay, unknown
    assert [(event["id"], event["name"], event["corrected_from"]) for event in events] == [
        (appear, None, KIT), (leave, None, KIT)]
    assert elsewhere not in {event["id"] for event in events}


def test_not_x_keeps_a_face_enrolled_otherwise(env, encoding):
    rose_face = enrol(ROSE, "people/rose_leslie/rose_leslie_img1.jpg")
    porch = Runner()
    named = porch.named(1, ROSE, encoding["rose"])
    assert call("GET", "presence").data["present"][0]["name"] == ROSE
    corrected = call("POST", f"events/{named}/not")
    assert corrected.data == {"event_id": named, "name": ROSE, "deleted_face": None}
    assert [f["id"] for f in call("GET", f"people/{quote(ROSE)}").data["faces"]] == [rose_face]
    (event,) = events_of(porch.stream_id)
    assert (event["name"], event["corrected_from"]) == (None, ROSE)
    assert call("GET", "presence").data["present"] == []  # not in view as her any more


def test_not_x_needs_a_named_event(env, encoding):
    porch = Runner()
    (unknown,) = porch.unknown(1, encoding["kit"], kinds=("appear",))
    for event_id in (unknown, 999):
        refused = call("POST", f"events/{event_id}/not")
        assert (refused.status, refused.data) == (falcon.HTTP_404,
                                                  {"errors": {"event_id": "unknown_event"}})
    assert call("POST", "events/0/not").data["errors"] == {"event_id": "out_of_range"}


# -- GET /people?search -----------------------------------------------------------------------

NAMES = ["ada", "Ada Lovelace", "Bob", "bob", "Zoë", "Émile", "d'Artagnan", "O'Brien", "Straße"]


@pytest.fixture
def everyone(env, encoding):
    """NAMES enrolled, each with a real face (who they look like does not matter here)."""
    store = api.get_service().store
    for number, name in enumerate(NAMES):
        store.add_face(name, encoding["kit"], f"sha256:{number}")
    store.add_face("Bob", encoding["biden"], "sha256:bob-2")


def names(answer):
    return [person["name"] for person in answer.data["people"]]


def test_people_are_searched_by_part_of_their_name_in_any_case(everyone):
    for search, found in (("ADA", ["Ada Lovelace", "ada"]), ("bO", ["Bob", "bob"]),
                          ("zoË", ["Zoë"]), ("émile", ["Émile"]), ("STRASSE", ["Straße"]),
                          ("'", ["O'Brien", "d'Artagnan"]), ("ada l", ["Ada Lovelace"]),
                          ("nobody", [])):
        answer = call("GET", "people", params={"search": search})
        assert answer.status == falcon.HTTP_200
        assert names(answer) == found, search
        assert answer.data["total"] == len(found)
    bob = call("GET", "people", params={"search": "bob"}).data["people"]
    assert bob == [{"name": "Bob", "face_count": 2}, {"name": "bob", "face_count": 1}]
    assert call("GET", "people", params={"search": ""}).data["total"] == len(NAMES)


def test_a_search_is_paged_like_the_list(everyone):
    pages = [call("GET", "people", params={"search": "o", "size": "2", "page": str(page)}).data
             for page in (1, 2, 3)]
    assert [person["name"] for page in pages for person in page["people"]] == [
        "Ada Lovelace", "Bob", "O'Brien", "Zoë", "bob"]
    assert [(page["total"], page["pages"], page["page"], page["size"]) for page in pages] == [
        (5, 3, 1, 2), (5, 3, 2, 2), (5, 3, 3, 2)]
    past = call("GET", "people", params={"search": "o", "size": "2", "page": "4"}).data
    assert (past["people"], past["total"]) == ([], 5)


def test_a_search_of_more_than_100_characters_is_a_400(everyone):
    assert call("GET", "people", params={"search": "a" * 100}).status == falcon.HTTP_200
    refused = call("GET", "people", params={"search": "a" * 101})
    assert refused.status == falcon.HTTP_400
    assert refused.data == {"errors": {"search": "invalid_value"},
                            "detail": {"search": "at most 100 characters"}}


# -- GET /events?newest -------------------------------------------------------------------------


def test_the_newest_events_come_first(env, encoding):
    porch = Runner()
    ids = porch.unknown(1, encoding["kit"]) + porch.unknown(2, encoding["biden"])
    newest = call("GET", "events", params={"newest": "true", "limit": "3"}).data
    assert [event["id"] for event in newest["events"]] == ids[:0:-1]
    assert newest["next_since_id"] == ids[-1]
    after = call("GET", "events", params={"newest": "true", "since_id": str(ids[1])}).data
    assert [event["id"] for event in after["events"]] == ids[:1:-1]
    oldest = call("GET", "events", params={"limit": "3"}).data
    assert [event["id"] for event in oldest["events"]] == ids[:3]
    assert oldest["next_since_id"] == ids[2]
    refused = call("GET", "events", params={"newest": "maybe"})
    assert refused.data["errors"] == {"newest": "invalid_value"}


# -- GET /access --------------------------------------------------------------------------------


def test_access_says_what_the_key_may_do(reconfigure):
    assert call("GET", "access").data == {"scope": "open"}
    reconfigure(api_keys=f"{READ}:read,{ADMIN}:admin", auth_failures="0")
    assert call("GET", "access", ADMIN).data == {"scope": "admin"}
    assert call("GET", "access", READ).data == {"scope": "read"}
    for key, code in ((None, "missing_api_key"), ("wrong", "invalid_api_key")):
        refused = call("GET", "access", key)
        assert (refused.status, refused.data) == (falcon.HTTP_401,
                                                  {"errors": {"api_key": code}})


def test_the_loop_s_changes_need_an_admin_key(reconfigure, encoding):
    reconfigure(api_keys=f"{READ}:read,{ADMIN}:admin")
    added = call("POST", "streams", ADMIN, body='{"name": "porch", "source": "0"}',
                 headers={"content-type": "application/json"})
    assert added.status == falcon.HTTP_201
    store = api.get_service().store
    store.lease_streams("test", 600, {}, claim=1)
    (unknown,) = store.record_events("test", added.data["id"], [NewEvent(
        "appear", 1, time.time(), None, None, BOX, {}, encoding["kit"])])
    assert call("GET", "unknown", READ).data["faces"][0]["event_id"] == unknown
    for path, body in ((f"events/{unknown}/enroll", {"name": KIT}), (f"events/{unknown}/not",
                                                                     None)):
        refused = call("POST", path, READ, body=json.dumps(body) if body else None,
                       headers={"content-type": "application/json"})
        assert (refused.status, refused.data) == (falcon.HTTP_403,
                                                  {"errors": {"api_key": "insufficient_scope"}})
    named = post_json(f"events/{unknown}/enroll", {"name": KIT}, ADMIN)
    assert named.status == falcon.HTTP_201
    assert call("POST", f"events/{unknown}/not", ADMIN).data["deleted_face"] == \
        named.data["face_id"]
