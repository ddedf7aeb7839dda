"""Read models maintained event by event equal the ones rebuilt from the first event."""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, text

from domain.account import Account, BantRating, Firmographics
from domain.errors import LedgerError
from domain.jobs import RUNNING
from domain.ledger import CommandMeta
from domain.objectives import METRICS, Target
from domain.text import fold
from domain.vocabulary import AbmStage, FunnelState, Reaction, ScreeningOutcome
from projections import accounts, objectives, transitions
from projections.account_queries import Filters, account_list, cursor_key, leaderboard
from projections.generations import live_generation
from projections.reports import Window, report
from services.projector import READ_MODELS, Projector
from services.store import open_read_models
from tests.read_models.snapshots import all_rows
from tests.read_models.test_projector_process import seed

META = CommandMeta("hypothesis", reason="because")
rating = st.builds(BantRating, *(st.integers(1, 5) for _ in range(4)))
steps = st.lists(
    st.tuples(
        st.integers(0, 3),  # which account
        st.one_of(
            st.tuples(st.just("screen"), st.sampled_from(ScreeningOutcome)),
            st.tuples(st.just("bant"), rating),
            st.tuples(st.just("material"), st.none()),
            st.tuples(st.just("response"), st.sampled_from(Reaction)),
            st.tuples(st.just("meeting"), st.none()),
            st.tuples(st.just("win"), st.none()),
            st.tuples(st.just("lose"), st.none()),
            st.tuples(st.just("stage"), st.sampled_from(AbmStage)),
            st.tuples(st.just("funnel"), st.sampled_from(FunnelState)),
            st.tuples(
                st.just("correct"),
                st.fixed_dictionaries({"industry": st.sampled_from(["it", "energy"])})
                | st.fixed_dictionaries({"country": st.sampled_from(["DE", "FR"])}),
            ),
            st.tuples(
                st.just("objectives"),
                st.tuples(
                    st.sampled_from(["2026", "2026-03", "2026-03-15"]),
                    st.sampled_from(METRICS),
                    st.integers(0, 3),
                ),
            ),
            st.tuples(
                st.just("objective_removed"),
                st.tuples(st.sampled_from(["2026", "2026-03"]), st.sampled_from(METRICS)),
            ),
            st.tuples(
                st.just("job"), st.sampled_from(["start", "progress", "finish", "fail", "refuse"])
            ),
            st.tuples(st.just("catch_up"), st.none()),
        ),
    ),
    max_size=40,
)


def run(ledger, projector, account_ids, step, job_ids) -> None:
    index, (kind, arg) = step
    account_id = account_ids[index]
    if kind == "job":
        job_step(ledger, job_ids[index], arg)
        return
    commands = {
        "screen": lambda: ledger.screen(account_id, arg, ["test"], None, META),
        "bant": lambda: ledger.score_bant(account_id, arg, META),
        "material": lambda: ledger.send_material(account_id, "paper", "email", None, META),
        "response": lambda: ledger.receive_response(account_id, arg, None, META),
        "meeting": lambda: ledger.hold_meeting(account_id, None, META),
        "win": lambda: ledger.win_deal(account_id, None, None, META),
        "lose": lambda: ledger.lose_deal(account_id, META),
        "stage": lambda: ledger.move_stage(account_id, arg, META),
        "funnel": lambda: ledger.move_funnel(account_id, arg, META),
        "correct": lambda: ledger.submit(
            account_id, META, Account.correct_firmographics, arg
        ).result(),
        "objectives": lambda: ledger.set_objectives(
            arg[0], [Target(arg[1], arg[2], arg[2], arg[2])], META
        ),
        "objective_removed": lambda: ledger.set_objectives(arg[0], [], META, [arg[1]]),
        "catch_up": projector.catch_up,
    }
    try:
        commands[kind]()
    except LedgerError:
        pass  # a refused command is part of a realistic history


