"""Biometric data stays in: a realistic session leaves no image bytes, no encodings and no image
URLs (with their signed tokens) in any log, and no response carries an encoding.

The same session runs in-process through hug.test with every logger captured at DEBUG, and over
real sockets against hug's development server and gunicorn (the README's production command),
whose whole stdout and stderr are captured. Names may appear in logs; nothing here looks for them.
"""

import base64
import json
import logging
import re
import secrets
from pathlib import Path
from urllib.parse import quote

import falcon
import hug
import numpy as np
import pytest
import requests
from werkzeug import Response

import api
from conftest import face, free_port, fresh_store, no_face_image, upload
from recognizer.store import open_store
from test_server import VENV_BIN, read_log, server, settings

pytestmark = pytest.mark.store  # run on both store backends

# Runs of 8 or more decimal numbers, however they are printed: a vector of some kind.
NUMBER_RUN = re.compile(rb"(?:[-+]?\d*\.\d+(?:[eE][-+]?\d+)?[\s,;\[\]()]+){8,}")
ENCODING_KEYS = {"encoding", "encodings", "embedding", "embeddings", "descriptor", "vector"}


class Secrets:
    """Image URLs with secrets in them, served by the local image server."""

    def __init__(self, httpserver):
        self.token, self.signature = secrets.token_hex(12), secrets.token_hex(12)
        self.password = "pw" + secrets.token_hex(8)
        self.folder = "img-" + secrets.token_hex(6)  # the path itself is private too
        self.httpserver = httpserver
        self.sent: list[bytes] = []  # every image the service was given, to look for later
        self.urls: list[str] = []

    def url(self, data: bytes | None, name: str) -> str:
        """Serve data (None: a path nobody serves) at a URL carrying the secrets."""
        path = f"/{self.folder}/{name}"
        if data is not None:
            self.httpserver.expect_request(path).respond_with_data(data, content_type="image/jpeg")
            self.sent.append(data)
        url = self.httpserver.url_for(path) + f"?sig={self.signature}&token={self.token}"
        self.urls.append(url)
        return url

    def redirect_loop(self) -> str:
        path = f"/{self.folder}/loop.jpg"
        url = self.httpserver.url_for(path) + f"?token={self.token}"
        self.httpserver.expect_request(path).respond_with_response(
            Response(status=302, headers={"Location": url}))
        self.urls.append(url)
        return url

    def needles(self) -> list[tuple[str, bytes]]:
        found = [("token", self.token.encode()), ("signature", self.signature.encode()),
                 ("password", self.password.encode()), ("private path", self.folder.encode())]
        for url in self.urls:
            found.append(("full URL", url.encode()))
            found.append(("full URL, percent-encoded", quote(url, safe="").encode()))
            found.append(("URL query", url.split("?", 1)[1].encode()))
        return found


