"""The hug CLI: the same functions as over HTTP, plus local files and build from folders."""

import json
import os
import shutil
import subprocess
import sys

import hug
import pytest

import api
from conftest import ROOT, command, face, no_face_image
from recognizer.errors import InvalidParameter, UnknownPerson, UnusableFace

pytestmark = pytest.mark.store  # run on both store backends


@pytest.fixture
def tree(tmp_path):
    """known_faces/ with 3 people, plus a file without a face."""
    root = tmp_path / "known_faces"
    for person, photo in (("obama", "people/obama/obama.jpg"), ("biden", "people/biden/biden.jpg"),
                          ("Kit Harington", "people/kit_harington/john2.jpeg")):
        (root / person).mkdir(parents=True)
        shutil.copy(face(photo), root / person)
    (root / "obama" / "landscape.png").write_bytes(no_face_image())
    return root


def test_enroll_recognize_people_and_forget(env):
    enrolled = hug.test.cli("enroll", "obama", str(face("people/obama/obama.jpg")), module=api)
    assert enrolled == {"name": "obama", "face_id": 1, "face_count": 1, "warnings": [],
                        "duplicate": False}
    result = hug.test.cli("recognize", str(face("people/obama/obama2.jpg")), module=api,
                          top_k=2, model="hog")  # (hug.test.cli drops values equal to 0 or 1)
    assert [f["name"] for f in result["faces"]] == ["obama"]
    assert result["image"] == {"width": 626, "height": 1200}
    assert hug.test.cli("people", module=api) == {"people": [{"name": "obama", "face_count": 1}],
                                                  "total": 1, "page": 1, "size": 100, "pages": 1}
    assert hug.test.cli("forget", "obama", module=api) == {"name": "obama", "deleted_faces": 1}
    assert isinstance(hug.test.cli("forget", "obama", module=api), UnknownPerson)


def test_enroll_face_count_errors_and_largest_face(env):
    two = str(face("misc/two_people.jpg"))
    error = hug.test.cli("enroll", "x", two, module=api)
    assert isinstance(error, UnusableFace) and error.message == "multiple_faces"
    assert hug.test.cli("enroll", "x", two, module=api, largest_face=True)["face_count"] == 1


def test_a_local_path_is_a_cli_thing_only(env, tmp_path):
    missing = hug.test.cli("recognize", str(tmp_path / "nope.jpg"), module=api)
    assert isinstance(missing, InvalidParameter) and missing.field == "path"
    assert missing.message == "no_such_file"
    folder = hug.test.cli("recognize", str(tmp_path), module=api)
    assert isinstance(folder, InvalidParameter) and folder.message == "not_a_file"


def test_build_enrols_everyone_and_reports_each_file(env, tree):
    report, code = command("build", str(tree))
    assert code == 3  # a file was refused (no face): the report says which, the status that
    outcomes = {entry["file"]: entry["outcome"] for entry in report["files"]}
    assert outcomes == {
        "Kit Harington/john2.jpeg": "enrolled", "biden/biden.jpg": "enrolled",
        "obama/landscape.png": "no_face", "obama/obama.jpg": "enrolled",
    }
    assert report["summary"] == {"enrolled": 3, "no_face": 1}
    assert report["person_count"] == 3
    people = hug.test.cli("people", module=api)["people"]
    assert [p["name"] for p in people] == ["Kit Harington", "biden", "obama"]
    recognised = hug.test.cli("recognize", str(face("people/obama/obama2.jpg")), module=api)
    assert recognised["faces"][0]["name"] == "obama"


def test_a_second_build_adds_nothing(env, tree):
    command("build", str(tree))[0]
    before = hug.test.get(api, "health").data
    again, code = command("build", str(tree))
    assert again["summary"] == {"unchanged": 3, "no_face": 1}  # the refusal, with its reason
    assert code == 3
    assert hug.test.get(api, "health").data == before


