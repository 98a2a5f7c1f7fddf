"""The HTTP contract: openapi.yaml is valid OpenAPI, is what GET /openapi.json and
/openapi.yaml serve, names every route hug knows (HEAD, which hug answers wherever GET is, is
said once in the description, not listed), and the running service conforms to it under
schemathesis.

How schemathesis is wired (schemathesis 4, in process, no network):

- The published spec is fetched from the service itself (``GET /openapi.json``) and a test-only
  deep copy is made in which ``components.schemas.ImageUrl`` (the one schema every ``image_url``
  and ``other_image_url``, in the query and in bodies, refers to) becomes ``{"type": "string",
  "enum": [...]}`` of URLs on the local pytest-httpserver: a real face photo, a photo without a
  face, an HTML page and a URL that answers 404. The ``image_url`` and ``other_image_url`` values
  in the spec's own examples are pointed at the face photo. In the same way
  ``components.schemas.StreamSource`` and ``WebhookUrl`` become enums of sources and webhook URLs
  on 127.0.0.1 (and a camera index), which the runs allow (``LIVE_NETWORKS``:
  FACEREC_STREAM_NETWORKS and FACEREC_WEBHOOK_NETWORKS are 127.0.0.0/8), and the request bodies'
  examples use them; nothing connects to them, since no stream runner or webhook delivery runs
  in process. And the two long-lived operations, marked ``x-long-lived: true`` in the spec (the
  event feed, GET /events/stream, and a live view, GET /streams/{stream_id}/live, whose answers
  never end), are left out of the copy: schemathesis reads every answer to its end. They are
  tested on their own (the tests after the runs: their errors, 401 and 429 against the spec,
  and the first parts of their answers read as a server sends them); over real HTTP in
  tests/test_streams.py. The CompreFace and DeepStack surfaces' image files (``CompatUpload``)
  and a webcam session's frame files (``FrameUpload``) are drawn from the face photo and the
  photo without a face, as their clients send them (random bytes would only ever be refused),
  and a frame's JSON example is the face photo; a session's id in a path is the session the
  run opened (the example) or one of this host's never opened (a schema-valid id of another
  host is a 421, checked on its own); and the examples of their operations that delete
  or rename are pointed at people and a face the test enrolled for them (``enrol_compat``), so
  that every operation has a request that succeeds. Nothing else differs: base64 and ``data:``
  URIs are generated from the published patterns (which are exactly what the service decodes),
  so they reach the decoder and get 415 there.
- Before the open and the admin runs, the store holds what the spec's examples name:
  ``enrol_two``'s people, and ``seed_live``'s streams, events (unknown faces', one with its
  snapshot, and Rose Leslie's, one of them with the face that named it) and webhook; and the
  process holds ``seed_session``'s webcam session, with a face in view (its idle time and the
  limit of sessions raised for the run, whose 503 is checked on its own).
- ``schema.app = api.__hug_wsgi__``: every case is sent through werkzeug's WSGI client straight
  into hug, with the service in an isolated store (the ``env`` fixture).
- Every default check runs: not_a_server_error, status_code_conformance,
  content_type_conformance, response_headers_conformance, response_schema_conformance,
  positive_data_acceptance, negative_data_rejection, missing_required_header,
  unsupported_method, ignored_auth (...). Two adjustments, both explicit below:
  ``positive_data_acceptance`` also accepts 400/413/415/422, because whether bytes are a
  decodable image holding one usable face, whether a URL can be fetched, and rules across
  locations (exactly one image in the query and the body; ``name`` in either; /verify's name or
  second image) are beyond a schema; in exchange the extra check ``refused_only_for_their_image``
  fails any schema-valid request refused for any other field, or for its image with a code that
  means the spec and the service disagree about a value (``invalid_base64``, ``wrong_type``,
  ...); the one other rule across parameters it lets pass is GET /events' ``unknown=true`` with
  ``person`` (documented, a 400 on ``unknown``). A schema-valid POST /streams may get 409
  ``name_taken`` (the same name generated twice), never a 400. ``ignored_auth`` is off only for
  the open service, which ignores keys by configuration (documented in the spec).
- Two schema-local hooks keep the run honest and bounded. Skipped: a negative case whose
  invalid query parameter is also given, valid, in the body (the body's value wins, as the spec
  says, so that request is valid; a raw image body is the ``image``); a negative form whose invalid values a form cannot carry
  (``null`` is sent as the text "null", an empty list as no field: ``_valid_as_sent``); a
  "valid" case holding an unassigned character (schemathesis
  4.32.5 generates ``\\p{M}`` from whole Unicode blocks, so such a name breaks the very pattern
  it was generated from). And a valid case with ``model=cnn`` is sent without upsampling (cnn
  with upsampling costs 1-9 s a photo on 2 cores).
- werkzeug 3.1's test client writes an empty multipart part without the blank line after its
  headers; the autouse fixture werkzeug_encodes_empty_parts sends it, as real clients do.
- Deterministic (``derandomize``, fixed seed), no example database, no shrinking, a bounded
  number of examples per operation; rate limiting is off (``FACEREC_RATE_LIMIT=0``) so that every
  answer depends on the request alone. 429 is checked on its own below.
- The QUERY method is left out of the coverage phase's undeclared-method probes: falcon answers
  400 to every method it does not know, which test_a_method_falcon_does_not_know_gets_405_too
  reproduces on its own (in the generated runs it would mask every other check). HEAD is left
  out too: it is answered wherever GET is (test_head_is_answered_wherever_get_is).
- schemathesis 4.32.5's own pytest integration (``from_fixture(...).parametrize()``) sets
  ``Node._nodeid``, which pytest 9.2 no longer has; run_schemathesis builds the very same
  per-operation tests (``schemathesis.pytest.lazy.get_all_tests``) and runs each as a subtest.

Service bugs found while writing the spec are reproduced at the end, each as its own test.
"""

import base64
import copy
import functools
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import unicodedata
import urllib.parse

import jsonschema_rs
import numpy as np
import pytest
import schemathesis
import yaml
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import Client

import api
from conftest import ROOT, face, no_face_image
from recognizer import compat, limits, uploads
from recognizer.store.streams import NewEvent
from recognizer.web.scopes import declared

SPEC = ROOT / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ADMIN_KEY, READ_KEY = "a", "r"
KEYS = f"{READ_KEY}:read,{ADMIN_KEY}:admin"
SEED = 20241129
HUG_INJECTS = {"request", "response", "body"}  # what hug gives a route that names them
MULTIPART_PARTS = 16  # the parts of a multipart form the service reads (uploads.read_multipart)
FACE_PHOTO = "people/obama/obama_small.jpg"  # 320x240, one 107-px face: quick, and enrollable
NEVER_OPENED = f"{socket.gethostname()}.AAAAAAAAAAAAAAAA"  # a session id of this host's


@pytest.fixture(autouse=True)
def werkzeug_encodes_empty_parts(monkeypatch):
    """werkzeug 3.1's test client leaves out the blank line after the headers of an empty
    multipart part (MultipartEncoder.send_event returns b"" for empty first data), so every
    form it sends with an empty field or file is malformed (400 malformed_multipart). Send the
    blank line, as RFC 7578 and every real client do."""
    from werkzeug.sansio import multipart

    original = multipart.MultipartEncoder.send_event

    def send_event(self, event):
        if (isinstance(event, multipart.Data) and self.state == multipart.State.DATA_START
                and not event.data):
            self.state = multipart.State.DATA
            return b"\r\n"
        return original(self, event)

    monkeypatch.setattr(multipart.MultipartEncoder, "send_event", send_event)


def published() -> dict:
    with open(SPEC, encoding="utf-8") as spec:
        return yaml.safe_load(spec)


