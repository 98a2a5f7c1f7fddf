"""End to end against real server processes over real sockets: hug's server and gunicorn."""

import http.client
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests

from conftest import ROOT, face, free_port

pytestmark = pytest.mark.store  # run on both store backends

VENV_BIN = os.path.dirname(sys.executable)


@contextmanager
def server(command, env_vars, port):
    """Run a server process until the block ends; yields its base URL and its captured log."""
    log = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(command, cwd=ROOT, env=os.environ | env_vars, stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # (workers still loading)
                pass
            assert process.poll() is None and time.monotonic() < deadline, \
                f"server did not start (exit code {process.poll()}):\n{read_log(log)[-3000:]}"
            time.sleep(0.3)
        yield base, log
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def read_log(log):
    log.flush()
    log.seek(0)
    return log.read()


def settings(store_location):
    return {"FACEREC_STORE": store_location, "FACEREC_ALLOW_PRIVATE_NETWORKS": "1",
            "PYTHONWARNINGS": "ignore"}


def hug_server(store_location, port):
    return server([f"{VENV_BIN}/hug", "-f", "api.py", "-p", str(port)], settings(store_location),
                  port)


def test_the_development_server_end_to_end(store_location, httpserver):
    photo = face("people/obama/obama.jpg")
    httpserver.expect_request("/obama.jpg").respond_with_data(photo.read_bytes(),
                                                              content_type="image/jpeg")
    image_url = httpserver.url_for("/obama.jpg") + "?token=SECRET-SIGNATURE"
    port = free_port()
    with hug_server(store_location, port) as (base, log):
        enrolled = requests.get(f"{base}/enroll", params={"name": "obama", "image_url": image_url})
        assert enrolled.status_code == 201 and enrolled.json()["face_count"] == 1

        with open(face("people/obama/obama2.jpg"), "rb") as probe:
            found = requests.post(f"{base}/recognize", files={"image": probe}).json()
        assert [f["name"] for f in found["faces"]] == ["obama"]

        # the CLI writes to the same store while the server runs; no restart needed
        cli = subprocess.run(
            [f"{VENV_BIN}/hug", "-f", "api.py", "-c", "enroll", "biden",
             str(face("people/biden/biden.jpg"))],
            cwd=ROOT, env=os.environ | settings(store_location), capture_output=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        with open(face("misc/two_people.jpg"), "rb") as probe:
            both = requests.post(f"{base}/recognize", data=probe.read(),
                                 headers={"Content-Type": "image/jpeg"}).json()
        assert sorted(f["name"] for f in both["faces"]) == ["biden", "obama"]

        missing = requests.get(f"{base}/no/such/route")
        assert missing.status_code == 404 and missing.json() == {"errors": {"path": "not_found"}}
        assert _declared_body_status(port, 50 * 1024 * 1024) == 413
        server_log = read_log(log)
    assert "SECRET-SIGNATURE" not in server_log and "obama.jpg" not in server_log
    assert "GET /enroll 201" in server_log

    with hug_server(store_location, free_port()) as (base, _):  # a restart loses nothing
        people = requests.get(f"{base}/people").json()
    assert people == {"people": [{"name": "biden", "face_count": 1}, {"name": "obama", "face_count": 1}],
                      "total": 2, "page": 1, "size": 100, "pages": 1}


def _declared_body_status(port, length):
    """Send only the headers of a huge upload: the answer must come before the body is read."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest("POST", "/recognize")
    connection.putheader("Content-Type", "image/jpeg")
    connection.putheader("Content-Length", str(length))
    connection.endheaders()
    response = connection.getresponse()
    connection.close()
    return response.status


def test_gunicorn_workers_see_each_others_enrolments(store_location):
    """The production command of the README: a worker per core, one OpenBLAS thread each."""
    port = free_port()
    command = [f"{VENV_BIN}/gunicorn", "-w", str(max(2, os.cpu_count())), "-b",
               f"127.0.0.1:{port}", "--timeout", "60", "api:__hug_wsgi__"]
    env_vars = settings(store_location) | {"OPENBLAS_NUM_THREADS": "1"}
    with server(command, env_vars, port) as (base, log):
        for _ in range(4):  # each worker loaded its models as it started (gunicorn.conf.py)
            ready = requests.get(f"{base}/ready", headers={"Connection": "close"}, timeout=10)
            assert ready.status_code == 200 and ready.json()["models_loaded"] is True
        with open(face("people/obama/obama.jpg"), "rb") as photo:
            enrolled = requests.post(f"{base}/enroll", params={"name": "obama"},
                                     files={"image": photo})
        assert enrolled.status_code == 201
        probe = face("people/obama/obama2.jpg").read_bytes()

        def recognize(_):
            answer = requests.post(f"{base}/recognize", data=probe,
                                   headers={"Content-Type": "image/jpeg", "Connection": "close"})
            return [f["name"] for f in answer.json()["faces"]]

        names, workers = [], set()
        with ThreadPoolExecutor(2) as pool:  # two at a time, so that both workers must answer
            for _ in range(20):
                names.extend(name for found in pool.map(recognize, range(2)) for name in found)
                workers = {line.split()[2] for line in read_log(log).splitlines()
                           if "POST /recognize 200" in line}
                if len(workers) == 2:
                    break
        assert len(workers) >= 2 and set(names) == {"obama"}


def test_two_services_on_one_store_see_each_others_changes_at_once(store_location):
    """Two service processes (two hosts, in production) on one store: an enrolment, a rename
    and a deletion made through one are seen by the other's very next request."""
    probe = face("people/obama/obama2.jpg").read_bytes()

    def names(base):
        answer = requests.post(f"{base}/recognize", data=probe,
                               headers={"Content-Type": "image/jpeg"})
        return [found["name"] for found in answer.json()["faces"]]

    with hug_server(store_location, free_port()) as (one, _), \
            hug_server(store_location, free_port()) as (other, _):
        assert names(other) == [None]
        with open(face("people/obama/obama.jpg"), "rb") as photo:
            enrolled = requests.post(f"{one}/enroll", params={"name": "obama"},
                                     files={"image": photo})
        assert enrolled.status_code == 201
        assert names(other) == ["obama"]
        renamed = requests.post(f"{other}/people/obama/rename", params={"new_name": "Barack"})
        assert renamed.status_code == 200, renamed.text
        assert names(one) == ["Barack"]
        assert requests.delete(f"{one}/people/Barack").status_code == 200
        assert names(other) == [None]
        assert requests.get(f"{other}/health").json()["face_count"] == 0


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on a TCP port (IPv4), from /proc."""
    found = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # LISTEN
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_scripts_serve_listens_on_loopback_unless_host_is_set_and_refuses_a_bad_port(
        store_location):
    port = free_port()
    with server(["scripts/serve"], settings(store_location) | {"PORT": str(port)}, port) as (
            base, log):
        assert listening_addresses(port) == {"127.0.0.1"}
        assert requests.get(f"{base}/health", timeout=10).json()["status"] == "ok"
        ready = requests.get(f"{base}/ready", timeout=10)  # the models loaded as it started
        assert ready.status_code == 200 and ready.json()["models_loaded"] is True
        assert "detection hog" in read_log(log)  # the start-up line
    for bad in ("abc", "70000", "0", "-1"):
        refused = subprocess.run(["scripts/serve"], cwd=ROOT, env=os.environ | {"PORT": bad},
                                 capture_output=True, text=True, timeout=30)
        assert refused.returncode == 2
        assert refused.stderr.strip() == (
            f"scripts/serve: PORT must be a number from 1 to 65535, not '{bad}'")


def test_an_error_before_the_body_is_read_keeps_the_connection_usable(store_location):
    """gunicorn drops at most 64 KiB of a body the service did not read, then closes the
    connection that its answer said stays open: the next request on it found it closed (and,
    behind nginx's kept-alive upstream connections, was someone else's 502). Over one kept-alive
    connection: uploads of a real 488 KB photo refused by the rate limit before their body is
    read, and each next request on the same connection is answered."""
    port = free_port()
    command = [f"{VENV_BIN}/gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "--timeout", "60",
               "api:__hug_wsgi__"]
    env_vars = settings(store_location) | {"OPENBLAS_NUM_THREADS": "1",
                                           "FACEREC_RATE_LIMIT": "0.1", "FACEREC_RATE_BURST": "1"}
    photo = face("misc/two_people.jpg").read_bytes()
    assert len(photo) > 4 * 65536
    with server(command, env_vars, port):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        statuses, sockets = [], set()
        for _ in range(4):
            connection.request("POST", "/recognize", body=photo,
                               headers={"Content-Type": "image/jpeg"})
            sockets.add(id(connection.sock))
            answer = connection.getresponse()
            body = answer.read()
            statuses.append(answer.status)
            assert answer.getheader("Connection") != "close"
            if answer.status == 429:
                assert b"rate_limited" in body
        connection.request("GET", "/openapi.json")  # (not rate limited)
        assert connection.getresponse().status == 200 and len(sockets) == 1
        connection.close()
    assert statuses.count(429) >= 3  # the first may pass (a burst of 1)
