"""The face_recognition tutorial's way as a hug service: the baseline for scripts/bench_api.py.

Deliberately naive, nothing optimised: the image is fetched with requests and decoded by
face_recognition, faces are found with HOG (upsample 1) on the full-size image, each face is
encoded once (no jitter), the known encodings are read from disk again for every face, and a
face takes the name of the first known encoding within 0.6. Nothing in the product imports it.

    NAIVE_KNOWN=known.npz .venv/bin/hug -f scripts/naive_api.py -p 8001

NAIVE_KNOWN is an .npz file with ``names`` (strings) and ``encodings`` (N x 128), one row per
enrolled photo, as scripts/bench_api.py writes it with face_recognition.
"""

import io
import os

import face_recognition
import hug
import numpy as np
import requests

KNOWN = os.environ.get("NAIVE_KNOWN", "known.npz")


@hug.get("/recognize")
def recognize(image_url: hug.types.text):
    """Find every face in the image at image_url and name each after the first match."""
    response = requests.get(image_url, timeout=30)
    image = face_recognition.load_image_file(io.BytesIO(response.content))
    locations = face_recognition.face_locations(image)
    faces = []
    for location, encoding in zip(locations, face_recognition.face_encodings(image, locations)):
        with np.load(KNOWN) as known:
            matches = face_recognition.compare_faces(known["encodings"], encoding, tolerance=0.6)
            name = str(known["names"][matches.index(True)]) if True in matches else None
        faces.append({"name": name, "box": list(location)})
    return {"faces": faces}
