"""build: enrolling a folder-per-person tree, in worker processes or in this one.

Real photos from ../shared/faces through the real dlib pipeline, copied into tmp_path. Parallel
builds must match one process's report and encodings, survive bad files and dying workers, and
resume after Ctrl-C or a kill, recording each file once.

dlib's jitters draw from one random generator per process that is never reseeded, so with
enrolment's 10 jitters a face's encoding depends on what the process encoded before (two
encodings of one photo in one process differ by about 0.05). Exact comparisons therefore use
FACEREC_ENROLL_JITTERS=1, which jitters nothing.
"""

import contextlib
import functools
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import hug
import numpy as np
import pytest
from PIL import Image, ImageFilter

import api
import recognizer
from conftest import ROOT, command, face, fresh_store, no_face_image, png_bytes
from recognizer.build import folder, pool
from recognizer.errors import WorkersFailed
from recognizer.matching import SAME_PERSON_LIMIT

pytestmark = pytest.mark.store  # run on both store backends

OBAMA_FACE_WIDTH = 250  # pixels across, roughly, in people/obama/obama.jpg
LFW = ("Abdullah_Gul", "Ahmed_Chalabi", "Ali_Khamenei", "Andy_Roddick")  # 3+ one-face photos
REAL_FILE_OUTCOME = folder.file_outcome


@pytest.fixture(scope="module")
def blurred() -> bytes:
    """obama.jpg under a Gaussian blur of radius 4% of the face's width (10 pixels), as JPEG."""
    image = Image.open(face("people/obama/obama.jpg")).convert("RGB")
    return png_bytes(image.filter(ImageFilter.GaussianBlur(0.04 * OBAMA_FACE_WIDTH)),
                     format="JPEG", quality=95)


def lfw_tree(root, people=LFW, photos=2):
    """root/<person>/ with the first photos of each of some LFW people."""
    for person in people:
        (root / person).mkdir(parents=True)
        for number in range(1, photos + 1):
            shutil.copy(face(f"lfw_dev/{person}/{person}_{number:04d}.jpg"), root / person)
    return root


