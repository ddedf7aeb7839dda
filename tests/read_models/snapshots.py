"""Reads every row of a read model's live tables, to compare two ways of building them."""

from __future__ import annotations

from sqlalchemy import inspect, text

from projections.generations import live_generation
from services.projector import Projector


def rows_of(projector: Projector, name: str) -> list[tuple]:
    """The rows of the live generation's tables, each after the name of its table."""
    with projector.database.read() as conn:
        gen = live_generation(conn, name)
        assert gen is not None
        prefix, suffix = f"rm_{name}_", f"_g{gen.generation}"
        existing = inspect(conn).get_table_names()
        tables = [t for t in existing if t.startswith(prefix) and t.endswith(suffix)]
        assert tables
        return sorted(
            (t.removesuffix(suffix), *row)
            for t in tables
            for row in conn.execute(text(f"SELECT * FROM {t}"))
        )


def all_rows(projector: Projector) -> dict[str, list[tuple]]:
    return {name: rows_of(projector, name) for name in projector.read_models}
