"""Webcam sessions over HTTP (the web app's live page): a browser's frames, sent one at a time,
tracked and named. The frames are the Hamilton clip's, as JPEG, with Lin-Manuel Miranda's photo
enrolled through the real pipeline (no face is mocked). A session's clock is the test's
(``clock``): each frame comes 0.2 s after the one before, as from a slow webcam loop, so what
depends on time (encoding a known face again once a second, a track leaving, a session idle
too long) does not depend on how fast this machine is."""

import base64
import functools
import json
import threading
import time
from urllib.parse import quote

import falcon
import hug
import pytest

import api
from conftest import face, no_face_image, upload
from recognizer import cameras, faces, sessions

LIN = "Lin-Manuel Miranda"
CLIP = "video/short_hamilton_clip.mp4"
# Lin-Manuel Miranda in close-up, the only face in view (and found in each): every fifth frame
# of 150-214
CLOSE_UP = range(150, 215, 5)
FRAME_GAP = 0.2  # seconds between two frames, on the sessions' clock
READ, ADMIN = "r-sessions-key", "a-sessions-key"
KEYS = f"{READ}:read,{ADMIN}:admin"
ELSEWHERE = "camera-host-2.AAAAAAAAAAAAAAAA"  # a session id of another host


@pytest.fixture(scope="module")
def clip():
    """Every frame of the clip, as JPEG bytes."""
    frames, _ = cameras.jpeg_frames(face(CLIP))
    return frames


class Clock:
    """The sessions' clock (``time.monotonic``), moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:  # (what a frame took, in its answer: the real one)
        return time.perf_counter()


@pytest.fixture
def clock(env, monkeypatch):
    """The sessions' clock, and a service in an isolated store."""
    fake = Clock()
    monkeypatch.setattr(sessions, "time", fake)
    opened = sessions.Session  # (its fields' defaults read the real clock)
    monkeypatch.setattr(sessions, "Session",
                        lambda watcher: opened(watcher, started=fake.now, used=fake.now))
    return fake


def call(method, path, key=None, **kwargs):
    headers = kwargs.pop("headers", {}) | ({"X-API-Key": key} if key is not None else {})
    return hug.test.call(method, api, path, headers=headers, **kwargs)


def open_session(key=None) -> str:
    opened = call("POST", "sessions", key)
    assert opened.status == falcon.HTTP_201, opened.data
    return opened.data["id"]


def send(clock, session_id, jpeg, key=None, content_type="image/jpeg"):
    """One frame, FRAME_GAP after the one before."""
    clock.now += FRAME_GAP
    return call("POST", f"sessions/{session_id}/frames", key, body=jpeg,
                headers={"content-type": content_type})


def frames_of(clock, session_id, jpegs, key=None) -> list[dict]:
    answers = []
    for jpeg in jpegs:
        answer = send(clock, session_id, jpeg, key)
        assert answer.status == falcon.HTTP_200, answer.data
        answers.append(answer.data)
    return answers


def enrol_lin(key=None):
    body, headers = upload("enroll", face("people/lin_manuel_miranda/lin-manuel-miranda.png")
                           .read_bytes(), {"name": LIN}, name="lin.png")
    enrolled = call("POST", "enroll", key, body=body, headers=headers)
    assert enrolled.status == falcon.HTTP_201, enrolled.data


def name_track(session_id, track, name, key=None):
    return call("POST", f"sessions/{session_id}/tracks/{track}/enroll", key,
                body=f'{{"name": "{name}"}}', headers={"content-type": "application/json"})


@pytest.fixture
def encoded(monkeypatch):
    """How many faces faces.encode was given, call by call (the real function runs)."""
    counts = []
    real = faces.encode

    def counting(image, boxes, *args, **kwargs):
        counts.append(len(boxes))
        return real(image, boxes, *args, **kwargs)

    monkeypatch.setattr(faces, "encode", counting)
    return counts


# -- tracking and naming -----------------------------------------------------------------------


def test_a_face_in_view_is_tracked_with_one_id_and_named(clock, clip):
    enrol_lin()
    opened = call("POST", "sessions")
    assert opened.status == falcon.HTTP_201
    assert set(opened.data) == {"id", "idle_seconds"} and opened.data["idle_seconds"] == 60.0
    answers = frames_of(clock, opened.data["id"], [clip[index] for index in CLOSE_UP])
    assert [answer["frame"] for answer in answers] == list(range(len(CLOSE_UP)))
    assert all(answer["image"] == {"width": 640, "height": 360} for answer in answers)
    tracks = {view["track"] for answer in answers for view in answer["faces"]}
    assert len(tracks) == 1  # the same track from the first frame to the last
    for answer in answers:
        (view,) = answer["faces"]
        assert view["name"] == LIN and view["confidence"] > 0.5
        box = view["box"]
        assert 0 <= box["left"] < box["right"] <= 640 and 0 <= box["top"] < box["bottom"] <= 360
    (appear,) = answers[0]["events"]
    assert (appear["event"], appear["track"], appear["name"]) == ("appear", *tracks, LIN)
    assert all(answer["events"] == [] for answer in answers[1:])  # no flicker, nobody left