def job_step(ledger, job_id, action) -> None:
    """Starts a job, or records what a running job does next."""
    job = ledger.job(job_id)
    if action == "start":
        if job is None:
            params = {"file": "/uploads/x.csv", "strict": False, "dry_run": True}
            ledger.start_job("import", params, META, job_id)
        return
    if job is None or job.status != RUNNING:
        return
    changes = {
        "progress": lambda j, by: j.progress(j.done + 1, 10, by),
        "finish": lambda j, by: j.finish({"registered": j.done, "errors": []}, by),
        "fail": lambda j, by: j.fail("OSError", by),
        "refuse": lambda j, by: j.refuse("no Domain column", {"rejected": 2}, by),
    }
    ledger.record_job(job_id, changes[action])


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=steps, industries=st.lists(st.sampled_from(["it", "retail"]), min_size=4, max_size=4)
)
def test_incremental_read_models_equal_rebuilt_ones(ledger, projector, history, industries):
    projector.batch_size = 3  # batch boundaries fall inside commands, too
    account_ids = []
    for industry in industries:
        details = Firmographics(
            f"Co {uuid.uuid4().hex[:6]}",
            f"{uuid.uuid4().hex}.com",
            industry,
            10,
            1000,
            "EUR",
            "DE",
            1.0,
            "test",
        )
        account_ids.append(ledger.register(details, META).account.id)
    job_ids = [uuid.uuid4() for _ in range(4)]
    for step in history:
        run(ledger, projector, account_ids, step, job_ids)
    projector.catch_up()
    incremental = all_rows(projector)

    projector.batch_size = 1000
    for name in projector.read_models:
        projector.rebuild(name)
    assert all_rows(projector) == incremental

    projector.rebuild_batch_size = 7  # batch boundaries fall inside commands, too
    projector.rebuild()  # every read model at once, in one pass over the log
    assert all_rows(projector) == incremental


def test_projectors_and_a_rebuild_taking_turns_apply_every_event_once(ledger, projector, settings):
    """A projector goes on from where its last batch left the read models; batches of another
    projector and a rebuild's new tables in between must send it back to the database, so that
    no event is applied twice, or to tables no longer live."""
    other = Projector(ledger, open_read_models(settings))
    seed(ledger, 5)
    projector.catch_up()
    seed(ledger, 5)
    other.catch_up()
    seed(ledger, 5)
    projector.catch_up()
    other.rebuild("accounts")
    seed(ledger, 5)
    projector.catch_up()
    head = ledger.recorder.max_notification_id()

    assert {name: projector.position(name) for name in projector.read_models} == {
        name: head for name in projector.read_models
    }
    followed = all_rows(projector)
    assert len(followed["accounts"]) == 20 * 2  # identified, then prioritized with its score
    projector.rebuild()
    assert all_rows(projector) == followed


def test_a_read_that_began_before_a_rebuild_went_live_is_answered_from_the_tables_it_began_on(
    ledger, projector, settings
):
    # Given three rated accounts, and a read of the leaderboard that has found the live tables
    seed(ledger, 3)
    projector.catch_up()
    rebuilder = Projector(ledger, open_read_models(settings))
    with ThreadPoolExecutor(1) as pool, projector.database.read() as conn:
        before = live_generation(conn, "accounts")
        assert before is not None

        # When a rebuild makes new tables live before the read reads the rows
        rebuilt = pool.submit(rebuilder.rebuild)
        deadline = time.monotonic() + 30
        while not switched(projector, rebuilt):
            assert time.monotonic() < deadline, "the rebuild did not switch"
            time.sleep(0.01)  # a look every 10 ms, until the switch
        page = leaderboard(conn, Filters(), 10, key=cursor_key(conn))

    # Then the read is answered as of the position it began at, and the replaced tables are
    # dropped once it has ended
    assert (page.position, len(page.rows)) == (before.position, 3)
    assert rebuilt.result(timeout=30) == ledger.recorder.max_notification_id()
    with projector.database.read() as conn:
        assert not inspect(conn).has_table(accounts.table(before))
        names = conn.execute(text("SELECT name, live FROM rm_generations")).all()
    assert sorted(names) == [("accounts", 1), ("jobs", 1), ("objectives", 1), ("transitions", 1)]


