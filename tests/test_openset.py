"""The decision rule on real faces, and the evaluation's machinery: recognizer.openset's
protocol (identity folds, real distractors, fillers) on a subset of lfw_dev.

Every photo goes through the service's own pipeline (detect, the centre face, encode with the
enrolment and recognition jitters); the rule is the service's defaults. lfw_dev is cut to its
first 24 people with several photos and 20 with one to keep the suite quick; the full run is
in docs/accuracy.md.
"""

import math
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import FACES, face
from recognizer import Settings, openset
from recognizer.fillers import FillerModel

DEFAULTS = Settings()


def subset(tmp_path: Path, several: int, single: int) -> Path:
    """A tree linking to lfw_dev's first people with several photos and with one."""
    face("lfw_dev/README.md")
    folders = sorted(path for path in (FACES / "lfw_dev").iterdir() if path.is_dir())
    counts = {folder: len(list(folder.glob("*.jpg"))) for folder in folders}
    chosen = ([f for f in folders if counts[f] > 1][:several]
              + [f for f in folders if counts[f] == 1][:single])
    for folder in chosen:
        os.symlink(folder, tmp_path / folder.name)
    return tmp_path


@pytest.fixture(scope="module")
def lfw(tmp_path_factory):
    """({person: [enrolment encoding]}, {person: [probe encoding]}, the filler model)."""
    tree = subset(tmp_path_factory.mktemp("lfw"), several=24, single=20)
    people = openset.load_tree(tree, workers=2)
    enrolling = {name: [row[0] for row in rows] for name, rows in people.items()}
    probing = {name: [row[1] for row in rows] for name, rows in people.items()}
    model = FillerModel.fit({name: [r for r in rows if r is not None]
                             for name, rows in enrolling.items()})
    return enrolling, probing, model


def decided(lfw, size: int, photos: int = 1) -> list[openset.Decision]:
    enrolling, probing, model = lfw
    trials = openset.trials(enrolling, photos, 4, probing)
    return openset.decide(trials, size, photos, model, DEFAULTS.tolerance, DEFAULTS.ratio,
                          DEFAULTS.index_above)


def rates(decisions) -> openset.Rates:
    return openset.rates((d.named, d.truth) for d in decisions)


def previous_rule(decision: openset.Decision) -> str | None:
    """The rule before this one: within 0.5, and at most 0.82 of the second-nearest distance
    (capped at 0.81)."""
    second = 9.0 if math.isnan(decision.second) else decision.second
    named = decision.distance <= 0.5 and decision.distance <= 0.82 * min(second, 0.81)
    return decision.nearest if named else None


def test_the_defaults_name_known_people_refuse_strangers_and_hold_up_as_the_gallery_grows(lfw):
    small, large = decided(lfw, 40), decided(lfw, 2_000)
    assert {d.people for d in small} == {40} and {d.people for d in large} == {2_000}
    here, there = rates(small), rates(large)
    assert here.known_probes == there.known_probes > 150 and here.strangers > 250
    assert here.identified >= 0.8 and here.false_accepts <= 0.04 and here.wrong_names <= 0.01
    before = openset.rates((previous_rule(d), d.truth) for d in large)
    assert there.identified >= before.identified + 0.05  # the previous rule falls faster
    assert there.false_accepts <= 0.02 and there.identified < here.identified
    named = [d for d in small + large if d.named is not None]
    right = np.mean([d.named == d.truth for d in named])
    assert abs(np.mean([d.confidence for d in named]) - right) <= 0.05  # calibrated overall


def test_three_photos_per_person_name_more_of_them(lfw):
    one, three = rates(decided(lfw, 60)), rates(decided(lfw, 60, photos=3))
    assert three.identified >= one.identified and three.identified >= 0.9
    assert three.false_accepts <= 0.05  # a stranger's photo counts in 3-4 trials: 1.2% each