def client() -> Client:
    return Client(api.__hug_wsgi__)


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def resolve(spec: dict, node):
    """Follow a local $ref (repeatedly) to the node it names."""
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def walk(node):
    """Every dict inside a parsed document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# -- the document itself ------------------------------------------------------------------------


def test_the_spec_is_valid_openapi_and_every_reference_resolves():
    spec = published()
    schemathesis.openapi.from_dict(spec).validate()  # the OpenAPI 3.0 meta-schema
    refs = [node["$ref"] for node in walk(spec) if "$ref" in node]
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        resolve(spec, {"$ref": ref})
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids))


def test_openapi_json_and_yaml_serve_the_spec_even_to_a_caller_without_a_key(reconfigure):
    reconfigure(api_keys=KEYS)
    response = client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert json.loads(response.get_data()) == published()
    as_written = client().get("/openapi.yaml")
    assert as_written.status_code == 200
    assert as_written.mimetype == "application/yaml"
    assert as_written.get_data() == SPEC.read_bytes()


def test_person_names_keep_out_the_invisible_letters_and_marks_the_service_refuses():
    """PersonName's pattern admits letters, marks and digits of any script; the service refuses
    the default-ignorable ones among them (names.DEFAULT_IGNORABLE: fillers, variation
    selectors, the combining grapheme joiner), and so does the pattern (those of the BMP: a
    pattern cannot name the others portably)."""
    from recognizer.errors import InvalidParameter
    from recognizer.names import DEFAULT_IGNORABLE, check_name

    pattern = published()["components"]["schemas"]["PersonName"]["pattern"]
    validator = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    invisible = [chr(point) for low, high in DEFAULT_IGNORABLE if high < 0x10000
                 for point in range(low, high + 1)
                 if unicodedata.category(chr(point))[0] in "LMN"]
    assert invisible  # (the fillers and joiners are there to test)
    for character in invisible:
        with pytest.raises(InvalidParameter):
            check_name(f"A{character}b")
        assert not validator.is_valid(f"A{character}b"), hex(ord(character))
    assert validator.is_valid("Martin Luther King, Jr.") and validator.is_valid("Zoë")


def test_the_spec_has_a_server_postman_can_import():
    (server,) = published()["servers"]
    assert server["url"] == "http://{host}:{port}"
    assert {name: variable["default"] for name, variable in server["variables"].items()} == {
        "host": "localhost", "port": "8000"}


def _hug_routes() -> dict[tuple[str, str], object]:
    routes = {}
    for paths in api.__hug__.http.routes.values():
        for path, methods in paths.items():
            for method, versions in methods.items():
                (interface,) = {id(i): i for i in versions.values()}.values()
                routes[(method, path)] = interface
    return routes


def test_the_spec_and_hug_know_the_same_routes():
    """Every route hug knows is an operation of the spec, but HEAD: hug answers it wherever GET
    is (recognizer.web.routes adds it to every GET route), and the spec says so once, in its
    description, instead of listing a HEAD operation beside every GET."""
    known = set(_hug_routes())
    head = {(method, path) for method, path in known if method == "HEAD"}
    assert head == {("HEAD", path) for method, path in known if method == "GET"}
    documented = {(method, path) for method, path, _ in operations(published())}
    assert known - head == documented
    assert "**HEAD** is answered wherever `GET` is" in published()["info"]["description"]


def _example_path(path: str) -> str:
    if path.startswith("/app/"):
        path = path.replace("{asset}", "main.js")
    for parameter, value in (("{name}", "Nobody"), ("{face_id}", "1"), ("{stream_id}", "1"),
                             ("{event_id}", "1"), ("{webhook_id}", "1"), ("{image_id}", "1"),
                             ("{subject_name}", "Nobody"), ("{asset}", "swagger-ui.css"),
                             ("{session_id}", NEVER_OPENED), ("{track}", "1")):
        path = path.replace(parameter, value)
    return path


@pytest.mark.parametrize("path", sorted(path for method, path, _ in operations(published())
                                        if method == "GET"))
def test_head_is_answered_wherever_get_is(env, path):
    """HEAD gets the status and headers GET would, and no body. (GET /events/stream never ends:
    the client reads only its first part, and it is closed; HEAD of a live view that runs is
    test_a_live_view_on_the_runner_s_host_sends_jpeg_parts_as_documented's.)"""
    got, head = client().get(_example_path(path)), client().head(_example_path(path))
    got.close()
    assert head.status_code == got.status_code
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert head.get_data() == b""


def _documented_parameters(spec: dict, operation: dict) -> tuple[set[str], set[str]]:
    """(every parameter name, the names required) of an operation: query, path and body (not
    headers: hug does not take them as parameters)."""
    names, required = set(), set()
    for parameter in operation.get("parameters", []):
        parameter = resolve(spec, parameter)
        if parameter["in"] == "header":
            continue
        names.add(parameter["name"])
        if parameter.get("required"):
            required.add(parameter["name"])
    body = resolve(spec, operation.get("requestBody", {}))
    for media in body.get("content", {}).values():
        schema = resolve(spec, media["schema"])
        names |= set(schema.get("properties", {}))
    return names, required


def test_every_parameter_hug_takes_is_documented_and_no_other():
    spec = published()
    routes = _hug_routes()
    for method, path, operation in operations(spec):
        interface = routes[(method, path)]
        takes = set(interface.parameters) - set(interface.directives) - HUG_INJECTS
        names, required = _documented_parameters(spec, operation)
        assert names == takes, (method, path)
        if method != "POST":  # POST may take a required parameter from the query or the body
            hug_required = set(interface.required) - set(interface.directives) - HUG_INJECTS
            in_path = {parameter["name"] for parameter in
                       (resolve(spec, p) for p in operation.get("parameters", []))
                       if parameter["in"] == "path"}
            assert required == hug_required | in_path, (method, path)


def test_the_one_header_a_route_reads_is_documented():
    """Only a route that takes the request can read a header of its own (X-API-Key and CORS's
    are the middleware's): the event feed, which reads Last-Event-ID. (DeepStack's routes take
    the request too, for the api_key form field their clients send: a body field, documented
    in their bodies.)"""
    spec = published()
    headers = {(method, path, resolve(spec, parameter)["name"])
               for method, path, operation in operations(spec)
               for parameter in operation.get("parameters", [])
               if resolve(spec, parameter)["in"] == "header"}
    assert headers == {("GET", "/events/stream", "Last-Event-ID")}
    assert {route for route, interface in _hug_routes().items() if route[0] != "HEAD"
            and "request" in interface.parameters
            and not route[1].startswith("/v1/vision/face")} == {("GET", "/events/stream")}


def test_open_paths_and_scopes_are_declared():
    spec = published()
    assert spec["security"] == [{"ApiKey": []}]
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        **spec["components"]["securitySchemes"]["ApiKey"],
        "type": "apiKey", "in": "header", "name": "X-API-Key"}
    routes = _hug_routes()
    for method, path, operation in operations(spec):
        (scope,) = declared(routes[(method, path)].requires)  # what the route declares
        if scope is None:
            assert operation["security"] == [] and "429" not in operation["responses"]
        else:
            assert operation["x-required-scope"] == scope
            assert "security" not in operation
            assert {"401", "429"} <= set(operation["responses"])
            assert ("403" in operation["responses"]) == (scope == "admin")


def _edges(schema: dict) -> list[tuple[object, bool]]:
    """(value, valid) just inside and just outside a schema's bounds, read from the spec."""
    if "enum" in schema:
        return [(value, True) for value in schema["enum"]] + [(schema["enum"][0].upper(), False)]
    if "pattern" in schema and "maxLength" not in schema:  # Flag
        return [("TRUE", True), ("off", True), ("1", True), ("0", True), (" Yes ", True),
                ("On", True), ("no", True), ("t", False), ("f", False), ("2", False),
                ("y", False)]
    if schema["type"] == "string":
        longest = schema["maxLength"]
        return [("a" * longest, True), ("a" * (longest + 1), False), ("a-", True), ("-", False)]
    low, high = schema["minimum"], schema["maximum"]
    step = 1 if schema["type"] == "integer" else 1e-9
    edges = [(high, True), (high + step, False)]
    if schema.get("exclusiveMinimum"):
        return edges + [(low + step, True), (low, False)]
    return edges + [(low, True), (low - step, False)]


@pytest.mark.parametrize("path, parameter", [
    ("/recognize", "tolerance"), ("/recognize", "top_k"), ("/recognize", "model"),
    ("/recognize", "upsample"), ("/enroll", "name"), ("/enroll", "largest_face"),
    ("/enroll", "force"), ("/verify", "name"), ("/verify", "largest_face"),
    ("/detect", "model"), ("/detect", "upsample")])
def test_the_specs_bounds_are_the_services(env, path, parameter):
    """Just inside every documented bound is accepted, just outside refused, naming the
    parameter. (schemathesis 4.32.5 exempts such query values in its coverage phase from
    negative_data_rejection, so they are checked here.)"""
    spec = published()
    (documented,) = [resolve(spec, p) for p in spec["paths"][path]["get"]["parameters"]
                     if resolve(spec, p)["name"] == parameter]
    for value, valid in _edges(resolve(spec, documented["schema"])):
        query = {"image_url": "ftp://refused.before.any.network", parameter: value}
        if path == "/enroll" and parameter != "name":
            query["name"] = "someone"
        response = client().get(path, query_string=query)
        assert response.status_code == 400
        assert (parameter not in response.get_json()["errors"]) == valid, (value, response.data)


LIVE_BOUNDS = [
    ("GET", "/events", "since_id", limits.EVENT_ID),
    ("GET", "/events", "limit", limits.EVENT_LIMIT),
    ("GET", "/events", "stream", limits.FACE_ID), ("GET", "/events", "person", None),
    ("GET", "/events", "unknown", None), ("GET", "/events/stream", "since_id", limits.EVENT_ID),
    ("GET", "/events/stream", "stream", limits.FACE_ID),
    ("GET", "/streams/{stream_id}/live", "fps", limits.LIVE_FPS),
    ("GET", "/streams/{stream_id}", "stream_id", limits.FACE_ID),
    ("GET", "/events/{event_id}/snapshot", "event_id", limits.FACE_ID),
    ("GET", "/webhooks/{webhook_id}", "webhook_id", limits.FACE_ID),
    ("POST", "/streams", "every", limits.VIDEO_EVERY),
    ("POST", "/streams", "scale", limits.VIDEO_SCALE),
    ("POST", "/streams", "tolerance", limits.TOLERANCE)]


def _live_request(method: str, path: str, parameter: str, value):
    """The request with just the parameter (a stream's name and a refused source besides)."""
    if method == "POST":
        return client().post(path, json={"name": "door", "source": "ftp://refused.example",
                                         parameter: value})
    if "{" + parameter + "}" in path:
        return client().get(path.replace("{" + parameter + "}", str(value)))
    return client().get(_example_path(path), query_string={parameter: value})


@pytest.mark.parametrize("method, path, parameter, bound", LIVE_BOUNDS)
def test_the_live_routes_bounds_are_limits_py_s_and_the_services(env, method, path, parameter,
                                                                  bound):
    """The spec's bounds are those limits.py declares; just inside them is accepted, just
    outside refused naming the parameter (a feed accepted is not read)."""
    spec = published()
    operation = spec["paths"][path][method.lower()]
    if method == "POST":
        body = resolve(spec, operation["requestBody"])["content"]["application/json"]
        schema = resolve(spec, resolve(spec, body["schema"])["properties"][parameter])
    else:
        (documented,) = [resolve(spec, p) for p in operation["parameters"]
                         if resolve(spec, p)["name"] == parameter]
        schema = resolve(spec, documented["schema"])
    if bound is not None:
        assert (schema["minimum"], schema["maximum"]) == (bound.low, bound.high)
        assert schema.get("exclusiveMinimum", False) == bound.above
        assert schema["type"] == ("integer" if bound.whole else "number")
    for value, valid in _edges(schema):
        response = _live_request(method, path, parameter, value)
        if response.mimetype == "text/event-stream":
            response.close()
            assert valid, value
            continue
        assert response.status_code in (200, 400, 404), response.get_data()
        refused = response.status_code == 400 and parameter in response.get_json()["errors"]
        assert refused != valid, (value, response.get_json())


# -- answers the generated runs do not reach: 403, 405, unknown paths, 413, 429, 500 ------------


def _validator(spec: dict, response_name: str):
    response = spec["components"]["responses"][response_name]
    schema = resolve(spec, response["content"]["application/json"]["schema"])
    return jsonschema_rs.Draft4Validator(schema), response


def _check_headers(spec: dict, documented: dict, headers) -> None:
    for name, header in documented.get("headers", {}).items():
        header = resolve(spec, header)
        value = headers.get(name)
        assert value is not None or not header.get("required"), name
        if value is not None and "enum" in header["schema"]:
            assert value in header["schema"]["enum"], (name, value)


@pytest.mark.parametrize("method, path", [
    ("POST", "/health"), ("DELETE", "/recognize"), ("PUT", "/enroll"), ("POST", "/people"),
    ("PUT", "/people/someone"), ("GET", "/people/someone/rename"),
    ("GET", "/people/someone/faces/1"), ("PATCH", "/openapi.json")])