def switched(projector, rebuilt) -> bool:
    """Whether the rebuild has made its tables live: on SQLite it then goes on to the end; on
    PostgreSQL it waits, to drop the tables it replaced, behind the reads begun before (whose
    lock on the registry a look at the registry would queue behind too)."""
    if rebuilt.done():
        return True
    with projector.database.read() as conn:
        if conn.dialect.name != "postgresql":
            return False
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'rm_generations' "
                "AND c.relnamespace = current_schema()::regnamespace AND NOT l.granted"
            )
        ).scalar()
    return bool(waiting)


def test_a_read_model_a_release_adds_catches_up_to_what_a_rebuild_makes(ledger, settings):
    # Given read models kept by a release without the jobs read model, over accounts and jobs
    rng = random.Random(7)
    seed(ledger, 3)  # qualified and rated
    with_ids = ledger.recorder.select_notifications(1, 100)
    account_ids = list(dict.fromkeys(n.originator_id for n in with_ids))
    job_ids = [uuid.uuid4() for _ in range(4)]
    actions = ["start", "progress", "finish", "fail", "refuse"]
    earlier = {name: model for name, model in READ_MODELS.items() if name != "jobs"}
    before = Projector(ledger, open_read_models(settings), batch_size=3, read_models=earlier)
    before.setup()
    for step in range(150):
        if rng.random() < 0.5:
            job_step(ledger, rng.choice(job_ids), rng.choice(actions))
        else:
            rating = BantRating(*rng.choices(range(1, 6), k=4))
            ledger.score_bant(rng.choice(account_ids), rating, META)
        if step == 60:
            before.catch_up()

    # When the release's projector catches the new one up in small batches, while commands go
    # on and the others wait for it
    upgraded = Projector(ledger, open_read_models(settings), batch_size=2)
    upgraded.rebuild_batch_size = 5  # its batches end inside commands, too
    upgraded.setup()
    for step in range(40):
        upgraded._step()
        if step % 5 == 0:
            job_step(ledger, rng.choice(job_ids), rng.choice(actions))
            ledger.score_bant(account_ids[0], BantRating(2, 2, 2, 2), META)
    upgraded.catch_up()

    # Then every read model holds what a rebuild of all of them from the first event holds
    incremental = all_rows(upgraded)
    assert incremental["jobs"]
    upgraded.rebuild()
    assert all_rows(upgraded) == incremental
    before.database.dispose()
    upgraded.database.dispose()


def test_a_batch_that_would_end_inside_a_command_ends_before_it(ledger, projector):
    # Given a qualified account the read models hold, then another account registered and
    # the first rated, which moves it from identified to prioritized in the same command
    details = Firmographics("Acme", "acme.example", "it", 10, 1, "EUR", "DE", 1.0, "test")
    acme = ledger.register(details, META).account.id
    ledger.screen(acme, ScreeningOutcome.QUALIFIED, [], None, META)
    projector.catch_up()
    details = Firmographics("Other", "other.example", "it", 10, 1, "EUR", "DE", 1.0, "test")
    ledger.register(details, META)
    ledger.score_bant(acme, BantRating(5, 5, 5, 5), META)

    # When the projector takes a batch whose last event is the rating, before the stage move
    projector.batch_size = 2
    projector._step()

    # Then no read shows the account rated and still identified, a state it never had
    with projector.database.read() as conn:
        identified = leaderboard(conn, Filters(stages=("identified",)), 10, key=cursor_key(conn))
    assert identified.rows == []
    projector.catch_up()
    with projector.database.read() as conn:
        rated = leaderboard(conn, Filters(), 10, key=cursor_key(conn)).rows
    assert [(r["name"], r["score"], r["abm_stage"]) for r in rated] == [
        ("Acme", 625, "prioritized")
    ]


