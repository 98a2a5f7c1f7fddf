"""The decision rule on real faces: open-set identification through recognizer.openset.

Every photo goes through the service's own pipeline (detect, the centre face, encode with the
enrolment and recognition jitters); the rule is the service's defaults. lfw_dev is cut to its
first 20 known people and 20 strangers to keep the suite quick; the full run is in
docs/accuracy.md.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import FACES, face
from recognizer import Settings, openset

DEFAULTS = Settings()


def subset(tmp_path: Path, known: int, strangers: int) -> Path:
    """A tree linking to the first known people and strangers of lfw_dev."""
    face("lfw_dev/README.md")
    folders = sorted(path for path in (FACES / "lfw_dev").iterdir() if path.is_dir())
    counts = {folder: len(list(folder.glob("*.jpg"))) for folder in folders}
    chosen = ([f for f in folders if counts[f] > 1][:known]
              + [f for f in folders if counts[f] == 1][:strangers])
    for folder in chosen:
        os.symlink(folder, tmp_path / folder.name)
    return tmp_path


@pytest.fixture(scope="module")
def lfw(tmp_path_factory):
    tree = subset(tmp_path_factory.mktemp("lfw"), known=20, strangers=20)
    return openset.load_tree(tree, workers=2)


def test_the_defaults_name_known_people_and_refuse_strangers(lfw):
    splits = openset.protocol(lfw, enroll=1)
    service = openset.evaluate(splits, DEFAULTS.tolerance, DEFAULTS.ratio)
    assert service.known_probes > 150 and service.strangers == 80
    assert service.identified >= 0.8
    assert service.false_accepts <= 0.02 and service.wrong_names <= 0.01
    # the tutorial's rule takes strangers for enrolled people; the ratio test is what stops them
    tutorial = openset.evaluate_tutorial(splits)
    nearest = openset.evaluate(splits, 0.6, 1.0)
    assert tutorial.false_accepts >= 0.1 and nearest.false_accepts >= 0.1
    assert service.false_accepts <= tutorial.false_accepts / 5


def test_a_stricter_tolerance_or_ratio_never_names_more(lfw):
    splits = openset.protocol(lfw, enroll=1)
    loose = openset.evaluate(splits, 0.55, 0.9)
    default = openset.evaluate(splits, DEFAULTS.tolerance, DEFAULTS.ratio)
    strict = openset.evaluate(splits, 0.45, 0.75)
    assert loose.identified >= default.identified >= strict.identified
    assert loose.false_accepts >= default.false_accepts >= strict.false_accepts


def test_two_photos_per_person_name_more_of_them(lfw):
    one = openset.evaluate(openset.protocol(lfw, 1), DEFAULTS.tolerance, DEFAULTS.ratio)
    two = openset.evaluate(openset.protocol(lfw, 2), DEFAULTS.tolerance, DEFAULTS.ratio)
    assert two.identified >= one.identified and two.identified >= 0.9
    assert two.false_accepts <= 0.02


def test_the_shared_people_are_named_and_the_one_stranger_is_not():
    people = openset.load_tree(FACES / "people", workers=2)
    assert len(people["obama"]) == 12 and len(people["lin_manuel_miranda"]) == 1
    result = openset.evaluate(openset.protocol(people, 1), DEFAULTS.tolerance,
                              DEFAULTS.ratio)
    assert result.identified >= 0.9 and result.wrong_names == 0
    assert result.strangers == 12 and result.false_accepts == 0


def test_splits_enrol_each_photo_in_turn_and_probe_the_rest():
    a, b, c, s = (np.full(128, value) for value in (1.0, 2.0, 3.0, 9.0))
    people = {"ann": [a, b, c], "bob": [a, None], "sam": [s]}
    splits = list(openset.splits(people, enroll=1))
    assert len(splits) == 3
    assert [split.enrolled["ann"][0][0] for split in splits] == [1.0, 2.0, 3.0]
    assert splits[1].enrolled["bob"] == []  # the photo without a face enrols nothing
    first = [(None if e is None else e[0], truth) for e, truth in splits[0].probes]
    assert first == [(2.0, "ann"), (3.0, "ann"), (None, "bob"), (9.0, None)]
    assert openset.rates([("ann", "ann"), (None, "ann"), ("bob", "ann"), ("ann", None),
                          (None, None)]) == openset.Rates(1 / 3, 0.5, 1 / 3, 3, 2)
