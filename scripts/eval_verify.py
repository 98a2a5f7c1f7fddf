"""Measure 1:1 verification on lfw_dev's pairs, with the service's pipeline and defaults.

Every photo's labelled face (the one nearest the centre) is encoded as /verify encodes it (the
recognition jitters). Pairs of photos of the same person and of different people give the
distance distributions; the threshold is the distance that 1% of the different-person pairs
reach (a 1% false-match rate), and the true-match rate is the share of same-person pairs within
it. The name mode (a photo against an enrolled person's centroid, the mean of their other
photos) gets its own threshold the same way: centroids sit nearer every face than single photos
do. ``--fit`` fits the probability (scikit-learn's isotonic regression of "same person" on the
distance, the two kinds of pair weighted equally, read off at every 0.02 of distance) and
prints the constants for ``verification.THRESHOLD``, ``PERSON_THRESHOLD`` and
``PROBABILITY_TABLE``. ``--cache FILE`` keeps the encodings between runs. It also checks the name mode: a photo
against the centroid of the person's other photos, and against every other person's.

    .venv/bin/python scripts/eval_verify.py [TREE] [--fmr 0.01] [--fit] [--workers 2]
                                            [--cache encodings.npz]
"""

import argparse
import itertools
import os
from pathlib import Path

import numpy as np

from recognizer import openset, verification
from recognizer.testing import FACES


def pairs(people: dict[str, list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(distances of same-person pairs, distances of different-person pairs)."""
    names = [name for name, rows in people.items() for _ in rows]
    matrix = np.array([row for rows in people.values() for row in rows])
    squared = (matrix * matrix).sum(axis=1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None] - 2 * matrix @ matrix.T, 0))
    upper = np.triu_indices(len(matrix), 1)
    same = (np.array(names)[:, None] == np.array(names)[None])[upper]
    return distances[upper][same], distances[upper][~same]


def centroid_pairs(people: dict[str, list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Each photo of a person with 2+ photos against the centroid of their other photos
    (same), and against the centroid of every other such person (different)."""
    several = {name: np.array(rows) for name, rows in people.items() if len(rows) > 1}
    centroids = {name: rows.mean(axis=0) for name, rows in several.items()}
    same, different = [], []
    for name, rows in several.items():
        for index, row in enumerate(rows):
            own = np.delete(rows, index, axis=0).mean(axis=0)
            same.append(np.linalg.norm(row - own))
            different += [np.linalg.norm(row - centroid) for other, centroid in centroids.items()
                          if other != name]
    return np.array(same), np.array(different)


def load(tree: Path, workers: int, cache: Path | None) -> dict[str, list[np.ndarray]]:
    """{person: [probe encoding, ...]}, from the cache when it has them."""
    if cache is not None and cache.exists():
        saved = np.load(cache, allow_pickle=False)
        people: dict[str, list[np.ndarray]] = {}
        for name, row in zip(saved["names"].tolist(), saved["encodings"], strict=True):
            people.setdefault(name, []).append(row)
        return people
    loaded = openset.load_tree(tree, workers)
    people = {name: [probe for _, probe, _ in rows if probe is not None]
              for name, rows in loaded.items()}
    people = {name: rows for name, rows in people.items() if rows}
    if cache is not None:
        names = [name for name, rows in people.items() for _ in rows]
        np.savez(cache, names=np.array(names),
                 encodings=np.array([row for rows in people.values() for row in rows]))
    return people


def report(label: str, same: np.ndarray, different: np.ndarray, threshold: float) -> None:
    print(f"{label:<28} {len(same):>6} same {len(different):>8} different   at {threshold:.3f}:"
          f" true matches {np.mean(same <= threshold):6.1%},"
          f" false matches {np.mean(different <= threshold):6.2%}")


def fit(same: np.ndarray, different: np.ndarray) -> list[tuple[float, float]]:
    """(distance, probability) every 0.02 from 0.3 to 0.9: isotonic, then the table."""
    from sklearn.isotonic import IsotonicRegression

    distances = np.concatenate([same, different])
    truth = np.concatenate([np.ones(len(same)), np.zeros(len(different))])
    weights = np.concatenate([np.full(len(same), 0.5 / len(same)),
                              np.full(len(different), 0.5 / len(different))])
    model = IsotonicRegression(increasing=False, out_of_bounds="clip", y_min=0, y_max=1)
    model.fit(distances, truth, sample_weight=weights)
    grid = np.round(np.arange(0.30, 0.901, 0.02), 2)
    return [(float(d), round(float(p), 3)) for d, p in zip(grid, model.predict(grid))]


def calibration(same: np.ndarray, different: np.ndarray) -> None:
    """Reliability of the probability, with the kinds weighted equally (as fitted)."""
    weights = np.concatenate([np.full(len(same), 0.5 / len(same)),
                              np.full(len(different), 0.5 / len(different))])
    distances = np.concatenate([same, different])
    truth = np.concatenate([np.ones(len(same)), np.zeros(len(different))])
    estimated = np.array([verification.probability(d) for d in distances])
    print("probability against how often pairs were the same person (kinds weighted equally)")
    for low, high in itertools.pairwise((0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0001)):
        inside = (estimated >= low) & (estimated < high)
        if weights[inside].sum() > 0:
            share = weights[inside] @ truth[inside] / weights[inside].sum()
            mean = weights[inside] @ estimated[inside] / weights[inside].sum()
            print(f"  {low:.1f}-{min(high, 1):.1f}: {inside.sum():>6} pairs, mean {mean:.3f},"
                  f" same person {share:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path, nargs="?", default=FACES / "lfw_dev")
    parser.add_argument("--fmr", type=float, default=0.01, help="false-match rate to reach")
    parser.add_argument("--fit", action="store_true", help="refit the threshold and model")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--cache", type=Path, help="an .npz to keep the encodings in")
    args = parser.parse_args()
    people = load(args.tree, args.workers, args.cache)
    same, different = pairs(people)
    person_same, person_different = centroid_pairs(people)
    threshold = float(np.quantile(different, args.fmr))
    person_threshold = float(np.quantile(person_different, args.fmr))
    print(f"{args.tree.name}: {sum(map(len, people.values()))} faces of {len(people)} people\n")
    report(f"pairs, at {args.fmr:.0%} false matches", same, different, threshold)
    report("pairs, at the service's", same, different, verification.THRESHOLD)
    report(f"centroids, at {args.fmr:.0%} false matches", person_same, person_different,
           person_threshold)
    report("centroids, at the service's", person_same, person_different,
           verification.PERSON_THRESHOLD)
    calibration(same, different)
    if args.fit:
        table = fit(same, different)
        print(f"\nTHRESHOLD = {threshold:.2f}\nPERSON_THRESHOLD = {person_threshold:.2f}"
              f"\nPROBABILITY_TABLE = {tuple(table)}")


if __name__ == "__main__":
    main()
