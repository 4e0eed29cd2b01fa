"""Every events/*.json against the running stack, as `sam local invoke -e` sends it with
env.json: the API events' key id resolves to the demo account, the debit events charge it,
the hold events (`operation` reserve, capture, release) go to the Debit function too, the
schedule event runs the ExpirerFunction's sweep, the reconciler event reconciles it. The
stream event names an operation that must exist before the materializer can write its
entry, and a capture or release event names a hold: their tests create exactly what they
name first."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from devtools import template
from devtools.local_gateway import match, routes
from devtools.local_stack import LocalStack
from serverless_credits import wiring
from serverless_credits.domain.commands import ReserveCommand
from serverless_credits.domain.models import (
    Account,
    EntryType,
    IdempotencyRecord,
    IdempotencyState,
    Operation,
)
from serverless_credits.ledger import holds as ledger_holds
from serverless_credits.storage.items import from_item
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import debit_api
from tests.e2e.support import Api, wait_for_ledger

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

pytestmark = pytest.mark.e2e

EVENTS = sorted((template.PROJECT_ROOT / "events").glob("*.json"))


def function_for(path: Path, event: dict[str, Any]) -> str:
    """The function an event is for: by route for API events, else by file name."""
    if "httpMethod" in event:
        found = match(
            routes(template.functions(), "CreditsApi"), event["httpMethod"], event["path"]
        )
        assert found is not None, f"{path.name}: no route for {event['path']}"
        return found[0].function
    if event.get("operation") in debit_api.OPERATIONS:
        return "DebitFunction"  # reserve.json, capture.json, release.json
    stem = path.stem.replace("-", "").lower()
    for logical_id in template.functions():
        if stem.startswith(logical_id.removesuffix("Function").lower()):
            return logical_id
    raise AssertionError(f"{path.name}: which function is it for?")


def stream_change(event: dict[str, Any]) -> tuple[Account, Account]:
    """The account images (before, after) of the stream event's only record."""
    (record,) = event["Records"]
    images = record["dynamodb"]
    old = Account.model_validate(from_item(images["OldImage"]))
    new = Account.model_validate(from_item(images["NewImage"]))
    return old, new


def prepare_stream_event(
    stack: LocalStack, store: CreditsStore, event: dict[str, Any]
) -> dict[str, Any]:
    """What the stream record names, as the write path leaves it between the account update
    and the record's completion: the account at the version before (created through the
    library, its opening balance materialized) and the operation's pending idempotency
    record. Returns what the entry must say."""
    old, new = stream_change(event)
    assert new.last_op is not None
    assert new.version == old.version + 1
    account = stack.add_account(new.account_id, opening_balance=old.balance)
    wait_for_ledger(store, new.account_id)
    assert store.accounts.get(new.account_id, consistent=True) is not None
    assert store.entries.head(new.account_id).version == old.version
    op = new.last_op
    store.idempotency.lease(
        IdempotencyRecord(
            account_id=new.account_id,
            idempotency_key=op.key,
            fingerprint="sample-event",
            op_id=op.id,
            state=IdempotencyState.PENDING,
            operation=Operation(
                type=op.type,
                amount=op.amount,
                description="sms x 1",
                action="sms",
                quantity=Decimal(1),
                endpoint="/v1/sms/send",
            ),
            lease_expires_at=op.at + timedelta(seconds=60),
            created_at=op.at,
        ),
        now=datetime.now(op.at.tzinfo),
    )
    return {"apiKey": account.api_key, "old": old, "new": new}