def list_account(ledger, name: str, industry: str = "retail", domain: str = "") -> None:
    domain = domain or f"{uuid.uuid4().hex}.com"
    details = Firmographics(name, domain, industry, 10, 1000, "EUR", "DE", 1.0, "test")
    ledger.register(details, META)


def listed(projector, filters: Filters) -> list[str]:
    with projector.database.read() as conn:
        page = account_list(conn, filters, 10, key=cursor_key(conn))
    return [row["name"] for row in page.rows]


def started_without(projector, *columns: str) -> None:
    """The accounts read model as the release before made it, without `columns` and with its
    names keyed as it keyed them (folded, accents and all); then this release started on it."""
    with projector.database.write() as conn:
        table = accounts.table(live_generation(conn, accounts.NAME))
        for account_id, from_pos, name in conn.execute(
            text(f"SELECT account_id, from_pos, name FROM {table}")
        ).all():
            conn.execute(
                text(f"UPDATE {table} SET name_key = :k WHERE account_id = :a AND from_pos = :p"),
                {"k": fold(name), "a": account_id, "p": from_pos},
            )
        for column in columns:
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    projector.setup()


def test_objectives_listed_by_the_release_before_removals_stand_and_a_removal_applies(
    ledger, projector
):
    # Given targets listed by the release before, whose table had no `removed` column
    won, lost = Target("accounts_won", 1, 2, 3), Target("accounts_lost", 3, 2, 1)
    ledger.set_objectives("2026", [won, lost], META)
    projector.catch_up()
    with projector.database.write() as conn:
        table, _ = objectives.tables(live_generation(conn, objectives.NAME))
        conn.execute(text(f"ALTER TABLE {table} DROP COLUMN removed"))

    # When this release starts on it, and a target is removed
    projector.setup()
    ledger.set_objectives("2026", [], META, ["accounts_won"])
    projector.catch_up()

    # Then the target left stands as set before, the one removed is gone
    with projector.database.read() as conn:
        gen = live_generation(conn, objectives.NAME)
        assert objectives.targets_between(conn, gen, "2026", "2026", None) == {
            "2026": {"accounts_lost": lost}
        }


def test_accounts_listed_before_names_sorted_without_accents_first_sort_so_after_a_rebuild(
    ledger, projector
):
    # Given an account listed by the release before, which sorted Ähre after Zeta
    list_account(ledger, "\u00c4hre", domain="aehre.example")
    projector.catch_up()

    # When this release starts on it, and lists more
    started_without(projector)
    list_account(ledger, "Zeta", domain="zeta.example")
    list_account(ledger, "\u00d6ko", domain="oeko.example")
    list_account(ledger, "Beta", domain="beta.example")
    projector.catch_up()

    # Then the earlier one keeps its place until the read model is rebuilt
    assert listed(projector, Filters()) == ["Beta", "\u00d6ko", "Zeta", "\u00c4hre"]
    projector.rebuild("accounts")
    assert listed(projector, Filters()) == ["\u00c4hre", "Beta", "\u00d6ko", "Zeta"]


def test_accounts_listed_before_industry_keys_are_filtered_as_then_until_a_rebuild(
    ledger, projector
):
    def by_industry(industry: str) -> list[str]:
        return listed(projector, Filters(industry=industry))

    # Given accounts listed by the release before, whose table had no industry_key
    list_account(ledger, "Anvil", "Manufacturing")
    list_account(ledger, "Bistro", "Cafe\u0301s")  # with a combining accent
    projector.catch_up()

    # When this release starts on it, and lists more
    started_without(projector, "industry_key")
    list_account(ledger, "Bolt", "manufacturing")
    list_account(ledger, "Brasserie", "Caf\u00e9s")
    projector.catch_up()

    # Then the industry filter finds the earlier accounts as that release did, until a rebuild
    assert by_industry("MANUFACTURING") == ["Anvil", "Bolt"]
    assert by_industry("caf\u00e9s") == ["Brasserie"]
    projector.rebuild("accounts")
    assert by_industry("MANUFACTURING") == ["Anvil", "Bolt"]
    assert by_industry("caf\u00e9s") == ["Bistro", "Brasserie"]


