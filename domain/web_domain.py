"""The web domain is an account's natural key, so every entry point normalises it the same way."""

import re

from domain.errors import InvalidValue

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_domain(value: str) -> str:
    """`WWW.Acme.COM.` and `acme.com` name the same company; schemes and paths are refused."""
    domain = value.strip().lower().rstrip(".")
    if not domain.isascii():
        # An international name is kept in the ASCII form DNS uses (münchen.de is
        # xn--mnchen-3ya.de), so both spellings name the same company.
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            domain = ""  # refused below
    if domain.startswith("www."):
        domain = domain[4:]
    labels = domain.split(".")
    if (
        len(domain) > 253
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidValue("domain", f"{value!r} is not a web domain such as 'acme.com'.")
    return domain
