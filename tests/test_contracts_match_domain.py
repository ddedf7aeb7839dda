"""The contracts never import the domain, so this checks that their vocabularies agree."""

from typing import get_args

import pytest

from contracts import accounts as contract
from domain import vocabulary as domain


@pytest.mark.parametrize(
    ("literal", "enum"),
    [
        (contract.AbmStageName, domain.AbmStage),
        (contract.FunnelStateName, domain.FunnelState),
        (contract.ScreeningOutcomeName, domain.ScreeningOutcome),
        (contract.BuyingRoleName, domain.BuyingRole),
        (contract.DecisionPowerName, domain.DecisionPower),
        (contract.ReactionName, domain.Reaction),
        (contract.DealOutcomeName, domain.DealOutcome),
    ],
)
def test_contract_values_are_exactly_the_domain_values(literal, enum):
    assert list(get_args(literal)) == [member.value for member in enum]


def test_a_job_view_has_exactly_the_statuses_a_job_can_be_in():
    from contracts.screening import JobStatus
    from domain.jobs import CANCELLED, FAILED, FINISHED, RUNNING

    assert list(get_args(JobStatus)) == [RUNNING, FINISHED, FAILED, CANCELLED]


def test_the_contracts_package_does_not_import_the_domain():
    import ast
    from pathlib import Path

    for path in Path(contract.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                assert not any(n.split(".")[0] in {"domain", "services"} for n in names), path


def test_the_domain_imports_no_framework():
    import ast
    from pathlib import Path

    banned = {"litestar", "msgspec", "nats", "psycopg", "sqlite3", "services", "contracts"}
    for path in Path(domain.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] not in banned, path
            elif isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] in banned for a in node.names), path
