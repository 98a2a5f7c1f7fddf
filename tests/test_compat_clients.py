"""The CompreFace and DeepStack surfaces driven by those APIs' own client libraries
(compreface-sdk, deepstack-python, pinned in requirements.txt) and by a Double Take-shaped
request, against a real server (gunicorn, with API keys) on loopback, on real photos."""

import os
import sys

import pytest
import requests
from compreface import CompreFace
from deepstack.core import DeepstackException, DeepstackFace

from conftest import ROOT, face, free_port, fresh_store, no_face_image
from test_server import server

READ, ADMIN = "read-compat-0123456789", "admin-compat-9876543210"
OBAMA, OBAMA_AGAIN = "people/obama/obama.jpg", "people/obama/obama2.jpg"
BIDEN, BIDEN_AGAIN = "people/biden/biden.jpg", "people/biden/biden2.jpg"
TWO, STRANGER = "misc/two_people.jpg", "people/rose_leslie/rose_leslie_img1.jpg"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """gunicorn with one worker, API keys and a store of its own: its base URL."""
    folder = tmp_path_factory.mktemp("compat")
    with fresh_store(folder) as location:
        port = free_port()
        env = {"FACEREC_STORE": location, "FACEREC_API_KEYS": f"{READ}:read,{ADMIN}:admin",
               "FACEREC_RATE_LIMIT": "0", "FACEREC_RATE_STATE": str(folder / "rates.sqlite3"),
               "PYTHONWARNINGS": "ignore"}
        env |= {key: "" for key in os.environ if key.startswith("FACEREC_")
                and not key.startswith("FACEREC_TEST_") and key not in env}
        command = [f"{os.path.dirname(sys.executable)}/gunicorn", "-w", "1", "--chdir",
                   str(ROOT), "-b", f"127.0.0.1:{port}", "api:__hug_wsgi__"]
        with server(command, env, port) as (url, _):
            yield url


def compreface(base: str) -> CompreFace:
    host, port = base.rsplit(":", 1)
    return CompreFace(host, port)


def test_compreface_sdk_adds_recognizes_lists_verifies_detects_and_deletes(base):
    admin = compreface(base).init_face_recognition(ADMIN)
    subjects = admin.get_subjects()
    assert subjects.add("Joe Biden") == {"subject": "Joe Biden"}
    collection = admin.get_face_collection()
    added = [collection.add(image_path=str(face(OBAMA)), subject="Barack Obama"),
             collection.add(image_path=face(BIDEN).read_bytes(), subject="Joe Biden"),
             collection.add(image_path=str(face(OBAMA_AGAIN)), subject="Barack Obama")]
    assert [found["subject"] for found in added] == ["Barack Obama", "Joe Biden", "Barack Obama"]
    assert subjects.list() == {"subjects": ["Barack Obama", "Joe Biden"]}
    listed = collection.list()
    assert [(found["image_id"], found["subject"]) for found in listed["faces"]] == [
        (found["image_id"], found["subject"]) for found in added]
    assert listed["total_elements"] == 3

    reader = compreface(base).init_face_recognition(READ)
    (found,) = reader.recognize(image_path=str(face(BIDEN_AGAIN)))["result"]
    assert found["subjects"][0]["subject"] == "Joe Biden"
    assert found["subjects"][0]["similarity"] > 0.9
    both = reader.recognize(image_path=str(face(TWO)), options={
        "prediction_count": 2, "det_prob_threshold": 0.8, "status": True,
        "face_plugins": "age,gender"})
    assert [f["subjects"][0]["subject"] for f in both["result"]] == ["Barack Obama", "Joe Biden"]
    assert all(f["subjects"][1]["similarity"] <= 0.5 for f in both["result"])
    assert "detector" in both["result"][0]["execution_time"] and "plugins_versions" in both
    assert both["ignored_face_plugins"] == ["age", "gender"]
    (stranger,) = reader.recognize(image_path=str(face(STRANGER)))["result"]
    assert stranger["subjects"][0]["similarity"] <= 0.5  # listed, low
    refused = compreface(base).init_face_recognition(READ).get_face_collection()
    assert refused.add(image_path=str(face(OBAMA)), subject="X")["message"].startswith(
        "api_key: insufficient_scope")

    verification = compreface(base).init_face_verification(READ)
    same = verification.verify(str(face(OBAMA)), str(face(OBAMA_AGAIN)))["result"][0]
    other = verification.verify(str(face(OBAMA)), str(face(BIDEN)))["result"][0]
    assert same["face_matches"][0]["similarity"] > 0.9 > 0.1 > other["face_matches"][0][
        "similarity"]
    detected = compreface(base).init_face_detection(READ).detect(str(face(TWO)))
    assert len(detected["result"]) == 2 and detected["result"][0]["box"]["probability"] == 1.0

    assert subjects.update("Joe Biden", "Joseph Biden") == {"updated": True}
    assert collection.delete(added[2]["image_id"]) == {"image_id": added[2]["image_id"],
                                                       "subject": "Barack Obama"}
    assert collection.delete_all("Barack Obama") == {"deleted": 1}
    assert subjects.delete("Joseph Biden") == {"subject": "Joseph Biden"}
    assert subjects.list() == {"subjects": []}
    assert collection.delete(added[0]["image_id"])["code"] == 11  # gone: 404, image not found


