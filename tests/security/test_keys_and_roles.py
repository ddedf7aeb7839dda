"""API keys and roles: no key 401, a key without the role 403, the actor is the key's name."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from litestar.testing import TestClient

from services.api.app import create_app
from services.api.auth import KeyConfigError, key_file_warning, load_keys, parse_keys
from services.leadership import Leadership
from tests.api.requests import LOCAL, registration
from tests.projecting import BackgroundProjector

ROOT = Path(__file__).parent.parent.parent
SECRETS = {
    "vera": "viewer-secret-0123456789",
    "sam": "sales-secret-0123456789",
    "ada": "auditor-secret-0123456789",
    "root": "admin-secret-0123456789",
    "prom": "monitor-secret-0123456789",
}
KEYS = (
    f"vera:viewer:{SECRETS['vera']},sam:sales:{SECRETS['sam']},"
    f"ada:auditor:{SECRETS['ada']},root:admin:{SECRETS['root']},prom:monitor:{SECRETS['prom']}"
)


@pytest.fixture
def secured(ledger, projector, settings):
    background = BackgroundProjector(projector, Leadership(settings, "projector"))
    app = create_app(
        ledger,
        projector,
        settings,
        keys=parse_keys(KEYS, "test"),
        on_startup=[background.start],
        on_shutdown=[background.stop],
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}"}


def test_no_key_or_a_wrong_key_is_401_and_health_and_readiness_stay_open(secured):
    missing = secured.get("/accounts")
    wrong = secured.get("/accounts", headers={"Authorization": "Bearer not-a-key-at-all-0000"})

    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert secured.get("/health").status_code == 200
    assert secured.get("/ready").status_code == 200
    assert secured.get("/schema/openapi.json").status_code == 200
    assert secured.get("/metrics").status_code == 401


def test_a_monitor_key_reads_metrics_and_status_and_nothing_else(secured):
    assert secured.get("/metrics", headers=as_("prom")).status_code == 200
    assert secured.get("/status", headers=as_("prom")).status_code == 200
    assert secured.get("/accounts", headers=as_("prom")).status_code == 403
    assert secured.post("/accounts", json=registration(), headers=as_("prom")).status_code == 403
    assert secured.get("/metrics", headers=as_("vera")).status_code == 403


def test_each_role_may_do_its_part_and_no_more(secured):
    viewer_write = secured.post("/accounts", json=registration(), headers=as_("vera"))
    auditor_write = secured.post("/accounts", json=registration(), headers=as_("ada"))
    created = secured.post("/accounts", json=registration(), headers=as_("sam"))
    account = f"/accounts/{created.json()['id']}"

    assert (viewer_write.status_code, auditor_write.status_code) == (403, 403)
    assert created.status_code == 201
    assert secured.get(account, headers=as_("vera")).status_code == 200
    assert secured.get(f"{account}/history", headers=as_("vera")).status_code == 403
    assert secured.get(account, params={"version": 1}, headers=as_("vera")).status_code == 403
    assert secured.get(f"{account}/history", headers=as_("ada")).status_code == 200
    assert secured.get(account, params={"version": 1}, headers=as_("ada")).status_code == 200
    assert secured.get("/accounts/export", headers=as_("sam")).status_code == 403
    set_objectives = {
        "targets": [{"metric": "accounts_won", "acceptable": 1, "optimal": 2, "best": 3}]
    }
    assert secured.put("/objectives/2026", json=set_objectives, headers=as_("sam")).is_success
    assert secured.get("/objectives/2026", headers=as_("vera")).status_code == 200
    past = {"as_of": "2099-01-01T00:00Z"}
    assert secured.get("/objectives/2026", params=past, headers=as_("vera")).status_code == 403
    assert secured.get("/objectives/2026", params=past, headers=as_("ada")).status_code == 200
    assert secured.get("/objectives", params=past, headers=as_("vera")).status_code == 403
    assert secured.get("/objectives", params=past, headers=as_("ada")).status_code == 200
    cancel = f"/jobs/{uuid.uuid4()}/cancel"  # no such job: found so only by who may cancel
    assert secured.post(cancel, headers=as_("vera")).status_code == 403
    assert secured.post(cancel, headers=as_("sam")).status_code == 404
    assert secured.get("/status", headers=as_("ada")).status_code == 403
    assert secured.get("/status", headers=as_("root")).status_code == 200
    assert (
        secured.post(
            "/accounts", json=registration(domain="root.com"), headers=as_("root")
        ).status_code
        == 201
    )


def test_the_actor_is_the_keys_name_and_x_actor_is_ignored(secured):
    created = secured.post(
        "/accounts", json=registration(), headers={**as_("sam"), "X-Actor": "somebody-else"}
    )

    history = secured.get(f"/accounts/{created.json()['id']}/history", headers=as_("ada"))

    assert history.json()["items"][0]["actor"] == "sam"


def test_bad_key_configuration_is_refused_clearly(tmp_path):
    with pytest.raises(KeyConfigError, match="not name:role:secret"):
        parse_keys("just-a-secret", "CRM_API_KEYS")
    with pytest.raises(KeyConfigError, match="unknown role 'boss'.*roles: viewer, sales"):
        parse_keys("x:boss:0123456789abcdef", "CRM_API_KEYS")
    with pytest.raises(KeyConfigError, match="unknown role of 20 characters") as swapped:
        parse_keys("app:Sup3rS3cretValue1234:sales", "CRM_API_KEYS")  # the secret and the role
    assert "Sup3r" not in str(swapped.value)
    with pytest.raises(KeyConfigError, match="the secret of the key of entry 2 is under 16"):
        # The secret written first, where the name belongs: the key is named by its place.
        parse_keys("ok:viewer:0123456789abcdef,Sup3rS3cretValue1234:sales:app", "CRM_API_KEYS")
    with pytest.raises(KeyConfigError, match="the key of line 1 has unknown role") as first:
        parse_keys("Sup3rS3cretValue1234:app:sales", "CRM_API_KEYS_FILE keys", by_line=True)
    assert "Sup3r" not in str(first.value)
    with pytest.raises(KeyConfigError, match="under 16"):
        parse_keys("x:viewer:short", "CRM_API_KEYS")
    # Secrets that no Authorization header could carry as configured, so no key would match.
    for unusable in ("pässwörd-0123456789", " leading-space-0123456789"):
        with pytest.raises(KeyConfigError, match="not printable ASCII"):
            parse_keys(f"x:viewer:{unusable}", "CRM_API_KEYS")
    file = tmp_path / "keys"
    file.write_text("# team keys\nvera:viewer:viewer-secret-0123456789\n")
    assert [k.name for k in load_keys(None, file)] == ["vera"]
    # As Notepad saves it: a byte-order mark first, which is no part of the first name
    file.write_bytes(b"\xef\xbb\xbfvera:viewer:viewer-secret-0123456789\n")
    assert [k.name for k in load_keys(None, file)] == ["vera"]
    file.write_text("# team keys\nvera:viewer:viewer-secret-0123456789\n")
    with pytest.raises(KeyConfigError) as same_name:
        load_keys("vera:viewer:another-secret-0123456", file)
    assert str(same_name.value) == (
        f"CRM_API_KEYS and CRM_API_KEYS_FILE {file}: two API keys are named 'vera'"
    )
    with pytest.raises(KeyConfigError) as same_secret:
        load_keys("ada:admin:viewer-secret-0123456789", file)
    assert str(same_secret.value) == (
        f"CRM_API_KEYS and CRM_API_KEYS_FILE {file}: keys 'ada' and 'vera' have the same secret"
    )
    file.write_text("vera:boss:viewer-secret-0123456789\n")
    with pytest.raises(KeyConfigError, match=f"^CRM_API_KEYS_FILE {file}: key 'vera' has unknown"):
        load_keys(None, file)
    file.write_text("# keys\nvera viewer-secret-0123456789\n")
    with pytest.raises(KeyConfigError, match=f"^CRM_API_KEYS_FILE {file}: line 2 is not name:"):
        load_keys(None, file)


def test_a_keys_file_has_an_entry_a_line_so_comments_and_secrets_may_hold_commas(tmp_path):
    file = tmp_path / "keys"
    file.write_text(
        "# keys for sales, operations and monitoring\n"
        "\n"
        "sam:sales:sales,secret-0123456789\n"
        "  ola:monitor:monitor-secret-0123456789  \n"
    )

    keys = {key.name: key for key in load_keys(None, file)}

    assert sorted(keys) == ["ola", "sam"]
    assert keys["sam"].secret_sha256 == hashlib.sha256(b"sales,secret-0123456789").digest()
    assert keys["ola"].role == "monitor"


@pytest.mark.parametrize("store", ["sqlite"])
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CRM_API_KEYS_FILE", ""),
        ("CRM_API_KEYS_FILE", "# the team's keys, to come\n\n"),
        ("CRM_API_KEYS", " , "),
    ],
    ids=["an empty keys file", "a keys file of comments", "keys of blanks"],
)
def test_keys_configured_but_none_given_stop_crm_serve_rather_than_serve_without_keys(
    settings, tmp_path, variable, value
):
    if variable == "CRM_API_KEYS_FILE":
        file = tmp_path / "keys"
        file.write_text(value)
        file.chmod(0o600)
        value = str(file)
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "--port", "1"],
        env={"PATH": "/usr/bin:/bin", "CRM_DATA_DIR": str(settings.data_dir), variable: value},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2, done.stderr
    assert "holds no key (name:role:secret)" in done.stderr
    assert "DEVELOPMENT MODE" not in done.stdout + done.stderr


@pytest.mark.parametrize("store", ["sqlite"])
def test_without_keys_crm_serve_refuses_any_host_but_loopback(settings):
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        env={"PATH": "/usr/bin:/bin", "CRM_DATA_DIR": str(settings.data_dir)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert "no API keys are configured" in done.stderr


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(ledger, projector, settings):
    from dataclasses import replace

    limited = replace(settings, rate_limit_per_minute=3)
    app = create_app(ledger, projector, limited, keys=parse_keys(KEYS, "test"))
    with TestClient(app, raise_server_exceptions=False) as client:
        answers = [client.get("/accounts", headers=as_("vera")).status_code for _ in range(4)]
        other_key = client.get("/accounts", headers=as_("ada"))
        throttled = client.get("/accounts", headers=as_("vera"))

    assert answers == [200, 200, 200, 429]
    assert other_key.status_code == 200  # the limit is per key
    assert int(throttled.headers["retry-after"]) >= 1
    assert throttled.headers["content-type"].startswith("application/problem+json")


def test_every_answer_carries_security_headers_and_cors_is_off_unless_configured(
    secured, ledger, projector, settings
):
    from dataclasses import replace

    denied = secured.get("/accounts")
    plain = secured.get("/health", headers={"Origin": "https://app.example"})
    app = create_app(ledger, projector, replace(settings, cors_origins=("https://app.example",)))
    with TestClient(app, base_url=LOCAL) as client:
        allowed = client.get("/health", headers={"Origin": "https://app.example"})

    for response in (denied, plain):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert "access-control-allow-origin" not in plain.headers
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"


def test_no_answer_may_be_kept_by_a_cache(secured):
    """Accounts hold people's names and e-mail addresses: neither a shared cache on the way nor
    the browser's own may store an answer (none is revalidated: the API takes no If-None-Match)."""
    created = secured.post("/accounts", json=registration(), headers=as_("sam"))
    account = f"/accounts/{created.json()['id']}"

    answers = [
        created,
        secured.get(account, headers=as_("vera")),
        secured.get("/accounts", headers=as_("vera")),
        secured.get(f"{account}/history", params={"format": "csv"}, headers=as_("ada")),
        secured.get(account, headers=as_("prom")),
        secured.get(account),
    ]

    for answer in answers:
        assert answer.headers["cache-control"] == "no-store", (answer.request.url, answer.headers)


