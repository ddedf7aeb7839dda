"""Bad input gets a clear 4xx problem naming the field, and stores nothing."""

from __future__ import annotations

import gzip
import json
import logging
from uuid import uuid4

import pytest

from tests.api.requests import asgi_scope, qualified, register, registration, warmed_up

RATING = {"budget": 3, "authority": 3, "need": 3, "timing": 3}


def stored_versions(client, account) -> list[int]:
    page = client.get(f"/accounts/{account['id']}/history", params={"limit": 1000}).json()
    return [e["version"] for e in page["items"]]


def put_bant(client, account, raw: bytes, content_type: str = "application/json"):
    """A BANT re-rating sent as these bytes."""
    path = f"/accounts/{account['id']}/bant"
    return client.put(path, content=raw, headers={"Content-Type": content_type})


def assert_problem(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"]
    if field is not None:
        assert problem["field"] == field, problem
    return problem


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"budget": 0}, "budget"),
        ({"timing": 6}, "timing"),
        ({"need": "5"}, "need"),
        ({"authority": 2.5}, "authority"),
        ({"authority": True}, "authority"),
        ({"score": 99}, "score"),
        ({"notes": {"budget": "ok", "mood": "sunny"}}, "notes.mood"),
    ],
)
def test_a_bad_bant_body_is_422_naming_the_field_and_stores_nothing(client, change, field):
    account = qualified(client)
    before = stored_versions(client, account)

    response = client.put(f"/accounts/{account['id']}/bant", json={**RATING, **change})

    assert_problem(response, 422, field)
    assert stored_versions(client, account) == before


def test_a_missing_required_field_is_named(client):
    body = registration()
    del body["country"]

    assert_problem(client.post("/accounts", json=body), 422, "country")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"headcount": "250"}, "headcount"),
        ({"headcount": 0}, "headcount"),
        ({"revenue_currency": "euro"}, "revenue_currency"),
        ({"country": "Germany"}, "country"),
        ({"country": "XX"}, "country"),  # two capitals, but no country's code
        ({"revenue_currency": "XYZ"}, "revenue_currency"),
        ({"revenue_currency": "XXX"}, "revenue_currency"),  # ISO 4217's "no currency"
        ({"revenue_currency": "XTS"}, "revenue_currency"),  # and its code for tests
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"source": "\t"}, "source"),
        ({"name": "x" * 201}, "name"),
        ({"domain": "https://acme.com/about"}, "domain"),
        ({"domain": "localhost"}, "domain"),
        ({"growth_rate": "fast"}, "growth_rate"),
        ({"annual_revenue": -1}, "annual_revenue"),
        ({"nickname": "ACME"}, "nickname"),
    ],
)
def test_a_bad_registration_is_422_naming_the_field_and_registers_nothing(client, change, field):
    response = client.post("/accounts", json=registration(**change))

    assert_problem(response, 422, field)
    assert client.post("/accounts", json=registration()).status_code == 201


def test_a_body_with_several_bad_fields_lists_each_with_why(client):
    body = {**registration(name="", headcount=0, country="ZZ", nickname="ACME")}
    del body["industry"]

    response = client.post("/accounts", json=body)

    problem = assert_problem(response, 422, "name")  # the first, as before
    listed = {e["field"]: e["message"] for e in problem["errors"]}
    assert set(listed) == {"name", "headcount", "country", "nickname", "industry"}
    assert listed["headcount"] == "Expected `int` >= 1"
    assert "unknown field" in listed["nickname"] and "missing" in listed["industry"]
    assert {e["source"] for e in problem["errors"]} == {"body"}
    assert client.get("/accounts").json()["items"] == []


def test_a_bad_field_inside_an_object_is_listed_by_its_path(client):
    account = qualified(client)
    rating = {**RATING, "budget": 9, "notes": {"need": 5}}

    response = client.put(f"/accounts/{account['id']}/bant", json=rating)

    problem = assert_problem(response, 422, "budget")
    assert [e["field"] for e in problem["errors"]] == ["budget", "notes.need"]


def test_fields_left_null_beside_a_bad_one_are_not_listed(client):
    body = {**registration(headcount=0), "region": None, "reason": None}

    response = client.post("/accounts", json=body)

    problem = assert_problem(response, 422, "headcount")
    assert [e["field"] for e in problem["errors"]] == ["headcount"]


def test_a_rule_of_the_whole_body_is_listed_too(client):
    response = client.post("/accounts", json=registration(name="\U000e0041", headcount=0))

    problem = assert_problem(response, 422)
    assert {e["field"] for e in problem["errors"]} == {"name", "headcount"}


