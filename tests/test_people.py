"""People management over HTTP and the CLI: the paginated list, a person's faces, deleting one
face, renaming and merging, and who may do which. Faces that decide an outcome are real photos
enrolled through the real pipeline; lists whose faces do not matter reuse real encodings."""

import hashlib
import json
import os
import subprocess
import sys
import unicodedata
from datetime import datetime
from urllib.parse import quote

import falcon
import hug
import pytest

import api
from conftest import ROOT, face
from recognizer import faces, images
from recognizer.errors import UnknownFace, UnknownPerson
from recognizer.results import FaceForgotten

pytestmark = pytest.mark.store  # run on both store backends

READ, ADMIN = "r-people-key", "a-people-key"


@pytest.fixture(scope="module")
def encodings():
    """Real encodings of three photos, computed once."""
    found = []
    for photo in ("people/obama/obama.jpg", "people/biden/biden.jpg",
                  "people/rose_leslie/rose_leslie_img1.jpg"):
        pixels = images.decode(face(photo).read_bytes(), 40_000_000)
        found += faces.encode(pixels, faces.detect(pixels)[:1])
    return found


def store():
    return api.get_service().store


def add(encodings, name, count=1):
    """Give a person count faces (real encodings; who they look like does not matter here)."""
    return [store().add_face(name, encodings[i % 3], f"sha256:{name}-{i}")[0]
            for i in range(count)]


def enrol(name, photo):
    """Enrol a real photo through the CLI; returns the face id."""
    enrolled = hug.test.cli("enroll", name, str(face(photo)), module=api)
    assert isinstance(enrolled, dict), enrolled
    return enrolled["face_id"]


def recognised(photo):
    """The one face in a real photo: (name, the candidates' names)."""
    response = hug.test.post(api, "recognize", body=face(photo).read_bytes(),
                             headers={"content-type": "image/jpeg"})
    (found,) = response.data["faces"]
    return found["name"], [candidate["name"] for candidate in found["candidates"]]


def person_path(name, *rest):
    return "/".join(["people", quote(name), *rest])


def rename(person, /, **kwargs):
    return hug.test.post(api, person_path(person, "rename"), **kwargs)


def json_body(fields):
    return {"body": json.dumps(fields), "headers": {"content-type": "application/json"}}


# -- GET /people: pages ---------------------------------------------------------------------

NAMES = ["ada", "Ada Lovelace", "Bob", "bob", "Zoë", "Émile", "carl", "d'Artagnan", "O'Brien"]


def test_people_come_a_page_at_a_time_in_code_point_order(env, encodings):
    for number, name in enumerate(NAMES):
        add(encodings, name, count=1 + number % 3)
    expected = [{"name": name, "face_count": 1 + NAMES.index(name) % 3} for name in sorted(NAMES)]
    assert [p["name"] for p in expected][:4] == ["Ada Lovelace", "Bob", "O'Brien", "Zoë"]

    pages = [hug.test.get(api, "people", page=page, size=4).data for page in (1, 2, 3)]
    assert [p["people"] for p in pages] == [expected[:4], expected[4:8], expected[8:]]
    for number, page in enumerate(pages, start=1):
        assert (page["total"], page["page"], page["size"], page["pages"]) == (9, number, 4, 3)
    whole = hug.test.get(api, "people", size=1000).data
    assert whole == {"people": expected, "total": 9, "page": 1, "size": 1000, "pages": 1}
    assert hug.test.get(api, "people").data["size"] == 100  # the default


def test_a_page_past_the_end_is_empty_not_an_error(env, encodings):
    add(encodings, "ada")
    past = hug.test.get(api, "people", page=3, size=1)
    assert past.status == falcon.HTTP_200
    assert past.data == {"people": [], "total": 1, "page": 3, "size": 1, "pages": 1}
    far = hug.test.get(api, "people", page=1_000_000, size=1000).data
    assert far["people"] == [] and far["pages"] == 1


def test_an_empty_store_has_no_pages(env):
    assert hug.test.get(api, "people").data == {"people": [], "total": 0, "page": 1,
                                                "size": 100, "pages": 0}


