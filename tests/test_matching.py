"""The decision rule's arithmetic: centroids, the tolerance, the ratio to the local scale and its
bound by gallery size and photos, and the confidence.

These use vectors placed at exact distances; tests/test_openset.py runs the rule on real faces.
"""

import numpy as np
import pytest

from recognizer.matching import (
    IMPOSTOR_DISTANCE,
    REFERENCE_PEOPLE,
    Evidence,
    Gallery,
    best_match,
    confidence,
    evidence,
    ratio_bound,
)

rng = np.random.default_rng(7)


def unit(vector):
    return vector / np.linalg.norm(vector)


def near(base, distance):
    """A vector at exactly this distance from base."""
    return base + distance * unit(rng.normal(size=128))


A, B, C = (rng.normal(size=128) * 0.1 for _ in range(3))


def test_the_nearest_person_wins_not_the_first_within_tolerance():
    gallery = Gallery.from_encodings({"aaron": [near(A, 0.5)], "zoe": [near(A, 0.2)]})
    match = best_match(A, gallery, tolerance=0.6, ratio=0.82)
    assert match.name == "zoe" and match.distance == pytest.approx(0.2, abs=1e-4)
    assert [c.name for c in match.candidates] == ["zoe", "aaron"]


def test_a_person_is_the_centroid_of_their_faces():
    faces = [near(A, 0.3), near(A, 0.3), near(A, 0.3)]
    gallery = Gallery.from_encodings({"ann": faces, "bob": [B]})
    expected = np.linalg.norm(np.mean(faces, axis=0) - A)
    assert dict(gallery.nearest(A, 2))["ann"] == pytest.approx(expected, abs=1e-9)
    assert gallery.distance_to("ann", A) == pytest.approx(expected, abs=1e-9)
    assert gallery.distance_to("nobody", A) is None
    assert len(gallery) == 2 and gallery.face_count == 4


def test_nobody_within_tolerance_is_unknown_but_still_ranked():
    gallery = Gallery.from_encodings({"ann": [near(A, 0.7)], "bob": [near(A, 0.55)]})
    match = best_match(A, gallery, tolerance=0.5, ratio=1.0)
    assert match.name is None and match.distance is None and match.confidence is None
    assert [c.name for c in match.candidates] == ["bob", "ann"]


def test_the_tolerance_boundary_is_inclusive():
    gallery = Gallery.from_encodings({"ann": [near(A, 0.45)]})
    ((_, distance),) = gallery.nearest(A, 1)  # 0.45 give or take the last bit, by CPU
    assert best_match(A, gallery, tolerance=distance, ratio=0.82).name == "ann"
    assert best_match(A, gallery, tolerance=distance - 1e-12, ratio=0.82).name is None


def test_a_face_about_as_near_two_people_is_unknown():
    gallery = Gallery.from_encodings({"ann": [near(A, 0.40)], "bob": [near(A, 0.44)]})
    ambiguous = best_match(A, gallery, tolerance=0.5, ratio=0.82)
    assert ambiguous.name is None and [c.name for c in ambiguous.candidates] == ["ann", "bob"]
    assert best_match(A, gallery, tolerance=0.5, ratio=1.0).name == "ann"  # ratio test off
    clear = Gallery.from_encodings({"ann": [near(A, 0.40)], "bob": [near(A, 0.70)]})
    assert best_match(A, clear, tolerance=0.5, ratio=0.82).name == "ann"

    # the very same face enrolled for two people: a local scale of 0, and nobody is named
    twins = Gallery.from_encodings({"ann": [A], "bob": [A.copy()], "cy": [B]})
    for probe in (A, near(A, 0.1)):
        match = best_match(probe, twins, tolerance=0.5, ratio=0.82)
        assert match.name is None and {c.name for c in match.candidates[:2]} == {"ann", "bob"}
    assert evidence(twins, twins.nearest(A, 2)).ratio == float("inf")


def test_the_local_scale_is_capped_at_the_typical_stranger_distance():
    alone = Gallery.from_encodings({"ann": [near(A, 0.45)]})
    found = evidence(alone, alone.nearest(A, 2))
    assert found.scale == pytest.approx(IMPOSTOR_DISTANCE)  # nobody second, no neighbour
    assert found.ratio == pytest.approx(0.45 / IMPOSTOR_DISTANCE, abs=1e-9)
    assert best_match(A, alone, tolerance=0.5, ratio=0.8475).name == "ann"
    assert best_match(A, alone, tolerance=0.5, ratio=0.5).name is None  # bound 0.27 at 1 person
    far = Gallery.from_encodings({"ann": [near(A, 0.45)], "bob": [near(A, 1.5)]})
    assert evidence(far, far.nearest(A, 2)).scale == pytest.approx(IMPOSTOR_DISTANCE)