@pytest.fixture
def mixed(tmp_path):
    """Photos large (people/) and small (LFW), a misfiled one and files that are no good."""
    root = lfw_tree(tmp_path / "tree", LFW[:2])
    (root / "biden").mkdir()
    (root / "obama").mkdir()
    (root / "group").mkdir()
    for photo in ("biden/biden.jpg", "biden/biden2.jpg", "obama/obama.jpg", "obama/obama2.jpg",
                  "obama/obama-720p.jpg"):
        shutil.copy(face(f"people/{photo}"), root / photo)
    shutil.copy(face("people/obama/obama3.jpg"), root / "biden")  # misfiled: warnings
    (root / "biden" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (root / "obama" / "landscape.png").write_bytes(no_face_image())
    shutil.copy(face("misc/two_people.jpg"), root / "group")
    return root


@contextlib.contextmanager
def a_service(tmp_path, name, **settings):
    """A service of its own (store and settings) whose store writes are listed in .recorded."""
    folder = tmp_path / name
    folder.mkdir()
    with fresh_store(folder) as location:
        environ = {f"FACEREC_{key.upper()}": str(value) for key, value in settings.items()}
        service = recognizer.FaceService(recognizer.Settings.from_env(
            environ | {"FACEREC_STORE": location, "FACEREC_KNOWN_FACES_DIR": str(folder)}))
        service.recorded = spy_on_records(service.store)
        try:
            yield service
        finally:
            service.store.close()


def spy_on_records(store):
    """List (path, outcome, encoding) of every file the store records from now on."""
    recorded = []
    record_file = store.record_file

    def spy(path, sha256, person, outcome, encoding=None, root=None, source=None):
        recorded.append((path.removeprefix(f"{root}/"), outcome, encoding))  # tree-relative
        return record_file(path, sha256, person, outcome, encoding, root, source)

    store.record_file = spy
    return recorded


def outcomes(report):
    return {entry["file"]: entry["outcome"] for entry in report.files}


def rounded(value):
    """A report's entries with floats to 6 places: BLAS may round the last bits differently."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


# -- the same build, in 2 workers or in this process -------------------------------------------


def test_two_workers_give_one_process_report_and_encodings(tmp_path, mixed):
    with a_service(tmp_path, "one", enroll_jitters=1) as one, \
            a_service(tmp_path, "two", enroll_jitters=1) as two:
        alone, parallel = one.build(mixed, workers=1), two.build(mixed, workers=2)
        assert rounded(parallel.files) == rounded(alone.files)  # in tree order, with warnings
        assert [entry["file"] for entry in parallel.files] == sorted(outcomes(parallel))
        assert [path for path, _, _ in two.recorded] == [path for path, _, _ in one.recorded]
        for (path, _, mine), (_, _, theirs) in zip(two.recorded, one.recorded):
            assert (mine is None) == (theirs is None), path
            if mine is not None:
                np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6, err_msg=path)
        assert one.people() == two.people()


def test_a_bad_file_does_not_stop_the_others(tmp_path, mixed):
    with a_service(tmp_path, "two") as two:
        report = two.build(mixed, workers=2)
    found = outcomes(report)
    assert (found.pop("biden/broken.jpg"), found.pop("obama/landscape.png"),
            found.pop("group/two_people.jpg")) == ("unreadable", "no_face", "multiple_faces")
    assert set(found.values()) == {"enrolled"} and len(found) == 10
    (misfiled,) = [entry for entry in report.files if "warnings" in entry]
    assert misfiled["file"] == "biden/obama3.jpg"
    # unlike Biden; not yet like anybody else: obama/ comes after biden/
    assert [warning["code"] for warning in misfiled["warnings"]] == ["unlike_existing_faces"]


def test_with_enrolment_jitters_encodings_differ_by_noise_only(tmp_path):
    tree = lfw_tree(tmp_path / "tree", LFW[:3])
    with a_service(tmp_path, "one") as one, a_service(tmp_path, "two") as two:
        alone, parallel = one.build(tree, workers=1), two.build(tree, workers=2)
        assert outcomes(parallel) == outcomes(alone)
        for (path, _, mine), (_, _, theirs) in zip(two.recorded, one.recorded):
            # two 10-jitter encodings of one LFW photo: 0.05 apart typically, 0.09 at most
            assert np.linalg.norm(mine - theirs) < 0.15 < SAME_PERSON_LIMIT, path


# -- interrupted builds resume, recording each file once -----------------------------------------


def stop_after(count):
    """A progress wrapper that presses Ctrl-C once count files are done."""

    def progress(results, total):
        for done, result in enumerate(results, 1):
            yield result
            if done == count:
                raise KeyboardInterrupt

    return progress


def test_an_interrupted_build_keeps_what_it_recorded_and_the_next_resumes(tmp_path):
    tree = lfw_tree(tmp_path / "tree")
    files = sorted(path.relative_to(tree).as_posix() for path in tree.glob("*/*"))
    with a_service(tmp_path, "two", enroll_jitters=1) as two:
        with pytest.raises(KeyboardInterrupt):
            two.build(tree, workers=2, progress=stop_after(3))
        assert [child for child in multiprocessing.active_children()
                if child.name != "facerec-decoder"] == []  # the pool is shut down
        first = [path for path, _, _ in two.recorded]
        assert first == files[:3]
        faces_of_first = [two.store.file_face(f"{tree}/{path}") for path in first]
        again = two.build(tree, workers=2)
        assert outcomes(again) == {path: "unchanged" if path in first else "enrolled"
                                   for path in files}
        assert [path for path, _, _ in two.recorded] == files  # each recorded once, in order
        assert [two.store.file_face(f"{tree}/{path}") for path in first] == faces_of_first
        assert two.health().face_count == len(files)


def test_a_ctrl_c_while_a_file_is_recorded_stops_the_build_after_that_file(tmp_path):
    tree = lfw_tree(tmp_path / "tree", LFW[:2], 1)
    with a_service(tmp_path, "one", enroll_jitters=1) as one:
        record_file = one.store.record_file

        def pressed_meanwhile(*args, **kwargs):
            signal.raise_signal(signal.SIGINT)  # as the terminal would, mid-write
            return record_file(*args, **kwargs)

        one.store.record_file = pressed_meanwhile
        with pytest.raises(KeyboardInterrupt):
            one.build(tree, workers=1)
        one.store.record_file = record_file
        first = min(path.relative_to(tree).as_posix() for path in tree.glob("*/*"))
        assert [path for path, _, _ in one.recorded] == [first]
        assert one.store.file_face(f"{tree}/{first}") is not None
        assert one.health().face_count == 1
        assert outcomes(one.build(tree, workers=1)) == {first: "unchanged",
                                                        first.replace(LFW[0], LFW[1]): "enrolled"}


def run_cli(*args, **popen):
    """Start the real command line. Ctrl-C is given its default action back: a shell starts
    background jobs with it ignored, and whoever started pytest may have done so."""
    return subprocess.Popen([sys.executable, "-m", "hug", "-f", "api.py", "-c", *args],
                            cwd=ROOT, env=os.environ | {"PYTHONWARNINGS": "ignore"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            **popen)


def wait_for_files_done(process, at_least, timeout=120):
    """Read the progress bar on stderr until it shows at_least files done (or stderr ends).

    :return: the reading thread, and the list of what it has read of stderr, which it extends
    """
    seen, done = [], threading.Event()

    def read():
        for chunk in iter(functools.partial(process.stderr.read, 1), ""):
            seen.append(chunk)
            counts = re.findall(r"(\d+)/\d+ \[", "".join(seen[-200:]))
            if counts and int(counts[-1]) >= at_least:
                done.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert done.wait(timeout), "".join(seen)
    return reader, seen


def group_gone(group, timeout=15.0):
    """Whether every process of a process group has exited (zombies, which init has yet to
    reap, count as gone), within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_running_in(stat, group) for stat in Path("/proc").glob("[0-9]*/stat")):
            return True
        time.sleep(0.1)
    return False


