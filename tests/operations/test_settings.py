"""`CRM_…` settings: a value that cannot be used stops the command at once, naming the
variable, and stores nothing; the log level leaves out what is below it."""

from __future__ import annotations

import logging

import pytest

from services.cli import main
from services.logs import configure
from services.settings import Settings


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CRM_PORT", "eighty", "CRM_PORT must be a whole number, not 'eighty'"),
        (
            "CRM_DATABASE_POOL_SIZE",
            "-4",
            "CRM_DATABASE_POOL_SIZE must be a whole number of at least 0",
        ),
        ("CRM_READ_WAIT_SECONDS", "nan", "CRM_READ_WAIT_SECONDS must be a number of at least 0"),
        ("CRM_LOG_LEVEL", "loud", "CRM_LOG_LEVEL must be one of debug, info, warning, error"),
        ("CRM_LOG_FORMAT", "xml", "CRM_LOG_FORMAT must be one of json, text"),
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
    assert not (tmp_path / "data").exists()


def test_unset_or_empty_settings_take_their_defaults():
    empty = ["CRM_PORT", "CRM_READ_WAIT_SECONDS", "CRM_LOG_LEVEL", "CRM_HOST", "CRM_DATA_DIR"]
    assert Settings.from_env(dict.fromkeys(empty, "")) == Settings()
    assert Settings.from_env({"CRM_READ_WAIT_SECONDS": " "}) == Settings()
    assert Settings.from_env({"CRM_PORT": "9000", "CRM_READ_WAIT_SECONDS": "0.5"}) == Settings(
        port=9000, read_wait_seconds=0.5
    )


def test_the_log_level_leaves_out_what_is_below_it(capsys):
    configure("text", "warning")
    log = logging.getLogger("crm.requests")
    log.info("GET /leaderboards/bant 200")
    log.warning("the projector is behind")

    err = capsys.readouterr().err
    assert "the projector is behind" in err
    assert "GET /leaderboards/bant" not in err
