"""Faults injected at the botocore layer, on DynamoDB Local: conflicts, throttling and timeouts
(before a request goes out, and after a write committed) are retried by the ledger, and every
operation is applied exactly once.

The store here has a client with botocore's own retries off (`max_attempts=1`), so every
injected fault reaches the ledger's retry loop; the ledger's backoff sleeps are recorded
instead of slept.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from devtools import dynamodb_local
from serverless_credits import wiring
from serverless_credits.config import Settings, get_settings
from serverless_credits.domain.commands import CreateAccountCommand, DebitCommand, RefundCommand
from serverless_credits.domain.errors import ServiceBusy
from serverless_credits.domain.models import EntryType
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import LedgerAudit

pytestmark = pytest.mark.integration

ACCOUNT = "acct_faults"
TRANSACT = "TransactWriteItems"


class Faults:
    """Counts TransactWriteItems calls and fails chosen ones, before or after the request."""

    def __init__(self, store: CreditsStore) -> None:
        self.events = store.client.meta.events
        self.calls = 0
        self.statuses: list[int] = []  # HTTP status of each request that reached DynamoDB

    def before_request(self, failing_calls: int, make_error: Callable[[], Exception]) -> None:
        """The first `failing_calls` calls fail before anything is sent."""

        def handler(**_: Any) -> None:
            self.calls += 1
            if self.calls <= failing_calls:
                raise make_error()

        self.events.register(f"before-call.dynamodb.{TRANSACT}", handler)

    def after_response(self, failing_calls: int) -> None:
        """The first `failing_calls` calls reach DynamoDB, which answers, and then the
        caller sees a read timeout instead of the answer (the write may have committed)."""

        def count(**_: Any) -> None:
            self.calls += 1

        def handler(http_response: Any, **_: Any) -> None:
            self.statuses.append(http_response.status_code)
            if len(self.statuses) <= failing_calls:
                raise ReadTimeoutError(endpoint_url="http://dynamodb.local")

        self.events.register(f"before-call.dynamodb.{TRANSACT}", count)
        self.events.register(f"after-call.dynamodb.{TRANSACT}", handler)


def transaction_conflict() -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
            "CancellationReasons": [
                {"Code": "TransactionConflict", "Message": "Transaction is ongoing"},
                {"Code": "None"},
                {"Code": "None"},
                {"Code": "None"},
            ],
        },
        TRANSACT,
    )


def throttling() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, TRANSACT
    )


def timeout_before_sending() -> ReadTimeoutError:
    return ReadTimeoutError(endpoint_url="http://dynamodb.local")


@pytest.fixture
def unretried_store(local_store: CreditsStore, dynamodb_local_endpoint: str) -> CreditsStore:
    """The test's table through a client that never retries by itself."""
    client = boto3.client(
        "dynamodb",
        endpoint_url=dynamodb_local_endpoint,
        region_name=dynamodb_local.LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=dynamodb_local.LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=dynamodb_local.LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    return CreditsStore(client, local_store.table_name)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_ledger(
    store: CreditsStore, sleeps: list[float], settings: Settings | None = None
) -> Ledger:
    return wiring.build_ledger(
        store, PriceCatalog(store.catalog, 60), settings or get_settings(), sleep=sleeps.append
    )


@pytest.fixture
def ledger(unretried_store: CreditsStore, sleeps: list[float]) -> Ledger:
    ledger = make_ledger(unretried_store, sleeps)
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(100)))
    return ledger


def charge(amount: str = "4", key: str = "charge-1") -> DebitCommand:
    return DebitCommand(
        account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount), endpoint="/v1/x"
    )


@pytest.mark.parametrize(
    "make_error",
    [transaction_conflict, throttling, timeout_before_sending],
    ids=["transaction-conflict", "throttling", "timeout-before-sending"],
)
def test_faults_before_the_request_are_retried_until_the_debit_applies_once(
    ledger: Ledger,
    unretried_store: CreditsStore,
    audit: LedgerAudit,
    sleeps: list[float],
    make_error: Callable[[], Exception],
) -> None:
    faults = Faults(unretried_store)
    faults.before_request(3, make_error)

    result = ledger.debit(charge())

    assert faults.calls == 4
    assert len(sleeps) == 3  # one backoff per failed attempt
    assert result.replayed is False
    assert result.balance_after == 96
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 96
    [entry] = snapshot.of_type(EntryType.DEBIT)
    assert entry.transaction_id == result.transaction_id
    usage = audit.usage(ACCOUNT)
    assert (usage.calls, usage.credits_used) == (1, Decimal(4))


@pytest.mark.parametrize("timeouts", [1, 3])
def test_a_timeout_after_the_write_committed_is_recovered_as_the_original_result(
    ledger: Ledger,
    unretried_store: CreditsStore,
    audit: LedgerAudit,
    sleeps: list[float],
    timeouts: int,
) -> None:
    faults = Faults(unretried_store)
    faults.after_response(timeouts)

    result = ledger.debit(charge())

    assert faults.statuses[0] == 200  # the first attempt committed, then "timed out"
    assert faults.calls == timeouts + 1
    assert len(sleeps) == timeouts
    # The retry found its own committed write through the idempotency record.
    assert result.replayed is False
    assert result.balance_after == 96
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 96
    [entry] = snapshot.of_type(EntryType.DEBIT)
    assert entry.transaction_id == result.transaction_id
    assert audit.usage(ACCOUNT).calls == 1

    # A later invocation with the same key is a replay of that same debit.
    again = make_ledger(unretried_store, sleeps).debit(charge())
    assert again == result.model_copy(update={"replayed": True})
    assert audit.check(ACCOUNT).account.balance == 96


def test_a_refund_that_timed_out_after_committing_is_applied_once(
    ledger: Ledger, unretried_store: CreditsStore, audit: LedgerAudit
) -> None:
    charged = ledger.debit(charge("10"))
    faults = Faults(unretried_store)
    faults.after_response(1)

    refunded = ledger.refund(
        RefundCommand(
            account_id=ACCOUNT,
            idempotency_key="refund-1",
            transaction_id=charged.transaction_id,
            amount=Decimal(4),
        )
    )

    assert (refunded.replayed, refunded.balance_after) == (False, Decimal(94))
    snapshot = audit.check(ACCOUNT)
    assert [e.transaction_id for e in snapshot.of_type(EntryType.REFUND)] == [
        refunded.transaction_id
    ]
    assert unretried_store.refunded_so_far(ACCOUNT, charged.transaction_id) == 4


def test_persistent_throttling_fails_cleanly_and_charges_nothing(
    unretried_store: CreditsStore, ledger: Ledger, audit: LedgerAudit, sleeps: list[float]
) -> None:
    settings = Settings.model_validate({**get_settings().model_dump(), "max_write_attempts": 5})
    impatient = make_ledger(unretried_store, sleeps, settings)
    faults = Faults(unretried_store)
    faults.before_request(1_000, throttling)

    with pytest.raises(ServiceBusy):
        impatient.debit(charge())

    assert faults.calls == 5
    assert len(sleeps) == 5
    assert max(sleeps) <= 0.25  # capped backoff
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 100
    assert snapshot.of_type(EntryType.DEBIT) == []
    assert unretried_store.idempotency.get(ACCOUNT, "charge-1") is None
