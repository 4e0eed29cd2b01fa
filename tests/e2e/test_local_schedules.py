"""Scheduled functions on the running local stack: `python -m devtools.local_stack` as `make run`
starts it, in its own process (on the session's DynamoDB Local, a table of its own), with its
schedules shortened by CREDITS_SCHEDULE_SCALE so that the ExpirerFunction's `rate(1 minute)`
comes round every 1.2 s. A hold reserved through the Debit function is released on that
schedule, with nobody invoking the expirer; and a table from before `ExpiryIndex` gets it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from devtools import dynamodb_local, schedules, template
from devtools.local_stack import ensure_table
from serverless_credits.domain.models import EntryType, LedgerEntry, ReleaseReason
from serverless_credits.storage.store import CreditsStore
from tests.e2e.support import Api, eventually

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

pytestmark = pytest.mark.e2e

SCALE = 0.02  # rate(1 minute) -> every 1.2 s; the ReconcilerFunction's rate(1 day) -> 29 min
# From the reserve: the hold's 2 s, a sweep period, the stream's lag; with room for busy cores.
EXPIRY_DEADLINE = 30.0


class RunningStack:
    """The stack process, its description (`stack.json`) and its console output."""

    def __init__(self, process: subprocess.Popen[bytes], described: dict[str, Any], log: Path):
        self.process = process
        self.described = described
        self.log = log

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def lambda_client(self) -> LambdaClient:
        return boto3.client(
            "lambda",
            endpoint_url=self.described["lambdaEndpoint"],
            region_name=dynamodb_local.LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
        )

    def store(self) -> CreditsStore:
        return CreditsStore(
            dynamodb_local.client_for(self.described["dynamodbEndpoint"]),
            self.described["tableName"],
        )


@pytest.fixture(scope="module")
def running(
    dynamodb_local_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    directory = tmp_path_factory.mktemp("schedules")
    state_file, log_path = directory / "stack.json", directory / "stack.log"
    environment = {
        **os.environ,
        "CREDITS_API_PORT": "0",
        "CREDITS_LAMBDA_PORT": "0",
        "CREDITS_STACK_FILE": str(state_file),
        "CREDITS_DYNAMODB_ENDPOINT": dynamodb_local_endpoint,
        schedules.SCALE_VARIABLE: str(SCALE),
        "PYTHONUNBUFFERED": "1",
    }
    table_name = f"credits-e2e-schedules-{uuid.uuid4().hex[:8]}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", "devtools.local_stack", "--table-name", table_name],
            cwd=template.PROJECT_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(
            lambda: _ready(state_file, process, log_path), timeout=90, what="the stack starting"
        )
        yield RunningStack(process, json.loads(state_file.read_text()), log_path)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _ready(state_file: Path, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        pytest.fail(f"the stack exited with {process.returncode}:\n{log.read_text()}")
    return state_file.exists()


def invoke_debit(stack: RunningStack, request: dict[str, Any]) -> dict[str, Any]:
    response = stack.lambda_client().invoke(
        FunctionName="DebitFunction", Payload=json.dumps(request).encode()
    )
    assert "FunctionError" not in response
    body: dict[str, Any] = json.loads(response["Payload"].read())
    assert "error" not in body, body
    return body


def release_of(store: CreditsStore, account_id: str, hold_id: str) -> LedgerEntry | None:
    """The ledger's release entry for `hold_id`, once the stream has written it."""
    entries, _ = store.entries.page(account_id, limit=10)
    return next((e for e in entries if e.type == EntryType.RELEASE and e.hold_id == hold_id), None)


def test_the_stack_runs_the_templates_schedules_scaled(running: RunningStack) -> None:
    described = {s["function"]: s for s in running.described["schedules"]}

    assert described["ExpirerFunction"]["expression"] == "rate(1 minute)"
    assert described["ExpirerFunction"]["periodSeconds"] == pytest.approx(60 * SCALE)
    assert described["ReconcilerFunction"]["periodSeconds"] == pytest.approx(86400 * SCALE)
    assert "Schedule -> ExpirerFunction:  every 1.2 s (rate(1 minute) x 0.02)" in running.output()


def test_a_hold_past_its_expiry_is_released_on_the_expirers_schedule(
    running: RunningStack,
) -> None:
    account_id = running.described["accountId"]
    api = Api(running.described["apiUrl"], running.described["apiKey"])
    before = api.json("/v1/credits/balance")

    hold = invoke_debit(
        running,
        {
            "operation": "reserve",
            "accountId": account_id,
            "amount": 5,
            "expiresIn": 2,
            "idempotencyKey": f"e2e-hold-{uuid.uuid4()}",
        },
    )
    assert hold["available"] == before["available"] - 5

    # Nobody invokes the ExpirerFunction: only its schedule can give the credits back.
    released = eventually(
        lambda: _balance_if_released(api, before["reserved"]),
        timeout=EXPIRY_DEADLINE,
        what="the expired hold's credits returning to available",
    )
    assert (released["balance"], released["available"]) == (before["balance"], before["available"])
    entry = eventually(
        lambda: release_of(running.store(), account_id, hold["holdId"]),
        what="the hold's release entry in the ledger",
    )
    assert entry.reason == ReleaseReason.EXPIRED
    assert entry.amount == 0
    eventually(
        lambda: "expirer: released 1 expired hold(s)" in running.output(),
        what="the stack printing the expiry",
    )


def _balance_if_released(api: Api, reserved: Any) -> dict[str, Any] | None:
    balance: dict[str, Any] = api.json("/v1/credits/balance")
    return balance if balance["reserved"] == reserved else None


def test_an_existing_table_without_the_expiry_index_gets_it(dynamodb_local_endpoint: str) -> None:
    """A DynamoDB that keeps its data between runs (--dynamodb-endpoint) may hold the table
    as an older template made it: the stack adds the indexes it lacks instead of failing."""
    client = dynamodb_local.client_for(dynamodb_local_endpoint)
    table_name = f"credits-e2e-old-{uuid.uuid4().hex[:8]}"
    current = template.create_table_request(table_name)
    older = {
        **{k: v for k, v in current.items() if k != "GlobalSecondaryIndexes"},
        "AttributeDefinitions": [
            a for a in current["AttributeDefinitions"] if a["AttributeName"] in ("pk", "sk")
        ],
    }
    client.create_table(**older)

    added = ensure_table(client, table_name)
    again = ensure_table(client, table_name)

    assert added == ["ExpiryIndex"]
    assert again == []
    indexes = client.describe_table(TableName=table_name)["Table"]["GlobalSecondaryIndexes"]
    wanted = current["GlobalSecondaryIndexes"][0]
    assert [(i["IndexName"], i["IndexStatus"], i["KeySchema"]) for i in indexes] == [
        ("ExpiryIndex", "ACTIVE", wanted["KeySchema"])
    ]
