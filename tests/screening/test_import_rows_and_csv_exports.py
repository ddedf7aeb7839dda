"""What an import may change of a known company, what it reads from a row, and CSV exports
that a spreadsheet opens without running what users typed; on both stores."""

from __future__ import annotations

import csv
import io
import json

from contracts.accounts import LINE_PATTERN, TEXT_RULES
from domain.account import EVENT_TOPIC_PREFIX, account_id_for
from domain.ledger import CommandMeta
from services.importing import import_rows
from services.jobs import JobRunner
from tests.api.requests import command, registration
from tests.audit.tampering import verify_offline
from tests.processes import run_crm
from tests.screening.test_import import HEADER, events_in_store, good_rows
from tests.screening.test_jobs import finished

META = CommandMeta("importer")
FORMULA = "=cmd|' /C calc'!A0"


def account_of(ledger, domain: str):
    return ledger.account(account_id_for(domain))


def account_events(ledger) -> int:
    notifications = ledger.recorder.select_notifications(1, 1_000_000)
    return sum(1 for n in notifications if n.topic.startswith(EVENT_TOPIC_PREFIX))


# Only what the file states changes a known company -------------------------------------


def test_a_file_without_the_region_column_leaves_a_known_region_alone(ledger):
    import_rows(
        ledger, (HEADER + "Acme,acme.de,software,10,1000,EUR,DE,Bavaria,2.5,fair\n").encode(), META
    )
    no_region = "Company,Website,Industry,Employees,Revenue,Currency,Country,Growth,Source\n"

    same = import_rows(
        ledger, (no_region + "Acme,acme.de,software,10,1000,EUR,DE,2.5,fair\n").encode(), META
    )
    bigger = import_rows(
        ledger, (no_region + "Acme,acme.de,software,12,1000,EUR,DE,2.5,fair\n").encode(), META
    )

    assert (same.unchanged, same.updated) == (1, 0)
    assert bigger.updated == 1
    account = account_of(ledger, "acme.de")
    assert account.firmographics.region == "Bavaria"
    last = ledger.history(account.id)[-1]
    assert type(last).__name__ == "FirmographicsUpdated"
    assert last.changes == {"headcount": 12}


def test_an_empty_cell_of_an_optional_column_keeps_the_stored_value(ledger):
    import_rows(
        ledger, (HEADER + "Acme,acme.de,software,10,1000,EUR,DE,Bavaria,2.5,fair\n").encode(), META
    )
    stored = events_in_store(ledger)

    again = import_rows(
        ledger, (HEADER + "Acme,acme.de,software,10,1000,EUR,DE,,2.5,fair\n").encode(), META
    )
    moved = import_rows(
        ledger, (HEADER + "Acme,acme.de,software,10,1000,EUR,DE,Saxony,2.5,fair\n").encode(), META
    )

    assert again.unchanged == 1
    assert moved.updated == 1
    assert events_in_store(ledger) == stored + 1
    assert account_of(ledger, "acme.de").firmographics.region == "Saxony"


def test_a_new_company_from_a_file_without_a_region_has_none(ledger):
    no_region = "Company,Website,Industry,Employees,Revenue,Currency,Country,Growth,Source\n"

    report = import_rows(
        ledger, (no_region + "Acme,acme.de,software,10,1000,EUR,DE,2.5,fair\n").encode(), META
    )

    assert report.registered == 1
    assert account_of(ledger, "acme.de").firmographics.region is None


# Two columns for one field -------------------------------------------------------------


def test_a_file_with_two_columns_for_the_domain_is_refused_before_anything_is_stored(ledger):
    import_rows(
        ledger, (HEADER + "Acme,acme.de,software,10,1000,EUR,DE,Bavaria,2.5,fair\n").encode(), META
    )
    stored = events_in_store(ledger)
    both = "name,Website,industry,headcount,revenue,currency,country,growth,source,domain\n"

    report = import_rows(
        ledger,
        (both + "Newco,acme.de,software,10,1000,EUR,DE,2.5,fair,newco.example\n").encode(),
        META,
    )

    assert report.refused == (
        "columns 'Website' and 'domain' both map to the field domain: keep one of them"
    )
    assert (report.registered, report.updated) == (0, 0)
    assert events_in_store(ledger) == stored
    assert account_of(ledger, "acme.de").firmographics.name == "Acme"