def test_a_domain_that_is_none_is_listed_with_the_other_bad_fields(client):
    body = registration(domain="000")
    del body["industry"]

    response = client.post("/accounts", json=body)

    problem = assert_problem(response, 422)
    listed = {e["field"]: e["message"] for e in problem["errors"]}
    assert set(listed) == {"domain", "industry"}
    assert "not a web domain" in listed["domain"]
    assert client.get("/accounts").json()["items"] == []


def test_a_refusal_made_after_the_body_is_read_is_listed_in_errors_too(client):
    account = warmed_up(client)
    before = stored_versions(client, account)
    answers = {
        # the domain's form, once the rest of the body is well formed
        "domain": client.post("/accounts", json=registration(domain="000")),
        # a rule between fields
        "currency": client.post(
            f"/accounts/{account['id']}/deal", json={"outcome": "won", "amount": 10}
        ),
        "material": client.post(
            f"/accounts/{account['id']}/outreach", json={"kind": "no_response", "material": "x"}
        ),
    }

    for field, answer in answers.items():
        problem = assert_problem(answer, 422, field)
        assert problem["errors"] == [
            {"field": field, "source": "body", "message": problem["detail"]}
        ]
    assert stored_versions(client, account) == before


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("name", "Acme\x00Tooling"),  # PostgreSQL's text columns cannot even hold it
        ("name", "\u200b"),  # nothing a reader can see
        ("name", "\u00a0\ufeff"),
        ("name", "\u3164\u3164"),  # Hangul fillers, drawn blank
        ("name", "\u2800"),  # the braille blank
        ("industry", "\u034f\ufe0f"),  # marks that only modify what comes before them
        ("source", "\u180e\u061c\uffa0"),
        ("industry", "Acme\u202eloohcS"),  # displays other than it reads
        ("source", "web\n"),  # a name is one line
        ("name", "Acme\u2028Tooling"),  # Unicode's own line separator
        ("region", "Bavaria\x07"),
        ("reason", "\x1b[31m"),
    ],
)
def test_text_with_control_or_invisible_characters_is_refused_in_words(client, field, text):
    response = client.post("/accounts", json=registration(**{field: text}))

    problem = assert_problem(response, 422, field)
    assert "control" in problem["detail"]
    assert "regex" not in problem["detail"]
    assert client.get("/accounts").json()["items"] == []


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("name", "\U000e0041\U000e0063\U000e006d\U000e0065"),  # tag characters
        ("industry", "\U0001d173\U0001d174"),  # musical format controls
        ("source", " \U0001bca0\U000e0101"),  # a shorthand format control, a selector
        ("region", "\u3164\U000e0020"),
        ("reason", "\n\U000e007f"),
        ("name", "\U000e0080\U000e0fff"),  # the rest of the block, default-ignorable too
        ("industry", "\U00013430"),  # an Egyptian hieroglyph format control
    ],
)
def test_text_of_invisible_characters_beyond_the_bmp_is_refused_naming_the_field(
    client, field, text
):
    response = client.post("/accounts", json=registration(**{field: text}))

    problem = assert_problem(response, 422, field)
    assert "visible character" in problem["detail"]
    assert client.get("/accounts").json()["items"] == []


def test_a_criterion_or_a_contact_of_invisible_characters_is_refused_naming_it(client):
    account = qualified(client)
    before = stored_versions(client, account)
    contact = {"name": "\U000e0041", "title": "CFO", "buying_role": "economic"}

    screened = client.post(
        f"/accounts/{account['id']}/screening",
        json={"outcome": "qualified", "criteria": ["industry", "\U0001d17a"]},
    )
    added = client.post(
        f"/accounts/{account['id']}/contacts", json={**contact, "decision_power": "influencer"}
    )

    assert_problem(screened, 422, "criteria")
    assert_problem(added, 422, "name")
    assert stored_versions(client, account) == before


def test_a_removal_reason_of_invisible_characters_is_400_naming_it(client):
    account = qualified(client)
    contact = {"name": "Ann", "title": "CFO", "buying_role": "economic"}
    added = client.post(
        f"/accounts/{account['id']}/contacts", json={**contact, "decision_power": "influencer"}
    ).json()
    before = stored_versions(client, account)
    path = f"/accounts/{account['id']}/contacts/{added['contacts'][0]['id']}"

    response = client.delete(path, params={"reason": "\U000e0041\U000e0fff"})

    problem = assert_problem(response, 400, "reason")
    assert "visible character" in problem["detail"]
    assert stored_versions(client, account) == before


