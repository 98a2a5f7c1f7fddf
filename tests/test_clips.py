"""Untrusted video clips: decoded in a limited FFmpeg process into a bounded number of small
frames, with a clear error for anything else, over HTTP too; nothing written to disk.

The clip is the Hamilton clip (see test_video.py); the broken ones are made from it here.
"""

import os
import tempfile

import falcon
import hug
import pytest
from PIL import Image

import api
from conftest import face, png_bytes
from recognizer import clips
from recognizer.errors import UnsupportedVideo, VideoTooComplex

CLIP = "video/short_hamilton_clip.mp4"


@pytest.fixture(scope="module")
def clip() -> bytes:
    return face(CLIP).read_bytes()


def test_a_clip_is_sampled_a_few_frames_a_second_for_at_most_max_seconds(clip):
    frames = list(clips.frames(clip, max_seconds=2))
    assert len(frames) == 2 * clips.SAMPLE_FPS + 1 or len(frames) == 2 * clips.SAMPLE_FPS
    assert [f.index for f in frames] == list(range(len(frames)))
    assert frames[1].time == pytest.approx(1 / clips.SAMPLE_FPS)
    assert all(f.pixels.shape == (360, 640, 3) and f.pixels.dtype.name == "uint8"
               for f in frames)
    whole = list(clips.frames(clip, max_seconds=60))
    assert 40 <= len(whole) <= 51  # 9.2 s of video, not 60


@pytest.mark.parametrize("make", [
    lambda data: b"not a video at all" * 100,
    lambda data: data[:4] + b"ftyp" + b"\0" * 5000,  # an MP4's first box, then nothing
    lambda data: png_bytes(Image.new("RGB", (64, 64))),
    lambda data: b"\x1a\x45\xdf\xa3" + os.urandom(4000),  # a Matroska header, then noise
], ids=["text", "empty-mp4", "png", "noise-mkv"])
def test_what_is_not_a_readable_clip_is_unsupported_video(clip, make):
    with pytest.raises(UnsupportedVideo) as refused:
        list(clips.frames(make(clip), max_seconds=5))
    assert refused.value.as_body() == {"errors": {"video": "unsupported_video"}}


def test_clips_are_told_from_images_by_their_first_bytes(clip):
    assert clips.looks_like_video(clip)
    assert clips.looks_like_video(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81")  # WebM, Matroska
    assert not clips.looks_like_video(face("people/obama/obama.jpg").read_bytes())
    assert not clips.looks_like_video(b"\0\0\0\x1cftypavif\0\0\0\0")  # a still AVIF
    assert not clips.looks_like_video(b"\0\0\0\x18ftypheic\0\0\0\0")


def test_decoding_over_its_time_budget_is_stopped(clip):
    with pytest.raises(VideoTooComplex, match="time"):
        list(clips.frames(clip, max_seconds=10, budget=clips.Budget(seconds=0.001)))


def test_decoding_leaves_no_file_behind(clip):
    before = set(os.listdir(tempfile.gettempdir()))
    list(clips.frames(clip, max_seconds=1))
    assert set(os.listdir(tempfile.gettempdir())) == before


def test_http_refusals_name_the_video_and_the_rule(env, reconfigure, clip):
    photo = face("people/obama/obama.jpg").read_bytes()
    text = hug.test.post(api, "enroll", body=b"hello" * 50, name="Ann",
                         headers={"content-type": "video/mp4"})
    assert text.status == falcon.HTTP_415
    assert text.data == {"errors": {"video": "unsupported_video"}}
    both = hug.test.post(api, "enroll", body=clip, name="Ann", image_url="http://x.example/a",
                         headers={"content-type": "video/mp4"})
    assert both.status == falcon.HTTP_400 and both.data["errors"] == {"video": "several_images"}
    as_text = hug.test.post(api, "enroll", body={"name": "Ann", "video": "clip.mp4"})
    assert as_text.status == falcon.HTTP_400
    assert as_text.data["errors"] == {"video": "not_a_video_upload"}
    elsewhere = hug.test.post(api, "recognize", body=clip, headers={"content-type": "video/mp4"})
    assert elsewhere.status == falcon.HTTP_415  # only /enroll reads a video
    sniffed = hug.test.post(api, "recognize", body=photo,
                            headers={"content-type": "application/octet-stream"})
    assert sniffed.status == falcon.HTTP_200  # an image is still an image
    reconfigure(max_video_bytes=100_000)
    large = hug.test.post(api, "enroll", body=clip, name="Ann",
                          headers={"content-type": "video/mp4"})
    assert large.status == falcon.HTTP_413
    assert large.data == {"errors": {"video": "video_too_large"},
                          "detail": {"video": "bytes: at most 100000"}}
    octets = hug.test.post(api, "enroll", body=clip, name="Ann",
                           headers={"content-type": "application/octet-stream"})
    assert octets.status == falcon.HTTP_413 and octets.data["errors"] == {
        "video": "video_too_large"}  # sniffed as a video
    assert hug.test.get(api, "people").data["total"] == 0
