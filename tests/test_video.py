"""Video: watch the Hamilton clip with Lin-Manuel Miranda and Alex Lacamoire enrolled.

The clip (640x360, 29.97 fps, 275 frames) shows Lin-Manuel Miranda small at the start, then in
close-up from about frame 85 to 225, then the audience. Everything runs the real pipeline.
"""

import io
import json
import os
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from werkzeug.wrappers import Response

import api
from conftest import ROOT, face, fresh_store
from recognizer import FaceService, Settings, tracking, video
from recognizer.errors import VideoUnavailable
from recognizer.faces import Box

CLIP = "video/short_hamilton_clip.mp4"
LIN, ALEX = "lin_manuel_miranda", "alex_lacamoire"


def enrol_people(service):
    people = face(f"people/{LIN}/lin-manuel-miranda.png").parent.parent
    service.enroll(LIN, service.picture_from_path(people / LIN / "lin-manuel-miranda.png"))
    for photo in sorted((people / ALEX).iterdir()):
        service.enroll(ALEX, service.picture_from_path(photo), force=True)


@pytest.fixture
def service(env):
    enrol_people(api.get_service())
    return api.get_service()


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """The clip watched once, with the default choices, and its annotated copy."""
    folder = tmp_path_factory.mktemp("watched")
    with fresh_store(folder) as location:
        service = FaceService(Settings(store=location))
        enrol_people(service)
        output = folder / "annotated.mp4"
        events = list(video.watch(service, str(face(CLIP)), output=str(output)))
        service.store.close()
    return events, output


def test_the_events_name_lin_manuel_miranda_where_he_is_on_screen(watched):
    events, _ = watched
    summary = events[-1]
    assert summary["event"] == "summary" and summary["frames"] == 275
    assert summary["people"] == [LIN] and summary["fps"] > 0
    names = {event["name"] for event in events if event["event"] != "summary"}
    assert names <= {LIN, None}  # nobody else is ever named
    on_screen = tracking.names_by_frame(events, 275)
    close_up = range(130, 220)
    assert sum(LIN in on_screen[frame] for frame in close_up) >= 0.9 * len(close_up)
    for event in events[:-1]:
        assert set(event) >= {"event", "track", "name", "confidence", "frame", "time", "box"}
        assert event["time"] == pytest.approx(event["frame"] / 29.97, abs=0.01)


def test_every_track_appears_once_and_leaves_once_with_its_duration(watched):
    events, _ = watched
    tracks = {event["track"] for event in events if "track" in event}
    for track in tracks:
        kinds = [event["event"] for event in events if event.get("track") == track]
        assert kinds[0] == "appear" and kinds[-1] == "leave" and kinds.count("leave") == 1
        assert set(kinds[1:-1]) <= {"change"}
        leave = [event for event in events if event.get("track") == track][-1]
        appear = [event for event in events if event.get("track") == track][0]
        assert leave["duration"] == pytest.approx(
            leave["last_time"] - appear["time"] + 1 / 29.97, abs=0.01)
        assert appear["frame"] <= leave["last_frame"] <= leave["frame"]


def test_events_come_in_frame_order(watched):
    """A leave is reported as of the frame where it is known (it carries the frame the face was
    last seen in), so no event comes after one of a later frame."""
    events, _ = watched
    frames = [event["frame"] for event in events if "frame" in event]
    assert frames == sorted(frames)
    assert any(e["event"] == "leave" and e["last_frame"] < e["frame"] for e in events)


def test_the_annotated_video_is_readable_with_the_same_frame_count(watched):
    _, output = watched
    capture = cv2.VideoCapture(str(output))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 275
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        640, 360)


def streams_of(path) -> str:
    """What FFmpeg says a video file holds (its stream lines)."""
    import imageio_ffmpeg

    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                           capture_output=True, text=True, timeout=60)
    return "\n".join(line for line in probe.stderr.splitlines() if "Stream #" in line)


