"""The base of the records operations return."""

from __future__ import annotations

import dataclasses


class Record:
    """A dataclass that hug's JSON output writes as its fields: hug calls
    ``__native_types__`` on what it cannot serialise itself."""

    def __native_types__(self) -> dict:
        return dataclasses.asdict(self)
