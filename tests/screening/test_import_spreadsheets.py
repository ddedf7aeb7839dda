"""Files as spreadsheets and other CRMs save them: how they are labelled, laid out and
headed, and the web addresses their lists hold."""

from __future__ import annotations

import codecs

import pytest

from domain.account import account_id_for
from domain.errors import AccountNotFound
from domain.ledger import CommandMeta
from services.importing import UnknownCharset, import_rows, text_codec
from tests.screening.test_import import HEADER, events_in_store
from tests.screening.test_jobs import finished

META = CommandMeta("importer")
ROW = "software,10,1000,EUR,DE,,2.5,list\n"  # the columns after name and domain


def test_a_page_on_a_site_many_companies_share_names_no_company(ledger):
    # Given a list whose website column holds company profiles on shared sites
    body = (
        HEADER
        + f"Alpha Robotics,https://www.linkedin.com/company/alpha-robotics,{ROW}"
        + f"Beta Foods,https://de.linkedin.com/company/beta-foods/,{ROW}"
        + f"Gamma,sites.google.com/view/gamma,{ROW}"
        + f"Acme,https://www.acme.example/en/about,{ROW}"  # a company's own site
        + f"LinkedIn,https://www.linkedin.com/,{ROW}"  # the site's own company
    )

    report = import_rows(ledger, body.encode(), META)

    # Then each profile is refused, rather than every company on the site made one account
    reasons = {e.line: e.reason for e in report.errors}
    assert sorted(reasons) == [2, 3, 4]
    assert "a page on linkedin.com, a site many companies share" in reasons[2]
    assert "a page on linkedin.com" in reasons[3]
    assert "a page on sites.google.com" in reasons[4]
    assert report.registered == 2
    assert ledger.account(account_id_for("acme.example")).firmographics.name == "Acme"
    assert ledger.account(account_id_for("linkedin.com")).firmographics.name == "LinkedIn"


def test_a_byte_order_mark_of_utf_8_wins_over_the_charset_the_upload_names(ledger):
    # Given Excel's "CSV UTF-8", sent as windows-1252
    data = codecs.BOM_UTF8 + f"{HEADER}Société Générale,sg.example,{ROW}".encode()

    report = import_rows(ledger, data, META, charset="windows-1252")

    # Then it is read as UTF-8: its accents are stored as written
    assert (report.registered, report.errors) == (1, [])
    assert ledger.account(account_id_for("sg.example")).firmographics.name == "Société Générale"


def test_a_utf_8_file_sent_as_windows_1252_is_refused_rather_than_stored_garbled(ledger):
    # Given an export opened in a spreadsheet and saved again: UTF-8 bytes, no byte-order mark
    data = f"{HEADER}Société Générale,sg.example,{ROW}".encode()

    refused = import_rows(ledger, data, META, charset="windows-1252")
    ascii_only = import_rows(ledger, f"{HEADER}Plain,plain.example,{ROW}".encode(), META)
    latin = import_rows(
        ledger, f"{HEADER}Müller,mueller.example,{ROW}".encode("cp1252"), META, charset="cp1252"
    )

    # Then nothing of it is stored, and the refusal says how to send it
    assert refused.refused is not None and "the file is UTF-8, not windows-1252" in refused.refused
    assert "send it as UTF-8" in refused.refused
    assert refused.registered == 0
    # (a file that is what it says is read as before)
    assert (ascii_only.registered, latin.registered) == (1, 1)
    assert ledger.account(account_id_for("mueller.example")).firmographics.name == "Müller"
    assert events_in_store(ledger) == 2


@pytest.mark.parametrize("charset", ["utf-16", "UTF-16LE", "utf-16-be", "utf-32"])
def test_a_file_in_the_utf_16_or_utf_32_it_is_sent_as_is_read(ledger, charset):
    data = f"{HEADER}Société,sg.example,{ROW}".encode(charset)

    report = import_rows(ledger, data, META, charset=charset)

    assert (report.registered, report.errors, report.refused) == (1, [], None)
    assert ledger.account(account_id_for("sg.example")).firmographics.name == "Société"


@pytest.mark.parametrize("name", ["base64", "rot13", "idna", "klingon"])
def test_a_codec_that_reads_no_text_row_by_row_is_no_charset(name):
    with pytest.raises(UnknownCharset):
        text_codec(name)


@pytest.mark.parametrize(
    ("start", "kind"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00", "a ZIP archive (an Excel .xlsx"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook"),
        (b"\x1f\x8b\x08\x00", "compressed with gzip"),
    ],
)
def test_a_workbook_or_archive_is_refused_for_what_it_is(ledger, start, kind):
    report = import_rows(ledger, start + bytes(range(256)) * 4, META)

    assert report.refused is not None and report.refused.startswith(f"the file is {kind}")
    assert report.refused.endswith("not CSV text: save it as CSV and send that")
    assert events_in_store(ledger) == 0


