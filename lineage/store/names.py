"""Names and identities as people type them.

One length limit for every name and actor on both databases (SQLite would accept any length,
PostgreSQL's ``varchar(200)`` would fail mid-write). Identities compare after Unicode NFKC
normalisation, trimmed and case-folded, so ``"Engineer "`` and ``"engineer"`` are one person;
control, format and zero-width characters are refused outright: they make two names that look
alike compare different.
"""

import unicodedata

from lineage.errors import BadInputError

MAX_NAME = 200


def check_name(value: str, what: str) -> str:
    """``value`` trimmed, or a one-line BadInputError: empty, too long, or holding a control or
    invisible character."""
    text = str(value).strip()
    if not text:
        raise BadInputError(f"{what} may not be empty")
    if len(text) > MAX_NAME:
        raise BadInputError(f"{what} {text[:40]!r}... is {len(text)} characters long: at most "
                            f"{MAX_NAME}")
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise BadInputError(f"{what} {text!r} holds the invisible or control character "
                                f"U+{ord(ch):04X}: type the name in plain characters")
    return text


def identity(name: str) -> str:
    """The form two names are compared in: NFKC, trimmed, case-folded."""
    return unicodedata.normalize("NFKC", str(name)).strip().casefold()