def test_every_field_held_by_more_than_one_column_is_named_with_its_columns(ledger):
    header = "name,Company,Account,domain,industry,Employees,headcount,revenue,currency,country\n"

    report = import_rows(ledger, (header + "A,B,C,a.com,it,1,2,3,EUR,DE\n").encode(), META)

    assert report.refused == (
        "columns 'name', 'Company' and 'Account' all map to the field name: keep one of them; "
        "columns 'Employees' and 'headcount' both map to the field headcount: keep one of them; "
        "missing column(s): growth_rate, source (the header line, read as comma-separated, has "
        "'name', 'Company', 'Account', 'domain', 'industry', 'Employees', 'headcount', "
        "'revenue', 'currency', 'country')"
    )
    assert events_in_store(ledger) == 0


# Characters a cell may not hold --------------------------------------------------------


def test_a_cell_with_a_control_or_bidi_character_or_nothing_visible_rejects_its_row(ledger):
    body = (
        HEADER
        + "Nul\x00Corp,nul.example,software,10,1000,EUR,DE,,2.5,fair\n"
        + "Bell,bell.example,software,10,1000,EUR,DE,Bavaria\x07,2.5,fair\n"
        + "Del,del.example,software,10,1000,EUR,DE,,2.5,fair\x7f\n"
        + "Nel,nel.example,soft\x85ware,10,1000,EUR,DE,,2.5,fair\n"
        + "\u200b,zwsp.example,software,10,1000,EUR,DE,,2.5,fair\n"
        + "Acme,bom.example,software,10,1000,EUR,DE,,2.5,\ufeff \u2060\n"
        + "Evil\u202egpj.exe,rlo.example,software,10,1000,EUR,DE,,2.5,fair\n"
        + "Iso,iso.example,\u2066software\u2069,10,1000,EUR,DE,,2.5,fair\n"
        + "Tab\tCo,tab.example,software,10,1000,EUR,DE,,2.5,fair\n"
        + "Ten,ten.example,software,10\x1f,1000,EUR,DE,,2.5,fair\n"
        + '"Two\nLines",lines.example,software,10,1000,EUR,DE,,2.5,fair\n'
        + '"Break\n",break.example,software,10,1000,EUR,DE,,2.5,fair\n'
        + "Zero\u200bWidth,zw.example,software,10,1000,EUR,DE,,2.5,fair\n"
        + "\U000e0041\U000e0063,tags.example,software,10,1000,EUR,DE,,2.5,fair\n"
    )

    report = import_rows(ledger, body.encode(), META)

    rule = f"not {TEXT_RULES[LINE_PATTERN]}"
    assert [(e.line, e.column, e.reason) for e in report.errors] == [
        (2, "Company", rule),
        (3, "Region", rule),
        (4, "Source", rule),
        (5, "Industry", rule),
        (6, "Company", rule),  # nothing visible
        (7, "Source", rule),
        (8, "Company", rule),
        (9, "Industry", rule),
        (10, "Company", rule),  # a tab: the API's one-line rule
        (11, "Employees", rule),
        (12, "Company", rule),  # the line the row starts on
        (14, "Company", rule),
        (17, "Company", rule),  # tag characters: nothing visible beyond the BMP either
    ]
    assert "control or bidirectional override characters" in rule
    # A zero-width character next to visible ones is text.
    assert report.registered == 1
    assert account_of(ledger, "zw.example").firmographics.name == "Zero\u200bWidth"
    assert events_in_store(ledger) == 1


