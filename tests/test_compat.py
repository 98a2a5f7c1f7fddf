"""The CompreFace and DeepStack surfaces, in process: each answers in its API's shapes, from the
same service, store and decisions as the service's own routes, and refuses in its API's error
shape whatever refused. Real photos through the real pipeline; tests/test_compat_clients.py
drives the same routes with the APIs' own client libraries."""

import base64
import io
import json

import pytest
import requests
from werkzeug.test import Client

import api
from conftest import face, no_face_image
from recognizer import timing, verification
from recognizer.compat import compreface, deepstack

READ, ADMIN = "r-compat-key", "a-compat-key"
OBAMA, OBAMA_AGAIN = "people/obama/obama.jpg", "people/obama/obama2.jpg"
BIDEN = "people/biden/biden.jpg"
STRANGER = "people/rose_leslie/rose_leslie_img1.jpg"  # nobody enrolled here
TWO = "misc/two_people.jpg"  # Barack Obama (the larger face), then Joe Biden
RECOGNIZE, FACES = "/api/v1/recognition/recognize", "/api/v1/recognition/faces"
SUBJECTS, DETECT = "/api/v1/recognition/subjects", "/api/v1/detection/detect"
VERIFY = "/api/v1/verification/verify"


def client() -> Client:
    return Client(api.__hug_wsgi__)


def photo(relative: str) -> bytes:
    return face(relative).read_bytes()


def send(method: str, path: str, files: dict | None = None, query: dict | None = None,
         key: str | None = None, **fields):
    """A request as the clients send it: images as multipart files (requests builds the body),
    other fields beside them, the key (if any) in X-API-Key."""
    headers = {"X-API-Key": key} if key else {}
    if files is None and not fields:
        return client().open(path, method=method, query_string=query, headers=headers)
    prepared = requests.Request(method, "http://localhost/", data=fields, files={
        name: ("photo.jpg", data, "image/jpeg") for name, data in (files or {}).items()}).prepare()
    return client().open(path, method=method, query_string=query, data=prepared.body,
                         content_type=prepared.headers["Content-Type"], headers=headers)


def add_face(subject: str, relative: str, key: str | None = None):
    return send("POST", FACES, {"file": photo(relative)}, {"subject": subject}, key)


def recognised(relative: str, key: str | None = None) -> list[dict]:
    """The service's own /recognize of a photo."""
    response = client().post("/recognize", data=photo(relative), content_type="image/jpeg",
                             query_string={"top_k": 2}, headers={"X-API-Key": key} if key else {})
    return response.get_json()["faces"]


def as_compreface(found: dict) -> dict:
    box = found["box"]
    return {"probability": 1.0, "x_max": box["right"], "y_max": box["bottom"],
            "x_min": box["left"], "y_min": box["top"]}


@pytest.fixture
def two(env):
    """Barack Obama and Joe Biden, enrolled through CompreFace's surface."""
    for subject, relative in (("Barack Obama", OBAMA), ("Joe Biden", BIDEN)):
        assert add_face(subject, relative).status_code == 201


@pytest.fixture
def keyed(reconfigure):
    reconfigure(api_keys=f"{READ}:read,{ADMIN}:admin")


# -- CompreFace: recognition --------------------------------------------------------------------


def test_recognize_answers_the_services_own_decision_in_compreface_shapes(two):
    response = send("POST", RECOGNIZE, {"file": photo(TWO)}, {"prediction_count": "2"})
    assert response.status_code == 200, response.get_json()
    result = response.get_json()["result"]
    own = recognised(TWO)
    assert [found["box"] for found in result] == [as_compreface(found) for found in own]
    for found, decided in zip(result, own, strict=True):
        named, other = found["subjects"]
        assert named["subject"] == decided["name"]  # the service's decision comes first
        assert named["similarity"] == verification.probability(decided["distance"]) > 0.9
        assert other["similarity"] <= compreface.NOT_NAMED_CEILING
    assert set(response.get_json()) == {"result"}  # no status, no plugins asked for


def test_an_unknown_face_still_lists_its_nearest_subject_below_the_ceiling(two):
    (own,) = recognised(STRANGER)
    assert own["name"] is None
    response = send("POST", RECOGNIZE, {"file": photo(STRANGER)})
    ((found,),) = [[face["subjects"] for face in response.get_json()["result"]]]
    (nearest,) = found  # prediction_count is 1 by default
    assert nearest["subject"] == own["candidates"][0]["name"]
    assert nearest["similarity"] == min(
        verification.probability(own["candidates"][0]["distance"]), 0.5)