def test_a_known_face_is_encoded_again_once_a_second_an_unknown_one_at_every_frame(
        clock, clip, encoded):
    jpegs = [clip[index] for index in CLOSE_UP]  # 13 frames, 2.6 s on the sessions' clock
    session_id = open_session()
    encoded.clear()  # (the models' warm-up, as a server starts)
    unknown = frames_of(clock, session_id, jpegs)
    assert all(answer["faces"][0]["name"] is None for answer in unknown)
    assert sum(encoded) == len(jpegs)
    encoded.clear()
    enrol_lin()
    encoded.clear()  # (the enrolment's)
    known = frames_of(clock, open_session(), jpegs)
    assert all(answer["faces"][0]["name"] == LIN for answer in known)
    assert sum(encoded) == 3  # in the first frame, 1 s later and 2 s later: not 13 times


def test_who_is_this_enrols_a_face_in_view_and_the_next_identification_names_it(clock, clip):
    session_id = open_session()
    before = frames_of(clock, session_id, [clip[index] for index in CLOSE_UP[:3]])
    (view,) = before[-1]["faces"]
    assert view["name"] is None
    enrolled = name_track(session_id, view["track"], LIN)
    assert enrolled.status == falcon.HTTP_201, enrolled.data
    assert enrolled.data == {"name": LIN, "face_id": enrolled.data["face_id"], "face_count": 1,
                             "warnings": [], "duplicate": False}
    (stored,) = call("GET", f"people/{quote(LIN)}").data["faces"]
    assert stored["id"] == enrolled.data["face_id"]
    assert stored["source"] == sessions.face_source(session_id)  # not the session's id
    assert session_id.rsplit(".", 1)[1] not in stored["source"]
    after = frames_of(clock, session_id, [clip[index] for index in CLOSE_UP[3:6]])
    changes = [event for answer in after for event in answer["events"]]
    assert changes[0]["event"] == "change" and changes[0]["name"] == LIN
    assert changes[0]["track"] == view["track"]
    assert changes[0] in after[0]["events"] + after[1]["events"]  # two views in a row agree
    assert after[-1]["faces"][0]["name"] == LIN


def area(box: dict) -> int:
    return (box["right"] - box["left"]) * (box["bottom"] - box["top"])


def test_a_frame_s_faces_are_the_largest_max_faces_of_them(reconfigure, clock):
    """As for a photo (FACEREC_MAX_FACES), which bounds the work of a frame: frames are not
    rate limited."""
    photo = face("misc/two_people.jpg").read_bytes()  # Barack Obama and Joe Biden
    reconfigure(max_faces="1")
    (view,) = send(clock, open_session(), photo).data["faces"]
    reconfigure(max_faces="20")
    both = [other["box"] for other in send(clock, open_session(), photo).data["faces"]]
    assert len(both) == 2 and area(view["box"]) == max(map(area, both))


def test_a_track_not_in_view_cannot_be_named(clock, clip):
    session_id = open_session()
    assert frames_of(clock, session_id, [no_face_image()])[0]["faces"] == []
    refused = name_track(session_id, 1, LIN)
    assert refused.status == falcon.HTTP_404
    assert refused.data == {"errors": {"track": "unknown_track"},
                            "detail": {"track": "not in view now"}}
    assert call("GET", "people").data["total"] == 0


# -- which session: unknown, closed, idle, elsewhere, busy, too many ---------------------------


UNKNOWN_SESSION = {"errors": {"session_id": "unknown_session"},
                   "detail": {"session_id": "closed, or idle too long: open another"}}


def every_session_call(clock, session_id):
    """A frame, a track's enrolment and closing, for one session id."""
    return [send(clock, session_id, no_face_image(), content_type="image/png"),
            name_track(session_id, 1, LIN), call("DELETE", f"sessions/{session_id}")]


def test_a_session_never_opened_closed_or_idle_too_long_is_404(clock):
    never = sessions.socket.gethostname() + ".BBBBBBBBBBBBBBBB"
    closing = open_session()
    closed = call("DELETE", f"sessions/{closing}")
    assert (closed.status, closed.data) == (falcon.HTTP_200, {"id": closing, "closed": True})
    idle = open_session()
    assert send(clock, idle, no_face_image(), content_type="image/png").status == falcon.HTTP_200
    clock.now += sessions.IDLE_SECONDS - FRAME_GAP  # the frame below comes just in time
    assert send(clock, idle, no_face_image(), content_type="image/png").status == falcon.HTTP_200
    clock.now += sessions.IDLE_SECONDS + 1
    for session_id in (never, closing, idle):
        for answer in every_session_call(clock, session_id):
            assert (answer.status, answer.data) == (falcon.HTTP_404, UNKNOWN_SESSION)