def test_build_replaces_a_changed_file_and_adds_a_new_one(env, tree):
    command("build", str(tree))[0]
    shutil.copy(face("people/obama/obama1.jpg"), tree / "obama" / "obama.jpg")
    shutil.copy(face("people/biden/biden2.jpg"), tree / "biden")
    report = command("build", str(tree))[0]
    assert report["summary"] == {"enrolled": 2, "no_face": 1, "unchanged": 2}
    assert hug.test.get(api, "health").data == {"status": "ok", "person_count": 3, "face_count": 4}


def test_build_reports_bad_files_and_names_and_stays_in_the_tree(env, tree, tmp_path):
    (tree / "biden" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    shutil.copy(face("misc/two_people.jpg"), tree / "biden" / "group.jpg")
    (tree / "bad:name").mkdir()
    shutil.copy(face("people/obama/obama.jpg"), tree / "bad:name")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(face("people/biden/biden.jpg"), outside / "secret.jpg")
    (tree / "linked").symlink_to(outside)
    (tree / "obama" / "escape.jpg").symlink_to(outside / "secret.jpg")
    (tree / "notes.txt").write_text("not a folder")
    report = command("build", str(tree))[0]
    outcomes = {entry["file"]: entry["outcome"] for entry in report["files"]}
    assert outcomes["biden/broken.jpg"] == "unreadable"
    assert outcomes["biden/group.jpg"] == "multiple_faces"
    assert outcomes["bad:name/obama.jpg"] == "invalid_name"
    assert outcomes["obama/escape.jpg"] == "outside_tree"
    assert not any(name.startswith("linked/") for name in outcomes)
    people = [p["name"] for p in hug.test.cli("people", module=api)["people"]]
    assert people == ["Kit Harington", "biden", "obama"]


def test_build_defaults_to_known_faces_dir(env, tree):
    env.setenv("FACEREC_KNOWN_FACES_DIR", str(tree))
    api.get_service.cache_clear()
    assert command("build")[0]["summary"]["enrolled"] == 3
    assert isinstance(command("build", str(tree), str(tree))[0], InvalidParameter)


def run_cli(*args, env_vars):
    return subprocess.run([sys.executable, "-m", "hug", "-f", "api.py", "-c", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=os.environ | env_vars)


def test_the_real_command_line(env, tree, store_location):
    store = {"FACEREC_STORE": store_location, "PYTHONWARNINGS": "ignore"}
    built = run_cli("build", str(tree), env_vars=store)
    assert built.returncode == 3, built.stderr  # the report on stdout, and a file refused
    assert json.loads(built.stdout)["summary"] == {"enrolled": 3, "no_face": 1}
    (tree / "obama" / "landscape.png").unlink()
    clean = run_cli("build", str(tree), env_vars=store)
    assert clean.returncode == 0 and json.loads(clean.stdout)["summary"] == {"unchanged": 3}
    assert "build" in built.stderr  # the progress bar goes to stderr, the report to stdout
    two = run_cli("enroll", "Ada", str(face("misc/two_people.jpg")), env_vars=store)
    assert two.returncode != 0
    last_line = two.stderr.strip().splitlines()[-1]
    assert json.loads(last_line) == {"errors": {"image": "multiple_faces"}}
    largest = run_cli("enroll", "Ada", str(face("misc/two_people.jpg")), "--largest-face",
                      env_vars=store)
    assert largest.returncode == 0 and json.loads(largest.stdout)["name"] == "Ada"
    bad_name = run_cli("enroll", "../x", str(face("people/obama/obama.jpg")), env_vars=store)
    assert bad_name.returncode != 0 and "invalid_name" in bad_name.stderr
    bad_config = run_cli("people", env_vars=store | {"FACEREC_TOLERANCE": "7"})
    assert bad_config.returncode != 0 and "FACEREC_TOLERANCE" in bad_config.stderr
    assert "Traceback" not in two.stderr + bad_name.stderr + bad_config.stderr
