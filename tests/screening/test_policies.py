"""Screening policies over HTTP: versions, dry run, apply, overrides, on both stores."""

from __future__ import annotations

from domain.ledger import CommandMeta
from domain.screening_policy import Criteria
from services.api import screening_policies
from tests.api.requests import command, rated, register

META = CommandMeta("marta")
POLICY = {
    "industries_excluded": ["retail"],
    "headcount_min": 50,
    "countries_included": ["DE", "AT"],
}


def create_policy(client, **criteria) -> dict:
    response = client.post("/screening-policies", json=criteria)
    assert response.status_code == 201, response.text
    return response.json()


def history_length(client, account) -> int:
    page = client.get(f"/accounts/{account['id']}/history", params={"limit": 1000}).json()
    return len(page["items"])


def companies(client) -> dict[str, dict]:
    return {
        "fit": register(client, name="Fit", domain="fit.com", industry="software"),
        "small": register(client, name="Small", domain="small.com", headcount=10),
        "shop": register(client, name="Shop", domain="shop.com", industry="Retail", country="FR"),
    }


def test_policy_versions_are_kept_side_by_side(client):
    first = create_policy(client, **POLICY)
    second = create_policy(client, headcount_min=500)

    listed = client.get("/screening-policies").json()["items"]

    assert (first["version"], second["version"]) == (1, 2)
    assert [p["version"] for p in listed] == [1, 2]
    assert client.get("/screening-policies/1").json()["criteria"]["headcount_min"] == 50
    assert client.get("/screening-policies/2").json()["criteria"]["headcount_min"] == 500
    assert client.get("/screening-policies/3").status_code == 404


def test_dry_run_and_apply_agree_account_for_account_and_a_second_apply_adds_nothing(client):
    accounts = companies(client)
    create_policy(client, **POLICY)
    before = {k: history_length(client, a) for k, a in accounts.items()}

    dry = client.post("/screening-policies/1/dry-run", json={}).json()
    assert {k: history_length(client, a) for k, a in accounts.items()} == before
    applied = client.post("/screening-policies/1/apply", json={}).json()
    again = client.post("/screening-policies/1/apply", json={}).json()

    def decisions(run):
        return {d["name"]: (d["outcome"], d["failed_criteria"]) for d in run["decisions"]}

    assert (
        decisions(dry)
        == decisions(applied)
        == {
            "Fit": ("qualified", []),
            "Small": ("excluded", ["headcount"]),
            "Shop": ("excluded", ["industry", "country"]),
        }
    )
    assert (dry["dry_run"], dry["applied"], dry["changes"]) == (True, 0, 3)
    assert (applied["applied"], again["applied"], again["changes"]) == (3, 0, 0)
    small = client.get(f"/accounts/{accounts['small']['id']}").json()
    assert small["abm_stage"] == "excluded"
    assert small["screening"]["policy_version"] == 1
    assert small["screening"]["criteria"] == ["headcount"]
    after = {k: history_length(client, a) for k, a in accounts.items()}
    assert after == {
        "fit": before["fit"] + 1,
        "small": before["small"] + 2,
        "shop": before["shop"] + 2,
    }


def test_a_run_lists_its_first_decisions_those_that_change_first_and_counts_them_all(
    client, monkeypatch
):
    accounts = companies(client)
    command(client, accounts["fit"], "screening", {"outcome": "qualified"})  # no change
    create_policy(client, **POLICY)
    monkeypatch.setattr(screening_policies, "DECISIONS_LISTED", 3)
    whole = client.post("/screening-policies/1/dry-run", json={}).json()
    monkeypatch.setattr(screening_policies, "DECISIONS_LISTED", 2)

    dry = client.post("/screening-policies/1/dry-run", json={}).json()
    named = client.post(
        "/screening-policies/1/dry-run", json={"account_ids": [accounts["fit"]["id"]]}
    )

    assert ({d["name"] for d in whole["decisions"]}, whole["omitted"]) == (
        {"Fit", "Small", "Shop"},
        0,
    )
    changing = [d for d in whole["decisions"] if d["changes"]]  # in the order decided
    assert {d["name"] for d in changing} == {"Small", "Shop"}
    assert dry["decisions"] == changing
    assert (dry["qualified"], dry["excluded"], dry["changes"], dry["omitted"]) == (1, 2, 2, 1)
    assert ([d["name"] for d in named.json()["decisions"]], named.json()["omitted"]) == (["Fit"], 0)


