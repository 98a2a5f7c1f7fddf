"""The HTTP contract, end to end through hug and the real face pipeline on real photos."""

import io

import falcon
import hug
import numpy as np
import pytest
from PIL import Image

import api
from conftest import face, no_face_image, png_bytes, upload

pytestmark = pytest.mark.store  # run on both store backends


def enroll_url(serve, name, photo, path=None, **params):
    url = serve(face(photo), path or f"/enroll/{abs(hash(name))}/{face(photo).name}")
    return hug.test.get(api, "enroll", name=name, image_url=url, **params)


def recognize_url(serve, photo, **params):
    url = serve(face(photo) if isinstance(photo, str) else photo, "/probe")
    return hug.test.get(api, "recognize", image_url=url, **params)


@pytest.fixture
def obama_and_biden(env, serve):
    for name, photo in (("obama", "people/obama/obama.jpg"), ("biden", "people/biden/biden.jpg")):
        response = enroll_url(serve, name, photo)
        assert response.status == falcon.HTTP_201, response.data


def test_enroll_answers_201_with_the_face_count(env, serve):
    first = enroll_url(serve, "obama", "people/obama/obama.jpg")
    second = enroll_url(serve, "obama", "people/obama/obama1.jpg")
    assert first.status == second.status == falcon.HTTP_201
    assert first.data["name"] == "obama" and first.data["face_count"] == 1
    assert second.data["face_count"] == 2
    assert isinstance(second.data["face_id"], int)
    assert second.data["face_id"] != first.data["face_id"]


def test_recognize_names_an_enrolled_person(obama_and_biden, serve):
    response = recognize_url(serve, "people/obama/obama2.jpg")
    assert response.status == falcon.HTTP_200
    (only,) = response.data["faces"]
    assert only["name"] == "obama"
    assert 0 <= only["distance"] < 0.6
    assert 0.5 < only["confidence"] <= 1
    assert [c["name"] for c in only["candidates"]] == ["obama", "biden"]
    assert only["candidates"][0]["distance"] == only["distance"]
    assert response.data["image"] == {"width": 626, "height": 1200}


def test_recognize_names_both_people_largest_first(obama_and_biden, serve):
    response = recognize_url(serve, "misc/two_people.jpg")
    faces = response.data["faces"]
    assert sorted(f["name"] for f in faces) == ["biden", "obama"]
    areas = [(f["box"]["bottom"] - f["box"]["top"]) * (f["box"]["right"] - f["box"]["left"])
             for f in faces]
    assert areas == sorted(areas, reverse=True)
    left_face = min(faces, key=lambda f: f["box"]["left"])
    assert left_face["name"] == "obama"  # Obama is on the left of this photo
    for found in faces:
        box = found["box"]
        assert 0 <= box["left"] < box["right"] <= 1126 and 0 <= box["top"] < box["bottom"] <= 661


def test_at_most_max_faces_are_answered_the_largest_first(obama_and_biden, serve, reconfigure):
    reconfigure(max_faces=1)
    faces = recognize_url(serve, "misc/obama_and_biden.jpg").data["faces"]
    assert len(faces) == 1  # the photo has 3 faces
    reconfigure(max_faces=20)
    every = recognize_url(serve, "misc/obama_and_biden.jpg").data["faces"]
    assert len(every) == 3 and every[0]["box"] == faces[0]["box"]


def test_a_stranger_is_unknown_with_candidates(obama_and_biden, serve):
    response = recognize_url(serve, "people/kit_harington/john1.jpeg")
    assert response.status == falcon.HTTP_200
    assert response.data["faces"], "the face must be found"
    for found in response.data["faces"]:
        assert found["name"] is None and found["distance"] is None
        assert found["confidence"] is None
        assert all(c["distance"] > 0.6 for c in found["candidates"])


def test_top_k_limits_candidates(obama_and_biden, serve):
    response = recognize_url(serve, "people/obama/obama2.jpg", top_k=1)
    assert [c["name"] for c in response.data["faces"][0]["candidates"]] == ["obama"]


def test_tolerance_is_the_callers_knob(obama_and_biden, serve):
    strict = recognize_url(serve, "people/obama/obama2.jpg", tolerance=0.05)
    assert strict.data["faces"][0]["name"] is None


