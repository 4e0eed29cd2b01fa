"""The write path on the local stack: a debit answers with exact figures at once; its ledger
entry and usage come from the table's stream, which the stack polls and feeds to the
MaterializerFunction; the ReconcilerFunction fills what the stream lost. Over real HTTP:
the Lambda Invoke API (:3001 under `make run`) and the HTTP API (:3000)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests

from devtools import template
from devtools.local_seed import LocalAccount
from devtools.local_stack import LocalStack
from serverless_credits.domain.operations import sequence_of
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore
from tests.e2e.support import Api, eventually, wait_for_ledger

pytestmark = pytest.mark.e2e


def invoke(stack: LocalStack, function: str, payload: Any) -> Any:
    """`POST /2015-03-31/functions/<function>/invocations`, as curl would."""
    response = requests.post(
        f"{stack.lambda_endpoint}/2015-03-31/functions/{function}/invocations",
        data=json.dumps(payload),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert "X-Amz-Function-Error" not in response.headers, response.text
    return response.json()


def entry_named(api: Api, transaction_id: str) -> dict[str, Any] | None:
    for entry in api.json("/v1/credits/transactions", limit=10)["data"]:
        if entry["id"] == transaction_id:
            found: dict[str, Any] = entry
            return found
    return None


def stats_counting(api: Api, calls: int) -> dict[str, Any] | None:
    stats: dict[str, Any] = api.json("/v1/credits/stats", days=1)
    return stats if stats["totalCalls"] == calls else None


def test_a_debit_through_the_invoke_api_reaches_the_transactions_route(
    stack: LocalStack,
    new_account: Callable[..., LocalAccount],
    api_for: Callable[..., Api],
) -> None:
    account = new_account(balance=Decimal(10))
    api = api_for(account)
    debit = {
        "accountId": account.account_id,
        "action": "sms",
        "idempotencyKey": f"stream-{uuid.uuid4()}",
        "endpoint": "/v1/sms/send",
        "description": "one message",
    }

    charged = invoke(stack, "DebitFunction", debit)

    assert "error" not in charged, charged
    assert charged["balanceAfter"] == 9
    # Exact at once: the balance is the account item, written by the debit itself.
    balance = api.json("/v1/credits/balance")
    assert (balance["balance"], balance["available"]) == (9, 9)
    # The entry follows from the stream, shortly.
    entry = eventually(
        lambda: entry_named(api, charged["transactionId"]), what="the debit's ledger entry"
    )
    assert (entry["type"], entry["amount"], entry["balanceAfter"]) == ("debit", -1, 9)
    assert entry["description"] == "one message"
    stats = eventually(lambda: stats_counting(api, 1), what="the call in today's usage")
    assert stats["byEndpoint"] == {"/v1/sms/send": 1}
    # A replay answers the same transaction, and adds no entry.
    assert invoke(stack, "DebitFunction", debit)["transactionId"] == charged["transactionId"]
    stack.materialize()
    ids = [e["id"] for e in api.json("/v1/credits/transactions", limit=10)["data"]]
    assert ids.count(charged["transactionId"]) == 1


def test_the_stack_feeds_each_stream_consumer_as_its_event_source_mapping_would(
    stack: LocalStack,
) -> None:
    sources = template.stream_sources()
    consumers = stack.consumers

    assert [source.function for source in sources] == [
        "MaterializerFunction",
        "EventPublisherFunction",
    ]
    assert [consumer.source for consumer in consumers] == sources
    for source, consumer in zip(sources, consumers, strict=True):
        assert consumer.poller.filters == source.filters
        assert consumer.poller.batch_size == source.batch_size
        assert consumer.poller.max_retry_attempts == source.maximum_retry_attempts
    assert stack.describe()["streamConsumers"] == [
        {"function": source.function, "pollIntervalSeconds": consumer.interval}
        for source, consumer in zip(sources, consumers, strict=True)
    ]


def test_the_reconciler_through_the_invoke_api_fills_an_entry_the_stream_lost(
    stack: LocalStack,
    store: CreditsStore,
    new_account: Callable[..., LocalAccount],
    api_for: Callable[..., Api],
) -> None:
    account = new_account(balance=Decimal(10))
    api = api_for(account)
    charged = invoke(
        stack,
        "DebitFunction",
        {"accountId": account.account_id, "amount": 4, "idempotencyKey": "to-lose"},
    )
    wait_for_ledger(store, account.account_id)
    assert invoke(stack, "ReconcilerFunction", {"accountId": account.account_id}) == {
        "accounts": 1,
        "filled": 0,
        "inconsistent": [],
    }
    # As if the materializer had given up on the debit's stream record.
    store.client.delete_item(
        TableName=store.table_name,
        Key={
            "pk": {"S": keys.ledger_pk(account.account_id)},
            "sk": {"S": keys.entry_sk(sequence_of(charged["transactionId"]) or 0)},
        },
    )
    assert entry_named(api, charged["transactionId"]) is None

    reconciled = invoke(stack, "ReconcilerFunction", {"accountId": account.account_id})

    assert reconciled == {"accounts": 1, "filled": 1, "inconsistent": []}
    entry = entry_named(api, charged["transactionId"])
    assert entry is not None
    assert (entry["amount"], entry["balanceAfter"]) == (-4, 6)