def test_a_header_without_the_columns_is_refused_quoting_what_was_read(ledger):
    german = "Firmenname;Webseite;Branche;Mitarbeiter\nAcme;acme.example;software;10\n"

    report = import_rows(ledger, german.encode(), META)

    assert report.refused is not None
    assert report.refused.startswith("missing column(s): name, domain, industry, headcount")
    assert (
        "(the header line, read as semicolon-separated, has 'Firmenname', 'Webseite', "
        "'Branche', 'Mitarbeiter')" in report.refused
    )


def test_the_separator_a_first_line_names_is_taken_as_excel_takes_it(ledger):
    # Given a file whose first line names its separator, and a bad row on line 4
    body = (
        "sep=;\r\n"
        + HEADER.replace(",", ";")
        + "Acme, Inc.;acme.example;software;1.200;1000;EUR;DE;;2,5;list\n"
        + "Broken;broken.example;software;many;1000;EUR;DE;;2,5;list\n"
    )
    unknown = import_rows(ledger, b"sep=|\nname|domain\n", META)

    report = import_rows(ledger, body.encode(), META)

    # Then its cells are read with it, and lines are counted from the file's first
    assert report.registered == 1
    stored = ledger.account(account_id_for("acme.example")).firmographics
    assert (stored.name, stored.headcount, stored.growth_rate) == ("Acme, Inc.", 1200, 2.5)
    assert [(e.line, e.column) for e in report.errors] == [(4, "Employees")]
    assert unknown.refused is not None and "separator '|'" in unknown.refused


def test_column_titles_other_crms_export_are_understood(ledger):
    header = (
        "Account Name,Company Domain Name,Industry,Number of Employees,Annual Revenue,"
        "Currency,Country Code,Growth Rate,Lead Source\n"
    )

    report = import_rows(
        ledger, f"{header}Acme,acme.example,software,10,1,EUR,DE,1,web\n".encode(), META
    )

    assert (report.registered, report.refused) == (1, None)


def test_an_export_row_whose_domain_was_edited_is_refused_not_made_a_new_company(ledger):
    # Given an export's rows with their account ids, one of them with its domain edited
    import_rows(
        ledger, f"{HEADER}Firma,firma.example,{ROW}Other,other.example,{ROW}".encode(), META
    )
    firma, other = account_id_for("firma.example"), account_id_for("other.example")
    header = (
        "account_id,name,domain,industry,headcount,annual_revenue,revenue_currency,country,"
        "region,growth_rate,source\n"
    )
    body = (
        header
        + f"{firma},Firma,firma-typo-fixed.example,{ROW}"
        + f"{other},Other GmbH,other.example,{ROW}"  # its own: an update
        + f",New,new.example,{ROW}"  # no id: a new company
        + f"0015g00000XyZabAAB,Odd,odd.example,{ROW}"  # another system's id: not the CRM's
        + f"{{{str(firma).upper()}}},Firma,firma.example,{ROW}"  # its own id written otherwise
    )

    report = import_rows(ledger, body.encode(), META)

    # Then the edited row is refused by its id, and the others are read as ever
    reasons = {(e.line, e.column): e.reason for e in report.errors}
    assert sorted(reasons) == [(2, "account_id")]
    assert (
        "names another account than the domain 'firma-typo-fixed.example'"
        in reasons[2, "account_id"]
    )
    assert (report.registered, report.updated, report.unchanged) == (2, 1, 1)
    assert ledger.account(other).firmographics.name == "Other GmbH"
    with pytest.raises(AccountNotFound):
        ledger.account(account_id_for("firma-typo-fixed.example"))


def test_numbers_grouped_and_signed_as_european_sheets_write_them_are_read(ledger):
    body = (
        HEADER
        + "Paris,paris.example,software,1\u00a0200,40 000 000,EUR,FR,,+12 %,list\n"
        + "Zurich,zurich.example,software,1'200,40'000'000,CHF,CH,,+1.5,list\n"
        + "Mixed,mixed.example,software,1 200.000,1,EUR,DE,,1,list\n"  # two marks in one
    )

    report = import_rows(ledger, body.encode(), META)

    assert report.registered == 2
    for domain, growth in (("paris.example", 12.0), ("zurich.example", 1.5)):
        stored = ledger.account(account_id_for(domain)).firmographics
        assert (stored.headcount, stored.annual_revenue, stored.growth_rate) == (
            1200,
            40_000_000,
            growth,
        )
    assert [(e.line, e.column) for e in report.errors] == [(4, "Employees")]


def test_a_row_shifted_by_an_unquoted_comma_is_refused_even_when_its_last_value_is_empty(ledger):
    # Given a row whose source holds an unquoted comma, and whose region, the last column, is
    # empty: the comma shifts "Berlin" into the region, and the empty value beyond the header
    header = "name,domain,industry,headcount,annual_revenue,revenue_currency,country,"
    body = (
        header
        + "growth_rate,source,region\nAcme,acme.com,Software,10,100,EUR,DE,5,Partner, Berlin,\n"
    )

    report = import_rows(ledger, body.encode(), META)

    assert (report.registered, [(e.line, e.column) for e in report.errors]) == (0, [(2, "row")])