def prepare_named_hold(event: dict[str, Any]) -> None:
    """The open hold a capture or release event names, made through the library with that
    very id (hold ids are random; by hand, one pastes the `holdId` reserve.json returned)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ledger_holds, "new_hold_id", lambda: event["holdId"])
        held = wiring.ledger().holds.reserve(
            ReserveCommand(
                account_id=event["accountId"],
                idempotency_key=f"sample-{event['holdId']}",
                amount=Decimal(15),
            )
        )
    assert held.hold_id == event["holdId"]


@pytest.mark.parametrize("path", EVENTS, ids=lambda path: path.name)
def test_a_sample_event_works_against_the_local_stack(
    path: Path,
    lambda_client: LambdaClient,
    stack: LocalStack,
    store: CreditsStore,
) -> None:
    event = json.loads(path.read_text())
    function = function_for(path, event)
    prepared: dict[str, Any] = {}
    if function == "MaterializerFunction":
        prepared = prepare_stream_event(stack, store, event)
    if function == "ReconcilerFunction":
        stack.materialize()  # what the stream holds is not a gap
    if function == "DebitFunction" and "holdId" in event:
        prepare_named_hold(event)

    response = lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
    body = json.loads(response["Payload"].read())

    assert "FunctionError" not in response, body
    if "httpMethod" in event:
        assert body["statusCode"] == 200, body
        assert json.loads(body["body"])
    elif path.stem.endswith("insufficient"):
        assert body["error"]["code"] == "INSUFFICIENT_CREDITS"
    elif function == "MaterializerFunction":
        assert body == {"batchItemFailures": []}
    elif function == "ReconcilerFunction":
        assert body == {"accounts": 1, "filled": 0, "inconsistent": []}
    elif function == "ExpirerFunction":
        assert set(body) == {"due", "expired", "alreadyClosed", "failed", "lots"}
        assert set(body["lots"]) == {"due", "expired", "pinned", "gone", "failed"}
        assert body["failed"] == body["lots"]["failed"] == 0
    elif "holdId" in event:  # the hold of 15 made for it: all or the rest returns
        taken = body["amount"] if event["operation"] == "capture" else 0
        assert (body["holdId"], body["released"]) == (event["holdId"], 15 - taken), body
    else:
        assert "error" not in body, body
    if prepared:
        check_the_stream_events_entry(prepared, stack, store, lambda_client, event)


def check_the_stream_events_entry(
    prepared: dict[str, Any],
    stack: LocalStack,
    store: CreditsStore,
    lambda_client: LambdaClient,
    event: dict[str, Any],
) -> None:
    """The entry the event named is in the ledger, its record completed. Then the account
    item takes the event's new image (the stream carries that change for real): the stack's
    own consumer redelivers the version and nothing changes; the reconciler proves it."""
    new: Account = prepared["new"]
    assert new.last_op is not None
    api = Api(stack.api_url, prepared["apiKey"])
    latest = api.json("/v1/credits/transactions", limit=1)["data"][0]
    assert latest["id"] == f"txn_{new.version}_{new.last_op.id[:12]}"
    assert latest["type"] == EntryType.DEBIT
    assert Decimal(str(latest["amount"])) == new.last_op.amount
    assert Decimal(str(latest["balanceAfter"])) == new.balance
    record = store.idempotency.get(new.account_id, new.last_op.key)
    assert record is not None
    assert record.state is IdempotencyState.COMPLETED
    assert record.expires_at is not None  # its entry exists: the record may expire now
    entries_before, _ = store.entries.page(new.account_id, limit=100)

    store.client.put_item(
        TableName=store.table_name, Item=event["Records"][0]["dynamodb"]["NewImage"]
    )
    stack.materialize()
    again = lambda_client.invoke(
        FunctionName="MaterializerFunction", Payload=json.dumps(event).encode()
    )

    assert json.loads(again["Payload"].read()) == {"batchItemFailures": []}
    assert store.entries.page(new.account_id, limit=100)[0] == entries_before
    reconciled = lambda_client.invoke(
        FunctionName="ReconcilerFunction",
        Payload=json.dumps({"accountId": new.account_id}).encode(),
    )
    assert json.loads(reconciled["Payload"].read()) == {
        "accounts": 1,
        "filled": 0,
        "inconsistent": [],
    }
    assert api.json("/v1/credits/balance")["balance"] == new.balance
