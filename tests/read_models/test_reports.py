"""Stage and funnel reports against a history built by hand, day by day, on both stores.

A (software): registered 5 Jan, prioritized 6 Jan, outreach 8 Jan, warm_up 15 Jan, won 4 Feb
B (software): registered 5 Jan, prioritized 7 Jan, outreach 8 Jan, back to prioritized
              9 Jan, outreach again 10 Jan, lost 14 Feb
C (retail):   registered 5 Jan, excluded 6 Jan, re-qualified (identified) 20 Feb
Funnel: A see→think 6 Jan, →do 15 Jan, →care 5 Feb; B see→do 7 Jan, back to think 9 Jan.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.api.requests import command, registration

DAY = 86_400
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
MATERIAL = {"kind": "material_sent", "material": "case list", "channel": "email"}
RATING = {"budget": 3, "authority": 3, "need": 3, "timing": 3}


@pytest.fixture
def history(client, clock):
    def on(day: int) -> None:
        clock.now = START + timedelta(days=day)

    def post(account, path, body, method="POST"):
        return command(client, account, path, body, method)

    on(0)
    a = client.post(
        "/accounts", json=registration(name="A", domain="a.com", industry="software")
    ).json()
    b = client.post(
        "/accounts", json=registration(name="B", domain="b.com", industry="software")
    ).json()
    c = client.post(
        "/accounts", json=registration(name="C", domain="c.com", industry="retail")
    ).json()
    on(1)
    post(a, "screening", {"outcome": "qualified"})
    post(a, "bant", RATING, "PUT")
    post(a, "funnel", {"to": "think"})
    post(c, "screening", {"outcome": "excluded", "criteria": ["industry"]})
    on(2)
    post(b, "screening", {"outcome": "qualified"})
    post(b, "bant", RATING, "PUT")
    post(b, "funnel", {"to": "do"})
    on(3)
    post(a, "outreach", MATERIAL)
    post(b, "outreach", MATERIAL)
    on(4)
    post(b, "stage", {"to": "prioritized", "reason": "champion left"})
    post(b, "funnel", {"to": "think", "reason": "re-evaluating"})
    on(5)
    post(b, "outreach", MATERIAL)
    on(10)
    post(a, "outreach", {"kind": "meeting_held"})
    post(a, "funnel", {"to": "do"})
    on(30)
    post(a, "deal", {"outcome": "won", "amount": 50_000, "currency": "EUR"})
    on(31)
    post(a, "funnel", {"to": "care"})
    on(40)
    post(b, "deal", {"outcome": "lost", "reason": "no budget"})
    on(46)
    last = client.post(f"/accounts/{c['id']}/screening", json={"outcome": "qualified"})
    on(60)
    return {"a": a, "b": b, "c": c, "position": int(last.headers["crm-position"])}


def stage_report(client, history, **params):
    params = {
        "from": "2026-01-01T00:00:00Z",
        "to": "2026-03-01T00:00:00Z",
        "period": "month",
        "min_position": history["position"],
        **params,
    }
    response = client.get("/reports/stages", params=params)
    assert response.status_code == 200, response.text
    assert response.json()["min_position_reached"] is True
    return response.json()


def set_targets(client, period: str, *targets: tuple[str, int, int, int]) -> int:
    """Sets (metric, acceptable, optimal, best) targets; the position a report reflects them at."""
    fields = ("metric", "acceptable", "optimal", "best")
    body = {"targets": [dict(zip(fields, t, strict=True)) for t in targets]}
    response = client.put(f"/objectives/{period}", json=body)
    assert response.status_code == 200, response.text
    return int(response.headers["crm-position"])


def days(value: float) -> float:
    return pytest.approx(value * DAY, abs=1)


def test_current_counts_and_moves_per_month(client, history):
    (group,) = stage_report(client, history)["groups"]

    assert group["group"] == "all"
    current = {k: v for k, v in group["current"].items() if v}
    assert current == {"identified": 1, "won": 1, "lost": 1}
    january, february = group["periods"]
    assert january["period"] == "2026-01"
    assert {k: v for k, v in january["entered"].items() if v} == {
        "identified": 3,
        "prioritized": 3,
        "outreach": 3,
        "warm_up": 1,
        "excluded": 1,
    }
    assert {k: v for k, v in january["left"].items() if v} == {
        "identified": 3,
        "prioritized": 3,
        "outreach": 2,
    }
    assert february["period"] == "2026-02"
    assert {k: v for k, v in february["entered"].items() if v} == {
        "won": 1,
        "lost": 1,
        "identified": 1,
    }
    assert {k: v for k, v in february["left"].items() if v} == {
        "warm_up": 1,
        "outreach": 1,
        "excluded": 1,
    }


def test_conversion_win_rate_and_time_in_stage(client, history):
    (group,) = stage_report(client, history)["groups"]

    conversion = {
        (c["from"], c["to"]): (c["entered"], c["converted"], c["rate"]) for c in group["conversion"]
    }
    assert conversion == {
        ("identified", "prioritized"): (3, 2, 0.6667),
        ("prioritized", "outreach"): (2, 2, 1.0),
        ("outreach", "warm_up"): (2, 1, 0.5),
        ("warm_up", "won"): (1, 1, 1.0),
    }
    assert group["win_rate"] == {"won": 1, "lost": 1, "rate": 0.5}
    times = group["time_in_state"]
    assert times["identified"]["visits"] == 3
    assert times["identified"]["median_seconds"] == days(1)
    assert times["identified"]["p90_seconds"] == days(2)
    assert (times["prioritized"]["median_seconds"], times["prioritized"]["p90_seconds"]) == (
        days(1),
        days(2),
    )
    assert (times["outreach"]["median_seconds"], times["outreach"]["p90_seconds"]) == (
        days(7),
        days(35),
    )
    assert times["warm_up"] == {"visits": 1, "median_seconds": days(20), "p90_seconds": days(20)}
    assert times["excluded"]["median_seconds"] == days(45)


def test_grouped_by_industry(client, history):
    groups = {g["group"]: g for g in stage_report(client, history, group_by="industry")["groups"]}

    assert set(groups) == {"retail", "software"}
    assert {k: v for k, v in groups["retail"]["current"].items() if v} == {"identified": 1}
    assert {k: v for k, v in groups["software"]["current"].items() if v} == {"won": 1, "lost": 1}
    assert groups["software"]["win_rate"]["rate"] == 0.5


def test_industries_are_grouped_whatever_their_letter_case(client, history):
    last = client.post("/accounts", json=registration(name="D", domain="d.com", industry="Retail"))
    history = {**history, "position": int(last.headers["crm-position"])}

    report = stage_report(client, history, group_by="industry", to="2026-12-31T00:00:00Z")

    groups = {g["group"]: g["current"]["identified"] for g in report["groups"]}
    assert groups == {"retail": 2, "software": 0}


def test_industries_are_grouped_however_their_accents_are_encoded(client, history):
    # "Cafés" with é as one code point, and as e and a combining accent; "İnşaat" with the
    # Turkish capital İ, whose lower case is an i and a combining dot above
    for name, industry in [
        ("D", "Caf\u00e9s"),
        ("E", "CAFE\u0301S"),
        ("F", "\u0130n\u015faat"),
        ("G", "in\u015faat"),
    ]:
        last = client.post(
            "/accounts", json=registration(name=name, domain=f"{name}.com", industry=industry)
        )
    history = {**history, "position": int(last.headers["crm-position"])}

    report = stage_report(client, history, group_by="industry", to="2026-12-31T00:00:00Z")

    groups = {g["group"]: g["current"]["identified"] for g in report["groups"]}
    assert groups == {"caf\u00e9s": 2, "in\u015faat": 2, "retail": 1, "software": 0}


def test_as_of_reports_what_was_known_then(client, history):
    (group,) = stage_report(client, history, as_of="2026-01-20T00:00:00Z")["groups"]

    assert {k: v for k, v in group["current"].items() if v} == {
        "warm_up": 1,
        "outreach": 1,
        "excluded": 1,
    }
    assert [p["period"] for p in group["periods"]] == ["2026-01"]
    assert group["win_rate"]["rate"] is None


@pytest.mark.parametrize("path", ["/reports/stages", "/reports/funnel"])
def test_a_report_before_any_account_has_the_one_group_with_zeros(client, path):
    report = client.get(path, params={"as_of": "2026-01-01T00:00:00Z"}).json()

    (group,) = report["groups"]
    assert group["group"] == "all"
    assert set(group["current"].values()) == {0}
    assert client.get(path, params={"group_by": "industry"}).json()["groups"] == []


def test_a_report_as_of_a_deals_instant_counts_it_in_every_figure(client, history):
    events = client.get(f"/accounts/{history['a']['id']}/history").json()["items"]
    won_at = datetime.fromisoformat(
        next(e for e in events if e["type"] == "deal_won")["recorded_at"]
    )

    def as_of(at: datetime) -> dict:
        params = {"period": "day", "as_of": at.isoformat(), "min_position": history["position"]}
        response = client.get("/reports/stages", params=params)
        assert response.status_code == 200, response.text
        (group,) = response.json()["groups"]
        return group

    then, just_before = as_of(won_at), as_of(won_at - timedelta(microseconds=1))

    assert then["current"]["won"] == 1
    assert then["periods"][-1]["period"] == "2026-02-04"
    assert then["periods"][-1]["entered"]["won"] == 1
    assert then["win_rate"] == {"won": 1, "lost": 0, "rate": 1.0}
    assert ("warm_up", 1, 1) in [
        (c["from"], c["entered"], c["converted"]) for c in then["conversion"]
    ]
    assert just_before["current"]["won"] == 0
    assert just_before["win_rate"]["won"] == 0
    assert all(p["entered"]["won"] == 0 for p in just_before["periods"])


def test_a_window_given_its_end_stays_open_there_whatever_as_of(client, history):
    events = client.get(f"/accounts/{history['a']['id']}/history").json()["items"]
    won_at = next(e for e in events if e["type"] == "deal_won")["recorded_at"]

    (group,) = stage_report(
        client,
        history,
        period="day",
        **{"from": "2026-01-01T00:00:00Z", "to": won_at},
        as_of=won_at,
    )["groups"]

    assert group["current"]["won"] == 1  # as of the instant, inclusive
    assert all(p["entered"]["won"] == 0 for p in group["periods"])  # before `to`, exclusive
    assert group["win_rate"]["won"] == 0


def test_the_year_just_ended_leaves_out_a_move_at_the_new_years_first_instant(client, clock):
    clock.now = datetime(2026, 6, 1, tzinfo=UTC)
    account = client.post("/accounts", json=registration()).json()
    clock.now = datetime(2027, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)  # the next is 00:00
    moved = client.post(
        f"/accounts/{account['id']}/screening",
        json={"outcome": "excluded", "criteria": ["industry"]},
    )
    assert moved.status_code == 200, moved.text

    response = client.get(
        "/reports/stages",
        params={
            "as_of": "2027-01-01T00:00:00Z",
            "period": "year",
            "min_position": moved.headers["crm-position"],
        },
    )

    (group,) = response.json()["groups"]
    assert (response.json()["start"], response.json()["end"]) == (
        "2026-01-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
    )
    assert group["current"]["excluded"] == 1
    assert [p["period"] for p in group["periods"]] == ["2026"]
    assert group["periods"][0]["entered"]["excluded"] == 0


def test_daily_periods_and_the_window(client, history):
    (group,) = stage_report(
        client,
        history,
        period="day",
        **{"from": "2026-01-08T00:00:00Z", "to": "2026-01-09T00:00:00Z"},
    )["groups"]

    assert [p["period"] for p in group["periods"]] == ["2026-01-08"]
    assert group["periods"][0]["entered"]["outreach"] == 2


def test_objectives_show_actuals_against_three_levels(client, history):
    position = set_targets(
        client, "2026-02", ("accounts_won", 1, 2, 3), ("entered_warm_up", 1, 2, 4)
    )
    assert (
        client.put(
            "/objectives/2026-03",
            json={
                "targets": [{"metric": "accounts_won", "acceptable": 3, "optimal": 2, "best": 1}]
            },
        ).json()["rule"]
        == "objective_levels_order"
    )

    report = stage_report(client, {"position": position})

    assert report["objectives"] == [
        {
            "period": "2026-02",
            "metric": "accounts_won",
            "actual": 1,
            "acceptable": 1,
            "optimal": 2,
            "best": 3,
            "level": "acceptable",
        },
        {
            "period": "2026-02",
            "metric": "entered_warm_up",
            "actual": 0,
            "acceptable": 1,
            "optimal": 2,
            "best": 4,
            "level": "below",
        },
    ]
    stored = client.get("/objectives/2026-02").json()
    assert [t["metric"] for t in stored["targets"]] == ["accounts_won", "entered_warm_up"]
    assert client.get("/objectives/2026-04").status_code == 404
    assert client.get("/objectives/26-4").status_code in (400, 404)


def test_a_day_report_over_years_shows_the_objectives_of_every_day_it_touches(client, history):
    set_targets(client, "2023-01-01", ("entered_identified", 1, 2, 3))
    set_targets(client, "2026-02", ("accounts_won", 1, 2, 3))  # a month: not on a day report
    set_targets(client, "2026-03-01", ("accounts_lost", 2, 1, 0))  # the day the window ends
    last = set_targets(client, "2026-02-04", ("accounts_won", 1, 2, 3))  # A was won that day
    window = {"from": "2023-01-01T12:00:00Z", "to": "2026-03-01T00:00:00Z", "period": "day"}

    report = stage_report(client, {"position": last}, **window)  # 1,155 days

    assert [(o["period"], o["metric"], o["actual"]) for o in report["objectives"]] == [
        ("2023-01-01", "entered_identified", 0),
        ("2026-02-04", "accounts_won", 1),
    ]


def test_a_move_back_is_no_progress_toward_an_objective(client, history):
    # B was taken back from outreach to prioritized on 9 January, and entered nothing else
    position = set_targets(client, "2026-01-09", ("entered_prioritized", 1, 2, 3))
    window = {"from": "2026-01-09T00:00:00Z", "to": "2026-01-10T00:00:00Z", "period": "day"}

    report = stage_report(client, {"position": position}, **window)

    (entered,) = report["groups"][0]["periods"]
    assert entered["entered"]["prioritized"] == 1  # the move is one all the same
    assert [(o["metric"], o["actual"]) for o in report["objectives"]] == [
        ("entered_prioritized", 0)
    ]


def test_an_objective_counts_its_whole_period_whatever_the_window(client, history):
    position = set_targets(client, "2026-02", ("accounts_won", 1, 2, 3))

    # A was won on 4 February, before this window opens; the February objective still counts it.
    report = stage_report(client, {"position": position}, **{"from": "2026-02-10T00:00:00Z"})

    assert [(o["period"], o["actual"], o["level"]) for o in report["objectives"]] == [
        ("2026-02", 1, "acceptable")
    ]


def test_a_report_as_of_an_instant_shows_the_objectives_set_by_then(client, history, clock):
    position = {"position": set_targets(client, "2026-02", ("accounts_won", 1, 2, 3))}
    set_at = clock.now  # the clock moves a microsecond an event: the last one is the put's

    before = stage_report(client, position, as_of=(set_at - timedelta(hours=1)).isoformat())
    after = stage_report(client, position, as_of=set_at.isoformat())

    assert before["objectives"] == []
    assert [(o["period"], o["metric"]) for o in after["objectives"]] == [
        ("2026-02", "accounts_won")
    ]


def test_a_target_removed_leaves_the_report_that_showed_it_but_not_one_as_of_before(
    client, history, clock
):
    set_targets(client, "2026-02", ("accounts_won", 1, 2, 3), ("entered_outreach", 1, 2, 3))
    set_at = clock.now
    removed = client.put("/objectives/2026-02", json={"remove": ["accounts_won"]})
    assert removed.status_code == 200, removed.text
    position = {"position": int(removed.headers["crm-position"])}

    then = stage_report(client, position, as_of=set_at.isoformat())
    now = stage_report(client, position)

    assert [o["metric"] for o in then["objectives"]] == ["accounts_won", "entered_outreach"]
    assert [o["metric"] for o in now["objectives"]] == ["entered_outreach"]
    # Its last target removed, the period shows none
    last = client.put("/objectives/2026-02", json={"remove": ["entered_outreach"]})
    emptied = stage_report(client, {"position": int(last.headers["crm-position"])})
    assert emptied["objectives"] == []


def test_a_report_as_of_a_target_shows_it_though_a_clock_set_back_stamped_the_next(
    client, history, clock
):
    set_targets(client, "2026-02", ("accounts_won", 1, 2, 3))
    first_set_at = clock.now
    clock.advance(hours=-1)  # another host's clock behind this one's, or this one set back
    position = {"position": set_targets(client, "2026-02", ("accounts_won", 4, 5, 6))}

    then = stage_report(client, position, as_of=first_set_at.isoformat())
    now = stage_report(client, position)

    assert [o["acceptable"] for o in then["objectives"]] == [1]
    assert [o["acceptable"] for o in now["objectives"]] == [4]


def test_a_cleared_deal_is_no_deal_and_a_deal_lost_twice_counts_once(client, history, clock):
    a, b = history["a"], history["b"]
    clock.now = datetime(2026, 3, 10, tzinfo=UTC)
    error = "the deal was recorded in error"
    command(client, a, "funnel", {"to": "do", "reason": error})
    command(client, a, "stage", {"to": "warm_up", "reason": error})
    command(client, a, "deal", {"outcome": "won", "amount": 9_000, "currency": "EUR"})
    command(client, a, "stage", {"to": "warm_up", "reason": error})  # won and cleared in March
    for why in ("no budget after all", "no budget again"):  # lost twice in March
        command(client, b, "stage", {"to": "outreach", "reason": "new budget"})
        last = client.post(f"/accounts/{b['id']}/deal", json={"outcome": "lost", "reason": why})
        assert last.status_code == 200, last.text
    position = set_targets(
        client,
        "2026-03",
        ("accounts_lost", 2, 1, 0),
        ("accounts_won", 1, 2, 3),
        ("entered_outreach", 1, 2, 3),
    )
    march = {"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}

    report = stage_report(client, {"position": position}, **march)

    (group,) = report["groups"]
    assert group["win_rate"] == {"won": 0, "lost": 1, "rate": 0.0}
    conversion = {(c["from"], c["to"]): (c["entered"], c["converted"]) for c in group["conversion"]}
    assert conversion[("warm_up", "won")] == (1, 0)  # as the win rate: the cleared win is none
    assert [(o["metric"], o["actual"], o["level"]) for o in report["objectives"]] == [
        ("accounts_lost", 1, "optimal"),
        ("accounts_won", 0, "below"),
        ("entered_outreach", 0, "below"),  # B reopened at outreach, where it had been
    ]


def test_a_state_skipped_on_the_way_counts_as_passed(client, clock):
    clock.now = datetime(2026, 5, 4, 9, tzinfo=UTC)
    ahead = client.post("/accounts", json=registration(name="D", domain="d.com")).json()
    client.post("/accounts", json=registration(name="E", domain="e.com"))
    clock.now += timedelta(days=1)
    moved = client.post(f"/accounts/{ahead['id']}/funnel", json={"to": "do"})  # past think
    assert moved.status_code == 200, moved.text

    response = client.get(
        "/reports/funnel",
        params={
            "from": "2026-05-01T00:00:00Z",
            "to": "2026-06-01T00:00:00Z",
            "min_position": moved.headers["crm-position"],
        },
    )

    (group,) = response.json()["groups"]
    conversion = {(c["from"], c["to"]): (c["entered"], c["converted"]) for c in group["conversion"]}
    assert conversion[("see", "think")] == (2, 1)
    assert conversion[("think", "do")] == (0, 0)
    assert conversion[("do", "care")] == (1, 0)


def test_fewer_deals_lost_is_better(client):
    rising = [{"metric": "accounts_lost", "acceptable": 1, "optimal": 2, "best": 3}]

    refused = client.put("/objectives/2027", json={"targets": rising})
    falling = client.put(
        "/objectives/2027",
        json={"targets": [{"metric": "accounts_lost", "acceptable": 5, "optimal": 3, "best": 1}]},
    )

    assert refused.status_code == 409
    assert refused.json()["rule"] == "objective_levels_order"
    assert "fewer is better" in refused.json()["detail"]
    assert falling.status_code == 200, falling.text


def test_the_funnel_report(client, history):
    response = client.get(
        "/reports/funnel",
        params={
            "from": "2026-01-01T00:00:00Z",
            "to": "2026-03-01T00:00:00Z",
            "min_position": history["position"],
        },
    )
    (group,) = response.json()["groups"]

    assert {k: v for k, v in group["current"].items() if v} == {"see": 1, "think": 1, "care": 1}
    conversion = {(c["from"], c["to"]): (c["entered"], c["converted"]) for c in group["conversion"]}
    assert conversion[("see", "think")] == (3, 2)
    assert conversion[("do", "care")] == (2, 1)
    assert "win_rate" not in group
    assert response.json()["objectives"] == []


def test_the_openapi_document_describes_every_figure_a_report_answers(client, history):
    schemas = client.get("/schema/openapi.json").json()["components"]["schemas"]

    def described(value: dict, schema: str) -> None:
        properties = schemas[schema]["properties"]
        assert set(value) <= set(properties), (schema, set(value) - set(properties))

    for path in ("/reports/stages", "/reports/funnel"):
        for group in client.get(path, params={"as_of": "2026-03-01T00:00:00Z"}).json()["groups"]:
            described(group, "ReportGroup")
            for moves in group["periods"]:
                described(moves, "PeriodMoves")
            for conversion in group["conversion"]:
                described(conversion, "Conversion")
            for visits in group["time_in_state"].values():
                described(visits, "TimeInState")
            if "win_rate" in group:
                described(group["win_rate"], "WinRate")
    assert "from" in schemas["Conversion"]["required"]


def test_bad_report_parameters_are_400(client):
    assert client.get("/reports/stages", params={"period": "week"}).status_code == 400
    assert client.get("/reports/stages", params={"group_by": "city"}).status_code == 400
    assert (
        client.get(
            "/reports/stages", params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
        ).status_code
        == 400
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-01-01"}, "from"),  # a date: no instant, no offset
        ({"to": "0"}, "to"),  # a number of seconds is not an RFC 3339 instant
        ({"as_of": "1e10"}, "as_of"),
        ({"from": "0000-01-01T00:00:00Z"}, "from"),
        ({"as_of": "0001-01-01T00:00:00+01:00"}, "as_of"),  # before the first instant in UTC
        ({"as_of": "2026-01-01T00:00:00Z", "from": "2026-06-01T00:00:00Z"}, "as_of"),
        ({"from": "2026-06-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
    ],
)
def test_an_instant_that_is_not_one_or_an_empty_window_is_400_naming_the_parameter(
    client, params, field
):
    response = client.get("/reports/stages", params=params)

    assert (response.status_code, response.json()["field"]) == (400, field), response.text


@pytest.mark.parametrize(
    "written",
    [
        "2026-W09-7T12:00:00Z",  # a week date
        "2026-060T12:00:00Z",  # a day of the year
        "20260301T120000Z",  # ISO 8601's basic format
        "2026-03-01T12:00:00,5Z",  # a comma before the fraction
        "2026-03-01T12Z",  # hours alone
        "2026-03-01T12:00:00+0100",  # an offset without its colon
        "\uff12\uff10\uff12\uff16-03-01T12:00:00Z",  # full-width digits
    ],
)
def test_iso_8601_forms_that_rfc_3339_has_not_are_400(client, written):
    response = client.get("/reports/stages", params={"as_of": written})

    assert (response.status_code, response.json()["field"]) == (400, "as_of"), response.text


def test_an_instant_may_leave_out_its_seconds(client):
    response = client.get("/reports/stages", params={"as_of": "2026-03-01T12:00Z"})

    assert response.status_code == 200, response.text
    assert response.json()["as_of"].startswith("2026-03-01T12:00:00")


def test_a_report_as_of_new_year_shows_the_year_just_ended(client):
    response = client.get("/reports/stages", params={"as_of": "2026-01-01T00:00:00Z"})

    assert response.status_code == 200, response.text
    assert response.json()["start"].startswith("2025-01-01T00:00:00")
    assert response.json()["end"].startswith("2026-01-01T00:00:00")
    to_march = {"as_of": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}
    assert client.get("/reports/stages", params=to_march).json()["start"].startswith("2026-01-01")


def test_an_instant_may_write_t_and_z_in_lower_case_as_rfc_3339_allows(client):
    response = client.get("/reports/stages", params={"as_of": "2026-03-01t12:00:00z"})

    assert response.status_code == 200, response.text
    assert response.json()["as_of"].startswith("2026-03-01T12:00:00")


def test_a_window_at_the_end_of_the_calendar_is_reported(client):
    last = {"from": "9999-06-01T00:00:00Z", "to": "9999-12-31T00:00:00Z", "period": "month"}

    for params in (last, {"as_of": "9999-12-31T23:59:59Z"}, {**last, "period": "day"}):
        response = client.get("/reports/stages", params=params)
        assert response.status_code == 200, (params, response.text)
    assert response.json()["start"].startswith("9999-06-01")


def test_a_corrected_industry_regroups_the_account_whole(client, history):
    # C was registered as retail by mistake
    corrected = client.patch(
        f"/accounts/{history['c']['id']}",
        json={"industry": "software", "reason": "a typo at registration"},
    )
    assert corrected.status_code == 200, corrected.text

    report = stage_report(
        client, history, group_by="industry", min_position=corrected.headers["crm-position"]
    )

    groups = {g["group"]: g for g in report["groups"]}
    assert set(groups) == {"software"}
    current = {k: v for k, v in groups["software"]["current"].items() if v}
    assert current == {"won": 1, "lost": 1, "identified": 1}


def test_a_period_of_a_year_before_1000_is_named_with_four_digits(client, clock):
    clock.now = datetime(999, 3, 10, tzinfo=UTC)
    client.post("/accounts", json=registration(name="Old", domain="old.com"))
    position = set_targets(client, "0999-03", ("entered_identified", 1, 2, 3))
    window = {"from": "0999-03-01T00:00:00Z", "to": "0999-04-01T00:00:00Z", "period": "month"}

    report = stage_report(client, {"position": position}, **window)

    assert [p["period"] for p in report["groups"][0]["periods"]] == ["0999-03"]
    assert [(o["period"], o["actual"]) for o in report["objectives"]] == [("0999-03", 1)]
