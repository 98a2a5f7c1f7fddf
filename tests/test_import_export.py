"""import-encodings and export-encodings (CLI only): the .npz a face_recognition script saves,
read without pickle and checked before anything is loaded or stored; exports written atomically,
owner-only, that import back into a fresh store as the same people and encodings."""

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tracemalloc
import zipfile

import face_recognition
import falcon
import hug
import numpy as np
import pytest

import api
from conftest import ROOT, face, fresh_store
from recognizer import encodings_file
from recognizer.errors import InvalidParameter

pytestmark = pytest.mark.store  # run on both store backends

PHOTOS = (("obama", "people/obama/obama.jpg"), ("obama", "people/obama/obama1.jpg"),
          ("biden", "people/biden/biden.jpg"),
          ("Rose Leslie", "people/rose_leslie/rose_leslie_img1.jpg"))


@pytest.fixture(scope="module")
def script_output():
    """What a face_recognition user has: names and encodings from its own API, as lists."""
    names, known = [], []
    for name, photo in PHOTOS:
        image = face_recognition.load_image_file(face(photo))
        known.append(face_recognition.face_encodings(image)[0])
        names.append(name)
    return names, known


def run(command, *args):
    return hug.test.cli(command, *(str(arg) for arg in args), module=api)


def health():
    return hug.test.get(api, "health").data


def recognised(photo):
    response = hug.test.post(api, "recognize", body=face(photo).read_bytes(),
                             headers={"content-type": "image/jpeg"})
    return [found["name"] for found in response.data["faces"]]


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the round trip -------------------------------------------------------------------------


def test_a_face_recognition_scripts_npz_imports_and_is_recognised(env, tmp_path, script_output):
    names, known = script_output
    path = tmp_path / "known.npz"
    np.savez(path, names=np.array(names), encodings=np.array(known))  # the script's own line

    assert run("import-encodings", path) == {"imported": 4, "person_count": 3,
                                             "already_imported": False}
    assert health() == {"status": "ok", "person_count": 3, "face_count": 4}
    assert recognised("people/obama/obama2.jpg") == ["obama"]
    assert recognised("people/rose_leslie/rose_leslie_img2.jpg") == ["Rose Leslie"]
    sources = [f["source"] for f in hug.test.get(api, "people/obama").data["faces"]]
    assert sources == [f"import:{sha256(path)}#0", f"import:{sha256(path)}#1"]


def test_importing_the_same_file_again_adds_nothing_and_says_so(env, tmp_path, script_output):
    names, known = script_output
    path = tmp_path / "known.npz"
    np.savez(path, names=np.array(names), encodings=np.array(known))
    run("import-encodings", path)
    copy = tmp_path / "copy of known.npz"  # the same bytes under another name
    copy.write_bytes(path.read_bytes())
    for again in (path, copy):
        assert run("import-encodings", again) == {"imported": 0, "person_count": 3,
                                                  "already_imported": True}
    assert health() == {"status": "ok", "person_count": 3, "face_count": 4}


def test_an_export_imports_into_a_fresh_store_as_the_same_people_and_encodings(
        reconfigure, tmp_path):
    for name, photo in PHOTOS:
        assert run("enroll", name, face(photo))["name"] == name
    before = api.get_service().store.export()
    people = hug.test.get(api, "people").data

    exported = run("export-encodings", tmp_path / "backup.npz")
    assert exported == {"exported": 4, "person_count": 3, "file": str(tmp_path / "backup.npz")}
    path = tmp_path / "backup.npz"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with np.load(path, allow_pickle=False) as saved:
        assert sorted(saved.files) == ["encodings", "names"]
        assert saved["names"].dtype.kind == "U" and saved["encodings"].dtype == np.float64
        assert saved["names"].tolist() == before.names
        np.testing.assert_array_equal(saved["encodings"], before.encodings)

    (tmp_path / "fresh").mkdir()
    with fresh_store(tmp_path / "fresh") as location:
        reconfigure(store=location)
        assert health()["face_count"] == 0
        assert run("import-encodings", path) == {"imported": 4, "person_count": 3,
                                                 "already_imported": False}
        after = api.get_service().store.export()
        assert after.names == before.names
        np.testing.assert_array_equal(after.encodings, before.encodings)
        assert hug.test.get(api, "people").data == people
        assert recognised("people/obama/obama2.jpg") == ["obama"]
        assert run("import-encodings", path)["already_imported"] is True
        api.get_service().store.close()
        api.get_service.cache_clear()


