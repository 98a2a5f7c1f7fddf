"""How the code is put together: importing the API changes nothing in the process but its own
routes, and dlib's models load only when a face is first looked for."""

import json
import re
import subprocess
import sys

from conftest import ROOT

# Takes the state a module could change on import, before and after `import api`. The
# libraries api.py imports are imported first: their own import-time habits (warnings
# filters, say) are theirs, not the service's.
STATE_AROUND_IMPORT = r"""
import argparse, json, logging, os, signal, sys, threading, warnings, wsgiref.simple_server
import falcon, hug, numpy, PIL.ImageFile, requests, tqdm, yaml

def state():
    return {
        "excepthook": repr(sys.excepthook), "displayhook": repr(sys.displayhook),
        "argv": list(sys.argv), "path": list(sys.path), "environ": dict(os.environ),
        "cwd": os.getcwd(), "recursion limit": sys.getrecursionlimit(),
        "signal handlers": {int(number): repr(signal.getsignal(number)) for number in
                            (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD)},
        "root logger": [logging.getLogger().level,
                        [repr(handler) for handler in logging.getLogger().handlers]],
        "warnings filters": [repr(entry) for entry in warnings.filters],
        "wsgiref request log": repr(wsgiref.simple_server.WSGIRequestHandler.log_request),
        "argparse": sorted(f"{k}={v!r}" for k, v in vars(argparse.ArgumentParser).items()),
        "Pillow's truncated images": PIL.ImageFile.LOAD_TRUNCATED_IMAGES,
        "threads": threading.active_count(),
    }

before = state()
import api
after = state()
print(json.dumps({
    "changed": {key: [before[key], after[key]] for key in before if before[key] != after[key]},
    "heavy modules": sorted(name for name in ("dlib", "cv2", "face_recognition", "faiss",
                                              "psycopg", "recognizer.faces", "recognizer.video")
                            if name in sys.modules),
    "routes": sorted(api.__hug__.http.urls()),
    "commands": sorted(api.__hug__.cli.commands),
}))
"""


def test_importing_api_changes_nothing_in_the_process_but_registers_its_routes(tmp_path):
    child = subprocess.run([sys.executable, "-c", STATE_AROUND_IMPORT], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/bin:/bin", "FACEREC_STORE": str(tmp_path / "s")})
    assert child.returncode == 0, child.stderr
    found = json.loads(child.stdout)
    assert found["changed"] == {}
    assert found["heavy modules"] == []  # dlib's models, OpenCV and the store's drivers wait
    assert "/recognize" in found["routes"] and "build" in found["commands"]
    assert not (tmp_path / "s").exists()  # nor is the store opened


def test_the_project_is_installed_and_found_without_touching_sys_path(tmp_path):
    child = subprocess.run([sys.executable, "-c", "import api, recognizer; print(api.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin"})
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == str(ROOT / "api.py")


def test_every_error_code_is_documented():
    from recognizer.errors import every_code

    documented = "".join((ROOT / "docs" / page).read_text() for page in
                         ("api.md", "cli.md", "video.md", "streams.md", "webapp.md"))
    assert [code for code in every_code() if not re.search(rf"\b{code}\b", documented)] == []