def test_a_cell_that_is_not_utf_8_says_which_charset_the_file_likely_is(ledger):
    report = import_rows(
        ledger, HEADER.encode() + f"Café,cafe.example,{ROW}".encode("cp1252"), META
    )

    (error,) = report.errors
    assert error.reason == (
        "not valid UTF-8 text (a file Excel on Windows saves as CSV is windows-1252: name that"
        " charset)"
    )


def test_an_upload_typed_as_browsers_type_a_csv_file_is_taken(client):
    body = f"{HEADER}Acme,acme.example,{ROW}".encode()

    for media_type in ("application/vnd.ms-excel", "text/plain", "application/csv"):
        upload = client.post("/imports", content=body, headers={"Content-Type": media_type})
        assert upload.status_code == 202, upload.text
        assert finished(client, upload.headers["location"])["status"] == "finished"
    assert (
        client.post("/imports", content=body, headers={"Content-Type": "image/png"}).status_code
        == 415
    )


def test_an_upload_that_names_utf_8_is_the_same_request_as_one_that_names_no_charset(client):
    body = f"{HEADER}Acme,acme.example,{ROW}".encode()
    key = {"Idempotency-Key": "list-2026-12"}

    first = client.post("/imports", content=body, headers={"Content-Type": "text/csv", **key})
    again = client.post(
        "/imports", content=body, headers={"Content-Type": "text/csv; charset=UTF-8", **key}
    )

    assert (first.status_code, again.status_code) == (202, 202), again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]


def test_an_id_column_of_another_crm_is_no_account_id_of_this_one(ledger):
    # Given a Salesforce or HubSpot export: its own ids, and a website beside the domain
    header = (
        "Account ID,Account Name,Company Domain Name,Website URL,Industry,Number of Employees,"
        "Annual Revenue,Currency,Country Code,Growth Rate,Lead Source\n"
    )
    rows = (
        "0015g00000XyZabAAB,Acme,acme.example,https://www.acme.example/en,software,10,1,EUR,DE,1,web\n"
        "f0b0c0d0-0000-4000-8000-000000000000,Beta,beta.example,,software,10,1,EUR,DE,1,web\n"
    )

    report = import_rows(ledger, (header + rows).encode(), META)

    assert (report.registered, report.errors, report.refused) == (2, [], None)


def test_the_charset_named_in_a_refusal_is_the_one_the_file_was_read_in(ledger):
    # Given Excel's "CSV UTF-8", labelled windows-1252, with a byte that is no UTF-8
    data = codecs.BOM_UTF8 + HEADER.encode() + b"Caf\xe9,cafe.example," + ROW.encode()

    report = import_rows(ledger, data, META, charset="windows-1252")

    (error,) = report.errors
    assert error.reason.startswith("not valid UTF-8 text (a file Excel on Windows saves as CSV")


def test_utf_8_named_as_utf_8_sig_is_utf_8_and_a_file_not_in_the_utf_16_named_is_refused(ledger):
    data = f"{HEADER}Société,sg.example,{ROW}".encode()

    sig = import_rows(ledger, data, META, charset="utf-8-sig")
    wide = import_rows(ledger, data, META, charset="utf-16")

    assert (sig.registered, sig.refused) == (1, None)
    assert wide.refused == "the file is not utf-16: send it as UTF-8, or name its charset"


def test_a_sep_line_padded_by_a_program_that_read_it_as_a_row_names_its_separator(ledger):
    body = (
        "sep=;;;;;;;;;\n" + HEADER.replace(",", ";") + f"Acme;acme.example;{ROW.replace(',', ';')}"
    )

    assert import_rows(ledger, body.encode(), META).registered == 1


def test_a_profile_on_a_shared_site_is_refused_however_its_host_is_written(ledger):
    body = (
        HEADER
        + f"Alpha,https://\uff4c\uff49\uff4e\uff4b\uff45\uff44\uff49\uff4e.com/company/a,{ROW}"
        + f"Beta,https://linkedin\u3002com/company/b,{ROW}"
        + f"Gamma,https://lnkd.in/gamma,{ROW}"
    )

    report = import_rows(ledger, body.encode(), META)

    assert [e.line for e in report.errors] == [2, 3, 4]
    assert all("a site many companies share" in e.reason for e in report.errors)


def test_a_whole_number_with_a_plus_sign_is_read(ledger):
    report = import_rows(
        ledger, f"{HEADER}Acme,acme.example,software,+12,1000,EUR,DE,,1,x\n".encode(), META
    )

    assert report.registered == 1
    assert ledger.account(account_id_for("acme.example")).firmographics.headcount == 12


@pytest.mark.parametrize("body", [b"\xff\xfe", b"\xff\xfe \x00\n\x00", b"\x00\x00\xfe\xff"])
def test_an_upload_of_a_byte_order_mark_of_utf_16_or_32_alone_is_empty(client, body):
    upload = client.post(
        "/imports", content=body, headers={"Content-Type": "text/csv; charset=utf-16"}
    )

    assert (upload.status_code, upload.json()["type"]) == (400, "urn:crm:problem:empty-file")
