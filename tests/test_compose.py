"""compose.yaml is for users (no Docker engine runs here), so it is checked by parsing."""

from pathlib import Path

import yaml

from services.cli import build_parser

ROOT = Path(__file__).parent.parent


def test_compose_file_parses_and_runs_only_commands_that_exist():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())

    services = compose["services"]
    assert {"postgres", "nats", "api"} <= set(services)
    assert services["api"]["environment"]["CRM_DATABASE_URL"].startswith("postgresql://")
    assert services["api"]["environment"]["CRM_NATS_URL"].startswith("nats://")
    for service in services.values():
        if service.get("build") == ".":  # our image: its commands must exist
            command = service["command"]
            assert command[0] == "crm"
            build_parser().parse_args(command[1:])  # exits with an error on an unknown command
    assert (ROOT / "Dockerfile").exists()