def test_an_uploaded_row_with_a_nul_is_rejected_and_the_read_models_carry_on(client, projector):
    body = (
        HEADER
        + "Nul\x00Corp,nul.example,software,10,1000,EUR,DE,,2.5,fair\n"
        + "Acme,acme.de,software,10,1000,EUR,DE,,2.5,fair\n"
    ).encode()

    upload = client.post("/imports", content=body, headers={"Content-Type": "text/csv"})
    job = finished(client, upload.headers["location"])
    later = client.post("/accounts", json=registration(domain="later.example"))

    assert job["result"]["errors"] == [
        {"line": 2, "column": "Company", "reason": f"not {TEXT_RULES[LINE_PATTERN]}"}
    ]
    assert later.status_code == 201, later.text
    position = int(later.headers["crm-position"])
    assert projector.wait_for("accounts", position, 10) >= position
    listed = client.get("/accounts", params={"min_position": position}).json()["items"]
    assert sorted(a["domain"] for a in listed) == ["acme.de", "later.example"]


# Semicolon-separated files -------------------------------------------------------------


def test_a_semicolon_separated_file_is_read_with_the_comma_as_its_decimal_mark(ledger):
    body = (
        "name;domain;industry;headcount;annual_revenue;revenue_currency;country;region;"
        "growth_rate;source\r\n"
        "Acme, Inc;acme.de;software;1.200;40.000.000;EUR;DE;Bayern;12,5;Messe\r\n"
        '"Semi; Colon";semi.example;software;10;1000;EUR;DE;;2,5%;Messe\r\n'
        "Half;half.example;software;1,5;1000;EUR;DE;;2,5;Messe\r\n"
        "Loose;loose.example;software;10;1000;EUR;DE;;2,5;Messe;extra\r\n"
    )

    report = import_rows(ledger, body.encode(), META)

    assert report.registered == 2
    acme = account_of(ledger, "acme.de").firmographics
    assert (acme.name, acme.headcount, acme.annual_revenue, acme.growth_rate) == (
        "Acme, Inc",
        1200,
        40_000_000,
        12.5,
    )
    assert account_of(ledger, "semi.example").firmographics.name == "Semi; Colon"
    assert [(e.line, e.column, e.reason) for e in report.errors] == [
        (4, "headcount", "'1,5' is not a whole number"),
        (
            5,
            "row",
            "11 cells but the header has 10 columns (is a semicolon in a value not quoted?)",
        ),
    ]


def test_a_header_line_with_a_comma_is_read_as_comma_separated(ledger):
    body = HEADER.replace("Source", "Source,Notes; internal") + (
        "Acme;Inc,acme.de,software,1200,40000000,EUR,DE,,2.5,fair,a;b\n"
    )

    report = import_rows(ledger, body.encode(), META)

    assert report.registered == 1
    assert account_of(ledger, "acme.de").firmographics.name == "Acme;Inc"


def test_a_file_with_a_byte_order_mark_and_every_cell_quoted_is_read(ledger):
    # As PowerShell's Export-Csv writes it: a byte-order mark, then a quoted title.
    quoted = ",".join(f'"{title}"' for title in HEADER.strip().split(","))
    body = (
        "\ufeff"
        + quoted
        + '\r\n"Acme","acme.de","software","10","1000","EUR","DE","","2.5","fair"\r\n'
    )

    report = import_rows(ledger, body.encode(), META)

    assert (report.refused, report.registered) == (None, 1)
    assert account_of(ledger, "acme.de").firmographics.name == "Acme"


# A quote that is never closed ----------------------------------------------------------


def test_a_quote_never_closed_refuses_the_file_naming_the_line_it_opens_on(ledger):
    body = (
        HEADER
        + "Acme,acme.de,software,10,1000,EUR,DE,,2.5,fair\n"
        + '"Open quote,openq.de,software,10,1000,EUR,DE,,2.5,fair\n'
        + "Beta,beta.example,software,10,1000,EUR,DE,,2.5,fair\n"
        + "Gamma,gamma.example,software,10,1000,EUR,DE,,2.5,fair\n"
    )

    report = import_rows(ledger, body.encode(), META)

    assert report.refused == (
        'line 3: the quote (") that opens a cell is never closed, so the rest of the file'
        " would be read as that one cell"
    )
    assert (report.registered, report.errors) == (0, [])
    assert events_in_store(ledger) == 0