@pytest.mark.parametrize("distance, named, similarity", [
    (0.3, True, 0.999), (0.3, False, 0.5), (0.58, True, 0.704), (0.58, False, 0.5),
    (0.62, False, 0.095), (0.9, True, 0.001)])
def test_similarity_is_verifys_probability_capped_for_a_subject_not_named(distance, named,
                                                                          similarity):
    assert compreface.similarity(distance, named) == similarity


def test_a_double_take_request_gets_the_fields_double_take_reads(two, keyed):
    """Double Take: POST ...recognize?det_prob_threshold=0.8&face_plugins= with x-api-key and
    a multipart file; it reads result[].subjects[].subject/similarity and result[].box."""
    response = client().post(
        RECOGNIZE + "?det_prob_threshold=0.8&face_plugins=", headers={"x-api-key": READ},
        data={"file": (io.BytesIO(photo(TWO)), "frame.jpg", "image/jpeg")})
    assert response.status_code == 200, response.get_json()
    result = response.get_json()["result"]
    assert [found["subjects"][0]["subject"] for found in result] == ["Barack Obama", "Joe Biden"]
    for found in result:
        assert 0.9 < found["subjects"][0]["similarity"] <= 1
        box = found["box"]
        assert set(box) == {"x_min", "y_min", "x_max", "y_max", "probability"}
        assert 0 <= box["x_min"] < box["x_max"] <= 1126 and 0 <= box["y_min"] < box["y_max"] <= 661
        assert box["probability"] >= 0.8


def test_status_times_each_stage_and_plugins_the_service_lacks_are_named_as_ignored(two):
    response = send("POST", RECOGNIZE, {"file": photo(TWO)},
                    {"status": "True", "face_plugins": "age,gender", "limit": "1"})
    body = response.get_json()
    (only,) = body["result"]  # limit=1: the largest face
    assert only["subjects"][0]["subject"] == "Barack Obama"
    assert set(only["execution_time"]) == {"decoder", "detector", "calculator", "matcher"}
    assert all(ms > 0 for ms in only["execution_time"].values())
    assert body["plugins_versions"] == {"detector": "dlib.hog_frontal_face_detector",
                                        "calculator": "dlib.face_recognition_resnet_model_v1"}
    assert body["ignored_face_plugins"] == ["age", "gender"]


def test_stages_are_timed_only_while_a_caller_collects():
    with timing.stage("detect"):
        pass
    with timing.collect() as spent:
        with timing.stage("detect"):
            pass
        with timing.stage("detect"):
            pass
    assert list(spent) == ["detect"] and spent["detect"] >= 0


def test_an_image_as_base64_in_json_is_read_as_a_file(two):
    response = client().post(RECOGNIZE, json={"file": base64.b64encode(photo(BIDEN)).decode()})
    assert response.get_json()["result"][0]["subjects"][0]["subject"] == "Joe Biden"
    verified = client().post(VERIFY, json={
        "source_image": base64.b64encode(photo(OBAMA)).decode(),
        "target_image": base64.b64encode(photo(OBAMA_AGAIN)).decode()})
    assert verified.get_json()["result"][0]["face_matches"][0]["similarity"] > 0.9


@pytest.mark.parametrize("files, query, status, code, message", [
    ({"file": no_face_image()}, {}, 400, 28, "file: no_face"),
    ({"file": b"not an image"}, {}, 400, 21, "file: unsupported_image"),
    ({}, {}, 400, 34, "file: missing_image"),
    ({"file": b"x"}, {"prediction_count": "0"}, 400, 26, "prediction_count: out_of_range"),
    ({"file": b"x"}, {"limit": "-1"}, 400, 26, "limit: out_of_range"),
    ({"file": b"x"}, {"det_prob_threshold": "1.5"}, 400, 26, "det_prob_threshold: out_of_range"),
    ({"file": b"x"}, {"face_plugins": "age gender"}, 400, 26, "face_plugins: invalid_value"),
    ({"file": b"x"}, {"status": "maybe"}, 400, 26, "status: invalid_value"),
    ({"file": b"x"}, {"detect_face": "true"}, 400, 26, "detect_face: unknown_parameter"),
])
def test_refusals_are_compreface_errors_naming_field_and_code(env, files, query, status, code,
                                                              message):
    response = send("POST", RECOGNIZE, files or None, query)
    body = response.get_json()
    assert (response.status_code, body["code"]) == (status, code), body
    assert set(body) == {"message", "code"} and body["message"].startswith(message)


# -- CompreFace: the face collection and subjects ------------------------------------------------


