"""HTTP bodies of the account ledger: what frontends send and what they get back.

Request bodies forbid unknown fields and are decoded strictly (no "5" for 5), so a typo in a
field name or a wrong type is refused instead of silently ignored. New response fields are
added with defaults; an existing field never changes its type.
"""

import re
import unicodedata
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal
from uuid import UUID

import pycountry
from msgspec import UNSET, Meta, Struct, UnsetType, inspect, structs
from msgspec.structs import force_setattr

AbmStageName = Literal[
    "identified", "prioritized", "outreach", "warm_up", "won", "lost", "excluded"
]
FunnelStateName = Literal["see", "think", "do", "care"]
ScreeningOutcomeName = Literal["qualified", "excluded"]
BuyingRoleName = Literal["economic", "technical", "end_user"]
DecisionPowerName = Literal["decision_maker", "influencer"]
# The reaction to outreach; `none` is recorded by the `no_response` fact, not as a response.
ReactionName = Literal["positive", "neutral", "negative", "none"]
ResponseReactionName = Literal["positive", "neutral", "negative"]
OutreachKind = Literal["material_sent", "response_received", "no_response", "meeting_held"]
DealOutcomeName = Literal["won", "lost"]

# Characters no text may hold: control characters (a PostgreSQL text column cannot even store
# NUL, which would stop the read models) and the bidirectional overrides and isolates, which
# make a text display other than it reads.
_FORBIDDEN = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
# What a reader cannot see: white space, the zero-width and format characters, the fillers
# that render blank (Hangul's, the braille blank) and the marks that only modify the character
# before them (the combining grapheme joiner, variation and free variation selectors). Only
# characters of the Basic Multilingual Plane: an ECMAScript pattern without its `u` flag, as
# OpenAPI readers use, cannot name a range of the others.
_INVISIBLE = (
    r"\s\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    r"\u2060-\u2065\u206a-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0"
)
TRIMMED = "white space and invisible characters around it are dropped"  # Body.__post_init__
# msgspec searches a pattern with Python's `re`, OpenAPI readers with ECMAScript's: both read
# these alike. `$(?![\s\S])` is the end of the text (Python's `$` also matches before a final
# newline), and the look-ahead for a visible character keeps the match linear in the length.
# A line holds no line break or tab, Unicode's line and paragraph separators included.
LINE_PATTERN = (
    rf"^(?=[\s\S]*?[^{_FORBIDDEN}{_INVISIBLE}])[^{_FORBIDDEN}\t\n\r\u2028\u2029]*$(?![\s\S])"
)
TEXT_PATTERN = rf"^(?=[\s\S]*?[^{_FORBIDDEN}{_INVISIBLE}])[^{_FORBIDDEN}]*$(?![\s\S])"
NOTE_PATTERN = rf"^[^{_FORBIDDEN}]*$(?![\s\S])"
# White space around an address is dropped like any text's (`Body`); inside it, none, and no
# invisible character: "\u200b@\u200b.\u200b" reads as nothing.
_ADDRESS = rf"[^@{_FORBIDDEN}{_INVISIBLE}]+"
_SPACES = r"[^\S\t\n\r\u2028\u2029]*"  # around a name too: white space, but no line break
EMAIL_PATTERN = rf"^{_SPACES}{_ADDRESS}@{_ADDRESS}\.{_ADDRESS}{_SPACES}$(?![\s\S])"
# What each pattern asks, in words, for the answer that refuses a text.
TEXT_RULES = {
    LINE_PATTERN: "one line of text with a visible character and no control or "
    "bidirectional override characters",
    TEXT_PATTERN: "text with a visible character and no control characters (line breaks "
    "and tabs allowed) or bidirectional overrides",
    NOTE_PATTERN: "text with no control characters (line breaks and tabs allowed) or "
    "bidirectional overrides",
    EMAIL_PATTERN: "an e-mail address, name@domain.tld, with no spaces, invisible or control "
    "characters (its name unquoted, its domain a host name, kept lower-cased without a final "
    "dot)",
}
Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=LINE_PATTERN,
        description=f"{TEXT_RULES[LINE_PATTERN]}; {TRIMMED}",
    ),
]
Note = Annotated[
    str, Meta(max_length=2000, pattern=NOTE_PATTERN, description=TEXT_RULES[NOTE_PATTERN])
]
# What a reason may be, in a body (`Reason`) or a query parameter (a removal's `?reason=`).
REASON_LIMITS: dict[str, Any] = {"min_length": 1, "max_length": 1000, "pattern": TEXT_PATTERN}
REASON_DESCRIPTION = f"Why the change is made: {TEXT_RULES[TEXT_PATTERN]}."
Reason = Annotated[str, Meta(**REASON_LIMITS, description=REASON_DESCRIPTION)]
Rating = Annotated[int, Meta(ge=1, le=5)]
# The codes ISO 4217 and ISO 3166-1 assign, from pycountry's copy of the ISO tables: a code
# of the right shape that names no currency or country ("XYZ", "XX") is refused, and so are
# the codes ISO 4217 keeps for no currency at all (XXX) and for tests (XTS).
NOT_CURRENCIES = {"XXX", "XTS"}
CURRENCY_CODES = tuple(
    sorted(c.alpha_3 for c in pycountry.currencies if c.alpha_3 not in NOT_CURRENCIES)
)
COUNTRY_CODES = tuple(sorted(c.alpha_2 for c in pycountry.countries))
CurrencyCode = Annotated[
    Literal[CURRENCY_CODES],  # type: ignore[valid-type]
    Meta(description="ISO 4217, e.g. EUR."),
]
CountryCode = Annotated[
    Literal[COUNTRY_CODES],  # type: ignore[valid-type]
    Meta(description="ISO 3166-1 alpha-2, e.g. DE."),
]
WebDomain = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=253,
        description="The company's web domain, e.g. acme.com; lower-cased, `www.` dropped, "
        "an international name kept in its ASCII form (münchen.de as xn--mnchen-3ya.de).",
    ),
]
Email = Annotated[
    str,
    Meta(
        max_length=254,
        pattern=EMAIL_PATTERN,
        description=f"{TEXT_RULES[EMAIL_PATTERN]}; {TRIMMED}",
    ),
]
Amount = Annotated[int, Meta(ge=0, le=10**15, description="Whole units of the currency.")]
# The largest version or log position a request may name: both stores keep 64-bit integers.
STORED_INT_MAX = 2**63 - 1