def test_an_upload_whose_unclosed_quote_swallows_a_long_rest_is_refused(client, ledger):
    body = (
        HEADER
        + good_rows(1)
        + '"Open quote,openq.example,software,10,1000,EUR,DE,,2.5,list\n'
        + good_rows(3000, start=1)
    ).encode()

    upload = client.post("/imports", content=body, headers={"Content-Type": "text/csv"})
    job = finished(client, upload.headers["location"])

    assert job["status"] == "failed", job
    assert job["error"] == (
        "line 3: a cell is longer than 131072 characters (is a quote opened there never closed?)"
    )
    assert job["result"]["refused"] == job["error"]
    assert job["result"]["registered"] == 0
    assert account_events(ledger) == 0


# A web address in the Website column ---------------------------------------------------


def test_a_web_address_in_the_website_column_is_read_as_its_host(ledger):
    body = (
        HEADER
        + "Sparkasse,https://www.sp.de/,banking,10,1000,EUR,DE,,2.5,fair\n"
        + "Beta,beta.example/about,software,10,1000,EUR,DE,,2.5,fair\n"
        + "Intranet,https://intranet/,software,10,1000,EUR,DE,,2.5,fair\n"
        + "Mail,mailto:info@mail.example,software,10,1000,EUR,DE,,2.5,fair\n"
        + "Files,ftp://files.example/,software,10,1000,EUR,DE,,2.5,fair\n"
    )

    report = import_rows(ledger, body.encode(), META)
    again = import_rows(
        ledger,
        (HEADER + "Sparkasse,HTTP://SP.de,banking,10,1000,EUR,DE,,2.5,fair\n").encode(),
        META,
    )

    assert report.registered == 2
    assert account_of(ledger, "sp.de").firmographics.domain == "sp.de"
    assert account_of(ledger, "beta.example").firmographics.name == "Beta"
    assert {(e.line, e.column) for e in report.errors} == {
        (4, "Website"),
        (5, "Website"),
        (6, "Website"),
    }
    reasons = {e.line: e.reason for e in report.errors}
    assert "'https://intranet/' is not a web domain" in reasons[4]
    assert (again.registered, again.unchanged) == (0, 1)


# More cells than the header has columns ------------------------------------------------


def test_a_row_with_more_cells_than_the_header_is_reported_and_not_imported(ledger):
    body = (
        HEADER
        + "Acme, Inc,acme.de,software,10,1000,EUR,DE,,2.5,fair\n"  # unquoted comma
        + "Beta,beta.example,software,10,1000,EUR,DE,,2.5,fair,extra\n"
        + '"Gamma, Inc",gamma.example,software,10,1000,EUR,DE,,2.5,fair\n'
    )

    report = import_rows(ledger, body.encode(), META)

    assert report.registered == 1
    assert [(e.line, e.column) for e in report.errors] == [(2, "row"), (3, "row")]
    assert "11 cells but the header has 10 columns" in report.errors[0].reason
    assert report.rejected == 2
    assert account_of(ledger, "gamma.example").firmographics.name == "Gamma, Inc"
    assert events_in_store(ledger) == 1


# nan and inf are not numbers -----------------------------------------------------------


def test_a_growth_rate_of_nan_or_inf_is_not_a_number(ledger):
    body = (
        HEADER
        + "Acme,acme.de,software,10,1000,EUR,DE,,nan,fair\n"
        + "Beta,beta.example,software,10,1000,EUR,DE,,inf,fair\n"
        + "Gamma,gamma.example,software,10,1000,EUR,DE,,-Infinity%,fair\n"
    )

    report = import_rows(ledger, body.encode(), META)

    assert [(e.line, e.column, e.reason) for e in report.errors] == [
        (2, "Growth", "'nan' is not a number"),
        (3, "Growth", "'inf' is not a number"),
        (4, "Growth", "'-Infinity%' is not a number"),
    ]
    assert events_in_store(ledger) == 0


