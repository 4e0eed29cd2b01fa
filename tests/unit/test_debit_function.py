"""The Debit Lambda handler in-process (Powertools Logger, Tracer and Metrics around it),
and the `events/debit-*.json` files that `sam local invoke DebitFunction -e ...` uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.debit import app
from serverless_credits import wiring
from serverless_credits.domain.commands import CreateAccountCommand, DebitCommand
from serverless_credits.domain.errors import StorageError
from serverless_credits.domain.models import EntryType
from serverless_credits.storage.ledger_entries import EntryRange
from serverless_credits.storage.store import CreditsStore

EVENTS = Path(__file__).resolve().parents[2] / "events"
DEMO_ACCOUNT = "acct_demo"
DEMO_BALANCE = Decimal(100)


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "serverless-credits-dev-DebitFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:serverless-credits-dev-DebitFunction"
    )
    aws_request_id: str = "5d2b1c2e-7f0a-4c1e-9a59-1f0c2f3e4d5a"


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def invoke(event: Any) -> dict[str, Any]:
    response: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext())
    return response


def emitted_metrics(output: str) -> dict[str, Any]:
    """Metric values from the Embedded Metric Format lines Powertools printed."""
    values: dict[str, Any] = {}
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            for definition in document["_aws"]["CloudWatchMetrics"]:
                assert definition["Namespace"] == "ServerlessCredits"
                for metric in definition["Metrics"]:
                    values[metric["Name"]] = document[metric["Name"]]
    return values


@pytest.fixture
def demo_account(moto_store: CreditsStore) -> str:
    wiring.ledger().create_account(
        CreateAccountCommand(account_id=DEMO_ACCOUNT, opening_balance=DEMO_BALANCE)
    )
    return DEMO_ACCOUNT


def demo_balance() -> Decimal:
    return wiring.ledger().account(DEMO_ACCOUNT).balance


def debit_entries(store: CreditsStore, materialize: Callable[[], int]) -> int:
    materialize()
    debits = EntryRange(entry_type=EntryType.DEBIT)
    entries, _ = store.entries.page(DEMO_ACCOUNT, limit=100, scope=debits)
    return len(entries)


# ---------------------------------------------------------------- the event files
@pytest.mark.parametrize("path", sorted(EVENTS.glob("debit-*.json")), ids=lambda p: p.name)
def test_each_debit_event_file_is_a_valid_debit_request_for_the_demo_account(path: Path) -> None:
    event = json.loads(path.read_text())

    command = DebitCommand.model_validate(event)

    assert command.account_id == DEMO_ACCOUNT
    assert {"idempotencyKey", "description", "endpoint", "metadata"} <= set(event)


def test_the_three_documented_event_files_exist() -> None:
    names = {path.name for path in EVENTS.glob("debit-*.json")}
    assert {"debit-success.json", "debit-insufficient.json", "debit-replay.json"} <= names


def test_debit_success_event_charges_the_demo_account(
    demo_account: str, moto_store: CreditsStore, capsys: pytest.CaptureFixture[str]
) -> None:
    response = invoke(load_event("debit-success.json"))

    assert response["replayed"] is False
    assert response["transactionId"].startswith("txn_")
    assert response["amount"] == 6  # voice_call_minute x 2 at 3 credits
    assert response["balanceAfter"] == response["available"] == 94
    assert demo_balance() == 94
    assert emitted_metrics(capsys.readouterr().out) == {"Debits": [1], "CreditsDebited": [6]}


def test_debit_insufficient_event_is_refused_with_the_available_amount(
    demo_account: str,
    moto_store: CreditsStore,
    materialize: Callable[[], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    response = invoke(load_event("debit-insufficient.json"))

    assert response == {
        "error": {
            "code": "INSUFFICIENT_CREDITS",
            "message": "Insufficient credits",
            "details": {"available": 100, "requested": 1_000_000_000},
        }
    }
    assert demo_balance() == DEMO_BALANCE
    assert debit_entries(moto_store, materialize) == 0
    assert emitted_metrics(capsys.readouterr().out) == {"DebitsDeclined": [1]}


def test_debit_replay_event_sent_twice_charges_once(
    demo_account: str,
    moto_store: CreditsStore,
    materialize: Callable[[], int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = load_event("debit-replay.json")

    first = invoke(event)
    first_metrics = emitted_metrics(capsys.readouterr().out)
    second = invoke(event)
    second_metrics = emitted_metrics(capsys.readouterr().out)

    assert first["replayed"] is False
    assert second["replayed"] is True
    assert second["transactionId"] == first["transactionId"]
    assert second == {**first, "replayed": True}
    assert demo_balance() == Decimal("97.5")
    assert debit_entries(moto_store, materialize) == 1
    assert first_metrics == {"Debits": [1], "CreditsDebited": [2.5]}
    assert second_metrics == {"IdempotentReplays": [1]}


# ---------------------------------------------------------------- the handler itself
def test_the_handler_emits_the_debited_credits_as_a_metric(
    demo_account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    invoke({"accountId": DEMO_ACCOUNT, "amount": 1.25, "idempotencyKey": "m-1"})

    assert emitted_metrics(capsys.readouterr().out) == {"Debits": [1], "CreditsDebited": [1.25]}


def test_a_void_through_the_handler_gives_the_debit_back(
    demo_account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    invoke({"accountId": DEMO_ACCOUNT, "amount": 3, "idempotencyKey": "m-2"})
    capsys.readouterr()

    voided = invoke({"operation": "void", "accountId": DEMO_ACCOUNT, "idempotencyKey": "m-2"})
    assert emitted_metrics(capsys.readouterr().out) == {"Voids": [1], "CreditsVoided": [3]}
    refund = invoke(
        {"operation": "refund", "accountId": DEMO_ACCOUNT, "idempotencyKey": "m-2", "amount": 1}
    )

    assert (voided["amount"], voided["balanceAfter"]) == (3, 100)
    assert refund["error"]["code"] == "VALIDATION_ERROR"
    assert demo_balance() == 100


@pytest.mark.parametrize("event", [[], "not an object", None, {"accountId": DEMO_ACCOUNT}])
def test_malformed_events_are_typed_refusals_not_function_errors(
    demo_account: str, event: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    response = invoke(event)

    assert response["error"]["code"] == "VALIDATION_ERROR"
    assert emitted_metrics(capsys.readouterr().out) == {"DebitsDeclined": [1]}


def test_each_typed_refusal_passes_through_the_handler(
    demo_account: str, moto_store: CreditsStore
) -> None:
    request = {"accountId": DEMO_ACCOUNT, "amount": 1, "idempotencyKey": "k-1"}
    invoke(request)

    conflict = invoke({**request, "amount": 2})
    missing = invoke({**request, "accountId": "acct_nobody"})
    moto_store.accounts.update_settings(DEMO_ACCOUNT, {"status": "suspended"})
    suspended = invoke({**request, "idempotencyKey": "k-2"})

    assert conflict["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    assert missing["error"]["code"] == "ACCOUNT_NOT_FOUND"
    assert suspended["error"]["code"] == "ACCOUNT_SUSPENDED"


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
def test_an_unexpected_failure_is_a_function_error(
    demo_account: str, moto_store: CreditsStore
) -> None:
    def deny(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "UpdateItem"
        )

    moto_store.client.meta.events.register("before-call.dynamodb.UpdateItem", deny)

    with pytest.raises(StorageError, match="apply failed: AccessDeniedException"):
        invoke({"accountId": DEMO_ACCOUNT, "amount": 1, "idempotencyKey": "k-3"})
    assert demo_balance() == DEMO_BALANCE


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
def test_throttling_that_outlived_the_retries_is_a_typed_retryable_error(
    demo_account: str, moto_store: CreditsStore
) -> None:
    def throttle(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "UpdateItem"
        )

    # The account update is the write's one request: no retry loop of ours around it.
    moto_store.client.meta.events.register("before-call.dynamodb.UpdateItem", throttle)

    busy = invoke({"accountId": DEMO_ACCOUNT, "amount": 1, "idempotencyKey": "k-4"})
    assert busy["error"]["code"] == "SERVICE_BUSY"
    assert demo_balance() == DEMO_BALANCE


def test_only_a_capture_of_a_hold_counts_as_credits_debited(
    demo_account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reserve sets credits aside and a release gives them back: neither is a charge."""
    held = invoke(
        {"operation": "reserve", "accountId": DEMO_ACCOUNT, "amount": 15, "idempotencyKey": "h-1"}
    )
    reserved_metrics = emitted_metrics(capsys.readouterr().out)
    invoke(
        {
            "operation": "capture",
            "accountId": DEMO_ACCOUNT,
            "holdId": held["holdId"],
            "amount": 6,
            "idempotencyKey": "h-1:capture",
        }
    )
    captured_metrics = emitted_metrics(capsys.readouterr().out)
    other = invoke(
        {"operation": "reserve", "accountId": DEMO_ACCOUNT, "amount": 4, "idempotencyKey": "h-2"}
    )
    capsys.readouterr()
    invoke(
        {
            "operation": "release",
            "accountId": DEMO_ACCOUNT,
            "holdId": other["holdId"],
            "idempotencyKey": "h-2:release",
        }
    )
    released_metrics = emitted_metrics(capsys.readouterr().out)

    assert reserved_metrics == {"HoldsReserved": [1], "CreditsReserved": [15]}
    assert captured_metrics == {"HoldsCaptured": [1], "CreditsDebited": [6]}
    assert released_metrics == {"HoldsReleased": [1], "CreditsReleased": [4]}
