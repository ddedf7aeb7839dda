"""What the CRM keeps in files is its user's alone: the event store and read models (on
SQLite), the key that signs cursors, and the uploaded target lists hold personal data."""

from __future__ import annotations

import stat

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
