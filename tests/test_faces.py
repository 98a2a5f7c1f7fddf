"""Detection and encoding with dlib, on real photos."""

import numpy as np

from conftest import face
from recognizer import faces, images


def load(relative):
    return images.decode(face(relative).read_bytes(), 40_000_000)


def test_dlib_is_built_with_blas():
    assert faces.blas_enabled(), "dlib was built without BLAS: see scripts/setup"


def test_boxes_from_a_downscaled_copy_are_in_original_pixels():
    pixels = load("people/obama/obama.jpg")  # 910 x 1137
    (full,) = faces.detect(pixels, max_side=2000)
    (small,) = faces.detect(pixels, max_side=400)
    assert full.overlap(small) > 0.7
    assert small.bottom > 400 or small.right > 400  # not left in the small copy's coordinates


def test_faces_come_largest_first():
    found = faces.detect(load("misc/obama_and_biden.jpg"))
    assert len(found) >= 2
    assert [box.area for box in found] == sorted((box.area for box in found), reverse=True)


def test_encodings_are_128_floats_and_separate_people():
    obama = load("people/obama/obama.jpg")
    (obama_box,) = faces.detect(obama)
    biden = load("people/biden/biden.jpg")
    (biden_box,) = faces.detect(biden)
    (a,) = faces.encode(obama, [obama_box])
    (b,) = faces.encode(biden, [biden_box])
    (a2,) = faces.encode(load("people/obama/obama2.jpg"),
                         faces.detect(load("people/obama/obama2.jpg"))[:1])
    assert a.shape == (128,) and a.dtype == np.float64
    assert np.linalg.norm(a - a2) < 0.6 < np.linalg.norm(a - b)


def test_box_overlap():
    box = faces.Box(top=0, right=10, bottom=10, left=0)
    assert box.overlap(box) == 1.0
    assert box.overlap(faces.Box(top=0, right=20, bottom=10, left=10)) == 0.0
    assert box.overlap(faces.Box(top=0, right=15, bottom=10, left=5)) == 50 / 150


def test_no_face_means_no_boxes_and_no_encodings():
    pixels = np.full((200, 300, 3), 127, np.uint8)
    assert faces.detect(pixels) == [] and faces.encode(pixels, []) == []
