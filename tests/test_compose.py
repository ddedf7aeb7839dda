"""compose.yaml is for users (no Docker engine runs here), so it is checked by parsing."""

import re
from pathlib import Path

import yaml

from services.cli import build_parser

ROOT = Path(__file__).parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if s.get("build") == "."}


def test_compose_runs_the_api_replicas_and_one_of_each_worker_standing_by():
    commands = {name: s["command"][:3] for name, s in OURS.items()}
    assert commands["api"] == ["crm", "serve", "--no-workers"]
    assert commands["projector"][:2] == ["crm", "project"]
    assert commands["publisher"][:2] == ["crm", "publish"]
    for service in OURS.values():
        assert "healthcheck" in service
        assert service["environment"]["CRM_DATABASE_URL"].startswith("postgresql://")
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_runs_only_commands_that_exist_with_settings_that_exist():
    known = set(re.findall(r'"(CRM_[A-Z_]+)"', (ROOT / "services" / "settings.py").read_text()))
    for service in OURS.values():
        command = service["command"]
        assert command[0] == "crm"
        build_parser().parse_args(command[1:])  # exits with an error on an unknown option
        assert set(service["environment"]) <= known, set(service["environment"]) - known
    assert (ROOT / "Dockerfile").exists()


def test_compose_offers_a_single_nats_node_and_a_three_node_cluster_profile():
    assert "-js" in SERVICES["nats"]["command"]
    cluster = {name: s for name, s in SERVICES.items() if "cluster" in s.get("profiles", [])}
    assert sorted(cluster) == ["nats-1", "nats-2", "nats-3"]
    names = set()
    for service in cluster.values():
        command = service["command"]
        assert "-js" in command and "--cluster_name" in command
        names.add(command[command.index("--name") + 1])  # JetStream needs distinct names
        routes = command[command.index("--routes") + 1].split(",")
        assert {r.split("//")[1].split(":")[0] for r in routes} == set(cluster)
    assert len(names) == 3
    for service in [SERVICES["postgres"], SERVICES["nats"], *cluster.values()]:
        assert "healthcheck" in service and service["volumes"]


def test_compose_creates_its_database_to_sort_names_as_sqlite_does():
    assert "--locale=C.UTF-8" in SERVICES["postgres"]["environment"]["POSTGRES_INITDB_ARGS"]


def test_compose_has_postgresql_notice_a_cut_connection_as_docs_deploy_says():
    command = SERVICES["postgres"]["command"]
    settings = dict(command[i + 1].split("=") for i, a in enumerate(command) if a == "-c")
    assert int(settings["tcp_keepalives_idle"]) <= 10


def test_the_api_healthcheck_waits_longer_than_ready_takes_with_its_database_away():
    # /ready tries the store twice, 2 s each (POSTGRES_CONNECT_TIMEOUT)
    assert int(OURS["api"]["healthcheck"]["timeout"].rstrip("s")) >= 5


def test_the_image_holds_the_tool_that_checks_an_export_without_the_service():
    assert "COPY tools tools" in (ROOT / "Dockerfile").read_text().splitlines()


def test_the_image_runs_the_service_as_a_user_of_its_own_owning_the_data_directories():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    data_dirs = {s["environment"]["CRM_DATA_DIR"] for s in OURS.values()}
    owned = " ".join(line for line in lines if "chown" in line)

    assert users and users[-1] not in ("root", "0")
    assert data_dirs | {"/data"} <= set(re.findall(r"/[\w/]+", owned.split("chown")[1]))
