"""What README.md says each store survives rests on these settings."""

from __future__ import annotations


def test_the_store_syncs_every_commit_before_it_is_acknowledged(ledger, store):
    datastore = ledger.recorder.datastore
    if store == "sqlite":
        with datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA journal_mode")
            journal = tuple(cursor.fetchone())[0]
            cursor.execute("PRAGMA synchronous")
            synchronous = tuple(cursor.fetchone())[0]
        assert (journal, synchronous) == ("wal", 2)  # 2 is FULL: the WAL is fsynced per commit
    else:
        with datastore.get_connection() as conn:
            setting = conn.execute("SHOW synchronous_commit").fetchone()
        assert setting["synchronous_commit"] == "on"