def test_accounts_listed_before_search_keys_are_found_as_then_until_a_rebuild(ledger, projector):
    def found(search: str) -> list[str]:
        return listed(projector, Filters(search=search))

    # Given an account listed by the release before, whose table had no search_key
    list_account(ledger, "Caf\u00e9 Bleu", domain="b1.example")
    projector.catch_up()

    # When this release starts on it, and lists more
    started_without(projector, "search_key")
    list_account(ledger, "Caf\u00e9 Noir", domain="n1.example")
    projector.catch_up()

    # Then the earlier one is found as that release found it (by its name with its accents,
    # or by its domain), and without accents too once the read model is rebuilt (until then
    # it sorts as that release sorted it too: after the names keyed by this one)
    assert sorted(found("caf\u00e9")) == ["Caf\u00e9 Bleu", "Caf\u00e9 Noir"]
    assert found("BLEU") == ["Caf\u00e9 Bleu"]
    assert found("b1.ex") == ["Caf\u00e9 Bleu"]
    assert found("cafe") == ["Caf\u00e9 Noir"]
    projector.rebuild("accounts")
    assert found("cafe") == ["Caf\u00e9 Bleu", "Caf\u00e9 Noir"]


def test_accounts_listed_before_growth_and_source_were_kept_show_them_after_a_rebuild(
    ledger, projector
):
    def kept() -> list[tuple]:
        with projector.database.read() as conn:
            page = account_list(conn, Filters(), 10, key=cursor_key(conn))
        return [(row["name"], row["growth_rate"], row["source"]) for row in page.rows]

    # Given an account listed by the release before, whose table had neither column
    list_account(ledger, "Anvil")
    projector.catch_up()

    # When this release starts on it, and lists another
    started_without(projector, "growth_rate", "source")
    list_account(ledger, "Bolt")
    projector.catch_up()

    # Then the earlier account's are unknown (null), not made up, until a rebuild reads them
    assert kept() == [("Anvil", None, None), ("Bolt", 1.0, "test")]
    projector.rebuild("accounts")
    assert kept() == [("Anvil", 1.0, "test"), ("Bolt", 1.0, "test")]


def test_moves_indexed_as_the_release_before_did_are_reported_after_the_upgrade(ledger, projector):
    def prioritized() -> int:
        window = Window(datetime(2000, 1, 1, tzinfo=UTC), END, END, "year")
        with projector.database.read() as conn:
            return report(conn, transitions.STAGE, window)["groups"][0]["current"]["prioritized"]

    # Given three accounts' moves in a table indexed as the release before did: by account,
    # and by kind and time
    seed(ledger, 3)
    projector.catch_up()
    with projector.database.write() as conn:
        table = transitions.table(live_generation(conn, transitions.NAME))
        conn.execute(text(f"DROP INDEX {table}_moves"))
        conn.execute(text(f"CREATE INDEX {table}_account ON {table} (account_id, position)"))
        conn.execute(text(f"CREATE INDEX {table}_at ON {table} (kind, at)"))
    assert prioritized() == 3

    # When this release starts on it, and records two more
    projector.setup()
    seed(ledger, 2)
    projector.catch_up()

    # Then the reports' index has replaced the two (each one more to keep up on every move),
    # and the report counts all five
    with projector.database.read() as conn:
        indexes = {index["name"] for index in inspect(conn).get_indexes(table)}
    assert indexes == {f"{table}_moves"}
    assert prioritized() == 5


END = datetime(2100, 1, 1, tzinfo=UTC)