def test_no_face_gives_an_empty_list(env, serve):
    response = recognize_url(serve, no_face_image())
    assert response.status == falcon.HTTP_200
    assert response.data == {"faces": [], "image": {"width": 320, "height": 240}}


def test_recognize_with_an_empty_store_finds_faces_but_names_nobody(env, serve):
    (only,) = recognize_url(serve, "people/obama/obama2.jpg").data["faces"]
    assert only["name"] is None and only["candidates"] == []


def test_enroll_with_two_faces_is_refused_unless_largest_face(env, serve):
    refused = enroll_url(serve, "someone", "misc/two_people.jpg")
    assert refused.status == falcon.HTTP_422
    assert refused.data == {"errors": {"image": "multiple_faces"}}
    accepted = enroll_url(serve, "someone", "misc/two_people.jpg", largest_face="true")
    assert accepted.status == falcon.HTTP_201 and accepted.data["face_count"] == 1


def test_enroll_without_a_face_is_refused(env, serve):
    response = hug.test.get(api, "enroll", name="nobody", image_url=serve(no_face_image()))
    assert response.status == falcon.HTTP_422
    assert response.data == {"errors": {"image": "no_face"}}
    assert hug.test.get(api, "people").data == {"people": [], "total": 0, "page": 1,
                                                "size": 100, "pages": 0}


def test_enrolment_is_recognised_by_the_very_next_request(env, serve):
    enrolled = enroll_url(serve, "Ada Lovelace-Byron", "people/rose_leslie/rose_leslie_img1.jpg")
    assert enrolled.status == falcon.HTTP_201
    response = recognize_url(serve, "people/rose_leslie/rose_leslie_img2.jpg")
    assert response.data["faces"][0]["name"] == "Ada Lovelace-Byron"


def test_upload_as_multipart_and_as_raw_body(obama_and_biden):
    data = face("people/obama/obama2.jpg").read_bytes()
    body, headers = upload("recognize", data, {"top_k": "1"})
    multipart = hug.test.post(api, "recognize", body=body, headers=headers)
    raw = hug.test.post(api, "recognize", body=data, headers={"content-type": "image/jpeg"})
    for response in (multipart, raw):
        assert response.status == falcon.HTTP_200
        assert response.data["faces"][0]["name"] == "obama"
    assert len(multipart.data["faces"][0]["candidates"]) == 1


def test_enroll_by_upload_and_by_json_body(env, serve):
    body, headers = upload("enroll", face("people/biden/biden.jpg").read_bytes(), {"name": "biden"})
    assert hug.test.post(api, "enroll", body=body, headers=headers).status == falcon.HTTP_201
    url = serve(face("people/obama/obama.jpg"))
    response = hug.test.post(api, "enroll", body={"name": "obama", "image_url": url},
                             headers={"content-type": "application/json"})
    assert response.status == falcon.HTTP_201
    assert hug.test.get(api, "people").data["total"] == 2


def test_people_delete_and_health(obama_and_biden, serve):
    enroll_url(serve, "obama", "people/obama/obama1.jpg")
    assert hug.test.get(api, "people").data == {
        "people": [{"name": "biden", "face_count": 1}, {"name": "obama", "face_count": 2}], "total": 2,
        "page": 1, "size": 100, "pages": 1}
    assert hug.test.get(api, "health").data == {"status": "ok", "person_count": 2, "face_count": 3}

    deleted = hug.test.delete(api, "people/obama")
    assert deleted.status == falcon.HTTP_200
    assert deleted.data == {"name": "obama", "deleted_faces": 2}
    assert recognize_url(serve, "people/obama/obama2.jpg").data["faces"][0]["name"] is None
    again = hug.test.delete(api, "people/obama")
    assert again.status == falcon.HTTP_404
    assert again.data == {"errors": {"name": "unknown_person"}}
    assert hug.test.get(api, "health").data == {"status": "ok", "person_count": 1, "face_count": 1}


