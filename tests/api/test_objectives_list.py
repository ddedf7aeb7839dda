"""The list of objectives (`GET /objectives`): every period that has targets, for a client that
does not know which periods were planned. On both stores."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.api.test_objectives import MORE_WON, WON, events_in_store

ENTERED = {"targets": [{"metric": "entered_outreach", "acceptable": 10, "optimal": 20, "best": 30}]}
PERIODS = ["2026-03-15", "2026", "2025-12", "2026-03", "2026-01", "2027-01-01"]


def set_every_period(client) -> int:
    """Targets for each of PERIODS, two sets for 2026; the log position of the last."""
    for period in PERIODS:
        assert client.put(f"/objectives/{period}", json=WON).status_code == 200
    response = client.put("/objectives/2026", json=ENTERED)
    assert response.status_code == 200, response.text
    return int(response.headers["crm-position"])


def listed(client, **params) -> dict:
    response = client.get("/objectives", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_period_is_listed_in_calendar_order_as_each_reads_alone(client):
    position = set_every_period(client)

    page = listed(client, min_position=position)

    assert page["min_position_reached"] is True
    assert page["position"] >= position
    assert page["next_cursor"] is None
    # A year before its months, a month before its days.
    assert [o["period"] for o in page["items"]] == [
        "2025-12",
        "2026",
        "2026-01",
        "2026-03",
        "2026-03-15",
        "2027-01-01",
    ]
    # Each with its targets as they stand and the version its ETag gives.
    for item in page["items"]:
        assert item == client.get(f"/objectives/{item['period']}").json()
    year = page["items"][1]
    assert [t["metric"] for t in year["targets"]] == ["accounts_won", "entered_outreach"]
    assert year["version"] == 3


def test_a_target_set_again_is_listed_as_it_stands(client):
    client.put("/objectives/2026-04", json=WON)
    position = int(client.put("/objectives/2026-04", json=MORE_WON).headers["crm-position"])

    (item,) = listed(client, min_position=position)["items"]

    assert item["targets"] == MORE_WON["targets"]
    assert item["version"] == 3


def test_a_target_removed_is_listed_no_more_and_a_period_left_without_any_stays(client):
    client.put("/objectives/2026-04", json={"targets": [*WON["targets"], *ENTERED["targets"]]})
    client.put("/objectives/2026-05", json=WON)
    client.put("/objectives/2026-04", json={"remove": ["accounts_won"]})
    last = client.put("/objectives/2026-05", json={"remove": ["accounts_won"]})
    position = int(last.headers["crm-position"])

    items = listed(client, min_position=position)["items"]

    assert items == [client.get(f"/objectives/{p}").json() for p in ("2026-04", "2026-05")]
    assert [(o["version"], o["targets"]) for o in items] == [
        (4, ENTERED["targets"]),
        (3, []),
    ]


@pytest.mark.parametrize(
    ("params", "periods"),
    [
        ({"size": "year"}, ["2026"]),
        ({"size": "month"}, ["2025-12", "2026-01", "2026-03"]),
        ({"size": "day"}, ["2026-03-15", "2027-01-01"]),
        ({"within": "2026"}, ["2026", "2026-01", "2026-03", "2026-03-15"]),
        ({"within": "2026-03"}, ["2026-03", "2026-03-15"]),
        ({"within": "2026", "size": "month"}, ["2026-01", "2026-03"]),
        ({"within": "2027", "size": "day"}, ["2027-01-01"]),
        ({"within": "2026-03-15"}, ["2026-03-15"]),
        ({"within": "2026-02"}, []),
        ({"within": "2028"}, []),
    ],
)
def test_the_list_takes_a_size_and_a_period_to_look_within(client, params, periods):
    position = set_every_period(client)

    page = listed(client, min_position=position, **params)

    assert [o["period"] for o in page["items"]] == periods


def test_pages_follow_one_another_with_their_cursor(client):
    position = set_every_period(client)
    everything = [o["period"] for o in listed(client, min_position=position)["items"]]

    seen, params = [], {"limit": 2}
    while True:
        page = listed(client, **params)
        assert len(page["items"]) <= 2
        seen += [o["period"] for o in page["items"]]
        if page["next_cursor"] is None:
            break
        params = {"limit": 2, "cursor": page["next_cursor"]}

    assert seen == everything
    months = listed(client, size="month", limit=1)
    assert [o["period"] for o in months["items"]] == ["2025-12"]
    following = listed(client, size="month", limit=2, cursor=months["next_cursor"])
    assert [o["period"] for o in following["items"]] == ["2026-01", "2026-03"]


def test_a_cursor_sent_with_other_filters_or_changed_is_refused(client):
    position = set_every_period(client)
    cursor = listed(client, size="month", limit=1, min_position=position)["next_cursor"]
    payload, _, signature = cursor.partition(".")

    for params in (
        {"cursor": cursor},
        {"cursor": cursor, "size": "day"},
        {"cursor": cursor, "size": "month", "within": "2026"},
        {"cursor": f"{payload}x.{signature}", "size": "month"},
        {"cursor": "", "size": "month"},
    ):
        response = client.get("/objectives", params=params)
        assert (response.status_code, response.json()["field"]) == (400, "cursor"), params


def test_an_auditor_lists_the_objectives_as_they_stood_at_an_instant(client, clock):
    # By hand: 2026-01 set, then 2026 (its last event at t0); an hour later 2026 raised,
    # 2026-02 set, and a target of 2026-01 removed.
    client.put("/objectives/2026-01", json={"targets": [*WON["targets"], *ENTERED["targets"]]})
    clock.advance(hours=1)
    client.put("/objectives/2026", json=WON)
    t0 = clock.now  # the instant of its last event
    clock.advance(hours=1)
    client.put("/objectives/2026", json=MORE_WON)
    client.put("/objectives/2026-02", json=WON)
    last = client.put("/objectives/2026-01", json={"remove": ["accounts_won"]})
    position = int(last.headers["crm-position"])

    before = listed(client, as_of=(t0 - timedelta(hours=2)).isoformat(), min_position=position)
    at_t0 = listed(client, as_of=t0.isoformat())
    now = listed(client)

    assert before["items"] == []
    assert datetime.fromisoformat(before["as_of"]) == t0 - timedelta(hours=2)
    assert datetime.fromisoformat(at_t0["as_of"]) == t0
    assert [(o["period"], o["version"], o["targets"]) for o in at_t0["items"]] == [
        ("2026", 2, WON["targets"]),
        ("2026-01", 3, [*WON["targets"], *ENTERED["targets"]]),
    ]
    # Each as the period read alone at that instant gives it, for If-Match then
    for item in at_t0["items"]:
        alone = client.get(f"/objectives/{item['period']}", params={"as_of": t0.isoformat()})
        assert item == alone.json()
    assert now.get("as_of") is None
    assert [(o["period"], o["version"]) for o in now["items"]] == [
        ("2026", 3),
        ("2026-01", 4),
        ("2026-02", 2),
    ]


def test_a_page_of_the_past_goes_on_at_its_instant_and_refuses_another(client, clock):
    for period in ("2026-01", "2026-02", "2026-03"):
        client.put(f"/objectives/{period}", json=WON)
    then = clock.advance(hours=1)
    client.put("/objectives/2026-01", json=MORE_WON)
    last = client.put("/objectives/2026-04", json=WON)
    position = int(last.headers["crm-position"])

    first = listed(client, as_of=then.isoformat(), limit=2, min_position=position)
    following = listed(client, cursor=first["next_cursor"], limit=2)
    other = client.get(
        "/objectives",
        params={"cursor": first["next_cursor"], "limit": 2, "as_of": clock.now.isoformat()},
    )

    assert [(o["period"], o["targets"]) for o in first["items"]] == [
        ("2026-01", WON["targets"]),
        ("2026-02", WON["targets"]),
    ]
    # The cursor keeps the instant: 2026-04, set after it, is not listed
    assert [o["period"] for o in following["items"]] == ["2026-03"]
    assert datetime.fromisoformat(following["as_of"]) == then
    assert following["next_cursor"] is None
    assert (other.status_code, other.json()["field"]) == (400, "cursor")
    assert "another as_of" in other.json()["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"size": "week"}, "size"),
        ({"within": "2026-02-30"}, "within"),
        ({"within": "26"}, "within"),
        ({"within": "2026-3"}, "within"),
        ({"within": "2026\n"}, "within"),
        ({"within": "\uff12\uff10\uff12\uff16"}, "within"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"min_position": "-1"}, "min_position"),
        ({"period": "2026"}, "period"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(client, ledger, params, field):
    response = client.get("/objectives", params=params)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == field
    assert "regex" not in response.text  # a period's pattern is put in words
    assert events_in_store(ledger) == 0


def test_the_version_listed_guards_an_edit_as_the_one_read_alone_does(client, ledger):
    position = int(client.put("/objectives/2026-05", json=WON).headers["crm-position"])
    (item,) = listed(client, min_position=position)["items"]
    expected = {"If-Match": f'"{item["version"]}"'}

    first = client.put("/objectives/2026-05", json=MORE_WON, headers=expected)
    stored = events_in_store(ledger)
    second = client.put("/objectives/2026-05", json=ENTERED, headers=expected)

    assert first.status_code == 200, first.text
    assert second.status_code == 412, second.text
    assert events_in_store(ledger) == stored


def test_a_store_without_objectives_lists_none(client):
    page = listed(client)

    assert (page["items"], page["next_cursor"]) == ([], None)