def test_the_local_scale_is_the_second_distance_and_the_nearest_persons_neighbour():
    ann, bob = near(A, 0.40), near(A, 0.70)
    spread = Gallery.from_encodings({"ann": [ann], "bob": [bob]})
    found = evidence(spread, spread.nearest(A, 2))
    neighbour = np.linalg.norm(ann - bob)
    assert found.scale == pytest.approx(np.sqrt(min(0.70, IMPOSTOR_DISTANCE)
                                                * min(neighbour, IMPOSTOR_DISTANCE)))
    cat = ann + 0.35 * unit(ann - A)  # somebody right beside ann, on the face's far side
    crowded = Gallery.from_encodings({"ann": [ann], "bob": [bob], "cat": [cat]})
    (first, _), (second, _) = crowded.nearest(A, 2)
    assert (first, second) == ("ann", "bob")  # the probe's second is still bob
    assert evidence(crowded, crowded.nearest(A, 2)).scale < found.scale
    assert best_match(A, spread, 0.55, 0.8475).name == "ann"
    assert best_match(A, crowded, 0.55, 0.8475).name is None  # ann sits where people crowd


def test_the_bound_rises_with_the_gallerys_size_and_the_nearest_persons_photos():
    assert ratio_bound(REFERENCE_PEOPLE, 0.85) == pytest.approx(0.85)
    sizes = [1, 2, 10, 100, 1000, 10_000, 100_000, 1_000_000]
    bounds = [ratio_bound(size, 0.85) for size in sizes]
    assert bounds == sorted(bounds) and bounds[0] < 0.75 and bounds[-1] < 0.92
    photos = [ratio_bound(200, 0.85, count) for count in (1, 2, 3, 10)]
    assert photos == sorted(photos) and photos[0] < photos[-1] < 0.9
    assert ratio_bound(200, 1.0) == 1.0  # ratio 1 turns the test off at every size


def test_top_k_and_an_empty_gallery():
    gallery = Gallery.from_encodings({name: [near(A, 0.1 * (i + 1))]
                                      for i, name in enumerate("abcdef")})
    assert [c.name for c in best_match(A, gallery, 0.5, 0.82, top_k=2).candidates] == ["a", "b"]
    assert len(best_match(A, gallery, 0.5, 0.82, top_k=10).candidates) == 6
    empty = best_match(A, Gallery(), 0.5, 0.82)
    assert empty.name is None and empty.candidates == []


def test_distances_equal_numpys_euclidean_norm():
    gallery = Gallery.from_encodings({"a": [A, B], "b": [C]})
    probe = near(B, 0.3)
    expected = {"a": np.linalg.norm((A + B) / 2 - probe), "b": np.linalg.norm(C - probe)}
    assert dict(gallery.nearest(probe, 2)) == pytest.approx(expected, abs=1e-9)


def test_confidence_is_a_probability_that_rises_with_the_strength_of_the_evidence():
    strengths = np.linspace(-5, 30, 141)
    scores = [confidence(s) for s in strengths]
    assert all(0.001 <= s <= 0.999 for s in scores)
    assert all(a <= b for a, b in zip(scores, scores[1:])) and scores[0] < scores[-1]
    assert confidence(-100) == 0.001 and confidence(100) == 0.999
    weak = Evidence(0.5, 0.55, 200)  # a ratio of 0.91: over the bound
    strong = Evidence(0.3, 0.6, 200)
    assert weak.strength < strong.strength and confidence(weak.strength) < 0.95


def test_a_match_carries_the_confidence_of_its_evidence():
    gallery = Gallery.from_encodings({"ann": [near(A, 0.35)], "bob": [near(A, 0.6)]})
    match = best_match(A, gallery, tolerance=0.5, ratio=0.8475)
    assert match.name == "ann"
    assert match.confidence == confidence(evidence(gallery, gallery.nearest(A, 2)).strength)


def test_a_face_left_out_counts_for_nothing():
    gallery = Gallery.from_encodings({"ann": [near(A, 0.2), near(A, 1.6)], "bob": [near(A, 0.45)]})
    assert best_match(A, gallery, tolerance=0.5, ratio=0.82).name == "bob"  # ann's is ~0.8 away
    assert best_match(A, gallery, tolerance=0.5, ratio=0.82, without=1).name == "ann"
    alone = best_match(A, gallery, tolerance=0.5, ratio=1.0, without=2)  # bob's only face
    assert [c.name for c in alone.candidates] == ["ann"]


def test_the_answers_are_those_of_the_old_frozen_gallery():
    """best_match's outputs are the frozen gallery's: the centroid arithmetic, written out."""
    people = {name: [rng.normal(size=128) * 0.1 for _ in range(1 + i % 3)]
              for i, name in enumerate("abcdefghij")}
    names = sorted(people)
    centroids = np.array([np.mean(people[name], axis=0) for name in names])
    gallery = Gallery.from_encodings(people)
    for probe in [rng.normal(size=128) * 0.1 for _ in range(20)] + [people["c"][0]]:
        squared = (centroids ** 2).sum(1) - 2.0 * (centroids @ probe) + probe @ probe
        distances = np.sqrt(np.maximum(squared, 0.0))
        order = np.argsort(distances, kind="stable")
        match = best_match(probe, gallery, tolerance=0.9, ratio=0.95)
        assert [c.name for c in match.candidates] == [names[i] for i in order[:3]]
        assert [c.distance for c in match.candidates] == [round(distances[i], 4) for i in order[:3]]
