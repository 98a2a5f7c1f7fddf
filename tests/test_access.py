"""API keys with scopes, the rate limit, security headers and JSON for every refusal."""

import logging

import falcon
import hug
import pytest
from werkzeug.test import Client

import api
from conftest import no_face_image
from recognizer.access import Gate, TokenBuckets, parse_keys
from recognizer.config import ConfigError, Settings
from recognizer.errors import Forbidden, RateLimited, Unauthorized
from recognizer.web.scopes import declared

READ, ADMIN = "r-0123456789", "a-9876543210"
KEYS = f"{READ}:read,{ADMIN}:admin"


def test_keys_parse_from_commas_lines_and_comments_and_errors_never_show_a_key():
    keys = parse_keys("k1:read, k2:admin\n# a comment\nk:3:admin  # colons in a key\n")
    assert [key.scope for key in keys] == ["read", "admin", "admin"]
    for bad in ("secret-one:write", ":admin", "secret-two", "same:read,same:admin"):
        with pytest.raises(ValueError) as refused:
            parse_keys(bad)
        assert "secret" not in str(refused.value) and "same" not in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"FACEREC_API_KEYS": "hunter2:superuser"})
    assert "hunter2" not in str(refused.value)
    assert "hunter2" not in repr(Settings.from_env({"FACEREC_API_KEYS": "hunter2:read"}))