def test_deleted_people_leave_the_pages_and_the_total(env, encodings):
    for name in ("a", "b", "c"):
        add(encodings, name)
    hug.test.delete(api, "people/b")
    assert hug.test.get(api, "people", size=2).data == {
        "people": [{"name": "a", "face_count": 1}, {"name": "c", "face_count": 1}], "total": 2, "page": 1,
        "size": 2, "pages": 1}


@pytest.mark.parametrize("params, field", [
    ({"page": "0"}, "page"), ({"page": "-1"}, "page"), ({"page": "1000001"}, "page"),
    ({"page": "abc"}, "page"), ({"page": "1.5"}, "page"), ({"page": " 2"}, "page"),
    ({"page": "+2"}, "page"), ({"page": "1e3"}, "page"), ({"page": "٣"}, "page"),
    ({"page": "99999999999999999999"}, "page"),
    ({"size": "0"}, "size"), ({"size": "1001"}, "size"), ({"size": "-5"}, "size"),
    ({"size": "ten"}, "size"),
])
def test_page_and_size_out_of_bounds_are_400_naming_the_field(env, params, field):
    response = hug.test.get(api, "people", **params)
    assert response.status == falcon.HTTP_400
    assert response.data["errors"] == {field: "out_of_range"}
    assert response.data["detail"][field].startswith("a whole number from 1 to ")


def test_empty_page_and_size_count_as_absent(env):
    response = hug.test.get(api, "people", query_string="page=&size=")
    assert response.status == falcon.HTTP_200
    assert (response.data["page"], response.data["size"]) == (1, 100)


# -- GET /people/{name} ---------------------------------------------------------------------


def test_a_persons_faces_with_ids_sources_and_dates(env, serve):
    data = face("people/obama/obama.jpg").read_bytes()
    uploaded = hug.test.post(api, "enroll", body=data, name="Barack Obama",
                             headers={"content-type": "image/jpeg"}).data
    url = serve(face("people/obama/obama1.jpg"), "/obama1.jpg")
    fetched = hug.test.get(api, "enroll", name="Barack Obama", image_url=url).data
    other = enrol("biden", "people/biden/biden.jpg")

    response = hug.test.get(api, person_path("Barack Obama"))
    assert response.status == falcon.HTTP_200
    detail = response.data
    assert detail["name"] == "Barack Obama"
    assert [f["id"] for f in detail["faces"]] == [uploaded["face_id"], fetched["face_id"]]
    assert other not in [f["id"] for f in detail["faces"]]
    assert [f["source"] for f in detail["faces"]] == [
        f"sha256:{hashlib.sha256(data).hexdigest()}",
        f"url:{hashlib.sha256(url.encode()).hexdigest()}"]  # never the URL itself
    for moment in [detail["created_at"]] + [f["created_at"] for f in detail["faces"]]:
        assert datetime.fromisoformat(moment).utcoffset().total_seconds() == 0
    assert hug.test.cli("person", "Barack Obama", module=api) == detail


def test_an_unknown_or_invalid_person_is_404_or_400(env, encodings):
    add(encodings, "ada")
    unknown = hug.test.get(api, "people/bob")
    assert unknown.status == falcon.HTTP_404
    assert unknown.data == {"errors": {"name": "unknown_person"}}
    invalid = hug.test.get(api, person_path("semi;colon"))
    assert invalid.status == falcon.HTTP_400
    assert invalid.data["errors"] == {"name": "invalid_name"}
    assert isinstance(hug.test.cli("person", "bob", module=api), UnknownPerson)


def test_a_name_is_found_whatever_its_unicode_normalisation(env, encodings):
    add(encodings, "Zoë")
    decomposed = unicodedata.normalize("NFD", "Zoë")
    assert decomposed != "Zoë"
    assert hug.test.get(api, person_path(decomposed)).data["name"] == "Zoë"


# -- DELETE /people/{name}/faces/{face_id} --------------------------------------------------