def test_a_name_may_hold_an_emoji_made_with_tag_characters(client):
    scotland = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"

    response = client.post("/accounts", json=registration(name=f"{scotland} Distillers"))
    alone = client.post("/accounts", json=registration(name=scotland, domain="flag.example"))

    assert response.status_code == 201, response.text
    assert response.json()["name"] == f"{scotland} Distillers"
    assert alone.status_code == 201, alone.text


def test_notes_and_reasons_may_span_lines_and_names_may_be_in_any_script(client):
    account = qualified(client)
    notes = {"budget": "Approved for Q3.\n\tPending the board.", "need": "Ja, dringend"}

    rated = client.put(
        f"/accounts/{account['id']}/bant",
        json={**RATING, "notes": notes, "reason": "Call with the CFO:\r\nall four confirmed"},
    )
    named = client.post(
        "/accounts", json=registration(name="Müller & Söhne 東京 😀", domain="ms.de")
    )

    assert rated.status_code == 200, rated.text
    assert rated.json()["bant"]["notes"] == notes
    assert named.status_code == 201, named.text


def test_notes_and_reasons_lose_the_white_space_around_them_but_keep_their_lines(client):
    account = qualified(client)
    notes = {"budget": " Approved for Q3.\n\tPending the board.\n", "need": "\turgent "}

    rated = client.put(
        f"/accounts/{account['id']}/bant", json={**RATING, "notes": notes, "reason": " Call\n"}
    )

    assert rated.status_code == 200, rated.text
    assert rated.json()["bant"]["notes"] == {
        "budget": "Approved for Q3.\n\tPending the board.",
        "need": "urgent",
    }
    history = client.get(f"/accounts/{account['id']}/history").json()["items"]
    assert history[-1]["reason"] == "Call"


@pytest.mark.parametrize(
    ("path", "param"),
    [("/accounts", "q"), ("/accounts", "industry"), ("/leaderboards/bant", "country")],
)
def test_a_search_or_filter_with_a_control_character_is_400_naming_it(client, path, param):
    register(client)

    response = client.get(path, params={param: "Acme\x00"})

    problem = assert_problem(response, 400)
    assert param in response.text
    assert "regex" not in problem["detail"] + response.text


def test_a_country_or_currency_code_in_small_letters_is_422_saying_to_write_capitals(client):
    response = client.post("/accounts", json=registration(country="de", revenue_currency="eur"))

    problem = assert_problem(response, 422)
    said = {e["field"]: e["message"] for e in problem["errors"]}
    assert said == {
        "revenue_currency": "Invalid enum value 'eur': codes are written in capitals, 'EUR'",
        "country": "Invalid enum value 'de': codes are written in capitals, 'DE'",
    }
    assert client.get("/accounts").json()["items"] == []


ANN = {"name": "Ann", "title": "CFO", "buying_role": "economic", "decision_power": "decision_maker"}


@pytest.mark.parametrize(
    "email",
    [
        "ann\x00@acme.com",
        "ann@acme.com\n",
        "ann@acme.com\u202e",
        "\u200b@\u200b.\u200b",  # nothing a reader sees
        "ann\u200b@acme.com",
        "ann@\u3164.com",
        "ann @acme.com",
    ],
)
def test_an_email_with_control_invisible_or_space_characters_is_refused_in_words(client, email):
    account = qualified(client)
    before = stored_versions(client, account)
    contact = {
        "name": "Ann",
        "title": "CFO",
        "buying_role": "economic",
        "decision_power": "decision_maker",
        "email": email,
    }

    response = client.post(f"/accounts/{account['id']}/contacts", json=contact)

    problem = assert_problem(response, 422, "email")
    assert "an e-mail address" in problem["detail"]
    assert "regex" not in problem["detail"]
    assert stored_versions(client, account) == before


def test_a_note_of_nothing_but_white_space_is_no_note(client):
    account = qualified(client)
    notes = {"budget": "approved", "need": "", "timing": " \n\t"}

    rated = client.put(f"/accounts/{account['id']}/bant", json={**RATING, "notes": notes})
    sent = client.post(
        f"/accounts/{account['id']}/outreach",
        json={"kind": "material_sent", "material": "case", "channel": "email", "note": "   "},
    )

    assert rated.status_code == 200, rated.text
    assert rated.json()["bant"]["notes"] == {"budget": "approved"}
    assert sent.status_code == 200, sent.text
    history = client.get(f"/accounts/{account['id']}/history").json()["items"]
    (material,) = [e for e in history if e["type"] == "material_sent"]
    assert material["data"]["note"] is None


