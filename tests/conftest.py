"""Shared fixtures: the photos in ../shared/faces, an isolated service, a local image server."""

import contextlib
import io
import os
import socket
import uuid
import weakref
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

import api
from recognizer.live_gallery import LiveGallery
from recognizer.testing import FACES, ROOT, free_port  # noqa: F401  (tests import them here)

# The store backend this run tests: "sqlite" (the default) or "postgresql", which needs
# FACEREC_TEST_POSTGRES, the URL of a throwaway server (scripts/test starts one). The
# PostgreSQL pass runs only the modules marked `store` (pytestmark): those whose outcome
# depends on the store; the rest (decoding, fetching, matching, video, fuzzing) run once.
BACKEND = os.environ.get("FACEREC_TEST_STORE", "sqlite")
POSTGRES = os.environ.get("FACEREC_TEST_POSTGRES", "")


def pytest_configure(config):
    config.addinivalue_line("markers", "backend(name): a test of one store backend only, run in "
                            "that backend's pass of the suite and deselected in the other")
    config.addinivalue_line("markers", "store: a test whose outcome depends on the store, run "
                            "in both backends' passes (the others run in the SQLite pass only)")
    if BACKEND not in ("sqlite", "postgresql"):
        raise pytest.UsageError(f"FACEREC_TEST_STORE={BACKEND!r}: sqlite or postgresql")
    if BACKEND == "postgresql" and not POSTGRES:
        raise pytest.UsageError("FACEREC_TEST_STORE=postgresql needs FACEREC_TEST_POSTGRES")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test (``item.report_call``), for fixtures that save
    something when it failed (the browser tests' screenshots)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_report_header(config):
    return f"store backend: {BACKEND}"


def pytest_collection_modifyitems(config, items):
    other = [item for item in items
             if any(mark.args[0] != BACKEND for mark in item.iter_markers("backend"))
             or (BACKEND != "sqlite" and item.get_closest_marker("store") is None)]
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = [item for item in items if item not in other]


def postgres_admin():
    """A connection to the test PostgreSQL server (autocommit)."""
    import psycopg

    return psycopg.connect(POSTGRES, autocommit=True)


@contextlib.contextmanager
def fresh_store(folder: Path):
    """A location for a new, empty store of this run's backend: a SQLite file in folder, or a
    schema of its own on the test PostgreSQL server (dropped afterwards)."""
    if BACKEND == "sqlite":
        yield str(folder / "store.sqlite3")
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with postgres_admin() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with postgres_admin() as admin:
            admin.execute("SET lock_timeout = '20s'")
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def from_outside(location: str, *statements: tuple[str, tuple]) -> None:
    """Run SQL statements (``?`` placeholders) on a store in one transaction of a connection
    of their own, as another program (a sqlite3 shell, psql) would: to tamper with a store."""
    if BACKEND == "sqlite":
        import sqlite3

        with contextlib.closing(sqlite3.connect(location)) as connection, connection:
            for sql, parameters in statements:
                connection.execute(sql, parameters)
        return
    import psycopg

    with psycopg.connect(location) as connection:  # commits at the end of the block
        for sql, parameters in statements:
            connection.execute(sql.replace("?", "%s"), parameters)


@pytest.fixture
def store_location(tmp_path):
    """Where a test's store lives (see fresh_store)."""
    with fresh_store(tmp_path) as location:
        yield location


def face(relative: str) -> Path:
    """A photo from the shared test media; a missing one fails the test (never skips it)."""
    path = FACES / relative
    if not path.is_file():
        pytest.fail(f"test photo missing: {path} (set FACEREC_TEST_FACES)")
    return path


def png_bytes(image: Image.Image, **save_args) -> bytes:
    """Encode a Pillow image as PNG (or another format given by save_args["format"])."""
    buffer = io.BytesIO()
    image.save(buffer, **({"format": "PNG"} | save_args))
    return buffer.getvalue()


def no_face_image() -> bytes:
    """A smooth colour gradient: a real image with no face in it."""
    y, x = np.mgrid[0:240, 0:320]
    rgb = np.stack([x * 255 // 320, y * 255 // 240, (x + y) * 255 // 560], axis=-1)
    return png_bytes(Image.fromarray(rgb.astype(np.uint8)))


def upload(path: str, data: bytes, fields: dict | None = None, name: str = "photo.jpg"):
    """(body, headers) of a multipart upload with the image in field 'image'."""
    prepared = requests.Request(
        "POST", f"http://localhost/{path}", files={"image": (name, data, "image/jpeg")},
        data=fields or {},
    ).prepare()
    return prepared.body, {key.lower(): value for key, value in prepared.headers.items()}


@pytest.fixture(scope="session")
def httpserver_listen_address():
    """Serve test images on IPv4 loopback only, so 'localhost' never lands on an unbound ::1."""
    return ("127.0.0.1", 0)


@pytest.fixture
def env(tmp_path, store_location, monkeypatch):
    """An isolated service: its own store and known_faces/, loopback URLs allowed."""
    for key in [key for key in os.environ if key.startswith("FACEREC_")]:
        if not key.startswith("FACEREC_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FACEREC_STORE", store_location)
    monkeypatch.setenv("FACEREC_KNOWN_FACES_DIR", str(tmp_path / "known_faces"))
    monkeypatch.setenv("FACEREC_ALLOW_PRIVATE_NETWORKS", "1")
    # hug.test's requests come for falcon's default host
    monkeypatch.setenv("FACEREC_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],falconframework.org")
    monkeypatch.setenv("FACEREC_RATE_STATE", str(tmp_path / "rates.sqlite3"))
    api.get_service.cache_clear()
    yield monkeypatch
    if api.get_service.cache_info().currsize:
        api.get_service().store.close()
    api.get_service.cache_clear()


@pytest.fixture
def reconfigure(env):
    """Change FACEREC_* variables for the rest of a test; the service re-reads them."""

    def set_env(**values):
        for key, value in values.items():
            env.setenv(f"FACEREC_{key.upper()}", str(value))
        if api.get_service.cache_info().currsize:
            api.get_service().store.close()
        api.get_service.cache_clear()

    return set_env


@pytest.fixture
def serve(httpserver):
    """Serve bytes (or a file) from the local image server; returns its URL."""

    def serve_(data, path: str = "/image", content_type: str = "image/jpeg") -> str:
        body = data.read_bytes() if isinstance(data, Path) else data
        httpserver.expect_request(path).respond_with_data(body, content_type=content_type)
        return httpserver.url_for(path)

    return serve_


@pytest.fixture
def connections(monkeypatch):
    """Record every outgoing socket connection the process attempts."""
    attempts = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family != socket.AF_UNIX:  # (the service's own image decoders)
            attempts.append(address)
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


_galleries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gallery(store):
    """The store's faces as a service process keeps them: one LiveGallery per store, brought up
    to date with the store's change log at each call."""
    if store not in _galleries:
        _galleries[store] = LiveGallery(store)
    return _galleries[store].current()


def command(name: str, *args, **options) -> tuple:
    """(answer, exit code) of a CLI command run through hug.test.cli: a command that prints its
    answer and then reports a failure by its exit code (build, when it refused files) exits."""
    import json

    import hug

    cli = api.__hug__.cli.commands[name]
    outputs = cli.outputs  # hug.test.cli puts it back only when no exit comes through
    try:
        return hug.test.cli(name, *args, module=api, **options), 0
    except SystemExit as exited:
        answer = getattr(exited, "answer", None)
        return (None if answer is None else json.loads(hug.output_format.json(answer)),
                exited.code)
    finally:
        cli.outputs = outputs
