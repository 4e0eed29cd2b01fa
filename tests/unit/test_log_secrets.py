"""Logs never carry credentials, even at DEBUG: the handlers run with Powertools at DEBUG
(botocore's own debug stays off: it logs whole requests by design and is never enabled in
AWS) for an admin key creation, a debit, a reserve and an HTTP request sent with an API key
and a cursor, and nothing printed or recorded holds the API key's value, an idempotency key
or the cursor secret (docs/security.md)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import boto3
import pytest

from devtools import template
from devtools.api_events import LambdaContextStub, api_event, invoke
from functions.admin import app as admin_app
from functions.balance import app as balance_app
from functions.debit import app as debit_app
from functions.transactions import app as transactions_app
from serverless_credits import wiring
from serverless_credits.storage.store import CreditsStore

CURSOR_SECRET = "cursor-secret-value-that-must-not-be-logged-0123"
DEBIT_KEY = "debit-idempotency-key-0001"
RESERVE_KEY = "reserve-idempotency-key-0002"
TOPUP_KEY = "topup-idempotency-key-0003"
# Not the service's code: botocore (off in AWS too) and moto (the test's fake AWS).
QUIET = ("botocore", "boto3", "urllib3", "s3transfer", "moto")


@pytest.fixture
def debug_logging(
    moto_store: CreditsStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """Powertools and the library at DEBUG; the cursor key from (moto's) Secrets Manager;
    the usage plans the admin function attaches keys to."""
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("POWERTOOLS_DEBUG", "false")
    gateway = boto3.client("apigateway", region_name="us-east-1")
    for tier in ("FREE", "PRO"):
        monkeypatch.setenv(f"{tier}_USAGE_PLAN_ID", gateway.create_usage_plan(name=tier)["id"])
    monkeypatch.delenv("AWS_ENDPOINT_URL_API_GATEWAY", raising=False)
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    arn = secrets.create_secret(Name="cursor", SecretString=CURSOR_SECRET)["ARN"]
    monkeypatch.setenv("CURSOR_SIGNING_SECRET_ARN", arn)
    wiring.reset()
    # botocore's own DEBUG off (its level, not the capture's: caplog.set_level(logger=...)
    # would also raise the capture handler's level and drop every DEBUG record).
    quiet = {name: logging.getLogger(name).level for name in QUIET}
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    caplog.set_level(logging.DEBUG)
    # The handlers' Powertools loggers were built at import, at the template's INFO.
    loggers = [m.logger for m in (admin_app, balance_app, debit_app, transactions_app)]
    levels = [logger.log_level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)
    wiring.reset()


def _everything_logged(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    """What went to stdout/stderr (Powertools' JSON lines) and every attribute of every
    record (extra fields included), as text."""
    printed = capfd.readouterr()
    records = [json.dumps(vars(record), default=repr) for record in caplog.records]
    return "\n".join([printed.out, printed.err, *records])


def test_no_credential_reaches_the_logs(
    debug_logging: None,
    materialize: Callable[[], int],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    context = LambdaContextStub()
    created = admin_app.lambda_handler(
        {"operation": "accounts.create", "actor": "ops@example", "name": "Acme", "credits": 100},
        context,
    )
    account, api_key, api_key_id = created["accountId"], created["apiKey"], created["apiKeyId"]
    topped = admin_app.lambda_handler(
        {
            "operation": "credits.topup",
            "actor": "ops@example",
            "accountId": account,
            "amount": 5,
            "idempotencyKey": TOPUP_KEY,
        },
        context,
    )
    assert "error" not in topped, topped
    debit = debit_app.lambda_handler(
        {"accountId": account, "amount": "2", "idempotencyKey": DEBIT_KEY}, context
    )
    assert "error" not in debit, debit
    hold = debit_app.lambda_handler(
        {
            "operation": "reserve",
            "accountId": account,
            "amount": "3",
            "expiresIn": 300,
            "idempotencyKey": RESERVE_KEY,
        },
        context,
    )
    assert "error" not in hold, hold
    materialize()  # the ledger entries the transactions page reads (and its own logs)
    headers = {"x-api-key": api_key}  # API Gateway passes the header on to the function
    page = invoke(
        transactions_app.lambda_handler,
        api_event(
            "/v1/credits/transactions", {"limit": "1"}, api_key_id=api_key_id, headers=headers
        ),
    )
    assert page.status == 200, page.body
    assert page.body["nextCursor"]
    holds = invoke(
        balance_app.lambda_handler,
        api_event("/v1/credits/holds", {}, api_key_id=api_key_id, headers=headers),
    )
    assert holds.status == 200, holds.body

    logged = _everything_logged(caplog, capfd)
    # The capture holds the service's own records: an empty capture would prove nothing.
    assert any(record.name.startswith("serverless_credits") for record in caplog.records)
    assert account in logged  # ... and what they log is here: an account id is fine to log
    for name, value in {
        "API key": api_key,
        "debit idempotency key": DEBIT_KEY,
        "reserve idempotency key": RESERVE_KEY,
        "top-up idempotency key": TOPUP_KEY,
        "cursor secret": CURSOR_SECRET,
    }.items():
        assert value not in logged, f"the {name} was logged"


def test_no_function_logs_its_events() -> None:
    """An event holds idempotency keys and, through API Gateway, the `x-api-key` header:
    Powertools must never log it (POWERTOOLS_LOGGER_LOG_EVENT), in any function."""
    globals_env = template.load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert globals_env["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"
    for name, spec in template.functions().items():
        assert spec.environment["POWERTOOLS_LOGGER_LOG_EVENT"] == "false", name