def test_an_email_loses_the_white_space_around_it_as_other_text_does(client):
    account = qualified(client)
    contact = {
        "name": "Ann",
        "title": "CFO",
        "buying_role": "economic",
        "decision_power": "decision_maker",
        "email": "  ann@acme.com\u00a0",
    }

    response = client.post(f"/accounts/{account['id']}/contacts", json=contact)

    assert response.status_code == 200, response.text
    assert [c["email"] for c in response.json()["contacts"]] == ["ann@acme.com"]


@pytest.mark.parametrize(
    "email",
    [
        "x@-bad-.com",  # a label that begins and ends with a hyphen
        "x@exa_mple.com",
        "a..b@example.com",  # two dots in a row
        ".ann@acme.com",
        "ann.@acme.com",
        "x@[127.0.0.1]",  # an address, not a host name
        "x@10.0.0.1",
        '"ann"@acme.com',  # a quoted name
        "ann(cfo)@acme.com",
        "ann@acme..com",
    ],
)
def test_an_email_whose_name_or_domain_no_address_has_is_refused_naming_it(client, email):
    account = qualified(client)
    contact = {**ANN, "email": "ann@acme.com"}
    added = client.post(f"/accounts/{account['id']}/contacts", json=contact).json()
    before = stored_versions(client, account)
    url = f"/accounts/{account['id']}/contacts"

    adding = client.post(url, json={**ANN, "name": "Bea", "email": email})
    correcting = client.patch(f"{url}/{added['contacts'][0]['id']}", json={"email": email})

    for response in (adding, correcting):
        problem = assert_problem(response, 422, "email")
        assert "is not an e-mail address" in problem["detail"]
    assert stored_versions(client, account) == before


def test_a_form_learns_of_a_bad_email_with_the_body_s_other_errors(client):
    account = qualified(client)

    response = client.post(
        f"/accounts/{account['id']}/contacts",
        json={**ANN, "buying_role": "ceo", "email": "a..b@acme.com"},
    )

    problem = assert_problem(response, 422)
    assert {e["field"] for e in problem["errors"]} == {"buying_role", "email"}


def test_an_email_s_domain_is_kept_in_lower_case_without_its_final_dot(client):
    """So one mailbox is one contact: ann@münchen.de. is ann@MÜNCHEN.de."""
    account = qualified(client)
    url = f"/accounts/{account['id']}/contacts"

    added = client.post(url, json={**ANN, "email": "Ann@MÜNCHEN.de."})
    again = client.post(url, json={**ANN, "name": "Ann 2", "email": "Ann@xn--mnchen-3ya.de"})

    assert added.status_code == 200, added.text
    assert added.json()["contacts"][0]["email"] == "Ann@münchen.de"
    assert again.status_code == 409
    assert again.json()["rule"] == "contact_email_taken"


def test_a_body_that_is_not_json_is_400_even_after_an_invalid_value(client):
    account = qualified(client)
    before = stored_versions(client, account)

    response = client.post(
        f"/accounts/{account['id']}/contacts",
        content=b'{"name": "Ann", "email": ""quoted"@acme.com"}',
        headers={"Content-Type": "application/json"},
    )

    assert_problem(response, 400)
    assert stored_versions(client, account) == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("screening", {"outcome": "maybe"}, "outcome"),
        ("stage", {"to": "negotiation", "reason": "x"}, "to"),
        ("funnel", {"to": "buy"}, "to"),
        ("outreach", {"kind": "call"}, "kind"),
        ("outreach", {"kind": "response_received", "reaction": "delighted"}, "reaction"),
        (
            "contacts",
            {"name": "A", "title": "B", "buying_role": "ceo", "decision_power": "influencer"},
            "buying_role",
        ),
        (
            "contacts",
            {
                "name": "A",
                "title": "B",
                "buying_role": "economic",
                "decision_power": "influencer",
                "email": "not-an-email",
            },
            "email",
        ),
        ("deal", {"outcome": "won", "amount": 5}, "currency"),
        ("deal", {"outcome": "pending"}, "outcome"),
    ],
)
def test_unknown_enum_values_and_bad_fields_are_422(client, path, body, field):
    account = qualified(client)
    before = stored_versions(client, account)

    response = client.post(f"/accounts/{account['id']}/{path}", json=body)

    assert_problem(response, 422, field)
    assert stored_versions(client, account) == before


