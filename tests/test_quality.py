"""The enrolment quality gate: faces.measure on real photos with dlib, and quality.problems."""

import math

import cv2
import numpy as np
import pytest

from conftest import face
from recognizer import faces, images
from recognizer.faces import FaceQuality
from recognizer.quality import REASONS, QualityLimits, problems

LIMITS = QualityLimits()


def load(relative):
    return images.decode(face(relative).read_bytes(), 40_000_000)


def centre_face(pixels, upsample=1):
    """The face nearest the image's centre (the labelled one in an LFW crop)."""
    height, width = pixels.shape[:2]
    return min(faces.detect(pixels, upsample=upsample),
               key=lambda box: (box.left + box.right - width) ** 2
               + (box.top + box.bottom - height) ** 2)


@pytest.fixture(scope="module")
def obama():
    """The official portrait: a sharp, frontal face about 250 pixels across, and its box."""
    pixels = load("people/obama/obama.jpg")
    (box,) = faces.detect(pixels)
    return pixels, box


def blurred(pixels, box, percent):
    """A Gaussian blur with a sigma of percent of the face's width."""
    return cv2.GaussianBlur(pixels, (0, 0), percent / 100 * (box.right - box.left))


def rotated(pixels, box, degrees):
    """The photo turned counter-clockwise (as displayed) about the face's centre."""
    centre = ((box.left + box.right) / 2, (box.top + box.bottom) / 2)
    matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    return cv2.warpAffine(pixels, matrix, pixels.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("relative", [
    "people/obama/obama-240p.jpg",  # the smallest face in people/: 62 pixels across
    "people/kit_harington/john2.jpeg",  # turned about 30 degrees
    "people/alex_lacamoire/alex-lacamoire.png",  # the softest photo in people/
    "people/biden/biden.jpg",
    "lfw_dev/Dennis_Hastert/Dennis_Hastert_0004.jpg",  # the softest face in lfw_dev/
])
def test_normal_photos_have_no_problems(relative):
    pixels = load(relative)
    quality = faces.measure(pixels, centre_face(pixels))
    assert problems(quality, LIMITS) == []


def test_a_frontal_face_is_measured_as_frontal_and_sharp(obama):
    pixels, box = obama
    quality = faces.measure(pixels, box)
    assert quality.width == box.right - box.left
    assert quality.sharpness > 10 * LIMITS.min_sharpness
    assert max(abs(quality.yaw), abs(quality.pitch), abs(quality.roll)) < 5
    assert problems(quality, LIMITS) == []


def test_a_blurred_copy_is_blurry(obama):
    pixels, box = obama
    copy = blurred(pixels, box, 4)
    (found,) = faces.detect(copy)  # the pipeline's own box on the blurred photo
    quality = faces.measure(copy, found)
    assert quality.sharpness < LIMITS.min_sharpness / 2
    assert problems(quality, LIMITS) == ["blurry"]


def test_sharpness_falls_as_blur_grows(obama):
    pixels, box = obama
    readings = [faces.measure(blurred(pixels, box, percent) if percent else pixels, box).sharpness
                for percent in (0, 0.5, 1, 2, 3, 4)]
    assert readings == sorted(readings, reverse=True)
    assert readings[-1] < readings[0] / 50


def test_sharpness_does_not_depend_on_the_faces_size(obama):
    pixels, box = obama
    readings = []
    for width in (70, 100, 150):  # the face's width in pixels, in a shrunk copy of the photo
        scale = width / (box.right - box.left)
        small = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        readings.append(faces.measure(small, faces.detect(small)[0]).sharpness)
    assert max(readings) < 1.3 * min(readings)


def test_a_tiny_face_is_small_not_blurry(obama):
    pixels, box = obama
    scale = 30 / (box.right - box.left)
    tiny = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    (found,) = faces.detect(tiny, upsample=2)
    quality = faces.measure(tiny, found)
    assert quality.width < 40
    assert problems(quality, LIMITS) == ["small_face"]


def test_roll_follows_an_in_plane_rotation(obama):
    pixels, box = obama
    for degrees in (15, -30):  # counter-clockwise turns of the photo: negative roll
        copy = rotated(pixels, box, degrees)
        quality = faces.measure(copy, faces.detect(copy, max_side=600)[0])
        assert quality.roll == pytest.approx(-degrees, abs=5)
        assert abs(quality.yaw) < 8 and abs(quality.pitch) < 8


def test_yaw_sign_and_mirror_image():
    pixels = load("people/kit_harington/john2.jpeg")  # looks towards the image's left
    box = centre_face(pixels)
    quality = faces.measure(pixels, box)
    assert quality.yaw < -20
    width = pixels.shape[1]
    mirror = faces.measure(np.ascontiguousarray(pixels[:, ::-1]),
                           faces.Box(box.top, width - box.left, box.bottom, width - box.right))
    assert mirror.yaw == pytest.approx(-quality.yaw, abs=5)
    assert mirror.roll == pytest.approx(-quality.roll, abs=3)


@pytest.mark.parametrize("relative, angle", [
    ("lfw_dev/Bill_Frist/Bill_Frist_0002.jpg", "yaw"),  # three-quarter view, reads about -54
    ("lfw_dev/Mukesh_Ambani/Mukesh_Ambani_0001.jpg", "pitch"),  # chin raised, reads about 36
])
def test_strongly_turned_faces_have_an_extreme_pose(relative, angle):
    pixels = load(relative)
    quality = faces.measure(pixels, centre_face(pixels))
    assert abs(getattr(quality, angle)) > 1.05 * getattr(LIMITS, f"max_{angle}")
    assert problems(quality, LIMITS) == ["extreme_pose"]


def made(**changes):
    values = {"width": 100, "sharpness": 500.0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0}
    return FaceQuality(**(values | changes))


def test_problems_come_most_fundamental_first():
    assert problems(made(width=20, sharpness=1.0, yaw=80.0), LIMITS) == list(REASONS)
    assert problems(made(width=20, roll=-90.0), LIMITS) == ["small_face", "extreme_pose"]
    assert problems(made(sharpness=1.0, pitch=-40.0), LIMITS) == ["blurry", "extreme_pose"]
    assert problems(made(), LIMITS) == []


@pytest.mark.parametrize("field, limit, outside", [
    ("width", LIMITS.min_face_size, LIMITS.min_face_size - 1),
    ("sharpness", LIMITS.min_sharpness, LIMITS.min_sharpness - 0.1),
    ("yaw", LIMITS.max_yaw, -LIMITS.max_yaw - 0.1),
    ("pitch", -LIMITS.max_pitch, LIMITS.max_pitch + 0.1),
    ("roll", LIMITS.max_roll, -LIMITS.max_roll - 0.1),
])
def test_a_value_at_its_limit_passes_and_beyond_it_fails(field, limit, outside):
    reason = {"width": "small_face", "sharpness": "blurry"}.get(field, "extreme_pose")
    assert problems(made(**{field: limit}), LIMITS) == []
    assert problems(made(**{field: outside}), LIMITS) == [reason]
    assert problems(made(**{field: math.nan}), LIMITS) == [reason]


def test_limits_can_be_changed():
    strict = QualityLimits(min_face_size=200, min_sharpness=1000.0, max_yaw=5.0, max_pitch=5.0,
                           max_roll=5.0)
    assert problems(made(yaw=10.0), strict) == ["small_face", "blurry", "extreme_pose"]
    assert problems(made(width=300, sharpness=2000.0, roll=4.0), strict) == []
