"""Enrolment end to end: the quality gate and force, several photos per person, label warnings
(build's are in test_build.py).

Real photos from ../shared/faces through the real dlib pipeline; the degraded copies (blurred,
shrunk) are made here with Pillow from the official Obama portrait, whose face is about 250
pixels across (dlib's box: 247).
"""

import falcon
import hug
import pytest
from PIL import Image, ImageFilter

import api
from conftest import face, png_bytes, upload
from recognizer.errors import UnusableFace
from recognizer.matching import SAME_PERSON_LIMIT

pytestmark = pytest.mark.store  # run on both store backends

OBAMA = "people/obama/obama.jpg"
OBAMA_FACE_WIDTH = 250  # pixels across, roughly, in obama.jpg
TURNED = "lfw_dev/Bill_Frist/Bill_Frist_0002.jpg"  # one face, yaw about -54 degrees


def _portrait() -> Image.Image:
    return Image.open(face(OBAMA)).convert("RGB")


@pytest.fixture(scope="module")
def blurred() -> bytes:
    """obama.jpg under a Gaussian blur of radius 4% of the face's width (10 pixels), as JPEG."""
    image = _portrait().filter(ImageFilter.GaussianBlur(0.04 * OBAMA_FACE_WIDTH))
    return png_bytes(image, format="JPEG", quality=95)


@pytest.fixture(scope="module")
def tiny() -> bytes:
    """obama.jpg shrunk until the face is about 30 pixels across (the image is 109x136)."""
    image = _portrait()
    scale = 30 / OBAMA_FACE_WIDTH
    size = (round(image.width * scale), round(image.height * scale))
    return png_bytes(image.resize(size, Image.Resampling.LANCZOS))


def enroll_upload(name, data, **fields):
    body, headers = upload("enroll", data, {"name": name} | fields)
    return hug.test.post(api, "enroll", body=body, headers=headers)


def enroll_photo(name, photo):
    return enroll_upload(name, face(photo).read_bytes())


def assert_nothing_stored():
    assert hug.test.get(api, "people").data == {"people": [], "total": 0, "page": 1,
                                                "size": 100, "pages": 0}
    assert hug.test.get(api, "health").data == {"status": "ok", "person_count": 0, "face_count": 0}


def refused(response, reason):
    return (response.status == falcon.HTTP_422
            and response.data == {"errors": {"image": reason}})


# -- the quality gate ------------------------------------------------------------------------


def test_a_blurred_photo_is_refused_by_upload_and_by_url_unless_forced(env, serve, blurred):
    by_upload = enroll_upload("obama", blurred)
    url = serve(blurred, "/blurred.jpg")
    by_url = hug.test.get(api, "enroll", name="obama", image_url=url)
    assert refused(by_upload, "blurry"), by_upload.data
    assert refused(by_url, "blurry"), by_url.data
    assert_nothing_stored()

    forced = hug.test.get(api, "enroll", name="obama", image_url=url, force="true")
    assert forced.status == falcon.HTTP_201, forced.data
    assert forced.data["face_count"] == 1 and forced.data["warnings"] == []
    assert hug.test.get(api, "people").data == {"people": [{"name": "obama", "face_count": 1}],
                                                "total": 1, "page": 1, "size": 100, "pages": 1}
    again = enroll_upload("obama", blurred, force="true")  # the same bytes, uploaded this time
    assert again.status == falcon.HTTP_200 and again.data["duplicate"] is True
    assert again.data["face_count"] == 1 and again.data["face_id"] == forced.data["face_id"]


@pytest.mark.parametrize("upsample", [1, 2])
def test_a_tiny_face_is_refused_as_small_face_unless_forced(reconfigure, tiny, upsample):
    reconfigure(upsample=upsample)
    response = enroll_upload("obama", tiny)
    assert refused(response, "small_face"), response.data  # found (36 or 31 px across), not no_face
    assert_nothing_stored()
    forced = enroll_upload("obama", tiny, force="true")
    assert forced.status == falcon.HTTP_201 and forced.data["face_count"] == 1


def test_an_extreme_pose_is_refused_unless_forced(env):
    data = face(TURNED).read_bytes()
    found = hug.test.post(api, "recognize", body=data, headers={"content-type": "image/jpeg"})
    assert len(found.data["faces"]) == 1  # one face, so largest_face plays no part
    response = enroll_upload("Bill Frist", data)
    assert refused(response, "extreme_pose"), response.data
    assert_nothing_stored()
    forced = enroll_upload("Bill Frist", data, force="true")
    assert forced.status == falcon.HTTP_201 and forced.data["face_count"] == 1


def test_cli_enroll_refuses_a_blurred_file_unless_force(env, tmp_path, blurred):
    path = tmp_path / "blurred.jpg"
    path.write_bytes(blurred)
    error = hug.test.cli("enroll", "obama", str(path), module=api)
    assert isinstance(error, UnusableFace) and error.message == "blurry"
    assert hug.test.cli("people", module=api)["total"] == 0
    forced = hug.test.cli("enroll", "obama", str(path), module=api, force=True)  # --force
    assert forced == {"name": "obama", "face_id": 1, "face_count": 1, "warnings": [],
                      "duplicate": False}


