"""The BANT leaderboard and the account list over HTTP, on both stores."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest

from projections.account_queries import LEADERBOARD_ORDER, Filters, cursor_key, encode_cursor
from tests.api.requests import command, qualified, register, registration


def rate(client, account, b, a, n, t):
    response = client.put(
        f"/accounts/{account['id']}/bant",
        json={"budget": b, "authority": a, "need": n, "timing": t},
    )
    assert response.status_code == 200, response.text
    return int(response.headers["crm-position"])


def board(client, **params):
    response = client.get("/leaderboards/bant", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def make(client, name, domain, ratings, **overrides):
    account = qualified(client, name=name, domain=domain, **overrides)
    position = rate(client, account, *ratings)
    return account, position


def test_the_leaderboard_ranks_by_score_then_name_then_id(client):
    make(client, "Beta", "beta.com", (5, 5, 5, 5), industry="Retail", country="FR")
    make(client, "Alpha", "alpha.com", (2, 2, 2, 2))
    make(client, "Gamma", "gamma.com", (2, 2, 2, 2))
    _, last = make(client, "Delta", "delta.com", (3, 3, 3, 3))

    page = board(client, min_position=last)

    assert page["min_position_reached"] is True
    assert page["position"] >= last
    assert [(e["rank"], e["name"], e["score"]) for e in page["items"]] == [
        (1, "Beta", 625),
        (2, "Delta", 81),
        (3, "Alpha", 16),
        (4, "Gamma", 16),
    ]
    first = page["items"][0]
    assert (first["budget"], first["authority"], first["need"], first["timing"]) == (5, 5, 5, 5)
    assert first["abm_stage"] == "prioritized"
    assert first["funnel_state"] == "see"
    assert (first["industry"], first["country"]) == ("Retail", "FR")
    assert (page["items"][1]["industry"], page["items"][1]["country"]) == ("manufacturing", "DE")


def test_a_tie_on_the_leaderboard_goes_by_name_as_the_account_list_sorts_names(client):
    for name in ("beta", "Gamma", "\u0130stanbul", "Alpha"):
        _, last = make(client, name, f"{len(name)}{name[1:].lower()}.com", (3, 3, 3, 3))
    expected = ["Alpha", "beta", "Gamma", "\u0130stanbul"]

    ranked = board(client, min_position=last)["items"]
    paged, cursor = [], None
    while True:
        page = board(client, limit=1, **({"cursor": cursor} if cursor else {}))
        paged += [e["name"] for e in page["items"]]
        if not (cursor := page["next_cursor"]):
            break

    assert [(e["rank"], e["name"]) for e in ranked] == list(enumerate(expected, 1))
    assert paged == expected
    assert listed(client, {"min_position": last}) == expected


def test_a_leaderboard_cursor_of_the_release_before_ties_went_by_folded_name_is_400(
    client, projector
):
    # Given the second page's cursor as the earlier release signed it: after Alpha, by name
    alpha, _ = make(client, "Alpha", "alpha.com", (3, 3, 3, 3))
    for name in ("beta", "Gamma"):
        _, last = make(client, name, f"{name.lower()}.com", (3, 3, 3, 3))
    assert board(client, min_position=last)["min_position_reached"] is True
    state = {"p": last, "t": None, "f": FIRST, "r": 1, "k": [81, "Alpha", alpha["id"]]}
    payload = made_up(state)
    with projector.database.read() as conn:
        digest = hmac.new(cursor_key(conn), payload.encode(), hashlib.sha256).digest()[:16]
    signature = base64.urlsafe_b64encode(digest).decode().rstrip("=")

    # When a client asks for that page after the upgrade
    response = client.get("/leaderboards/bant", params={"cursor": f"{payload}.{signature}"})

    # Then it starts again from the first page, rather than be shown Alpha again
    assert (response.status_code, response.json()["field"]) == (400, "cursor")


def test_a_cursor_of_the_release_before_names_sorted_without_accents_first_is_400(
    client, projector
):
    # Given the second page's cursor as the earlier release signed it: its order, and keys
    # written as that release wrote names (folded, accents and all)
    alpha, _ = make(client, "Alpha", "alpha.com", (3, 3, 3, 3))
    _, last = make(client, "Beta", "beta.com", (3, 3, 3, 3))
    assert board(client, min_position=last)["min_position_reached"] is True
    state = {"p": last, "t": None, "f": FIRST, "r": 1, "k": [81, "alpha", alpha["id"]]}
    payload = made_up(state)
    order = ",".join(f"{c} {d}" for c, d in LEADERBOARD_ORDER)
    with projector.database.read() as conn:
        message = f"{payload}.{order}".encode()
        digest = hmac.new(cursor_key(conn), message, hashlib.sha256).digest()[:16]
    signature = base64.urlsafe_b64encode(digest).decode().rstrip("=")

    # When a client asks for that page after the upgrade
    response = client.get("/leaderboards/bant", params={"cursor": f"{payload}.{signature}"})

    # Then it starts again from the first page, rather than be shown a page keyed otherwise
    assert (response.status_code, response.json()["field"]) == (400, "cursor")


def test_only_rated_accounts_in_active_stages_by_default_and_filters_narrow(client):
    make(client, "Active", "active.com", (4, 4, 4, 4), industry="software", country="FR")
    lost, _ = make(client, "Lost", "lost.com", (5, 5, 5, 5))
    qualified(client, name="Unrated", domain="unrated.com")
    response = client.post(
        f"/accounts/{lost['id']}/deal", json={"outcome": "lost", "reason": "budget cut"}
    )
    last = int(response.headers["crm-position"])

    default = board(client, min_position=last)
    lost_only = board(client, stage="lost")
    by_industry = board(client, industry="software")
    by_country = board(client, country="DE")

    assert [e["name"] for e in default["items"]] == ["Active"]
    assert [e["name"] for e in lost_only["items"]] == ["Lost"]
    assert [e["name"] for e in by_industry["items"]] == ["Active"]
    assert by_country["items"] == []


@pytest.mark.parametrize("path", ["/leaderboards/bant", "/accounts"])
def test_a_stage_filter_repeated_takes_the_accounts_of_every_stage_it_names(client, path):
    # Given rated accounts in three stages
    make(client, "Prioritised", "prioritised.com", (3, 3, 3, 3))
    research, _ = make(client, "Research", "research.com", (4, 4, 4, 4))
    material = {"kind": "material_sent", "material": "white paper", "channel": "email"}
    command(client, research, "outreach", material)  # which moves it on to outreach
    lost, _ = make(client, "Lost", "lost.com", (5, 5, 5, 5))
    closed = client.post(f"/accounts/{lost['id']}/deal", json={"outcome": "lost", "reason": "x"})
    seen = {"min_position": closed.headers["crm-position"]}

    def names(stages, **params):
        response = client.get(path, params={"stage": stages, **seen, **params})
        assert response.status_code == 200, response.text
        return response.json()

    # When a reader asks for two of them, in either order, once repeated
    both = names(["lost", "outreach"])
    again = names(["outreach", "lost", "outreach"])
    one = names(["outreach"])
    first = names(["lost", "outreach"], limit=1)
    rest = names(["outreach", "lost"], cursor=first["next_cursor"])

    # Then each page holds the accounts of both stages and no other, and a cursor goes on with
    # the stages written in another order
    # (the leaderboard by score, the list by name)
    assert [e["name"] for e in both["items"]] == ["Lost", "Research"]
    assert again["items"] == both["items"]
    assert [e["name"] for e in one["items"]] == ["Research"]
    assert first["items"] + rest["items"] == both["items"]
    # And a stage that is none is refused by name
    bad = client.get(path, params={"stage": ["lost", "negotiation"]})
    assert (bad.status_code, bad.json()["field"]) == (400, "stage")


def test_pages_have_no_duplicates_or_gaps_while_writes_go_on(client):
    accounts = []
    for i in range(7):
        account, last = make(client, f"Company {i}", f"company{i}.com", (1 + i % 5, 2, 2, 2))
        accounts.append(account)
    first = board(client, limit=3, min_position=last)
    expected = [e["name"] for e in board(client, limit=50)["items"]]

    # Writes between pages: a re-rating that would move an account across the page boundary,
    # and a new account that would rank first.
    rate(client, accounts[0], 5, 5, 5, 5)
    _, written = make(client, "Newcomer", "newcomer.com", (5, 5, 5, 5))
    board(client, limit=1, min_position=written)  # the later pages are read after the writes

    names = [e["name"] for e in first["items"]]
    ranks = [e["rank"] for e in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = board(client, limit=3, cursor=cursor)
        names += [e["name"] for e in page["items"]]
        ranks += [e["rank"] for e in page["items"]]
        cursor = page["next_cursor"]

    assert names == expected
    assert ranks == list(range(1, 8))


def test_pages_one_row_long_step_through_equal_scores_and_equal_names_in_order(client):
    # Every way a row can come after the page before it: a lower score, the same score and a
    # later name, the same score and name and a later id; the last two for the list as well.
    for i, (name, ratings) in enumerate(
        [("Same", (3, 3, 3, 3)), ("Same", (3, 3, 3, 3)), ("Other", (3, 3, 3, 3))]
        + [("Same", (2, 2, 2, 2)), ("Low", (1, 1, 1, 1)), ("Same", (3, 3, 3, 3))]
    ):
        account, last = make(client, name, f"company{i}.com", ratings)
    expected = [
        (e["name"], e["score"], e["account_id"]) for e in board(client, min_position=last)["items"]
    ]
    page = board(client, limit=1)
    listed_first = client.get("/accounts", params={"limit": 1}).json()
    # A re-rating, projected before the later pages are read, closes a row they still show.
    board(client, limit=1, min_position=rate(client, account, 5, 5, 5, 5))

    paged = []
    while True:
        paged += [(e["name"], e["score"], e["account_id"]) for e in page["items"]]
        if not page["next_cursor"]:
            break
        page = board(client, limit=1, cursor=page["next_cursor"])
    listed_pages, page = [], listed_first
    while True:
        listed_pages += [(a["name"], a["account_id"]) for a in page["items"]]
        if not page["next_cursor"]:
            break
        page = client.get("/accounts", params={"cursor": page["next_cursor"]}).json()

    same = sorted(e[2] for e in expected if e[:2] == ("Same", 81))
    assert [e[:2] for e in expected] == [("Other", 81)] + [("Same", 81)] * 3 + [
        ("Same", 16),
        ("Low", 1),
    ]
    assert [e[2] for e in expected if e[:2] == ("Same", 81)] == same
    assert paged == expected
    assert [a[0] for a in listed_pages] == ["Low", "Other"] + ["Same"] * 4
    assert [a[1] for a in listed_pages[2:]] == sorted(a[1] for a in listed_pages[2:])


def test_pages_step_past_the_longest_names_of_any_script(client):
    # 200 characters each (the most a name takes), of 3 and 4 bytes in UTF-8.
    names = ["漢" * 200, "𠀋" * 200, "Ünïcödé" * 28]
    for i, name in enumerate(names):
        account, last = make(client, name, f"long{i}.com", (3, 3, 3, 3))

    page, ranked = board(client, limit=1, min_position=last), []
    while True:
        ranked += [e["name"] for e in page["items"]]
        if not page["next_cursor"]:
            break
        page = board(client, limit=1, cursor=page["next_cursor"])
    page, listed = client.get("/accounts", params={"limit": 1, "q": "long"}).json(), []
    while True:
        listed += [a["name"] for a in page["items"]]
        if not page["next_cursor"]:
            break
        params = {"limit": 1, "q": "long", "cursor": page["next_cursor"]}
        answer = client.get("/accounts", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()

    assert sorted(ranked) == sorted(names)
    assert sorted(listed) == sorted(names)


def test_list_pages_show_the_names_as_they_were_at_the_first_page_after_a_rename(client):
    registered = [
        client.post("/accounts", json=registration(name=name, domain=f"{name}.com"))
        for name in "abcde"
    ]
    listed = registered[-1].headers["crm-position"]
    first = client.get("/accounts", params={"limit": 2, "min_position": listed}).json()
    accounts = [response.json() for response in registered]

    renamed = client.patch(f"/accounts/{accounts[4]['id']}", json={"name": "0 first now"})
    client.get("/accounts", params={"limit": 1, "min_position": renamed.headers["crm-position"]})

    names = [e["name"] for e in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get("/accounts", params={"limit": 2, "cursor": cursor}).json()
        names += [e["name"] for e in page["items"]]
        cursor = page["next_cursor"]

    assert names == list("abcde")


def test_as_of_shows_the_ranking_as_it_stood_then(client, clock):
    a, _ = make(client, "Alpha", "alpha.com", (2, 2, 2, 2))
    make(client, "Beta", "beta.com", (3, 3, 3, 3))
    last_month = clock.advance(days=1)
    clock.advance(days=30)
    last = rate(client, a, 5, 5, 5, 5)

    now = board(client, min_position=last)
    then = board(client, as_of=last_month.isoformat())
    before_everything = board(client, as_of=(last_month - timedelta(days=365)).isoformat())

    assert [e["name"] for e in now["items"]] == ["Alpha", "Beta"]
    assert [(e["name"], e["score"]) for e in then["items"]] == [("Beta", 81), ("Alpha", 16)]
    assert before_everything["items"] == []


def test_the_pages_of_a_cursor_show_the_instant_of_its_first_page(client, clock):
    a, _ = make(client, "Alpha", "alpha.com", (2, 2, 2, 2))
    make(client, "Beta", "beta.com", (3, 3, 3, 3))
    then = clock.advance(days=1).isoformat()
    clock.advance(days=30)
    last = rate(client, a, 5, 5, 5, 5)
    first = board(client, as_of=then, limit=1, min_position=last)

    second = board(client, cursor=first["next_cursor"], limit=1)
    again = board(client, cursor=first["next_cursor"], as_of=then, limit=1)
    elsewhen = (clock.now - timedelta(days=3)).isoformat()
    other = client.get(
        "/leaderboards/bant", params={"cursor": first["next_cursor"], "as_of": elsewhen}
    )

    assert [(e["name"], e["score"]) for e in second["items"]] == [("Alpha", 16)]
    assert second == again
    assert second["as_of"] == first["as_of"] is not None
    assert (other.status_code, other.json()["field"]) == (400, "cursor")


def test_as_of_keeps_an_accounts_changes_in_order_when_a_clock_goes_back(client, clock):
    a, _ = make(client, "Alpha", "alpha.com", (2, 2, 2, 2))
    first = board(client, min_position=rate(client, a, 3, 3, 3, 3))
    clock.advance(hours=-1)  # another host's clock behind this one's, or this one set back

    last = rate(client, a, 5, 5, 5, 5)

    assert [e["score"] for e in board(client, min_position=last)["items"]] == [625]
    scored_at = first["items"][0]["scored_at"]
    assert [e["score"] for e in board(client, as_of=scored_at)["items"]] == [81]


def test_a_bad_cursor_or_filter_is_400(client):
    assert (
        client.get("/leaderboards/bant", params={"cursor": "bm90IGEgY3Vyc29y"}).status_code == 400
    )
    assert client.get("/leaderboards/bant", params={"cursor": "%%%"}).status_code == 400
    empty = client.get("/leaderboards/bant", params={"cursor": ""})
    assert (empty.status_code, empty.json()["field"]) == (400, "cursor")
    assert "the last" in empty.json()["detail"]
    assert client.get("/leaderboards/bant", params={"stage": "negotiation"}).status_code == 400
    assert client.get("/leaderboards/bant", params={"limit": 10_000}).status_code == 400
    naive = client.get("/leaderboards/bant", params={"as_of": "2026-01-01T00:00:00"})
    assert (naive.status_code, naive.json()["field"]) == (400, "as_of")
    seconds = client.get("/leaderboards/bant", params={"as_of": "1767225600"})
    assert (seconds.status_code, seconds.json()["field"]) == (400, "as_of")


FIRST = Filters().fingerprint()  # a first page's, without filters


def made_up(state: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "state",
    [
        {"p": 10**6, "r": 0, "k": [1, "a", "b"]},  # a position the read model has not reached
        {"p": 2**70, "r": 0, "k": [1, "a", "b"]},
        {"p": 0, "r": -1, "k": [1, "a", "b"]},
        {"p": 0, "r": 0, "k": [2**70, "a", "b"]},
        {"p": 0, "r": 0, "k": ["many", "a", "b"]},  # the score is a number
        {"p": 0, "r": 0, "k": [1, ["a"], {"b": 1}]},
        {"p": 0, "r": 0, "k": [1, "a"]},
        {"p": 0, "r": 0, "t": 2**70, "k": [1, "a", "b"]},
        {"p": 0, "r": 0, "k": [1, "a", "b"], "f": FIRST},  # well made, but not signed
    ],
)
def test_a_made_up_cursor_is_400(client, state):
    qualified(client)

    response = client.get("/leaderboards/bant", params={"cursor": made_up(state)})

    assert (response.status_code, response.json()["field"]) == (400, "cursor")


def test_a_cursor_changed_to_read_at_an_earlier_position_is_400(client):
    # An earlier position is the past, which only an auditor may read, and with as_of.
    for domain in ("a.com", "b.com", "c.com"):
        position = rate(client, qualified(client, domain=domain), 3, 3, 3, 3)
    cursor = board(client, limit=1, min_position=position)["next_cursor"]
    payload, _, signature = cursor.partition(".")
    state = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    earlier = made_up({**state, "p": 1}) + (f".{signature}" if signature else "")
    response = client.get("/leaderboards/bant", params={"cursor": earlier, "limit": 1})

    assert board(client, cursor=cursor, limit=1)["items"]
    assert (response.status_code, response.json()["field"]) == (400, "cursor")


@pytest.mark.parametrize(
    "state",
    [
        {"p": 0, "r": 0, "t": 2**63 - 1, "k": [1, "a", "b"], "f": FIRST},  # past year 9999
        {"p": 0, "r": 0, "t": -(2**62), "k": [1, "a", "b"], "f": FIRST},  # before year 1
        {"p": 0, "r": 0, "k": [1, "\ud800", "b"], "f": FIRST},  # a lone surrogate: no UTF-8
        {"p": 0, "r": 0, "k": [1, "a\x00", "b"], "f": FIRST},  # NUL: not text to PostgreSQL
    ],
)
def test_a_signed_cursor_with_values_the_database_cannot_take_is_400(client, projector, state):
    # Were the key ever out, the database would still be asked nothing it cannot answer.
    qualified(client)
    with projector.database.read() as conn:
        signed = encode_cursor(cursor_key(conn), state, LEADERBOARD_ORDER)

    response = client.get("/leaderboards/bant", params={"cursor": signed})

    assert (response.status_code, response.json()["field"]) == (400, "cursor")


def test_the_account_list_filters_searches_and_pages(client):
    register(client, name="Zeta Works", domain="zeta.io", country="FR")
    register(client, name="acme labs", domain="acmelabs.com")
    created = client.post(
        "/accounts",
        json={
            "name": "Acme Tooling",
            "domain": "acme-tooling.com",
            "industry": "manufacturing",
            "headcount": 250,
            "annual_revenue": 1,
            "revenue_currency": "EUR",
            "country": "DE",
            "growth_rate": 1.0,
            "source": "web",
        },
    )
    last = int(created.headers["crm-position"])

    everything = client.get("/accounts", params={"min_position": last, "limit": 2}).json()
    rest = client.get("/accounts", params={"cursor": everything["next_cursor"]}).json()
    search = client.get("/accounts", params={"q": "ACME"}).json()
    by_domain = client.get("/accounts", params={"q": "zeta.io"}).json()
    french = client.get("/accounts", params={"country": "FR"}).json()
    like_chars = client.get("/accounts", params={"q": "%"}).json()

    assert [a["name"] for a in everything["items"] + rest["items"]] == [
        "acme labs",
        "Acme Tooling",
        "Zeta Works",
    ]
    assert rest["next_cursor"] is None
    assert [a["name"] for a in search["items"]] == ["acme labs", "Acme Tooling"]
    assert [a["name"] for a in by_domain["items"]] == ["Zeta Works"]
    assert [a["name"] for a in french["items"]] == ["Zeta Works"]
    assert like_chars["items"] == []


def test_a_read_says_when_it_did_not_reach_min_position(client):
    account = register(client)
    position = int(
        client.post(f"/accounts/{account['id']}/screening", json={"outcome": "qualified"}).headers[
            "crm-position"
        ]
    )

    ahead = client.get("/leaderboards/bant", params={"min_position": position + 1000})

    assert ahead.status_code == 200
    assert ahead.json()["min_position_reached"] is False
    assert ahead.headers["crm-stale"] == "true"


def test_a_position_beyond_the_last_event_stored_is_not_waited_for(client, projector):
    # Read models are waited for by asking the projector to hurry to the position; a position
    # no command answered must not hold a thread for the whole wait.
    account = qualified(client)
    head = rate(client, account, 4, 4, 4, 4)
    asked: list[int] = []
    projector.wanted = asked.append

    beyond = client.get("/leaderboards/bant", params={"min_position": head + 1000})
    listed = client.get("/accounts", params={"min_position": head + 1})

    assert beyond.json()["min_position_reached"] is False
    assert listed.json()["min_position_reached"] is False
    assert asked == []


def test_a_command_response_position_is_readable_at_once(client):
    account = qualified(client)
    position = rate(client, account, 4, 4, 4, 4)

    page = board(client, min_position=position)

    assert page["min_position_reached"] is True
    assert [e["account_id"] for e in page["items"]] == [account["id"]]
    assert command(client, account, "funnel", {"to": "think"})["funnel_state"] == "think"


def test_industry_filters_ignore_letter_case_and_country_codes_may_be_lower_case(client):
    register(client, name="Anvil", domain="anvil.de", industry="Manufacturing")
    register(client, name="Bolt", domain="bolt.de", industry="manufacturing")
    register(client, name="Crate", domain="crate.fr", industry="retail", country="FR")
    last = client.post(
        "/accounts",
        json=registration(name="Dyne", domain="dyne.de", industry="Manufacturing industry"),
    )
    seen = {"min_position": last.headers["crm-position"]}

    made = client.get("/accounts", params={"industry": "manufacturing", **seen}).json()
    german = client.get("/accounts", params={"country": "de", **seen}).json()

    assert [a["name"] for a in made["items"]] == ["Anvil", "Bolt"]
    assert [a["name"] for a in german["items"]] == ["Anvil", "Bolt", "Dyne"]


@pytest.mark.parametrize("path", ["/accounts", "/leaderboards/bant"])
def test_a_country_filter_that_is_no_country_code_is_refused_not_answered_empty(client, path):
    _, last = make(client, "Anvil", "anvil.de", (3, 3, 3, 3))

    for code in ("UK", "XX", "D", "DEU", "ß", "dе"):  # SS is a code; Cyrillic e
        refused = client.get(path, params={"country": code})

        assert refused.status_code == 400, (code, refused.text)
        assert refused.json()["field"] == "country", refused.json()
    german = client.get(path, params={"country": "de", "min_position": last}).json()
    assert [e["name"] for e in german["items"]] == ["Anvil"]


def test_an_industry_filter_matches_however_accents_and_a_turkish_i_are_written(client):
    make(client, "Bistro", "bistro.fr", (3, 3, 3, 3), industry="Caf\u00e9s", country="FR")
    make(client, "Brasserie", "brasserie.fr", (3, 3, 3, 3), industry="cafe\u0301s", country="FR")
    make(client, "Cafeteria", "cafeteria.fr", (3, 3, 3, 3), industry="cafes", country="FR")
    _, last = make(client, "Yapi", "yapi.com.tr", (3, 3, 3, 3), industry="\u0130n\u015faat")

    def names(path, industry):
        params = {"industry": industry, "min_position": last}
        return [e["name"] for e in client.get(path, params=params).json()["items"]]

    for path in ("/accounts", "/leaderboards/bant"):
        assert names(path, "caf\u00e9s") == names(path, "CAFE\u0301S") == ["Bistro", "Brasserie"]
        assert names(path, "in\u015faat") == names(path, "\u0130N\u015eAAT") == ["Yapi"]


def test_text_sent_with_white_space_around_it_sorts_and_filters_as_without(client):
    spaced = register(
        client,
        name="\ufeff  Zed Works \u200b",  # a byte-order mark and a zero-width space too
        domain="zed.de",
        industry=" manufacturing\u00a0",
        region=" Bavaria",
        source="trade fair ",
    )
    last = client.post("/accounts", json=registration(name="Anvil", domain="anvil.de"))
    seen = {"min_position": last.headers["crm-position"]}

    made = client.get("/accounts", params={"industry": "manufacturing", **seen}).json()

    assert (spaced["name"], spaced["industry"], spaced["region"], spaced["source"]) == (
        "Zed Works",
        "manufacturing",
        "Bavaria",
        "trade fair",
    )
    assert [a["name"] for a in made["items"]] == ["Anvil", "Zed Works"]


def test_a_domain_finds_its_account_however_it_is_written(client):
    acme = register(client)
    last = client.post("/accounts", json=registration(name="Zeta", domain="zeta.io"))
    seen = {"min_position": last.headers["crm-position"]}

    found = client.get("/accounts", params={"domain": "WWW.Acme-Tooling.com", **seen})
    unknown = client.get("/accounts", params={"domain": "nobody.example", **seen})
    bad = client.get("/accounts", params={"domain": "not a domain"})

    assert [a["account_id"] for a in found.json()["items"]] == [acme["id"]]
    assert unknown.json()["items"] == []
    assert (bad.status_code, bad.json()["field"]) == (400, "domain")


def test_a_cursor_sent_with_other_filters_is_400(client):
    for i in range(3):
        register(client, name=f"Bulk {i}", domain=f"bulk{i}.de", industry="bulk")
    last = client.post("/accounts", json=registration(name="Acme", domain="acme.de"))
    seen = {"min_position": last.headers["crm-position"]}
    first = client.get("/accounts", params={"industry": "bulk", "limit": 2, **seen}).json()

    same = client.get("/accounts", params={"industry": "Bulk", "cursor": first["next_cursor"]})
    other = client.get(
        "/accounts", params={"industry": "manufacturing", "cursor": first["next_cursor"]}
    )

    assert [a["name"] for a in same.json()["items"]] == ["Bulk 2"]
    assert (other.status_code, other.json()["field"]) == (400, "cursor")
    assert "filters" in other.json()["detail"]


def test_as_of_pages_have_no_duplicates_or_gaps_while_writes_go_on(client, clock):
    # Given seven rated accounts, and a first page as of an instant the writers' clocks have
    # not reached yet (an auditor's host whose clock runs ahead of theirs)
    accounts = []
    for i in range(7):
        account, last = make(client, f"Company {i}", f"company{i}.com", (1 + i % 5, 2, 2, 2))
        accounts.append(account)
    then = (clock.now + timedelta(hours=1)).isoformat()
    first = board(client, limit=3, as_of=then, min_position=last)
    expected = [e["name"] for e in board(client, limit=50, as_of=then)["items"]]

    # When writes stamped before that instant land between the pages: a re-rating that moves
    # an account across the page boundary, and a new account that would rank first
    rate(client, accounts[0], 5, 5, 5, 5)
    _, last = make(client, "Newcomer", "newcomer.com", (5, 5, 5, 5))

    names = later_pages(client, first, limit=3, as_of=then, min_position=last)

    # Then the pages show the list of the first page's position, each account once
    assert names == expected


def test_an_as_of_cursor_shows_each_account_once_when_its_accounts_change_after_its_first_page(
    client, clock
):
    # Given five rated accounts, and a first page as of an instant after their ratings
    accounts = []
    for i in range(5):
        account, last = make(client, f"Company {i}", f"company{i}.com", (1 + i, 2, 2, 2))
        accounts.append(account)
    then = clock.advance(days=1).isoformat()
    clock.advance(days=1)
    first = board(client, limit=2, as_of=then, min_position=last)
    expected = [e["name"] for e in board(client, limit=50, as_of=then)["items"]]

    # When every account is re-rated after it, both later than the instant and than the page
    for account in accounts:
        last = rate(client, account, 5, 5, 5, 5)

    names = later_pages(client, first, limit=2, as_of=then, min_position=last)

    # Then the pages show the ranking at the instant, each account once
    assert expected == [f"Company {i}" for i in range(4, -1, -1)]
    assert names == expected


def later_pages(client, first: dict, **params) -> list[str]:
    """The names on the first page and on every page its cursor leads to."""
    names, page = [], first
    while True:
        names += [e["name"] for e in page["items"]]
        if not page["next_cursor"]:
            return names
        page = board(client, cursor=page["next_cursor"], **params)


def registered(client, *accounts: dict) -> dict[str, str]:
    """Registers the accounts; the parameter that has a read wait until it shows them all."""
    for overrides in accounts:
        response = client.post("/accounts", json=registration(**overrides))
        assert response.status_code == 201, response.text
    return {"min_position": response.headers["crm-position"]}


def listed(client, seen: dict[str, str], **params) -> list[str]:
    return [a["name"] for a in client.get("/accounts", params={**params, **seen}).json()["items"]]


def test_a_name_is_found_and_sorted_however_its_accents_are_encoded(client):
    seen = registered(
        client,
        # "Café" as an e followed by a combining acute accent, and as one code point for the é
        {"name": "Cafe\u0301 Noir", "domain": "noir.fr", "country": "FR"},
        {"name": "Caf\u00e9 Bleu", "domain": "bleu.fr", "country": "FR"},
        {"name": "Cafeteria", "domain": "cafeteria.fr"},
    )

    cafes = ["Caf\u00e9 Bleu", "Caf\u00e9 Noir"]  # stored composed (NFC), as typed alike
    assert listed(client, seen) == [
        *cafes,
        "Cafeteria",
    ]  # "Café B…" as "Cafe B…", a dictionary's order
    assert listed(client, seen, q="caf\u00e9") == cafes
    assert listed(client, seen, q="CAFE\u0301") == cafes


def test_names_sort_by_their_letters_first_and_their_accents_after_as_a_reader_looks_for_them(
    client,
):
    # Given names with accented initials, and names that differ only by an accent or a case
    seen = registered(
        client,
        {"name": "Zeta", "domain": "zeta.de"},
        {"name": "\u00c4hre", "domain": "aehre.de"},  # Ähre
        {"name": "Otto", "domain": "otto.de"},
        {"name": "\u00d6ko", "domain": "oeko.de"},  # Öko
        {"name": "\u0141\u00f3d\u017a", "domain": "lodz.pl", "country": "PL"},  # Łódź
        {"name": "Lyon", "domain": "lyon.fr", "country": "FR"},
        {"name": "Caf\u00e9", "domain": "cafe-accent.fr", "country": "FR"},
        {"name": "cafe", "domain": "cafe.fr", "country": "FR"},
        {"name": "Beta", "domain": "beta.de"},
    )
    expected = [
        "\u00c4hre",
        "Beta",
        "cafe",
        "Caf\u00e9",
        "\u0141\u00f3d\u017a",
        "Lyon",
        "\u00d6ko",
        "Otto",
        "Zeta",
    ]

    # Then the list has them in a dictionary's order, page by page too
    assert listed(client, seen) == expected
    paged, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/accounts", params=params).json()
        paged += [a["name"] for a in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert paged == expected


def test_a_search_typed_without_accents_finds_names_with_them(client):
    seen = registered(
        client,
        {"name": "Caf\u00e9 Bleu", "domain": "bleu.fr", "country": "FR"},
        {"name": "Cafeteria", "domain": "cafeteria.fr"},
        {"name": "\u0141\u00f3d\u017a Steel", "domain": "steel.pl", "country": "PL"},
        {"name": "Soci\u00e9t\u00e9 G\u00e9n\u00e9rale", "domain": "sg.fr", "country": "FR"},
    )

    assert listed(client, seen, q="cafe") == ["Caf\u00e9 Bleu", "Cafeteria"]
    assert listed(client, seen, q="LODZ") == ["\u0141\u00f3d\u017a Steel"]
    assert listed(client, seen, q="societe gen") == ["Soci\u00e9t\u00e9 G\u00e9n\u00e9rale"]
    # and one typed with them finds them as typed
    assert listed(client, seen, q="caf\u00e9") == ["Caf\u00e9 Bleu"]


def test_a_renamed_account_is_found_by_its_new_name_without_accents(client):
    account = client.post("/accounts", json=registration(name="Zurich Reinsurance")).json()
    renamed = client.patch(f"/accounts/{account['id']}", json={"name": "Z\u00fcrich Re"})
    assert renamed.status_code == 200, renamed.text
    seen = {"min_position": renamed.headers["crm-position"]}

    assert listed(client, seen, q="zurich re") == ["Z\u00fcrich Re"]
    assert listed(client, seen, q="reinsurance") == []


def test_a_turkish_capital_i_is_found_and_sorted_as_the_i_it_is_typed_as(client):
    seen = registered(
        client,
        # "İ" lower-cases to an i followed by a combining dot above: that dot is the i's own
        {"name": "\u0130stanbul Tekstil", "domain": "tekstil.com.tr", "country": "TR"},
        {"name": "Izmir Gida", "domain": "gida.com.tr", "country": "TR"},
        {"name": "Ibis Otel", "domain": "ibis.com.tr", "country": "TR"},
    )

    assert listed(client, seen) == ["Ibis Otel", "\u0130stanbul Tekstil", "Izmir Gida"]
    for q in ("istanbul", "ISTANBUL", "\u0130stanbul", "\u0130STANBUL", "I\u0307stanbul"):
        assert listed(client, seen, q=q) == ["\u0130stanbul Tekstil"], q
