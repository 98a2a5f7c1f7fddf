"""The faiss index that searches large galleries: an inverted-file index with about
sqrt(people) lists, holding each centroid in float16 (``IndexIVFScalarQuantizer``, ``QT_fp16``),
with a hashtable direct map so that a person's entry is replaced in O(1).

Why this kind: unlike HNSW, an IVF index removes entries; unlike PQ fast-scan, it removes them
through the direct map; float16 halves the bytes each query scans against float32
(IndexIVFFlat), about 1.7x faster at equal recall. faiss is imported only when an index is
built: small galleries never load it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .limits import ENCODING_SIZE

# Inverted lists searched per query. About 1 in 8 of the lists at a million people (1,000
# lists): recall@1 >= 0.99 there; nearer all of them, so nearer exact, for smaller galleries.
# Read at every search: changing it trades latency for recall without a rebuild.
PROBES = 128
# Candidates fetched from the index beyond the k asked for, re-ranked in float64: float16
# distances misorder near neighbours of a stranger (many fillers lie about equally far).
MARGIN = 16
# k-means training: points sampled per list (faiss wants at least 39) and iterations.
_TRAIN_PER_LIST = 40
_TRAIN_ITERATIONS = 10


def ivf_lists(people: int) -> int:
    """How many inverted lists an index over this many people has: about sqrt(people), so
    that the lists are about as long as they are many; fewer when there are too few people to
    train that many."""
    return max(1, min(round(math.sqrt(people)), people // _TRAIN_PER_LIST))


def build(vectors: np.ndarray):
    """A trained float16 IVF index holding vectors[i] as id i, with a hashtable direct map."""
    import faiss  # only large galleries pay for it

    people = len(vectors)
    lists = ivf_lists(people)
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(ENCODING_SIZE), ENCODING_SIZE,
                                          lists, faiss.ScalarQuantizer.QT_fp16)
    index.cp.niter, index.cp.min_points_per_centroid = _TRAIN_ITERATIONS, 1
    sample = np.random.default_rng(0).choice(people, min(people, lists * _TRAIN_PER_LIST),
                                             replace=False)
    index.train(vectors[np.sort(sample)])
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    index.add_with_ids(vectors, np.arange(people, dtype=np.int64))
    return index


@functools.lru_cache(maxsize=16)
def probing(lists: int):
    """faiss search parameters that probe this many lists (at most the index's own)."""
    import faiss

    return faiss.SearchParametersIVF(nprobe=lists)


def nbytes(index) -> int:
    """Approximate bytes of an IVF index: codes, ids, the lists' centroids, the direct map."""
    if index is None:
        return 0
    entry = index.code_size + 8 + 40  # the vector, its id, a hashtable node and bucket
    return index.ntotal * entry + index.nlist * (ENCODING_SIZE * 4 + 64)
