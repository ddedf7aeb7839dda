"""Read-model pages are kept between projector batches, and never outlive one."""

from __future__ import annotations

import asyncio

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


def test_a_page_is_computed_once_while_no_batch_lands_and_again_after_one_or_a_rebuild(
    client, projector
):
    rate(client, qualified(client, name="Alpha", domain="alpha.com"), 3)
    projector.catch_up()
    pages = PageCache(projector.database)
    renders: list[int] = []

    def render() -> Answer:
        renders.append(1)
        return Answer(b"{}", {})

    async def read() -> None:
        await pages.answer("top", render)

    asyncio.run(read())
    asyncio.run(read())
    assert len(renders) == 1

    rate(client, qualified(client, name="Beta", domain="beta.com"), 4)
    projector.catch_up()
    asyncio.run(read())
    assert len(renders) == 2

    projector.rebuild("accounts")  # the same rows, in a generation of new tables
    asyncio.run(read())
    assert len(renders) == 3
    pages.close()


def test_the_leaderboard_read_after_a_batch_shows_it(client, projector):
    rate(client, qualified(client, name="Alpha", domain="alpha.com"), 3)
    projector.catch_up()
    assert top_names(client) == ["Alpha"]
    assert top_names(client) == ["Alpha"]

    rate(client, qualified(client, name="Beta", domain="beta.com"), 4)
    projector.catch_up()

    assert top_names(client) == ["Beta", "Alpha"]
