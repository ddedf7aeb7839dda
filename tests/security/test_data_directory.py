"""What the CRM keeps in files is its user's alone: the event store and read models (on
SQLite), the key that signs cursors, and the uploaded target lists hold personal data."""

from __future__ import annotations

import stat

import pytest

from tests.processes import run_crm
from tests.screening.test_import import HEADER, good_rows


def test_the_data_directory_the_crm_makes_and_its_uploads_are_closed_to_other_users(
    client, jobs, settings
):
    imported = client.post(
        "/imports", content=(HEADER + good_rows(1)).encode(), headers={"Content-Type": "text/csv"}
    )
    assert imported.status_code == 202
    jobs.wait(60)

    for folder in (settings.data_dir, settings.data_dir / "imports"):
        mode = stat.S_IMODE(folder.stat().st_mode)
        assert mode & 0o077 == 0, (folder, oct(mode))


@pytest.mark.parametrize("store", ["sqlite"])
def test_the_files_the_crm_makes_are_its_users_alone_in_a_directory_open_to_others(settings):
    settings.data_dir.mkdir(mode=0o755)  # as `mkdir` in an image leaves it
    upload = settings.data_dir / "targets.csv"
    upload.write_text(HEADER + good_rows(2))

    imported = run_crm(settings, "import", str(upload))
    exported = run_crm(settings, "export", "accounts", "--out", str(settings.data_dir / "a.csv"))

    assert (imported.returncode, exported.returncode) == (0, 0), imported.stderr
    made = [p for p in settings.data_dir.rglob("*") if p != upload]
    assert {p.name for p in made} >= {"crm.sqlite3", "read_models.sqlite3", "a.csv"}
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