def test_names_with_spaces_in_the_path(env, serve):
    assert enroll_url(serve, "Joe R. O'Biden_2", "people/biden/biden.jpg").data["face_count"] == 1
    response = hug.test.delete(api, "/people/Joe%20R.%20O'Biden_2")
    assert response.status == falcon.HTTP_200 and response.data["deleted_faces"] == 1


@pytest.mark.parametrize("name", ["", " ", "...", "../x", "a/b", "a\\b", "x" * 101, " lead",
                                  "trail ", "tab\there", "nul\x00", "semi;colon", "<b>"])
def test_invalid_names_are_refused(env, serve, name):
    url = serve(face("people/obama/obama.jpg"))
    response = hug.test.get(api, "enroll", name=name, image_url=url)
    assert response.status == falcon.HTTP_400
    assert "name" in response.data["errors"]
    assert hug.test.get(api, "people").data["total"] == 0


@pytest.mark.parametrize("params, field", [
    ({"tolerance": "0"}, "tolerance"), ({"tolerance": "1.5"}, "tolerance"),
    ({"tolerance": "abc"}, "tolerance"), ({"top_k": "0"}, "top_k"), ({"top_k": "11"}, "top_k"),
    ({"model": "resnet"}, "model"), ({"upsample": "3"}, "upsample"),
    ({"upsample": "-1"}, "upsample"),
])
def test_bad_parameters_get_400_naming_the_field(env, params, field):
    response = hug.test.get(api, "recognize", image_url="http://example.invalid/x.jpg", **params)
    assert response.status == falcon.HTTP_400
    assert field in response.data["errors"]


@pytest.mark.parametrize("body, content_type, code", [
    ('{"name": "x", "image_url', "application/json", "malformed_body"),  # str: hug.test sends as is
    ("[1,", "application/json", "malformed_body"),
    (b"name=\xff\xfe", "application/x-www-form-urlencoded", "malformed_body"),
    (b"--x\r\nbroken", "multipart/form-data", "malformed_multipart"),
    (b"--x\r\nbroken", "multipart/form-data; boundary=x", "malformed_multipart"),
])
def test_malformed_bodies_get_400(env, body, content_type, code):
    response = hug.test.post(api, "enroll", body=body, headers={"content-type": content_type})
    assert response.status == falcon.HTTP_400
    assert response.data == {"errors": {"body": code}}


def test_image_source_must_be_exactly_one(env, serve):
    neither = hug.test.get(api, "recognize")
    assert neither.status == falcon.HTTP_400
    assert neither.data["errors"] == {"image": "missing_image"}
    body, headers = upload("recognize", no_face_image(), {"image_url": serve(no_face_image())})
    both = hug.test.post(api, "recognize", body=body, headers=headers)
    assert both.status == falcon.HTTP_400
    assert both.data["errors"] == {"image": "several_images"}


def test_a_query_string_image_is_never_a_path(env, connections):
    response = hug.test.get(api, "recognize", image="/etc/passwd")
    assert response.status == falcon.HTTP_400
    assert response.data["errors"] == {"image": "not_an_image_upload"}
    assert connections == []


def test_non_image_bodies_get_415(env):
    for body, content_type in ((b"<html>hello</html>", "image/jpeg"), (b"%PDF-1.4\n", "image/png"),
                               (b"", "image/jpeg")):
        response = hug.test.post(api, "recognize", body=body or b" ",
                                 headers={"content-type": content_type})
        assert response.status == falcon.HTTP_415
        assert response.data == {"errors": {"image": "unsupported_image"}}
    body, headers = upload("recognize", b"GIF89a but not really")
    assert hug.test.post(api, "recognize", body=body, headers=headers).status == falcon.HTTP_415