@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b"[1, 2]", b"null", b'{"budget": 3,}', b"\xff\xfe", b'{"notes": {"need": "\xe9"}}'],
)
def test_malformed_json_is_400_or_422_and_stores_nothing(client, raw):
    account = qualified(client)
    before = stored_versions(client, account)

    response = put_bant(client, account, raw)

    assert response.status_code in (400, 422)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert stored_versions(client, account) == before


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"budget": 5, "authority": 3, "need": 3, "timing": 3, "budget": 1}', "budget"),
        (b'{"budget": 1, "authority": 3, "need": 3, "timing": 3, "bud\\u0067et": 5}', "budget"),
        (
            b'{"budget": 3, "authority": 3, "need": 3, "timing": 3,'
            b' "notes": {"need": "urgent", "need": "none"}}',
            "notes.need",
        ),
        (b'{"budget": 5, "budget": 1}', "budget"),  # and fields missing
        (b'{"budget": 5, "authority": 9, "need": 3, "timing": 3, "budget": 1}', "budget"),
        (
            b'{"budget": 3, "authority": 3, "need": 3, "timing": 3,'
            b' "notes": {":": "a", "b": "c", ":": "d"}}',
            "notes.:",
        ),
    ],
    ids=[
        "top-level",
        "escaped",
        "nested",
        "in-an-incomplete-body",
        "in-an-invalid-body",
        "a-name-of-a-colon-after-a-value",
    ],
)
def test_a_name_given_twice_in_one_object_is_400_naming_it_and_stores_nothing(client, raw, field):
    account = qualified(client)
    before = stored_versions(client, account)
    headers = {"Content-Type": "application/json"}

    response = client.put(f"/accounts/{account['id']}/bant", content=raw, headers=headers)

    assert assert_problem(response, 400, field)["type"] == "urn:crm:problem:malformed-json"
    assert stored_versions(client, account) == before


def test_the_same_name_in_different_objects_is_no_repeat(client):
    account = qualified(client)
    body = {**RATING, "notes": {"budget": "approved", "need": "urgent"}}

    response = client.put(f"/accounts/{account['id']}/bant", json=body)

    assert response.status_code == 200, response.text
    assert response.json()["bant"]["notes"] == body["notes"]


DEEP = [b"[" * depth + b"]" * depth for depth in (30_000, 2_000)]


@pytest.mark.parametrize("raw", DEEP)
def test_json_nested_too_deep_is_400_and_stores_nothing(client, raw):
    account = qualified(client)
    before = stored_versions(client, account)
    headers = {"Content-Type": "application/json"}

    response = client.put(f"/accounts/{account['id']}/bant", content=raw, headers=headers)

    assert assert_problem(response, 400)["detail"] == "The body nests arrays or objects too deeply."
    assert stored_versions(client, account) == before


@pytest.mark.parametrize("raw", DEEP)
def test_a_registration_nested_too_deep_is_400_and_registers_nothing(client, raw):
    response = client.post("/accounts", content=raw, headers={"Content-Type": "application/json"})

    assert assert_problem(response, 400)["detail"] == "The body nests arrays or objects too deeply."
    assert client.get("/accounts").json()["items"] == []


def test_a_command_without_a_body_is_400_asking_for_one(client):
    problem = assert_problem(client.post("/accounts"), 400, "body")

    assert problem["errors"][0]["message"] == "The request needs a JSON body."
    assert client.get("/accounts").json()["items"] == []


def test_an_oversized_body_is_413(client, settings):
    account = qualified(client)
    body = {**RATING, "notes": {"budget": "x" * (settings.max_body_bytes + 10)}}

    response = client.put(
        f"/accounts/{account['id']}/bant",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )

    assert_problem(response, 413)


def test_a_body_that_is_not_json_is_415(client):
    account = qualified(client)

    response = put_bant(client, account, b"budget=3", "application/x-www-form-urlencoded")

    assert_problem(response, 415)


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", '"iso-8859-1"'])
def test_json_in_another_charset_than_utf_8_is_415_and_utf_8_is_taken(client, charset):
    account = qualified(client)
    before = stored_versions(client, account)
    body = json.dumps({**RATING, "notes": {"need": "Müller"}}).encode("latin-1")

    refused = client.put(
        f"/accounts/{account['id']}/bant",
        content=body,
        headers={"Content-Type": f"application/json; charset={charset}"},
    )
    after_refused = stored_versions(client, account)
    taken = client.put(
        f"/accounts/{account['id']}/bant",
        json=RATING,
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )

    assert "UTF-8" in assert_problem(refused, 415)["detail"]
    assert after_refused == before
    assert taken.status_code == 200, taken.text


