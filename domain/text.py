"""How free text (names, industries, regions) is compared: sorted, searched, grouped, matched."""

from __future__ import annotations

import re
import unicodedata


def fold(text: str) -> str:
    """`text` as it is compared: whatever its letter case, whichever way its accents are
    encoded (é as one code point or as e and a combining accent), and with the Turkish
    capital İ as the i it is typed as. İ lower-cases to an i and a combining dot above (the
    i's own dot, so a reader sees no accent), which would keep `istanbul` from `İstanbul`."""
    folded = unicodedata.normalize("NFD", text.casefold()).replace("i\u0307", "i")
    return unicodedata.normalize("NFC", folded)


# The marks NFD splits off Latin, Greek and Cyrillic letters (acute, grave, diaeresis, cedilla,
# ring, caron, …); the marks of other scripts are part of their letters and are kept.
ACCENTS = re.compile("[\u0300-\u036f]")
# Letters whose stroke is not a mark NFD splits off, read as their plain letter.
PLAIN = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "æ": "ae", "œ": "oe"})


def search_key(text: str) -> str:
    """`text` as search compares it: folded, and without accents, so that `cafe` finds Café,
    `lodz` Łódź and `Cafe` café, as a search box does."""
    plain = ACCENTS.sub("", unicodedata.normalize("NFD", fold(text))).translate(PLAIN)
    return unicodedata.normalize("NFC", plain)


def sort_key(text: str) -> str:
    """`text` as names are sorted: by its letters without their accents first, so that Ähre
    comes among the A's and Łódź among the L's, as the Unicode collation's default order has
    them and a German, French or Polish reader looks for them (not after Z); then with them,
    so that Cafe comes before Café and a name's place does not depend on which came first;
    whatever the letter case. The two parts are joined by U+0001, below every character a
    name may hold: `Cafe` comes before `Cafeteria`."""
    return f"{search_key(text)}\x01{fold(text)}"
