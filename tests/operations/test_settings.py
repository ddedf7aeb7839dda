"""`CRM_…` settings: a value that cannot be used stops the command at once, naming the
variable, and stores nothing; the log level leaves out what is below it."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import secrets
import socket
import subprocess
import sys

import httpx
import psycopg
import pytest

from services.cli import main
from services.logs import configure
from services.nats_server import free_port
from services.settings import Settings, postgres_url
from services.store import drop_schema, open_ledger
from tests.processes import ROOT, CrmServe, crm_environment, run_crm

KEYS = "ops:admin:0123456789abcdef"  # keys, so that crm serve has no development banner


@pytest.mark.parametrize(
    "query",
    [
        "port=5432,5433",
        "port=5432,",
        "connect_timeout=-1",
        "sslmode=verify-full",
        "target_session_attrs=read-write",
        "load_balance_hosts=random",
    ],
)
def test_libpq_parameter_values_libpq_takes_are_taken(query):
    url = f"postgresql://crm:hunter2@db/crm?{query}"

    assert postgres_url(url) == url


def test_a_database_url_of_several_hosts_each_with_its_port_is_taken():
    url = "postgresql://crm:hunter2@db1:5432,db2:5433/crm?target_session_attrs=read-write"

    assert postgres_url(url) == url


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CRM_PORT", "eighty", "CRM_PORT must be a whole number, not 'eighty'"),
        (
            "CRM_DATABASE_POOL_SIZE",
            "-4",
            "CRM_DATABASE_POOL_SIZE must be a whole number of at least 1",
        ),
        ("CRM_PORT", "70000", "CRM_PORT must be a whole number of at most 65535, not '70000'"),
        (
            "CRM_PROJECTOR_BATCH_SIZE",
            "0",
            "CRM_PROJECTOR_BATCH_SIZE must be a whole number of at least 1, not '0'",
        ),
        ("CRM_NATS_REPLICAS", "7", "CRM_NATS_REPLICAS must be a whole number of at most 5"),
        ("CRM_READ_WAIT_SECONDS", "nan", "CRM_READ_WAIT_SECONDS must be a number of at least 0"),
        ("CRM_LOG_LEVEL", "loud", "CRM_LOG_LEVEL must be one of debug, info, warning, error"),
        ("CRM_LOG_FORMAT", "xml", "CRM_LOG_FORMAT must be one of json, text"),
        (
            "CRM_DATABASE_URL",
            "mysql://crm:hunter2@db/crm",
            "CRM_DATABASE_URL must start with postgresql://, not mysql:",
        ),
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2@db:five/crm",
            "CRM_DATABASE_URL has a port that is not a number",
        ),
        # libpq's parameters it would read only as it connects, and fail on as on an outage
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2@db/crm?sslmode=verify_full",
            "CRM_DATABASE_URL has sslmode='verify_full', not one of disable, allow, prefer,",
        ),
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2@db/crm?sslmod=require",
            'CRM_DATABASE_URL: invalid URI query parameter: "sslmod"',
        ),
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2%zz@db/crm",  # libpq would quote the password it misreads
            "CRM_DATABASE_URL cannot be read as a libpq URL",
        ),
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2@db/crm?port=abc",
            "CRM_DATABASE_URL has a port, not a whole number",
        ),
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2@x:TopSecretTail@127.0.0.1:5432/crm",
            "CRM_DATABASE_URL has more than one @ before its host: write an @ in the user or",
        ),
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2@TopSecretTail@127.0.0.1:1/crm",
            "CRM_DATABASE_URL has more than one @ before its host",
        ),
        (
            "CRM_DATABASE_URL",
            "postgres://alice:hunter2@[::1:1/db",
            "CRM_DATABASE_URL has a host that cannot be read",
        ),
        (
            "CRM_NATS_URL",
            "nats://u:hunter2@[::1:1",
            "CRM_NATS_URL has a host that cannot be read: 'nats://[::1:1'",
        ),
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2@db/crm?connect_timeout=5s",
            "CRM_DATABASE_URL has connect_timeout='5s', not a whole number",
        ),
        (
            "CRM_NATS_URL",
            "nats://a:4222,http://b:4222",
            "CRM_NATS_URL must list servers such as nats://host:4222, not 'http://b:4222'",
        ),
        ("CRM_NATS_URL", "nats://a:four", "CRM_NATS_URL has a port that is not a number"),
        # libpq reads these only as it connects, and then fails as if the database were down
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2@db/crm?target_session_attrs=bogus",
            "CRM_DATABASE_URL has target_session_attrs='bogus', not one of any, read-write",
        ),
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2@db/crm?load_balance_hosts=bogus",
            "CRM_DATABASE_URL has load_balance_hosts='bogus', not one of disable, random",
        ),
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2@db/crm?port=99999",
            "CRM_DATABASE_URL has a port out of 1 to 65535",
        ),
        (
            "CRM_DATABASE_URL",
            "postgresql://crm:hunter2@db:99999/crm",
            "CRM_DATABASE_URL has a port that is not a number from 1 to 65535",
        ),
        ("CRM_LOG_LEVEL", "loud", "CRM_LOG_LEVEL must be one of"),
        (
            "CRM_NATS_URL",
            "nats://a:4222,http://crm:hunter2@b:4222",
            "CRM_NATS_URL must list servers such as nats://host:4222, not 'http://b:4222'",
        ),
        (
            "CRM_NATS_URL",
            "nats://crm:hunter2@a:four",
            "CRM_NATS_URL has a port that is not a number: 'nats://a:four'",
        ),
        ("CRM_NATS_STREAM", "crm events", "CRM_NATS_STREAM must be a name without spaces"),
        ("CRM_NATS_STREAM", "crm.events", "CRM_NATS_STREAM must be a name without spaces, dots"),
        *(
            ("CRM_DATABASE_SCHEMA", schema, "CRM_DATABASE_SCHEMA must be a lower-case name")
            for schema in ["bad-schema", "a;b", 'x"y', "Mixed", "pg_foo", "1st", "a" * 64]
        ),
        # Numbers the libraries beneath would take, then fail on at run time.
        (
            "CRM_NATS_MAX_AGE_SECONDS",
            "1e10",
            "CRM_NATS_MAX_AGE_SECONDS must be a number of at most 3155760000, not '1e10'",
        ),
        ("CRM_AUDIT_CHECKPOINT_SECONDS", "1e300", "CRM_AUDIT_CHECKPOINT_SECONDS must be a number"),
        # JetStream refuses an age under 100 ms: the publisher would publish nothing.
        (
            "CRM_NATS_MAX_AGE_SECONDS",
            "0.05",
            "CRM_NATS_MAX_AGE_SECONDS must be 0 (for ever) or at least 0.1, not 0.05",
        ),
        (
            "CRM_AUDIT_CHECKPOINT_SECONDS",
            "0.0001",
            "CRM_AUDIT_CHECKPOINT_SECONDS must be 0 (off) or a number of at least 1",
        ),
        ("CRM_DATABASE_POOL_SIZE", "٥", "CRM_DATABASE_POOL_SIZE must be a whole number, not '٥'"),
        ("CRM_READ_WAIT_SECONDS", "١.٥", "CRM_READ_WAIT_SECONDS must be a number, not"),
        ("CRM_AGGREGATE_CACHE_SIZE", "9" * 20, "CRM_AGGREGATE_CACHE_SIZE must be a whole number"),
        *(
            ("CRM_CORS_ORIGINS", origins, f"CRM_CORS_ORIGINS must name origins such as {said}")
            for origins, said in [
                ("not a url", "https://app.example.com, not 'not a url'"),
                ("https://a.example,app.example.com", "https://app.example.com, not 'app."),
                ("https://app.example.com/", "https://app.example.com, not 'https://app"),
                ("https://a.example:99999", "https://app.example.com, not 'https://a.example:9"),
                ("https://user@a.example", "https://app.example.com, not 'https://user@a"),
            ]
        ),
        ("CRM_READ_WAIT_SECONDS", "3600", "CRM_READ_WAIT_SECONDS must be a number of at most 60"),
        (
            "CRM_REPORT_WAIT_SECONDS",
            "3600",
            "CRM_REPORT_WAIT_SECONDS must be a number of at most 600",
        ),
        ("CRM_DATABASE_POOL_SIZE", "100000", "CRM_DATABASE_POOL_SIZE must be a whole number of"),
        ("CRM_PROJECTOR_BATCH_SIZE", "10" * 10, "CRM_PROJECTOR_BATCH_SIZE must be a whole number"),
    ],
)
def test_a_setting_that_cannot_be_used_stops_the_command_naming_it(
    name, value, says, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(name, value)
    code = main(["rebuild"])

    err = capsys.readouterr().err
    assert code == 2
    assert says in err
    assert "Traceback" not in err
    assert "hunter2" not in err and "TopSecret" not in err  # nor any part of a password
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("store", ["postgres"])
@pytest.mark.parametrize("schema", ["Mixed", "bad-schema", "pg_crm"])
def test_a_schema_name_the_read_models_would_not_find_is_refused_before_any_is_made(
    schema, settings
):
    done = run_crm(dataclasses.replace(settings, database_schema=schema), "rebuild")

    assert done.returncode == 2
    assert done.stderr.startswith("CRM_DATABASE_SCHEMA must be a lower-case name")
    with psycopg.connect(settings.database_url) as conn:
        made = conn.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE lower(schema_name) = %s",
            (schema.lower(),),
        ).fetchall()
    assert made == []


def test_the_event_stores_connections_take_the_parameters_of_the_database_url(
    postgres_server_url, tmp_path
):
    """`?sslmode=verify-full` must hold for the connections that write events, not only for the
    read models'; `application_name` shows whether a connection took the URL's parameters."""
    name = f"crm-{secrets.token_hex(4)}"
    joiner = "&" if "?" in postgres_server_url else "?"
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"{postgres_server_url}{joiner}application_name={name}",
        database_schema=f"t_{secrets.token_hex(6)}",
        database_pool_size=3,
    )
    ledger = open_ledger(settings)
    try:
        with psycopg.connect(postgres_server_url) as conn:
            (named,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone()
    finally:
        ledger.close()
        drop_schema(postgres_server_url, settings.database_schema)

    assert named >= 3  # the event store's pool, opened whole at start


def test_each_process_of_crm_serve_names_its_connections_after_its_command(
    postgres_server_url, tmp_path
):
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=postgres_server_url,
        database_schema=f"t_{secrets.token_hex(6)}",
    )
    server = CrmServe(settings).wait_ready()
    try:
        with psycopg.connect(postgres_server_url) as conn:
            rows = conn.execute(
                "SELECT DISTINCT application_name FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name LIKE 'crm-%'"
            ).fetchall()
    finally:
        server.stop()
        drop_schema(postgres_server_url, settings.database_schema)

    named = {name for (name,) in rows}
    assert {"crm-serve", "crm-project", "crm-publish"} <= named


def test_a_name_the_database_url_gives_its_connections_is_kept():
    url = "postgresql://crm@db.example/crm?sslmode=require&application_name=billing-crm"

    assert Settings(database_url=url).naming_connections("crm-serve").database_url == url
    assert Settings().naming_connections("crm-serve").database_url is None


@pytest.mark.parametrize("under", ["", "data"])
def test_a_data_dir_that_is_or_lies_in_a_regular_file_stops_the_command_naming_it(
    under, monkeypatch, capsys, tmp_path
):
    regular_file = tmp_path / "crm-data"
    regular_file.write_text("not a directory")
    monkeypatch.setenv("CRM_DATA_DIR", str(regular_file / under))
    code = main(["rebuild"])

    err = capsys.readouterr().err
    assert code == 2
    assert err == f"CRM_DATA_DIR must name a directory, and {regular_file} is a file\n"
    assert regular_file.read_text() == "not a directory"


def test_a_data_dir_that_cannot_be_made_stops_the_command_naming_it(monkeypatch, capsys):
    monkeypatch.setenv("CRM_DATA_DIR", "/proc/crm-data")  # no directory can be made in /proc
    code = main(["rebuild"])

    assert code == 2
    assert capsys.readouterr().err == (
        "CRM_DATA_DIR /proc/crm-data cannot be made: No such file or directory\n"
    )


@pytest.mark.parametrize("store", ["postgres"])  # on SQLite the store is made there first
def test_crm_serve_on_postgresql_checks_its_data_dir_at_start(settings):
    """Uploads wait in CRM_DATA_DIR to be imported: found out at the first import, it was a 500."""
    done = run_crm(settings, "serve", "--no-workers", "--port", "0", CRM_DATA_DIR="/proc/crm")

    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "CRM_DATA_DIR /proc/crm cannot be made: No such file or directory"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CRM_API_KEYS": "ops:boss:0123456789abcdef"}, "key 'ops' has unknown role 'boss'"),
        ({"CRM_API_KEYS": "ops:admin:short"}, "the secret of key 'ops' is under 16 characters"),
        ({"CRM_API_KEYS_FILE": "/nonexistent/keys"}, "CRM_API_KEYS_FILE /nonexistent/keys: No"),
        ({"CRM_API_KEYS_FILE": "{tmp}/keys"}, "CRM_API_KEYS_FILE {tmp}/keys: not UTF-8 text"),
    ],
)
def test_api_keys_that_cannot_be_used_stop_crm_serve_naming_them(env, says, tmp_path):
    (tmp_path / "keys").write_bytes(b"\xff\xfeops:admin:0123456789abcdef\n")
    env = {name: value.format(tmp=tmp_path) for name, value in env.items()}
    says = says.format(tmp=tmp_path)
    # A process of its own: were the keys taken, the server would run until the timeout.
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "--port", str(free_port())],
        env={**os.environ, "CRM_DATA_DIR": str(tmp_path / "data"), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("store", ["sqlite"])  # the database is named by the variable
@pytest.mark.parametrize("command", [["rebuild"], ["audit", "verify"], ["serve"]])
def test_a_database_that_does_not_answer_at_start_stops_the_command_with_exit_1(command, settings):
    port = free_port()
    url = f"postgresql://crm:hunter2@127.0.0.1:{port}/crm?password=hunter2"
    args = [*command, "--port", str(free_port())] if command == ["serve"] else command
    done = run_crm(settings, *args, CRM_DATABASE_URL=url)

    *_, line = done.stderr.splitlines()  # crm serve may first say it is in development mode
    assert done.returncode == 1  # the value may be right and the database down: not 2
    assert line.startswith(
        f"CRM_DATABASE_URL postgresql://crm@127.0.0.1:{port}/crm: the database does not answer"
    )
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr
    assert "Embedded NATS" not in done.stdout  # crm serve started nothing


@pytest.mark.parametrize("store", ["sqlite"])
def test_crm_serve_on_a_port_in_use_stops_before_it_starts_anything(settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_crm(settings, "serve", "--port", str(port), CRM_API_KEYS=KEYS)

    assert done.returncode == 2
    assert done.stderr == f"crm serve: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert done.stdout == ""  # no "CRM listening", no embedded broker
    assert not (settings.data_dir / "nats").exists()


@pytest.mark.parametrize("store", ["sqlite"])
@pytest.mark.parametrize(
    ("command", "env"),
    [
        (["project", "--metrics-port", "{port}"], {}),
        (["project"], {"CRM_METRICS_PORT": "{port}"}),
        (["publish", "--metrics-port", "{port}"], {"CRM_NATS_URL": "nats://127.0.0.1:1"}),
    ],
)
def test_a_worker_whose_metrics_port_is_in_use_stops_naming_it(command, env, settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        args = [arg.format(port=port) for arg in command]
        done = run_crm(settings, *args, **{k: v.format(port=port) for k, v in env.items()})

    assert done.returncode == 2
    assert done.stderr == (
        f"crm {command[0]}: cannot listen on 127.0.0.1:{port} for metrics "
        "(--metrics-host or CRM_HOST, --metrics-port or CRM_METRICS_PORT): "
        "Address already in use\n"
    )
    assert not settings.data_dir.exists()  # stopped before the store was opened


@pytest.mark.parametrize("store", ["sqlite"])
def test_a_worker_whose_metrics_host_is_unknown_stops_naming_it(settings):
    port = str(free_port())
    done = run_crm(settings, "project", "--metrics-port", port, CRM_HOST="no.such.host.invalid")

    assert done.returncode == 2
    assert done.stderr.startswith(
        f"crm project: cannot listen on no.such.host.invalid:{port} for metrics (--metrics-host"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("store", ["sqlite"])
def test_crm_serve_on_port_0_listens_on_a_free_port_and_says_which(settings):
    server = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "--no-workers", "--port", "0"],
        env=crm_environment(settings, CRM_API_KEYS=KEYS),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        banner = server.stdout.readline()  # type: ignore[union-attr]
        port = int(re.fullmatch(r"CRM listening on http://127\.0\.0\.1:(\d+) .*\n", banner)[1])
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_cors_origins_are_kept_as_a_browser_sends_them():
    # A browser sends its origin's host in lower case, and no port that is the scheme's own:
    # kept as written, these would match no request, silently.
    settings = Settings.from_env(
        {"CRM_CORS_ORIGINS": "https://App.Example.com:443, http://localhost:5173,http://[::1]:80"}
    )

    assert settings.cors_origins == (
        "https://app.example.com",
        "http://localhost:5173",
        "http://[::1]",
    )


def test_unset_or_empty_settings_take_their_defaults():
    empty = ["CRM_PORT", "CRM_READ_WAIT_SECONDS", "CRM_LOG_LEVEL", "CRM_HOST", "CRM_DATA_DIR"]
    assert Settings.from_env(dict.fromkeys(empty, "")) == Settings()
    assert Settings.from_env({"CRM_READ_WAIT_SECONDS": " "}) == Settings()
    # White space around a value is no part of it, in any setting
    assert Settings.from_env(dict.fromkeys(["CRM_DATA_DIR", "CRM_HOST"], " ")) == Settings()
    assert Settings.from_env(
        {"CRM_HOST": " 127.0.0.1 ", "CRM_LOG_LEVEL": " info ", "CRM_LOG_FORMAT": "JSON"}
    ) == Settings(host="127.0.0.1", log_level="info", log_format="json")
    assert Settings.from_env(
        {"CRM_PORT": "9000", "CRM_READ_WAIT_SECONDS": "0.5", "CRM_REPORT_WAIT_SECONDS": "0"}
    ) == Settings(port=9000, read_wait_seconds=0.5, report_wait_seconds=0)


def test_the_log_level_leaves_out_what_is_below_it(capsys):
    configure("text", "warning")
    log = logging.getLogger("crm.requests")
    log.info("GET /leaderboards/bant 200")
    log.warning("the projector is behind")

    err = capsys.readouterr().err
    assert "the projector is behind" in err
    assert "GET /leaderboards/bant" not in err
