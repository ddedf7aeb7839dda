"""An upload is read in the charset its Content-Type names, UTF-8 when it names none; on both
stores."""

from __future__ import annotations

import json

import pytest

from domain.account import account_id_for
from tests.api.requests import asgi_scope
from tests.screening.test_import import HEADER, events_in_store
from tests.screening.test_jobs import finished


def nothing_kept(ledger, settings) -> bool:
    """No event stored and no upload left waiting."""
    uploads = settings.data_dir / "imports"
    return events_in_store(ledger) == 0 and (not uploads.exists() or not any(uploads.iterdir()))


def uploaded(client, body: bytes, content_type: str) -> dict:
    response = client.post("/imports", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 202, response.text
    return finished(client, response.headers["location"])


@pytest.mark.parametrize(
    ("content_type", "name", "bom"),
    [
        ("text/csv; charset=windows-1252", "Müller – Café € Söhne", b""),
        ('text/csv; charset="Windows-1252"', "Müller – Café € Söhne", b""),
        ("text/csv;charset=latin-1", "Café Zürich", b""),
        ("text/csv; charset=ISO-8859-1", "Søren Å", b""),
        ("text/csv; charset=utf-8", "Café Zürich", b"\xef\xbb\xbf"),
        ("text/csv", "Café Zürich", b"\xef\xbb\xbf"),
        ("text/csv", "Café Zürich", b""),
    ],
    ids=["cp1252", "quoted", "latin-1", "iso-8859-1", "utf-8-bom", "default-bom", "default"],
)
def test_an_upload_is_read_in_the_charset_its_content_type_names(
    client, ledger, content_type, name, bom
):
    charset = content_type.partition("charset=")[2].strip('"') or "utf-8"
    body = bom + f'{HEADER}"{name}",acme.example,software,10,1,EUR,DE,,1,list\n'.encode(charset)

    job = uploaded(client, body, content_type)

    assert job["status"] == "finished", job
    assert (job["result"]["registered"], job["result"]["rejected"]) == (1, 0), job["result"]
    assert ledger.account(account_id_for("acme.example")).firmographics.name == name


def test_a_row_with_bytes_its_charset_does_not_have_is_rejected_naming_the_charset(client):
    # 0x81 is no character in windows-1252.
    body = HEADER.encode() + b"Bad \x81 Co,bad.example,software,10,1,EUR,DE,,1,list\n"

    job = uploaded(client, body, "text/csv; charset=windows-1252")

    assert job["result"]["errors"] == [
        {"line": 2, "column": "Company", "reason": "not valid windows-1252 text"}
    ]


@pytest.mark.parametrize(
    ("charset", "cell"), [("utf-7", b"Bad+2ADYAA-"), ("unicode_escape", b"Bad \\ud800 Co")]
)
def test_a_cell_its_charset_reads_as_a_lone_surrogate_rejects_its_row_alone(
    client, ledger, charset, cell
):
    # UTF-7 and Python's escapes can spell half of a surrogate pair, which no store takes.
    good = "{},{}.example,software,10,1,EUR,DE,,1,list\n"
    body = (
        f"{HEADER}{good.format('Good1', 'good1')}".encode()
        + cell
        + b",bad.example,software,10,1,EUR,DE,,1,list\n"
        + good.format("Good2", "good2").encode()
    )

    job = uploaded(client, body, f"text/csv; charset={charset}")

    assert job["status"] == "finished", job
    assert (job["result"]["registered"], job["result"]["rejected"]) == (2, 1), job["result"]
    assert job["result"]["errors"] == [
        {"line": 3, "column": "Company", "reason": f"not valid {charset} text"}
    ]
    assert ledger.account(account_id_for("good2.example")).version == 1


@pytest.mark.parametrize("charset", ["klingon", "base64", "idna", "undefined", ""])
def test_an_upload_in_a_charset_the_service_cannot_read_is_refused_and_nothing_kept(
    client, ledger, settings, charset
):
    body = f"{HEADER}Acme,acme.example,software,10,1,EUR,DE,,1,list\n".encode()

    response = client.post(
        "/imports", content=body, headers={"Content-Type": f"text/csv; charset={charset}"}
    )

    assert response.status_code == 415, response.text
    assert response.json()["type"] == "urn:crm:problem:unsupported-charset"
    assert f"'{charset}'" in response.json()["detail"]
    assert nothing_kept(ledger, settings)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/csv; charset=utf-8; charset=windows-1252",
        'text/csv; charset=latin-1; Charset="latin-1"',
    ],
    ids=["two", "the-same-twice"],
)
def test_an_upload_naming_a_charset_twice_is_a_400_naming_the_header_and_keeps_nothing(
    client, ledger, settings, content_type
):
    body = f"{HEADER}Café,acme.example,software,10,1,EUR,DE,,1,list\n".encode("latin-1")

    response = client.post("/imports", content=body, headers={"Content-Type": content_type})

    assert response.status_code == 400, response.text
    assert response.json()["field"] == "Content-Type"
    assert "charset 2 times" in response.json()["detail"]
    assert nothing_kept(ledger, settings)


def test_an_upload_with_two_content_types_is_a_400_naming_the_header_and_keeps_nothing(
    client, ledger, settings
):
    body = f"{HEADER}Café,acme.example,software,10,1,EUR,DE,,1,list\n".encode("latin-1")
    second = ((b"content-type", b"text/csv; charset=latin-1"),)
    answered: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        answered.append(message)

    # As two lines (the test client would join them), then joined by a comma, as a proxy does.
    scope = asgi_scope("POST", "/imports", b"text/csv", len(body), headers=second)
    client.blocking_portal.call(client.app, scope, receive, send)
    joined = client.post("/imports", content=body, headers=[("Content-Type", "text/csv"), *second])

    two_lines = json.loads(answered[1]["body"])
    assert (answered[0]["status"], two_lines["field"]) == (400, "Content-Type")
    assert (joined.status_code, joined.json()["field"]) == (400, "Content-Type")
    assert "more than once" in two_lines["detail"]
    assert nothing_kept(ledger, settings)