def test_faces_are_added_listed_a_page_at_a_time_and_deleted_in_the_one_store(env):
    added = [add_face("Barack Obama", OBAMA), add_face("Joe Biden", BIDEN),
             add_face("Barack Obama", OBAMA_AGAIN)]
    assert [response.status_code for response in added] == [201] * 3
    ids = [response.get_json()["image_id"] for response in added]
    assert added[0].get_json() == {"image_id": ids[0], "subject": "Barack Obama"}
    again = add_face("Barack Obama", OBAMA)  # the same image: nothing added
    assert (again.status_code, again.get_json()["image_id"]) == (200, ids[0])
    first = client().get(FACES, query_string={"size": 2}).get_json()
    assert first == {"faces": [{"image_id": ids[0], "subject": "Barack Obama"},
                               {"image_id": ids[1], "subject": "Joe Biden"}],
                     "page_number": 0, "page_size": 2, "total_pages": 2, "total_elements": 3}
    second = client().get(FACES, query_string={"size": 2, "page": 1}).get_json()
    assert [found["image_id"] for found in second["faces"]] == [ids[2]]
    obamas = client().get(FACES, query_string={"subject": "Barack Obama"}).get_json()
    assert [found["image_id"] for found in obamas["faces"]] == [ids[0], ids[2]]
    assert client().get("/people").get_json()["total"] == 2  # the service's own list
    deleted = send("DELETE", f"{FACES}/{ids[1]}")
    assert deleted.get_json() == {"image_id": ids[1], "subject": "Joe Biden"}
    assert send("DELETE", FACES, query={"subject": "Barack Obama"}).get_json() == {"deleted": 2}
    assert client().get("/health").get_json()["face_count"] == 0
    gone = send("DELETE", f"{FACES}/{ids[1]}")
    assert (gone.status_code, gone.get_json()["code"]) == (404, 11)
    nobody = send("DELETE", FACES, query={"subject": "Barack Obama"})
    assert (nobody.status_code, nobody.get_json()["code"]) == (404, 42)


def test_adding_a_face_refuses_what_the_service_refuses(env):
    for relative, code, message in ((TWO, 31, "file: multiple_faces"),
                                    (None, 28, "file: no_face")):
        data = no_face_image() if relative is None else photo(relative)
        response = send("POST", FACES, {"file": data}, {"subject": "Ada"})
        assert (response.status_code, response.get_json()) == (
            400, {"message": message, "code": code})
    unnamed = send("POST", FACES, {"file": photo(OBAMA)}, {"subject": "\u200b"})
    assert unnamed.get_json()["message"].startswith("subject: invalid_name")
    missing = send("POST", FACES, {"file": photo(OBAMA)})
    assert missing.get_json() == {"message": "subject: missing_parameter", "code": 33}
    assert client().get("/health").get_json()["face_count"] == 0


def test_subjects_are_listed_renamed_merged_and_deleted(two):
    assert client().get(SUBJECTS).get_json() == {"subjects": ["Barack Obama", "Joe Biden"]}
    new = client().post(SUBJECTS, json={"subject": "Kamala Harris"})
    assert (new.status_code, new.get_json()) == (201, {"subject": "Kamala Harris"})
    existing = client().post(SUBJECTS, json={"subject": "Joe Biden"})
    assert (existing.status_code, existing.get_json()) == (200, {"subject": "Joe Biden"})
    assert client().get(SUBJECTS).get_json()["subjects"] == ["Barack Obama", "Joe Biden"]
    renamed = client().put(f"{SUBJECTS}/Joe Biden", json={"subject": "Joseph R. Biden",
                                                         "api_endpoint": "Joe Biden"})
    assert renamed.get_json() == {"updated": True}
    assert recognised(BIDEN)[0]["name"] == "Joseph R. Biden"
    merged = client().put(f"{SUBJECTS}/Joseph R. Biden", json={"subject": "Barack Obama"})
    assert merged.get_json() == {"updated": True}
    assert client().get(SUBJECTS).get_json() == {"subjects": ["Barack Obama"]}
    assert client().delete(f"{SUBJECTS}/Barack Obama").get_json() == {"subject": "Barack Obama"}
    for response in (client().delete(f"{SUBJECTS}/Barack Obama"),
                     client().put(f"{SUBJECTS}/Nobody", json={"subject": "Somebody"})):
        assert (response.status_code, response.get_json()["code"]) == (404, 42)
    assert client().get("/health").get_json()["person_count"] == 0


# -- CompreFace: verification and detection ------------------------------------------------------


