"""The Debit function over the local Lambda Invoke API, as other Lambdas call it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from devtools.local_seed import LocalAccount
from serverless_credits.domain.errors import IdempotencyConflict, InsufficientCredits
from serverless_credits.integrations.client import CreditsClient
from tests.e2e.support import Api, eventually

if TYPE_CHECKING:
    from mypy_boto3_lambda.client import LambdaClient

pytestmark = pytest.mark.e2e


def invoke(lambda_client: LambdaClient, function: str, payload: Any) -> tuple[dict[str, Any], Any]:
    response = lambda_client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
    return dict(response), json.loads(response["Payload"].read())


def test_a_debit_through_the_client_moves_balance_ledger_and_stats(
    credits_client: CreditsClient, demo: LocalAccount, demo_api: Api
) -> None:
    before = demo_api.json("/v1/credits/balance")
    stats_before = demo_api.json("/v1/credits/stats", days=1)

    result = credits_client.debit(
        account_id=demo.account_id,
        action="voice_call_minute",
        quantity=Decimal(2),
        idempotency_key=f"e2e-{uuid.uuid4()}",
        endpoint="/v1/calls",
        description="two minutes",
        metadata={"callId": "c-1"},
    )

    # The balance is exact at once; the ledger and usage follow from the stream.
    after = demo_api.json("/v1/credits/balance")
    assert result.amount == 6  # voice_call_minute = 3 credits per minute
    assert Decimal(str(after["balance"])) == Decimal(str(before["balance"])) - 6
    assert Decimal(str(after["balance"])) == result.balance_after
    latest = eventually(
        lambda: newest_entry_if(demo_api, result.transaction_id), what="the debit's entry"
    )
    assert latest["amount"] == -6
    assert latest["metadata"] == {"callId": "c-1"}
    stats = eventually(
        lambda: counted(demo_api, stats_before["totalCalls"] + 1), what="the call in the stats"
    )
    assert stats["totalCalls"] == stats_before["totalCalls"] + 1
    assert Decimal(str(stats["totalUsed"])) == Decimal(str(stats_before["totalUsed"])) + 6


def newest_entry_if(api: Api, transaction_id: str) -> dict[str, Any] | None:
    """The newest ledger entry once it is `transaction_id`'s (None until then)."""
    data = api.json("/v1/credits/transactions", limit=1)["data"]
    return data[0] if data and data[0]["id"] == transaction_id else None


def counted(api: Api, calls: int) -> dict[str, Any] | None:
    """Today's stats once they count `calls` calls."""
    stats: dict[str, Any] = api.json("/v1/credits/stats", days=1)
    return stats if stats["totalCalls"] >= calls else None


def test_a_repeat_replays_and_a_changed_repeat_conflicts(
    credits_client: CreditsClient, new_account: Callable[..., LocalAccount]
) -> None:
    account = new_account(balance=Decimal(10))
    first = credits_client.debit(
        account_id=account.account_id, amount=Decimal(3), idempotency_key="k1"
    )
    again = credits_client.debit(
        account_id=account.account_id, amount=Decimal(3), idempotency_key="k1"
    )

    assert again.transaction_id == first.transaction_id
    assert again.replayed
    assert again.balance_after == 7
    with pytest.raises(IdempotencyConflict):
        credits_client.debit(account_id=account.account_id, amount=Decimal(4), idempotency_key="k1")


def test_insufficient_credits_is_a_typed_refusal(
    credits_client: CreditsClient,
    new_account: Callable[..., LocalAccount],
    api_for: Callable[..., Api],
) -> None:
    account = new_account(balance=Decimal(5))
    with pytest.raises(InsufficientCredits) as refused:
        credits_client.debit(
            account_id=account.account_id, amount=Decimal(6), idempotency_key="big"
        )

    assert refused.value.available == 5
    assert api_for(account).json("/v1/credits/balance")["balance"] == 5


def test_a_void_through_the_client(
    credits_client: CreditsClient, new_account: Callable[..., LocalAccount]
) -> None:
    account = new_account(balance=Decimal(10))
    credits_client.debit(account_id=account.account_id, action="sms", idempotency_key="sms-1")
    voided = credits_client.void(account_id=account.account_id, idempotency_key="sms-1")
    assert voided.balance_after == 10


def test_the_debit_function_refuses_refunds(lambda_client: LambdaClient) -> None:
    response, body = invoke(
        lambda_client,
        "DebitFunction",
        {"operation": "refund", "accountId": "acct_x", "transactionId": "txn_1_0"},
    )
    assert "FunctionError" not in response
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert [field["field"] for field in body["error"]["details"]["fields"]] == ["operation"]


def test_refusals_come_back_as_payloads_not_function_errors(
    lambda_client: LambdaClient,
) -> None:
    response, body = invoke(
        lambda_client,
        "DebitFunction",
        {"accountId": "acct_nobody", "amount": 1, "idempotencyKey": "x"},
    )
    assert "FunctionError" not in response
    assert body["error"]["code"] == "ACCOUNT_NOT_FOUND"

    response, body = invoke(lambda_client, "DebitFunction", {"amount": "lots"})
    assert "FunctionError" not in response
    assert body["error"]["code"] == "VALIDATION_ERROR"


def test_an_unknown_function_is_resource_not_found(lambda_client: LambdaClient) -> None:
    with pytest.raises(ClientError) as error:
        lambda_client.invoke(FunctionName="NoSuchFunction", Payload=b"{}")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_function_calling_debit_through_the_invoke_api(
    lambda_client: LambdaClient,
    new_account: Callable[..., LocalAccount],
    api_for: Callable[..., Api],
) -> None:
    """ExampleConsumerFunction charges through the client, which reaches this Invoke API."""
    account = new_account(balance=Decimal(3))
    event = {"accountId": account.account_id, "idempotencyKey": "echo-e2e", "message": "hi"}
    response, body = invoke(lambda_client, "ExampleConsumerFunction", event)

    assert "FunctionError" not in response, body
    assert body == {"echo": "hi"}
    assert api_for(account).json("/v1/credits/balance")["balance"] == 2  # api_call = 1 credit