def test_an_export_of_an_empty_store_is_an_empty_file(env, tmp_path):
    assert run("export-encodings", tmp_path / "none.npz") == {
        "exported": 0, "person_count": 0, "file": str(tmp_path / "none.npz")}
    with np.load(tmp_path / "none.npz", allow_pickle=False) as saved:
        assert saved["names"].shape == (0,) and saved["encodings"].shape == (0, 128)
    refused = run("import-encodings", tmp_path / "none.npz")
    assert isinstance(refused, InvalidParameter) and refused.message == "empty"


# -- exports: where and how they are written ------------------------------------------------


def test_an_export_replaces_a_file_atomically_and_stays_owner_only(env, tmp_path):
    run("enroll", "biden", face("people/biden/biden.jpg"))
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / "out.npz"
    target.write_bytes(b"an older export")
    target.chmod(0o644)
    assert run("export-encodings", target)["exported"] == 1
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with np.load(target, allow_pickle=False) as saved:
        assert saved["names"].tolist() == ["biden"]
    assert [p.name for p in folder.iterdir()] == ["out.npz"]  # no temporary file left


def test_a_failed_export_leaves_the_old_file_and_no_temporary_file(env, tmp_path, monkeypatch):
    run("enroll", "biden", face("people/biden/biden.jpg"))
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "out.npz").write_bytes(b"the previous export")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(encodings_file.np, "savez", disk_full)
    refused = run("export-encodings", folder / "out.npz")
    assert isinstance(refused, InvalidParameter)
    assert (refused.field, refused.message) == ("file", "unwritable")
    assert [p.name for p in folder.iterdir()] == ["out.npz"]
    assert (folder / "out.npz").read_bytes() == b"the previous export"


def test_export_names_get_npz_and_bad_places_are_refused(env, tmp_path):
    assert run("export-encodings", tmp_path / "backup")["file"] == str(tmp_path / "backup.npz")
    assert (tmp_path / "backup.npz").is_file()
    (tmp_path / "folder.npz").mkdir()
    for place in (tmp_path / "no" / "such" / "dir.npz", tmp_path / "folder.npz"):
        refused = run("export-encodings", place)
        assert isinstance(refused, InvalidParameter), refused
        assert (refused.field, refused.message) == ("file", "unwritable")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- imports that are refused, before the store is touched ----------------------------------


rng = np.random.default_rng(7)


def good(count=3):
    return {"names": np.array([f"person {i}" for i in range(count)]),
            "encodings": rng.normal(scale=0.1, size=(count, 128))}


def savez(path, compressed=False, **arrays):
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def flipped(path, at, compressed=False):
    savez(path, compressed, **good())
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def npy_member(header: dict, data: bytes) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue() + data


