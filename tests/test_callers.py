"""What callers expect, over HTTP through hug and the real face pipeline on real photos: every
image form (uploads, raw and octet-stream bodies, base64, data: URIs), bodies the service does
not take, misspelled parameters, codes with details, duplicate enrolment, 1:1 verification,
detection with landmarks and quality, phone-sized photos, CORS, cross-site requests, liveness
and readiness, HEAD, and the documentation routes."""

import base64
import io

import hug
import pytest
from PIL import Image
from werkzeug.test import Client

import api
from conftest import face, png_bytes
from recognizer import verification

pytestmark = pytest.mark.store  # run on both store backends

OBAMA, OBAMA2, BIDEN = "people/obama/obama.jpg", "people/obama/obama2.jpg", "people/biden/biden.jpg"


def client():
    return Client(api.__hug_wsgi__)


def b64(photo: str) -> str:
    return base64.b64encode(face(photo).read_bytes()).decode()


@pytest.fixture
def obama(env):
    enrolled = client().post("/enroll", data={"name": "obama",
                                              "image": (io.BytesIO(face(OBAMA).read_bytes()),
                                                        "o.jpg")})
    assert enrolled.status_code == 201, enrolled.get_json()
    return enrolled.get_json()


def named(response) -> list:
    assert response.status_code == 200, response.get_json()
    return [found["name"] for found in response.get_json()["faces"]]


# -- images in every form ------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["multipart", "raw jpeg", "octet-stream", "json base64",
                                  "json data uri", "json url-safe unpadded", "form data uri",
                                  "multipart data uri", "url data uri"])
def test_an_image_in_every_form_callers_send_is_recognised(obama, form):
    data = face(OBAMA2).read_bytes()
    text = base64.b64encode(data).decode()
    uri = "data:image/jpeg;base64," + text
    c = client()
    sent = {
        "multipart": lambda: c.post("/recognize", data={"image": (io.BytesIO(data), "x.jpg")}),
        "raw jpeg": lambda: c.post("/recognize", data=data, content_type="image/jpeg"),
        "octet-stream": lambda: c.post("/recognize", data=data,
                                       content_type="application/octet-stream"),
        "json base64": lambda: c.post("/recognize", json={"image_base64": text}),
        "json data uri": lambda: c.post("/recognize", json={"image_base64": uri}),
        "json url-safe unpadded": lambda: c.post("/recognize", json={
            "image_base64": base64.urlsafe_b64encode(data).decode().rstrip("=")}),
        "form data uri": lambda: c.post("/recognize", data={"image": uri}),
        "multipart data uri": lambda: c.post("/recognize", data={"image_base64": uri},
                                             content_type="multipart/form-data"),
        "url data uri": lambda: c.post("/recognize", json={"image_url": uri}),
    }[form]()
    assert named(sent) == ["obama"]


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=utf-8",
                                          "application/xml", "application/x-www-form"])
def test_a_body_of_a_type_the_service_does_not_take_is_415_naming_those_it_does(env,
                                                                                 content_type):
    for path in ("/recognize", "/enroll?name=ada", "/verify", "/detect"):
        refused = client().post(path, data=face("misc/two_people.jpg").read_bytes(),
                                content_type=content_type)
        assert refused.status_code == 415, (path, refused.get_data())
        assert refused.get_json()["errors"] == {"body": "unsupported_media_type"}
        assert "multipart/form-data" in refused.get_json()["detail"]["body"]
        assert "application/octet-stream" in refused.get_json()["detail"]["body"]
    rename = client().post("/people/ada/rename", data="new_name=x", content_type="text/plain")
    assert rename.status_code == 415
    assert rename.get_json()["detail"]["body"].endswith(
        "application/json, application/x-www-form-urlencoded")


def test_no_image_names_the_fields_and_types_that_carry_one(env):
    for sent in (client().post("/recognize", data={"file": (io.BytesIO(b"x"), "x.jpg")}),
                 client().get("/recognize"), client().post("/recognize", json={})):
        body = sent.get_json()
        assert sent.status_code == 400
        assert body["errors"] in ({"image": "missing_image"}, {"file": "unknown_parameter"})
    detail = client().get("/recognize").get_json()["detail"]["image"]
    for word in ("image_url", "image_base64", "multipart", "image/*", "application/octet-stream",
                 "data:image/"):
        assert word in detail
    both = client().post("/recognize", json={"image_url": "http://x.example/a.jpg",
                                             "image_base64": b64(OBAMA)})
    assert both.get_json()["errors"] == {"image": "several_images"}