def test_a_frontend_on_an_allowed_origin_may_read_every_header_the_answers_carry(
    ledger, projector, settings
):
    """A browser hides from a page on another origin every response header that CORS does not
    safelist (ETag, CRM-Position, Location…) unless the answer exposes it."""
    from dataclasses import replace

    app = create_app(ledger, projector, replace(settings, cors_origins=("https://app.example",)))
    origin = {"Origin": "https://app.example"}
    with TestClient(app, base_url=LOCAL) as client:
        created = client.post("/accounts", json=registration(), headers=origin)
        document = client.get("/schema/openapi.json").json()

    documented = {
        name.lower()
        for operation in (op for path in document["paths"].values() for op in path.values())
        if isinstance(operation, dict)
        for answer in operation.get("responses", {}).values()
        for name in answer.get("headers", {})
    }
    exposed = created.headers["access-control-expose-headers"].lower().split(", ")
    assert {"etag", "crm-position", "location", "x-request-id", "content-disposition"} <= set(
        exposed
    )
    assert documented <= set(exposed), documented - set(exposed)


def test_only_auditors_and_admins_verify_diff_checkpoint_and_export(secured):
    created = secured.post("/accounts", json=registration(), headers=as_("sam"))
    account = f"/accounts/{created.json()['id']}"
    reads = [
        ("get", f"{account}/audit", {}),
        ("get", f"{account}/diff", {"from": "0"}),
        ("get", f"{account}/history", {"format": "jsonl"}),
        ("get", "/audit/export", {}),
        ("post", "/audit/checkpoints", {}),
    ]

    for method, path, params in reads:
        for name in ("vera", "sam"):
            answer = secured.request(method, path, params=params, headers=as_(name))
            assert answer.status_code == 403, (name, path)
        for name in ("ada", "root"):
            answer = secured.request(method, path, params=params, headers=as_(name))
            assert answer.status_code in (200, 201), (name, path, answer.text)