def zipped(path, members: dict, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def declared(rows, dtype="<f8", columns=(128,), names_dtype="<U10"):
    """An archive whose headers declare rows x 128 but that holds a few bytes of data: a
    decompression bomb's headers without its payload."""
    shape = (rows, *columns)
    return {"names.npy": npy_member({"descr": names_dtype, "fortran_order": False,
                                     "shape": (rows,)}, b"\0" * 64),
            "encodings.npy": npy_member({"descr": dtype, "fortran_order": False,
                                         "shape": shape}, b"\0" * 64)}


def with_nan(row):
    arrays = good(4)
    arrays["encodings"][row, 17] = np.nan if row % 2 else np.inf
    return arrays


CASES = [
    ("no_such_file", lambda d: d / "missing.npz"),
    ("no_such_file", lambda d: d / "missing" / "x.npz"),
    ("not_a_file", lambda d: d),
    ("not_a_npz", lambda d: _write(d / "x.npz", b"")),
    ("not_a_npz", lambda d: _write(d / "x.npz", b"names,encodings\nobama,0.1\n")),
    ("not_a_npz", lambda d: _npy(d / "x.npy")),
    ("not_a_npz", lambda d: _truncated(d / "x.npz")),
    ("not_a_npz", lambda d: flipped(d / "x.npz", at=-1000)),  # in encodings' data: the CRC
    ("not_a_npz", lambda d: flipped(d / "x.npz", at=-1000, compressed=True)),
    ("not_a_npz", lambda d: zipped(d / "x.npz", {"names.npy": b"not npy",
                                                   "encodings.npy": b"not npy either"})),
    ("not_a_npz", lambda d: zipped(d / "x.npz", {**declared(3), "encodings.npy": npy_member(
        {"descr": "<f8", "fortran_order": False, "shape": (3, 128)}, b"\0" * 100)})),
    ("pickled_arrays", lambda d: savez(d / "x.npz", names=np.array(["a", "b"], dtype=object),
                                       encodings=rng.normal(size=(2, 128)))),
    ("pickled_arrays", lambda d: savez(d / "x.npz", names=np.array(["a"]),
                                       encodings=np.array([list(rng.normal(size=128))],
                                                          dtype=object))),
    ("missing_array: encodings", lambda d: savez(d / "x.npz", names=np.array(["a"]))),
    ("missing_array: names", lambda d: savez(d / "x.npz", encodings=rng.normal(size=(1, 128)))),
    ("unexpected_array: arr_0.npy", lambda d: savez(d / "x.npz", names=np.array(["a"]),
                                                    encodings=rng.normal(size=(1, 128)),
                                                    arr_0=np.zeros(1))),
    ("unexpected_array: ids.npy", lambda d: savez(d / "x.npz", **good(), ids=np.arange(3))),
    ("bad_dtype: encodings", lambda d: savez(d / "x.npz", names=np.array(["a"]),
                                             encodings=np.ones((1, 128), dtype=np.int64))),
    ("bad_dtype: names", lambda d: savez(d / "x.npz", names=np.array([b"a"]),
                                         encodings=rng.normal(size=(1, 128)))),
    ("bad_dtype: names", lambda d: savez(d / "x.npz", names=np.arange(2),
                                         encodings=rng.normal(size=(2, 128)))),
    ("bad_shape: encodings", lambda d: savez(d / "x.npz", names=np.array(["a"]),
                                             encodings=rng.normal(size=(1, 127)))),
    ("bad_shape: encodings", lambda d: savez(d / "x.npz", names=np.array(["a"]),
                                             encodings=rng.normal(size=128))),
    ("bad_shape: names", lambda d: savez(d / "x.npz", names=np.array([["a"]]),
                                         encodings=rng.normal(size=(1, 128)))),
    ("length_mismatch", lambda d: savez(d / "x.npz", names=np.array(["a", "b"]),
                                        encodings=rng.normal(size=(3, 128)))),
    ("empty", lambda d: savez(d / "x.npz", names=np.array([], dtype=str),
                              encodings=np.zeros((0, 128)))),
    ("too_large", lambda d: zipped(d / "x.npz", declared(10**9), zipfile.ZIP_DEFLATED)),
    ("too_large", lambda d: zipped(d / "x.npz", declared(encodings_file.MAX_FACES + 1))),
    ("too_large", lambda d: zipped(d / "x.npz", declared(4, names_dtype="<U100000000"))),
    ("too_large", lambda d: _sparse(d / "x.npz", encodings_file.MAX_FILE_BYTES + 1)),
    ("not_finite: encodings[3]", lambda d: savez(d / "x.npz", **with_nan(3))),
    ("not_finite: encodings[0]", lambda d: savez(d / "x.npz", compressed=True, **with_nan(0))),
    ("invalid_name: names[2]", lambda d: savez(d / "x.npz", names=np.array(
        ["ada", "bob", "../../etc/passwd", "carl"]), encodings=rng.normal(size=(4, 128)))),
    ("invalid_name: names[0]", lambda d: savez(d / "x.npz", names=np.array([""]),
                                               encodings=rng.normal(size=(1, 128)))),
    ("invalid_name: names[1]", lambda d: savez(d / "x.npz", names=np.array(["ok", "x" * 101]),
                                               encodings=rng.normal(size=(2, 128)))),
]


def _write(path, data):
    path.write_bytes(data)
    return path


def _npy(path):
    np.save(path, rng.normal(size=(2, 128)))
    return path


def _truncated(path):
    savez(path, **good())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _sparse(path, size):
    with open(path, "wb") as sparse:
        sparse.write(b"PK\x03\x04")
        sparse.truncate(size)
    return path


@pytest.mark.parametrize("message, build", CASES, ids=[f"{i}-{c[0].split(':')[0]}"
                                                        for i, c in enumerate(CASES)])
def test_a_bad_file_is_refused_with_its_reason_and_nothing_is_stored(env, tmp_path, monkeypatch,
                                                                      message, build):
    store = api.get_service().store
    store.add_face("biden", rng.normal(scale=0.1, size=128), "sha256:biden")
    calls = []
    monkeypatch.setattr(store, "import_encodings", lambda *args: calls.append(args))
    folder = tmp_path / "files"
    folder.mkdir()
    refused = run("import-encodings", build(folder))
    assert isinstance(refused, InvalidParameter), refused
    code, _, detail = message.partition(": ")
    assert (refused.field, refused.message, refused.detail) == ("file", code, detail or None)
    assert refused.as_body() == {"errors": {"file": code}} | (
        {"detail": {"file": detail}} if detail else {})
    assert calls == []
    assert health() == {"status": "ok", "person_count": 1, "face_count": 1}


def test_an_invalid_name_is_reported_by_row_never_echoed(env, tmp_path):
    path = savez(tmp_path / "x.npz", names=np.array(["ada", "secret<script>name"]),
                 encodings=rng.normal(size=(2, 128)))
    refused = run("import-encodings", path)
    assert (refused.message, refused.detail) == ("invalid_name", "names[1]")
    assert "secret" not in str(refused.as_body())


def test_a_pickled_array_is_never_unpickled(env, tmp_path):
    """An object array is a pickle: loading it would run whatever the pickle says."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    path = savez(tmp_path / "evil.npz", names=np.array([Payload(), Payload()], dtype=object),
                 encodings=rng.normal(size=(2, 128)))
    with np.load(path, allow_pickle=True) as proof:  # the file really runs code when unpickled
        proof["names"]
    assert marker.exists()
    marker.unlink()
    refused = run("import-encodings", path)
    assert refused.message == "pickled_arrays"
    assert not marker.exists()


def test_a_decompression_bomb_is_refused_from_its_headers_without_allocating(env, tmp_path):
    """A few kilobytes whose headers declare 10^9 x 128 floats (1 TB) must not allocate them."""
    path = zipped(tmp_path / "bomb.npz", declared(10**9), zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2000
    tracemalloc.start()
    try:
        with pytest.raises(InvalidParameter, match="too_large"):
            encodings_file.read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_float32_and_compressed_files_import_as_float64(env, tmp_path, script_output):
    names, known = script_output
    path = savez(tmp_path / "small.npz", compressed=True, names=np.array(names),
                 encodings=np.array(known, dtype=np.float32))
    assert run("import-encodings", path)["imported"] == 4
    stored = api.get_service().store.export()
    assert stored.encodings.dtype == np.float64
    np.testing.assert_allclose(stored.encodings[stored.names.index("biden")], known[2],
                               atol=1e-6)


def test_names_are_stored_nfc_normalised(env, tmp_path):
    path = savez(tmp_path / "x.npz", names=np.array(["Zoe\u0308"]),
                 encodings=rng.normal(size=(1, 128)))
    assert run("import-encodings", path)["imported"] == 1
    assert hug.test.get(api, "people").data["people"] == [{"name": "Zoë", "face_count": 1}]


# -- the edges: never over HTTP; the real command line ----------------------------------------


def test_there_is_no_http_route_for_import_or_export(env):
    for method, path in (("POST", "import-encodings"), ("GET", "export-encodings"),
                         ("POST", "import_encodings"), ("GET", "export")):
        response = hug.test.call(method, api, path, params={"file": "/etc/passwd"})
        assert response.status == falcon.HTTP_404


def run_cli(*args, location):
    return subprocess.run([sys.executable, "-m", "hug", "-f", "api.py", "-c", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=os.environ | {"FACEREC_STORE": location,
                                            "PYTHONWARNINGS": "ignore"})


def test_the_real_command_line(env, tmp_path, store_location, script_output):
    names, known = script_output
    source = savez(tmp_path / "known.npz", names=np.array(names), encodings=np.array(known))
    imported = run_cli("import-encodings", source, location=store_location)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == {"imported": 4, "person_count": 3, "already_imported": False}
    exported = run_cli("export-encodings", tmp_path / "out.npz", location=store_location)
    assert json.loads(exported.stdout) == {"exported": 4, "person_count": 3,
                                           "file": str(tmp_path / "out.npz")}
    bad = savez(tmp_path / "bad.npz", names=np.array(["a"], dtype=object),
                encodings=rng.normal(size=(1, 128)))
    refused = run_cli("import-encodings", bad, location=store_location)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert json.loads(refused.stderr.strip().splitlines()[-1]) == {
        "errors": {"file": "pickled_arrays"}}
    assert health() == {"status": "ok", "person_count": 3, "face_count": 4}