@pytest.mark.parametrize("value, code", [
    ("not base64!!", "invalid_base64"), ("data:text/html;base64,PGI+", "invalid_base64"),
    ("data:image/png,rawtext", "invalid_base64"), ("YWJj\x00", "invalid_base64"),
])
def test_malformed_base64_is_a_400_naming_the_field(env, value, code):
    refused = client().post("/recognize", json={"image_base64": value})
    assert refused.status_code == 400
    assert refused.get_json()["errors"] == {"image_base64": code}


def test_base64_is_held_to_the_byte_limit_before_and_after_decoding(reconfigure):
    reconfigure(max_image_bytes=20_000)
    big = base64.b64encode(b"\xff" * 30_000).decode()
    refused = client().post("/recognize", json={"image_base64": big})
    assert refused.status_code == 413
    assert refused.get_json() == {"errors": {"image_base64": "image_too_large"},
                                  "detail": {"image_base64": "bytes: at most 20000"}}
    just_over = base64.b64encode(b"\xff" * 20_001).decode()  # its text is under the text limit
    assert client().post("/recognize", json={"image_base64": just_over}).status_code == 413


def test_a_50_megapixel_phone_photo_is_decoded_at_a_reduced_size(env, tmp_path):
    """Pillow's draft() decodes a JPEG at 1/2: 50 MP never become 150 MB of pixels, the boxes
    come back in the photo's own pixels, and the pixel cap applies to what is decoded."""
    small = Image.open(face(OBAMA)).convert("RGB")
    big = small.resize((small.width * 7, small.height * 7))  # 6370 x 7959, 50.7 MP
    data = png_bytes(big, format="JPEG", quality=85)
    assert len(data) < 32 * 1024 * 1024
    recognised = client().post("/recognize", data=data, content_type="image/jpeg").get_json()
    assert recognised["image"] == {"width": 6370, "height": 7959}
    ((found,),) = [recognised["faces"]]
    small_box = client().post("/recognize", data=face(OBAMA).read_bytes(),
                              content_type="image/jpeg").get_json()["faces"][0]["box"]
    for side in ("top", "right", "bottom", "left"):
        assert abs(found["box"][side] - 7 * small_box[side]) < 7 * 12
    as_png = png_bytes(big.resize((6000, 7000)))  # 42 MP: no DCT scaling for PNG
    refused = client().post("/recognize", data=as_png, content_type="image/png")
    assert refused.status_code == 413
    assert refused.get_json()["detail"]["image"] == "pixels: at most 40000000"


# -- parameters and errors ---------------------------------------------------------------------


@pytest.mark.parametrize("path, params, field", [
    ("/recognize", {"tolerence": "0.3"}, "tolerence"), ("/recognize", {"url": "x"}, "url"),
    ("/people", {"sise": "5"}, "sise"), ("/enroll", {"nmae": "x"}, "nmae"),
])
def test_a_misspelled_parameter_is_refused_naming_it_and_the_accepted_ones(obama, path, params,
                                                                           field):
    sent = dict(params, image_url="http://example.invalid/x.jpg") if path != "/people" else params
    if path == "/enroll":
        sent["name"] = "x"
    refused = client().get(path, query_string=sent)
    assert refused.status_code == 400, refused.get_json()
    assert refused.get_json()["errors"] == {field: "unknown_parameter"}
    assert refused.get_json()["detail"][field].startswith("accepted: ")
    body = client().post("/recognize", json={"image_url": "http://x.example/a.jpg",
                                             "tolerence": 0.3})
    assert body.get_json()["errors"] == {"tolerence": "unknown_parameter"}


@pytest.mark.parametrize("query, field, code, detail", [
    ({"top_k": "50"}, "top_k", "out_of_range", "a whole number from 1 to 10"),
    ({"tolerance": "2"}, "tolerance", "out_of_range", "a number > 0 and <= 1"),
    ({"model": "resnet"}, "model", "invalid_value", "hog or cnn"),
    ({"upsample": "x"}, "upsample", "out_of_range", "a whole number from 0 to 2"),
])
def test_every_refusal_is_a_stable_code_with_a_detail(env, query, field, code, detail):
    refused = client().get("/recognize", query_string=dict(query, image_url="http://x.example/a"))
    assert refused.status_code == 400
    assert refused.get_json() == {"errors": {field: code}, "detail": {field: detail}}


