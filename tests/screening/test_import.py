"""Bulk import of target lists, and exports, on both stores."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from domain.account import account_id_for
from domain.ledger import CommandMeta
from domain.screening_policy import Criteria
from services.audit import Audit
from services.importing import import_rows, parse
from services.store import open_ledger
from tests.audit.tampering import RawStore
from tests.processes import crm_environment, run_crm

ROOT = Path(__file__).parent.parent.parent
META = CommandMeta("importer")
HEADER = "Company,Website,Industry,Employees,Revenue,Currency,Country,Region,Growth,Source\n"


def good_rows(count: int, start: int = 0) -> str:
    return "".join(
        f"Company {i},company{i}.example,software,{10 + i % 900},{1000 * i},EUR,DE,,2.5,list\n"
        for i in range(start, start + count)
    )


def messy_file() -> bytes:
    text = (
        HEADER
        + good_rows(2000)
        + "Twin,company5.example,software,10,1,EUR,DE,,1,list\n"  # duplicate domain
        + "No Size,nosize.example,software,,1,EUR,DE,,1,list\n"  # empty required cell
        + "Bad Number,badnumber.example,software,many,1,EUR,DE,,1,list\n"
        + "Bad Country,badcountry.example,software,5,1,EUR,Germany,,1,list\n"
        + "Bad Domain,https://bad/domain,software,5,1,EUR,DE,,1,list\n"
        + "No Such Country,nosuchcountry.example,software,5,1,EUR,XX,,1,list\n"
    )
    return text.encode() + "Caf\xe9 Latin1,latin.example,food,5,1,EUR,FR,,1,list\n".encode(
        "latin-1"
    )


def events_in_store(ledger) -> int:
    # Counted, not read off the last position: on PostgreSQL a transaction cut short by a
    # killed process still used up its positions, leaving a gap.
    return len(ledger.recorder.select_notifications(1, 1_000_000))


def test_good_rows_land_and_every_bad_row_is_reported_by_line_column_and_reason(ledger):
    report = import_rows(ledger, messy_file(), META)

    assert report.registered == 2000
    errors = {(e.line, e.column) for e in report.errors}
    assert errors == {
        (2002, "Website"),
        (2003, "Employees"),
        (2004, "Employees"),
        (2005, "Country"),
        (2006, "Website"),
        (2007, "Country"),
        (2008, "Company"),
    }
    reasons = {e.line: e.reason for e in report.errors}
    assert reasons[2002] == "duplicate of line 7"
    assert reasons[2003] == "empty"
    assert "not a number" in reasons[2004]
    assert reasons[2007] == "'XX' is not an ISO 3166-1 country code"
    assert "UTF-8" in reasons[2008]
    assert report.rejected == 7
    assert events_in_store(ledger) == 2000


def test_a_file_of_bad_rows_lists_its_first_thousand_errors_and_counts_them_all(ledger):
    # Each row with two bad values, the first of them a cell far too long to quote whole
    bad = "".join(
        f"Co {i},co{i}.example,software,{'9' * 5000}x,1,EUR,XX,,1,list\n" for i in range(1500)
    )

    report = import_rows(ledger, (HEADER + bad + good_rows(1)).encode(), META)

    assert (report.registered, report.rejected, report.error_count) == (1, 1500, 3000)
    assert len(report.errors) == 1000
    assert [e.line for e in report.errors[:4]] == [2, 2, 3, 3]
    assert report.errors[-1].line == 501
    first = report.errors[0].reason
    assert first == f"'{'9' * 60}'… (5001 characters) is not a number"
    assert events_in_store(ledger) == 1


def test_every_bad_value_of_a_row_is_named_at_once(ledger):
    rows = (
        "A,two.example,it,1,1,XXX,XX,,1," + "s" * 201 + "\n"  # currency, country, source
        "B,three.example,it,many,1,XXX,DE,,abc,s\n"  # not numbers, and a currency
        "C,intranet,it,many,1,EUR,DE,,1,s\n"  # a domain, and a number
        "D,https://intranet/,it,1,1,XXX,DE,,1,s\n"  # a domain, and a currency
    )
    no_domain = "is not a web domain such as 'acme.com' or a web address such as"

    report = import_rows(ledger, (HEADER + rows).encode(), META)

    assert [(e.line, e.column, e.reason) for e in report.errors] == [
        (2, "Currency", "'XXX' is not an ISO 4217 currency code"),
        (2, "Country", "'XX' is not an ISO 3166-1 country code"),
        (2, "Source", "Expected `str` of length <= 200"),
        (3, "Employees", "'many' is not a number"),
        (3, "Currency", "'XXX' is not an ISO 4217 currency code"),
        (3, "Growth", "'abc' is not a number"),
        (4, "Website", f"'intranet' {no_domain} 'https://www.acme.com/'"),
        (4, "Employees", "'many' is not a number"),
        (5, "Website", f"'https://intranet/' {no_domain} 'https://www.acme.com/'"),
        (5, "Currency", "'XXX' is not an ISO 4217 currency code"),
    ]
    assert events_in_store(ledger) == 0


def test_a_re_import_changes_nothing_and_a_changed_row_updates_only_it(ledger):
    import_rows(ledger, messy_file(), META)
    stored = events_in_store(ledger)

    again = import_rows(ledger, messy_file(), META)
    changed = import_rows(ledger, (HEADER + good_rows(1).replace(",10,", ",11,")).encode(), META)

    assert (again.registered, again.updated, again.unchanged) == (0, 0, 2000)
    assert (changed.updated, changed.unchanged) == (1, 0)
    assert events_in_store(ledger) == stored + 1
    (account_id,) = changed.account_ids
    last = ledger.history(account_id)[-1]
    assert type(last).__name__ == "FirmographicsUpdated"
    assert last.changes == {"headcount": 11}


def test_rows_are_stored_many_to_a_transaction_each_answered_in_the_files_order(ledger):
    saves: list[int] = []
    ledger.on_saved.append(saves.append)

    report = import_rows(ledger, (HEADER + good_rows(250)).encode(), META)

    assert (report.registered, report.rejected) == (250, 0)
    assert report.account_ids == [account_id_for(f"company{i}.example") for i in range(250)]
    assert len(saves) <= 250 // 10  # one commit a row would be 250
    policy = ledger.create_policy(Criteria(headcount_min=1000), META).value
    saves.clear()

    decisions = ledger.apply_policy(policy, report.account_ids, META)

    assert sum(d.applies for d in decisions) == 250
    assert len(saves) <= 250 // 10


def test_a_parsed_file_holds_what_repeats_from_row_to_row_once():
    # A file is held parsed until its last row is stored: an upload of 50 MB is about 650,000
    # rows, each row's industry, country and set of columns the same as the row before's.
    data = (HEADER + good_rows(20_000)).encode()
    tracemalloc.start()
    try:
        rows = parse(data, None, [].extend)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(rows) == 20_000
    assert held / len(rows) < 700  # bytes; 1,300 when each row held copies of its own


def test_imports_ask_the_store_about_their_rows_a_window_at_a_time(ledger, settings, monkeypatch):
    questions: list[str] = []

    def counted(through, name: str):
        asked = getattr(through.recorder, name)

        def question(*args, **kwargs):
            questions.append(name)
            return asked(*args, **kwargs)

        return question

    def counting(through) -> None:
        # An account's events; accounts' last versions; accounts' events, read together
        for name in ("select_events", "last_versions", "select_events_of"):
            monkeypatch.setattr(through.recorder, name, counted(through, name))

    counting(ledger)
    file = (HEADER + good_rows(250)).encode()

    first = import_rows(ledger, file, META)
    asked_first = len(questions)
    again = import_rows(ledger, file, META)
    asked_again = len(questions) - asked_first
    renamed = good_rows(1, start=7).replace("Company 7,", "Company 7b,")
    assert import_rows(ledger, (HEADER + renamed).encode(), META).updated == 1
    restarted = open_ledger(settings)  # as `crm import` or a restarted server: nothing cached
    counting(restarted)
    questions.clear()
    try:
        changed = good_rows(250).replace("Company 7,", "Company Seven,")
        elsewhere = import_rows(restarted, (HEADER + changed).encode(), META)
        asked_elsewhere = list(questions)
        questions.clear()
        repeated = import_rows(restarted, (HEADER + changed).encode(), META)
    finally:
        restarted.close()

    assert (first.registered, first.rejected) == (250, 0)
    assert (again.unchanged, again.rejected) == (250, 0)
    assert (elsewhere.updated, elsewhere.unchanged, elsewhere.rejected) == (1, 249, 0)
    # A question a row would be 250 each: whether the company is new, whether anyone changed
    # the account since this process last stored it, and the account as stored.
    assert asked_first <= 250 // 10
    assert asked_again <= 250 // 10
    assert len(asked_elsewhere) <= 2 * 250 // 10
    assert "select_events" not in asked_elsewhere  # nor for the event the update links to
    # The accounts it read and left unchanged are kept: the same file again reads none.
    assert (repeated.unchanged, repeated.rejected) == (250, 0)
    assert len(questions) <= 250 // 10
    assert not {"select_events", "select_events_of"} & set(questions)
    seventh = first.account_ids[7]
    assert all(len(ledger.history(a)) == 1 for a in first.account_ids if a != seventh)
    assert [e.changes for e in ledger.history(seventh)[1:]] == [
        {"name": "Company 7b"},
        {"name": "Company Seven"},
    ]
    assert Audit(ledger).verify_all().verified  # the update links to the event it follows


def test_strict_refuses_the_whole_file_and_a_missing_column_refuses_it_too(ledger):
    strict = import_rows(ledger, messy_file(), META, strict=True)
    no_country = import_rows(ledger, b"name,domain,industry\nA,a.com,it\n", META)

    assert strict.refused and strict.registered == 0
    assert no_country.refused.startswith("missing column(s): headcount")
    assert events_in_store(ledger) == 0


def test_strict_mode_checks_the_file_not_the_store_a_row_refused_there_leaves_the_others(
    ledger, settings
):
    import_rows(ledger, (HEADER + good_rows(1, start=2)).encode(), META)
    # That company's stored record can no longer be read: the store refuses to update it.
    RawStore(settings, ledger).garble_state(account_id_for("company2.example"), 1)
    restarted = open_ledger(settings)  # this ledger's writer still holds the record as written
    try:
        report = import_rows(restarted, (HEADER + good_rows(5)).encode(), META, strict=True)
    finally:
        restarted.close()

    assert report.refused is None
    assert (report.registered, report.rejected) == (4, 1)
    assert [(e.line, e.column) for e in report.errors] == [(4, "row")]
    assert events_in_store(ledger) == 5


def test_an_import_killed_midway_and_run_again_doubles_nothing(ledger, settings, tmp_path):
    path = tmp_path / "targets.csv"
    path.write_text(HEADER + good_rows(3000))
    command = [sys.executable, "-m", "services.cli", "import", str(path)]
    env = crm_environment(settings)

    first = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while events_in_store(ledger) < 200:
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)  # polling the store for the other process's progress
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert events_in_store(ledger) < 3000

    second = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert second.returncode == 0, second.stderr
    assert events_in_store(ledger) == 3000
    assert "0 rejected" in second.stdout


def test_crm_import_prints_the_files_own_text_in_its_report(settings, tmp_path):
    path = tmp_path / "[targets].csv"
    path.write_text(HEADER + "Bad Co,bad.example,software,[/x],1,EUR,DE,,2.5,list\n")

    done = run_crm(settings, "import", str(path))

    assert done.returncode == 1, done.stderr
    assert "[/x]" in done.stdout
    assert "Traceback" not in done.stderr


def test_crm_import_says_how_many_errors_it_did_not_list(settings, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        HEADER + "".join(f"Co {i},co{i}.example,software,many,1,EUR,DE,,1,x\n" for i in range(1200))
    )

    done = run_crm(settings, "import", str(path))

    assert done.returncode == 1, done.stderr
    assert "and 200 more errors, not listed" in done.stdout
    assert "0 registered, 0 updated, 0 unchanged, 1200 rejected" in done.stdout


def test_crm_import_refuses_a_file_it_cannot_read_with_exit_2(settings, tmp_path):
    (tmp_path / "folder.csv").mkdir()
    for path, reason in [
        (tmp_path / "missing.csv", "No such file or directory"),
        (tmp_path / "folder.csv", "Is a directory"),
    ]:
        done = run_crm(settings, "import", str(path))

        assert done.returncode == 2
        assert done.stderr == f"crm import: refused: {path}: {reason}\n"


def test_crm_import_refuses_a_policy_version_that_does_not_exist_before_storing_a_row(
    ledger, settings, tmp_path
):
    path = tmp_path / "targets.csv"
    path.write_text(HEADER + good_rows(2))

    done = run_crm(settings, "import", "--screen-with", "7", str(path))

    assert done.returncode == 2
    assert done.stderr == ("crm import: --screen-with 7: There is no screening policy version 7.\n")
    assert events_in_store(ledger) == 0


def test_crm_import_reads_a_file_in_the_charset_it_is_told(ledger, settings, tmp_path):
    path = tmp_path / "targets.csv"
    path.write_bytes(
        f"{HEADER}Müller – Café,mueller.example,software,10,1,EUR,DE,,1,list\n".encode("cp1252")
    )

    done = run_crm(settings, "import", "--charset", "windows-1252", str(path))
    unknown = run_crm(settings, "import", "--charset", "klingon", str(path))

    assert done.returncode == 0, done.stdout + done.stderr
    assert ledger.account(account_id_for("mueller.example")).firmographics.name == "Müller – Café"
    assert unknown.returncode == 2
    assert "klingon" in unknown.stderr
    assert events_in_store(ledger) == 1


def test_exports_write_what_a_spreadsheet_opens(client, ledger, projector):
    import_rows(ledger, (HEADER + good_rows(30)).encode(), META)
    head = events_in_store(ledger)
    projector.wait_for("accounts", head, 10)

    as_csv = client.get("/accounts/export", params={"format": "csv"})
    as_jsonl = client.get("/accounts/export", params={"format": "jsonl"})
    board = client.get("/leaderboards/bant/export")
    board_jsonl = client.get("/leaderboards/bant/export", params={"format": "jsonl"})
    assert board.headers["content-type"].startswith("text/csv")
    assert board_jsonl.headers["content-type"] == "application/x-ndjson"

    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_jsonl.headers["content-type"] == "application/x-ndjson"
    assert "attachment" in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == 30
    assert rows[0]["name"] == "Company 0" and rows[0]["abm_stage"] == "identified"
    lines = [json.loads(line) for line in as_jsonl.text.splitlines()]
    assert [r["domain"] for r in lines] == [r["domain"] for r in rows]
    assert board.text.splitlines()[0].startswith("rank,account_id,name,score")
    assert client.get("/accounts/export", params={"format": "xlsx"}).status_code == 400


def test_crm_export_writes_the_account_list_as_csv_and_jsonl(ledger, settings, tmp_path):
    import_rows(ledger, (HEADER + good_rows(3)).encode(), META)
    out = tmp_path / "accounts.csv"

    for args in (["--format", "csv", "--out", str(out)], ["--format", "jsonl"]):
        done = run_crm(settings, "export", "accounts", *args)
        assert done.returncode == 0, done.stderr
        if "--out" not in args:
            lines = [json.loads(line) for line in done.stdout.splitlines()]

    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["name"] for r in rows] == ["Company 0", "Company 1", "Company 2"]
    assert [r["domain"] for r in lines] == [r["domain"] for r in rows]


def test_a_utf_16_file_is_refused_saying_so(ledger):
    csv = "name,domain,industry,headcount,revenue,currency,country,growth_rate,source\n"

    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
        report = import_rows(ledger, csv.encode(encoding), META)
        assert report.refused == "the file is UTF-16, not UTF-8: save it as CSV in UTF-8"
    assert events_in_store(ledger) == 0
