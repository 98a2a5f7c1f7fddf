"""Measure open-set identification on a folder-per-person tree, with the service's defaults.

People with more photos than are enrolled are known: ``--enroll`` photos each are enrolled and
the rest are probes that should be named. People with one photo are strangers who should be
answered as unknown. Each split enrols a different photo of every known person. In each photo
the face nearest the centre is the labelled one (as in LFW). Faces are found and encoded exactly
as the service does it (FACEREC_* settings apply): enrolment photos with the enrolment jitters,
probes with the recognition jitters.

Prints the identification rate, the false-accept rate and wrong names for the defaults, for the
face_recognition tutorial's rule and for a table of tolerances and ratios, all from the same
encodings; then how well ``confidence`` is calibrated. ``--fit`` refits the confidence model
(scikit-learn's logistic regression) and prints the constants for ``matching.CONFIDENCE_MODEL``.

    .venv/bin/python scripts/eval_openset.py [TREE] [--enroll 1] [--fit] [--workers 2]
"""

import argparse
import os
from collections import Counter
from pathlib import Path

import numpy as np

from recognizer import Settings, openset
from recognizer.gallery import Gallery
from recognizer.matching import best_match, ratio_to_second
from recognizer.testing import FACES

TOLERANCES = (0.45, 0.48, 0.5, 0.52, 0.55, 0.6)
RATIOS = (0.78, 0.82, 0.86, 0.9, 1.0)
BINS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0001)


def report_geometry(people: dict[str, list[tuple]]) -> None:
    encodings = [(name, row[0]) for name, rows in people.items() for row in rows
                 if row[0] is not None]
    names = np.array([name for name, _ in encodings])
    matrix = np.array([encoding for _, encoding in encodings])
    distances = np.linalg.norm(matrix[:, None] - matrix[None], axis=2)
    upper = np.triu_indices(len(matrix), 1)
    same = (names[:, None] == names[None])[upper]
    print(f"pairs of different people: {(~same).sum()}, median distance"
          f" {np.median(distances[upper][~same]):.3f}; pairs of the same person: {same.sum()},"
          f" 99th percentile {np.percentile(distances[upper][same], 99):.3f}\n")


def line(label: str, rates: openset.Rates) -> str:
    return (f"{label:<40} {rates.identified:>10.1%} {rates.false_accepts:>13.1%}"
            f" {rates.wrong_names:>11.1%}")


def report_rules(splits: list[openset.Split], settings: Settings) -> None:
    print(f"{'rule':<40} {'identified':>10} {'false accepts':>13} {'wrong names':>11}")
    defaults = openset.evaluate(splits, settings.tolerance, settings.ratio)
    print(line(f"service (tolerance {settings.tolerance}, ratio {settings.ratio})", defaults))
    print(line("tutorial: first face within 0.6", openset.evaluate_tutorial(splits)))
    print(line("nearest person within 0.6, no ratio", openset.evaluate(splits, 0.6, 1.0)))
    print("\nidentified / false accepts by tolerance (rows) and ratio (columns; 1.00 = no ratio)")
    print("        " + "".join(f"{ratio:>16.2f}" for ratio in RATIOS))
    for tolerance in TOLERANCES:
        cells = [openset.evaluate(splits, tolerance, ratio) for ratio in RATIOS]
        print(f"  {tolerance:<6}" + "".join(
            f"{cell.identified:>9.1%} /{cell.false_accepts:>5.1%}" for cell in cells))


def decisions(splits: list[openset.Split], settings: Settings) -> list[tuple]:
    """(distance, ratio, confidence, named correctly) for every probe the defaults name, and
    for every probe at all when tolerance and ratio are opened up (for fitting)."""
    rows = []
    for split in splits:
        gallery = Gallery.from_encodings(split.enrolled)
        for encoding, truth in split.probes:
            if encoding is None or len(gallery) < 2:
                continue
            named = best_match(encoding, gallery, settings.tolerance, settings.ratio, top_k=2)
            top, second = named.candidates[0], named.candidates[1]
            relative = ratio_to_second(top.distance, second.distance)
            rows.append((top.distance, relative, named.confidence, top.name == truth,
                         named.name is not None))
    return rows


def report_calibration(rows: list[tuple]) -> None:
    named = [row for row in rows if row[4]]
    print(f"\nconfidence of the {len(named)} named probes against how often the name was right")
    confidences = np.array([row[2] for row in named])
    right = np.array([row[3] for row in named])
    for low, high in zip(BINS, BINS[1:]):
        inside = (confidences >= low) & (confidences < high)
        if inside.any():
            print(f"  {low:.2f}-{min(high, 1):.2f}: {inside.sum():>5} named, mean confidence"
                  f" {confidences[inside].mean():.3f}, right {right[inside].mean():.1%}")


def fit_confidence(rows: list[tuple]) -> None:
    from sklearn.linear_model import LogisticRegression

    features = np.array([[row[0], row[1]] for row in rows])
    right = np.array([row[3] for row in rows])
    model = LogisticRegression(C=100.0).fit(features, right)
    print(f"\nCONFIDENCE_MODEL = ({model.intercept_[0]:.2f}, {model.coef_[0][0]:.2f},"
          f" {model.coef_[0][1]:.2f})  # fitted on {len(rows)} probes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path, nargs="?", default=FACES / "lfw_dev")
    parser.add_argument("--enroll", type=int, default=1, help="photos enrolled per person")
    parser.add_argument("--fit", action="store_true", help="refit the confidence model")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    settings = Settings.from_env()
    people = openset.load_tree(args.tree, args.workers)
    problems = Counter(p for rows in people.values() for _, _, found in rows for p in found)
    splits = openset.protocol(people, args.enroll)
    print(f"{args.tree.name}: {sum(len(r) for r in people.values())} photos of {len(people)}"
          f" people; {args.enroll} enrolled per known person; {len(splits)} splits;"
          f" {len(splits[0].probes)} probes per split")
    print(f"quality gate on every photo: {dict(sorted(problems.items())) or 'no problems'}"
          " (the photos are used regardless)")
    report_geometry(people)
    report_rules(splits, settings)
    report_calibration(decisions(splits, settings))
    if args.fit:
        pooled = splits + openset.protocol(people, args.enroll + 1)
        fit_confidence(decisions(pooled, Settings(tolerance=1.0, ratio=1.0)))


if __name__ == "__main__":
    main()