def _running_in(stat, group):
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)"
    except (OSError, IndexError):  # exited meanwhile
        return False
    return int(fields[2]) == group and fields[0] != "Z"


@pytest.mark.parametrize("stop", ["ctrl-c", "kill -9"])
def test_the_command_line_build_stops_cleanly_and_resumes(env, tmp_path, stop):
    env.setenv("FACEREC_ENROLL_JITTERS", "40")  # about 0.6 s a photo: stopped well before the end
    tree = lfw_tree(tmp_path / "tree", LFW + ("Arnold_Schwarzenegger", "Bill_Clinton"), 3)
    build = run_cli("build", str(tree), "--workers", "2", start_new_session=True)
    reader, stderr = wait_for_files_done(build, at_least=2)
    if stop == "ctrl-c":  # the terminal sends SIGINT to the whole foreground process group
        os.killpg(build.pid, signal.SIGINT)
    else:  # the workers are left behind, and must exit on their own
        os.kill(build.pid, signal.SIGKILL)
    stdout = build.stdout.read()  # (not communicate: the reader has stderr)
    build.wait(60)
    reader.join(10)
    assert group_gone(build.pid), "a worker outlived the build"
    if stop == "ctrl-c":
        assert (build.returncode, stdout) == (130, ""), "".join(stderr)
        assert json.loads("".join(stderr).strip().splitlines()[-1]) == {
            "errors": {"build": "interrupted"}}
        assert "Traceback" not in "".join(stderr)

    resumed = run_cli("build", str(tree))
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    report = json.loads(stdout)  # only the report on stdout: the progress bar is on stderr
    assert "18/18" in stderr
    assert report["summary"]["unchanged"] >= 2
    assert report["summary"]["unchanged"] + report["summary"]["enrolled"] == 18
    assert hug.test.get(api, "health").data == {"status": "ok", "person_count": 6,
                                                 "face_count": 18}


# -- dying workers -------------------------------------------------------------------------------


def outcome_or_die(settings, data, force=False):
    """file_outcome, but the worker dies (as under the OOM killer) on a file that says DIE."""
    if data.startswith(b"DIE"):
        os.kill(os.getpid(), signal.SIGKILL)
    return REAL_FILE_OUTCOME(settings, data, force)