def test_the_annotated_video_plays_in_a_browser_and_keeps_the_sound(watched):
    _, output = watched
    streams = streams_of(output)
    assert "Video: h264" in streams and "yuv420p" in streams  # what every browser plays
    assert "Audio: aac" in streams  # the clip's sound, kept


def test_an_annotated_webm_is_vp9_and_an_unknown_suffix_is_refused(service, tmp_path):
    clip = str(face(CLIP))
    out = tmp_path / "annotated.webm"
    list(video.watch(service, clip, every=30, output=str(out)))
    streams = streams_of(out)
    assert "Video: vp9" in streams and "Audio: opus" in streams
    with pytest.raises(VideoUnavailable, match="output_unwritable") as refused:
        next(video.watch(service, clip, output=str(tmp_path / "annotated.avi")))
    assert ".webm" in refused.value.detail
    with pytest.raises(VideoUnavailable, match="output_unwritable"):
        next(video.watch(service, clip, output=str(tmp_path / "missing" / "a.mp4")))


def test_a_video_that_cannot_be_read_is_an_error_not_an_empty_success(service, httpserver):
    """A server without range requests: FFmpeg opens the MP4 but reads no frame."""
    httpserver.expect_request("/clip.mp4").respond_with_data(face(CLIP).read_bytes(),
                                                             content_type="video/mp4")
    with pytest.raises(VideoUnavailable, match="stream_unavailable|not_a_video"):
        list(video.watch(service, httpserver.url_for("/clip.mp4")))
    cli = subprocess.run([sys.executable, "-m", "hug", "-f", "api.py", "-c", "watch",
                          httpserver.url_for("/clip.mp4")], cwd=ROOT, capture_output=True,
                         text=True, timeout=240)
    assert cli.returncode != 0 and '"frames": 0' not in cli.stdout
    assert json.loads(cli.stderr.strip().splitlines()[-1])["errors"]["source"] in (
        "stream_unavailable", "not_a_video")


def test_a_whole_video_over_http_is_read_frame_by_frame(service, httpserver):
    clip = face(CLIP).read_bytes()

    def serve_ranges(request):  # FFmpeg seeks to the index at the end of an MP4
        response = Response(io.BytesIO(clip), mimetype="video/mp4", direct_passthrough=True)
        return response.make_conditional(request, accept_ranges=True,
                                         complete_length=len(clip))

    httpserver.expect_request("/clip.mp4").respond_with_handler(serve_ranges)
    opened = video.open_source(httpserver.url_for("/clip.mp4"))
    opened.capture.release()
    assert opened.live is False and (opened.width, opened.height) == (640, 360)
    summary = list(video.watch(service, httpserver.url_for("/clip.mp4")))[-1]
    assert summary["frames"] == 275 and summary["people"] == [LIN]


def close_up_jpegs():
    """Frames 120-219 of the clip (Lin-Manuel Miranda in close-up), as JPEG bytes."""
    capture, frames = cv2.VideoCapture(str(face(CLIP))), []
    for index in range(220):
        ok, frame = capture.read()
        if index >= 120:
            frames.append(cv2.imencode(".jpg", frame)[1].tobytes())
    capture.release()
    return frames


def serve_camera(httpserver, frames):
    """An IP camera's MJPEG stream of these JPEG frames, paced at 30 frames a second."""

    def camera(request):
        def parts():
            for jpeg in frames:
                time.sleep(1 / 30)
                yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                       + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
        return Response(parts(), mimetype="multipart/x-mixed-replace; boundary=frame")

    httpserver.expect_request("/camera.mjpg").respond_with_handler(camera)


def test_a_slow_reader_of_a_live_stream_gets_the_newest_frames_not_a_backlog(httpserver):
    frames = close_up_jpegs()
    serve_camera(httpserver, frames)
    source = video.open_source(httpserver.url_for("/camera.mjpg"))
    received = []
    for index, _ in video.read_frames(source, threading.Event()):
        received.append(index)
        time.sleep(0.1)  # a recogniser three times slower than the camera
    assert len(received) < len(frames) / 2 and received[-1] >= len(frames) - 5
    assert received == sorted(received)


