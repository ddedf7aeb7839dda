"""Reads every row of a read model's live tables, to compare two ways of building them."""

from __future__ import annotations

from sqlalchemy import text

from projections.generations import live_generation
from services.projector import Projector


def rows_of(projector: Projector, name: str) -> list[tuple]:
    model = projector.read_models[name]
    with projector.database.read() as conn:
        gen = live_generation(conn, name)
        assert gen is not None
        return sorted(tuple(row) for row in conn.execute(text(f"SELECT * FROM {model.table(gen)}")))


def all_rows(projector: Projector) -> dict[str, list[tuple]]:
    return {name: rows_of(projector, name) for name in projector.read_models}
