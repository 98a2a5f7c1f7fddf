"""Adaptive jitters against jittering every face, on the open-set protocol (lfw_dev).

/recognize encodes each face once without jitter and again with FACEREC_JITTERS (5) only when
the first decision is within a margin of a boundary (``service.near_boundary``: the tolerance,
the ratio test's limit, or the second-nearest person). This measures, for a table of margins,
how often the adaptive decision names the same person as jittering every face, the open-set
rates of each, and the share of faces encoded twice. Every photo is encoded here with 1 jitter
and twice with 5, independently: the two 5-jitter runs give the noise floor (how often two
equally good 5-jitter decisions disagree). With --split, the probes are also found with the
two-thread HOG split (``faces.split_hog``) and encoded there, to show that detection split over
two threads decides the same.

    .venv/bin/python scripts/eval_jitters.py [TREE] [--workers 2] [--split]
"""

import argparse
import os
from pathlib import Path

from recognizer import Settings, images, openset
from recognizer.gallery import Gallery
from recognizer.matching import best_match, evidence
from recognizer.service import near_boundary
from recognizer.testing import FACES

MARGINS = (0.0, 0.02, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15)


def encode_photo(job: tuple[Path, bool]) -> dict | None:
    """The labelled face's encodings: enrolment, 1 jitter, 5 jitters twice (and 1 jitter on
    the split detection's box)."""
    from recognizer import faces

    path, split = job
    settings = Settings.from_env()
    pixels = images.decode(images.read_file(path, settings.max_image_bytes),
                           settings.max_image_pixels)
    boxes = faces.detect(pixels, settings.model, settings.upsample, settings.detect_max_side)
    if not boxes:
        return None
    box = faces.nearest_centre(boxes, pixels.shape[1], pixels.shape[0])
    (enrol,) = faces.encode(pixels, [box], settings.enroll_jitters)
    row = {"enrol": enrol, "one": faces.encode(pixels, [box], 1)[0],
           "five": faces.encode(pixels, [box], settings.jitters)[0],
           "again": faces.encode(pixels, [box], settings.jitters)[0]}
    if split:
        found = faces.detect(pixels, settings.model, settings.upsample,
                             settings.detect_max_side, threads=2)
        near = faces.nearest_centre(found, pixels.shape[1], pixels.shape[0]) if found else None
        row["split"] = None if near is None else faces.encode(pixels, [near], 1)[0]
    return row


def load(tree: Path, workers: int, split: bool) -> tuple[dict[str, list], list]:
    """({person: [row index or None, ...]}, rows), photos in name order."""
    from concurrent.futures import ProcessPoolExecutor

    paths = [(folder.name, photo) for folder in sorted(tree.iterdir()) if folder.is_dir()
             for photo in sorted(folder.iterdir())
             if photo.suffix.lower() in {".jpg", ".jpeg", ".png"}]
    with ProcessPoolExecutor(workers) as pool:
        rows = list(pool.map(encode_photo, [(path, split) for _, path in paths], chunksize=8))
    people: dict[str, list] = {}
    for index, ((person, _), row) in enumerate(zip(paths, rows)):
        people.setdefault(person, []).append(None if row is None else index)
    return people, rows


def decide(gallery: Gallery, encoding, settings: Settings):
    return best_match(encoding, gallery, settings.tolerance, settings.ratio, top_k=2)


def close(gallery: Gallery, match, settings: Settings, margin: float) -> bool:
    """The service's trigger: whether a decision is near a boundary."""
    found = None if not match.candidates else evidence(
        gallery, [(candidate.name, candidate.distance) for candidate in match.candidates])
    return near_boundary(match, found, settings.tolerance, settings.ratio, margin)


def trials(people, rows) -> list:
    """The protocol's trials (openset.trials, one photo enrolled), with the rows' indexes as
    probes, so that every rule decides the same probe with its own encoding."""
    enrolled = {name: [None if i is None else rows[i]["enrol"] for i in indexes]
                for name, indexes in people.items()}
    return list(openset.trials(enrolled, 1, probing=people))


def evaluate(people, rows, settings: Settings, split: bool, size: int) -> None:
    rules = {"5 jitters (today)": [], "5 jitters, again": [], "1 jitter": []}
    rules |= {f"adaptive, margin {m:.2f}": [] for m in MARGINS}
    if split:
        rules["1 jitter, split detection"] = []
    twice = {m: 0 for m in MARGINS}
    probes = 0
    for trial in trials(people, rows):
        by_person: dict[str, list] = {}
        for name, encoding in openset.gallery_faces(trial, size):
            by_person.setdefault(name, []).append(encoding)
        gallery = Gallery.from_encodings(by_person)
        for index, truth in trial.probes:
            probes += 1
            if index is None:  # no face found in the probe: nobody named, whatever the rule
                for decisions in rules.values():
                    decisions.append((None, truth))
                continue
            row = rows[index]
            five = decide(gallery, row["five"], settings)
            one = decide(gallery, row["one"], settings)
            rules["5 jitters (today)"].append((five.name, truth))
            rules["5 jitters, again"].append((decide(gallery, row["again"], settings).name,
                                              truth))
            rules["1 jitter"].append((one.name, truth))
            for margin in MARGINS:
                again = close(gallery, one, settings, margin)
                twice[margin] += again
                rules[f"adaptive, margin {margin:.2f}"].append(((five if again else one).name,
                                                               truth))
            if split:
                named = None if row["split"] is None else decide(gallery, row["split"],
                                                                 settings).name
                rules["1 jitter, split detection"].append((named, truth))
    report(rules, twice, probes)


def report(rules, twice, probes) -> None:
    today = [given for given, _ in rules["5 jitters (today)"]]
    print(f"{'rule':<28} {'identified':>10} {'false acc.':>10} {'wrong':>7}"
          f" {'same name as today':>19} {'encoded twice':>14}")
    for label, decisions in rules.items():
        rates = openset.rates(decisions)
        same = sum(given == old for (given, _), old in zip(decisions, today)) / len(today)
        margin = float(label.rsplit(" ", 1)[1]) if label.startswith("adaptive") else None
        extra = f"{twice[margin] / probes:>13.1%}" if margin is not None else f"{'':>13}"
        print(f"{label:<28} {rates.identified:>10.1%} {rates.false_accepts:>10.1%}"
              f" {rates.wrong_names:>7.1%} {same:>19.1%} {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path, nargs="?", default=FACES / "lfw_dev")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--split", action="store_true", help="also detect with the HOG split")
    parser.add_argument("--gallery", type=int, default=200, help="people enrolled (real ones:"
                        " the known and lfw_dev's singles)")
    args = parser.parse_args()
    settings = Settings.from_env()
    people, rows = load(args.tree, args.workers, args.split)
    runs = trials(people, rows)
    print(f"{args.tree.name}: {sum(len(r) for r in people.values())} photos of {len(people)}"
          f" people; 1 enrolled per known person ({settings.enroll_jitters} jitters), galleries"
          f" of {args.gallery}; {len(runs)} trials, {sum(len(t.probes) for t in runs)} probes;"
          f" tolerance {settings.tolerance}, ratio {settings.ratio}, {settings.jitters}"
          f" jitters\n")
    evaluate(people, rows, settings, args.split, args.gallery)


if __name__ == "__main__":
    main()