def test_a_policy_stored_before_a_rule_was_added_is_still_read(client, ledger):
    invisible = ("\U000e0041\U000e0042",)  # taken before names needed a visible character
    version = ledger.create_policy(Criteria(industries_excluded=invisible), META).value

    listed = client.get("/screening-policies")
    one = client.get(f"/screening-policies/{version}")

    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["criteria"]["industries_excluded"] == list(invisible)
    assert (one.status_code, one.json()["criteria"]) == (200, listed.json()["items"][0]["criteria"])


def test_a_policys_names_lose_the_white_space_around_them(client):
    register(client, name="Shop", domain="shop.com", industry="Retail", region="Bavaria")
    policy = create_policy(client, industries_excluded=[" retail "], regions_included=["Bavaria "])

    dry = client.post(f"/screening-policies/{policy['version']}/dry-run", json={}).json()

    assert policy["criteria"]["industries_excluded"] == ["retail"]
    assert policy["criteria"]["regions_included"] == ["Bavaria"]
    assert [(d["name"], d["failed_criteria"]) for d in dry["decisions"]] == [("Shop", ["industry"])]


def test_a_policy_matches_industries_and_regions_however_their_accents_are_encoded(client):
    register(client, name="Bistro", domain="bistro.fr", industry="CAFE\u0301S", region="Ile")
    register(client, name="Yapi", domain="yapi.de", industry="\u0130n\u015faat", region="Ile")
    register(client, name="Shop", domain="shop.com", industry="retail", region="\u00cele")
    policy = create_policy(
        client,
        industries_included=["caf\u00e9s", "in\u015faat"],
        regions_included=["I\u0302le"],  # with a combining circumflex
    )

    dry = client.post(f"/screening-policies/{policy['version']}/dry-run", json={}).json()

    assert {d["name"]: d["failed_criteria"] for d in dry["decisions"]} == {
        "Bistro": ["region"],
        "Yapi": ["region"],
        "Shop": ["industry"],
    }


def test_a_revenue_in_another_currency_fails_as_its_currency_not_its_amount(client):
    register(
        client,
        name="Dollars",
        domain="dollars.com",
        annual_revenue=40_000_000,
        revenue_currency="USD",
    )
    register(client, name="Small", domain="small.com", annual_revenue=5_000_000)
    register(client, name="Fit", domain="fit.com", annual_revenue=40_000_000)
    create_policy(client, revenue_min=10_000_000, revenue_currency="EUR")

    dry = client.post("/screening-policies/1/dry-run", json={}).json()
    applied = client.post("/screening-policies/1/apply", json={}).json()

    decisions = {d["name"]: (d["outcome"], d["failed_criteria"]) for d in dry["decisions"]}
    assert decisions == {
        "Dollars": ("excluded", ["revenue_currency"]),
        "Small": ("excluded", ["annual_revenue"]),
        "Fit": ("qualified", []),
    }
    dollars = next(d for d in applied["decisions"] if d["name"] == "Dollars")
    screening = client.get(f"/accounts/{dollars['account_id']}").json()["screening"]
    assert screening["criteria"] == ["revenue_currency"]


def test_an_override_survives_a_re_apply_and_is_reported(client):
    accounts = companies(client)
    create_policy(client, **POLICY)
    client.post("/screening-policies/1/apply", json={})
    small = accounts["small"]
    overridden = command(
        client, small, "screening/override", {"outcome": "qualified", "reason": "strategic partner"}
    )
    length = history_length(client, small)

    rerun = client.post("/screening-policies/1/apply", json={}).json()

    assert overridden["abm_stage"] == "identified"
    assert overridden["screening"]["overridden"] is True
    decision = next(d for d in rerun["decisions"] if d["name"] == "Small")
    assert (decision["overridden"], decision["skipped"]) == (True, "overridden")
    assert (decision["outcome"], decision["changes"]) == ("excluded", False)
    assert rerun["overridden"] == 1
    assert rerun["changes"] == sum(d["changes"] for d in rerun["decisions"]) == 0
    assert history_length(client, small) == length
    types = [e["type"] for e in client.get(f"/accounts/{small['id']}/history").json()["items"]]
    assert "screening_overridden" in types


