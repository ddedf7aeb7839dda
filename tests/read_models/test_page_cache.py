"""Read-model pages are kept between projector batches, and never outlive one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from services.api.page_cache import Answer, PageCache
from tests.api.requests import qualified


def rate(client, account, budget):
    response = client.put(
        f"/accounts/{account['id']}/bant",
        json={"budget": budget, "authority": 5, "need": 5, "timing": 5},
    )
    assert response.status_code == 200, response.text


def top_names(client):
    response = client.get("/leaderboards/bant")  # no min_position: the kept page if any
    assert response.status_code == 200, response.text
    return [e["name"] for e in response.json()["items"]]


class Counted:
    """A page cache over the read models, and a page whose body counts its renders."""

    def __init__(self, projector) -> None:
        self.pages = PageCache(projector.database)
        self.renders = 0

    def render(self) -> Answer:
        self.renders += 1
        return Answer(str(self.renders).encode(), {})

    async def read(self) -> bytes:
        return (await self.pages.answer("top", self.render)).body


@pytest.fixture
def counted(client, projector) -> Iterator[Counted]:
    rate(client, qualified(client, name="Alpha", domain="alpha.com"), 3)
    projector.catch_up()
    counted = Counted(projector)
    yield counted
    asyncio.run(counted.pages.close())


def test_a_page_is_computed_once_while_no_batch_lands_and_again_after_one_or_a_rebuild(
    client, projector, counted
):
    asyncio.run(counted.read())
    asyncio.run(counted.read())
    assert counted.renders == 1

    rate(client, qualified(client, name="Beta", domain="beta.com"), 4)
    projector.catch_up()
    asyncio.run(counted.read())
    assert counted.renders == 2

    projector.rebuild("accounts")  # the same rows, in a generation of new tables
    asyncio.run(counted.read())
    assert counted.renders == 3


def test_the_leaderboard_read_after_a_batch_shows_it(client, projector):
    rate(client, qualified(client, name="Alpha", domain="alpha.com"), 3)
    projector.catch_up()
    assert top_names(client) == ["Alpha"]
    assert top_names(client) == ["Alpha"]

    rate(client, qualified(client, name="Beta", domain="beta.com"), 4)
    projector.catch_up()

    assert top_names(client) == ["Beta", "Alpha"]


def test_on_sqlite_reads_in_one_pass_of_the_event_loop_share_a_check_the_next_pass_checks_again(
    client, projector, counted
):
    async def reads() -> list[bytes]:
        first = await counted.read()
        rate(client, qualified(client, name="Beta", domain="beta.com"), 4)
        projector.catch_up()  # a batch lands while this pass of the loop runs
        same_pass = await counted.read()
        await asyncio.sleep(0)
        return [first, same_pass, await counted.read()]

    shared = counted.pages.in_loop  # on PostgreSQL a read waits for a check begun after it
    assert asyncio.run(reads()) == [b"1", b"1" if shared else b"2", b"2"]


def test_a_kept_page_goes_out_with_each_reads_own_request_id_and_one_of_each_header(
    client, projector
):
    rate(client, qualified(client, name="Alpha", domain="alpha.com"), 3)
    projector.catch_up()  # no batch lands between the reads: they get one kept page
    answers = [
        client.get("/leaderboards/bant", headers={"X-Request-ID": f"read-{n}"}) for n in range(3)
    ]

    assert [a.headers.get_list("x-request-id") for a in answers] == [
        ["read-0"],
        ["read-1"],
        ["read-2"],
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.content == answers[0].content
        for name in ("crm-position", "content-type", "content-length", "x-frame-options"):
            assert len(answer.headers.get_list(name)) == 1, (name, answer.headers)
        assert int(answer.headers["content-length"]) == len(answer.content)


@pytest.fixture
def checks(counted, monkeypatch) -> list[None]:
    """One item for each check of the positions that `counted`'s page cache makes."""
    made: list[None] = []
    name = "_sqlite_positions" if counted.pages.in_loop else "_postgres_positions"
    check = getattr(counted.pages, name)

    def counted_check():  # the check's own answer: a tuple, or an awaitable of one
        made.append(None)
        return check()

    monkeypatch.setattr(counted.pages, name, counted_check)
    return made


def test_reads_that_come_together_share_one_check(client, projector, counted, checks):
    async def reads() -> list[bytes]:
        return await asyncio.gather(*(counted.read() for _ in range(10)))

    # Ten reads that come while no check is under way wait for one that begins after them
    assert asyncio.run(reads()) == [b"1"] * 10
    assert len(checks) == 1


def test_a_read_given_up_on_leaves_the_reads_that_wait_with_it_their_answers(counted):
    async def reads() -> list:
        waiting = [asyncio.ensure_future(counted.read()) for _ in range(5)]
        await asyncio.sleep(0)  # each has begun: on PostgreSQL each waits for the check
        waiting[0].cancel()  # its client went away
        return await asyncio.gather(*waiting, return_exceptions=True)

    given_up, *others = asyncio.run(reads())
    assert others == [b"1"] * 4
    # On SQLite a read is answered in its first step, before it could be given up on
    assert isinstance(given_up, asyncio.CancelledError) or given_up == b"1"


def test_a_read_after_a_batch_is_shown_it_though_it_joins_reads_that_came_before(
    client, projector, counted, checks
):
    async def reads() -> list[bytes]:
        assert await counted.read() == b"1"  # kept
        waiting = [asyncio.ensure_future(counted.read()) for _ in range(3)]
        await asyncio.sleep(0)  # they wait together; a crowd's check lets more come first
        rate(client, qualified(client, name="Beta", domain="beta.com"), 4)
        projector.catch_up()  # a batch lands meanwhile
        later = asyncio.ensure_future(counted.read())  # comes after the batch
        return await asyncio.gather(*waiting, later)

    answers = asyncio.run(reads())
    if counted.pages.in_loop:  # SQLite answered the three in their own pass, before the batch
        assert answers == [b"1", b"1", b"1", b"2"]
    else:  # the four share a check that began after every one of them came
        assert answers == [b"2"] * 4
        assert len(checks) == 2  # the first read's, and theirs