def test_an_unsupported_method_gets_the_documented_405(env, method, path):
    spec = published()
    validator, documented = _validator(spec, "MethodNotAllowed")
    response = client().open(path, method=method)
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    validator.validate(response.get_json())
    _check_headers(spec, documented, response.headers)
    assert method not in response.headers["Allow"]


@pytest.mark.parametrize("path", ["/nope", "/app", "/app/x/y", "/people/a%2Fb", "/people/x/y"])
def test_an_unknown_path_gets_the_documented_404(env, path):
    spec = published()
    validator, documented = _validator(spec, "NotFound")
    response = client().open(path, method="DELETE" if path.startswith("/people/") else "GET")
    assert response.status_code == 404 and response.mimetype == "application/json"
    validator.validate(response.get_json())
    assert response.get_json() == {"errors": {"path": "not_found"}}
    _check_headers(spec, documented, response.headers)


def _conformance_checks():
    """The schemathesis checks that judge whether an answer is the documented one."""
    return [status_code_conformance, content_type_conformance, response_headers_conformance,
            response_schema_conformance]


def _served_schema():
    """The spec as the service serves it, bound to the WSGI app."""
    return schemathesis.openapi.from_wsgi("/openapi.json", api.__hug_wsgi__)


def _documented(method: str, path: str, response) -> None:
    """The answer is one the spec documents for this operation (status, type, body, headers)."""
    operation = _served_schema()[path][method]
    case = operation.Case(media_type="application/json")
    case.validate_response(response, checks=_conformance_checks())


def test_the_rate_limit_answers_the_documented_429_with_retry_after(reconfigure):
    reconfigure(api_keys=KEYS, rate_limit="0.01", rate_burst="1")
    schema = _served_schema()
    case = schema["/people"]["GET"].Case(headers={"X-API-Key": READ_KEY})
    assert case.call().status_code == 200
    limited = case.call()
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"][0]) >= 1
    case.validate_response(limited, checks=_conformance_checks())
    # the open paths are never rate limited
    assert schema["/health"]["GET"].Case().call().status_code == 200


@pytest.mark.parametrize("key, status", [(None, 401), ("wrong", 401), (READ_KEY, 403)])
def test_refused_keys_get_the_documented_401_and_403(reconfigure, key, status):
    reconfigure(api_keys=KEYS, rate_limit="0", auth_failures="0")  # (it sends wrong keys)
    schema = _served_schema()
    headers = {"X-API-Key": key} if key else {}
    case = schema["/people/{name}"]["DELETE"].Case(path_parameters={"name": "x"},
                                                   headers=headers)
    response = case.call()
    assert response.status_code == status
    case.validate_response(response, checks=_conformance_checks())


def test_a_key_in_the_query_gets_the_documented_401_on_open_paths_too(env):
    schema = _served_schema()
    case = schema["/health"]["GET"].Case(query={"api_key": "a"})
    response = case.call()
    assert response.status_code == 401
    case.validate_response(response, checks=_conformance_checks())


IMAGE_PATHS = [("/recognize", {}), ("/enroll", {"name": "someone"}), ("/detect", {}),
               ("/verify", {"name": "someone"})]


@pytest.mark.parametrize("path, fields", IMAGE_PATHS)
def test_several_images_or_none_get_the_documented_400(env, serve, path, fields):
    url = serve(no_face_image(), "/no_face.png", "image/png")
    text = base64.b64encode(no_face_image()).decode()
    sent = [
        client().post(path, data={**fields, "image_url": url,
                                  "image": (io.BytesIO(no_face_image()), "x.png")},
                      content_type="multipart/form-data"),
        client().post(path, json={**fields, "image_url": url, "image_base64": text}),
        client().post(path, query_string={"image_base64": text}, json={**fields, "image_url": url}),
        client().post(path, query_string={**fields, "image_url": url}, data=no_face_image(),
                      content_type="application/octet-stream"),
    ]
    for response in filter(None, sent):
        assert response.status_code == 400
        body = response.get_json()
        assert body["errors"] == {"image": "several_images"}, body
        assert "image_base64" in body["detail"]["image"]
        _documented("POST", path, response)
    none = client().get(path, query_string=fields)
    assert none.status_code == 400 and none.get_json()["errors"] == {"image": "missing_image"}
    _documented("GET", path, none)


@pytest.mark.parametrize("path, fields", IMAGE_PATHS)
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_a_body_of_a_type_the_route_does_not_read_gets_the_documented_415(env, path, fields,
                                                                        content_type):
    """A body without a content type too (it was a 500, then silently ignored)."""
    response = client().post(path, query_string=fields, data=b"abc", content_type=content_type)
    assert response.status_code == 415, response.get_data()
    assert response.get_json()["errors"] == {"body": "unsupported_media_type"}
    assert response.get_json()["detail"]["body"].startswith("send one of: multipart/form-data")
    _documented("POST", path, response)
    renamed = client().post("/people/someone/rename", data=b"new_name=x",
                            content_type=content_type)
    assert renamed.status_code == 415
    _documented("POST", "/people/{name}/rename", renamed)


@pytest.mark.parametrize("path, query", [
    ("/recognize", {"tolerence": "0.5"}), ("/people", {"sise": "5"}), ("/health", {"x": "1"}),
    ("/openapi.json", {"x": "1"}), ("/people/{name}", {"x": "1"})])
def test_a_parameter_the_route_does_not_take_gets_the_documented_400(env, path, query):
    response = client().get(_example_path(path), query_string=query)
    assert response.status_code == 400
    ((name, _),) = query.items()
    assert response.get_json()["errors"] == {name: "unknown_parameter"}
    assert response.get_json()["detail"][name].startswith("accepted: ")
    _documented("GET", path, response)