def test_verify_gives_verifys_probability_as_the_similarity(env):
    for other in (OBAMA_AGAIN, BIDEN):
        response = send("POST", VERIFY, {"source_image": photo(OBAMA),
                                         "target_image": photo(other)})
        (found,) = response.get_json()["result"]
        own = client().post("/verify", data={
            "image": (io.BytesIO(photo(OBAMA)), "a.jpg"),
            "other_image": (io.BytesIO(photo(other)), "b.jpg")}).get_json()
        assert found["source_image_face"] == {"box": as_compreface(own["face"])}
        assert found["face_matches"] == [{"box": as_compreface(own["other"]),
                                          "similarity": own["probability"]}]
    assert own["probability"] < 0.1  # (Joe Biden)
    largest = send("POST", VERIFY, {"source_image": photo(OBAMA), "target_image": photo(TWO)})
    assert largest.get_json()["result"][0]["face_matches"][0]["similarity"] > 0.9
    blank = send("POST", VERIFY, {"source_image": photo(OBAMA), "target_image": no_face_image()})
    assert blank.get_json() == {"message": "target_image: no_face", "code": 28}


def test_detect_gives_the_services_boxes(env):
    response = send("POST", DETECT, {"file": photo(TWO)}, {"status": "true"})
    body = response.get_json()
    own = client().post("/detect", data=photo(TWO), content_type="image/jpeg").get_json()
    assert [found["box"] for found in body["result"]] == [as_compreface(f) for f in own["faces"]]
    assert set(body["result"][0]["execution_time"]) == {"decoder", "detector"}
    blank = send("POST", DETECT, {"file": no_face_image()})
    assert (blank.status_code, blank.get_json()["code"]) == (400, 28)


# -- keys, and refusals made before any route runs ------------------------------------------------


def test_keys_and_scopes_apply_with_compreface_error_bodies(two, keyed):
    refused = [(send("GET", SUBJECTS), 401, 20, "api_key: missing_api_key"),
               (send("GET", SUBJECTS, key="wrong"), 401, 0, "api_key: invalid_api_key"),
               (add_face("Ada", OBAMA, key=READ), 403, 0, "api_key: insufficient_scope"),
               (send("GET", SUBJECTS, query={"api_key": READ}, key=READ), 401, 0,
                "api_key: api_key_in_query")]
    for response, status, code, message in refused:
        assert (response.status_code, response.get_json()) == (
            status, {"message": message, "code": code})
    assert send("GET", SUBJECTS, key=READ).status_code == 200
    assert add_face("Ada", OBAMA_AGAIN, key=ADMIN).status_code == 201


def test_refusals_before_any_route_are_in_the_surfaces_shapes_too(reconfigure):
    reconfigure(max_image_bytes=1000)
    huge = client().post(RECOGNIZE, data=b"x", content_type="image/jpeg",
                         environ_overrides={"CONTENT_LENGTH": str(10**8)})
    assert huge.status_code == 413 and huge.get_json()["code"] == 0
    assert huge.get_json()["message"].startswith("image: image_too_large")
    wrong_method = client().get(RECOGNIZE)
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    assert wrong_method.get_json() == {"message": "method: method_not_allowed", "code": 0}
    nowhere = client().get("/api/v1/recognition/faces/1/img")
    assert (nowhere.status_code, nowhere.get_json()) == (
        404, {"message": "path: not_found", "code": 0})
    deep = client().get("/v1/vision/face/recognize")
    assert (deep.status_code, deep.get_json()) == (
        405, {"success": False, "error": "method: method_not_allowed"})
    text = client().post(RECOGNIZE, data="hello", content_type="text/plain")
    assert text.status_code == 415
    assert text.get_json()["message"].startswith("body: unsupported_media_type")
    assert client().get("/nowhere").get_json() == {"errors": {"path": "not_found"}}  # ours


# -- DeepStack -----------------------------------------------------------------------------------


def deepstack_call(path: str, image: bytes | None = None, key: str | None = None, **fields):
    """As deepstack-python sends it: a multipart form with the image (if any), the fields and
    api_key."""
    fields |= {"api_key": key} if key is not None else {}
    parts = {**({"image": ("image", image)} if image is not None else {}),
             **{name: (None, value) for name, value in fields.items()}}
    if not parts:
        return client().post("/v1/vision/face" + path)
    prepared = requests.Request("POST", "http://localhost/", files=parts).prepare()
    return client().post("/v1/vision/face" + path, data=prepared.body,
                         content_type=prepared.headers["Content-Type"])


