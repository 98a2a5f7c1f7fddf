"""The incremental gallery: after any sequence of changes it answers as a gallery computed from
scratch would, on both search paths, across the threshold between them and under concurrent use.

Synthetic encodings check the arithmetic. Real ones (lfw_dev photos encoded once per session
through the service's pipeline) mixed with synthetic fillers check that the faiss path names
faces as the exact path does.
"""

import logging
import threading

import numpy as np
import pytest

from conftest import FACES, face
from recognizer import ivf
from recognizer.config import Settings
from recognizer.gallery import Gallery
from recognizer.matching import best_match

EXACT, INDEXED = 10 ** 9, 0  # index_above for a gallery that never / always uses faiss
PATHS = pytest.mark.parametrize("index_above", [EXACT, INDEXED], ids=["exact", "faiss"])
DEFAULTS = Settings()


def encoding(rng, float32: bool = False) -> np.ndarray:
    """A random encoding, spread like real ones; with float32, one that float32 holds exactly."""
    row = rng.normal(size=128) * 0.1
    return row.astype(np.float32).astype(np.float64) if float32 else row


def centroids(faces: dict, without: int | None = None) -> dict[str, np.ndarray]:
    """Each person's centroid computed from scratch from {face_id: (name, encoding)}."""
    by_person: dict[str, list] = {}
    for face_id, (name, row) in faces.items():
        if face_id != without:
            by_person.setdefault(name, []).append(row)
    return {name: np.mean(rows, axis=0) for name, rows in by_person.items()}


def brute_nearest(people: dict[str, np.ndarray], probe: np.ndarray, k: int) -> list:
    """The k nearest people by float64 brute force, ties in name order."""
    ranked = sorted((float(np.linalg.norm(centroid - probe)), name)
                    for name, centroid in people.items())
    return [(name, distance) for distance, name in ranked[:k]]


def assert_answers(gallery: Gallery, faces: dict, probes, k: int = 4,
                   without: int | None = None) -> None:
    """The gallery's nearest people and distances are brute force's over faces."""
    people = centroids(faces, without)
    for probe in probes:
        got, expected = gallery.nearest(probe, k, without), brute_nearest(people, probe, k)
        assert [name for name, _ in got] == [name for name, _ in expected]
        assert [d for _, d in got] == pytest.approx([d for _, d in expected], abs=1e-9)


def assert_state(gallery: Gallery, faces: dict, probes) -> None:
    people = centroids(faces)
    assert gallery.names == tuple(sorted(people)) and len(gallery) == len(people)
    assert gallery.face_count == len(faces)
    assert_answers(gallery, faces, probes)
    for name in list(people)[:3]:
        expected = np.linalg.norm(people[name] - probes[0])
        assert gallery.distance_to(name, probes[0]) == pytest.approx(expected, abs=1e-9)