class ImageRuns:
    """Finds any run of an image's bytes in a text: raw, escaped as in a bytes repr, in hex or
    in base64 (at any of the three alignments). Each form is cut into windows at a fixed step,
    so any run of width + step bytes (or characters) of it is found."""

    def __init__(self, images: list[bytes]):
        self.windows: dict[int, dict[bytes, str]] = {}
        for data in images:
            self._add(data, "raw", 32)
            self._add(repr(data)[2:-1].encode(), "escaped", 64)
            self._add(data.hex().encode(), "hex", 64)
            self._add(data.hex().upper().encode(), "HEX", 64)
            for shift in range(3):
                self._add(base64.b64encode(data[shift:]), "base64", 40)

    def _add(self, form: bytes, label: str, width: int):
        windows = self.windows.setdefault(width, {})
        for start in range(0, len(form) - width + 1, width // 2):
            windows.setdefault(form[start:start + width], f"image bytes ({label})")

    def __call__(self, text: bytes) -> list[str]:
        found = set()
        for width, windows in self.windows.items():
            for start in range(len(text) - width + 1):
                label = windows.get(text[start:start + width])
                if label:
                    found.add(label)
        return sorted(found)


def encoding_needles(encodings: dict[str, list[np.ndarray]]) -> list[tuple[str, bytes]]:
    """Each encoding printed the ways code tends to print one: raw, hex, base64, repr, str,
    list, JSON, and every pair of neighbouring numbers at several precisions."""
    found = []
    for person, faces in encodings.items():
        for encoding in faces:
            raw = np.asarray(encoding, dtype="<f8").tobytes()
            values = [float(x) for x in encoding]
            forms = {
                "raw": raw[:32], "hex": raw[:32].hex().encode(),
                "base64": base64.b64encode(raw)[:40],
                "repr": repr(encoding)[7:47].encode(), "str": str(encoding)[1:41].encode(),
                "list": str(values)[1:60].encode(), "json": json.dumps(values)[1:60].encode(),
                "float32": np.asarray(encoding, dtype="<f4").tobytes()[:32],
            }
            label = f"encoding of {person}"
            found += [(f"{label} ({form})", needle) for form, needle in forms.items()]
            for first, second in zip(values, values[1:]):
                for form in ("{:.4f}", "{:.5f}", "{:.6f}", "{:.8f}", "{!r}"):
                    for separator in (", ", ",", " ", "  "):
                        needle = form.format(first) + separator + form.format(second)
                        found.append((f"{label} (numbers {form})", needle.encode()))
    return found


def leaks(text: bytes, needles: list[tuple[str, bytes]], images: ImageRuns | None = None):
    found = sorted({label for label, needle in needles if needle in text})
    found += [f"a run of numbers: {m.group()[:60]!r}" for m in NUMBER_RUN.finditer(text)]
    return found + (images(text) if images else [])


def vectors_in(value, path="$") -> list[str]:
    """Paths in a JSON value that hold an encoding-like list or an encoding-like key."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key.lower() in ENCODING_KEYS:
                found.append(f"{path}.{key}")
            found += vectors_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        if sum(isinstance(item, (int, float)) for item in value) >= 16:
            found.append(path)
        for index, item in enumerate(value):
            found += vectors_in(item, f"{path}[{index}]")
    return found


# -- the session ---------------------------------------------------------------------------


class HttpClient:
    """Talks to a real server over a socket."""

    def __init__(self, base):
        self.base = base

    def __call__(self, method, path, params=None, data=None, files=None, headers=None):
        response = requests.request(method, self.base + path, params=params, data=data,
                                    files=files, headers=headers, timeout=120)
        return response.status_code, response.content


class HugClient:
    """Calls the API in-process through hug.test."""

    def __call__(self, method, path, params=None, data=None, files=None, headers=None):
        body = "" if data is None else data  # hug.test would send None as JSON "null"
        headers = {key.lower(): value for key, value in (headers or {}).items()}
        if files:
            (field, (filename, content, _)), = files.items()
            body, headers = upload(path.strip("/"), content, dict(data or {}), filename)
        response = hug.test.call(method, api, path, body=body, headers=headers, **(params or {}))
        text = response.data if isinstance(response.data, str) else json.dumps(response.data)
        return int(response.status.split()[0]), text.encode()


def run_session(client, urls: Secrets, read_encodings) -> tuple[list, dict]:
    """Enrol, recognise, list, delete and fail in the usual ways.

    :return: every (step, status, body) and the encodings enrolled (read before the delete)
    """
    steps = []

    def step(label, expected, method, path, **request):
        status, body = client(method, path, **request)
        steps.append((label, status, body))
        assert status == expected, (label, status, body[:300])
        return json.loads(body)

    def photo(relative):
        data = face(relative).read_bytes()
        urls.sent.append(data)
        return data

    step("enrol by URL", 201, "GET", "/enroll",
         params={"name": "Barack Obama", "image_url": urls.url(
             face("people/obama/obama.jpg").read_bytes(), "obama.jpg")})
    step("enrol by multipart upload", 201, "POST", "/enroll", data={"name": "Barack Obama"},
         files={"image": ("obama1.jpg", photo("people/obama/obama1.jpg"), "image/jpeg")})
    step("enrol another by upload", 201, "POST", "/enroll", data={"name": "Joe Biden"},
         files={"image": ("biden.jpg", photo("people/biden/biden.jpg"), "image/jpeg")})
    step("enrol by raw body", 201, "POST", "/enroll", params={"name": "Rose Leslie"},
         data=photo("people/rose_leslie/rose_leslie_img1.jpg"),
         headers={"Content-Type": "image/jpeg"})
    enrolled = read_encodings()

    both = step("recognise by URL", 200, "GET", "/recognize", params={
        "image_url": urls.url(face("misc/two_people.jpg").read_bytes(), "two.jpg")})
    assert sorted(f["name"] for f in both["faces"]) == ["Barack Obama", "Joe Biden"]
    one = step("recognise an upload", 200, "POST", "/recognize", data={"top_k": "2"},
               files={"image": ("o2.jpg", photo("people/obama/obama2.jpg"), "image/jpeg")})
    assert [f["name"] for f in one["faces"]] == ["Barack Obama"]
    stranger = step("recognise a stranger, raw body", 200, "POST", "/recognize",
                    data=photo("people/kit_harington/john1.jpeg"),
                    headers={"Content-Type": "image/jpeg"})
    assert [f["name"] for f in stranger["faces"]] == [None]
    step("recognise a photo without a face", 200, "POST", "/recognize", data=no_face_image(),
         headers={"Content-Type": "image/png"})
    assert step("list", 200, "GET", "/people")["total"] == 3
    step("health", 200, "GET", "/health")

    step("a URL with userinfo", 400, "GET", "/recognize", params={
        "image_url": f"http://admin:{urls.password}@127.0.0.1:1/{urls.folder}/x.jpg"})
    step("a URL that is not http", 400, "GET", "/enroll", params={
        "name": "Nobody", "image_url": urls.url(None, "ftp.jpg").replace("http://", "ftp://")})
    refused = urls.url(None, "refused.jpg").replace(
        f":{urls.httpserver.port}/", f":{free_port()}/")
    urls.urls.append(refused)
    step("a URL nobody answers", 400, "GET", "/recognize", params={"image_url": refused})
    step("a URL the image server does not have", 400, "GET", "/enroll",
         params={"name": "Nobody", "image_url": urls.url(None, "missing.jpg")})
    step("a redirect loop", 400, "GET", "/recognize", params={"image_url": urls.redirect_loop()})
    step("enrol a photo without a face, by URL", 422, "GET", "/enroll", params={
        "name": "Nobody", "image_url": urls.url(no_face_image(), "noface.png")})
    step("enrol a photo without a face, by upload", 422, "POST", "/enroll",
         data={"name": "Nobody"}, files={"image": ("n.png", no_face_image(), "image/png")})
    step("enrol two faces", 422, "POST", "/enroll", data={"name": "Nobody"},
         files={"image": ("two.jpg", photo("misc/two_people.jpg"), "image/jpeg")})
    obama = face("people/obama/obama.jpg").read_bytes()
    step("a truncated image", 415, "POST", "/recognize", data=obama[: len(obama) // 2],
         headers={"Content-Type": "image/jpeg"})
    step("not an image", 415, "POST", "/recognize", data=b"<html>" + obama[1000:1400],
         headers={"Content-Type": "image/jpeg"})
    step("a bad name", 400, "GET", "/enroll",
         params={"name": "../etc", "image_url": urls.url(obama, "obama.jpg")})

    assert step("delete", 200, "DELETE", "/people/Joe Biden")["deleted_faces"] == 1
    step("delete again", 404, "DELETE", "/people/Joe Biden")
    step("an unknown route", 404, "GET", "/nope", params={"image_url": urls.urls[0]})
    return steps, enrolled


def check(steps, enrolled, urls, logs: dict[str, bytes], skip_url_check=()):
    """Every log clean, every body free of encodings."""
    assert sum(len(faces) for faces in enrolled.values()) == 4
    forbidden, images = encoding_needles(enrolled), ImageRuns(urls.sent)
    problems = {}
    for name, text in logs.items():
        found = leaks(text, forbidden, images)
        if name not in skip_url_check:
            found += leaks(text, urls.needles())
        if found:
            problems[name] = found
    assert problems == {}, f"biometric data or URLs in the logs: {problems}"
    for label, _, body in steps:
        assert vectors_in(json.loads(body)) == [], label
        assert leaks(body, forbidden) == [], label


# -- in-process, every logger at DEBUG -------------------------------------------------------


def capture_everything(caplog):
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
            if not logger.propagate:
                logger.addHandler(caplog.handler)


# The image server (pytest-httpserver, i.e. werkzeug) is the remote site, not the service: its
# own request log naturally names the URLs it served.
REMOTE_SITE = ("werkzeug",)
# urllib3 logs every request line, query included, at DEBUG, when forced to (the service holds
# that logger at INFO: see test_image_url_tokens_stay_out_of_debug_logs).
URLLIB3_DEBUG = "urllib3.connectionpool"


def test_a_session_in_process_logs_nothing_biometric_even_at_debug(env, httpserver, caplog):
    env.setenv("FACEREC_RATE_LIMIT", "0")
    capture_everything(caplog)
    urls = Secrets(httpserver)
    steps, enrolled = run_session(HugClient(), urls, lambda: api.get_service().store.encodings())
    records = [r for r in caplog.records if not r.name.startswith(REMOTE_SITE)]
    assert any(r.name == "facerec.api" for r in records), "the service's own log was captured"

    def text(selected):
        lines = []
        for record in selected:
            lines.append(caplog.handler.format(record))
            lines.append(repr(record.args))  # what a structured (JSON) handler would emit
        return "\n".join(lines).encode("utf-8", "backslashreplace")

    ours = [r for r in records if r.name != URLLIB3_DEBUG]
    check(steps, enrolled, urls, {"caplog": text(ours), "caplog with urllib3": text(records)},
          skip_url_check={"caplog with urllib3"})
    print(f"\n{len(records)} log records from {sorted({r.name for r in records})}")


def test_image_url_tokens_stay_out_of_debug_logs(env, httpserver, caplog):
    """Logging configured at DEBUG (the root logger, as basicConfig(level=DEBUG) does) must not
    let urllib3's request lines through: the service holds that logger at INFO."""
    caplog.set_level(logging.DEBUG)
    urls = Secrets(httpserver)
    response = hug.test.get(api, "recognize", image_url=urls.url(no_face_image(), "x.png"))
    assert response.status == falcon.HTTP_200
    ours = [r for r in caplog.records if not r.name.startswith(REMOTE_SITE)]
    assert urls.token not in "\n".join(r.getMessage() for r in ours)


# -- real servers over sockets -----------------------------------------------------------------


def stored_encodings(store_path):
    def read():
        store = open_store(store_path)
        try:
            return store.encodings()
        finally:
            store.close()
    return read


def test_the_development_server_logs_nothing_biometric(store_location, httpserver):
    urls = Secrets(httpserver)
    env_vars = settings(store_location) | {"FACEREC_RATE_LIMIT": "0"}
    port = free_port()
    command = [f"{VENV_BIN}/hug", "-f", "api.py", "-p", str(port)]
    with server(command, env_vars, port) as (base, log):
        steps, enrolled = run_session(HttpClient(base), urls,
                                      stored_encodings(env_vars["FACEREC_STORE"]))
        output = read_log(log)
    assert "GET /enroll" in output  # the request lines were captured
    check(steps, enrolled, urls, {"server output": output.encode()})


@pytest.fixture(scope="module")
def gunicorn_run(tmp_path_factory, make_httpserver):
    """The README's production command (with gunicorn's own log at debug and an access log
    written to a file of its own): the session's results and both logs, for two tests."""
    tmp_path = tmp_path_factory.mktemp("gunicorn")
    make_httpserver.clear()
    urls = Secrets(make_httpserver)
    access = Path(tmp_path / "access.log")
    port = free_port()
    command = [f"{VENV_BIN}/gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--timeout", "60",
               "--log-level", "debug", "--access-logfile", str(access), "api:__hug_wsgi__"]
    with fresh_store(tmp_path) as location:
        env_vars = settings(location) | {"FACEREC_RATE_LIMIT": "0", "OPENBLAS_NUM_THREADS": "1"}
        with server(command, env_vars, port) as (base, log):
            steps, enrolled = run_session(HttpClient(base), urls, stored_encodings(location))
            output = read_log(log)
    make_httpserver.clear()
    return steps, enrolled, urls, output, access.read_bytes()


def test_gunicorn_logs_nothing_biometric(gunicorn_run):
    steps, enrolled, urls, output, access = gunicorn_run
    assert "POST /enroll 201" in output and "Booting worker" in output
    check(steps, enrolled, urls, {"gunicorn output": output.encode()})
    # the access log holds request lines only: no image bytes or encodings there either
    check(steps, enrolled, urls, {"gunicorn access log": access},
          skip_url_check={"gunicorn access log"})


def test_gunicorn_access_log_is_the_services_own_line_by_route(gunicorn_run):
    """gunicorn's access log would name paths (person names) and, decoded, let a %0A forge a
    line: it is left empty, and the service logs each request by its route instead."""
    _, _, urls, output, access = gunicorn_run
    assert access == b""
    assert "POST /enroll 201" in output and leaks(output.encode(), urls.needles()) == []