def test_another_host_s_session_is_421_naming_the_host(clock):
    for answer in every_session_call(clock, ELSEWHERE):
        assert answer.status == "421 Misdirected Request"
        assert answer.data == {"errors": {"session_id": "session_on_another_host"},
                               "detail": {"session_id": "ask camera-host-2"}}


def test_a_session_takes_one_frame_at_a_time(clock, clip, monkeypatch):
    session_id = open_session()
    working, finish = threading.Event(), threading.Event()
    detect = faces.detect_scaled

    def slow_detect(*args, **kwargs):
        working.set()
        finish.wait(30)
        return detect(*args, **kwargs)

    monkeypatch.setattr(faces, "detect_scaled", slow_detect)
    first = []
    sending = threading.Thread(target=lambda: first.append(send(clock, session_id, clip[150])))
    sending.start()
    try:
        assert working.wait(30)
        busy = send(clock, session_id, clip[155])
    finally:
        finish.set()
        sending.join(30)
    assert busy.status == falcon.HTTP_409
    assert busy.data == {"errors": {"session_id": "session_busy"},
                         "detail": {"session_id": "send one frame at a time"}}
    assert first[0].status == falcon.HTTP_200 and first[0].data["frame"] == 0
    monkeypatch.setattr(faces, "detect_scaled", detect)
    assert send(clock, session_id, clip[160]).data["frame"] == 1  # the next one is taken


def test_too_many_sessions_is_503_with_retry_after_until_one_closes_or_idles(clock):
    most = api.get_service().sessions.max_sessions
    opened = [open_session() for _ in range(most)]
    refused = call("POST", "sessions")
    assert refused.status == falcon.HTTP_503
    assert refused.data == {"errors": {"session": "too_many_sessions"},
                            "detail": {"session": f"at most {most} at once"}}
    assert refused.headers_dict["Retry-After"] == "5"
    assert call("DELETE", f"sessions/{opened[0]}").status == falcon.HTTP_200
    open_session()
    assert call("POST", "sessions").status == falcon.HTTP_503
    clock.now += sessions.IDLE_SECONDS + 1  # every one of them idle too long: closed
    assert len({open_session() for _ in range(most)}) == most


# -- keys and the rate limit -------------------------------------------------------------------


def test_a_read_key_opens_sends_and_closes_and_only_an_admin_key_enrols(reconfigure, clock,
                                                                           clip):
    reconfigure(api_keys=KEYS)
    session_id = open_session(READ)
    for answer in (call("POST", "sessions"), send(clock, session_id, clip[150]),
                   name_track(session_id, 1, LIN), call("DELETE", f"sessions/{session_id}")):
        assert answer.status == falcon.HTTP_401
        assert answer.data == {"errors": {"api_key": "missing_api_key"}}
    (view,) = send(clock, session_id, clip[155], READ).data["faces"]
    refused = name_track(session_id, view["track"], LIN, READ)
    assert refused.status == falcon.HTTP_403
    assert refused.data == {"errors": {"api_key": "insufficient_scope"}}
    assert name_track(session_id, view["track"], LIN, ADMIN).status == falcon.HTTP_201
    assert call("GET", "access", READ).data == {"scope": "read"}
    assert call("DELETE", f"sessions/{session_id}", READ).status == falcon.HTTP_200
    admin_session = open_session(ADMIN)
    assert send(clock, admin_session, clip[160], ADMIN).data["faces"][0]["name"] == LIN


def test_frames_are_not_rate_limited_and_every_other_call_is(reconfigure, clock):
    reconfigure(api_keys=KEYS, rate_limit="0.001", rate_burst="2")  # a token per 1000 s
    session_id = open_session(READ)
    assert call("GET", "people", READ).status == falcon.HTTP_200  # the burst is spent
    for _ in range(10):
        answer = send(clock, session_id, no_face_image(), READ, "image/png")
        assert answer.status == falcon.HTTP_200, answer.data
    for limited in (call("GET", "people", READ), call("POST", "sessions", READ),
                    call("DELETE", f"sessions/{session_id}", READ)):
        assert limited.status == falcon.HTTP_429
        assert limited.data == {"errors": {"rate": "rate_limited"}}
    assert send(clock, session_id, no_face_image(), READ, "image/png").status == falcon.HTTP_200


# -- what a frame may be -----------------------------------------------------------------------