def test_deleting_faces_changes_who_is_recognised(env):
    first = enrol("obama", "people/obama/obama.jpg")
    second = enrol("obama", "people/obama/obama1.jpg")
    enrol("biden", "people/biden/biden.jpg")
    assert recognised("people/obama/obama2.jpg")[0] == "obama"

    response = hug.test.delete(api, f"people/obama/faces/{first}")
    assert response.status == falcon.HTTP_200
    assert response.data == {"name": "obama", "deleted_face": first, "faces_left": 1}
    assert [f["id"] for f in hug.test.get(api, "people/obama").data["faces"]] == [second]
    assert recognised("people/obama/obama2.jpg")[0] == "obama"  # one face of theirs is left

    last = hug.test.delete(api, f"people/obama/faces/{second}")
    assert last.data == {"name": "obama", "deleted_face": second, "faces_left": 0}
    assert hug.test.get(api, "people/obama").status == falcon.HTTP_404
    name, candidates = recognised("people/obama/obama2.jpg")
    assert name is None and "obama" not in candidates
    assert hug.test.get(api, "health").data == {"status": "ok", "person_count": 1, "face_count": 1}
    again = hug.test.delete(api, f"people/obama/faces/{second}")
    assert again.status == falcon.HTTP_404
    assert again.data == {"errors": {"name": "unknown_person"}}


def test_a_face_of_somebody_else_or_nobody_is_404_and_nothing_changes(env, encodings):
    (ada,) = add(encodings, "ada")
    (bob,) = add(encodings, "bob")
    for path in (f"people/ada/faces/{bob}", f"people/ada/faces/{bob + 100}",
                 f"people/ada/faces/{2**63 - 1}"):
        response = hug.test.delete(api, path)
        assert response.status == falcon.HTTP_404
        assert response.data == {"errors": {"face_id": "unknown_face"}}
    nobody = hug.test.delete(api, f"people/carl/faces/{ada}")
    assert nobody.data == {"errors": {"name": "unknown_person"}}
    assert hug.test.get(api, "health").data == {"status": "ok", "person_count": 2, "face_count": 2}


def test_faces_come_a_page_at_a_time_in_the_order_added_everyones_or_one_persons(env,
                                                                                encodings):
    service = api.get_service()
    ids = add(encodings, "bob", 2) + add(encodings, "ada", 2) + add(encodings, "bob")
    listed = service.faces(page=1, size=2)
    assert [(face.face_id, face.name) for face in listed.faces] == [(ids[0], "bob"),
                                                                     (ids[1], "bob")]
    assert (listed.total, listed.pages) == (5, 3)
    assert [face.face_id for face in service.faces(page=3, size=2).faces] == [ids[4]]
    assert service.faces(page=4, size=2).faces == []
    bobs = service.faces(page=1, size=10, name="bob")
    assert [face.face_id for face in bobs.faces] == [ids[0], ids[1], ids[4]]
    assert (bobs.total, bobs.pages) == (3, 1)
    with pytest.raises(UnknownPerson):
        service.faces(name="carl")


def test_a_face_deleted_by_its_id_alone_leaves_its_owners_other_faces(env, encodings):
    service = api.get_service()
    ada, other = add(encodings, "ada", 2)
    (bob,) = add(encodings, "bob")
    assert service.forget_face_by_id(ada) == FaceForgotten("ada", ada, 1)
    assert service.forget_face_by_id(bob) == FaceForgotten("bob", bob, 0)
    for gone in (ada, bob, bob + 100):
        with pytest.raises(UnknownFace):
            service.forget_face_by_id(gone)
    assert [face.face_id for face in service.faces().faces] == [other]


@pytest.mark.parametrize("face_id", ["0", "-1", "abc", "1.5", "1e2", "+1", str(2**63),
                                     "99999999999999999999999"])
def test_a_face_id_must_be_a_positive_whole_number(env, encodings, face_id):
    add(encodings, "ada")
    response = hug.test.delete(api, f"people/ada/faces/{quote(face_id)}")
    assert response.status == falcon.HTTP_400
    assert list(response.data["errors"]) == ["face_id"]
    assert hug.test.get(api, "health").data["face_count"] == 1