def test_a_compressed_body_is_415_and_stores_nothing_and_identity_is_taken(client):
    account = qualified(client)
    before = stored_versions(client, account)
    body = json.dumps({**RATING, "budget": 5}).encode()
    json_headers = {"Content-Type": "application/json"}

    compressed = client.put(
        f"/accounts/{account['id']}/bant",
        content=gzip.compress(body),
        headers={**json_headers, "Content-Encoding": "gzip"},
    )
    upload = client.post(
        "/imports",
        content=gzip.compress(b"name,domain\n"),
        headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"},
    )

    assert assert_problem(compressed, 415)["type"] == "urn:crm:problem:unsupported-content-encoding"
    assert assert_problem(upload, 415)["type"] == "urn:crm:problem:unsupported-content-encoding"
    assert stored_versions(client, account) == before
    plain = client.put(
        f"/accounts/{account['id']}/bant",
        content=body,
        headers={**json_headers, "Content-Encoding": "identity"},
    )
    assert plain.status_code == 200, plain.text


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("If-Match", "three"),
        ("If-Match", 'W/"3"'),
        ("Idempotency-Key", "a" * 300),
        ("Idempotency-Key", "has space"),
        ("X-Actor", ""),
        ("X-Actor", "a" * 201),
        ("X-Actor", "ad\u202emin".encode()),  # sent as UTF-8, displays as "adnim"
        ("X-Actor", "\u200b".encode()),  # nobody a reader can see
    ],
)
def test_malformed_command_headers_are_400_naming_the_header(client, header, value):
    account = qualified(client)
    before = stored_versions(client, account)

    response = client.put(f"/accounts/{account['id']}/bant", json=RATING, headers={header: value})

    assert_problem(response, 400, header)
    assert stored_versions(client, account) == before


@pytest.mark.parametrize(
    ("header", "values"),
    [("If-Match", ['"2"', '"9"']), ("Idempotency-Key", ["one", "two"]), ("X-Actor", ["a", "b"])],
)
def test_a_command_header_sent_twice_is_400_naming_it(client, header, values):
    account = qualified(client)
    before = stored_versions(client, account)
    body = json.dumps(RATING).encode()
    twice = tuple((header.lower().encode(), value.encode()) for value in values)
    path = f"/accounts/{account['id']}/bant"
    scope = asgi_scope("PUT", path, b"application/json", len(body), headers=twice)
    answered = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        answered.append(message)

    client.blocking_portal.call(client.app, scope, receive, send)

    problem = json.loads(answered[1]["body"])
    assert (answered[0]["status"], problem["field"]) == (400, header)
    assert "more than once" in problem["detail"]
    assert stored_versions(client, account) == before


def test_an_account_id_that_is_not_a_uuid_is_a_client_error(client):
    response = client.get("/accounts/not-a-uuid")

    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/problem+json")


def test_errors_do_not_leak_internals(client):
    response = client.put(
        "/accounts/not-a-uuid/bant", content=b"{", headers={"Content-Type": "application/json"}
    )

    text = response.text
    assert response.status_code < 500
    assert "Traceback" not in text and ".py" not in text and "SELECT" not in text


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("", {"version": str(2**63)}, "version"),
        ("/history", {"after": str(2**63)}, "after"),
        ("/diff", {"from": str(2**70)}, "from"),
    ],
)
def test_numbers_beyond_what_the_store_holds_are_400_naming_the_parameter(
    client, path, params, field
):
    account = qualified(client)

    response = client.get(f"/accounts/{account['id']}{path}", params=params)

    problem = assert_problem(response, 400)
    assert field in json.dumps(problem)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/accounts/{account}/diff", "from"),
        ("/accounts/{account}/diff", "to"),
        ("/reports/stages", "from"),
        ("/reports/funnel", "to"),
    ],
)
def test_a_parameter_refused_before_the_handler_is_named_as_the_client_sent_it(client, path, name):
    # `from` is no Python name: the handler calls it otherwise, which the client never sees.
    account = qualified(client)
    params = {"from": "0", name: "2026-01-01T00:00:00Z" + "0" * 64}

    response = client.get(path.format(account=account["id"]), params=params)

    problem = assert_problem(response, 400)
    assert problem["field"] == name
    assert [e["field"] for e in problem["errors"]] == [name]
    assert problem["detail"] == f"Invalid parameter: {name}."