# Uploading the same file again adds the job's events, no account event -----------------


def test_uploading_the_same_file_again_adds_no_account_event(ledger, settings):
    runner = JobRunner(ledger, settings)
    body = (HEADER + "Acme,acme.de,software,10,1000,EUR,DE,Bavaria,2.5,fair\n").encode()
    runner.submit_import(body, META, strict=False, screen_with=None)
    runner.wait()
    accounts, everything = account_events(ledger), events_in_store(ledger)

    second = runner.submit_import(body, META, strict=False, screen_with=None).value
    runner.wait()

    assert ledger.job(second.id).result["unchanged"] == 1
    assert account_events(ledger) == accounts
    assert events_in_store(ledger) > everything  # the second job's own record


# CSV exports neutralise formulas --------------------------------------------------------


def _hostile_account(client) -> tuple[dict, int]:
    response = client.post(
        "/accounts",
        json=registration(name=FORMULA, domain="evil.example"),
        headers={"X-Actor": "@SUM(1)"},
    )
    assert response.status_code == 201, response.text
    account = command(client, response.json(), "screening", {"outcome": "qualified"})
    rated = client.put(
        f"/accounts/{account['id']}/bant",
        json={"budget": 4, "authority": 3, "need": 5, "timing": 2, "reason": "-2+3"},
    )
    assert rated.status_code == 200, rated.text
    return account, int(rated.headers["crm-position"])


def test_account_and_leaderboard_csv_exports_neutralise_formulas(client, projector):
    _, position = _hostile_account(client)
    projector.wait_for("accounts", position, 10)

    accounts = list(csv.DictReader(io.StringIO(client.get("/accounts/export?format=csv").text)))
    board = list(csv.DictReader(io.StringIO(client.get("/leaderboards/bant/export").text)))
    jsonl = client.get("/accounts/export", params={"format": "jsonl"}).text.splitlines()

    assert [r["name"] for r in accounts] == ["'" + FORMULA]
    assert [r["name"] for r in board] == ["'" + FORMULA]
    assert board[0]["score"] == "120"
    assert [json.loads(line)["name"] for line in jsonl] == [FORMULA]


def test_an_exported_row_imported_again_holds_the_text_not_the_quote_before_it(client, projector):
    # Given an account whose name an export writes with a quote before it
    account, position = _hostile_account(client)
    projector.wait_for("accounts", position, 10)
    (exported,) = csv.DictReader(io.StringIO(client.get("/accounts/export?format=csv").text))

    # When a file with that cell, and an industry written the same way, is imported
    file = io.StringIO()
    csv.writer(file).writerow(
        [exported["name"], "evil.example", "'-tools", 10, 1000, "EUR", "DE", "", 2.5, "fair"]
    )
    upload = client.post(
        "/imports", content=HEADER + file.getvalue(), headers={"Content-Type": "text/csv"}
    )
    job = finished(client, upload.headers["location"])

    # Then the name is the one stored, not changed, and the industry is the text
    stored = client.get(f"/accounts/{account['id']}").json()
    assert exported["name"] == "'" + FORMULA
    assert job["result"]["errors"] == []
    assert (stored["name"], stored["industry"]) == (FORMULA, "-tools")