# -- POST /people/{name}/rename -------------------------------------------------------------


def test_a_merge_makes_one_person_who_is_recognised_under_the_new_name(env):
    enrol("Barack", "people/obama/obama.jpg")
    enrol("Barack Obama", "people/obama/obama1.jpg")
    enrol("biden", "people/biden/biden.jpg")

    merged = rename("Barack", new_name="Barack Obama")
    assert merged.status == falcon.HTTP_200
    assert merged.data == {"name": "Barack Obama", "face_count": 2, "merged": True,
                           "warnings": []}
    assert hug.test.get(api, "people").data["people"] == [
        {"name": "Barack Obama", "face_count": 2}, {"name": "biden", "face_count": 1}]
    assert hug.test.get(api, "people/Barack").status == falcon.HTTP_404
    name, candidates = recognised("people/obama/obama2.jpg")
    assert name == "Barack Obama" and "Barack" not in candidates

    renamed = rename("biden", **json_body({"new_name": "Joe Biden"}))
    assert renamed.data == {"name": "Joe Biden", "face_count": 1, "merged": False,
                            "warnings": []}
    assert recognised("people/biden/biden2.jpg")[0] == "Joe Biden"


def test_rename_takes_new_name_from_the_query_a_json_or_a_form_body(env, encodings):
    add(encodings, "a")
    assert rename("a", new_name="b").data["name"] == "b"
    assert rename("b", **json_body({"new_name": "c"})).data["name"] == "c"
    form = rename("c", body="new_name=d+e", headers={"content-type":
                                                    "application/x-www-form-urlencoded"})
    assert form.data == {"name": "d e", "face_count": 1, "merged": False, "warnings": []}
    body_wins = rename("d e", new_name="x", **json_body({"new_name": "f"}))
    assert body_wins.data["name"] == "f"
    assert [p["name"] for p in hug.test.get(api, "people").data["people"]] == ["f"]


def test_renaming_to_the_same_name_changes_nothing(env, encodings):
    ids = add(encodings, "Zoë", count=2)
    before = hug.test.get(api, person_path("Zoë")).data
    for same in ("Zoë", unicodedata.normalize("NFD", "Zoë")):
        response = rename("Zoë", new_name=same)
        assert response.data == {"name": "Zoë", "face_count": 2, "merged": False, "warnings": []}
    assert hug.test.get(api, person_path("Zoë")).data == before
    assert [f["id"] for f in before["faces"]] == ids


def test_a_new_name_is_stored_nfc_normalised(env, encodings):
    add(encodings, "Zoe")
    response = rename("Zoe", new_name=unicodedata.normalize("NFD", "Zoë"))
    assert response.data["name"] == "Zoë"
    assert hug.test.get(api, "people").data["people"] == [{"name": "Zoë", "face_count": 1}]


@pytest.mark.parametrize("path_name, kwargs, status, errors", [
    ("nobody", {"new_name": "x"}, falcon.HTTP_404, {"name": "unknown_person"}),
    ("ada", {"new_name": "../x"}, falcon.HTTP_400, {"new_name": "invalid_name"}),
    ("ada", {"new_name": "x" * 101}, falcon.HTTP_400, {"new_name": "invalid_name"}),
    ("ada", {"new_name": " ada"}, falcon.HTTP_400, {"new_name": "invalid_name"}),
    ("semi;colon", {"new_name": "x"}, falcon.HTTP_400, {"name": "invalid_name"}),
    ("ada", {}, falcon.HTTP_400, {"new_name": "missing_parameter"}),
    ("ada", json_body({"new_name": 5}), falcon.HTTP_400, {"new_name": "wrong_type"}),
    ("ada", json_body(["new_name"]), falcon.HTTP_400, {"body": "malformed_body"}),
    ("ada", json_body({"new_name": "x", "name": "bob"}), falcon.HTTP_400,
     {"name": "only_in_path"}),
    ("ada", {"body": "name=bob&new_name=x",
             "headers": {"content-type": "application/x-www-form-urlencoded"}},
     falcon.HTTP_400, {"name": "only_in_path"}),
    ("ada", {"new_name": "x", "name": "bob"}, falcon.HTTP_400, {"name": "only_in_path"}),
])
def test_rename_errors_change_nothing(env, encodings, path_name, kwargs, status, errors):
    add(encodings, "ada")
    add(encodings, "bob")
    response = rename(path_name, **kwargs)
    assert response.status == status
    assert response.data["errors"] == errors
    assert [p["name"] for p in hug.test.get(api, "people").data["people"]] == ["ada", "bob"]


