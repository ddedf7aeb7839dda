"""Registering a company: where an account starts, and how its web domain is written."""

from __future__ import annotations

import pytest

from domain.account import Account, account_id_for
from domain.errors import InvalidValue
from domain.vocabulary import AbmStage, BuyingRole, FunnelState
from domain.web_domain import normalise_domain
from tests.domain.scenario import ACME, ACTOR, AT, REQUEST, by, kinds


def test_a_registered_account_starts_identified_and_in_see():
    account = Account.register(ACME, by())

    assert account.stage is AbmStage.IDENTIFIED
    assert account.funnel is FunnelState.SEE
    assert account.stage_since == AT
    assert account.funnel_since == AT
    assert account.version == 1


def test_registration_records_the_firmographics_and_who_registered_it():
    account = Account.register(ACME, by(reason="from the fair list"))

    [event] = account.collect_events()
    assert kinds([event]) == ["registered"]
    assert account.firmographics == ACME
    assert (event.domain, event.headcount, event.annual_revenue) == ("acme.com", 420, 38_000_000)
    assert (event.actor, event.reason, event.request_id) == (ACTOR, "from the fair list", REQUEST)
    assert event.timestamp == AT


def test_a_registered_account_has_no_screening_rating_contacts_outreach_or_deal():
    account = Account.register(ACME, by())

    assert account.screening is None
    assert account.bant is None
    assert account.contacts == []
    assert (account.materials_sent, account.responses_received, account.meetings_held) == (0, 0, 0)
    assert account.deal is None
    assert account.buying_roles_missing == list(BuyingRole)


def test_the_account_id_is_derived_from_the_domain():
    account = Account.register(ACME, by())

    assert account.id == account_id_for("acme.com")
    assert account_id_for("acme.com") != account_id_for("acme.de")


@pytest.mark.parametrize(
    "written, normal",
    [
        ("acme.com", "acme.com"),
        ("ACME.Com", "acme.com"),
        ("www.acme.com", "acme.com"),
        ("WWW.ACME.COM", "acme.com"),
        ("acme.com.", "acme.com"),
        ("  www.Acme.com.  ", "acme.com"),
        ("shop.acme.co.uk", "shop.acme.co.uk"),
        ("my-company.io", "my-company.io"),
    ],
)
def test_a_domain_is_normalised_to_lower_case_without_www_or_trailing_dot(written, normal):
    assert normalise_domain(written) == normal


@pytest.mark.parametrize(
    "written, normal",
    [
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("WWW.München.DE", "xn--mnchen-3ya.de"),
        ("münchen.de。", "xn--mnchen-3ya.de"),  # an ideographic full stop is a dot
        ("ＡＣＭＥ．com", "acme.com"),
        # ß and final sigma are letters of their own in IDNA 2008, as registries and browsers
        # read them: straße.de and strasse.de are two domains, often two companies.
        ("straße.de", "xn--strae-oqa.de"),
        ("σοφίας.gr", "xn--kxae4bobt.gr"),
        ("σοφίας.gr".replace("ς", "σ"), "xn--kxae4bpdp.gr"),
        ("XN--MNCHEN-3YA.de", "xn--mnchen-3ya.de"),  # the ASCII form, as DNS has it
        ("xn--n3h.net", "xn--n3h.net"),  # ☃: not IDNA 2008, kept in the form it is given
    ],
)
def test_an_international_domain_is_kept_in_the_ascii_form_dns_uses(written, normal):
    assert normalise_domain(written) == normal


@pytest.mark.parametrize(
    "written",
    [
        "https://acme.com",
        "acme.com/about",
        "acme",
        "www.",
        "",
        "acme..com",
        "-acme.com",
        "acme-.com",
        "acme.com:8080",
        "jane@acme.com",
        "10.0.0.1",
        "ac me.com",
        "a" * 64 + ".com",
        "a\u200db.com",  # a joiner outside the scripts that need one
        "☃.net",  # symbols are not letters of any IDNA 2008 label
        "acme\n.com",  # a line break inside, where stripping the ends does not reach
        "acme.com\n.de",
        # A-labels that no name encodes to, which would give münchen.de a second key: the
        # punycode of mÜnchen, and of münchen with its ü decomposed
        "xn--mnchen-psa.de",
        "xn--munchen-gie.de",
        "xn--a.com",
        "xn--acme-.com",  # an ASCII name is its own spelling
    ],
)
def test_what_is_not_a_web_domain_is_refused(written):
    with pytest.raises(InvalidValue) as refusal:
        normalise_domain(written)

    assert refusal.value.field == "domain"
