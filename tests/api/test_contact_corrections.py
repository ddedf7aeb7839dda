"""PATCH and DELETE /accounts/{id}/contacts/{contact_id}: a contact's details corrected, or the
contact removed, with the history keeping what was."""

from __future__ import annotations

import pytest

from tests.api.requests import command, register

JANE = {
    "name": "Jane Roe",
    "title": "CEO",
    "email": "jane@acme-tooling.com",
    "buying_role": "economic",
    "decision_power": "decision_maker",
}
OMAR = {
    "name": "Omar Diaz",
    "title": "Head of IT",
    "email": "omar@acme-tooling.com",
    "buying_role": "technical",
    "decision_power": "influencer",
}


def with_contacts(client, *contacts):
    account = register(client)
    for contact in contacts:
        account = command(client, account, "contacts", contact)
    return account


def contact_url(account, contact) -> str:
    return f"/accounts/{account['id']}/contacts/{contact['id']}"


def last_event(client, account) -> dict:
    return client.get(f"/accounts/{account['id']}/history").json()["items"][-1]


def test_a_correction_changes_the_fields_sent_and_the_roles_covered(client):
    account = with_contacts(client, JANE)
    jane = account["contacts"][0]

    response = client.patch(
        contact_url(account, jane), json={"title": "CTO", "buying_role": "technical"}
    )

    assert response.status_code == 200, response.text
    after = response.json()
    assert after["contacts"] == [{**jane, "title": "CTO", "buying_role": "technical"}]
    assert after["buying_roles"] == {"covered": ["technical"], "missing": ["economic", "end_user"]}
    assert after["version"] == account["version"] + 1
    event = last_event(client, account)
    assert event["type"] == "contact_updated"
    assert event["data"] == {
        "contact_id": jane["id"],
        "changes": {"title": "CTO", "buying_role": "technical"},
    }


def test_a_null_email_removes_it_and_a_correction_that_changes_nothing_stores_nothing(client):
    account = with_contacts(client, JANE)
    jane = account["contacts"][0]

    removal = client.patch(contact_url(account, jane), json={"email": None})
    same = client.patch(contact_url(account, jane), json={"name": "Jane Roe", "email": None})

    removed = removal.json()
    assert removed["contacts"][0]["email"] is None
    assert same.status_code == 200
    assert same.json()["version"] == removed["version"]
    # Nothing stored, yet a position to read at: the log's head when it was decided.
    assert int(same.headers["crm-position"]) >= int(removal.headers["crm-position"])


def test_a_contacts_text_loses_the_white_space_around_it_so_resending_it_changes_nothing(client):
    account = with_contacts(client, {**JANE, "name": " Jane Roe ", "title": "CEO\u00a0"})
    jane = account["contacts"][0]

    same = client.patch(contact_url(account, jane), json={"name": "Jane Roe  ", "title": " CEO"})

    assert (jane["name"], jane["title"]) == ("Jane Roe", "CEO")
    assert same.status_code == 200
    assert same.json()["version"] == account["version"]


def test_an_email_another_contact_has_is_refused_by_rule(client):
    account = with_contacts(client, JANE, OMAR)
    omar = account["contacts"][1]

    taken = client.patch(contact_url(account, omar), json={"email": "JANE@acme-tooling.com"})
    own = client.patch(contact_url(account, omar), json={"email": "OMAR@acme-tooling.com"})

    assert taken.status_code == 409
    assert taken.json()["rule"] == "contact_email_taken"
    assert own.status_code == 200  # the contact's own address, in other letters
    assert own.json()["contacts"][1]["email"] == "OMAR@acme-tooling.com"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"buying_role": "boss"}, "buying_role"),
        ({"name": ""}, "name"),
        ({"email": "not an address"}, "email"),
        ({"title": None}, "title"),
        ({"phone": "123"}, "phone"),
    ],
)
def test_a_bad_correction_is_refused_naming_its_field_and_stores_nothing(client, body, field):
    account = with_contacts(client, JANE)

    response = client.patch(contact_url(account, account["contacts"][0]), json=body)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert client.get(f"/accounts/{account['id']}").json() == account


def test_removing_a_contact_keeps_it_in_the_history_and_as_of_before(client):
    account = with_contacts(client, JANE, OMAR)
    jane = account["contacts"][0]

    response = client.delete(contact_url(account, jane), params={"reason": "left the company"})

    assert response.status_code == 200, response.text
    after = response.json()
    assert [c["name"] for c in after["contacts"]] == ["Omar Diaz"]
    assert after["buying_roles"]["missing"] == ["economic", "end_user"]
    event = last_event(client, account)
    assert (event["type"], event["reason"]) == ("contact_removed", "left the company")
    before = client.get(f"/accounts/{account['id']}", params={"version": account["version"]})
    assert [c["name"] for c in before.json()["contacts"]] == ["Jane Roe", "Omar Diaz"]


def test_a_removal_sent_with_a_body_is_refused_rather_than_its_reason_lost(client):
    account = with_contacts(client, JANE)
    jane = account["contacts"][0]

    response = client.request(
        "DELETE", contact_url(account, jane), json={"reason": "left the company"}
    )

    assert response.status_code == 400, response.text
    assert response.json()["field"] == "body"
    assert client.get(f"/accounts/{account['id']}").json() == account


def test_a_contact_the_account_does_not_have_is_404(client):
    account = with_contacts(client, JANE)
    jane = account["contacts"][0]
    client.delete(contact_url(account, jane))

    again = client.delete(contact_url(account, jane))
    corrected = client.patch(contact_url(account, jane), json={"title": "CFO"})
    elsewhere = client.delete(contact_url(register(client, domain="other.example"), jane))

    assert [again.status_code, corrected.status_code, elsewhere.status_code] == [404, 404, 404]
    assert again.json()["detail"] == f"The account has no contact with id {jane['id']}."


def test_contact_commands_honour_if_match(client):
    account = with_contacts(client, JANE)
    jane = account["contacts"][0]
    stale = {"If-Match": f'"{account["version"] - 1}"'}

    patched = client.patch(contact_url(account, jane), json={"title": "CFO"}, headers=stale)
    deleted = client.delete(contact_url(account, jane), headers=stale)

    assert [patched.status_code, deleted.status_code] == [412, 412]
    assert client.get(f"/accounts/{account['id']}").json()["contacts"] == [jane]


def test_a_bad_reason_for_a_removal_is_refused_naming_it(client):
    account = with_contacts(client, JANE)

    response = client.delete(
        contact_url(account, account["contacts"][0]), params={"reason": "left\x00"}
    )

    assert response.status_code == 400
    assert response.json()["field"] == "reason"
    assert client.get(f"/accounts/{account['id']}").json() == account


def test_a_contact_added_is_the_last_of_the_contacts_its_answer_lists(client):
    # A frontend finds the new contact's id there, as the README says.
    account = with_contacts(client, OMAR)
    # Jane sorts before Omar by name and by e-mail: still last, as the one added
    added = command(client, account, "contacts", JANE)

    assert [c["name"] for c in added["contacts"]] == ["Omar Diaz", "Jane Roe"]
    assert added["contacts"][-1]["id"] not in {c["id"] for c in account["contacts"]}