@PATHS
def test_every_change_gives_what_a_fresh_computation_gives(index_above):
    rng = np.random.default_rng(1)
    gallery, faces = Gallery(index_above=index_above), {}
    probes = [encoding(rng) for _ in range(3)]
    for step in range(300):
        names = [f"p{n}" for n in range(max(2, len(faces) // 2))]
        face_id = int(rng.integers(0, 80))
        action = rng.choice(["add", "add", "remove", "batch"])
        if action == "add":  # a new face, or a replaced one, possibly moved to another person
            row = (str(rng.choice(names)), encoding(rng, float32=step < 150))
            gallery.add(face_id, *row)
            faces[face_id] = row
        elif action == "remove":  # present or absent
            gallery.remove(face_id)
            faces.pop(face_id, None)
        else:
            removed = [int(i) for i in rng.integers(0, 80, 5)]
            added = [(int(i), str(rng.choice(names)), encoding(rng))
                     for i in rng.integers(0, 80, 6)]  # repeated ids: the last counts
            gallery.apply(removed, added)
            faces = {i: f for i, f in faces.items() if i not in removed}
            faces.update({i: (name, row) for i, name, row in added})
        assert_state(gallery, faces, probes)


@PATHS
def test_a_full_load_in_one_batch_equals_faces_added_one_by_one(index_above):
    rng = np.random.default_rng(2)
    faces = {i: (f"p{rng.integers(0, 300)}", encoding(rng, float32=True)) for i in range(900)}
    batch, single = Gallery(index_above=index_above), Gallery(index_above=index_above)
    batch.apply((), [(i, name, row) for i, (name, row) in faces.items()])
    for i, (name, row) in faces.items():
        single.add(i, name, row)
    probes = [encoding(rng) for _ in range(10)]
    for probe in probes:
        assert batch.nearest(probe, 5) == single.nearest(probe, 5)
    assert_state(batch, faces, probes)


@PATHS
def test_without_leaves_one_face_out(index_above):
    rng = np.random.default_rng(3)
    faces = {i: (f"p{i % 7}", encoding(rng)) for i in range(20)}
    faces[99] = ("loner", encoding(rng))
    gallery = Gallery.from_encodings({}, index_above=index_above)
    gallery.apply((), [(i, name, row) for i, (name, row) in faces.items()])
    probes = [faces[3][1] + 0.01, faces[99][1] + 0.01, encoding(rng)]
    for face_id in (3, 10, 99, 12345):  # 12345 is not in the gallery
        assert_answers(gallery, faces, probes, k=10, without=face_id)
        people = centroids(faces, without=face_id)
        for name in ("p3", "p0", "loner"):
            expected = people.get(name)
            distance = gallery.distance_to(name, probes[0], without=face_id)
            assert (distance is None) == (expected is None)
            if expected is not None:
                assert distance == pytest.approx(np.linalg.norm(expected - probes[0]), abs=1e-9)
    assert "loner" not in [name for name, _ in gallery.nearest(probes[1], 10, without=99)]
    assert gallery.face_count == 21  # nothing was taken out for real


def brute_neighbour(people: dict[str, np.ndarray], name: str) -> float | None:
    """Distance from a person's centroid to the nearest other's, by float64 brute force."""
    if name not in people:
        return None
    others = [np.linalg.norm(centroid - people[name]) for other, centroid in people.items()
              if other != name]
    return float(min(others)) if others else None


@PATHS
def test_a_persons_nearest_neighbour_and_face_count_are_brute_forces_and_follow_changes(
        index_above):
    rng = np.random.default_rng(5)
    faces = {i: (f"p{i % 9}", encoding(rng, float32=True)) for i in range(40)}
    faces[99] = ("loner", encoding(rng, float32=True))
    gallery = Gallery(index_above=index_above)
    gallery.apply((), [(i, name, row) for i, (name, row) in faces.items()])
    for without in (None, 3, 99):
        people = centroids(faces, without)
        for name in ("p3", "p0", "loner", "nobody"):
            expected = brute_neighbour(people, name)
            found = gallery.neighbour_distance(name, without)
            assert (found is None) == (expected is None), (name, without)
            if expected is not None:
                assert found == pytest.approx(expected, abs=1e-9)
            count = sum(1 for i, (owner, _) in faces.items() if owner == name and i != without)
            assert gallery.faces_of(name, without) == count
    before = gallery.neighbour_distance("p3")
    faces[1000] = ("twin", centroids(faces)["p3"] + 1e-3)  # a new person right next to p3
    gallery.add(1000, *faces[1000])
    assert gallery.neighbour_distance("p3") < before  # the kept answer was dropped
    assert gallery.neighbour_distance("p3") == pytest.approx(
        brute_neighbour(centroids(faces), "p3"), abs=1e-9)
    alone = Gallery.from_encodings({"ann": [encoding(rng)]}, index_above=index_above)
    assert alone.neighbour_distance("ann") is None and alone.faces_of("ann") == 1


def test_best_match_without_a_face_matches_a_gallery_built_without_it():
    rng = np.random.default_rng(4)
    by_person = {"ann": [encoding(rng), encoding(rng)], "bob": [encoding(rng)]}
    gallery = Gallery.from_encodings(by_person)  # faces 0, 1: ann; 2: bob
    probe = by_person["ann"][0] + 0.01
    for face_id, rest in ((0, {"ann": by_person["ann"][1:], "bob": by_person["bob"]}),
                          (2, {"ann": by_person["ann"]})):
        expected = best_match(probe, Gallery.from_encodings(rest), 0.9, 1.0)
        assert best_match(probe, gallery, 0.9, 1.0, without=face_id) == expected


def test_from_encodings_numbers_faces_in_name_order_and_skips_people_without_faces():
    rng = np.random.default_rng(5)
    bob, ann = [encoding(rng), encoding(rng)], [encoding(rng)]
    gallery = Gallery.from_encodings({"bob": bob, "ann": ann, "nobody": []})
    assert gallery.names == ("ann", "bob") and len(gallery) == 2 and gallery.face_count == 3
    gallery.remove(0)  # ann's only face
    assert gallery.names == ("bob",)
    gallery.remove(1)
    assert gallery.distance_to("bob", bob[0]) == pytest.approx(np.linalg.norm(bob[1] - bob[0]))
    assert gallery.nearest(bob[0], 0) == [] and Gallery().nearest(bob[0], 3) == []


def test_near_ties_below_float32_resolution_are_ranked_exactly():
    """The exact path's float32 scan cannot tell these people apart; float64 re-ranking must."""
    rng = np.random.default_rng(6)
    probe = encoding(rng)
    faces, directions = {}, [d / np.linalg.norm(d) for d in rng.normal(size=(60, 128))]
    for i, direction in enumerate(directions):  # person i is at 0.5 + i * 1e-9
        faces[i] = (f"q{59 - i:02d}", probe + (0.5 + i * 1e-9) * direction)
    gallery = Gallery.from_encodings({name: [row] for name, row in faces.values()})
    faces[60] = ("a twin", faces[0][1].copy())  # exactly as far as q59: names break the tie
    gallery.add(60, *faces[60])
    got = gallery.nearest(probe, 4)
    assert [name for name, _ in got] == ["a twin", "q59", "q58", "q57"]
    assert_answers(gallery, faces, [probe], k=6)


def test_a_person_in_a_freed_place_starts_from_exactly_nothing():
    rng = np.random.default_rng(16)
    gallery = Gallery()
    gallery.apply((), [(i, "ann", encoding(rng)) for i in range(5)])
    gallery.apply(range(5), ())  # the sum's rounding leftovers must not pass to the next person
    row = encoding(rng)
    gallery.add(9, "bob", row)
    assert gallery.distance_to("bob", row) == 0.0 and gallery.nearest(row, 1) == [("bob", 0.0)]


def test_a_float64_face_after_float32_ones_loses_nothing():
    rng = np.random.default_rng(7)
    faces = {i: (f"p{i % 4}", encoding(rng, float32=True)) for i in range(12)}
    gallery = Gallery()
    gallery.apply((), [(i, name, row) for i, (name, row) in faces.items()])
    faces[12] = ("p1", encoding(rng))  # float32 cannot hold it: storage becomes float64
    gallery.add(12, *faces[12])
    probes = [encoding(rng) for _ in range(3)]
    assert_state(gallery, faces, probes)
    gallery.remove(12)
    del faces[12]
    assert_answers(gallery, faces, probes, without=5)


@pytest.mark.parametrize("bad", [np.zeros(127), np.zeros((2, 128)), np.full(128, np.nan),
                                 np.full(128, np.inf), "not numbers"])
def test_a_bad_encoding_is_refused_and_changes_nothing(bad):
    rng = np.random.default_rng(8)
    gallery = Gallery.from_encodings({"ann": [encoding(rng)]})
    with pytest.raises(ValueError):
        gallery.apply([0], [(1, "bob", encoding(rng)), (2, "cy", bad)])
    assert gallery.names == ("ann",) and gallery.face_count == 1
    with pytest.raises(ValueError):
        gallery.nearest(np.zeros(3), 1)
    with pytest.raises(ValueError):
        Gallery(index_above=-1)


def test_clear_empties_the_gallery_and_drops_the_index():
    rng = np.random.default_rng(9)
    gallery = Gallery.from_encodings({f"p{i}": [encoding(rng)] for i in range(5)}, index_above=2)
    assert gallery.index_kind == "faiss"
    gallery.clear()
    assert (gallery.names, gallery.face_count, gallery.index_kind) == ((), 0, "exact")
    gallery.add(1, "ann", encoding(rng))
    assert gallery.names == ("ann",)


def test_the_index_switches_on_above_the_threshold_and_off_at_half_of_it():
    rng = np.random.default_rng(10)
    gallery, faces, probes = Gallery(index_above=30), {}, [encoding(rng) for _ in range(3)]
    kinds = []
    for i in range(45):
        faces[i] = (f"p{i}", encoding(rng))
        gallery.add(i, *faces[i])
        kinds.append(gallery.index_kind)
        assert_answers(gallery, faces, probes)
    assert kinds.index("faiss") == 30 and set(kinds[30:]) == {"faiss"}  # from the 31st person
    kinds = []
    for i in range(44, -1, -1):
        gallery.remove(i)
        del faces[i]
        kinds.append((len(gallery), gallery.index_kind))
        assert_answers(gallery, faces, probes)
    assert (16, "faiss") in kinds and (15, "exact") in kinds and kinds[-1] == (0, "exact")
    for i in range(40):  # and back up again
        faces[i] = (f"p{i % 35}", encoding(rng))
        gallery.add(i, *faces[i])
    assert gallery.index_kind == "faiss"
    assert_state(gallery, faces, probes)


def test_the_index_is_retrained_only_when_the_gallery_has_grown_fourfold(caplog):
    rng = np.random.default_rng(11)
    gallery, faces = Gallery(index_above=10), {}
    with caplog.at_level(logging.INFO, logger="recognizer.gallery"):
        for i in range(200):
            faces[i] = (f"p{i}", encoding(rng))
            gallery.add(i, *faces[i])
    builds = [r.getMessage() for r in caplog.records if "faiss IVF index" in r.getMessage()]
    assert [message.split(" over ")[1].split()[0] for message in builds] == ["11", "45", "181"]
    assert_state(gallery, faces, [encoding(rng) for _ in range(5)])


def test_an_index_probing_few_lists_still_returns_exact_distances(monkeypatch):
    """With pruning, the index may miss people, but what it returns is re-ranked in float64."""
    monkeypatch.setattr(ivf, "PROBES", 2)
    rng = np.random.default_rng(12)
    faces = {i: (f"p{i}", encoding(rng)) for i in range(2000)}
    gallery = Gallery(index_above=0)
    gallery.apply((), [(i, name, row) for i, (name, row) in faces.items()])
    people = centroids(faces)
    for probe in [encoding(rng) for _ in range(20)] + [faces[7][1] + 0.001]:
        got = gallery.nearest(probe, 5)
        distances = [d for _, d in got]
        assert len(got) == 5 and distances == sorted(distances)
        for name, distance in got:
            assert distance == pytest.approx(np.linalg.norm(people[name] - probe), abs=1e-12)
    assert gallery.nearest(faces[7][1] + 0.001, 1)[0][0] == "p7"


def test_without_faiss_the_gallery_searches_exactly(monkeypatch, caplog):
    def missing(vectors):
        raise ImportError("No module named 'faiss'")

    monkeypatch.setattr(ivf, "build", missing)
    rng = np.random.default_rng(14)
    faces = {i: (f"p{i % 9}", encoding(rng)) for i in range(30)}
    gallery = Gallery(index_above=4)
    with caplog.at_level(logging.ERROR, logger="recognizer.gallery"):
        for i, (name, row) in faces.items():
            gallery.add(i, name, row)
    assert gallery.index_kind == "exact" and len(caplog.records) == 1  # tried once only
    assert_state(gallery, faces, [encoding(rng) for _ in range(3)])


def search_until(stop: threading.Event, gallery: Gallery, probes: list, errors: list) -> None:
    """Search, match and measure until stopped; keep any exception."""
    try:
        while not stop.is_set():
            for probe in probes:
                found = gallery.nearest(probe, 3, without=5)
                assert [d for _, d in found] == sorted(d for _, d in found)
                best_match(probe, gallery, 0.5, 0.82)
                gallery.distance_to("p1", probe)
    except Exception as error:
        errors.append(error)


def churn(gallery: Gallery, faces: dict, rng) -> set:
    """200 adds (past 40 people), then mostly removals (below 20): return the (growing, kind)
    pairs seen."""
    kinds = set()
    for step in range(400):
        if step < 200 or rng.random() < 0.2 or not faces:
            face_id = int(rng.integers(0, 120))
            faces[face_id] = (f"p{rng.integers(0, 90)}", encoding(rng))
            gallery.add(face_id, *faces[face_id])
        else:
            face_id = int(rng.choice(sorted(faces)))
            gallery.remove(face_id)
            del faces[face_id]
        kinds.add((step < 200, gallery.index_kind))
    return kinds


def test_searches_run_safely_while_the_gallery_changes_and_crosses_the_threshold():
    rng = np.random.default_rng(13)
    gallery = Gallery(index_above=40)
    faces = {i: (f"p{i}", encoding(rng)) for i in range(30)}
    gallery.apply((), [(i, name, row) for i, (name, row) in faces.items()])
    probes, errors, stop = [encoding(rng) for _ in range(8)], [], threading.Event()
    threads = [threading.Thread(target=search_until, args=(stop, gallery, probes, errors))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    kinds = churn(gallery, faces, rng)  # the index is built and dropped under the searches
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == [] and {(True, "faiss"), (False, "exact")} <= kinds
    assert_state(gallery, faces, probes)


# Real faces: the faiss path must give best_match's answers exactly as the exact path does.


def encode_photo(path) -> np.ndarray | None:
    """The service's encoding (one jitter) of the face nearest the photo's centre."""
    from recognizer import faces, images

    pixels = images.decode(images.read_file(path, DEFAULTS.max_image_bytes),
                           DEFAULTS.max_image_pixels)
    boxes = faces.detect(pixels, "hog", 1, DEFAULTS.detect_max_side)
    if not boxes:
        return None
    box = faces.nearest_centre(boxes, pixels.shape[1], pixels.shape[0])
    return faces.encode(pixels, [box], 1)[0]


@pytest.fixture(scope="session")
def lfw():
    """(enrolled {name: [first photo's encoding]}, probes [(encoding, name or None)], fillers):
    lfw_dev's first 40 people with several photos (the others are probes) and first 40 with
    one (strangers), plus 1,000 fillers drawn with the real encodings' mean and covariance."""
    face("lfw_dev/README.md")
    folders = sorted(path for path in (FACES / "lfw_dev").iterdir() if path.is_dir())
    photos = {folder.name: sorted(folder.glob("*.jpg")) for folder in folders}
    known = [name for name, paths in photos.items() if len(paths) > 1][:40]
    strangers = [name for name, paths in photos.items() if len(paths) == 1][:40]
    encoded = {name: [e for e in map(encode_photo, photos[name]) if e is not None]
               for name in known + strangers}
    enrolled = {name: encoded[name][:1] for name in known}
    probes = [(row, name) for name in known for row in encoded[name][1:]]
    probes += [(row, None) for name in strangers for row in encoded[name]]
    real = np.array([row for rows in encoded.values() for row in rows])
    values, vectors = np.linalg.eigh(np.cov(real, rowvar=False))
    noise = np.random.default_rng(15).standard_normal((1000, 128))
    fillers = real.mean(axis=0) + noise @ (vectors * np.sqrt(np.clip(values, 0, None))).T
    return enrolled, probes, fillers.astype(np.float32).astype(np.float64)


def test_the_faiss_path_names_real_faces_as_the_exact_path_does(lfw):
    enrolled, probes, fillers = lfw
    by_person = enrolled | {f"filler {i:04d}": [row] for i, row in enumerate(fillers)}
    exact = Gallery.from_encodings(by_person)
    indexed = Gallery.from_encodings(by_person, index_above=100)
    assert (exact.index_kind, indexed.index_kind) == ("exact", "faiss")

    def decisions(gallery):
        return [best_match(row, gallery, DEFAULTS.tolerance, DEFAULTS.ratio) for row, _ in probes]

    first = decisions(exact)
    assert decisions(indexed) == first
    named = sum(match.name == truth for match, (_, truth) in zip(first, probes) if truth)
    assert named > len(probes) / 3  # real faces, really recognised
    changes = [(10_000 + i, truth, row) for i, (row, truth) in enumerate(probes[::2]) if truth]
    for gallery in (exact, indexed):  # enrol half of the probes, then take fillers out
        gallery.apply((), changes)
        gallery.apply(range(len(enrolled), len(enrolled) + 500), ())
    assert exact.face_count == indexed.face_count == len(enrolled) + 500 + len(changes)
    assert decisions(indexed) == decisions(exact) != first