def test_deepstack_registers_recognizes_lists_and_deletes_with_the_key_in_the_form(keyed):
    registered = deepstack_call("/register", photo(OBAMA), ADMIN, userid="Barack Obama")
    assert registered.get_json() == {"success": True, "message": "face added"}
    deepstack_call("/register", photo(BIDEN), ADMIN, userid="Joe Biden")
    response = deepstack_call("/recognize", photo(TWO), READ, min_confidence="0.45")
    body = response.get_json()
    assert body["success"] is True and isinstance(body["duration"], int)
    own = recognised(TWO, READ)
    assert [(p["userid"], p["x_min"], p["y_min"], p["x_max"], p["y_max"])
            for p in body["predictions"]] == [
        (f["name"], f["box"]["left"], f["box"]["top"], f["box"]["right"], f["box"]["bottom"])
        for f in own]
    assert [p["confidence"] for p in body["predictions"]] == [
        verification.probability(f["distance"]) for f in own]
    listed = deepstack_call("/list", key=READ)
    assert listed.get_json() == {"success": True, "faces": ["Barack Obama", "Joe Biden"]}
    assert deepstack_call("/delete", key=ADMIN, userid="Joe Biden").get_json() == {
        "success": True}
    assert deepstack_call("/list", key=READ).get_json()["faces"] == ["Barack Obama"]
    gone = deepstack_call("/delete", key=ADMIN, userid="Joe Biden")
    assert (gone.status_code, gone.get_json()) == (
        404, {"success": False, "error": "userid: unknown_person"})


def test_deepstack_names_a_face_only_at_or_above_min_confidence(two):
    named = deepstack_call("/recognize", photo(BIDEN), min_confidence="0.9").get_json()
    ((prediction,),) = [named["predictions"]]
    assert prediction["userid"] == "Joe Biden" and 0.9 <= prediction["confidence"] < 1
    strict = deepstack_call("/recognize", photo(BIDEN), min_confidence="1").get_json()
    assert [(p["userid"], p["confidence"]) for p in strict["predictions"]] == [("unknown", 0)]
    stranger = deepstack_call("/recognize", photo(STRANGER)).get_json()
    assert [(p["userid"], p["confidence"]) for p in stranger["predictions"]] == [("unknown", 0)]
    blank = deepstack_call("/recognize", no_face_image()).get_json()
    assert blank["predictions"] == [] and blank["success"] is True
    detected = deepstack_call("", photo(TWO)).get_json()
    own = client().post("/detect", data=photo(TWO), content_type="image/jpeg").get_json()
    assert [deepstack.box(f["box"]) for f in own["faces"]] == [
        {k: p[k] for k in ("y_min", "x_min", "y_max", "x_max")} for p in detected["predictions"]]


def test_deepstack_keys_come_from_the_form_or_the_header_never_the_query(two, keyed):
    checks = [
        (deepstack_call("/list"), 401, "api_key: missing_api_key"),
        (deepstack_call("/list", key="wrong"), 401, "api_key: invalid_api_key"),
        (deepstack_call("/register", photo(OBAMA_AGAIN), READ, userid="Ada"), 403,
         "api_key: insufficient_scope"),
        # the key is checked first: a caller without one learns nothing of the rest
        (deepstack_call("/recognize", b"x", min_confidence="7"), 401,
         "api_key: missing_api_key"),
        (deepstack_call("/recognize", b"x", READ, min_confidence="7"), 400,
         "min_confidence: out_of_range"),
        (send("POST", "/v1/vision/face/list", query={"api_key": READ}, key=READ, x="1"), 401,
         "api_key: api_key_in_query"),
        (deepstack_call("/register", photo(TWO), ADMIN, userid="Ada"), 400,
         "image: multiple_faces"),
        (deepstack_call("/register", photo(OBAMA), ADMIN), 400, "userid: missing_parameter"),
        (deepstack_call("/register", None, ADMIN, userid="Ada"), 400, "image: missing_image"),
    ]
    for response, status, error in checks:
        body = response.get_json()
        assert (response.status_code, body["success"]) == (status, False), body
        assert body["error"].startswith(error) and set(body) == {"success", "error"}
    not_a_form = client().post("/v1/vision/face/list", data=b"{}", content_type="text/plain")
    assert not_a_form.status_code == 401  # no header, and no form that could hold a key
    header = send("POST", "/v1/vision/face/list", key=READ, x="")
    assert header.get_json()["faces"] == ["Barack Obama", "Joe Biden"]
    assert client().get("/health").get_json() == {"status": "ok"}  # nothing else was added


def test_compreface_and_deepstack_see_one_store(two):
    assert deepstack_call("/list").get_json()["faces"] == ["Barack Obama", "Joe Biden"]
    deepstack_call("/delete", userid="Joe Biden")
    assert client().get(SUBJECTS).get_json()["subjects"] == ["Barack Obama"]
    assert json.loads(client().get("/people").get_data())["total"] == 1