def test_a_live_camera_stream_keeps_up_by_dropping_stale_frames(service, httpserver):
    frames = close_up_jpegs()
    serve_camera(httpserver, frames)
    opened = video.open_source(httpserver.url_for("/camera.mjpg"))
    opened.capture.release()
    assert opened.live is True
    events = list(video.watch(service, httpserver.url_for("/camera.mjpg")))
    summary = events[-1]
    assert 0 < summary["frames"] <= len(frames) and summary["people"] == [LIN]
    assert all(event["frame"] < len(frames) for event in events[:-1])


def test_a_file_that_is_not_a_video_is_refused(tmp_path, service):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    with pytest.raises(VideoUnavailable) as refused:
        next(video.watch(service, str(text)))
    assert refused.value.as_body() == {"errors": {"source": "not_a_video"}}
    with pytest.raises(VideoUnavailable, match="no_such_file"):
        next(video.watch(service, str(tmp_path / "missing.mp4")))


def test_a_stream_that_cannot_be_reached_is_refused(service):
    with pytest.raises(VideoUnavailable, match="stream_unavailable"):
        next(video.watch(service, "rtsp://127.0.0.1:1/none"))


def test_bad_scale_and_interval_are_refused(service):
    from recognizer.errors import InvalidParameter

    with pytest.raises(InvalidParameter, match="out_of_range: a number from 0.1 to 4"):
        next(video.watch(service, str(face(CLIP)), scale=10))
    with pytest.raises(InvalidParameter, match="out_of_range: a whole number from 1 to 300"):
        next(video.watch(service, str(face(CLIP)), every=0))


def test_a_tracks_name_changes_only_when_two_identifications_agree():
    track = tracking.Track(1, Box(0, 10, 10, 0), 0, 0.0, 0, 0.0)
    assert track.decide(None, None) is False and track.name is None  # the first decision
    track.announced = True
    assert track.decide(LIN, 0.9) is False and track.name is None  # one is not enough
    assert track.decide(LIN, 0.8) is True and (track.name, track.confidence) == (LIN, 0.8)
    assert track.decide(None, None) is False and track.name == LIN  # one odd frame: no flicker
    assert track.decide(LIN, 0.95) is False and track.challenger is None
    assert track.decide(ALEX, 0.9) is False and track.decide(None, None) is False
    assert track.name == LIN  # two different challengers do not add up


def test_a_track_is_identified_by_the_mean_of_its_recent_encodings():
    track = tracking.Track(1, Box(0, 10, 10, 0), 0, 0.0, 0, 0.0)
    encodings = [np.full(128, float(i)) for i in range(tracking.POOLED + 2)]
    for encoding in encodings[:-1]:
        track.pooled(encoding)
    pooled = track.pooled(encodings[-1])
    assert pooled == pytest.approx(np.mean(encodings[-tracking.POOLED:], axis=0))


def run_cli(*args, env_extra):
    environment = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "hug", "-f", "api.py", "-c", *args],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=240)


@pytest.fixture
def cli_env(tmp_path, env):
    return {key: value for key, value in os.environ.items() if key.startswith("FACEREC_")}


def test_the_cli_writes_one_json_line_per_event_and_a_summary(service, cli_env, tmp_path):
    done = run_cli("watch", str(face(CLIP)), "--every", "10", "--scale", "1.0",
                   env_extra=cli_env)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[-1]["event"] == "summary" and lines[-1]["frames"] == 275
    assert LIN in lines[-1]["people"]
    assert {line["frame"] % 10 for line in lines[:-1] if line["event"] != "leave"} == {0}


@pytest.mark.parametrize("source, code", [("0", "camera_unavailable"),
                                          ("README.md", "not_a_video")])
def test_the_cli_exits_non_zero_with_a_json_error(source, code, cli_env):
    done = run_cli("watch", source, env_extra=cli_env)
    assert done.returncode != 0
    assert json.loads(done.stderr.strip().splitlines()[-1]) == {"errors": {"source": code}}
    assert done.stdout == ""