def test_renaming_to_a_name_that_looks_like_another_persons_warns(env, encodings):
    add(encodings, "Obama")
    add(encodings, "Joe")
    renamed = rename("Joe", new_name="0bama")  # a zero: it looks like Obama
    assert renamed.status == falcon.HTTP_200
    assert renamed.data == {"name": "0bama", "face_count": 1, "merged": False, "warnings": [
        {"code": "looks_like_existing_person", "person": "Obama"}]}
    # a person renamed to a look-alike of their own name looks like nobody else
    own = rename("Obama", new_name="\u041ebama")
    assert own.data == {"name": "\u041ebama", "face_count": 1, "merged": False, "warnings": [
        {"code": "looks_like_existing_person", "person": "0bama"}]}
    assert rename("0bama", new_name="Joe").data["warnings"] == []
    assert rename("\u041ebama", new_name="Obama").data["warnings"] == []


def test_with_strict_names_renaming_to_a_look_alike_is_refused_with_409(reconfigure, encodings):
    reconfigure(strict_names="on")
    add(encodings, "Obama")
    add(encodings, "Joe")
    refused = rename("Joe", new_name="0bama")
    assert refused.status == falcon.HTTP_409
    assert refused.data == {"errors": {"new_name": "name_looks_like_another"},
                            "detail": {"new_name": "looks like 'Obama'"}}
    assert rename("nobody", new_name="0bama").status == falcon.HTTP_404  # unknown comes first
    assert rename("Obama", new_name="0bama").status == falcon.HTTP_200  # their own look-alike
    assert rename("Joe", new_name="Joe").status == falcon.HTTP_200
    assert [p["name"] for p in hug.test.get(api, "people").data["people"]] == ["0bama", "Joe"]


def test_a_path_parameter_given_again_in_the_query_is_refused(env, encodings):
    """hug lets the query replace a path parameter: DELETE /people/ada?name=bob deleted bob."""
    (ada,) = add(encodings, "ada")
    (bob,) = add(encodings, "bob")
    for method, path, params in (("DELETE", "people/ada", {"name": "bob"}),
                                 ("GET", "people/ada", {"name": "bob"}),
                                 ("DELETE", f"people/ada/faces/{ada}", {"face_id": str(bob)}),
                                 ("DELETE", f"people/ada/faces/{ada}", {"name": "bob"})):
        response = hug.test.call(method, api, path, params=params)
        assert response.status == falcon.HTTP_400
        assert response.data == {"errors": {next(iter(params)): "only_in_path"}}
    assert hug.test.get(api, "health").data == {"status": "ok", "person_count": 2, "face_count": 2}


def test_a_body_cannot_replace_the_path_of_a_delete(env, encodings):
    add(encodings, "ada")
    add(encodings, "bob")
    response = hug.test.delete(api, "people/ada", **json_body({"name": "bob"}))
    assert response.data == {"name": "ada", "deleted_faces": 1}
    assert [p["name"] for p in hug.test.get(api, "people").data["people"]] == ["bob"]


# -- scopes -----------------------------------------------------------------------------------


def call(method, path, key, **kwargs):
    return hug.test.call(method, api, path, headers={"X-API-Key": key} if key else {}, **kwargs)