def test_an_accounts_export_edited_in_a_spreadsheet_imports_back_as_updates(client):
    # Given two accounts, one of them corrected since it was registered
    kept = client.post("/accounts", json=registration(domain="kept.example")).json()
    moved = client.post("/accounts", json=registration(domain="moved.example")).json()
    corrected = client.patch(
        f"/accounts/{moved['id']}", json={"growth_rate": 0.00001, "source": "partner: Hansa"}
    )
    position = int(corrected.headers["crm-position"])
    exported = client.get("/accounts/export", params={"format": "csv", "min_position": position})
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {(r["domain"], r["growth_rate"], r["source"]) for r in rows} == {
        ("kept.example", "12.5", "trade fair"),
        ("moved.example", "0.00001", "partner: Hansa"),  # as an import reads it, not 1e-05
    }

    # When the file comes back with one headcount changed, every other column as exported
    for row in rows:
        if row["domain"] == "moved.example":
            row["headcount"] = "260"
    file = io.StringIO()
    writer = csv.DictWriter(file, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    upload = client.post("/imports", content=file.getvalue(), headers={"Content-Type": "text/csv"})
    job = finished(client, upload.headers["location"])

    # Then it is read whole: one update, one company unchanged, nothing refused
    assert job["status"] == "finished", job
    result = job["result"]
    assert (result["errors"], result["updated"], result["unchanged"]) == ([], 1, 1)
    stored = client.get(f"/accounts/{moved['id']}").json()
    assert (stored["headcount"], stored["growth_rate"], stored["source"]) == (
        260,
        0.00001,
        "partner: Hansa",
    )
    assert client.get(f"/accounts/{kept['id']}").json()["headcount"] == 250


def test_an_export_asked_with_a_byte_order_mark_opens_as_utf_8_and_imports_back(client):
    # Given a company whose name is not ASCII, as Excel would garble it without the mark
    made = client.post("/accounts", json=registration(name="Société Générale Юг"))
    position = made.headers["crm-position"]
    wait = {"min_position": position}

    plain = client.get("/accounts/export", params=wait)
    marked = client.get("/accounts/export", params={**wait, "bom": "true"})
    board = client.get("/leaderboards/bant/export", params={**wait, "bom": "true"})
    jsonl = client.get("/accounts/export", params={**wait, "format": "jsonl", "bom": "true"})

    assert not plain.content.startswith(b"\xef\xbb\xbf")  # as programs read CSV, by default
    assert marked.content == b"\xef\xbb\xbf" + plain.content
    assert board.content.startswith(b"\xef\xbb\xbfrank,account_id,")
    assert marked.headers["content-type"] == "text/csv; charset=utf-8"
    assert (jsonl.status_code, jsonl.json()["field"]) == (400, "bom")
    # Imported back as it is, the marked file changes nothing and refuses no row
    upload = client.post("/imports", content=marked.content, headers={"Content-Type": "text/csv"})
    job = finished(client, upload.headers["location"])
    assert (job["result"]["errors"], job["result"]["unchanged"]) == ([], 1)


def test_crm_export_writes_a_byte_order_mark_when_asked_and_only_in_csv(ledger, settings, tmp_path):
    import_rows(ledger, (HEADER + "Müller,mueller.example,it,5,1,EUR,DE,,1,list\n").encode(), META)
    out = tmp_path / "accounts.csv"

    marked = run_crm(settings, "export", "accounts", "--bom", "--out", str(out))
    jsonl = run_crm(settings, "export", "accounts", "--bom", "--format", "jsonl")

    assert marked.returncode == 0, marked.stderr
    assert out.read_bytes().startswith("\ufeffaccount_id,name".encode())
    assert "Müller" in out.read_text(encoding="utf-8-sig")
    assert (jsonl.returncode, jsonl.stdout) == (2, "")
    assert "--bom is for CSV only" in jsonl.stderr


def test_a_negative_number_and_a_text_that_begins_with_a_quote_come_back_as_they_went(client):
    # Given an account shrinking, named as a spreadsheet would show a formula's text
    account = client.post(
        "/accounts", json=registration(name="'=1+1", domain="quoted.example", growth_rate=-5.5)
    )
    position = int(account.headers["crm-position"])
    exported = client.get("/accounts/export", params={"format": "csv", "min_position": position})
    (row,) = csv.DictReader(io.StringIO(exported.text))

    # When the file comes back as it was exported
    upload = client.post("/imports", content=exported.text, headers={"Content-Type": "text/csv"})
    job = finished(client, upload.headers["location"])

    # Then the number was a number, the quote was kept, and nothing changed
    assert (row["growth_rate"], row["name"]) == ("-5.5", "''=1+1")
    assert (job["result"]["errors"], job["result"]["unchanged"]) == ([], 1)
    stored = client.get(account.headers["location"]).json()
    assert (stored["name"], stored["growth_rate"]) == ("'=1+1", -5.5)


def test_an_empty_upload_is_refused_at_once_and_starts_no_job(client):
    for body in (b"", b" \r\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n"):  # a byte-order mark alone too
        refused = client.post("/imports", content=body, headers={"Content-Type": "text/csv"})

        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["type"] == "urn:crm:problem:empty-file"
        assert "location" not in refused.headers


def test_an_export_waits_for_min_position_and_says_where_the_read_models_stood(client):
    registered = client.post("/accounts", json=registration(domain="fresh.example"))
    position = int(registered.headers["crm-position"])

    exports = {
        path: client.get(path, params={"format": "jsonl", "min_position": position})
        for path in ("/accounts/export", "/leaderboards/bant/export")
    }
    beyond = client.get("/accounts/export", params={"min_position": position + 1000})

    listed = exports["/accounts/export"].text.splitlines()
    assert [json.loads(line)["domain"] for line in listed] == ["fresh.example"]
    for answer in exports.values():
        assert answer.status_code == 200, answer.text
        assert int(answer.headers["crm-position"]) >= position
        assert "crm-stale" not in answer.headers
    assert beyond.status_code == 200
    assert beyond.headers["crm-stale"] == "true"


def test_crm_export_neutralises_formulas(client, projector, settings, tmp_path):
    _, position = _hostile_account(client)
    out = tmp_path / "board.csv"

    done = run_crm(settings, "export", "leaderboard", "--format", "csv", "--out", str(out))

    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert [r["name"] for r in rows] == ["'" + FORMULA]


def test_the_audit_csv_export_neutralises_what_it_shows_and_still_verifies(client, tmp_path):
    account, _ = _hostile_account(client)

    history = client.get(f"/accounts/{account['id']}/history", params={"format": "csv"})
    whole = client.get("/audit/export", params={"format": "csv"})
    jsonl = client.get(f"/accounts/{account['id']}/history", params={"format": "jsonl"})

    rows = [r for r in csv.DictReader(io.StringIO(history.text)) if r["record"] == "event"]
    assert rows[0]["actor"] == "'@SUM(1)"  # who registered it
    assert rows[-1]["reason"] == "'-2+3"
    assert json.loads(rows[0]["state"])["name"] == FORMULA  # the stored bytes, exactly
    for name, export in (("history.csv", history), ("ledger.csv", whole)):
        path = tmp_path / name
        path.write_bytes(export.content)
        checked = verify_offline(path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    events = [r for r in map(json.loads, jsonl.text.splitlines()) if r["record"] == "event"]
    assert events[0]["actor"] == "@SUM(1)"


def test_digits_grouped_otherwise_than_by_threes_are_no_number_rather_than_another_one(ledger):
    # "12,5" employees read as 125, or "1.2" as 12, would store a figure nobody wrote.
    header = (
        "name,domain,industry,headcount,annual_revenue,revenue_currency,country,growth_rate,"
        "source\n"
    )
    comma = header + (
        'A,a.example,it,"12,5",100,EUR,DE,1,x\n'
        'B,b.example,it,10,",100",EUR,DE,1,x\n'
        "C,c.example,it,1_000,100,EUR,DE,1,x\n"
        "D,d.example,it,\u0661\u0660,100,EUR,DE,1,x\n"
        'E,e.example,it,"1,200","40,000,000",EUR,DE,"12,5",x\n'
    )
    semicolon = header.replace(",", ";") + (
        "F;f.example;it;1.2;100;EUR;DE;1;x\n"
        "G;g.example;it;10;12.00;EUR;DE;1;x\n"
        "H;h.example;it;10;1.00.0;EUR;DE;1;x\n"
    )

    first = import_rows(ledger, comma.encode(), META)
    second = import_rows(ledger, semicolon.encode(), META)

    assert [(e.line, e.reason) for e in first.errors + second.errors] == [
        (2, "'12,5' is not a whole number"),
        (3, "',100' is not a number"),
        (4, "'1_000' is not a number"),
        (5, "'\u0661\u0660' is not a number"),
        (2, "'1.2' is not a whole number"),
        (3, "'12.00' is not a whole number"),
        (4, "'1.00.0' is not a number"),
    ]
    e = account_of(ledger, "e.example").firmographics
    assert (e.headcount, e.annual_revenue, e.growth_rate) == (1200, 40_000_000, 12.5)
    assert (first.registered, second.registered) == (1, 0)


def test_a_number_of_more_digits_than_any_field_holds_is_named_as_such(ledger):
    # Python's int() refuses a text of over 4,300 digits, with a message of its own.
    header = (
        "name,domain,industry,headcount,annual_revenue,revenue_currency,country,growth_rate,"
        "source\n"
    )
    rows = (
        f"A,a.example,it,10,{'9' * 4301},EUR,DE,1,x\n"
        f"B,b.example,it,{'9' * 20},100,EUR,DE,1,x\n"
        f"C,c.example,it,-{'0' * 4400}12,100,EUR,DE,1,x\n"
        f"D,d.example,it,+{'0' * 4400}12,100,EUR,DE,1,x\n"
    )

    report = import_rows(ledger, (header + rows).encode(), META)

    assert [(e.line, e.column, e.reason[-30:]) for e in report.errors] == [
        (2, "annual_revenue", "is not a number any field can hold"[-30:]),
        (3, "headcount", "is not a number any field can hold"[-30:]),
        (4, "headcount", "Expected `int` >= 1"),
    ]
    assert account_of(ledger, "d.example").firmographics.headcount == 12


def test_exports_write_instants_as_the_json_answers_do(client, projector):
    account, position = _hostile_account(client)
    projector.wait_for("accounts", position, 10)
    board = client.get("/leaderboards/bant").json()["items"][0]

    exported = list(csv.DictReader(io.StringIO(client.get("/leaderboards/bant/export").text)))
    listed = json.loads(client.get("/accounts/export", params={"format": "jsonl"}).text)

    assert exported[0]["scored_at"] == board["scored_at"]
    assert exported[0]["scored_at"].endswith("Z")
    assert listed["registered_at"] == account["registered_at"]


def test_codes_in_lower_case_and_a_percent_after_a_space_are_read_as_typed_in_a_sheet(ledger):
    body = (
        HEADER
        + "Lower,lower.example,software,10,1000,eur,de,,7 %,fair\n"
        + "Mixed,mixed.example,software,10,1000,Chf,Ch,,7.5 %,fair\n"
        + "Wrong,wrong.example,software,10,1000,eur,zz,,7,fair\n"
        + "French,french.example,software,10,1000,EUR,FR,,12.5\u202f%,fair\n"
        + "Paris,paris.example,software,10,1000,EUR,FR,,3\u00a0%,fair\n"
    )

    report = import_rows(ledger, body.encode(), META)

    assert [(e.line, e.column, e.reason) for e in report.errors] == [
        (4, "Country", "'zz' is not an ISO 3166-1 country code")  # quoted as typed
    ]
    assert report.registered == 4
    assert account_of(ledger, "french.example").firmographics.growth_rate == 12.5
    assert account_of(ledger, "paris.example").firmographics.growth_rate == 3.0
    lower = account_of(ledger, "lower.example").firmographics
    assert (lower.revenue_currency, lower.country, lower.growth_rate) == ("EUR", "DE", 7.0)
    mixed = account_of(ledger, "mixed.example").firmographics
    assert (mixed.revenue_currency, mixed.country, mixed.growth_rate) == ("CHF", "CH", 7.5)
