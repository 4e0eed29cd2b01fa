"""The Debit function's contract (debit_api.handle) on moto: results and typed refusals."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain import money
from serverless_credits.domain.commands import (
    CreateAccountCommand,
    CreditCommand,
    RefundCommand,
    ReserveCommand,
)
from serverless_credits.domain.errors import RefundNotAllowed
from serverless_credits.domain.models import EntryType
from serverless_credits.ledger import holds as ledger_holds
from serverless_credits.ledger.operations import VOID_WINDOW, Ledger, void_key
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
    money.dumps(response)  # the Lambda runtime can write it (Decimals as exact numbers)
    return error


def test_a_debit_returns_the_result_as_plain_json(ledger: Ledger) -> None:
    response = debit_api.handle(request(amount=12.5), ledger)

    assert set(response) == {
        "transactionId",
        "amount",
        "balanceAfter",
        "available",
        "replayed",
        "lots",  # which credit lots paid how much
    }
    assert response["transactionId"].startswith("txn_")
    assert response["amount"] == 12.5
    assert (response["balanceAfter"], response["available"]) == (37.5, 37.5)
    assert response["replayed"] is False
    # Plain JSON data but for Decimals, which the Lambda runtime (awslambdaric) writes as
    # their exact literals: read back as Decimal, the written payload is the response.
    assert json.loads(money.dumps(response), parse_float=Decimal) == response


def test_a_balance_beyond_a_double_is_returned_exactly(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    """18 significant digits (more than a float keeps) reach the caller exactly: the result
    keeps the Decimal, which the runtime writes as its literal (docs/http-api.md)."""
    moto_store.client.update_item(
        TableName=moto_store.table_name,
        Key={"pk": {"S": keys.account_pk(ACCOUNT)}, "sk": {"S": keys.ACCOUNT_SK}},
        UpdateExpression="SET balance = :big, available = :big",
        ExpressionAttributeValues={":big": {"N": "123456789012.345678"}},
    )

    response = debit_api.handle(request(amount="0.000001"), ledger)

    expected = Decimal("123456789012.345677")
    assert (response["balanceAfter"], response["available"]) == (expected, expected)
    written = money.dumps(response)
    assert '"balanceAfter":123456789012.345677,' in written
    assert json.loads(written, parse_float=Decimal)["balanceAfter"] == expected


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
    assert {detail["field"] for detail in error["details"]["fields"]} == fields
    assert ledger.account(ACCOUNT).balance == 50


def test_amount_and_action_together_are_a_validation_error(ledger: Ledger) -> None:
    error = error_of(debit_api.handle(request(action="sms"), ledger))

    assert error["code"] == "VALIDATION_ERROR"
    assert [detail["field"] for detail in error["details"]["fields"]] == [None]


def test_an_unknown_action_is_a_validation_error(ledger: Ledger) -> None:
    error = error_of(debit_api.handle(request(amount=None, action="teleport"), ledger))

    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"] == {"fields": [{"field": "action", "message": error["message"]}]}


def test_an_unknown_operation_is_a_validation_error(ledger: Ledger) -> None:
    error = error_of(debit_api.handle(request(operation="teleport"), ledger))

    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"] == {"fields": [{"field": "operation", "message": error["message"]}]}


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


def test_operation_void_cancels_a_debit_in_full_once(
    ledger: Ledger, materialize: Callable[[], int]
) -> None:
    charged = debit_api.handle(request(amount=10), ledger)
    void = {"operation": "void", "accountId": ACCOUNT, "idempotencyKey": "req-1"}

    voided = debit_api.handle({**void, "reason": "Upstream failed"}, ledger)
    again = debit_api.handle(void, ledger)  # another reason is still the same void
    materialize()

    assert (voided["amount"], voided["balanceAfter"], voided["replayed"]) == (10, 50, False)
    assert voided["transactionId"] != charged["transactionId"]
    assert again == {**voided, "replayed": True}
    assert ledger.account(ACCOUNT).balance == 50
    entry = ledger.entry(ACCOUNT, voided["transactionId"])
    assert (entry.type, entry.refund_of, entry.description) == (
        EntryType.VOID,
        charged["transactionId"],
        "Upstream failed",
    )
    assert entry.idempotency_key == "req-1:void"


def test_refund_is_no_longer_a_debit_function_operation(ledger: Ledger) -> None:
    charged = debit_api.handle(request(amount=10), ledger)
    refund = {
        "operation": "refund",
        "accountId": ACCOUNT,
        "transactionId": charged["transactionId"],
        "idempotencyKey": "refund-req-1",
    }

    error = error_of(debit_api.handle(refund, ledger))

    assert error["code"] == "VALIDATION_ERROR"
    assert [detail["field"] for detail in error["details"]["fields"]] == ["operation"]
    assert "operator" in error["message"]
    assert ledger.account(ACCOUNT).balance == 40


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"transactionId": "txn_1_000000000000"}, "transactionId"),
        ({"amount": 4}, "amount"),
        ({"idempotencyKey": "bad key"}, "idempotencyKey"),
    ],
)
def test_a_void_takes_only_the_debits_key(
    ledger: Ledger, changes: dict[str, Any], field: str
) -> None:
    debit_api.handle(request(amount=10), ledger)
    void = {"operation": "void", "accountId": ACCOUNT, "idempotencyKey": "req-1", **changes}

    error = error_of(debit_api.handle(void, ledger))

    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["message"]
    assert ledger.account(ACCOUNT).balance == 40


def test_a_void_needs_a_completed_debit_under_that_key(ledger: Ledger) -> None:
    ledger.top_up(CreditCommand(account_id=ACCOUNT, idempotency_key="topup-1", amount=Decimal(5)))
    void = {"operation": "void", "accountId": ACCOUNT}

    unknown = error_of(debit_api.handle({**void, "idempotencyKey": "never-used"}, ledger))
    not_a_debit = error_of(debit_api.handle({**void, "idempotencyKey": "topup-1"}, ledger))
    other_account = error_of(
        debit_api.handle({**void, "accountId": "acct_other", "idempotencyKey": "req-1"}, ledger)
    )

    assert unknown["code"] == not_a_debit["code"] == other_account["code"] == "VOID_NOT_ALLOWED"
    assert unknown["details"] == {"idempotencyKey": "never-used"}
    assert ledger.account(ACCOUNT).balance == 55


def test_a_void_after_the_window_is_refused_but_an_earlier_void_still_replays(
    moto_store: CreditsStore,
) -> None:
    now = [datetime(2025, 3, 1, 12, 0, tzinfo=UTC)]
    ledger = wiring.build_ledger(
        moto_store, PriceCatalog(moto_store.catalog, 60), get_settings(), clock=lambda: now[0]
    )
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(50)))
    debit_api.handle(request(amount=10, idempotencyKey="late"), ledger)
    debit_api.handle(request(amount=10, idempotencyKey="early"), ledger)
    voided = debit_api.handle(
        {"operation": "void", "accountId": ACCOUNT, "idempotencyKey": "early"}, ledger
    )

    now[0] += VOID_WINDOW + timedelta(seconds=1)
    late = error_of(
        debit_api.handle(
            {"operation": "void", "accountId": ACCOUNT, "idempotencyKey": "late"}, ledger
        )
    )
    again = debit_api.handle(
        {"operation": "void", "accountId": ACCOUNT, "idempotencyKey": "early"}, ledger
    )

    assert late["code"] == "VOID_NOT_ALLOWED"
    assert late["details"]["windowSeconds"] == 900
    assert again == {**voided, "replayed": True}
    assert ledger.account(ACCOUNT).balance == 40


def test_a_debit_an_operator_refunded_cannot_be_voided_nor_refunded_after_a_void(
    ledger: Ledger, materialize: Callable[[], int]
) -> None:
    first = debit_api.handle(request(amount=10, idempotencyKey="a"), ledger)
    second = debit_api.handle(request(amount=10, idempotencyKey="b"), ledger)
    materialize()
    ledger.refund(
        RefundCommand(
            account_id=ACCOUNT,
            transaction_id=first["transactionId"],
            idempotency_key="operator-refund",
            amount=Decimal(1),
        )
    )
    void = {"operation": "void", "accountId": ACCOUNT}

    refused = error_of(debit_api.handle({**void, "idempotencyKey": "a"}, ledger))
    voided = debit_api.handle({**void, "idempotencyKey": "b"}, ledger)
    materialize()

    assert refused["code"] == "VOID_NOT_ALLOWED"
    assert voided["amount"] == 10
    with pytest.raises(RefundNotAllowed):
        ledger.refund(
            RefundCommand(
                account_id=ACCOUNT,
                transaction_id=second["transactionId"],
                idempotency_key="refund-after-void",
            )
        )
    assert ledger.account(ACCOUNT).balance == 41


def test_the_void_key_fits_the_key_limit() -> None:
    assert void_key("req-1") == "req-1:void"
    long_key = "k" * 128
    derived = void_key(long_key)
    assert len(derived) <= 128
    assert derived == void_key(long_key) != void_key("k" * 127 + "j")
    CreditCommand(account_id=ACCOUNT, idempotency_key=derived, amount=Decimal(1))  # a valid key


def test_a_void_of_a_debit_with_a_128_character_key(ledger: Ledger) -> None:
    key = "k" * 128
    debit_api.handle(request(amount=10, idempotencyKey=key), ledger)

    voided = debit_api.handle(
        {"operation": "void", "accountId": ACCOUNT, "idempotencyKey": key}, ledger
    )

    assert (voided["amount"], voided["balanceAfter"]) == (10, 50)


def test_throttling_that_outlived_the_retries_is_a_typed_retryable_error_and_frees_the_key(
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

    # No retry loop of our own: botocore's retries are spent, the caller is told to retry.
    busy = debit_api.handle(request(), ledger)
    assert busy["error"]["code"] == "SERVICE_BUSY"
    assert ledger.account(ACCOUNT).balance == 50
    # A throttled update never landed: its lease is released, so the caller's retry with
    # the same key applies it at once (and once).
    assert moto_store.idempotency.get(ACCOUNT, "req-1") is None
    response = debit_api.handle(request(), ledger)
    assert (response["balanceAfter"], response["replayed"]) == (45, False)
    assert debit_api.handle(request(), ledger)["replayed"] is True
    assert ledger.account(ACCOUNT).balance == 45


# ---------------------------------------------------------------- holds
RESULT_FIELDS = {"transactionId", "amount", "balanceAfter", "available", "replayed"}


def reserve_request(**changes: Any) -> dict[str, Any]:
    return request(**{"operation": "reserve", "idempotencyKey": "hold-req-1", **changes})


def hold_request(operation: str, hold_id: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "operation": operation,
        "accountId": ACCOUNT,
        "holdId": hold_id,
        "idempotencyKey": f"{operation}-req-1",
        **changes,
    }
    return {name: value for name, value in event.items() if value is not None}


def test_operation_reserve_returns_the_hold_as_plain_json(ledger: Ledger) -> None:
    before = datetime.now(UTC)

    response = debit_api.handle(reserve_request(amount=5, expiresIn=60), ledger)

    assert set(response) == RESULT_FIELDS | {"holdId", "expiresAt"}
    assert re.fullmatch(r"hold_[0-9a-f]{16}", response["holdId"])
    assert response["transactionId"].startswith("txn_")
    assert (response["amount"], response["available"], response["balanceAfter"]) == (5, 45, 50)
    assert response["replayed"] is False
    expires_at = datetime.fromisoformat(response["expiresAt"])
    assert before.replace(microsecond=0) + timedelta(seconds=60) <= expires_at
    assert expires_at <= datetime.now(UTC) + timedelta(seconds=60)
    assert json.loads(json.dumps(response)) == response
    account = ledger.account(ACCOUNT)
    assert (account.reserved, account.available) == (Decimal(5), Decimal(45))


def test_operation_reserve_by_action_and_quantity_and_its_replay(ledger: Ledger) -> None:
    event = reserve_request(amount=None, action="sms", quantity=3)

    first = debit_api.handle(event, ledger)
    second = debit_api.handle(event, ledger)

    assert first["amount"] == 3
    assert second == {**first, "replayed": True}
    assert ledger.account(ACCOUNT).reserved == 3


def test_operation_capture_returns_what_it_took_and_released(ledger: Ledger) -> None:
    held = debit_api.handle(reserve_request(amount=5), ledger)

    captured = debit_api.handle(hold_request("capture", held["holdId"], amount=2), ledger)
    again = debit_api.handle(hold_request("capture", held["holdId"], amount=2), ledger)

    assert set(captured) == RESULT_FIELDS | {"holdId", "released", "lots"}
    assert captured["holdId"] == held["holdId"]
    assert captured["transactionId"] != held["transactionId"]
    assert (captured["amount"], captured["released"]) == (2, 3)
    assert (captured["balanceAfter"], captured["available"], captured["replayed"]) == (
        48,
        48,
        False,
    )
    assert again == {**captured, "replayed": True}
    assert json.loads(json.dumps(captured)) == captured
    assert ledger.account(ACCOUNT).balance == 48


def test_operation_capture_takes_all_of_the_hold_by_default(ledger: Ledger) -> None:
    held = debit_api.handle(reserve_request(amount="2.5"), ledger)

    captured = debit_api.handle(hold_request("capture", held["holdId"]), ledger)

    assert (captured["amount"], captured["released"], captured["balanceAfter"]) == (2.5, 0, 47.5)


def test_operation_release_gives_the_hold_back(ledger: Ledger) -> None:
    held = debit_api.handle(reserve_request(amount=5), ledger)

    released = debit_api.handle(hold_request("release", held["holdId"]), ledger)
    again = debit_api.handle(hold_request("release", held["holdId"]), ledger)

    assert set(released) == RESULT_FIELDS | {"holdId", "released"}
    assert (released["released"], released["available"], released["amount"]) == (5, 50, 5)
    assert released["balanceAfter"] == 50
    assert again == {**released, "replayed": True}
    account = ledger.account(ACCOUNT)
    assert (account.reserved, account.available) == (Decimal(0), Decimal(50))


def test_hold_refusals_are_typed_errors(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    held = debit_api.handle(reserve_request(amount=5), ledger)
    materialize()  # the HOLD item (moto: not in the batch of its close, see test_holds.py)
    too_much = error_of(debit_api.handle(hold_request("capture", held["holdId"], amount=6), ledger))
    debit_api.handle(hold_request("release", held["holdId"]), ledger)
    materialize()  # the HOLD item says how the hold closed
    closed = error_of(
        debit_api.handle(
            hold_request("capture", held["holdId"], idempotencyKey="capture-req-2"), ledger
        )
    )
    unknown = error_of(
        debit_api.handle(
            hold_request("release", "hold_0000000000000000", idempotencyKey="release-req-2"), ledger
        )
    )
    broke = error_of(
        debit_api.handle(reserve_request(amount="50.5", idempotencyKey="hold-req-2"), ledger)
    )
    moto_store.accounts.update_settings(ACCOUNT, {"status": "suspended"})
    suspended = error_of(debit_api.handle(reserve_request(idempotencyKey="hold-req-3"), ledger))

    assert too_much["code"] == "VALIDATION_ERROR"
    assert too_much["details"] == {
        "fields": [{"field": "amount", "message": too_much["message"]}],
        "holdId": held["holdId"],
        "held": 5,
    }
    assert closed["code"] == "HOLD_NOT_OPEN"
    assert closed["details"] == {"holdId": held["holdId"], "status": "released"}
    assert unknown["code"] == "HOLD_NOT_FOUND"
    assert unknown["details"] == {"accountId": ACCOUNT, "holdId": "hold_0000000000000000"}
    assert broke["code"] == "INSUFFICIENT_CREDITS"
    assert broke["details"] == {"available": 50, "requested": 50.5}
    assert suspended["code"] == "ACCOUNT_SUSPENDED"
    assert ledger.account(ACCOUNT).reserved == 0


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (reserve_request(amountt=5), "amountt"),
        (reserve_request(holdId="hold_0123456789abcdef"), "holdId"),
        (reserve_request(expiresIn=0), "expiresIn"),
        (reserve_request(expiresIn=7 * 24 * 3600 + 1), "expiresIn"),
        (reserve_request(expiresIn="soon"), "expiresIn"),
        (hold_request("capture", "hold_0123456789abcdef", expiresIn=60), "expiresIn"),
        (hold_request("capture", "hold_0123456789abcdef", amount=0), "amount"),
        (hold_request("release", "hold_0123456789abcdef", amount=1), "amount"),
        (hold_request("capture", "hold_0123456789ABCDEF"), "holdId"),
        (hold_request("capture", "txn_1_0123456789ab"), "holdId"),
        (hold_request("release", "hold_0123"), "holdId"),
        (hold_request("release", ""), "holdId"),
        (
            hold_request("release", "hold_0123456789abcdef", idempotencyKey="bad key"),
            "idempotencyKey",
        ),
    ],
)
def test_invalid_hold_requests_name_the_field(
    ledger: Ledger, event: dict[str, Any], field: str
) -> None:
    error = error_of(debit_api.handle(event, ledger))

    assert error["code"] == "VALIDATION_ERROR"
    assert [detail["field"] for detail in error["details"]["fields"]] == [field]
    account = ledger.account(ACCOUNT)
    assert (account.balance, account.reserved, account.version) == (Decimal(50), Decimal(0), 1)


def test_a_capture_or_release_needs_the_hold_id(ledger: Ledger) -> None:
    for operation in ("capture", "release"):
        event = {"operation": operation, "accountId": ACCOUNT, "idempotencyKey": "k-1"}

        error = error_of(debit_api.handle(event, ledger))

        assert error["code"] == "VALIDATION_ERROR"
        assert [detail["field"] for detail in error["details"]["fields"]] == ["holdId"]


def test_the_longest_hold_is_seven_days(ledger: Ledger) -> None:
    before = datetime.now(UTC).replace(microsecond=0)

    response = debit_api.handle(reserve_request(amount=1, expiresIn=7 * 24 * 3600), ledger)

    assert datetime.fromisoformat(response["expiresAt"]) >= before + timedelta(days=7)


# ---------------------------------------------------------------- events/ for holds
EVENTS = Path(__file__).resolve().parents[2] / "events"
DEMO_ACCOUNT = "acct_demo"


def sample_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@pytest.fixture
def demo_ledger(moto_store: CreditsStore) -> Ledger:
    ledger = wiring.ledger()
    ledger.create_account(
        CreateAccountCommand(account_id=DEMO_ACCOUNT, opening_balance=Decimal(100))
    )
    return ledger


def create_the_named_hold(
    ledger: Ledger, event: dict[str, Any], amount: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hold a capture or release sample names (hold ids are random; this one is not)."""
    monkeypatch.setattr(ledger_holds, "new_hold_id", lambda: event["holdId"])
    held = ledger.holds.reserve(
        ReserveCommand(
            account_id=event["accountId"],
            idempotency_key=f"sample-{event['holdId']}",
            amount=Decimal(amount),
        )
    )
    assert held.hold_id == event["holdId"]


