"""The buying committee: contacts carry a buying role and a decision power."""

from __future__ import annotations

from domain.vocabulary import BuyingRole, DecisionPower
from tests.domain.scenario import contact_added, given, kinds, refused, when

ECONOMIC, TECHNICAL, END_USER = BuyingRole.ECONOMIC, BuyingRole.TECHNICAL, BuyingRole.END_USER


def test_a_contact_is_added_with_its_role_and_decision_power():
    account = given()

    events = when(account, contact_added(TECHNICAL, DecisionPower.INFLUENCER, "ops@acme.com"))

    assert kinds(events) == ["contact_added"]
    [contact] = account.contacts
    assert contact.buying_role is TECHNICAL
    assert contact.decision_power is DecisionPower.INFLUENCER
    assert contact.email == "ops@acme.com"
    assert contact.contact_id == events[0].contact_id


def test_a_new_account_misses_every_buying_role():
    account = given()

    assert account.buying_roles_covered == []
    assert account.buying_roles_missing == [ECONOMIC, TECHNICAL, END_USER]


def test_the_roles_of_the_contacts_are_covered_and_the_others_missing():
    account = given(contact_added(END_USER), contact_added(ECONOMIC), contact_added(END_USER))

    assert account.buying_roles_covered == [ECONOMIC, END_USER]
    assert account.buying_roles_missing == [TECHNICAL]


def test_with_all_three_roles_nothing_is_missing():
    account = given(contact_added(ECONOMIC), contact_added(TECHNICAL), contact_added(END_USER))

    assert account.buying_roles_covered == [ECONOMIC, TECHNICAL, END_USER]
    assert account.buying_roles_missing == []


def test_a_second_contact_with_the_same_email_in_another_case_is_refused():
    account = given(contact_added(ECONOMIC, email="Ceo@Acme.com"))

    refusal = refused(account, contact_added(TECHNICAL, email="ceo@ACME.COM"))

    assert refusal.rule == "contact_email_taken"
    assert len(account.contacts) == 1


def test_a_second_contact_with_the_same_email_under_the_ascii_form_of_its_domain_is_refused():
    account = given(contact_added(ECONOMIC, email="ann@münchen.de"))

    refusal = refused(account, contact_added(TECHNICAL, email="Ann@XN--MNCHEN-3YA.de"))

    assert refusal.rule == "contact_email_taken"
    assert len(account.contacts) == 1


def test_contacts_without_an_email_never_collide():
    account = given(contact_added(ECONOMIC), contact_added(TECHNICAL))

    when(account, contact_added(END_USER))

    assert len(account.contacts) == 3


def test_contacts_with_different_emails_are_all_kept():
    account = given(contact_added(ECONOMIC, email="ceo@acme.com"))

    when(account, contact_added(ECONOMIC, email="cfo@acme.com"))

    assert [c.email for c in account.contacts] == ["ceo@acme.com", "cfo@acme.com"]