# Python's int() reads all but the last; a JSON number reader takes the last four.
NOT_DIGITS = ["1_0", "+1", " 1", "1 ", "\u0662", "\uff11", "1.0", "1e1", "-0", "01", ""]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/accounts/{account}", "version"),
        ("/accounts/{account}/history", "after"),
        ("/accounts/{account}/history", "limit"),
        ("/accounts", "limit"),
        ("/leaderboards/bant", "min_position"),
        ("/reports/stages", "min_position"),
    ],
)
def test_an_integer_query_parameter_is_taken_in_ascii_digits_only(client, path, name):
    account = qualified(client)
    url = path.format(account=account["id"])

    for written in NOT_DIGITS:
        problem = assert_problem(client.get(url, params={name: written}), 400, name)
        assert name in problem["detail"]
    assert client.get(url, params={name: "1"}).status_code == 200


@pytest.mark.parametrize("action", ["", "/dry-run", "/apply"])
def test_a_policy_version_in_the_path_is_taken_in_ascii_digits_only(client, action):
    for _ in range(10):  # version 10 is there, so 1_0 or 1.0 are not read as a version
        response = client.post("/screening-policies", json={"headcount_min": 50})
        assert response.status_code == 201, response.text
    method = "GET" if action == "" else "POST"
    body = None if action == "" else {}

    for written in [*NOT_DIGITS[:-1], "abc", "%D9%A2"]:
        url = f"/screening-policies/{written}{action}"
        response = client.request(method, url, json=body)
        problem = assert_problem(response, 400, "version")
        assert "version" in problem["detail"]
    assert client.request(method, f"/screening-policies/10{action}", json=body).status_code < 300


def test_an_import_screens_with_a_policy_version_in_ascii_digits_only(client):
    for written in NOT_DIGITS:
        response = client.post(
            "/imports",
            params={"screen_with": written},
            content=b"name\n",
            headers={"Content-Type": "text/csv"},
        )
        assert_problem(response, 400, "screen_with")


def test_a_body_sent_to_a_read_is_refused_and_an_empty_one_is_not(client):
    account = qualified(client)
    url = f"/accounts/{account['id']}"

    sent = client.request("GET", url, content=b'{"version": 1}')
    streamed = client.request("GET", url, content=iter([b'{"version":', b" 1}"]))
    empty = client.request("GET", url, content=b"", headers={"Content-Length": "0"})
    # A client or proxy that streams sends even an empty body chunked, without a length.
    empty_streamed = client.request("GET", url, content=iter([]))

    assert assert_problem(sent, 400, "body")
    assert assert_problem(streamed, 400, "body")
    assert empty.status_code == empty_streamed.status_code == 200


def test_a_min_position_beyond_what_the_store_holds_is_400(client):
    response = client.get("/leaderboards/bant", params={"min_position": str(2**63)})

    problem = assert_problem(response, 400)
    assert "min_position" in json.dumps(problem)


def test_a_version_the_account_has_not_reached_is_404_saying_where_it_is(client):
    account = qualified(client)  # version 2

    problem = assert_problem(client.get(f"/accounts/{account['id']}", params={"version": 9}), 404)

    assert problem["field"] == "version"
    assert "at version 2" in problem["detail"]
    unknown = client.get(f"/accounts/{uuid4()}", params={"version": 1})
    assert_problem(unknown, 404)
    assert unknown.json()["title"] == "Account not found"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/accounts", [("industy", "software")], "industy"),  # a misspelt filter
        ("/leaderboards/bant", [("funnel", "see"), ("funnel", "think")], "funnel"),
        ("/reports/stages", [("period", "day"), ("period", "year")], "period"),
    ],
)
def test_a_query_parameter_the_route_does_not_take_or_takes_once_is_400(
    client, path, params, field
):
    register(client)

    response = client.get(path, params=params)

    problem = assert_problem(response, 400, field)
    assert field in problem["detail"]


@pytest.mark.parametrize(
    ("path", "name"),
    [("/accounts", "funnel"), ("/leaderboards/bant", "funnel"), ("/reports/stages", "group_by")],
)
def test_null_for_a_parameter_of_a_few_values_is_400_not_read_as_leaving_it_out(client, path, name):
    register(client)

    problem = assert_problem(client.get(path, params={name: "null"}), 400, name)

    assert "does not take null" in problem["detail"]
    # (text is text: an industry called null is looked for, and found in none)
    assert client.get("/accounts", params={"industry": "null"}).json()["items"] == []


