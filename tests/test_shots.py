"""Enrolment from a video clip: the one face followed through the clip, a few sharp frames in
varied poses chosen, over HTTP and the command line; clips with two people or none refused.

The clips are cut from the Hamilton clip (see test_video.py) with the FFmpeg the service uses:
its close-up of Lin-Manuel Miranda (about 2.9 s to 7.1 s), upright and upside down (where the
detector finds no face), its opening second, where he is small, and the whole clip, which ends
on a second, blurred face in the audience. Everything runs
the real pipeline. The choice's rules are also checked on measured faces built here.
"""

import subprocess

import falcon
import hug
import numpy as np
import pytest
import requests

import api
from conftest import face
from recognizer import shots
from recognizer.errors import UnusableFace
from recognizer.faces import FaceQuality

pytestmark = pytest.mark.store  # run on both store backends

CLIP = "video/short_hamilton_clip.mp4"
LIN = "Lin-Manuel Miranda"


def cut(source, target, start: float, seconds: float, *options: str) -> bytes:
    """A piece of a clip, re-encoded (H.264 in MP4 unless options say otherwise)."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-ss", str(start),
                    "-t", str(seconds), "-i", str(source), "-an",
                    *(options or ("-c:v", "libx264", "-preset", "veryfast")), str(target)],
                   check=True, timeout=120)
    return target.read_bytes()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The clips' bytes by name (the upside-down one is WebM, the others MP4), and the close
    up's path."""
    folder = tmp_path_factory.mktemp("clips")
    source = face(CLIP)
    return {"close_up": cut(source, folder / "close_up.mp4", 2.9, 4.2),
            "upside_down": cut(source, folder / "upside_down.webm", 2.9, 2.0, "-vf", "vflip",
                               "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"),
            "far": cut(source, folder / "far.mp4", 0.0, 0.7),
            "whole": source.read_bytes(),
            "path": folder / "close_up.mp4"}


def enroll_video(name: str, data: bytes, **fields):
    prepared = requests.Request("POST", "http://localhost/enroll",
                                files={"video": ("clip.mp4", data, "video/mp4")},
                                data={"name": name} | fields).prepare()
    headers = {key.lower(): value for key, value in prepared.headers.items()}
    return hug.test.post(api, "enroll", body=prepared.body, headers=headers)


def test_a_close_up_enrols_five_sharp_frames_in_varied_poses_and_then_names_him(env, clips):
    response = enroll_video(LIN, clips["close_up"])
    assert response.status == falcon.HTTP_201, response.data
    answer = response.data
    assert answer["name"] == LIN and answer["face_count"] == 5 and answer["duplicate"] is False
    assert answer["face_ids"] == [shot["face_id"] for shot in answer["shots"]]
    times = [shot["time"] for shot in answer["shots"]]
    assert times == sorted(times) and len(set(times)) == 5 and times[-1] <= 4.4
    poses = [(shot["yaw"], shot["pitch"]) for shot in answer["shots"]]
    yaws = [yaw for yaw, _ in poses]
    assert max(yaws) - min(yaws) >= 20  # he turns his head: so do the shots
    assert all(shot["sharpness"] >= 60 for shot in answer["shots"])  # the quality gate's least
    photo = face("people/lin_manuel_miranda/lin-manuel-miranda.png").read_bytes()
    found = hug.test.post(api, "recognize", body=photo, headers={"content-type": "image/png"})
    assert [f["name"] for f in found.data["faces"]] == [LIN], found.data
    person = hug.test.get(api, f"people/{LIN}").data
    assert {f["source"] for f in person["faces"]} == {f"sha256:{_sha256(clips['close_up'])}"}
    # the same clip again, as a raw body this time: nothing added
    again = hug.test.post(api, "enroll", body=clips["close_up"], name=LIN,
                          headers={"content-type": "video/mp4"})
    assert again.status == falcon.HTTP_200 and again.data["duplicate"] is True
    assert again.data["face_ids"] == answer["face_ids"] and again.data["face_count"] == 5


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_clip_with_two_people_is_refused_and_nothing_is_stored(env, clips):
    response = enroll_video(LIN, clips["whole"])
    assert response.status == falcon.HTTP_422
    assert response.data == {"errors": {"video": "multiple_people"}}
    assert hug.test.get(api, "people").data["total"] == 0