def test_the_reserve_sample_event_holds_the_price_of_the_call(demo_ledger: Ledger) -> None:
    event = sample_event("reserve.json")

    first = debit_api.handle(event, demo_ledger)
    second = debit_api.handle(event, demo_ledger)

    assert first["amount"] == 15  # voice_call_minute x 5 at 3 credits
    assert (first["available"], first["balanceAfter"], first["replayed"]) == (85, 100, False)
    assert second == {**first, "replayed": True}
    assert demo_ledger.account(DEMO_ACCOUNT).reserved == 15


def test_the_capture_sample_event_captures_part_of_the_hold_it_names(
    demo_ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = sample_event("capture.json")
    create_the_named_hold(demo_ledger, event, 15, monkeypatch)

    response = debit_api.handle(event, demo_ledger)

    assert response["holdId"] == event["holdId"]
    assert (response["amount"], response["released"]) == (6, 9)
    assert (response["balanceAfter"], response["available"]) == (94, 94)


def test_the_release_sample_event_releases_the_hold_it_names(
    demo_ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = sample_event("release.json")
    create_the_named_hold(demo_ledger, event, 15, monkeypatch)

    response = debit_api.handle(event, demo_ledger)

    assert response["holdId"] == event["holdId"]
    assert (response["released"], response["available"], response["balanceAfter"]) == (15, 100, 100)
    assert demo_ledger.account(DEMO_ACCOUNT).reserved == 0


@pytest.mark.parametrize("name", ["capture.json", "release.json"])
def test_a_hold_sample_event_without_its_hold_is_hold_not_found(
    demo_ledger: Ledger, materialize: Callable[[], int], name: str
) -> None:
    materialize()  # the ledger is up to date: no closed hold's HOLD item is on its way

    error = error_of(debit_api.handle(sample_event(name), demo_ledger))

    assert error["code"] == "HOLD_NOT_FOUND"