def json_frame(clock, session_id, fields):
    clock.now += FRAME_GAP
    return call("POST", f"sessions/{session_id}/frames", body=json.dumps(fields),
                headers={"content-type": "application/json"})


def test_a_frame_comes_as_any_image_body_the_image_routes_take(clock, clip):
    session_id = open_session()
    jpeg = clip[150]
    body, headers = upload(f"sessions/{session_id}/frames", jpeg)
    answers = [
        send(clock, session_id, jpeg),
        send(clock, session_id, jpeg, content_type="application/octet-stream"),
        json_frame(clock, session_id, {"image_base64": base64.b64encode(jpeg).decode()}),
        json_frame(clock, session_id, {"image": "data:image/jpeg;base64,"
                                       + base64.b64encode(jpeg).decode()}),
        call("POST", f"sessions/{session_id}/frames", body=body, headers=headers),
    ]
    assert [answer.status for answer in answers] == [falcon.HTTP_200] * 5
    assert [answer.data["frame"] for answer in answers] == [0, 1, 2, 3, 4]
    assert len({answer.data["faces"][0]["track"] for answer in answers}) == 1


@pytest.mark.parametrize("body, content_type, status, errors", [
    (b"", "image/jpeg", falcon.HTTP_400, {"image": "missing_image"}),
    (b"not an image", "image/jpeg", falcon.HTTP_415, {"image": "unsupported_image"}),
    ("half", "image/jpeg", falcon.HTTP_415, {"image": "image_truncated"}),
    ("a frame", "text/plain", falcon.HTTP_415, {"body": "unsupported_media_type"}),
    ('{"image_base64": "%%%"}', "application/json", falcon.HTTP_400,
     {"image_base64": "invalid_base64"}),
    ('{"image_url": "https://example.com/a.jpg"}', "application/json", falcon.HTTP_400,
     {"image_url": "unknown_parameter"}),
    ('{"image": "data:image/png;base64,AAAA", "image_base64": "AAAA"}', "application/json",
     falcon.HTTP_400, {"image": "several_images"}),
    ('{"image_base64": 5}', "application/json", falcon.HTTP_400, {"image_base64": "wrong_type"}),
    ("[1, 2]", "application/json", falcon.HTTP_400, {"body": "malformed_body"}),
    ('{"session_id": "%s"}' % ELSEWHERE, "application/json", falcon.HTTP_400,
     {"session_id": "only_in_path"}),
])
def test_a_frame_that_is_no_image_gets_the_usual_4xx(clock, clip, body, content_type, status,
                                                     errors):
    session_id = open_session()
    if body == "half":  # the first half of a frame
        body = clip[150][:len(clip[150]) // 2]
    answer = call("POST", f"sessions/{session_id}/frames", body=body,
                  headers={"content-type": content_type})
    assert answer.status == status, answer.data
    assert answer.data["errors"] == errors


@pytest.mark.parametrize("path", ["sessions/nope/frames", "sessions/nope", "sessions/x.y/frames",
                                  "sessions/nope/tracks/1/enroll"])
def test_a_malformed_session_id_is_a_400(clock, path):
    method = "DELETE" if path.count("/") == 1 else "POST"
    answer = call(method, path, body='{"name": "Ann"}' if "enroll" in path else no_face_image(),
                  headers={"content-type": "application/json" if "enroll" in path
                           else "image/png"})
    assert answer.status == falcon.HTTP_400
    assert answer.data == {"errors": {"session_id": "invalid_value"},
                           "detail": {"session_id": "a session's id, as POST /sessions gave it"}}


def test_a_track_s_name_is_a_person_s_name_and_the_path_s_ids_are_the_path_s(clock, clip):
    session_id = open_session()
    (view,) = send(clock, session_id, clip[150]).data["faces"]
    path = f"sessions/{session_id}/tracks/{view['track']}/enroll"
    json_body = functools.partial(call, "POST", path, headers={"content-type":
                                                               "application/json"})
    for body, errors in (('{}', {"name": "missing_parameter"}),
                         ('{"name": " Ann"}', {"name": "invalid_name"}),
                         ('{"name": "Ann", "track": 2}', {"track": "only_in_path"}),
                         ('{"name": "Ann", "session_id": "%s"}' % ELSEWHERE,
                          {"session_id": "only_in_path"})):
        answer = json_body(body=body)
        assert answer.status == falcon.HTTP_400, body
        assert answer.data["errors"] == errors
    in_query = call("POST", path, params={"track": "2"}, body='{"name": "Ann"}',
                    headers={"content-type": "application/json"})
    assert in_query.data == {"errors": {"track": "only_in_path"}}
    as_form = call("POST", path, body="name=Ann", headers={"content-type":
                                                          "application/x-www-form-urlencoded"})
    assert as_form.status == falcon.HTTP_201 and as_form.data["name"] == "Ann"