def test_only_an_auditor_may_page_on_with_the_cursor_of_a_past_page(secured, clock):
    for domain in ("one.com", "two.com"):
        created = secured.post("/accounts", json=registration(domain=domain), headers=as_("sam"))
    position = created.headers["CRM-Position"]
    past = secured.get(
        "/accounts",
        params={"as_of": clock.now.isoformat(), "limit": 1, "min_position": position},
        headers=as_("ada"),
    ).json()
    present = secured.get(
        "/accounts", params={"limit": 1, "min_position": position}, headers=as_("vera")
    ).json()

    past_page = {"cursor": past["next_cursor"], "limit": 1}
    assert secured.get("/accounts", params=past_page, headers=as_("vera")).status_code == 403
    assert (
        secured.get("/leaderboards/bant", params=past_page, headers=as_("vera")).status_code == 403
    )
    assert secured.get("/accounts", params=past_page, headers=as_("ada")).status_code == 200
    present_page = {"cursor": present["next_cursor"], "limit": 1}
    assert secured.get("/accounts", params=present_page, headers=as_("vera")).status_code == 200
    targets = {"targets": [{"metric": "accounts_won", "acceptable": 1, "optimal": 2, "best": 3}]}
    for period in ("2026", "2027"):
        set_ = secured.put(f"/objectives/{period}", json=targets, headers=as_("sam"))
    periods = {
        "as_of": clock.now.isoformat(),
        "limit": 1,
        "min_position": set_.headers["CRM-Position"],
    }
    past_periods = secured.get("/objectives", params=periods, headers=as_("ada")).json()
    periods_page = {"cursor": past_periods["next_cursor"], "limit": 1}
    assert secured.get("/objectives", params=periods_page, headers=as_("vera")).status_code == 403
    assert secured.get("/objectives", params=periods_page, headers=as_("ada")).status_code == 200