def test_a_missing_parameter_is_a_code_and_invalid_names_state_the_rule(env):
    missing = client().get("/enroll", query_string={"image_url": "http://x.example/a.jpg"})
    assert missing.get_json() == {"errors": {"name": "missing_parameter"}}
    bad = client().get("/enroll", query_string={"name": "a\u202eb", "image_url": "http://x/a"})
    assert bad.get_json()["errors"] == {"name": "invalid_name"}
    assert "letters, digits" in bad.get_json()["detail"]["name"]


def test_a_comma_is_allowed_in_names_and_invisible_or_direction_characters_are_not(env):
    enrolled = client().post("/enroll", data={"name": "Martin Luther King, Jr.", "image": (
        io.BytesIO(face(OBAMA).read_bytes()), "o.jpg")})
    assert enrolled.status_code == 201 and enrolled.get_json()["name"] == "Martin Luther King, Jr."
    by_query = client().get("/people/Martin Luther King, Jr.?")  # a literal comma, unencoded
    assert by_query.status_code == 200 and by_query.get_json()["name"] == "Martin Luther King, Jr."
    query = client().get("/verify?name=Martin Luther King, Jr.&image_base64=" + b64(OBAMA2)
                         .replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"))
    assert query.status_code == 200 and query.get_json()["other"] == {
        "name": "Martin Luther King, Jr."}
    for name in ("ab\u200bcd", "\u202eevil", "tab\there", "a\u0000b", "zero\ufeffwidth"):
        refused = client().get("/enroll", query_string={"name": name, "image_url": "http://x/a"})
        assert refused.get_json()["errors"] == {"name": "invalid_name"}, name


# -- enrolment ----------------------------------------------------------------------------------


def test_the_same_image_enrolled_twice_adds_nothing_and_says_so(obama):
    again = client().post("/enroll", json={"name": "obama", "image_base64": b64(OBAMA)})
    assert again.status_code == 200
    assert again.get_json() == {"name": "obama", "face_id": obama["face_id"], "face_count": 1,
                                "warnings": [], "duplicate": True}
    other = client().post("/enroll", json={"name": "obama", "image_base64": b64(OBAMA2)})
    assert other.status_code == 201 and other.get_json()["face_count"] == 2
    elsewhere = client().post("/enroll", json={"name": "barack", "image_base64": b64(OBAMA)})
    assert elsewhere.status_code == 201 and not elsewhere.get_json()["duplicate"]


# -- /verify and /detect ----------------------------------------------------------------------


def test_verify_two_images(env):
    same = client().post("/verify", json={"image_base64": b64(OBAMA),
                                          "other_image_base64": b64(OBAMA2)}).get_json()
    assert same["same_person"] is True and same["distance"] < verification.THRESHOLD
    assert same["probability"] > 0.9 and same["threshold"] == verification.THRESHOLD
    assert set(same["face"]["box"]) == set(same["other"]["box"]) == {
        "top", "right", "bottom", "left"}
    different = client().post("/verify", data={
        "image": (io.BytesIO(face(OBAMA).read_bytes()), "a.jpg"),
        "other_image": (io.BytesIO(face(BIDEN).read_bytes()), "b.jpg")}).get_json()
    assert different["same_person"] is False and different["probability"] < 0.1


def test_verify_a_face_against_an_enrolled_person(obama):
    answer = client().post("/verify", json={"name": "obama", "image_base64": b64(OBAMA2)})
    assert answer.status_code == 200
    assert answer.get_json()["same_person"] is True and answer.get_json()["other"] == {
        "name": "obama"}
    assert answer.get_json()["threshold"] == verification.PERSON_THRESHOLD
    assert client().post("/verify", json={"name": "obama", "image_base64": b64(BIDEN)}
                         ).get_json()["same_person"] is False
    unknown = client().post("/verify", json={"name": "nobody", "image_base64": b64(OBAMA2)})
    assert unknown.status_code == 404 and unknown.get_json() == {
        "errors": {"name": "unknown_person"}}


def test_verify_refuses_several_faces_unless_asked_for_the_largest(env):
    group = base64.b64encode(face("misc/two_people.jpg").read_bytes()).decode()
    refused = client().post("/verify", json={"image_base64": group,
                                             "other_image_base64": b64(OBAMA)})
    assert refused.status_code == 422
    assert refused.get_json() == {"errors": {"image": "multiple_faces"}}
    second = client().post("/verify", json={"image_base64": b64(OBAMA),
                                            "other_image_base64": group})
    assert second.get_json() == {"errors": {"other_image": "multiple_faces"}}
    largest = client().post("/verify", json={"image_base64": group, "largest_face": True,
                                             "other_image_base64": b64(OBAMA)})
    assert largest.status_code == 200
    neither = client().post("/verify", json={"image_base64": b64(OBAMA)})
    assert neither.status_code == 400 and neither.get_json()["errors"] == {
        "name": "missing_parameter"}


def test_detect_gives_boxes_landmarks_and_the_quality_gate_without_the_store(env):
    found = client().post("/detect", data=face("misc/two_people.jpg").read_bytes(),
                          content_type="image/jpeg").get_json()
    assert len(found["faces"]) == 2
    for each in found["faces"]:
        assert len(each["landmarks"]["five"]) == 5 and len(each["landmarks"]["sixty_eight"]) == 68
        box = each["box"]
        for x, y in each["landmarks"]["sixty_eight"][36:48]:  # the eyes lie inside the box
            assert box["left"] <= x <= box["right"] and box["top"] <= y <= box["bottom"]
        assert each["quality"]["enrollable"] is True and each["quality"]["problems"] == []
        assert abs(each["quality"]["yaw"]) < 30 and each["quality"]["width"] > 60
    blurred = Image.open(face(OBAMA)).convert("RGB").filter(
        __import__("PIL.ImageFilter", fromlist=["x"]).GaussianBlur(10))
    verdict = client().post("/detect", data=png_bytes(blurred), content_type="image/png"
                            ).get_json()["faces"][0]["quality"]
    assert verdict["enrollable"] is False and verdict["problems"] == ["blurry"]
    assert hug.test.get(api, "health").data["person_count"] == 0


# -- browsers, liveness, documentation ----------------------------------------------------------


def test_cors_only_for_the_origins_listed(reconfigure):
    reconfigure(cors_origins="https://app.example.com")
    allowed = client().options("/recognize", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key, content-type"})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "X-API-Key" in allowed.headers["Access-Control-Allow-Headers"]
    other = client().options("/recognize", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers
    answer = client().get("/health", headers={"Origin": "https://app.example.com"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Origin" in answer.headers["Vary"]
    assert "Access-Control-Allow-Origin" not in client().get(
        "/health", headers={"Origin": "https://evil.example"}).headers


def test_a_page_on_another_site_cannot_change_data_through_a_visitors_browser(reconfigure):
    reconfigure(cors_origins="https://app.example.com")
    photo = {"name": "ada", "image": (io.BytesIO(face(OBAMA).read_bytes()), "o.jpg")}
    refused = client().post("/enroll", data=photo, headers={
        "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert refused.get_json() == {"errors": {"origin": "cross_site_request"}}
    assert client().get("/enroll", query_string={"name": "ada", "image_url": "http://x/a"},
                        headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert hug.test.get(api, "people").data["total"] == 0
    # reading is fine, and so are the service's own pages and the listed origin
    assert client().get("/people", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
    photo = {"name": "ada", "image": (io.BytesIO(face(OBAMA).read_bytes()), "o.jpg")}
    assert client().post("/enroll", data=photo, headers={
        "Sec-Fetch-Site": "same-origin"}).status_code == 201
    photo = {"name": "bo", "image": (io.BytesIO(face(OBAMA2).read_bytes()), "o.jpg")}
    assert client().post("/enroll", data=photo, headers={
        "Sec-Fetch-Site": "cross-site", "Origin": "https://app.example.com"}).status_code == 201


def test_health_ready_and_head(reconfigure, obama):
    assert client().get("/health").get_json() == {"status": "ok", "person_count": 1,
                                                  "face_count": 1}
    ready = client().get("/ready")
    assert ready.status_code == 200 and ready.get_json() == {
        "ready": True, "models_loaded": True, "store_reachable": True}
    for path in ("/health", "/ready", "/people", "/openapi.json", "/docs"):
        head = client().head(path)
        assert head.status_code == client().get(path).status_code == 200, path
        assert head.get_data() == b""
    reconfigure(api_keys="r-0123456789:read")
    assert client().get("/health").get_json() == {"status": "ok"}  # no counts without a key


def test_swagger_ui_and_both_forms_of_the_description(env):
    page = client().get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert b"<script>" not in page.get_data()  # no inline script
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js"):
        assert client().get(f"/docs/{asset}").status_code == 200
    assert client().get("/docs/..%2Fapi.py").status_code == 404
    yaml_text = client().get("/openapi.yaml")
    assert yaml_text.mimetype == "application/yaml"
    import yaml

    spec = yaml.safe_load(yaml_text.get_data())
    assert spec == client().get("/openapi.json").get_json()
    assert spec["servers"][0]["url"]
