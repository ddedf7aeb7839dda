"""The web domain is an account's natural key, so every entry point normalises it the same way;
a contact's e-mail address is checked and kept by the same rules for its domain."""

import re

import idna

from domain.errors import InvalidValue

# Matched whole (fullmatch): `$` alone would also take a label that ends in a line break.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# The name of an address, unquoted: RFC 5322's atext and dots, and any letter beyond ASCII
# (RFC 6531); the contracts have already refused white space and control characters.
_LOCAL_PART = re.compile(r"(?!\.)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+(?<!\.)")


def normalise_domain(value: str) -> str:
    """`WWW.Acme.COM.` and `acme.com` name the same company; schemes and paths are refused."""
    domain = _ascii_host(value)
    if domain.startswith("www."):
        domain = domain[4:]
    if not _is_host_name(domain):
        raise InvalidValue("domain", f"{value!r} is not a web domain such as 'acme.com'.")
    return domain


def normalise_email(value: str) -> str:
    """An address as a contact keeps it: its domain lower-cased and without a final dot (in
    its own script: münchen.de, not xn--mnchen-3ya.de), its name as given. Refused: a name
    with a dot at either end or two in a row, or a character an address's name cannot hold
    unquoted (RFC 5322's dot-atom; letters of any script allowed, RFC 6531), and a domain
    that is not a host name (an address such as `[127.0.0.1]` included)."""
    local, _, host = value.strip().rpartition("@")
    ascii_host = _ascii_host(host)
    if not (
        _LOCAL_PART.fullmatch(local)
        and len(local.encode()) <= 64
        and ".." not in local
        and _is_host_name(ascii_host)
    ):
        raise InvalidValue("email", f"{value!r} is not an e-mail address such as 'ann@acme.com'.")
    try:
        host = idna.decode(ascii_host)
    except UnicodeError:  # idna.IDNAError is one: a name UTS 46 keeps, IDNA 2008 refuses (☃)
        host = ascii_host
    return f"{local}@{host}"


def mailbox_key(email: str) -> str:
    """An address as two contacts' are compared: in any case, and with its domain in the ASCII
    form DNS uses, so ann@münchen.de and ann@xn--mnchen-3ya.de are one mailbox."""
    local, _, host = email.rpartition("@")
    # A final dot names the same host: an address stored before contacts' addresses were
    # normalised may still end with one.
    return f"{local}@{_ascii_host(host) or host.rstrip('.')}".lower()


def _ascii_host(value: str) -> str:
    """A host name in the ASCII form DNS uses, lower-cased, without a final dot; "" when it
    cannot be put in that form."""
    host = value.strip().lower()
    if not host.isascii():
        # An international name is kept in the ASCII form DNS uses (münchen.de is
        # xn--mnchen-3ya.de), so both spellings name the same company. IDNA 2008 as browsers
        # apply it (UTS 46, non-transitional): Python's own "idna" codec is IDNA 2003, which
        # turns straße.de into strasse.de, another domain and often another company.
        try:
            host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
        except UnicodeError:  # idna.IDNAError is one
            return ""
    host = host.rstrip(".")  # after mapping, which makes an ideographic full stop a dot
    return host if all(_canonical_a_label(label) for label in host.split(".")) else ""


def _is_host_name(host: str) -> bool:
    """Two labels or more of letters, digits and inner hyphens, the last not a number: a
    name, not an address such as 127.0.0.1."""
    labels = host.split(".")
    return (
        len(host) <= 253
        and len(labels) >= 2
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


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