# -- several photos per person, and label warnings -------------------------------------------


def test_photos_of_one_person_add_up_without_warnings_and_name_a_new_photo(env):
    first, second, third = (enroll_photo("obama", f"people/obama/{photo}")
                            for photo in ("obama.jpg", "obama2.jpg", "obama1.jpg"))
    assert [r.status for r in (first, second, third)] == [falcon.HTTP_201] * 3
    assert [r.data["face_count"] for r in (first, second, third)] == [1, 2, 3]
    assert [r.data["warnings"] for r in (first, second, third)] == [[], [], []]
    assert hug.test.get(api, "people").data == {"people": [{"name": "obama", "face_count": 3}],
                                                "total": 1, "page": 1, "size": 100, "pages": 1}
    probe = face("people/obama/obama3.jpg").read_bytes()  # never enrolled
    response = hug.test.post(api, "recognize", body=probe, headers={"content-type": "image/jpeg"})
    (only,) = response.data["faces"]
    assert only["name"] == "obama"


def test_a_face_unlike_the_persons_others_is_added_with_a_warning(env):
    enroll_photo("obama", "people/obama/obama.jpg")
    enroll_photo("obama", "people/obama/obama2.jpg")
    response = enroll_photo("obama", "people/biden/biden.jpg")
    assert response.status == falcon.HTTP_201
    assert response.data["face_count"] == 3  # a warning, not a refusal
    (warning,) = response.data["warnings"]
    assert warning["code"] == "unlike_existing_faces"
    assert warning["distance"] > SAME_PERSON_LIMIT


def test_a_new_name_for_an_enrolled_face_warns_that_it_resembles_another_person(env):
    enroll_photo("obama", "people/obama/obama.jpg")
    enroll_photo("biden", "people/biden/biden.jpg")
    response = enroll_photo("joe", "people/biden/biden2.jpg")
    assert response.status == falcon.HTTP_201 and response.data["face_count"] == 1
    (warning,) = response.data["warnings"]  # joe is new: nothing of his own to be unlike
    assert warning["code"] == "resembles_another_person" and warning["person"] == "biden"
    assert 0 < warning["distance"] <= api.get_service().settings.tolerance


# -- names that look like an enrolled person's ---------------------------------------------------

CYRILLIC_OBAMA = "\u041ebama"  # Cyrillic О, then Latin: it looks like "Obama"


def test_a_name_that_looks_like_an_enrolled_persons_is_added_with_a_warning(env):
    first = enroll_photo("Obama", "people/obama/obama.jpg")
    again = enroll_photo("Obama", "people/obama/obama2.jpg")  # the same person, not a look-alike
    assert [first.data["warnings"], again.data["warnings"]] == [[], []]
    lookalike = enroll_photo(CYRILLIC_OBAMA, "people/biden/biden.jpg")
    assert lookalike.status == falcon.HTTP_201 and lookalike.data["face_count"] == 1
    assert lookalike.data["warnings"] == [{"code": "looks_like_existing_person",
                                           "person": "Obama"}]
    # and now "Obama" looks like somebody else: the other one warns too
    third = enroll_photo("Obama", "people/obama/obama1.jpg")
    assert third.data["warnings"] == [{"code": "looks_like_existing_person",
                                       "person": CYRILLIC_OBAMA}]
    assert [p["name"] for p in hug.test.get(api, "people").data["people"]] == [
        "Obama", CYRILLIC_OBAMA]


def test_the_face_warnings_come_after_the_name_warning(env):
    enroll_photo("Obama", "people/obama/obama.jpg")
    response = enroll_photo("0bama", "people/obama/obama2.jpg")  # a zero, and Obama's face
    name, face_warning = response.data["warnings"]
    assert name == {"code": "looks_like_existing_person", "person": "Obama"}
    assert face_warning["code"] == "resembles_another_person"
    assert face_warning["person"] == "Obama"


def test_with_strict_names_a_look_alike_is_refused_with_409_and_nothing_is_stored(reconfigure):
    reconfigure(strict_names="on")
    assert enroll_photo("Obama", "people/obama/obama.jpg").status == falcon.HTTP_201
    for name in (CYRILLIC_OBAMA, "0bama"):
        refused = enroll_photo(name, "people/biden/biden.jpg")
        assert refused.status == falcon.HTTP_409
        assert refused.data == {"errors": {"name": "name_looks_like_another"},
                                "detail": {"name": "looks like 'Obama'"}}
    # refused for its name before the photo is looked at: a photo with no face gets 409 too
    assert enroll_upload("0bama", png_bytes(Image.new("RGB", (64, 64)))).status == falcon.HTTP_409
    assert enroll_photo("Obama", "people/obama/obama2.jpg").status == falcon.HTTP_201
    assert enroll_photo("Biden", "people/biden/biden.jpg").status == falcon.HTTP_201
    assert hug.test.get(api, "people").data["people"] == [{"name": "Biden", "face_count": 1},
                                                          {"name": "Obama", "face_count": 2}]
