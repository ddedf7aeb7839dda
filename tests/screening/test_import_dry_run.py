"""A dry run of an import: what each row would do to the companies the CRM knows, with every
field it would change, before anything is stored."""

from __future__ import annotations

from domain.account import account_id_for
from domain.ledger import CommandMeta
from services.importing import import_rows
from tests.processes import run_crm
from tests.screening.test_import import HEADER, events_in_store
from tests.screening.test_jobs import finished

META = CommandMeta("importer")
KNOWN = f"{HEADER}Firma 5 (curated),firma5.example,software,10,1000,EUR,DE,Bavaria,2.5,fair\n"
KNOWN += "Kept,kept.example,software,10,1000,EUR,DE,,2.5,fair\n"
FILE = (
    "Company,Website,Industry,Employees,Revenue,Currency,Country,Growth,Source\n"
    "Firma 5 GmbH,www.firma5.example,software,12,1000,EUR,DE,2.5,list-A\n"  # name and size
    "Kept,kept.example,software,10,1000,EUR,DE,2.5,fair\n"  # as stored: unchanged
    "New Co,new.example,retail,5,10,EUR,FR,1,list-A\n"
    "Bad,bad.example,software,many,1,EUR,DE,1,list-A\n"
)


def test_a_dry_run_says_what_each_row_would_do_and_stores_nothing(ledger):
    import_rows(ledger, KNOWN.encode(), META)
    before = events_in_store(ledger)

    preview = import_rows(ledger, FILE.encode(), META, dry_run=True)

    # Then nothing is stored, and the counts are those the import itself then has
    assert events_in_store(ledger) == before
    counts = (preview.registered, preview.updated, preview.unchanged, preview.rejected)
    assert counts == (1, 1, 1, 1)
    assert [(e.line, e.column) for e in preview.errors] == [(5, "Employees")]
    # And each change is listed: the fields it would overwrite, from the stored value (a name
    # curated by hand) to the file's; the region the file does not state stays
    updated, registered = preview.changes
    assert (updated.line, updated.domain, updated.outcome) == (2, "firma5.example", "updated")
    assert updated.account_id == account_id_for("firma5.example")
    assert updated.fields == {
        "name": ("Firma 5 (curated)", "Firma 5 GmbH"),
        "headcount": (10, 12),
        "source": ("fair", "list-A"),
    }
    assert (registered.line, registered.domain, registered.outcome, registered.fields) == (
        4,
        "new.example",
        "registered",
        {},
    )
    done = import_rows(ledger, FILE.encode(), META)
    assert (done.registered, done.updated, done.unchanged, done.rejected) == counts
    assert done.changes == []  # an import lists no changes: its events are the record


def test_an_uploaded_dry_run_finishes_with_the_changes_and_no_account_event(client, ledger):
    first = client.post("/imports", content=KNOWN, headers={"Content-Type": "text/csv"})
    assert finished(client, first.headers["location"])["result"]["registered"] == 2
    first = client.get(first.headers["location"])  # ended: it says where its events are
    seen = {"format": "jsonl", "min_position": first.headers["crm-position"]}
    before = client.get("/accounts/export", params=seen).text

    upload = client.post(
        "/imports", params={"dry_run": "true"}, content=FILE, headers={"Content-Type": "text/csv"}
    )

    job = finished(client, upload.headers["location"])
    assert (job["status"], job["result"]["dry_run"]) == ("finished", True)
    result = job["result"]
    assert (result["registered"], result["updated"], result["unchanged"]) == (1, 1, 1)
    assert result["changes"][0] == {
        "line": 2,
        "account_id": str(account_id_for("firma5.example")),
        "domain": "firma5.example",
        "outcome": "updated",
        "fields": {
            "name": {"before": "Firma 5 (curated)", "after": "Firma 5 GmbH"},
            "headcount": {"before": 10, "after": 12},
            "source": {"before": "fair", "after": "list-A"},
        },
    }
    assert result["changes"][1]["outcome"] == "registered"
    position = client.get(upload.headers["location"]).headers["crm-position"]
    after = client.get("/accounts/export", params={"format": "jsonl", "min_position": position})
    assert after.text == before
    with_screening = client.post(
        "/imports", params={"dry_run": "true", "screen_with": 1}, content=FILE
    )
    assert (with_screening.status_code, with_screening.json()["field"]) == (400, "screen_with")


def test_crm_import_dry_run_prints_the_changes_and_stores_nothing(ledger, settings, tmp_path):
    import_rows(ledger, KNOWN.encode(), META)
    before = events_in_store(ledger)
    path = tmp_path / "list.csv"
    path.write_text(FILE)

    done = run_crm(settings, "import", "--dry-run", str(path), COLUMNS="200")
    refused = run_crm(settings, "import", "--dry-run", "--screen-with", "1", str(path))

    assert done.returncode == 1, done.stderr  # a row is bad, as the import would say
    assert "dry run, nothing stored: would be 1 registered, 1 updated, 1 unchanged" in done.stdout
    assert "Firma 5 (curated)" in done.stdout and "new.example" in done.stdout
    assert refused.returncode == 2 and "--screen-with" in refused.stderr
    assert events_in_store(ledger) == before
