"""The page cache's check on PostgreSQL: a connection the event loop holds, which comes back
by itself after the database ended it or a query on it was abandoned."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from projections.database import HeldConnection

BACKEND = "SELECT pg_backend_pid()"


def terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_one_connection_is_held_between_queries(postgres_server_url):
    held = HeldConnection(postgres_server_url, "public")

    async def twice() -> list:
        try:
            return [await held.rows(BACKEND), await held.rows(BACKEND)]
        finally:
            await held.close()

    first, second = asyncio.run(twice())
    assert second == first  # the same backend answered


def test_a_connection_the_database_ended_is_replaced_without_an_error(postgres_server_url):
    held = HeldConnection(postgres_server_url, "public")

    async def across_a_termination() -> tuple:
        try:
            ((before,),) = await held.rows(BACKEND)
            await asyncio.to_thread(terminate, postgres_server_url, before)
            ((after,),) = await held.rows(BACKEND)
            return before, after
        finally:
            await held.close()

    before, after = asyncio.run(across_a_termination())
    assert after != before


@pytest.fixture
def counter(postgres_server_url):
    name = f"held_{id(object())}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SEQUENCE {name}")
    yield name
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f"DROP SEQUENCE {name}")


def test_the_answer_to_an_abandoned_query_is_never_taken_for_a_later_one(
    postgres_server_url, counter
):
    held = HeldConnection(postgres_server_url, "public")
    # Each query takes the next number; the first answers only after a pause
    slow, fast = f"SELECT nextval('{counter}'), pg_sleep(0.3)", f"SELECT nextval('{counter}')"

    async def abandon_then_ask() -> list:
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await held.rows(slow)
            return [(await held.rows(fast))[0][0], (await held.rows(fast))[0][0]]
        finally:
            await held.close()

    # The abandoned query took 1; the later ones were asked after it, and answer so
    assert asyncio.run(abandon_then_ask()) == [2, 3]
