"""Schemathesis against the service's own OpenAPI document: no input gets a server error, and
every answer matches what the document promises. Bounded: a fixed number of cases per
operation (`CRM_FUZZ_EXAMPLES`, 25 by default), on the embedded SQLite store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.app import create_app
from services.jobs import JobRunner
from services.projector import Projector
from services.settings import Settings
from services.store import open_ledger, open_read_models

ROOT = Path(__file__).parent.parent.parent

# What an error must never show: a stack trace, SQL, the driver, or where the code lives.
LEAKS = ("Traceback", 'File "', "SELECT ", "INSERT ", "psycopg", "sqlite3", str(ROOT))


def no_leaks(ctx, response, case) -> bool | None:
    # An error is where internals would show. A success may hold what earlier cases stored
    # (an export, a history: a company named "crm.sqlite3"), and an error may repeat what the
    # request sent (a field named "crm.sqlite3" it refuses).
    if response.status_code < 400:
        return None
    sent = repr((case.path_parameters, case.query, case.headers, case.body))
    found = [leak for leak in LEAKS if leak in response.text and leak not in sent]
    if found:
        raise AssertionError(f"the answer shows {found}")
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,  # every status answered is documented for the operation
    response_schema_conformance,
    content_type_conformance,
    no_leaks,
]


# Removed when the test run ends.
_DATA = tempfile.TemporaryDirectory(prefix="crm-fuzz-")


def _app():
    settings = Settings(data_dir=Path(_DATA.name))
    ledger = open_ledger(settings)
    projector = Projector(ledger, open_read_models(settings))
    projector.setup()
    jobs = JobRunner(ledger, settings)
    return create_app(ledger, projector, settings, jobs=jobs), jobs


# Without API keys the CRM answers only requests for this machine (services/api/auth.py).
LOCAL = {"Host": "crm.localhost"}
APP, JOBS = _app()
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", APP, headers=LOCAL)
# Inputs that fit the document and inputs that break it.
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("CRM_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_breaks_the_service_or_its_documented_answers(case):
    case.call_and_validate(checks=CHECKS, headers=LOCAL)
    # Each case begins with no import held: cases come faster than jobs end, and a ninth
    # import held would be the 503 `busy` that the document gives for it, not a fault.
    JOBS.wait(timeout=60)