def test_a_double_take_request_gets_what_double_take_reads(base):
    headers = {"x-api-key": ADMIN}
    with open(face(OBAMA), "rb") as photo:
        trained = requests.post(f"{base}/api/v1/recognition/faces", params={"subject": "obama"},
                                files={"file": photo}, headers=headers)
    assert trained.status_code == 201
    with open(face(TWO), "rb") as frame:
        response = requests.post(
            f"{base}/api/v1/recognition/recognize?det_prob_threshold=0.8&face_plugins=",
            files={"file": ("frame.jpg", frame, "image/jpeg")}, headers={"x-api-key": READ})
    assert response.status_code == 200, response.text
    obama, biden = response.json()["result"]
    assert obama["subjects"][0]["subject"] == "obama" and obama["subjects"][0]["similarity"] > 0.9
    assert biden["subjects"][0]["subject"] == "obama" and biden["subjects"][0]["similarity"] <= 0.5
    for found in (obama, biden):
        box = found["box"]
        assert box["probability"] >= 0.8 and 0 <= box["x_min"] < box["x_max"] <= 1126
        assert 0 <= box["y_min"] < box["y_max"] <= 661
    blank = requests.post(f"{base}/api/v1/recognition/recognize", headers={"x-api-key": READ},
                          files={"file": ("frame.png", no_face_image(), "image/png")})
    assert (blank.status_code, blank.json()["code"]) == (400, 28)
    removed = requests.delete(f"{base}/api/v1/recognition/faces", params={"subject": "obama"},
                              headers=headers)
    assert removed.json() == {"deleted": 1}


def test_deepstack_python_registers_recognizes_lists_and_detects(base):
    port = int(base.rsplit(":", 1)[1])
    admin = DeepstackFace(ip="127.0.0.1", port=port, api_key=ADMIN)
    reader = DeepstackFace(ip="127.0.0.1", port=port, api_key=READ)
    assert admin.register("Barack Obama", face(OBAMA).read_bytes()) == "face added"
    assert admin.register("Joe Biden", face(BIDEN).read_bytes()) == "face added"
    with pytest.raises(DeepstackException, match="403"):
        reader.register("Nobody", face(OBAMA_AGAIN).read_bytes())
    assert reader.get_registered_faces() == ["Barack Obama", "Joe Biden"]
    predictions = reader.recognize(face(TWO).read_bytes())
    assert [p["userid"] for p in predictions] == ["Barack Obama", "Joe Biden"]
    assert all(0.45 <= p["confidence"] <= 1 for p in predictions)
    (unknown,) = reader.recognize(face(STRANGER).read_bytes())
    assert (unknown["userid"], unknown["confidence"]) == ("unknown", 0)
    detected = reader.detect(face(TWO).read_bytes())
    assert [(p["x_min"], p["y_min"]) for p in detected] == [
        (p["x_min"], p["y_min"]) for p in predictions]
    stranger = DeepstackFace(ip="127.0.0.1", port=port, api_key="wrong")
    with pytest.raises(DeepstackException, match="401"):
        stranger.recognize(face(TWO).read_bytes())
    deleted = requests.post(f"{base}/v1/vision/face/delete",
                            data={"userid": "Joe Biden", "api_key": ADMIN})
    assert deleted.json() == {"success": True}
    assert reader.get_registered_faces() == ["Barack Obama"]