def test_a_key_file_adds_keys(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# service keys\nfile-key:admin\n")
    settings = Settings.from_env({"FACEREC_API_KEYS": "env-key:read",
                                  "FACEREC_API_KEYS_FILE": str(path)})
    assert [key.scope for key in settings.api_keys] == ["read", "admin"]
    with pytest.raises(ConfigError, match="FACEREC_API_KEYS_FILE: cannot read"):
        Settings.from_env({"FACEREC_API_KEYS_FILE": str(tmp_path / "missing")})


# What each route declares: (method, route) -> scope (None: open). A new route must be added
# here with its scope, or test_every_route_declares_its_scope fails.
SCOPES = {
    ("GET", "/health"): None, ("GET", "/ready"): None, ("GET", "/openapi.json"): None,
    ("GET", "/openapi.yaml"): None, ("GET", "/docs"): None, ("GET", "/docs/{asset}"): None,
    ("GET", "/recognize"): "read", ("POST", "/recognize"): "read",
    ("GET", "/verify"): "read", ("POST", "/verify"): "read",
    ("GET", "/detect"): "read", ("POST", "/detect"): "read",
    ("GET", "/people"): "read", ("GET", "/people/{name}"): "read", ("GET", "/metrics"): "read",
    ("GET", "/enroll"): "admin", ("POST", "/enroll"): "admin",
    ("DELETE", "/people/{name}"): "admin", ("DELETE", "/people/{name}/faces/{face_id}"): "admin",
    ("POST", "/people/{name}/rename"): "admin",
    ("GET", "/streams"): "read", ("GET", "/streams/{stream_id}"): "read",
    ("GET", "/streams/{stream_id}/live"): "read", ("GET", "/events"): "read",
    ("GET", "/events/stream"): "read", ("GET", "/events/{event_id}/snapshot"): "read",
    ("GET", "/presence"): "read", ("GET", "/webhooks"): "read",
    ("GET", "/webhooks/{webhook_id}"): "read",
    ("POST", "/streams"): "admin", ("DELETE", "/streams/{stream_id}"): "admin",
    ("POST", "/webhooks"): "admin", ("DELETE", "/webhooks/{webhook_id}"): "admin",
    # the web app's: unknown faces and "who is this?", webcam sessions, what a key may do
    ("GET", "/"): None, ("GET", "/app/{asset}"): None,
    ("GET", "/favicon.ico"): None, ("GET", "/access"): "read",
    ("GET", "/unknown"): "read", ("POST", "/events/{event_id}/enroll"): "admin",
    ("POST", "/events/{event_id}/not"): "admin",
    ("POST", "/sessions"): "read", ("POST", "/sessions/{session_id}/frames"): "read",
    ("DELETE", "/sessions/{session_id}"): "read",
    ("POST", "/sessions/{session_id}/tracks/{track}/enroll"): "admin",
    # CompreFace's API (recognizer.web.compat)
    ("POST", "/api/v1/recognition/recognize"): "read",
    ("POST", "/api/v1/recognition/faces"): "admin", ("GET", "/api/v1/recognition/faces"): "read",
    ("DELETE", "/api/v1/recognition/faces"): "admin",
    ("DELETE", "/api/v1/recognition/faces/{image_id}"): "admin",
    ("GET", "/api/v1/recognition/subjects"): "read",
    ("POST", "/api/v1/recognition/subjects"): "admin",
    ("PUT", "/api/v1/recognition/subjects/{subject_name}"): "admin",
    ("DELETE", "/api/v1/recognition/subjects/{subject_name}"): "admin",
    ("POST", "/api/v1/verification/verify"): "read",
    ("POST", "/api/v1/detection/detect"): "read",
    # DeepStack's (its clients may send the key as the form field api_key)
    ("POST", "/v1/vision/face"): "read", ("POST", "/v1/vision/face/recognize"): "read",
    ("POST", "/v1/vision/face/register"): "admin", ("POST", "/v1/vision/face/list"): "read",
    ("POST", "/v1/vision/face/delete"): "admin",
}
SCOPES |= {("HEAD", path): scope for (method, path), scope in SCOPES.items() if method == "GET"}
READ_ONLY_METHODS = {"GET", "HEAD", "OPTIONS"}


def routes():
    """(method, route, the scopes it declares) of every HTTP route of the API."""
    for by_template in api.__hug__.http.routes.values():
        for template, by_method in by_template.items():
            for method, versions in by_method.items():
                for interface in versions.values():
                    yield method, template, declared(interface.requires)


def test_every_route_declares_its_scope():
    """A route that changes data without a declared scope fails here: each declares exactly
    one (hug's requires=), the one listed above, and every method that can change data
    (anything but GET) declares one at least as strict as read."""
    found = {(method, template): scopes for method, template, scopes in routes()}
    assert all(len(scopes) == 1 for scopes in found.values()), found
    assert {route: scopes[0] for route, scopes in found.items()} == SCOPES
    assert all(scopes[0] is not None for (method, _), scopes in found.items()
               if method not in READ_ONLY_METHODS)
    not_found = api.__hug__.http.not_found_handlers[None]
    assert declared(not_found.requires) == ["read"]  # unknown routes need a key too


def test_only_a_webcam_session_s_frames_are_not_rate_limited():
    """A session takes one frame at a time (409 session_busy otherwise), as fast as the
    webcam sends them: its frames do not spend from the rate limit; every other route with a
    scope does."""
    unmetered = {(method, template)
                 for by_template in api.__hug__.http.routes.values()
                 for template, by_method in by_template.items()
                 for method, versions in by_method.items()
                 for interface in versions.values()
                 for check in interface.requires or ()
                 if getattr(check, "__name__", "").endswith("_unmetered")}
    assert unmetered == {("POST", "/sessions/{session_id}/frames")}


def test_the_gate_checks_key_scope_and_query():
    gate = Gate(parse_keys(KEYS), rate=0, burst=1)
    gate.check("read", READ, set(), "ip")
    gate.check("admin", ADMIN, set(), "ip")
    gate.check(None, None, set(), "ip")
    for presented, code in ((None, "missing_api_key"), ("", "missing_api_key"),
                            (READ + "x", "invalid_api_key"), (READ.upper(), "invalid_api_key")):
        with pytest.raises(Unauthorized, match=code):
            gate.check("read", presented, set(), "ip")
    with pytest.raises(Forbidden):
        gate.check("admin", READ, set(), "ip")
    with pytest.raises(Unauthorized, match="api_key_in_query"):
        gate.check("read", ADMIN, {"API_KEY"}, "ip")


def test_token_buckets_allow_a_burst_then_the_rate():
    now = [100.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token every half second
    assert buckets.take("b") == 0  # every client has its own bucket
    now[0] += 0.5
    assert buckets.take("a") == 0 and buckets.take("a") > 0
    now[0] += 100
    assert [buckets.take("a") for _ in range(4)][:3] == [0, 0, 0]  # refilled to the burst only


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def keyed(reconfigure):
    reconfigure(api_keys=KEYS)


def call(method, path, key=None, **kwargs):
    headers = kwargs.pop("headers", {}) | ({"X-API-Key": key} if key is not None else {})
    return hug.test.call(method, api, path, headers=headers, **kwargs)


def test_every_endpoint_but_health_needs_a_key(keyed):
    for method, path in (("GET", "people"), ("GET", "recognize"), ("POST", "enroll"),
                         ("DELETE", "people/ada")):
        refused = call(method, path)
        assert refused.status == falcon.HTTP_401
        assert refused.data == {"errors": {"api_key": "missing_api_key"}}
    assert call("GET", "people", key="wrong").data == {"errors": {"api_key": "invalid_api_key"}}
    assert call("GET", "health").status == falcon.HTTP_200
    # unknown routes too (through WSGI: hug.test never reaches the API's not-found handler)
    nowhere = Client(api.__hug_wsgi__).get("/nowhere")
    assert nowhere.status_code == 401
    assert nowhere.get_json() == {"errors": {"api_key": "missing_api_key"}}
    found = Client(api.__hug_wsgi__).get("/nowhere", headers={"X-API-Key": READ})
    assert (found.status_code, found.get_json()) == (404, {"errors": {"path": "not_found"}})


def test_read_keys_recognise_and_list_admin_keys_also_change_the_store(keyed):
    assert call("GET", "people", key=READ).status == falcon.HTTP_200
    assert call("POST", "recognize", key=READ, body=no_face_image(),
                headers={"content-type": "image/png"}).data["faces"] == []
    forbidden = call("POST", "enroll", key=READ, params={"name": "ada"}, body=no_face_image(),
                     headers={"content-type": "image/png"})
    assert forbidden.status == falcon.HTTP_403
    assert forbidden.data == {"errors": {"api_key": "insufficient_scope"}}
    assert call("DELETE", "people/ada", key=READ).status == falcon.HTTP_403
    enrolled = call("POST", "enroll", key=ADMIN, params={"name": "ada"}, body=no_face_image(),
                    headers={"content-type": "image/png"})
    assert enrolled.data == {"errors": {"image": "no_face"}}  # past the gate, to the photo
    assert call("DELETE", "people/ada", key=ADMIN).status == falcon.HTTP_404


def test_a_key_in_the_query_string_is_never_accepted(keyed):
    refused = call("GET", "people", key=ADMIN, params={"api_key": ADMIN})
    assert refused.status == falcon.HTTP_401
    assert refused.data == {"errors": {"api_key": "api_key_in_query"}}


def test_over_the_rate_limit_is_429_with_retry_after(reconfigure):
    reconfigure(api_keys=KEYS, rate_limit=0.001, rate_burst=2)  # one token per 1000 s
    assert [call("GET", "people", key=READ).status for _ in range(2)] == [falcon.HTTP_200] * 2
    limited = call("GET", "people", key=READ)
    assert limited.status == falcon.HTTP_429
    assert limited.data == {"errors": {"rate": "rate_limited"}}
    assert 900 <= int(limited.headers_dict["Retry-After"]) <= 1000
    assert call("GET", "people", key=ADMIN).status == falcon.HTTP_200  # a bucket per key
    assert call("GET", "health").status == falcon.HTTP_200  # health is never limited


def test_an_open_service_limits_by_client_address(reconfigure):
    reconfigure(rate_limit=0.001, rate_burst=1)
    assert call("GET", "people").status == falcon.HTTP_200
    assert call("GET", "people").status == falcon.HTTP_429


def test_every_response_carries_the_security_headers_and_json(env):
    env.setenv("FACEREC_MAX_IMAGE_BYTES", "100")
    answers = [call("GET", "health"), call("GET", "people"), call("GET", "nowhere"),
               call("PUT", "recognize"), call("POST", "recognize", body="x" * 100_000,
                                               headers={"content-type": "image/png"})]
    assert [a.status for a in answers] == [falcon.HTTP_200, falcon.HTTP_200, falcon.HTTP_404,
                                           falcon.HTTP_405, falcon.HTTP_413]
    for answer in answers:
        assert answer.headers_dict["Cache-Control"] == "no-store"
        assert answer.headers_dict["X-Content-Type-Options"] == "nosniff"
        assert answer.headers_dict["Content-Type"].startswith("application/json")
    assert answers[3].data == {"errors": {"method": "method_not_allowed"}}


def test_an_open_service_says_so_once_at_start_and_a_command_never(env, caplog):
    with caplog.at_level(logging.WARNING, logger="facerec.api"):
        hug.test.cli("people", module=api)
        assert not [r for r in caplog.records if "open" in r.message]  # it is about HTTP
        api.get_service().store.close()
        api.get_service.cache_clear()
        hug.test.get(api, "people")
        hug.test.get(api, "people")
    assert [r.message for r in caplog.records if "open" in r.message] == [
        "no API keys are set (FACEREC_API_KEYS): the HTTP API is open to anyone"]


def test_a_keyed_service_does_not_warn(keyed, caplog):
    with caplog.at_level(logging.WARNING, logger="facerec.api"):
        hug.test.get(api, "health")
    assert not [r for r in caplog.records if "open" in r.message]


def test_an_unmetered_check_spends_nothing_but_still_checks_the_key():
    gate = Gate(parse_keys(KEYS), rate=0.001, burst=1)
    gate.check("read", READ, set(), "ip")
    for _ in range(5):
        gate.check("read", READ, set(), "ip", metered=False)
    with pytest.raises(RateLimited):
        gate.check("read", READ, set(), "ip")
    with pytest.raises(Unauthorized, match="invalid_api_key"):
        gate.check("read", "wrong", set(), "ip", metered=False)
    assert (gate.scope_of(READ), gate.scope_of(ADMIN), gate.scope_of("wrong"),
            gate.scope_of(None)) == ("read", "admin", "none", "none")
    assert Gate((), rate=0, burst=1).scope_of(None) == "open"


def test_the_gate_raises_rate_limited_with_whole_seconds():
    gate = Gate(parse_keys(KEYS), rate=0.5, burst=1)
    gate.check("read", READ, set(), "ip")
    with pytest.raises(RateLimited) as limited:
        gate.check("read", READ, set(), "ip")
    assert limited.value.retry_after in (1, 2)
