"""Interim gallery adapter (removed when recognizer/gallery.py lands)."""
import numpy as np

from ..matching import Gallery as Frozen


class Gallery:
    def __init__(self, index_above=None):
        self._faces, self._frozen = {}, None

    def apply(self, removed, added):
        for face_id in list(removed):
            self._faces.pop(face_id, None)
        for face_id, name, encoding in added:
            self._faces[face_id] = (name, np.asarray(encoding))
        self._frozen = None

    def clear(self):
        self._faces, self._frozen = {}, None

    def without(self, face_id=None):
        by_person = {}
        for key, (name, encoding) in self._faces.items():
            if key != face_id:
                by_person.setdefault(name, []).append(encoding)
        return Frozen.from_encodings(by_person)

    def _g(self):
        if self._frozen is None:
            self._frozen = self.without()
        return self._frozen

    def __getattr__(self, attribute):
        return getattr(self._g(), attribute)

    def __len__(self):
        return len(self._g())