def test_a_read_key_may_list_and_look_but_not_rename_or_delete(reconfigure, encodings):
    reconfigure(api_keys=f"{READ}:read,{ADMIN}:admin")
    (face_id,) = add(encodings, "ada")
    assert call("GET", "people", READ).status == falcon.HTTP_200
    assert call("GET", "people/ada", READ).data["faces"][0]["id"] == face_id
    for method, path, params in (("POST", "people/ada/rename", {"new_name": "bob"}),
                                 ("DELETE", f"people/ada/faces/{face_id}", {}),
                                 ("DELETE", "people/ada", {})):
        refused = call(method, path, READ, params=params)
        assert refused.status == falcon.HTTP_403
        assert refused.data == {"errors": {"api_key": "insufficient_scope"}}
        assert call(method, path, None, params=params).status == falcon.HTTP_401
    assert call("GET", "people/ada", READ).status == falcon.HTTP_200  # still there
    assert call("POST", "people/ada/rename", ADMIN, params={"new_name": "bob"}).data == {
        "name": "bob", "face_count": 1, "merged": False, "warnings": []}
    assert call("DELETE", f"people/bob/faces/{face_id}", ADMIN).data["faces_left"] == 0


# -- the CLI ------------------------------------------------------------------------------------


def test_the_cli_lists_shows_renames_and_deletes_faces(env, encodings):
    for name in ("a", "b", "c", "d", "e"):
        add(encodings, name)
    (ada_face,) = add(encodings, "ada")
    listed = hug.test.cli("people", module=api, page=2, size=2)
    assert listed == {"people": [{"name": "b", "face_count": 1}, {"name": "c", "face_count": 1}],
                      "total": 6, "page": 2, "size": 2, "pages": 3}
    assert listed == hug.test.get(api, "people", page=2, size=2).data
    assert hug.test.cli("person", "ada", module=api)["faces"][0]["id"] == ada_face
    assert hug.test.cli("rename", "ada", "a", module=api) == {"name": "a", "face_count": 2,
                                                             "merged": True, "warnings": []}
    assert hug.test.cli("forget-face", "a", str(ada_face), module=api) == {
        "name": "a", "deleted_face": ada_face, "faces_left": 1}
    assert isinstance(hug.test.cli("forget-face", "a", str(ada_face), module=api), UnknownFace)
    assert isinstance(hug.test.cli("rename", "nobody", "x", module=api), UnknownPerson)


def run_cli(*args, location):
    return subprocess.run([sys.executable, "-m", "hug", "-f", "api.py", "-c", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=os.environ | {"FACEREC_STORE": location,
                                            "PYTHONWARNINGS": "ignore"})


def test_the_real_command_line(env, encodings, store_location):
    for name in ("Ada Lovelace", "bob", "carl"):
        add(encodings, name)
    (face_id,) = add(encodings, "dora")
    page = run_cli("people", "--page", "2", "--size", "1", location=store_location)
    assert page.returncode == 0, page.stderr
    assert json.loads(page.stdout) == {"people": [{"name": "bob", "face_count": 1}], "total": 4,
                                       "page": 2, "size": 1, "pages": 4}
    shown = run_cli("person", "dora", location=store_location)
    assert json.loads(shown.stdout)["faces"][0]["id"] == face_id
    renamed = run_cli("rename", "dora", "Ada Lovelace", location=store_location)
    assert json.loads(renamed.stdout) == {"name": "Ada Lovelace", "face_count": 2,
                                          "merged": True, "warnings": []}
    deleted = run_cli("forget-face", "Ada Lovelace", str(face_id), location=store_location)
    assert json.loads(deleted.stdout) == {"name": "Ada Lovelace", "deleted_face": face_id,
                                          "faces_left": 1}
    unknown = run_cli("person", "dora", location=store_location)
    assert unknown.returncode != 0
    assert json.loads(unknown.stderr.strip().splitlines()[-1]) == {
        "errors": {"name": "unknown_person"}}
    for args, message in ((("forget-face", "bob", "0"), "out_of_range: a whole number from 1"),
                          (("rename", "bob", "../x"), "invalid_name"),
                          (("people", "--size", "1001"),
                           "out_of_range: a whole number from 1 to 1000")):
        refused = run_cli(*args, location=store_location)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert "Traceback" not in unknown.stderr
    assert hug.test.get(api, "health").data == {"status": "ok", "person_count": 3, "face_count": 3}

