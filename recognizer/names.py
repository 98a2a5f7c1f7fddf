"""People's names: what the service accepts as a name, and its one canonical form. Names are
only ever data: none becomes a path."""

from __future__ import annotations

import unicodedata

import numpy as np

from .errors import InvalidParameter

MAX_LENGTH = 100
# Besides letters, marks and digits of any script, and spaces: the punctuation names carry
# (O'Brien, O’Brien, Jean-Luc, J. R. R., Martin Luther King, Jr., snake_case handles).
PUNCTUATION = frozenset(" .'’-,_")
RULE = (f"1 to {MAX_LENGTH} letters, digits, spaces and the marks . ' ’ - , _ with at least one"
        " letter or digit and no space at either end; no control, format or direction"
        " characters")


def check_name(name: object, field: str = "name") -> str:
    """Return the name NFC-normalised, if it keeps to :data:`RULE`.

    Letters and digits are those of any script (with its combining marks); control, format
    (zero-width, direction marks and overrides) and unassigned characters are refused.

    :param field: the parameter named in the error
    :raises InvalidParameter: anything else (``invalid_name``, with the rule as its detail)
    """
    if not isinstance(name, str):
        raise InvalidParameter(field, "invalid_name", RULE)
    name = unicodedata.normalize("NFC", name)
    categories = [unicodedata.category(ch)[0] for ch in name]
    if (not 1 <= len(name) <= MAX_LENGTH or name != name.strip(" ")
            or any(kind not in "LMN" and ch not in PUNCTUATION
                   for ch, kind in zip(name, categories, strict=True))
            or not any(kind in "LN" for kind in categories)):
        raise InvalidParameter(field, "invalid_name", RULE)
    return name


def check_names(names: np.ndarray, field: str) -> list[str]:
    """Check every name of an array; an invalid one is refused by its row, not echoed.

    :raises InvalidParameter: ``invalid_name``, detail ``names[i]``, for the first invalid row
    """
    checked = []
    for row, name in enumerate(names.tolist()):
        try:
            checked.append(check_name(name))
        except InvalidParameter:
            raise InvalidParameter(field, "invalid_name", f"names[{row}]") from None
    return checked