# The invisible characters a text may begin or end with (soft hyphen, zero-width spaces and
# joiners, word joiner, byte-order mark), as a pasted or exported text often does.
_INVISIBLE_AT_ENDS = "\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"


def trimmed(text: str) -> str:
    """The text without the white space and invisible characters around it, its accents
    composed (Unicode's NFC): é as one code point and as e with a combining accent read alike,
    so they are one text, and a correction that only encodes a name anew changes nothing."""
    while (shorter := text.strip().strip(_INVISIBLE_AT_ENDS)) != text:
        text = shorter
    return text if text.isascii() else unicodedata.normalize("NFC", text)


# A visible character, beyond the Basic Multilingual Plane too: the patterns cannot name the
# invisible characters there (the Egyptian, shorthand and musical format controls, and the
# whole block of tags and variation selectors, which Unicode keeps default-ignorable), so a text
# that needs a visible character is checked for one here.
_VISIBLE = re.compile(
    rf"[^{_FORBIDDEN}{_INVISIBLE}\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    r"\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


class Body(Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every command body (and of an object in one). Its text loses the white space
    and invisible characters around it, as a cell of an import does: "Acme ", "\ufeffAcme"
    and "Acme" are one name, which reads, sorts, and is searched and filtered alike; and its
    accents are composed (`trimmed`)."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, str):
                if (shorter := trimmed(value)) != value:
                    force_setattr(self, name, shorter)
                if not shorter and name in _optional(type(self)):
                    force_setattr(self, name, None)  # an empty note is no note
                    continue
                if value.isascii():
                    continue  # its pattern saw to it: no check beyond the BMP to make
            elif isinstance(value, list) and any(isinstance(v, str) for v in value):
                force_setattr(self, name, [trimmed(v) if isinstance(v, str) else v for v in value])
            else:
                continue
            if refused := invisible(type(self), name, value):
                json_name = _needs_visible(type(self))[name][0]
                raise ValueError(f"{refused} in field `{json_name}`")


def has_visible(text: str) -> bool:
    """Whether a reader sees any of `text`, whatever plane its characters are in."""
    return _VISIBLE.search(text) is not None


def invisible(body: type[Body], name: str, value: Any) -> str | None:
    """Why the text of field `name` (or an item of it), which its pattern took, is refused (in
    msgspec's words): it needs a visible character and has none beyond the BMP either; None
    when it is taken."""
    fields = _needs_visible(body)
    if name not in fields or not isinstance(value, str | list):
        return None
    # An ASCII text that passed its pattern has a visible character already.
    for text in [value] if isinstance(value, str) else value:
        if isinstance(text, str) and not text.isascii() and not has_visible(text):
            return f"Expected {fields[name][1]}"
    return None


@cache
def _optional(body: type[Body]) -> frozenset[str]:
    """The fields of `body` that may be left out, as None."""
    return frozenset(f.name for f in structs.fields(body) if f.default is None)


@cache
def _needs_visible(body: type[Body]) -> dict[str, tuple[str, str]]:
    """The fields of `body` whose text must show a character: their names as JSON has them,
    and their rule in words."""
    info = inspect.type_info(body)
    assert isinstance(info, inspect.StructType)
    return {
        f.name: (f.encode_name, TEXT_RULES[pattern])
        for f in info.fields
        if (pattern := _visible_pattern(f.type))
    }


def _visible_pattern(kind: inspect.Type) -> str | None:
    """The text pattern asking for a visible character that `kind` (or its items) has."""
    if isinstance(kind, inspect.Metadata | inspect.ListType):
        return _visible_pattern(kind.type if isinstance(kind, inspect.Metadata) else kind.item_type)
    if isinstance(kind, inspect.UnionType):
        return next(filter(None, map(_visible_pattern, kind.types)), None)
    if isinstance(kind, inspect.StrType) and kind.pattern in (LINE_PATTERN, TEXT_PATTERN):
        return kind.pattern
    return None


Headcount = Annotated[int, Meta(ge=1, le=10_000_000)]
GrowthRate = Annotated[float, Meta(ge=-100, le=100_000, description="Percent per year.")]
Source = Annotated[Name, Meta(description="Channel or referring partner.")]


class RegisterAccount(Body):
    name: Name
    domain: WebDomain
    industry: Name
    headcount: Headcount
    annual_revenue: Amount
    revenue_currency: CurrencyCode
    country: CountryCode
    growth_rate: GrowthRate
    source: Source
    region: Name | None = None
    reason: Reason | None = None


class CorrectFirmographics(Body):
    """The fields to change, and only those (a JSON merge patch): a field left out keeps its
    value, and `"region": null` removes the region. The web domain identifies the account and
    is never changed; sent, it must name the account's own."""

    name: Name | UnsetType = UNSET
    domain: WebDomain | UnsetType = UNSET
    industry: Name | UnsetType = UNSET
    headcount: Headcount | UnsetType = UNSET
    annual_revenue: Amount | UnsetType = UNSET
    revenue_currency: CurrencyCode | UnsetType = UNSET
    country: CountryCode | UnsetType = UNSET
    growth_rate: GrowthRate | UnsetType = UNSET
    source: Source | UnsetType = UNSET
    region: Name | None | UnsetType = UNSET
    reason: Reason | None = None


class ScreenAccount(Body):
    outcome: ScreeningOutcomeName
    criteria: Annotated[list[Name], Meta(max_length=50)] = []
    note: Note | None = None
    reason: Reason | None = None


class BantNotes(Body):
    budget: Note | None = None
    authority: Note | None = None
    need: Note | None = None
    timing: Note | None = None


class ScoreBant(Body):
    budget: Rating
    authority: Rating
    need: Rating
    timing: Rating
    notes: BantNotes | None = None
    reason: Reason | None = None


class AddContact(Body):
    name: Name
    title: Name
    buying_role: BuyingRoleName
    decision_power: DecisionPowerName
    email: Email | None = None
    reason: Reason | None = None


class CorrectContact(Body):
    """The contact's fields to change, and only those (a JSON merge patch): a field left out
    keeps its value, and `"email": null` removes the email."""

    name: Name | UnsetType = UNSET
    title: Name | UnsetType = UNSET
    buying_role: BuyingRoleName | UnsetType = UNSET
    decision_power: DecisionPowerName | UnsetType = UNSET
    email: Email | None | UnsetType = UNSET
    reason: Reason | None = None


class RemoveContact(Body):
    reason: Reason | None = None


def stated(body: Struct) -> dict[str, Any]:
    """The fields of a merge patch that were sent, by name (`reason` is not one of them)."""
    return {
        name: value
        for name in body.__struct_fields__
        if name != "reason" and (value := getattr(body, name)) is not UNSET
    }


class RecordOutreach(Body):
    """`material_sent` needs `material` and `channel`; `response_received` needs `reaction`;
    `no_response` (followed up, and no reaction came) and `meeting_held` need neither."""

    kind: OutreachKind
    material: Name | None = None
    channel: Name | None = None
    reaction: ResponseReactionName | None = None
    note: Note | None = None
    reason: Reason | None = None


class MoveStage(Body):
    to: AbmStageName
    reason: Reason | None = None


class MoveFunnel(Body):
    to: FunnelStateName
    reason: Reason | None = None


class CloseDeal(Body):
    """`won` may carry an amount with its currency; `lost` needs a reason."""

    outcome: DealOutcomeName
    amount: Amount | None = None
    currency: CurrencyCode | None = None
    reason: Reason | None = None


# Views --------------------------------------------------------------------------------------


class ScreeningView(Struct, frozen=True):
    outcome: ScreeningOutcomeName
    criteria: list[str]
    note: str | None
    screened_at: datetime
    policy_version: int | None = None
    overridden: bool = False


class BantView(Struct, frozen=True):
    budget: int
    authority: int
    need: int
    timing: int
    score: int
    notes: dict[str, str]
    scored_at: datetime


class ContactView(Struct, frozen=True):
    id: UUID
    name: str
    title: str
    email: str | None
    buying_role: BuyingRoleName
    decision_power: DecisionPowerName


class BuyingRolesView(Struct, frozen=True):
    covered: list[BuyingRoleName]
    missing: list[BuyingRoleName]


class OutreachView(Struct, frozen=True):
    materials_sent: int
    responses_received: int
    meetings_held: int
    last_reaction: ReactionName | None
    no_responses: int = 0


class DealView(Struct, frozen=True):
    outcome: DealOutcomeName
    closed_at: datetime
    amount: int | None
    currency: str | None
    reason: str | None


class AccountView(Struct, frozen=True):
    id: UUID
    version: int
    name: str
    domain: str
    industry: str
    headcount: int
    annual_revenue: int
    revenue_currency: str
    country: str
    region: str | None
    growth_rate: float
    source: str
    abm_stage: AbmStageName
    abm_stage_since: datetime
    funnel_state: FunnelStateName
    funnel_state_since: datetime
    screening: ScreeningView | None
    bant: BantView | None
    contacts: list[ContactView]
    buying_roles: BuyingRolesView
    outreach: OutreachView
    deal: DealView | None
    registered_at: datetime
    updated_at: datetime


class HistoryEvent(Struct, frozen=True):
    version: int
    type: str
    recorded_at: datetime
    actor: str
    reason: str | None
    request_id: str | None
    data: dict[str, Any]


class HistoryPage(Struct, frozen=True):
    account_id: UUID
    items: list[HistoryEvent]
    next_after: int | None = None


class ParameterError(Struct, frozen=True):
    """One parameter, header or body field of a request that could not be read."""

    field: str | None
    source: Annotated[str | None, Meta(description="path, query, header or body")]
    message: str


class Problem(Struct, frozen=True):
    """RFC 9457 problem details, as every error is answered. Besides the standard members, a
    problem carries those of its kind (its `type`) that apply; the others are left out."""

    status: int
    title: str
    detail: str | None = None
    type: str = "about:blank"
    rule: Annotated[
        str | None, Meta(description="The rule that refused the request (README.md, Rule names).")
    ] = None
    field: Annotated[str | None, Meta(description="The field or parameter at fault.")] = None
    errors: Annotated[
        list[ParameterError] | None,
        Meta(description="invalid-parameter: each parameter that could not be read."),
    ] = None
    account_id: Annotated[
        UUID | None,
        Meta(
            description="duplicate-domain: the account that holds the domain; chain-broken, "
            "event-unreadable: the account whose history is at fault."
        ),
    ] = None
    current_version: Annotated[
        int | None, Meta(description="stale-version: the account's version now (as its ETag).")
    ] = None
    first_bad_version: Annotated[
        int | None, Meta(description="chain-broken: the first version whose hash does not hold.")
    ] = None
    version: Annotated[
        int | None, Meta(description="event-unreadable: the version that cannot be read.")
    ] = None
    problems: Annotated[
        list[str] | None, Meta(description="checkpoint-altered: what does not match.")
    ] = None