def test_a_clip_without_a_usable_face_is_refused_with_the_reason(env, clips):
    response = hug.test.post(api, "enroll", body=clips["upside_down"], name=LIN,
                             headers={"content-type": "video/webm"})
    assert response.status == falcon.HTTP_422
    assert response.data == {"errors": {"video": "no_face"}}
    far = hug.test.post(api, "enroll", body=clips["far"], name=LIN,
                        headers={"content-type": "application/octet-stream"})
    assert far.status == falcon.HTTP_422 and far.data == {"errors": {"video": "small_face"}}
    forced = hug.test.post(api, "enroll", body=clips["far"], name=LIN, force="true",
                           headers={"content-type": "application/octet-stream"})
    assert forced.status == falcon.HTTP_201 and forced.data["face_count"] >= 1


def test_the_command_line_enrols_a_local_clip_with_at_most_max_shots(env, clips):
    answer = hug.test.cli("enroll", LIN, str(clips["path"]), module=api, max_shots=2)
    assert answer["face_count"] == 2 and len(answer["shots"]) == 2, answer
    yaws = [shot["yaw"] for shot in answer["shots"]]
    assert abs(yaws[0] - yaws[1]) >= shots.MIN_POSE_STEP
    photo = face("people/lin_manuel_miranda/lin-manuel-miranda.png")
    assert hug.test.cli("enroll", LIN, str(photo), module=api)["face_count"] == 3


# -- the choice, on measured faces -------------------------------------------------------------


def measured(frame, yaw, sharpness=500.0, pitch=0.0, box=(10, 110, 110, 10), encoding=None,
             width=100):
    quality = FaceQuality(width=width, sharpness=sharpness, yaw=yaw, pitch=pitch, roll=0.0)
    row = np.full(128, 0.1) if encoding is None else encoding
    return shots.Face(frame, frame / 5, box, quality, row)


def test_the_first_shot_is_the_sharpest_frontal_one_and_near_copies_are_left_out():
    faces = [measured(0, 2.0, 300), measured(1, 1.0, 900), measured(2, 3.0, 600),  # frontal
             measured(3, 25.0), measured(4, 26.0), measured(5, -30.0, 400)]
    chosen = shots.choose(faces, max_shots=5)
    assert [f.frame for f in chosen] == [1, 4, 5]  # 0, 2: near 1; 3: near 4
    assert [f.frame for f in shots.choose(faces, max_shots=1)] == [1]
    blurred = faces + [measured(6, 45.0, 100)]  # the widest pose, but under half the median
    assert [f.frame for f in shots.choose(blurred)] == [1, 4, 5]


def test_no_usable_face_is_refused_with_the_reason_most_faces_failed_for():
    small = [measured(i, 0.0, width=30) for i in range(3)] + [measured(3, 80.0)]
    with pytest.raises(UnusableFace) as refused:
        shots.choose(small)
    assert refused.value.as_body() == {"errors": {"video": "small_face"}}
    assert len(shots.choose(small, limits=None)) >= 1  # forced


def test_a_face_followed_across_a_head_turn_is_one_person_and_another_is_a_second():
    rng = np.random.default_rng(1)
    me, turned, other = (rng.normal(size=128) * 0.1 for _ in range(3))
    turning = [measured(i, 10.0 * i, box=(10, 110 + i, 110, 10 + i),
                        encoding=me if i < 3 else turned) for i in range(6)]
    assert [len(p) for p in shots.follow(turning)] == [6]  # the boxes link the turn
    elsewhere = [measured(i, 0.0, box=(300, 400, 400, 300), encoding=other) for i in (2, 4)]
    assert len(shots.follow(turning + elsewhere)) == 2
    with pytest.raises(UnusableFace, match="multiple_people"):
        shots.the_person(turning + elsewhere)
    stray = [measured(5, 0.0, box=(300, 400, 400, 300), encoding=other)]  # one frame only
    assert len(shots.the_person(turning + stray)) == 6
    with pytest.raises(UnusableFace, match="no_face"):
        shots.the_person([])