def test_images_over_the_limit_get_the_documented_413(reconfigure, serve):
    reconfigure(max_image_bytes=10_000, max_video_bytes=10_000)
    photo = face(FACE_PHOTO).read_bytes()  # 33 kB
    text = base64.b64encode(photo).decode()
    uploaded = client().post("/recognize", data=photo, content_type="image/jpeg")
    fetched = client().get("/enroll", query_string={"name": "someone",
                                                    "image_url": serve(photo, "/big.jpg")})
    declared = client().post("/recognize", content_type="image/jpeg", data=b"x",
                             environ_overrides={"CONTENT_LENGTH": str(10**9)})
    as_base64 = client().post("/detect", json={"image_base64": text})
    second = client().post("/verify", json={"image_url": "http://x.example/a.jpg",
                                            "other_image_base64": text})
    for (method, path), response in ((("POST", "/recognize"), uploaded),
                                     (("GET", "/enroll"), fetched),
                                     (("POST", "/recognize"), declared),
                                     (("POST", "/detect"), as_base64),
                                     (("POST", "/verify"), second)):
        assert response.status_code == 413
        _documented(method, path, response)
    assert fetched.get_json() == {"errors": {"image_url": "image_too_large"},
                                  "detail": {"image_url": "bytes: at most 10000"}}
    assert as_base64.get_json()["errors"] == {"image_base64": "image_too_large"}
    assert second.get_json()["errors"] == {"other_image_base64": "image_too_large"}
    limit = 2 * (4 * -(-10_000 // 3) + 100) + 64 * 1024
    assert uploads.body_limit(10_000, 10_000) == limit
    assert declared.get_json()["detail"] == {"image": f"bytes: a body of at most {limit}"}
    # the body limit that the description states, for the defaults (a clip fits in it)
    assert "89544224" in published()["info"]["description"]
    assert uploads.body_limit(32 * 1024 * 1024, 64 * 1024 * 1024) == 89544224


def test_a_large_png_gets_the_documented_413_naming_the_pixel_limit(reconfigure):
    reconfigure(max_image_pixels=10_000)
    response = client().post("/detect", data=no_face_image(), content_type="image/png")
    assert response.status_code == 413
    assert response.get_json()["detail"] == {"image": "pixels: at most 10000"}
    _documented("POST", "/detect", response)


def test_a_cross_site_request_to_an_admin_route_gets_the_documented_403(reconfigure):
    reconfigure(cors_origins="https://app.example.com")
    for method, path, operation in operations(published()):
        if operation.get("x-required-scope") != "admin":
            continue
        response = client().open(_example_path(path), method=method,
                                  headers={"Sec-Fetch-Site": "cross-site",
                                           "Origin": "https://evil.example"})
        assert response.status_code == 403, (method, path)
        refused = {"errors": {"origin": "cross_site_request"}}
        in_shape = compat.reshaped_error(path, 403, refused)  # CompreFace's, DeepStack's
        assert response.get_json() == (refused if in_shape is None else in_shape[1])
        _documented(method.upper(), path, response)


def test_cors_as_the_description_says(reconfigure):
    reconfigure(cors_origins="https://app.example.com")
    listed = {"Origin": "https://app.example.com"}
    preflight = client().options("/verify", headers={**listed,
                                                     "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert {"GET", "HEAD", "POST"} <= set(
        preflight.headers["Access-Control-Allow-Methods"].split(", "))
    assert preflight.headers["Access-Control-Allow-Headers"] == "X-API-Key, Content-Type"
    assert preflight.headers["Access-Control-Max-Age"] == "600"
    answer = client().get("/people", headers=listed)
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Origin" in answer.headers["Vary"]
    _documented("GET", "/people", answer)
    other = client().get("/people", headers={"Origin": "https://evil.example"})
    assert not any(name.startswith("Access-Control-") for name in other.headers.keys())
    description = published()["info"]["description"]
    for words in ("FACEREC_CORS_ORIGINS", "Access-Control-Allow-Origin", "Vary: Origin",
                  "Access-Control-Max-Age: 600", "cross_site_request"):
        assert words in description


def test_health_counts_only_when_no_keys_are_set(reconfigure):
    reconfigure(rate_limit="0")
    open_answer = client().get("/health")
    assert set(open_answer.get_json()) == {"status", "person_count", "face_count"}
    _documented("GET", "/health", open_answer)
    reconfigure(api_keys=KEYS, rate_limit="0", auth_failures="0")  # (it sends wrong keys)
    keyed_answer = client().get("/health")
    assert keyed_answer.get_json() == {"status": "ok"}
    _documented("GET", "/health", keyed_answer)


def test_not_ready_gets_the_documented_503(env, monkeypatch):
    from recognizer import errors

    def unreachable():
        raise errors.StoreUnavailable()

    service = api.get_service()
    monkeypatch.setattr(service.gallery, "current", unreachable)
    response = client().get("/ready")
    assert response.status_code == 503
    assert response.get_json()["store_reachable"] is False
    _documented("GET", "/ready", response)


@pytest.mark.parametrize("path", ["/docs/nope.js", "/docs/api.py", "/docs?asset=..%2Fapi.py"])
def test_a_file_the_docs_do_not_have_gets_the_documented_404(env, path):
    response = client().get(path)
    assert response.status_code == 404
    assert response.get_json() == {"errors": {"path": "not_found"}}
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    _documented("GET", "/docs" if "?" in path else "/docs/{asset}", response)


@pytest.mark.parametrize("asset", sorted(published()["components"]["schemas"]["DocsAsset"]["enum"]))
def test_every_docs_file_is_served_as_documented(env, asset):
    response = client().get(f"/docs/{asset}")
    assert response.status_code == 200 and response.get_data()
    _documented("GET", "/docs/{asset}", response)


# -- the web app's files, and the answers of the web app's routes the runs do not reach --------


def test_the_app_s_files_are_the_ones_documented():
    documented = published()["components"]["schemas"]["AppAsset"]["enum"]
    assert sorted(documented) == sorted(path.name for path in (ROOT / "static" / "app").iterdir())


@pytest.mark.parametrize("asset", published()["components"]["schemas"]["AppAsset"]["enum"])
def test_every_app_file_is_served_as_documented_with_its_security_headers(env, asset):
    from recognizer.web.documents import APP_HEADERS

    response = client().get(f"/app/{asset}")
    assert response.status_code == 200
    assert response.get_data() == (ROOT / "static" / "app" / asset).read_bytes()
    assert response.headers["Content-Type"].endswith("; charset=utf-8")
    assert {name: response.headers[name] for name in APP_HEADERS} == APP_HEADERS
    _documented("GET", "/app/{asset}", response)
    if asset == "index.html":
        page = client().get("/")
        assert page.get_data() == response.get_data() and page.mimetype == "text/html"
        _documented("GET", "/", page)


@pytest.mark.parametrize("path", ["/app/nope.js", "/app/Main.js", "/app/api.py", "/app/.main.js",
                                  "/?asset=..%2Fapi.py", "/?asset=swagger-ui.css"])
def test_a_file_the_app_does_not_have_gets_the_documented_404(reconfigure, path):
    reconfigure(api_keys=KEYS)  # (open to everyone all the same)
    response = client().get(path)
    assert response.status_code == 404
    assert response.get_json() == {"errors": {"path": "not_found"}}
    assert response.headers["X-Frame-Options"] == "DENY"
    _documented("GET", "/" if "?" in path else "/app/{asset}", response)


def test_the_session_answers_the_runs_do_not_reach_are_documented(env, monkeypatch):
    """421 (another host's session), 409 (a frame while the one before is worked on), 503 with
    Retry-After (too many sessions), and the 404s."""
    frame = {"data": face(FACE_PHOTO).read_bytes(), "content_type": "image/jpeg"}
    for method, path, body in (("POST", "/sessions/{session_id}/frames", frame),
                               ("POST", "/sessions/{session_id}/tracks/{track}/enroll",
                                {"json": {"name": "Ann"}}),
                               ("DELETE", "/sessions/{session_id}", {})):
        for session_id, status in (("camera-host-2.AAAAAAAAAAAAAAAA", 421), (NEVER_OPENED, 404)):
            response = client().open(path.format(session_id=session_id, track=1), method=method,
                                     **body)
            assert response.status_code == status, (path, response.get_json())
            _documented(method, path, response)
    session_id = client().post("/sessions").get_json()["id"]
    no_track = client().post(f"/sessions/{session_id}/tracks/1/enroll", json={"name": "Ann"})
    assert no_track.get_json()["errors"] == {"track": "unknown_track"}
    _documented("POST", "/sessions/{session_id}/tracks/{track}/enroll", no_track)
    api.get_service().sessions._sessions[session_id].lock.acquire()  # (a frame under way)
    busy = client().post(f"/sessions/{session_id}/frames", **frame)
    assert busy.status_code == 409
    _documented("POST", "/sessions/{session_id}/frames", busy)
    monkeypatch.setattr(api.get_service().sessions, "max_sessions", 1)
    full = client().post("/sessions")
    assert full.status_code == 503 and full.headers["Retry-After"] == "5"
    assert full.get_json()["errors"] == {"session": "too_many_sessions"}
    _documented("POST", "/sessions", full)


def test_the_loop_s_other_answers_are_documented(reconfigure):
    """A face deleted by "not X", a look-alike name refused by "who is this?" under strict
    names, and events that are not what each route needs."""
    reconfigure(strict_names="on", **LIVE_NETWORKS)
    (stream_id,) = _add_streams("porch")
    store = api.get_service().store
    store.lease_streams("test", 60, {}, claim=1)
    box = {"top": 1, "right": 2, "bottom": 3, "left": 0}
    kit = encoding_of("people/kit_harington/john2.jpeg")
    first, second = store.record_events("test", stream_id, [
        NewEvent("appear", 1, time.time(), None, None, box, {}, kit),
        NewEvent("appear", 2, time.time(), None, None, box, {}, kit)])
    named = client().post(f"/events/{first}/enroll", json={"name": "Kit Harington"})
    assert named.status_code == 201
    _documented("POST", "/events/{event_id}/enroll", named)
    look_alike = client().post(f"/events/{second}/enroll", json={"name": "Kit Haringt\u043en"})
    assert look_alike.status_code == 409
    _documented("POST", "/events/{event_id}/enroll", look_alike)
    for path in ("/events/{event_id}/enroll", "/events/{event_id}/not"):
        for event_id in (99, first if "enroll" in path else second):
            refused = client().post(path.format(event_id=event_id), json={"name": "Ann"}
                                    if "enroll" in path else None)
            assert refused.get_json() == {"errors": {"event_id": "unknown_event"}}
            _documented("POST", path, refused)
    corrected = client().post(f"/events/{first}/not")
    assert corrected.get_json()["deleted_face"] == named.get_json()["face_id"]
    _documented("POST", "/events/{event_id}/not", corrected)
    listed = client().get("/events", query_string={"newest": "true"})
    assert listed.get_json()["events"][-1]["corrected_from"] == "Kit Harington"
    _documented("GET", "/events", listed)


WEB_APP_BOUNDS = [
    ("GET", "/unknown", "limit", limits.EVENT_LIMIT),
    ("POST", "/events/{event_id}/enroll", "event_id", limits.FACE_ID),
    ("POST", "/events/{event_id}/not", "event_id", limits.FACE_ID),
    ("POST", "/sessions/{session_id}/tracks/{track}/enroll", "track", limits.FACE_ID),
]


@pytest.mark.parametrize("method, path, parameter, bound", WEB_APP_BOUNDS)
def test_the_web_app_routes_bounds_are_limits_py_s_and_the_services(env, method, path,
                                                                   parameter, bound):
    spec = published()
    (documented,) = [resolve(spec, p) for p in spec["paths"][path][method.lower()]["parameters"]
                     if resolve(spec, p)["name"] == parameter]
    schema = resolve(spec, documented["schema"])
    assert (schema["minimum"], schema["maximum"], schema["type"]) == (bound.low, bound.high,
                                                                      "integer")
    for value, valid in _edges(schema):
        if documented["in"] == "path":
            url = path.replace("{" + parameter + "}", str(value))
            response = client().open(_example_path(url), method=method, json={"name": "Ann"})
        else:
            response = client().open(path, method=method, query_string={parameter: value})
        assert response.status_code in (200, 400, 404), response.get_data()
        refused = response.status_code == 400 and parameter in response.get_json()["errors"]
        assert refused != valid, (value, response.get_json())


@pytest.mark.parametrize("value, valid", [
    ("facerec-1.q3VhM0mX9Rk2cT8a", True), ("a.AAAAAAAAAAAAAAAA", True),
    ("a" * 253 + ".AAAAAAAAAAAAAAAA", True), ("a" * 254 + ".AAAAAAAAAAAAAAAA", False),
    ("facerec-1.q3VhM0mX9Rk2cT8", False), ("facerec-1.q3VhM0mX9Rk2cT8aa", False),
    ("q3VhM0mX9Rk2cT8a", False), (".q3VhM0mX9Rk2cT8a", False), ("a_b.q3VhM0mX9Rk2cT8a", False)])
def test_a_session_id_is_what_the_spec_says(env, value, valid):
    pattern = published()["components"]["schemas"]["SessionId"]["pattern"]
    assert jsonschema_rs.validator_for({"type": "string", "pattern": pattern,
                                        "maxLength": 270}).is_valid(value) == valid
    response = client().delete(f"/sessions/{value}")
    assert response.status_code == (421 if valid else 400), response.get_json()


@pytest.mark.parametrize("search, valid", [("a" * 100, True), ("a" * 101, False), ("-", True),
                                           ("ß" * 100, True), ("\u00e9" * 101, False)])
def test_a_search_is_at_most_100_characters_as_the_spec_says(env, search, valid):
    spec = published()
    (documented,) = [resolve(spec, p) for p in spec["paths"]["/people"]["get"]["parameters"]
                     if resolve(spec, p)["name"] == "search"]
    assert jsonschema_rs.validator_for(documented["schema"]).is_valid(search) == valid
    response = client().get("/people", query_string={"search": search})
    assert response.status_code == (200 if valid else 400)
    _documented("GET", "/people", response)


def test_enrolling_the_same_image_again_gets_the_documented_200(env):
    photo = base64.b64encode(face(FACE_PHOTO).read_bytes()).decode()
    first = client().post("/enroll", json={"name": "someone", "image_base64": photo})
    again = client().post("/enroll", json={"name": "someone", "image_base64": photo})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["duplicate"] is True
    assert again.get_json()["face_id"] == first.get_json()["face_id"]
    _documented("POST", "/enroll", first)
    _documented("POST", "/enroll", again)


def test_verify_and_detect_answers_are_documented(env, serve):
    photo = serve(face(FACE_PHOTO), "/face.jpg")
    blank = serve(no_face_image(), "/blank.png", "image/png")
    two = serve(face("misc/two_people.jpg"), "/two.jpg")
    client().get("/enroll", query_string={"name": "someone", "image_url": photo})
    answers = [
        ("/verify", {"image_url": photo, "other_image_url": photo}, 200),
        ("/verify", {"image_url": photo, "name": "someone"}, 200),
        ("/verify", {"image_url": photo, "name": "nobody"}, 404),
        ("/verify", {"image_url": blank, "name": "someone"}, 422),
        ("/verify", {"image_url": photo, "other_image_url": two}, 422),
        ("/verify", {"image_url": photo}, 400),
        ("/verify", {"image_url": photo, "name": "someone", "other_image_url": photo}, 400),
        ("/detect", {"image_url": two}, 200),
        ("/detect", {"image_url": blank}, 200),
    ]
    for path, query, status in answers:
        response = client().get(path, query_string=query)
        assert response.status_code == status, (query, response.get_json())
        _documented("GET", path, response)
    multiple = client().get("/verify", query_string={"image_url": photo, "other_image_url": two})
    assert multiple.get_json() == {"errors": {"other_image": "multiple_faces"}}


def test_an_unexpected_error_gets_the_documented_500(env, monkeypatch):
    def explode():
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.get_service(), "health", explode)
    schema = _served_schema()
    case = schema["/health"]["GET"].Case()
    response = case.call()
    assert response.status_code == 500
    case.validate_response(response, checks=_conformance_checks())
    assert b"secret" not in response.content


# -- schemathesis over every operation ----------------------------------------------------------

# Statuses a schema-valid request may get besides the defaults (2xx, 3xx, 401, 403, 404, 409, 429,
# 5xx; 5xx is judged by not_a_server_error): see refused_only_for_their_image.
POSITIVE_STATUSES = ["2xx", "3xx", "400", "401", "403", "404", "409", "413", "415", "422", "429",
                     "5xx"]
RUN = {
    "seed": SEED,
    "cache": {"enabled": False},
    "generation": {"deterministic": True, "no-shrink": True, "database": "none"},
    "checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES}},
    # QUERY is left out only because falcon answers 400 to every method it does not know;
    # test_a_method_falcon_does_not_know_gets_405_too reproduces that on its own.
    "phases": {"coverage": {"unexpected-methods": [
        "GET", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE"]}},
}


@pytest.fixture
def images(serve, httpserver):
    """Local URLs: a face photo, a photo without a face, a page that is no image, and a 404.
    The compat surfaces' image files are drawn from the two photos (see with_photos)."""
    httpserver.expect_request("/missing.jpg").respond_with_data("gone", status=404)
    schemathesis.openapi.format(PHOTO_FORMAT, st.sampled_from([face(FACE_PHOTO).read_bytes(),
                                                               no_face_image()]))
    return {
        "face": serve(face(FACE_PHOTO), "/face.jpg"),
        "no_face": serve(no_face_image(), "/no_face.png", "image/png"),
        "not_an_image": serve(b"<html><body>hello</body></html>", "/page.html", "text/html"),
        "missing": httpserver.url_for("/missing.jpg"),
    }


URL_FIELDS = ("image_url", "other_image_url")
# What the runs may attach (FACEREC_STREAM_NETWORKS and FACEREC_WEBHOOK_NETWORKS are loopback's;
# nothing connects to them: no stream runner or webhook delivery runs in the test process)
LIVE_NETWORKS = {"stream_networks": "127.0.0.0/8", "webhook_networks": "127.0.0.0/8"}
STREAM_SOURCES = ("rtsp://127.0.0.1:8554/live", "http://127.0.0.1:8080/video.mjpg",
                  "rtsp://viewer:s3cret@127.0.0.1:8554/live?token=t0ken", "0")
WEBHOOK_URLS = ("http://127.0.0.1:8099/facerec", "https://127.0.0.1:8443/hooks?key=k3y")
LONG_LIVED = "x-long-lived"  # an answer that never ends: the event feed, a live view


def fuzzed(spec: dict):
    """The operations the generated runs send: all but the long-lived ones, whose answers never
    end while schemathesis reads every answer to its end (test_the_long_lived_answers_*
    check them)."""
    return [(method, path, operation) for method, path, operation in operations(spec)
            if not operation.get(LONG_LIVED)]


def local_copy(spec: dict, urls: dict[str, str]) -> dict:
    """The test-only copy of the spec: without the long-lived operations; image_url and
    other_image_url are one of the local URLs, a stream's source and a webhook's URL one the
    runs' networks allow, examples included."""
    local = copy.deepcopy(spec)
    for path, item in list(local["paths"].items()):
        for method in [method for method in set(item) & HTTP_METHODS
                       if item[method].get(LONG_LIVED)]:
            del item[method]
        if not set(item) & HTTP_METHODS:
            del local["paths"][path]
    schemas = local["components"]["schemas"]
    for name, allowed in (("StreamSource", STREAM_SOURCES), ("WebhookUrl", WEBHOOK_URLS)):
        schemas[name] = {"type": "string", "enum": list(allowed),
                         "description": schemas[name]["description"]}
    for node in walk(local["components"]["requestBodies"]):
        for key in ("example", "value"):
            if isinstance(node.get(key), dict) and {"source", "url"} & set(node[key]):
                node[key] = {**node[key], **{field: value for field, value in
                                             (("source", STREAM_SOURCES[0]),
                                              ("url", WEBHOOK_URLS[1])) if field in node[key]}}
    image_url = local["components"]["schemas"]["ImageUrl"]
    local["components"]["schemas"]["ImageUrl"] = {
        "type": "string", "enum": sorted(urls.values()),
        "description": image_url["description"]}
    for node in walk(local):
        if node.get("in") == "query" and node.get("name") in URL_FIELDS and "example" in node:
            node["example"] = urls["face"]
        for key in ("example", "value"):
            if isinstance(node.get(key), dict) and set(URL_FIELDS) & set(node[key]):
                node[key] = {**node[key], **{field: urls["face"] for field in URL_FIELDS
                                             if field in node[key]}}
    return local


PHOTO_FORMAT = "facerec-photo"  # the test copy's format of the compat surfaces' image files


def with_photos(local: dict) -> None:
    """The compat surfaces' image files (CompatUpload) and a webcam session's frame files
    (FrameUpload) are one of the two photos, as their clients send them: random bytes would
    only ever be refused. A frame's JSON example is the face photo, as base64."""
    for name in ("CompatUpload", "FrameUpload"):
        upload = local["components"]["schemas"][name]
        local["components"]["schemas"][name] = {
            "type": "string", "format": PHOTO_FORMAT, "description": upload["description"]}
    frame = local["components"]["requestBodies"]["Frame"]["content"]["application/json"]
    frame["example"] = {"image_base64": base64.b64encode(face(FACE_PHOTO).read_bytes()).decode()}


def session_examples(local: dict, session_id: str) -> None:
    """A session's id in a path is the session seed_session opened (the spec's example, for
    every session route), or one of this host's that was never opened: a schema-valid id of
    another host is a 421, which test_the_session_answers_the_runs_do_not_reach_are_documented
    checks."""
    parameter = local["components"]["parameters"]["SessionId"]
    parameter["schema"] = {"type": "string", "enum": [session_id, NEVER_OPENED]}
    parameter["example"] = session_id


def compat_examples(local: dict, enrolled: dict) -> None:
    """Point the examples of the compat operations that delete or rename at people and a face
    the test enrolled for them (see enrol_compat), so that each has an example that works."""
    local["components"]["parameters"]["SubjectRequired"]["example"] = enrolled["faces_of"]
    paths = local["paths"]
    (face_id,) = paths["/api/v1/recognition/faces/{image_id}"]["delete"]["parameters"]
    face_id["example"] = enrolled["face_id"]
    subject = paths["/api/v1/recognition/subjects/{subject_name}"]
    subject["put"]["parameters"][0]["example"] = enrolled["renamed"]
    subject["delete"]["parameters"][0]["example"] = enrolled["deleted"]
    bodies = local["components"]["requestBodies"]
    bodies["CompreFaceRename"]["content"]["application/json"]["example"] = {
        "subject": enrolled["renamed"] + " Again"}
    for media in bodies["DeepStackUser"]["content"].values():
        media["example"] = {"userid": enrolled["userid"]}


def enrol_compat(url: str, key: str | None = None) -> dict:
    """People, and a face, for the compat operations' examples to delete and rename."""
    enrolled = {"faces_of": "Compat Faces", "renamed": "Compat Rename",
                "deleted": "Compat Subject", "userid": "Compat Userid"}
    for name in enrolled.values():
        enrol(name, url, key)
    return {**enrolled, "face_id": enrol("Compat Face", url, key)}


def _strings(case) -> list[str]:
    """Every string a case sends: in its path (percent-encoded there), query and body."""
    found = [urllib.parse.unquote(str(value)) for value in (case.path_parameters or {}).values()]
    for node in (case.query, case.body):
        stack = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                found.append(item)
            elif isinstance(item, dict):
                stack += [*item.keys(), *item.values()]
            elif isinstance(item, (list, tuple)):
                stack += list(item)
    return found


def _fields(case) -> list[dict]:
    """The case's query and, when it is a dict, its body: where hug reads parameters."""
    return [part for part in (case.query, case.body) if isinstance(part, dict)]


FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


def _valid_as_sent(case) -> bool:
    """Whether a negative form body is valid as a form carries it: schemathesis sends null as
    the text "null" and a list as the field repeated (the first is used), so an invalid null
    for a text field, or an empty list for an optional one, reaches the service valid."""
    if case.media_type not in FORMS or not isinstance(case.body, dict):
        return False
    sent = {}
    for name, value in case.body.items():
        if isinstance(value, list):
            if not value:
                continue
            value = value[0]
        sent[name] = "null" if value is None else _json(value)
    return _body_validator(case.method, case.path, case.media_type).is_valid(sent)


def _json(value):
    """A value with its files (schemathesis' Binary) as text: what a schema can judge."""
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value if value is None or type(value) in (str, int, float, bool) else "binary"


@functools.lru_cache(maxsize=64)
def _body_validator(method: str, path: str, media_type: str):
    spec = published()
    operation = spec["paths"][path][method.lower()]
    schema = resolve(spec, resolve(spec, operation["requestBody"])["content"][media_type]["schema"])
    return jsonschema_rs.Draft4Validator({**schema, "components": spec["components"]})


def _body_fields(case) -> set[str]:
    """The parameters a case's body gives: a form's or JSON's fields, or ``image`` for a raw
    image body (hug reads it as that field)."""
    if isinstance(case.body, dict):
        return set(case.body)
    raw = case.media_type is not None and (case.media_type.startswith("image/")
                                           or case.media_type == "application/octet-stream")
    return {"image"} if raw and case.body is not None else set()


def add_hooks(schema) -> None:
    @schema.hook
    def filter_case(context, case):
        """Skip a negative case whose invalid query parameter the body overrides (valid; a raw
        image body is the image); a negative form whose invalid values a form cannot carry (see
        _valid_as_sent); and a "valid" case with an unassigned character, which no schema
        allows (schemathesis 4.32.5 generates ``\\p{M}`` from whole blocks, U+20D0-U+20FF,
        unassigned code points included)."""
        if case.meta is None:
            return True
        if case.meta.generation.mode.is_positive:
            return not any(unicodedata.category(character) == "Cn"
                           for text in _strings(case) for character in text)
        if case.meta.is_negative_at(ParameterLocation.BODY) and _valid_as_sent(case):
            return False
        if not case.meta.is_negative_at(ParameterLocation.QUERY):
            return True
        return not set(case.query or {}) & _body_fields(case)

    @schema.hook
    def map_case(context, case):
        """A valid case with cnn detects without upsampling: cnn with upsampling costs 1-9 s a
        photo on 2 cores. (cnn on a generated, often 1x1, image is safe since
        test_the_cnn_detector_on_a_tiny_image_finds_no_face passes.)"""
        if case.meta is None or not case.meta.generation.mode.is_positive:
            return case
        for part in _fields(case):
            if part.get("model") == "cnn":
                part["upsample"] = 0
        return case


# Where an image is given, and the codes that refuse an image for what it is (not decodable, no
# usable face, over a limit, not fetched) or for how many were given: beyond a schema.
IMAGE_FIELDS = frozenset({"image", "image_url", "image_base64", "other_image", "other_image_url",
                          "other_image_base64", "video", "file", "source_image",
                          "target_image"})
IMAGE_CODES = frozenset({"missing_image", "several_images", "image_fetch_failed",
                         "image_too_large", "image_too_complex", "unsupported_image",
                         "image_truncated", "no_face", "multiple_faces", "small_face", "blurry",
                         "extreme_pose", "not_a_video_upload", "unsupported_video",
                         "video_too_large", "video_too_complex", "multiple_people"})


def service_errors(body: dict) -> dict[str, str]:
    """The service's {field: code} of an error body: its own, or CompreFace's or DeepStack's,
    whose message names each field and code ("field: code (detail); ...")."""
    if "errors" in body:
        return body["errors"]
    words = body.get("message", body.get("error", ""))
    return dict(re.findall(r"(?:^|; )([^:;]+): ([a-z_]+)", words))


def refused_only_for_their_image(ctx, response, case):
    """A schema-valid request may be refused only for its images (undecodable, no usable face,
    over a limit, fetch failed, none or several), for /verify's rule of a name or a second image
    (exactly one), or, with POST, for a name (or a rename's new_name) given nowhere: never for a
    parameter the schema describes, nor for an image with a code that says its value was wrong
    (that would be the spec and the service disagreeing)."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code not in (400, 413, 415, 422):
        return None
    for field, code in service_errors(response.json()).items():
        if field in IMAGE_FIELDS and code in IMAGE_CODES:
            continue
        if (case.operation.path == "/verify" and field == "name"
                and code in ("missing_parameter", "several_images")):
            continue
        if case.method == "POST" and field in ("name", "new_name") and code == "missing_parameter":
            continue
        if field in ("model", "upsample") and code == "too_much_work":  # the budget, by setting
            continue
        if (field, code) == ("unknown", "invalid_value") and any(  # unknown=true and person
                part.get("person") for part in _fields(case)):
            continue
        raise AssertionError(f"a schema-valid request got {response.status_code} for "
                             f"{field!r}: {code!r} ({response.json().get('detail')})")
    return None


def enrol(name: str, url: str, key: str | None = None) -> int:
    headers = {"X-API-Key": key} if key else {}
    response = client().get("/enroll", query_string={"name": name, "image_url": url},
                            headers=headers)
    assert response.status_code == 201, response.get_data()
    return response.get_json()["face_id"]


def make_schema(urls: dict[str, str], answers: list | None = None,
                enrolled: dict | None = None, session_id: str | None = None,
                **config) -> object:
    """The test-only copy, loaded with the run's configuration and bound to the WSGI app;
    the (operation, status) of every answer to a documented method is appended to answers.
    enrolled: what enrol_compat enrolled, for the compat operations' examples; session_id:
    the session seed_session opened."""
    served = json.loads(client().get("/openapi.json").get_data())
    settings = schemathesis.Config.from_dict(
        {**RUN, **config, "generation": {**RUN["generation"], **config.pop("generation", {})},
         "checks": {**RUN["checks"], **config.pop("checks", {})}})
    local = local_copy(served, urls)
    with_photos(local)
    if enrolled is not None:
        compat_examples(local, enrolled)
    if session_id is not None:
        session_examples(local, session_id)
    schema = schemathesis.openapi.from_dict(local, config=settings)
    schema.app = api.__hug_wsgi__
    add_hooks(schema)
    if answers is not None:
        @schema.hook
        def after_call(context, case, response):
            if case.method == case.operation.method.upper():  # not an undeclared-method probe
                answers.append((case.operation.label, response.status_code))
    return schema


def enrol_two(serve, key: str | None = None) -> None:
    """Two people in the store, so that answers carry names, candidates and confidences: Barack
    Obama (face 1) and Rose Leslie (faces 2 and 3). The spec's examples use them: GET and DELETE
    /people/{name} Barack Obama, DELETE /people/Rose Leslie/faces/3, then rename Rose Leslie."""
    enrol("Barack Obama", serve(face("people/obama/obama-240p.jpg"), "/obama.jpg"), key)
    enrol("Rose Leslie", serve(face("people/rose_leslie/rose_leslie_img1.jpg"), "/rose.jpg"), key)
    enrol("Rose Leslie", serve(face("people/rose_leslie/rose_leslie_img2.jpg"), "/rose2.jpg"), key)


@functools.lru_cache(maxsize=4)
def encoding_of(photo: str) -> np.ndarray:
    """The encoding of the one face in a photo."""
    from recognizer import faces, images

    pixels = images.decode(face(photo).read_bytes(), 40_000_000)
    (encoding,) = faces.encode(pixels, faces.detect(pixels))
    return encoding


def seed_live(key: str | None = None) -> None:
    """Streams, events and a webhook, so that the spec's examples name what exists. Stream 1
    (porch), held by runner "test" (another host: its state is connecting), with event 1, an
    unknown face with its snapshot (GET /events/1/snapshot), event 2, Rose Leslie coming into
    view (GET /presence), event 3, a real unknown face (POST /events/3/enroll: who is this?),
    and event 4, Rose Leslie on another track, named by her nearest face (POST /events/4/not);
    stream 2 (garage), which no runner has taken (starting), for DELETE /streams/2; webhook 1,
    for GET and DELETE /webhooks/1. The /events paths come before /streams/{stream_id} in the
    spec, so the snapshot is read before a DELETE may take stream 1 with it, and before event 1
    may be enrolled (losing its snapshot). After enrol_two: events of enrolled people only are
    recorded (a rename of Rose Leslie takes her events along)."""
    headers = {"X-API-Key": key} if key else {}
    for name, source in (("porch", STREAM_SOURCES[2]), ("garage", STREAM_SOURCES[3])):
        added = client().post("/streams", json={"name": name, "source": source}, headers=headers)
        assert added.status_code == 201, added.get_data()
    hooked = client().post("/webhooks", json={"url": WEBHOOK_URLS[0]}, headers=headers)
    assert hooked.status_code == 201, hooked.get_data()
    store = api.get_service().store
    (held,) = store.lease_streams("test", 600, {}, claim=1)
    now, box = time.time(), {"top": 68, "right": 211, "bottom": 175, "left": 103}
    unknown = NewEvent("appear", 1, now, None, None, box, {}, np.full(128, 0.05),
                       face(FACE_PHOTO).read_bytes())
    rose = NewEvent("appear", 2, now, "Rose Leslie", 0.93, box, {})
    stranger = NewEvent("appear", 3, now, None, None, box, {},
                        encoding_of("people/kit_harington/john2.jpeg"))  # enrolled nowhere
    nearest = api.get_service().gallery.current().nearest_face(
        "Rose Leslie", encoding_of("people/rose_leslie/rose_leslie_img2.jpg"))
    again = NewEvent("appear", 4, now, "Rose Leslie", 0.91, box, {"face_id": nearest})
    assert store.record_events("test", held.id, [unknown, rose, stranger, again],
                               [("Rose Leslie", True, now, 0.93)]) == [1, 2, 3, 4]


def seed_session(monkeypatch, key: str | None = None) -> str:
    """A webcam session with a face in view (track 1: the face photo, sent as its frame), for
    the session routes' examples; it outlives the run (the runs are longer than a session's
    idle time), and the run may open as many more as it likes (the limit of 16 a process,
    and its 503, are test_the_session_answers_the_runs_do_not_reach_are_documented's)."""
    from recognizer import sessions

    monkeypatch.setattr(sessions, "IDLE_SECONDS", 3600.0)
    monkeypatch.setattr(api.get_service().sessions, "max_sessions", 1000)
    headers = {"X-API-Key": key} if key else {}
    session_id = client().post("/sessions", headers=headers).get_json()["id"]
    framed = client().post(f"/sessions/{session_id}/frames", data=face(FACE_PHOTO).read_bytes(),
                           content_type="image/jpeg", headers=headers)
    assert [view["track"] for view in framed.get_json()["faces"]] == [1], framed.get_data()
    return session_id


def run_schemathesis(schema, subtests) -> None:
    """Every operation, every enabled phase (examples, coverage, fuzzing), every check.

    This is what ``schemathesis.pytest.from_fixture(...).parametrize()`` runs, minus its pytest
    node-id renaming, which schemathesis 4.32.5 does through ``Node._nodeid``, gone in pytest 9.2.
    Each operation is a subtest, so one failing operation does not hide the others.
    """
    from schemathesis.pytest.lazy import get_all_tests

    def check(case):
        case.call_and_validate(additional_checks=[refused_only_for_their_image])

    tests = list(get_all_tests(schema=schema, test_func=check, settings=None, given_kwargs=None))
    assert len(tests) == len(fuzzed(published()))
    for result in tests:
        operation, test = result.ok()  # an Err is a spec the generator cannot use: fail
        with subtests.test(msg=operation.label):
            test()


def test_the_open_service_conforms(reconfigure, serve, images, subtests, monkeypatch):
    """No API keys: the service is open. It ignores keys by configuration, so no X-API-Key is
    generated (with it, "missing required header accepted" would only restate that) and
    ignored_auth does not apply."""
    reconfigure(rate_limit="0", **LIVE_NETWORKS)
    enrol_two(serve)
    seed_live()
    answers = []
    schema = make_schema(images, answers, enrol_compat(images["face"]),
                         seed_session(monkeypatch),
                         checks={"ignored_auth": {"enabled": False}},
                         generation={"max-examples": 25, "with-security-parameters": False})
    run_schemathesis(schema, subtests)
    succeeded = {label for label, status in answers if status < 300}
    assert succeeded == {f"{m} {p}" for m, p, _ in fuzzed(published())}


def test_the_keyed_service_conforms_for_an_admin_key(reconfigure, serve, images, subtests,
                                                     monkeypatch):
    """API keys configured, the admin key sent through the ApiKey scheme: everything works, and
    ignored_auth checks that the same requests without a key, or with a wrong one, are 401.
    The coverage phase, which does not depend on the key, is left to the open run."""
    reconfigure(api_keys=KEYS, rate_limit="0", auth_failures="0",  # (it sends wrong keys)
                **LIVE_NETWORKS)
    enrol_two(serve, ADMIN_KEY)
    seed_live(ADMIN_KEY)
    answers = []
    schema = make_schema(images, answers, enrol_compat(images["face"], ADMIN_KEY),
                         seed_session(monkeypatch, ADMIN_KEY), generation={"max-examples": 15},
                         phases={**RUN["phases"], "coverage": {"enabled": False}},
                         auth={"openapi": {"ApiKey": {"api_key": ADMIN_KEY}}})
    run_schemathesis(schema, subtests)
    succeeded = {label for label, status in answers if status < 300}
    assert succeeded == {f"{m} {p}" for m, p, _ in fuzzed(published())}


def test_the_keyed_service_answers_401_to_a_caller_without_a_key(reconfigure, images, subtests):
    """API keys configured, none sent: every keyed operation answers the documented 401, the
    open ones answer as usual (never 401)."""
    reconfigure(api_keys=KEYS, rate_limit="0", auth_failures="0")  # (it sends wrong keys)
    answers = []
    schema = make_schema(images, answers,
                         generation={"max-examples": 10, "with-security-parameters": False})
    run_schemathesis(schema, subtests)
    spec = published()
    keyed = {f"{m} {p}" for m, p, operation in operations(spec) if "x-required-scope" in operation}
    assert len(keyed) == 51  # 35 of the service's (16 of live video's, 4 of webcam
    # sessions', /metrics), 11 of CompreFace's, and 5 of DeepStack's
    assert {label for label, _ in answers} == {f"{m} {p}" for m, p, _ in fuzzed(spec)}
    assert {status for label, status in answers if label in keyed} == {401}
    assert 401 not in {status for label, status in answers if label not in keyed}


# -- the long-lived answers, which the generated runs leave out --------------------------------


def test_the_long_lived_operations_are_the_event_feed_and_the_live_view():
    spec = published()
    long_lived = {(method, path) for method, path, operation in operations(spec)
                  if operation.get(LONG_LIVED)}
    assert long_lived == {("GET", "/events/stream"), ("GET", "/streams/{stream_id}/live")}
    assert len(fuzzed(spec)) == len(list(operations(spec))) - 2
    for method, path in long_lived:
        assert "x-long-lived: true" in spec["paths"][path][method.lower()]["description"]


def _first_parts(response, count: int) -> list[bytes]:
    """The first parts of a streamed answer, read as a server sends them; then it is closed."""
    parts = []
    try:
        for part in response.response:
            parts.append(part)
            if len(parts) == count:
                break
    finally:
        response.close()
    return parts


def _add_streams(*names: str, key: str | None = None) -> list[int]:
    headers = {"X-API-Key": key} if key else {}
    ids = []
    for name in names:
        added = client().post("/streams", json={"name": name, "source": "0"}, headers=headers)
        assert added.status_code == 201, added.get_data()
        ids.append(added.get_json()["id"])
    return ids


def _sse(part: bytes) -> list[dict[str, str]]:
    """The events of a part of a Server-Sent Events stream: each one's fields, by name."""
    return [dict(line.split(": ", 1) for line in block.split("\n"))
            for block in part.decode("utf-8").split("\n\n") if block]


def test_the_event_feed_sends_retry_then_each_event_as_documented(reconfigure):
    """retry: 2000 first, then each event as id:, event: and data: lines, data being the event
    as GET /events lists it; Last-Event-ID resumes after its event, whatever since_id says."""
    reconfigure(rate_limit="0", **LIVE_NETWORKS)
    (stream_id,) = _add_streams("porch")
    store = api.get_service().store
    store.lease_streams("test", 60, {}, claim=1)
    box = {"top": 1, "right": 2, "bottom": 3, "left": 0}
    store.record_events("test", stream_id, [
        NewEvent("appear", 1, time.time(), None, None, box, {}),
        NewEvent("leave", 1, time.time(), None, None, box, {"duration": 1.5})])
    listed = client().get("/events")
    _documented("GET", "/events", listed)
    documented = published()["paths"]["/events/stream"]["get"]["responses"]["200"]
    feed = client().get("/events/stream", query_string={"since_id": "0"})
    assert feed.status_code == 200
    assert feed.mimetype in documented["content"]
    assert feed.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert feed.headers["X-Accel-Buffering"] in documented["headers"]["X-Accel-Buffering"][
        "schema"]["enum"]
    first, events = _first_parts(feed, 2)
    assert first == b"retry: 2000\n\n"
    assert [{"id": int(sent["id"]), "event": sent["event"], "data": json.loads(sent["data"])}
            for sent in _sse(events)] == [{"id": event["id"], "event": event["event"],
                                           "data": event} for event in listed.get_json()["events"]]
    resumed = client().get("/events/stream", query_string={"since_id": "0"},
                           headers={"Last-Event-ID": "1"})
    assert [sent["id"] for part in _first_parts(resumed, 2)[1:] for sent in _sse(part)] == ["2"]


def test_a_live_view_on_the_runner_s_host_sends_jpeg_parts_as_documented(reconfigure):
    """Each part is the latest frame, a JPEG, after the boundary facerec-frame; HEAD answers
    at once."""
    reconfigure(rate_limit="0", **LIVE_NETWORKS)
    (stream_id,) = _add_streams("porch")
    service = api.get_service()
    service.store.lease_streams(f"{socket.gethostname()}:1:test", 60, {}, claim=1)
    jpeg = face(FACE_PHOTO).read_bytes()
    service.live.frames.publish(stream_id, jpeg)
    try:
        view = client().get(f"/streams/{stream_id}/live", query_string={"fps": "30"})
        assert view.status_code == 200
        assert view.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=facerec-frame"
        assert view.mimetype in published()["paths"]["/streams/{stream_id}/live"]["get"][
            "responses"]["200"]["content"]
        (part,) = _first_parts(view, 1)
        assert part == (b"--facerec-frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
        head = client().head(f"/streams/{stream_id}/live")
        assert (head.status_code, head.headers["Content-Type"], head.get_data()) == (
            200, view.headers["Content-Type"], b"")
    finally:
        shutil.rmtree(service.settings.live_folder, ignore_errors=True)


def test_the_long_lived_answers_errors_are_documented(reconfigure):
    reconfigure(rate_limit="0", **LIVE_NETWORKS)
    (elsewhere,) = _add_streams("porch")
    api.get_service().store.lease_streams("camera-host-2:1:test", 60, {}, claim=1)
    (not_running,) = _add_streams("garage")  # no runner has taken it
    fps_rule = {"fps": "a whole number from 1 to 30"}
    answers = [
        ("/streams/{stream_id}/live", "/streams/99/live", {}, {}, 404,
         {"errors": {"stream_id": "unknown_stream"}}),
        ("/streams/{stream_id}/live", f"/streams/{not_running}/live", {}, {}, 421,
         {"errors": {"stream_id": "stream_not_running"},
          "detail": {"stream_id": "no runner runs it now"}}),
        ("/streams/{stream_id}/live", f"/streams/{elsewhere}/live", {}, {}, 421,
         {"errors": {"stream_id": "stream_on_another_host"},
          "detail": {"stream_id": "ask camera-host-2"}}),
        ("/streams/{stream_id}/live", f"/streams/{elsewhere}/live", {"fps": "0"}, {}, 400,
         {"errors": {"fps": "out_of_range"}, "detail": fps_rule}),
        ("/streams/{stream_id}/live", f"/streams/{elsewhere}/live", {"fps": "31"}, {}, 400,
         {"errors": {"fps": "out_of_range"}, "detail": fps_rule}),
        ("/events/stream", "/events/stream", {}, {"Last-Event-ID": "first"}, 400,
         {"errors": {"last_event_id": "invalid_value"},
          "detail": {"last_event_id": "an event's id"}}),
        ("/events/stream", "/events/stream", {"person": "Ann", "unknown": "true"}, {}, 400,
         {"errors": {"unknown": "invalid_value"}, "detail": {"unknown": "not with person"}}),
    ]
    for template, path, query, headers, status, body in answers:
        response = client().get(path, query_string=query, headers=headers)
        assert (response.status_code, response.get_json()) == (status, body), path
        _documented("GET", template, response)


@pytest.mark.parametrize("path", ["/events/stream", "/streams/{stream_id}/live"])
def test_the_long_lived_answers_need_a_key_and_are_rate_limited_as_documented(reconfigure, path):
    reconfigure(api_keys=KEYS, rate_limit="0.01", rate_burst="1", auth_failures="0")
    missing = client().get(_example_path(path))
    assert (missing.status_code, missing.get_json()) == (401, {"errors": {"api_key":
                                                                          "missing_api_key"}})
    _documented("GET", path, missing)
    client().get(_example_path(path), headers={"X-API-Key": READ_KEY}).close()
    limited = client().get(_example_path(path), headers={"X-API-Key": READ_KEY})
    assert (limited.status_code, limited.get_json()) == (429, {"errors": {"rate": "rate_limited"}})
    assert int(limited.headers["Retry-After"]) >= 1
    _documented("GET", path, limited)


# -- non-conformances the runs found, one reproduction each --------------------------------------


CNN_ON_A_TINY_IMAGE = """
import io, json, sys
from PIL import Image
from werkzeug.test import Client
import api

side, upsample = int(sys.argv[1]), int(sys.argv[2])
image = io.BytesIO()
Image.new("RGB", (side, side), (128, 100, 90)).save(image, "PNG")
response = Client(api.__hug_wsgi__).post(
    "/recognize", query_string={"model": "cnn", "upsample": upsample},
    data=image.getvalue(), content_type="image/png")
print(json.dumps([response.status_code, response.get_json()]))
"""


@pytest.mark.parametrize("side, upsample", [(1, 0), (1, 1)])
def test_the_cnn_detector_on_a_tiny_image_finds_no_face(env, side, upsample):
    """dlib's CNN detector on an image of a few pixels raises "Filter windows must be small
    enough to fit into the padded image" (a 500) or corrupts the heap and aborts the process
    (1x1 with upsample=1: "corrupted size vs. prev_size"): a one-pixel PNG kills a worker. Run
    in a child process so that the crash cannot take this test session down with it. An image
    too small to hold a face has no face."""
    env.setenv("FACEREC_ALLOW_CNN", "1")  # (off by default: it costs seconds a photo)
    child = subprocess.run(
        [sys.executable, "-c", CNN_ON_A_TINY_IMAGE, str(side), str(upsample)],
        cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert child.returncode == 0, f"the service process died: {child.stderr[-300:]}"
    status, body = json.loads(child.stdout.strip().splitlines()[-1])
    assert (status, body) == (200, {"faces": [], "image": {"width": side, "height": side}})


@pytest.mark.parametrize("method", ["QUERY", "PROPFIND"])
def test_a_method_falcon_does_not_know_gets_405_too(env, method):
    """falcon answers 400 {"Bad request": "Invalid HTTP method"} to methods it does not know
    (the HTTP QUERY method among them) instead of the documented 405 with Allow."""
    spec = published()
    validator, documented = _validator(spec, "MethodNotAllowed")
    response = client().open("/health", method=method)
    assert response.status_code == 405, response.get_data()
    validator.validate(response.get_json())
    _check_headers(spec, documented, response.headers)


@pytest.mark.parametrize("path, field, value", [
    ("/recognize", "tolerance", True),  # read as 1.0
    ("/recognize", "tolerance", "0.5"),
    ("/recognize", "top_k", 1.5),  # truncated to 1
    ("/recognize", "top_k", True),
    ("/recognize", "top_k", "3"),
    ("/recognize", "upsample", False),  # read as 0
    ("/enroll", "name", 5),  # enrolled as "5"
    ("/enroll", "name", True),  # enrolled as "True"
    ("/enroll", "largest_face", 1),
    ("/enroll", "largest_face", None),  # read as false
    ("/enroll", "force", "t"),
    ("/enroll", "force", 2),  # refused, but as "'int' object has no attribute 'lower'"
    ("/verify", "largest_face", "true"),
    ("/verify", "other_image_base64", 5),
    ("/verify", "name", None),
    ("/detect", "upsample", "1"),
    ("/detect", "image_base64", None),
])
def test_json_values_of_the_wrong_type_are_refused(env, path, field, value):
    """hug's types coerce JSON values the spec does not allow: booleans as numbers, fractions
    as whole numbers, numbers as names, numbers, null and strings as booleans. Each is a
    wrong_type naming the JSON type expected."""
    body = {"image_url": "ftp://refused.before.any.network", field: value}
    if path == "/enroll" and field != "name":
        body["name"] = "someone"
    response = client().post(path, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    errors = response.get_json()["errors"]
    assert errors == {field: "wrong_type"}, errors  # not just {"image_url": "url_not_allowed"}
    assert response.get_json()["detail"][field] in ("a string", "a number", "a whole number",
                                                    "true or false")
    _documented("POST", path, response)


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "5", "null", "true"])
def test_a_json_body_that_is_not_an_object_is_refused(env, body):
    """hug hands such a body over as is and api ignores anything but a dict, so with image_url in
    the query, POST /recognize with the JSON body [1, 2] answers 200 as if it had no body."""
    response = client().post("/recognize", query_string={"image_url": "ftp://refused.example"},
                             data=body, content_type="application/json")
    assert response.status_code == 400
    assert "body" in response.get_json()["errors"], response.get_json()


# -- service bugs found while writing the spec: the spec says what should happen -----------------

# a data: URI in a query string, its comma raw and its "+" encoded (a raw "+" is a space)
PNG_DATA_URI = urllib.parse.quote(
    "data:image/png;base64," + base64.b64encode(no_face_image()).decode(), safe=":;,/=")


@pytest.mark.parametrize("method, path, raw", [
    # a name with a comma, which names now allow
    ("GET", "/enroll", "name=Martin Luther King, Jr.&image_url=ftp://refused.example"),
    ("POST", "/enroll", "name=Martin Luther King, Jr.&image_url=ftp://refused.example"),
    # a data: URI, which image_url and image_base64 take in the query
    ("GET", "/detect", "image_url=" + PNG_DATA_URI),
    ("GET", "/detect", "image_base64=" + PNG_DATA_URI),
])
def test_a_comma_in_a_query_value_is_part_of_the_value(env, method, path, raw):
    """RFC 3986 lets a query keep "," unencoded, and curl, Postman and werkzeug send it so.
    (falcon, as hug set it up, split such a value into a list, refused as invalid_value
    "Invalid text value provided": a name with a comma, a data: URI.)"""
    if method == "GET":
        response = client().get(path, query_string=raw)
    else:
        response = client().post(path, data=raw, content_type="application/x-www-form-urlencoded")
    body = response.get_json()
    assert response.status_code in (200, 400), body
    assert "invalid_value" not in body.get("errors", {}).values(), body
    if path == "/enroll":
        assert body == {"errors": {"image_url": "url_not_allowed"}}  # the name was accepted
    else:
        assert body == {"faces": [], "image": {"width": 320, "height": 240}}


@pytest.mark.parametrize("path", ["/docs", "/docs/{asset}", "/openapi.yaml"])
def test_a_parameter_the_docs_or_the_yaml_do_not_take_gets_the_documented_400(env, path):
    response = client().get(_example_path(path), query_string={"x": "1"})
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert response.get_json() == {"errors": {"x": "unknown_parameter"},
                                   "detail": {"x": "accepted: asset" if "docs" in path
                                              else "accepted: none"}}
    _documented("GET", path, response)


@pytest.mark.parametrize("second, field, code", [
    ({"other_image": (io.BytesIO(b"not an image"), "x.jpg")}, "other_image", "unsupported_image"),
    ({"other_image_url": "ftp://refused.example/x.jpg"}, "other_image_url", "url_not_allowed"),
    ({"other_image_base64": base64.b64encode(b"not an image").decode()}, "other_image",
     "unsupported_image"),
])
def test_errors_of_the_second_image_name_its_field(env, second, field, code):
    data = {"image": (io.BytesIO(face(FACE_PHOTO).read_bytes()), "face.jpg"), **second}
    response = client().post("/verify", data=data, content_type="multipart/form-data")
    assert response.get_json()["errors"] == {field: code}


def test_a_multipart_form_of_many_parts_is_a_400(env):
    data = {f"field{number}": "x" for number in range(MULTIPART_PARTS + 1)}
    data["image"] = (io.BytesIO(no_face_image()), "x.png")
    response = client().post("/detect", data=data, content_type="multipart/form-data")
    assert response.status_code == 400, response.get_json()


@pytest.mark.parametrize("name", ["service", "request", "response", "body"])
def test_a_parameter_named_like_what_hug_injects_is_unknown_too(env, name):
    response = client().get("/health", query_string={name: "1"})
    assert response.status_code == 400
    assert response.get_json()["errors"] == {name: "unknown_parameter"}


def test_a_malformed_content_length_gets_the_documented_400(env):
    response = client().post("/recognize", data=b"x", content_type="image/png",
                             environ_overrides={"CONTENT_LENGTH": "abc"})
    assert response.status_code == 400
    _documented("POST", "/recognize", response)


@pytest.mark.parametrize("content_type", ["IMAGE/PNG", "Application/JSON"])
def test_a_body_type_in_capitals_is_read(env, content_type):
    data = no_face_image() if content_type == "IMAGE/PNG" else json.dumps(
        {"image_base64": base64.b64encode(no_face_image()).decode()})
    response = client().post("/detect", data=data, content_type=content_type)
    assert response.status_code == 200, response.get_json()


def test_a_listed_origin_may_read_retry_after(reconfigure):
    reconfigure(cors_origins="https://app.example.com", rate_limit="0.01", rate_burst="1")
    listed = {"Origin": "https://app.example.com"}
    client().get("/people", headers=listed)
    limited = client().get("/people", headers=listed)
    assert limited.status_code == 429
    assert limited.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Retry-After" in limited.headers.get("Access-Control-Expose-Headers", "")


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "9223372036854775808", "-1", "x"])
def test_a_last_event_id_that_is_no_event_s_id_gets_a_400_naming_it(env, value):
    """str.isdigit() takes "²" (int() does not: a 500) and Arabic-Indic digits; an id over the
    largest was refused as since_id, a parameter the caller had not given."""
    response = client().get("/events/stream", headers={"Last-Event-ID": value})
    assert response.status_code == 400
    assert response.get_json() == {"errors": {"last_event_id": "invalid_value"},
                                   "detail": {"last_event_id": "an event's id"}}


@pytest.mark.parametrize("path, body", [
    ("/streams", {"name": "door", "source": "rtsp://127.0.0.1/\ud800"}),
    ("/webhooks", {"url": "http://127.0.0.1/\ud800"}),
    ("/webhooks", {"url": "http://127.0.0.1/", "secret": "\udfff" * 16}),
    ("/webhooks", {"url": "http://127.0.0.1/", "people": ["Ann", "\ud800"]}),
])
def test_a_json_string_with_a_lone_surrogate_gets_a_400(reconfigure, path, body):
    """JSON's "\\ud800" parses into a str that no UTF-8 can hold: storing it was a 500."""
    reconfigure(stream_networks="127.0.0.0/8", webhook_networks="127.0.0.0/8")
    response = client().post(path, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    ((field, code),) = response.get_json()["errors"].items()
    assert field in body and code == "invalid_value"


def test_a_webhook_secret_with_a_control_character_gets_a_400(reconfigure):
    """A NUL in a secret was stored in SQLite, and PostgreSQL's text cannot hold it (a 500)."""
    reconfigure(webhook_networks="127.0.0.0/8")
    response = client().post("/webhooks", json={"url": "http://127.0.0.1/",
                                                "secret": "\x00" + "s" * 20})
    assert response.status_code == 400
    assert response.get_json() == {"errors": {"secret": "invalid_value"}, "detail": {
        "secret": "16 to 256 characters, no control characters"}}