def test_an_override_without_a_reason_is_the_reason_required_rule_and_stores_nothing(client):
    account = companies(client)["small"]
    length = history_length(client, account)
    path = f"/accounts/{account['id']}/screening/override"

    without = client.post(path, json={"outcome": "excluded"})
    null = client.post(path, json={"outcome": "excluded", "reason": None})

    for refused in (without, null):
        assert refused.status_code == 409, refused.text
        assert refused.json()["rule"] == "reason_required"
    assert history_length(client, account) == length


def test_named_accounts_past_stage_one_are_left_alone(client):
    create_policy(client, headcount_min=100_000)
    prioritized = rated(client, name="Rated", domain="rated.com")

    run = client.post(
        "/screening-policies/1/apply", json={"account_ids": [prioritized["id"]]}
    ).json()

    (decision,) = run["decisions"]
    assert decision["skipped"] == "in stage prioritized"
    assert decision["outcome"] == "excluded"  # what the policy says of it, left unapplied
    assert (decision["changes"], run["changes"], run["applied"]) == (False, 0, 0)
    assert client.get(f"/accounts/{prioritized['id']}").json()["abm_stage"] == "prioritized"


def test_bad_policies_and_runs_are_refused(client):
    register(client)

    assert client.post("/screening-policies", json={"colour": "red"}).json()["field"] == "colour"
    inverted = client.post("/screening-policies", json={"headcount_min": 9, "headcount_max": 1})
    assert (inverted.status_code, inverted.json()["field"]) == (422, "headcount_min")
    no_currency = client.post("/screening-policies", json={"revenue_min": 5})
    assert (no_currency.status_code, no_currency.json()["field"]) == (422, "revenue_currency")
    both = client.post(
        "/screening-policies", json={"countries_included": ["DE"], "countries_excluded": ["DE"]}
    )
    assert (both.status_code, both.json()["field"]) == (422, "countries_excluded")
    industries = client.post(
        "/screening-policies",
        json={"industries_included": ["Software"], "industries_excluded": ["software"]},
    )
    assert (industries.status_code, industries.json()["field"]) == (422, "industries_excluded")
    assert client.get("/screening-policies").json()["items"] == []
    assert client.post("/screening-policies/7/dry-run", json={}).status_code == 404
    assert client.post("/screening-policies/1/apply", json={"account_ids": ["x"]}).status_code in (
        404,
        422,
    )
    override = client.post(
        "/accounts/00000000-0000-0000-0000-000000000000/screening/override",
        json={"outcome": "qualified", "reason": "x"},
    )
    assert override.status_code == 404


def test_an_apply_naming_an_unknown_account_is_404_and_screens_none_of_the_others(client):
    known = register(client, name="Small", domain="small.com", headcount=10)
    create_policy(client, headcount_min=50)
    unknown = "00000000-0000-0000-0000-000000000000"

    for query in ("", "?background=true"):
        answer = client.post(
            f"/screening-policies/1/apply{query}", json={"account_ids": [known["id"], unknown]}
        )

        assert answer.status_code == 404, answer.text
        assert unknown in answer.json()["detail"]
    assert history_length(client, known) == 1
    assert client.get(f"/accounts/{known['id']}").json()["abm_stage"] == "identified"


def test_a_read_at_the_position_a_policy_command_answers_reflects_it(client):
    accounts = companies(client)
    created = client.post("/screening-policies", json=POLICY)
    assert created.status_code == 201, created.text
    assert int(created.headers["crm-position"]) > 0

    applied = client.post("/screening-policies/1/apply", json={})
    assert applied.status_code == 200, applied.text
    position = applied.headers["crm-position"]
    listed = client.get("/accounts", params={"min_position": position, "stage": "excluded"})
    assert "crm-stale" not in listed.headers
    assert {a["domain"] for a in listed.json()["items"]} == {
        accounts["small"]["domain"],
        accounts["shop"]["domain"],
    }