def test_a_made_up_cursor_nested_too_deeply_is_a_400_for_any_role(secured):
    """The role check looks into a cursor before the query checks its signature: one that
    nests deeper than a decoder follows must still be refused as a cursor, not fail the server."""
    import base64

    forged = base64.urlsafe_b64encode(b"[" * 40_000).decode().rstrip("=")

    for name in ("vera", "ada"):
        answer = secured.get("/accounts", params={"cursor": forged}, headers=as_(name))
        assert answer.status_code == 400, (name, answer.text)
        assert answer.json()["field"] == "cursor"


def test_the_log_line_of_a_refused_request_names_the_key_that_sent_it(secured, caplog):
    """An operator looking into what a key tried to do finds its refusals too."""
    import logging

    with caplog.at_level(logging.INFO, logger="crm.requests"):
        secured.post("/accounts", json=registration(), headers=as_("vera"))
        secured.get("/accounts", headers=as_("prom"))
        secured.get("/accounts", headers={"Authorization": "Bearer not-a-key-at-all-0000"})

    lines = [r.fields for r in caplog.records if r.name == "crm.requests"]
    assert [(line["status"], line["key"]) for line in lines] == [
        (403, "vera"),
        (403, "prom"),
        (401, None),
    ]


def test_a_keys_file_other_users_may_read_is_warned_of(tmp_path):
    file = tmp_path / "keys"
    file.write_text("vera:viewer:viewer-secret-0123456789\n")
    file.chmod(0o644)
    assert "mode 0644" in key_file_warning(file)
    file.chmod(0o600)
    assert key_file_warning(file) is None
    assert key_file_warning(None) is None