def test_trials_keep_strangers_out_of_the_gallery_and_enrol_each_photo_in_turn():
    a, b, c, s = (np.full(128, value) for value in (1.0, 2.0, 3.0, 9.0))
    people = {"ann": [a, b, c], "bob": [a, None], "cat": [b, c], "dan": [c, a], "sam": [s]}
    trials = list(openset.trials(people, enroll=1, fold_count=2))
    assert [t.fold for t in trials] == [0, 0, 1, 1, 1]  # a rotation per photo of the known
    for trial in trials:
        strangers = {"ann", "cat"} if trial.fold == 0 else {"bob", "dan"}
        assert not strangers & (set(trial.known) | set(trial.distractors))
        assert list(trial.distractors) == ["sam"]  # enrolled, never probed
        assert {truth for _, truth in trial.probes} - {None} <= set(trial.known)
        assert sum(truth is None for _, truth in trial.probes) == (5 if trial.fold == 0 else 3)
    assert [trial.known["ann"][0][0] for trial in trials[2:]] == [1.0, 2.0, 3.0]
    assert trials[1].known["bob"] == []  # the photo without a face enrols nothing
    assert [row[0] for row, truth in trials[2].probes if truth == "ann"] == [2.0, 3.0]
    assert openset.rates([("ann", "ann"), (None, "ann"), ("bob", "ann"), ("ann", None),
                          (None, None)]) == openset.Rates(1 / 3, 0.5, 1 / 3, 3, 2)


def test_a_gallery_of_n_people_is_the_known_then_distractors_then_fillers(lfw):
    enrolling, probing, model = lfw
    trial = next(openset.trials(enrolling, 1, 4, probing))
    real = {name for name, _ in openset.gallery_faces(trial, 10 ** 6)}
    assert set(trial.known) <= real and len(real) == len(trial.known) + len(trial.distractors)
    assert {name for name, _ in openset.gallery_faces(trial, 0)} == set(trial.known)
    with pytest.raises(ValueError):
        openset.decide([trial], len(real) + 5, 1, None, 0.55, 0.85, 10 ** 6)


def test_fillers_are_as_far_from_real_faces_as_other_real_people_are(lfw):
    enrolling, probing, model = lfw
    owners = [name for name, rows in enrolling.items() for row in rows if row is not None]
    real = np.array([row for rows in enrolling.values() for row in rows if row is not None])
    fillers = model.draw(500, 1, seed=3)[:, 0].astype(np.float64)
    assert model.draw(5, 3, seed=3).shape == (5, 3, 128)
    to_fillers = np.linalg.norm(real[:, None] - fillers[None], axis=2)
    to_real = np.linalg.norm(real[:, None] - real[None], axis=2)
    others = np.array(owners)[:, None] != np.array(owners)[None, :]
    assert abs(np.median(to_fillers) - np.median(to_real[others])) < 0.05
    three = model.draw(500, 3, seed=4).astype(np.float64)
    spread = np.linalg.norm(three - three.mean(axis=1, keepdims=True), axis=2)
    same = [np.linalg.norm(np.array(rows) - np.mean(rows, axis=0), axis=1)
            for rows in ([r for r in rows if r is not None] for rows in enrolling.values())
            if len(rows) >= 3]
    assert abs(np.median(spread) - np.median(np.concatenate(same))) < 0.05


def test_encodings_are_cached_and_read_back_as_they_were(tmp_path):
    (tmp_path / "tree").mkdir()
    tree = subset(tmp_path / "tree", several=1, single=1)
    first = openset.load_tree(tree, workers=1, cache=tmp_path / "cache")
    (stored,) = (tmp_path / "cache").iterdir()
    again = openset.load_tree(tree, workers=1, cache=tmp_path / "cache")
    assert list(first) == list(again)
    for rows, read in zip(first.values(), again.values()):
        for (enrol, probe, problems), (enrol2, probe2, problems2) in zip(rows, read):
            assert np.array_equal(enrol, enrol2) and np.array_equal(probe, probe2)
            assert problems == problems2
    assert stored.suffix == ".npz"
