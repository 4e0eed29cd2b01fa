"""The Debit function's contract (debit_api.handle) on moto: results and typed refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import CreateAccountCommand
from serverless_credits.domain.errors import ServiceBusy
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore
from serverless_credits.transport import debit_api

ACCOUNT = "acct_api"


@pytest.fixture
def ledger(moto_store: CreditsStore) -> Ledger:
    ledger = wiring.ledger()
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(50)))
    return ledger


def request(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "accountId": ACCOUNT,
        "amount": 5,
        "idempotencyKey": "req-1",
        "description": "One search",
        "endpoint": "/v1/search",
        "metadata": {"requestId": "r-1"},
    }
    event.update(changes)
    return {name: value for name, value in event.items() if value is not None}


def error_of(response: dict[str, Any]) -> dict[str, Any]:
    assert set(response) == {"error"}
    error: dict[str, Any] = response["error"]
    assert set(error) == {"code", "message", "details"}
    json.dumps(response)
    return error


def test_a_debit_returns_the_result_as_plain_json(ledger: Ledger) -> None:
    response = debit_api.handle(request(amount=12.5), ledger)

    assert set(response) == {"transactionId", "amount", "balanceAfter", "available", "replayed"}
    assert response["transactionId"].startswith("txn_")
    assert response["amount"] == 12.5
    assert (response["balanceAfter"], response["available"]) == (37.5, 37.5)
    assert response["replayed"] is False
    assert json.loads(json.dumps(response)) == response


def test_a_debit_by_action_and_quantity(ledger: Ledger) -> None:
    response = debit_api.handle(
        request(amount=None, action="voice_call_minute", quantity=2), ledger
    )
    assert (response["amount"], response["balanceAfter"]) == (6, 44)
    assert isinstance(response["amount"], int)


def test_a_repeated_request_is_replayed(ledger: Ledger) -> None:
    first = debit_api.handle(request(), ledger)
    second = debit_api.handle(request(), ledger)

    assert second == {**first, "replayed": True}
    assert ledger.account(ACCOUNT).balance == 45


def test_insufficient_credits_carries_available(ledger: Ledger) -> None:
    debit_api.handle(request(amount="49.75", idempotencyKey="big"), ledger)

    error = error_of(debit_api.handle(request(amount=1), ledger))

    assert error["code"] == "INSUFFICIENT_CREDITS"
    assert error["details"] == {"available": 0.25, "requested": 1}


def test_a_suspended_account(ledger: Ledger, moto_store: CreditsStore) -> None:
    moto_store.accounts.update_settings(ACCOUNT, {"status": "suspended"})

    error = error_of(debit_api.handle(request(), ledger))

    assert error["code"] == "ACCOUNT_SUSPENDED"
    assert error["details"] == {"accountId": ACCOUNT, "status": "suspended"}


def test_an_unknown_account(ledger: Ledger) -> None:
    error = error_of(debit_api.handle(request(accountId="acct_nobody"), ledger))

    assert error["code"] == "ACCOUNT_NOT_FOUND"
    assert error["details"] == {"accountId": "acct_nobody"}


def test_a_key_reused_with_other_parameters(ledger: Ledger) -> None:
    debit_api.handle(request(amount=5), ledger)

    error = error_of(debit_api.handle(request(amount=6), ledger))

    assert error["code"] == "IDEMPOTENCY_CONFLICT"
    assert error["details"] == {"idempotencyKey": "req-1"}
    assert ledger.account(ACCOUNT).balance == 45


@pytest.mark.parametrize(
    ("event", "fields"),
    [
        (request(amount=0), {"amount"}),
        (request(amount="NaN"), {"amount"}),
        (request(amount="0.0000001"), {"amount"}),
        (request(amount=1_000_000_001), {"amount"}),
        (request(idempotencyKey="has spaces"), {"idempotencyKey"}),
        (request(accountId=None), {"accountId"}),
        (request(amountt=5), {"amountt"}),
        (request(metadata={f"k{i}": i for i in range(21)}), {"metadata"}),
    ],
)
def test_invalid_requests_name_the_fields(
    ledger: Ledger, event: dict[str, Any], fields: set[str]
) -> None:
    error = error_of(debit_api.handle(event, ledger))

    assert error["code"] == "VALIDATION_ERROR"
    assert {detail["field"] for detail in error["details"]} == fields
    assert ledger.account(ACCOUNT).balance == 50


def test_amount_and_action_together_are_a_validation_error(ledger: Ledger) -> None:
    error = error_of(debit_api.handle(request(action="sms"), ledger))

    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] is None


def test_an_unknown_action_is_a_validation_error(ledger: Ledger) -> None:
    error = error_of(debit_api.handle(request(amount=None, action="teleport"), ledger))

    assert (error["code"], error["details"]) == ("VALIDATION_ERROR", {"field": "action"})


def test_an_unknown_operation_is_a_validation_error(ledger: Ledger) -> None:
    error = error_of(debit_api.handle(request(operation="capture"), ledger))

    assert (error["code"], error["details"]) == ("VALIDATION_ERROR", {"field": "operation"})


@pytest.mark.parametrize("event", [None, [], ["accountId"], "debit", 42, True])
def test_an_event_that_is_not_an_object_is_a_validation_error(
    ledger: Ledger, event: object
) -> None:
    error = error_of(debit_api.handle(event, ledger))

    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == "The request must be a JSON object"


def test_the_event_is_not_modified(ledger: Ledger) -> None:
    event = request(operation="debit")
    snapshot = json.dumps(event, sort_keys=True)

    debit_api.handle(event, ledger)

    assert json.dumps(event, sort_keys=True) == snapshot


def test_operation_debit_is_the_default(ledger: Ledger) -> None:
    response = debit_api.handle(request(operation="debit"), ledger)
    assert response["balanceAfter"] == 45


def test_operation_refund_refunds_a_debit(ledger: Ledger, materialize: Callable[[], int]) -> None:
    charged = debit_api.handle(request(amount=10), ledger)
    materialize()  # the debit's ledger entry, which the refund reads
    refund = {
        "operation": "refund",
        "accountId": ACCOUNT,
        "transactionId": charged["transactionId"],
        "idempotencyKey": "refund-req-1",
        "amount": 4,
        "reason": "Upstream failed",
        "failedCall": True,
    }

    refunded = debit_api.handle(refund, ledger)
    again = debit_api.handle(refund, ledger)
    over = error_of(
        debit_api.handle({**refund, "idempotencyKey": "refund-req-2", "amount": 7}, ledger)
    )
    unknown = error_of(
        debit_api.handle(
            {**refund, "idempotencyKey": "refund-req-3", "transactionId": "txn_nope"}, ledger
        )
    )
    invalid = error_of(debit_api.handle({**refund, "endpoint": "/v1/x"}, ledger))

    assert (refunded["amount"], refunded["balanceAfter"], refunded["replayed"]) == (4, 44, False)
    assert again == {**refunded, "replayed": True}
    assert over["code"] == "REFUND_NOT_ALLOWED"
    assert over["details"] == {"transactionId": charged["transactionId"], "refundable": 6}
    assert unknown["code"] == "TRANSACTION_NOT_FOUND"
    assert invalid["code"] == "VALIDATION_ERROR"
    assert ledger.account(ACCOUNT).balance == 44


def test_throttling_that_outlived_the_retries_is_a_function_error_and_frees_the_key(
    moto_store: CreditsStore,
) -> None:
    ledger = wiring.build_ledger(moto_store, PriceCatalog(moto_store.catalog, 60), get_settings())
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(50)))
    throttled: list[bool] = []

    def throttle(params: dict[str, Any], **_: Any) -> None:
        if params["Key"]["pk"]["S"] == keys.account_pk(ACCOUNT) and not throttled:
            throttled.append(True)
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem"
            )

    moto_store.client.meta.events.register("before-parameter-build.dynamodb.UpdateItem", throttle)

    # No retry loop of our own: botocore's retries are spent, the function fails (503).
    with pytest.raises(ServiceBusy):
        debit_api.handle(request(), ledger)
    assert ledger.account(ACCOUNT).balance == 50
    # A throttled update never landed: its lease is released, so the caller's retry with
    # the same key applies it at once (and once).
    assert moto_store.idempotency.get(ACCOUNT, "req-1") is None
    response = debit_api.handle(request(), ledger)
    assert (response["balanceAfter"], response["replayed"]) == (45, False)
    assert debit_api.handle(request(), ledger)["replayed"] is True
    assert ledger.account(ACCOUNT).balance == 45
