"""The decision rule: nearest person (minimum over their faces), then the tolerance."""

import numpy as np
import pytest

from recognizer.matching import Gallery, best_match, confidence

rng = np.random.default_rng(7)


def unit(vector):
    return vector / np.linalg.norm(vector)


def near(base, distance):
    """A vector at exactly this distance from base."""
    step = unit(rng.normal(size=128))
    return base + distance * step


A, B, C = (rng.normal(size=128) * 0.1 for _ in range(3))


def test_the_nearest_person_wins_not_the_first_within_tolerance():
    gallery = Gallery.from_encodings({"aaron": [near(A, 0.5)], "zoe": [near(A, 0.2)]})
    match = best_match(A, gallery, tolerance=0.6)
    assert match.name == "zoe" and match.distance == pytest.approx(0.2, abs=1e-4)
    assert [c.name for c in match.candidates] == ["zoe", "aaron"]


def test_a_persons_distance_is_their_nearest_face():
    gallery = Gallery.from_encodings({"ann": [near(A, 0.9), near(A, 0.3), near(A, 0.7)],
                                      "bob": [near(A, 0.4)]})
    match = best_match(A, gallery, tolerance=0.6)
    assert match.name == "ann" and match.distance == pytest.approx(0.3, abs=1e-4)


def test_nobody_within_tolerance_is_unknown_but_still_ranked():
    gallery = Gallery.from_encodings({"ann": [near(A, 0.7)], "bob": [near(A, 0.65)]})
    match = best_match(A, gallery, tolerance=0.6)
    assert match.name is None and match.distance is None and match.confidence is None
    assert [c.name for c in match.candidates] == ["bob", "ann"]


def test_the_tolerance_boundary_is_inclusive():
    gallery = Gallery.from_encodings({"ann": [near(A, 0.5)]})
    assert best_match(A, gallery, tolerance=0.5).name == "ann"
    assert best_match(A, gallery, tolerance=0.49).name is None


def test_top_k_and_an_empty_gallery():
    gallery = Gallery.from_encodings({name: [near(A, 0.1 * (i + 1))]
                                      for i, name in enumerate("abcdef")})
    assert [c.name for c in best_match(A, gallery, 0.6, top_k=2).candidates] == ["a", "b"]
    assert len(best_match(A, gallery, 0.6, top_k=10).candidates) == 6
    empty = best_match(A, Gallery.empty(), 0.6)
    assert empty.name is None and empty.candidates == []


def test_distances_equal_numpys_euclidean_norm():
    faces = {"a": [A, B], "b": [C]}
    gallery = Gallery.from_encodings(faces)
    probe = near(B, 0.3)
    expected = [min(np.linalg.norm(f - probe) for f in faces[n]) for n in ("a", "b")]
    assert gallery.person_distances(probe) == pytest.approx(expected, abs=1e-9)


def test_confidence_is_in_0_1_and_falls_as_distance_grows():
    distances = np.linspace(0, 1, 101)
    for tolerance in (0.4, 0.5, 0.6):
        scores = [confidence(d, tolerance) for d in distances]
        assert all(0 <= s <= 1 for s in scores)
        assert all(a >= b for a, b in zip(scores, scores[1:]))
        assert confidence(tolerance, tolerance) == pytest.approx(0.5)
