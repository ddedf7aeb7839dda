"""How free text (names, industries, regions) is compared: sorted, searched, grouped, matched."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """`text` as it is compared: whatever its letter case, whichever way its accents are
    encoded (é as one code point or as e and a combining accent), and with the Turkish
    capital İ as the i it is typed as. İ lower-cases to an i and a combining dot above (the
    i's own dot, so a reader sees no accent), which would keep `istanbul` from `İstanbul`."""
    folded = unicodedata.normalize("NFD", text.casefold()).replace("i\u0307", "i")
    return unicodedata.normalize("NFC", folded)