def test_a_truncated_image_gets_415(env):
    data = face("people/obama/obama.jpg").read_bytes()
    response = hug.test.post(api, "recognize", body=data[: len(data) // 2],
                             headers={"content-type": "image/jpeg"})
    assert response.status == falcon.HTTP_415
    assert response.data == {"errors": {"image": "image_truncated"}}


def test_bodies_over_the_cap_get_413(reconfigure, serve):
    reconfigure(max_image_bytes=100_000)
    big = face("people/obama/obama.jpg").read_bytes()  # 280 kB
    raw = hug.test.post(api, "recognize", body=big, headers={"content-type": "image/jpeg"})
    body, headers = upload("recognize", big)
    multipart = hug.test.post(api, "recognize", body=body, headers=headers)
    fetched = hug.test.get(api, "recognize", image_url=serve(big))
    for response in (raw, multipart):
        assert response.status == falcon.HTTP_413
        assert response.data == {"errors": {"image": "image_too_large"},
                                 "detail": {"image": "bytes: at most 100000"}}
    assert fetched.status == falcon.HTTP_413
    assert fetched.data == {"errors": {"image_url": "image_too_large"},
                            "detail": {"image_url": "bytes: at most 100000"}}


def test_images_over_the_pixel_limit_get_413_and_large_jpegs_are_decoded_smaller(reconfigure):
    reconfigure(max_image_pixels=100_000)
    as_png = png_bytes(Image.open(face("people/obama/obama.jpg")))  # 910 x 1137: 1 MP
    response = hug.test.post(api, "recognize", body=as_png, headers={"content-type": "image/png"})
    assert response.status == falcon.HTTP_413
    assert response.data["detail"] == {"image": "pixels: at most 100000"}
    jpeg = face("people/obama/obama.jpg").read_bytes()  # decoded at 1/4: 228 x 285
    response = hug.test.post(api, "recognize", body=jpeg, headers={"content-type": "image/jpeg"})
    assert response.status == falcon.HTTP_200
    assert response.data["image"] == {"width": 910, "height": 1137}


def _obama() -> Image.Image:
    return Image.open(face("people/obama/obama.jpg")).convert("RGB")


def exif_rotated() -> bytes:
    """The pixels stored rotated a quarter turn, with an Orientation tag that undoes it."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return png_bytes(_obama().transpose(Image.Transpose.ROTATE_90), format="JPEG", exif=exif)


def rgba() -> bytes:
    image = _obama().convert("RGBA")
    alpha = np.full(image.size[::-1], 255, np.uint8)
    alpha[:100] = 0  # a transparent band that must not turn black
    image.putalpha(Image.fromarray(alpha))
    return png_bytes(image)


def gray16() -> bytes:
    levels = np.asarray(_obama().convert("L"), dtype=np.uint16) * 257
    return png_bytes(Image.fromarray(levels))  # mode I;16: 16-bit grayscale PNG


def cmyk() -> bytes:
    return png_bytes(_obama().convert("CMYK"), format="JPEG")


def palette() -> bytes:
    return png_bytes(_obama().quantize(colors=256), transparency=0)


@pytest.mark.parametrize("variant", [exif_rotated, rgba, gray16, cmyk, palette])
def test_every_image_form_is_recognised(obama_and_biden, variant):
    data = variant()
    with Image.open(io.BytesIO(data)) as probe:  # the variant really is what it claims
        assert probe.mode in {"exif_rotated": ("RGB",), "rgba": ("RGBA",),
                              "gray16": ("I;16", "I"), "cmyk": ("CMYK",),
                              "palette": ("P",)}[variant.__name__]
    response = hug.test.post(api, "recognize", body=data, headers={"content-type": "image/png"})
    assert response.status == falcon.HTTP_200
    (only,) = response.data["faces"]
    assert only["name"] == "obama"
    assert response.data["image"] == {"width": 910, "height": 1137}  # as displayed


def test_the_shared_rgba_photo_is_recognised(obama_and_biden):
    data = face("people/obama/obama_32bit.png").read_bytes()
    response = hug.test.post(api, "recognize", body=data, headers={"content-type": "image/png"})
    assert [f["name"] for f in response.data["faces"]][:1] == ["obama"]


def test_unknown_routes_get_json_404_without_an_endpoint_listing(env):
    for path in ("/nope", "/app", "/people/x/y", "/documentation"):
        response = hug.test.get(api, path)
        assert response.status == falcon.HTTP_404
        assert response.data == {"errors": {"path": "not_found"}}


def test_unexpected_errors_are_500_json_without_a_trace(env, monkeypatch):
    def explode():
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.get_service(), "health", explode)
    response = hug.test.get(api, "health")
    assert response.status == falcon.HTTP_500
    assert response.data == {"errors": {"server": "internal_error"}}
