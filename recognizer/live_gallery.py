"""The gallery kept in step with the store: each process holds every enrolled face in memory,
and before each use reads only the faces that any process has changed since (the store's
change log), not the whole table."""

from __future__ import annotations

import threading

from .gallery import INDEX_ABOVE, Gallery
from .store import Store


class LiveGallery:
    """A :class:`Gallery` of one store's faces, brought up to date at each :meth:`current`."""

    def __init__(self, store: Store, index_above: int = INDEX_ABOVE) -> None:
        self.store = store
        self._gallery = Gallery(index_above=index_above)
        self._seen: int | None = None  # the last change applied; None: nothing read yet
        self._lock = threading.Lock()

    def current(self) -> Gallery:
        """The gallery with every change committed so far: one indexed read when nothing has
        changed, the changed faces otherwise (everything after falling behind the log)."""
        with self._lock:
            if self._seen is None or self.store.latest_change() != self._seen:
                changes = self.store.changes_after(self._seen)
                if changes.reset:
                    self._gallery.clear()
                    self._gallery.apply((), changes.rows)
                else:
                    self._gallery.apply(changes.changed, changes.rows)
                self._seen = changes.latest
            return self._gallery
