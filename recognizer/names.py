"""People's names: what the service accepts as a name, and its one canonical form. Names are
only ever data: none becomes a path."""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from .errors import InvalidParameter

NAME_PATTERN = re.compile(r"[\w .'\-]{1,100}")


def check_name(name: object, field: str = "name") -> str:
    """Return the name NFC-normalised: 1-100 letters, digits, spaces and ._'- with at least one
    letter or digit, and no space at either end.

    :param field: the parameter named in the error
    :raises InvalidParameter: anything else (``invalid_name``)
    """
    if not isinstance(name, str):
        raise InvalidParameter(field, "invalid_name")
    name = unicodedata.normalize("NFC", name)
    if (not NAME_PATTERN.fullmatch(name) or name != name.strip()
            or not any(ch.isalnum() for ch in name)):
        raise InvalidParameter(field, "invalid_name")
    return name


def check_names(names: np.ndarray, field: str) -> list[str]:
    """Check every name of an array; an invalid one is refused by its row, not echoed.

    :raises InvalidParameter: ``invalid_name: names[i]`` for the first invalid row
    """
    checked = []
    for row, name in enumerate(names.tolist()):
        try:
            checked.append(check_name(name))
        except InvalidParameter:
            raise InvalidParameter(field, f"invalid_name: names[{row}]") from None
    return checked
