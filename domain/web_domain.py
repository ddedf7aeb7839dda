"""The web domain is an account's natural key, so every entry point normalises it the same way."""

import re

import idna

from domain.errors import InvalidValue

# Matched whole (fullmatch): `$` alone would also take a label that ends in a line break.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def normalise_domain(value: str) -> str:
    """`WWW.Acme.COM.` and `acme.com` name the same company; schemes and paths are refused."""
    domain = value.strip().lower()
    if not domain.isascii():
        # An international name is kept in the ASCII form DNS uses (münchen.de is
        # xn--mnchen-3ya.de), so both spellings name the same company. IDNA 2008 as browsers
        # apply it (UTS 46, non-transitional): Python's own "idna" codec is IDNA 2003, which
        # turns straße.de into strasse.de, another domain and often another company.
        try:
            domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
        except UnicodeError:  # idna.IDNAError is one
            domain = ""  # refused below
    domain = domain.rstrip(".")  # after mapping, which makes an ideographic full stop a dot
    if not all(_canonical_a_label(label) for label in domain.split(".")):
        domain = ""  # refused below
    if domain.startswith("www."):
        domain = domain[4:]
    labels = domain.split(".")
    if (
        len(domain) > 253
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidValue("domain", f"{value!r} is not a web domain such as 'acme.com'.")
    return domain


def mailbox_key(email: str) -> str:
    """An address as two contacts' are compared: in any case, and with its domain in the ASCII
    form DNS uses, so ann@münchen.de and ann@xn--mnchen-3ya.de are one mailbox."""
    local, _, host = email.rpartition("@")
    try:
        host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except UnicodeError:  # idna.IDNAError is one; an address the contact's check let through
        pass
    return f"{local}@{host}".lower()


def _canonical_a_label(label: str) -> bool:
    """Whether a label is no A-label (`xn--…`), or the one spelling of its name: xn--mnchen-3ya
    is münchen, while xn--mnchen-psa (mÜnchen) and xn--munchen-gie (u and a combining
    diaeresis) spell names that map to münchen, and would give one company a second key. A
    name IDNA 2008 refuses but UTS 46 keeps (xn--n3h, ☃) stays accepted in its ASCII form."""
    if not label.startswith("xn--"):
        return True
    try:
        name = label[4:].encode("ascii").decode("punycode")
        mapped = idna.uts46_remap(name, std3_rules=True, transitional=False)
    except (UnicodeError, idna.IDNAError):
        return False
    return not name.isascii() and mapped == name and name.encode("punycode") == label[4:].encode()