def test_a_file_that_kills_its_worker_is_reported_and_nothing_else_is_lost(
        tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(folder, "file_outcome", outcome_or_die)
    tree = lfw_tree(tmp_path / "tree", LFW[:3])
    (tree / LFW[1] / "poison.jpg").write_bytes(b"DIE")
    with a_service(tmp_path, "two", enroll_jitters=1) as two:
        report = two.build(tree, workers=2)
        expected = {path: "enrolled" for path in outcomes(report)} | {
            f"{LFW[1]}/poison.jpg": "crashed"}
        assert outcomes(report) == expected
        assert [entry["file"] for entry in report.files] == sorted(expected)
        assert "a worker process died on a file" in caplog.text
        again = two.build(tree, workers=2)  # a crashed file is not recorded: it is retried
        assert outcomes(again) == {path: "unchanged" for path in expected} | {
            f"{LFW[1]}/poison.jpg": "crashed"}


def test_workers_that_always_die_stop_the_build():
    with pytest.raises(WorkersFailed) as failed:
        list(pool.run(os._exit, [(number, 1) for number in range(10)], workers=2))
    assert failed.value.as_body() == {"errors": {"build": "workers_keep_crashing"}}


# -- the command line's --workers ----------------------------------------------------------------


def test_the_workers_option(env, tmp_path, monkeypatch):
    asked, run = [], pool.run

    def counting(work, items, workers):
        asked.append(workers)
        return run(work, items, workers)

    monkeypatch.setattr(pool, "run", counting)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert command("build", str(empty), workers=2)[0]["summary"] == {}
    assert command("build", str(empty))[0]["summary"] == {}
    assert asked == [2, pool.usable_cores()]
    for refused in ("0", "65"):  # (hug.test.cli would leave itself broken by argparse's exit)
        out_of_range = run_cli("build", str(empty), "--workers", refused)
        assert out_of_range.wait(60) == 2 and "workers" in out_of_range.stderr.read()


# -- moved from test_enrolment: the quality gate and label warnings in build ---------------------


@pytest.fixture
def misfiled(tmp_path, blurred):
    """alice/: two photos of Obama and a blurred one; bob/: Biden and (misfiled) Obama."""
    root = tmp_path / "tree"
    (root / "alice").mkdir(parents=True)
    (root / "bob").mkdir()
    for photo in ("obama.jpg", "obama2.jpg"):
        shutil.copy(face(f"people/obama/{photo}"), root / "alice")
    (root / "alice" / "blurred.jpg").write_bytes(blurred)
    shutil.copy(face("people/biden/biden.jpg"), root / "bob")
    shutil.copy(face("people/obama/obama3.jpg"), root / "bob")
    return root


def by_file(report):
    return {entry["file"]: entry for entry in report["files"]}


def test_build_refuses_the_blurred_photo_and_flags_the_misfiled_one(env, misfiled):
    report = command("build", str(misfiled))[0]
    files = by_file(report)
    # in sorted order, so the misfiled Obama comes last, after everyone else is enrolled
    assert list(files) == ["alice/blurred.jpg", "alice/obama.jpg", "alice/obama2.jpg",
                           "bob/biden.jpg", "bob/obama3.jpg"]
    assert {name: entry["outcome"] for name, entry in files.items()} == {
        "alice/blurred.jpg": "blurry", "alice/obama.jpg": "enrolled",
        "alice/obama2.jpg": "enrolled", "bob/biden.jpg": "enrolled",
        "bob/obama3.jpg": "enrolled",
    }
    assert report["summary"] == {"blurry": 1, "enrolled": 4}
    # Only the misfiled photo carries warnings. Coming last, it meets bob (Biden alone), whom it
    # is unlike, and alice (two Obamas), whom it is recognised as: both warnings.
    assert [name for name, entry in files.items() if "warnings" in entry] == ["bob/obama3.jpg"]
    unlike, resembles = files["bob/obama3.jpg"]["warnings"]
    assert unlike["code"] == "unlike_existing_faces" and unlike["distance"] > SAME_PERSON_LIMIT
    assert resembles["code"] == "resembles_another_person" and resembles["person"] == "alice"
    assert hug.test.get(api, "people").data["people"] == [{"name": "alice", "face_count": 2},
                                                          {"name": "bob", "face_count": 2}]


def test_a_second_build_is_unchanged_and_force_enrols_only_the_refused_photo(env, misfiled):
    command("build", str(misfiled))[0]
    again, code = command("build", str(misfiled))
    assert again["summary"] == {"blurry": 1, "unchanged": 4} and code == 3
    assert not any("warnings" in entry for entry in again["files"])

    forced, code = command("build", str(misfiled), force=True)  # --force
    assert code == 0
    outcomes = {name: entry["outcome"] for name, entry in by_file(forced).items()}
    assert outcomes.pop("alice/blurred.jpg") == "enrolled"
    assert set(outcomes.values()) == {"unchanged"}
    assert hug.test.get(api, "health").data == {"status": "ok", "person_count": 2, "face_count": 5}
    assert command("build", str(misfiled))[0]["summary"] == {"unchanged": 5}


def test_a_replaced_photo_is_compared_with_the_others_not_with_the_face_it_replaces(env, tmp_path):
    root = tmp_path / "tree"
    (root / "bob").mkdir(parents=True)
    shutil.copy(face("people/obama/obama.jpg"), root / "bob" / "photo.jpg")  # the wrong photo
    command("build", str(root))[0]
    shutil.copy(face("people/biden/biden.jpg"), root / "bob" / "photo.jpg")  # put right
    fixed = by_file(command("build", str(root))[0])["bob/photo.jpg"]
    assert fixed["outcome"] == "enrolled" and "warnings" not in fixed
    assert hug.test.get(api, "people").data["people"] == [{"name": "bob", "face_count": 1}]
    shutil.copy(face("people/biden/biden2.jpg"), root / "bob" / "second.jpg")
    second = by_file(command("build", str(root))[0])["bob/second.jpg"]
    assert second["outcome"] == "enrolled" and "warnings" not in second


def test_a_folder_whose_name_looks_like_another_persons_is_built_with_a_warning(env, tmp_path):
    root = tmp_path / "tree"
    for person, photo in (("Obama", "obama/obama.jpg"), ("\u041ebama", "biden/biden.jpg")):
        (root / person).mkdir(parents=True)  # the second is Cyrillic: it sorts after the first
        shutil.copy(face(f"people/{photo}"), root / person)
    files = by_file(command("build", str(root))[0])
    assert files["Obama/obama.jpg"] == {"file": "Obama/obama.jpg", "person": "Obama",
                                        "outcome": "enrolled"}
    assert files["\u041ebama/biden.jpg"] == {
        "file": "\u041ebama/biden.jpg", "person": "\u041ebama", "outcome": "enrolled",
        "warnings": [{"code": "looks_like_existing_person", "person": "Obama"}]}
    shutil.copy(face("people/obama/obama2.jpg"), root / "Obama")
    added = by_file(command("build", str(root))[0])["Obama/obama2.jpg"]
    assert added["warnings"] == [{"code": "looks_like_existing_person", "person": "\u041ebama"}]


# -- pruning -------------------------------------------------------------------------------------


def test_prune_forgets_the_faces_of_files_that_left_the_tree_and_no_other_trees(env, tmp_path):
    first = lfw_tree(tmp_path / "first", LFW[:2], 2)
    second = lfw_tree(tmp_path / "second", LFW[2:3], 1)
    assert command("build", str(first))[1] == 0 and command("build", str(second))[1] == 0
    gone = sorted((first / LFW[0]).iterdir())[0]
    gone.unlink()
    plain, _ = command("build", str(first))  # without --prune, nothing is forgotten
    assert "pruned" not in plain["summary"]
    assert hug.test.get(api, "health").data["face_count"] == 5
    pruned, code = command("build", str(first), prune=True)
    assert code == 0 and pruned["summary"] == {"pruned": 1, "unchanged": 3}
    assert [entry for entry in pruned["files"] if entry["outcome"] == "pruned"] == [
        {"file": f"{LFW[0]}/{gone.name}", "person": LFW[0], "outcome": "pruned"}]
    assert hug.test.get(api, "health").data["face_count"] == 4
    # a build of another root prunes only its own files
    other, _ = command("build", str(second), prune=True)
    assert other["summary"] == {"unchanged": 1}
    assert hug.test.get(api, "health").data["face_count"] == 4
    for photo in (first / LFW[1]).iterdir():  # a whole person's folder goes: so do they
        photo.unlink()
    command("build", str(first), prune=True)
    names = [person["name"] for person in hug.test.get(api, "people").data["people"]]
    assert names == [LFW[0], LFW[2]]


def test_two_trees_with_the_same_relative_paths_keep_their_own_records(env, tmp_path):
    first = lfw_tree(tmp_path / "first", LFW[:1], 1)
    second = tmp_path / "second"
    shutil.copytree(first, second)  # the same person folder and file name
    shutil.copy(face(f"lfw_dev/{LFW[0]}/{LFW[0]}_0002.jpg"),
                next((second / LFW[0]).iterdir()))  # other bytes
    assert command("build", str(first))[0]["summary"] == {"enrolled": 1}
    assert command("build", str(second))[0]["summary"] == {"enrolled": 1}
    assert command("build", str(first))[0]["summary"] == {"unchanged": 1}  # not replaced
    assert hug.test.get(api, "health").data["face_count"] == 2


def test_a_record_made_before_records_carried_their_root_is_taken_over(store_location):
    from recognizer.store import open_store

    store = open_store(store_location)
    store.record_file("bob/1.jpg", "h", "bob", "enrolled", np.full(128, 0.1))  # no root
    assert store.current_outcome("/trees/kf/bob/1.jpg", "h", legacy="bob/1.jpg") == "enrolled"
    assert store.query("SELECT path, root FROM files") == [("/trees/kf/bob/1.jpg", "/trees/kf")]
    assert store.prune_files("/trees/kf", set()) == [("/trees/kf/bob/1.jpg", "bob")]
    assert store.counts() == (0, 0)
