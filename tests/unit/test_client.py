"""The Lambda client and the per-call charging decorator, with the Debit function run
in-process behind a fake Lambda API."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from functions.debit import app as debit_app
from functions.example_consumer import app as consumer
from serverless_credits import wiring
from serverless_credits.domain import errors, money
from serverless_credits.domain.commands import CreateAccountCommand
from serverless_credits.integrations.client import (
    CreditsClient,
    CreditsUnavailable,
    charge_per_call,
    idempotency_key_of,
)
from serverless_credits.storage.store import CreditsStore

EVENTS = Path(__file__).resolve().parents[2] / "events"


@dataclass
class FakeContext:
    aws_request_id: str = "req-1"
    function_name: str = "ExampleConsumerFunction"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:Example"


@dataclass
class InProcessLambda:
    """Implements `invoke` like the Lambda API, running the Debit handler in this process."""

    failures_before_success: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    # The Materializer function, run before each invocation: in AWS it writes each change's
    # ledger entry within milliseconds.
    materialize: Callable[[], object] = lambda: None

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:
        assert FunctionName == "DebitFunction"
        assert InvocationType == "RequestResponse"
        self.materialize()
        request = json.loads(Payload)
        self.calls.append(request)
        if self.failures_before_success > 0:
            self.failures_before_success -= 1
            body = {"errorMessage": "boom", "errorType": "RuntimeError"}
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps(body).encode())}
        result = debit_app.lambda_handler(request, FakeContext(function_name=FunctionName))
        # Written as the Lambda runtime writes it: Decimals as exact JSON numbers.
        return {"StatusCode": 200, "Payload": io.BytesIO(money.dumps(result).encode())}


@pytest.fixture
def funded_account(moto_store: CreditsStore) -> str:
    wiring.ledger().create_account(
        CreateAccountCommand(account_id="acct_demo", opening_balance=Decimal(5))
    )
    return "acct_demo"


def client_with(fake: InProcessLambda) -> CreditsClient:
    return CreditsClient("DebitFunction", fake)  # type: ignore[arg-type]


def test_debit_returns_the_charge(funded_account: str) -> None:
    result = client_with(InProcessLambda()).debit(
        account_id=funded_account, idempotency_key="k1", amount=Decimal("1.5"), endpoint="/x"
    )
    assert (result.amount, result.balance_after, result.replayed) == (
        Decimal("1.5"),
        Decimal("3.5"),
        False,
    )


def test_debit_by_action_uses_the_price_list(funded_account: str) -> None:
    result = client_with(InProcessLambda()).debit(
        account_id=funded_account, idempotency_key="k1", action="sms", quantity=Decimal(2)
    )
    assert result.amount == Decimal(2)


def test_refusals_raise_the_ledgers_typed_errors(funded_account: str) -> None:
    client = client_with(InProcessLambda())
    with pytest.raises(errors.InsufficientCredits) as refused:
        client.debit(account_id=funded_account, idempotency_key="k1", amount=Decimal(50))
    assert refused.value.available == Decimal(5)
    assert refused.value.code == "INSUFFICIENT_CREDITS"
    with pytest.raises(errors.AccountNotFound):
        client.debit(account_id="acct_nobody", idempotency_key="k2", amount=Decimal(1))
    with pytest.raises(errors.ValidationFailed):
        client.debit(account_id=funded_account, idempotency_key="k3", amount=Decimal(-1))


def test_function_errors_are_retried_with_the_same_key_and_charge_once(funded_account: str) -> None:
    fake = InProcessLambda(failures_before_success=2)
    result = client_with(fake).debit(
        account_id=funded_account, idempotency_key="k1", amount=Decimal(1)
    )
    assert result.balance_after == Decimal(4)
    assert {call["idempotencyKey"] for call in fake.calls} == {"k1"}
    assert wiring.ledger().account(funded_account).balance == Decimal(4)


def test_persistent_function_errors_raise_credits_unavailable(funded_account: str) -> None:
    fake = InProcessLambda(failures_before_success=10)
    with pytest.raises(CreditsUnavailable):
        client_with(fake).debit(account_id=funded_account, idempotency_key="k1", amount=Decimal(1))
    assert len(fake.calls) == 3


def test_decorator_charges_each_call_once_per_request_id(funded_account: str) -> None:
    fake = InProcessLambda()

    @charge_per_call(client_with(fake), account_id=lambda e: e["accountId"], action="api_call")
    def handler(event: dict[str, Any], context: Any) -> str:
        return "done"

    assert (
        handler({"idempotencyKey": "r1", "accountId": funded_account}, FakeContext("r1")) == "done"
    )
    assert (
        handler({"idempotencyKey": "r1", "accountId": funded_account}, FakeContext("r1")) == "done"
    )  # Lambda retry
    assert (
        handler({"idempotencyKey": "r2", "accountId": funded_account}, FakeContext("r2")) == "done"
    )
    assert wiring.ledger().account(funded_account).balance == Decimal(3)


def test_decorator_voids_a_failed_call_and_reraises(
    funded_account: str, materialize: Callable[[], int]
) -> None:
    fake = InProcessLambda(materialize=materialize)

    @charge_per_call(
        lambda: client_with(fake),
        account_id=lambda e: e["accountId"],
        amount=Decimal(2),
        endpoint="/v1/fail",
    )
    def handler(event: dict[str, Any], context: Any) -> str:
        raise RuntimeError("downstream failed")

    with pytest.raises(RuntimeError, match="downstream failed"):
        handler({"idempotencyKey": "r1", "accountId": funded_account}, FakeContext("r1"))
    account = wiring.ledger().account(funded_account)
    assert account.balance == Decimal(5)
    assert [call.get("operation", "debit") for call in fake.calls] == ["debit", "void"]
    assert fake.calls[1]["idempotencyKey"] == fake.calls[0]["idempotencyKey"] == "r1"
    # Lambda's retry of the failed invocation: the debit replays (already voided), no charge.
    with pytest.raises(RuntimeError, match="downstream failed"):
        handler({"idempotencyKey": "r1", "accountId": funded_account}, FakeContext("r1"))
    assert wiring.ledger().account(funded_account).balance == Decimal(5)
    materialize()
    usage = wiring.store().usage.daily(
        funded_account, account.created_at.date(), account.created_at.date()
    )
    assert (usage[0].calls, usage[0].failed, usage[0].credits_used) == (1, 1, Decimal(0))


def test_void_through_the_client(funded_account: str) -> None:
    client = client_with(InProcessLambda())
    charge = client.debit(account_id=funded_account, idempotency_key="k-void", amount=Decimal(2))

    voided = client.void(account_id=funded_account, idempotency_key="k-void", reason="no")
    again = client.void(account_id=funded_account, idempotency_key="k-void")

    assert (voided.amount, voided.balance_after, voided.replayed) == (Decimal(2), Decimal(5), False)
    assert voided.transaction_id != charge.transaction_id
    assert again.replayed is True
    with pytest.raises(errors.VoidNotAllowed):
        client.void(account_id=funded_account, idempotency_key="never-charged")


def test_decorator_does_not_run_the_handler_without_credits(funded_account: str) -> None:
    ran: list[bool] = []

    @charge_per_call(
        client_with(InProcessLambda()), account_id=lambda e: e["accountId"], amount=Decimal(9)
    )
    def handler(event: dict[str, Any], context: Any) -> None:
        ran.append(True)

    with pytest.raises(errors.InsufficientCredits):
        handler({"idempotencyKey": "r1", "accountId": funded_account}, FakeContext("r1"))
    assert ran == []


def test_example_consumer_event_is_charged_one_api_call(
    funded_account: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "credits", client_with(InProcessLambda()))
    event = json.loads((EVENTS / "example-consumer.json").read_text())

    assert consumer.lambda_handler(event, FakeContext("r-example")) == {"echo": event["message"]}
    assert wiring.ledger().account(funded_account).balance == Decimal(4)


# ---------------------------------------------------------------- the decorator's key
def sqs_event(message_id: str, account_id: str) -> dict[str, Any]:
    body = json.dumps({"accountId": account_id})
    return {"Records": [{"eventSource": "aws:sqs", "messageId": message_id, "body": body}]}


def sqs_account(event: dict[str, Any]) -> str:
    return str(json.loads(event["Records"][0]["body"])["accountId"])


def test_the_key_is_the_events_business_id_never_the_invocation_id() -> None:
    sqs = sqs_event("m-1", "acct_1")
    bridge = {"id": "ev-1", "detail-type": "Order placed", "source": "shop", "detail": {}}
    api = {"httpMethod": "POST", "requestContext": {"requestId": "gw-1"}, "headers": {}}
    api_keyed = {**api, "headers": {"Idempotency-Key": "order-7"}}
    batch = {"Records": [sqs["Records"][0], {**sqs["Records"][0], "messageId": "m-2"}]}

    assert idempotency_key_of(sqs) == "sqs:m-1"
    assert idempotency_key_of(bridge) == "events:ev-1"
    assert idempotency_key_of(api) == "apigw:gw-1"
    assert idempotency_key_of(api_keyed) == "http:order-7"
    assert idempotency_key_of({"accountId": "a", "idempotencyKey": "biz-1"}) == "biz-1"
    assert idempotency_key_of(batch) is None  # no single business id
    assert idempotency_key_of({"accountId": "a"}) is None


def test_without_a_business_id_nothing_is_charged_and_the_handler_does_not_run(
    funded_account: str,
) -> None:
    fake = InProcessLambda()
    ran: list[bool] = []

    @charge_per_call(client_with(fake), account_id=lambda e: e["accountId"], amount=Decimal(1))
    def handler(event: dict[str, Any], context: Any) -> None:
        ran.append(True)

    with pytest.raises(errors.ValidationFailed, match="idempotency"):
        handler({"accountId": funded_account}, FakeContext("r1"))
    assert (ran, fake.calls) == ([], [])


def test_an_sqs_redelivery_of_one_message_charges_once(funded_account: str) -> None:
    """SQS redelivers a message (visibility timeout, a failed delete) in a NEW invocation
    with a new request id: keyed by messageId, the redelivery replays the charge."""
    fake = InProcessLambda()

    @charge_per_call(client_with(fake), account_id=sqs_account, amount=Decimal(1))
    def handler(event: dict[str, Any], context: Any) -> str:
        return "done"

    handler(sqs_event("m-1", funded_account), FakeContext("invocation-1"))
    handler(sqs_event("m-1", funded_account), FakeContext("invocation-2"))  # redelivery
    handler(sqs_event("m-2", funded_account), FakeContext("invocation-3"))

    assert wiring.ledger().account(funded_account).balance == Decimal(3)


def test_a_retry_after_a_failed_attempt_is_charged_once_not_free(funded_account: str) -> None:
    """Lambda's async retry (or a redelivery) of a request whose first attempt failed: the
    failure voided the charge, so the succeeding retry is charged, once, under the derived
    `<key>:recharge`; a further delivery of the same request replays, never charges again."""
    fake = InProcessLambda()
    attempts: list[bool] = []

    @charge_per_call(client_with(fake), account_id=lambda e: e["accountId"], amount=Decimal(2))
    def handler(event: dict[str, Any], context: Any) -> str:
        attempts.append(True)
        if len(attempts) == 1:
            raise RuntimeError("first attempt failed")
        return "done"

    event = {"accountId": funded_account, "idempotencyKey": "job-1"}
    with pytest.raises(RuntimeError):
        handler(event, FakeContext("r1"))
    assert wiring.ledger().account(funded_account).balance == Decimal(5)  # voided

    assert handler(event, FakeContext("r1")) == "done"  # the async retry
    assert wiring.ledger().account(funded_account).balance == Decimal(3)
    assert handler(event, FakeContext("r2")) == "done"  # and a duplicate delivery
    assert wiring.ledger().account(funded_account).balance == Decimal(3)


def test_a_redelivery_after_success_still_leaves_one_charge(funded_account: str) -> None:
    """The first delivery succeeded; its duplicate runs the handler again (at-least-once
    delivery) and leaves exactly one charge standing."""
    fake = InProcessLambda()

    @charge_per_call(client_with(fake), account_id=lambda e: e["accountId"], amount=Decimal(2))
    def handler(event: dict[str, Any], context: Any) -> str:
        return "done"

    event = {"accountId": funded_account, "idempotencyKey": "job-2"}
    for request_id in ("r1", "r2", "r3"):
        handler(event, FakeContext(request_id))

    assert wiring.ledger().account(funded_account).balance == Decimal(3)