def test_every_bad_field_parameter_or_header_is_one_problem_type_naming_it(client):
    account = qualified(client)
    answers = {
        "limit": client.get("/accounts", params={"limit": "many"}),  # the framework's check
        "stage": client.get("/leaderboards/bant", params={"stage": "nowhere"}),
        "period": client.put(
            "/objectives/2026-02-30",
            json={
                "targets": [{"metric": "accounts_won", "acceptable": 1, "optimal": 2, "best": 3}]
            },
        ),
        "as_of": client.get("/reports/stages", params={"as_of": "yesterday"}),  # the CRM's own
        "If-Match": client.put(
            f"/accounts/{account['id']}/bant", json=RATING, headers={"If-Match": "v3"}
        ),
        "budget": client.put(f"/accounts/{account['id']}/bant", json={**RATING, "budget": 9}),
    }

    sources = {"period": "path", "If-Match": "header", "budget": "body"}
    for field, answer in answers.items():
        problem = assert_problem(answer, 422 if field == "budget" else 400, field)
        assert problem["type"] == "urn:crm:problem:invalid-field", problem
        # and a form that shows `errors` finds it there, with where it was sent
        listed = [(e["field"], e["source"]) for e in problem["errors"]]
        assert (field, sources.get(field, "query")) in listed, problem


def test_a_query_is_judged_by_the_route_it_is_sent_to_every_time_it_comes(client):
    register(client)
    query = {"industry": "software"}

    for _ in range(2):  # a query string seen before is judged as the first time
        assert client.get("/accounts", params=query).status_code == 200
        assert_problem(client.get("/reports/stages", params=query), 400, "industry")
        assert client.get("/accounts", params=query).status_code == 200


def test_a_command_refuses_query_parameters_and_stores_nothing(client):
    account = qualified(client)
    before = stored_versions(client, account)

    response = client.put(f"/accounts/{account['id']}/bant", params={"force": "1"}, json=RATING)

    assert_problem(response, 400, "force")
    assert stored_versions(client, account) == before


def test_a_client_gone_before_its_body_arrived_is_no_server_error(client, caplog):
    # Given a re-rating whose client goes away after the first bytes of its body
    account = qualified(client)
    before = stored_versions(client, account)
    path = f"/accounts/{account['id']}/bant"
    scope = asgi_scope("PUT", path, b"application/json", 64)
    arriving = [{"type": "http.request", "body": b'{"budget": 3', "more_body": True}]
    answered = []

    async def receive():
        return arriving.pop(0) if arriving else {"type": "http.disconnect"}

    async def send(message):
        answered.append(message)

    # When the service reads it
    with caplog.at_level(logging.INFO, logger="crm"):
        client.blocking_portal.call(client.app, scope, receive, send)

    # Then it stores nothing, and says so in a line rather than an error with a traceback
    assert answered[0]["status"] == 400
    assert stored_versions(client, account) == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("client went away" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"9" * 5000])
def test_a_number_beyond_what_any_field_holds_is_422_naming_the_field(client, number):
    # JSON allows 1e400 and 5,000 digits; no field can hold them
    account = qualified(client)
    before = stored_versions(client, account)
    raw = b'{"budget": ' + number + b', "authority": 3, "need": 3, "timing": 3}'

    response = put_bant(client, account, raw)

    problem = assert_problem(response, 422, "budget")
    assert "out of range" in problem["detail"].lower()
    assert stored_versions(client, account) == before


def test_a_body_cut_short_after_such_a_number_is_still_malformed(client):
    account = qualified(client)

    response = put_bant(client, account, b'{"budget": 1e400, "authority": ')

    assert assert_problem(response, 400)["type"] == "urn:crm:problem:malformed-json"


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        # JSON's syntax, but an escape of half a surrogate pair names no character
        (b'{"budget": 3, "notes": {"need": "\\ud800"}}', "half of a surrogate pair"),
        # the bad byte where the body holds it, not where its string begins
        (b'{"budget": 3, "notes": {"need": "ok\xff"}}', "position 35"),
    ],
    ids=["lone-surrogate", "not-utf-8"],
)
def test_malformed_json_is_said_as_it_is(client, raw, said):
    account = qualified(client)
    before = stored_versions(client, account)

    response = put_bant(client, account, raw)

    problem = assert_problem(response, 400)
    assert problem["type"] == "urn:crm:problem:malformed-json"
    assert said in problem["detail"]
    assert "truncated" not in problem["detail"]
    assert stored_versions(client, account) == before
