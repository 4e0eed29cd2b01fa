"""Crashes between the write path's steps, on DynamoDB Local: the process dies after the
lease, after the account update, inside or after the completion of the record, after a
refund's claim, or stalls past its lease. A retry with the same key (past the lease, once
the stream is materialized) charges exactly once and the ledger is exact.

A crash is `ProcessDied`, a BaseException: no `except Exception` of the library runs for
it (nothing is released or cleaned up), as when a Lambda execution environment is killed.
Each "process" is a ledger of its own, built with `wiring.build_ledger` on its own store
objects (so a patched method stays in that process) and a settable clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from serverless_credits import wiring
from serverless_credits.config import Settings, get_settings
from serverless_credits.domain.commands import CreateAccountCommand, DebitCommand, RefundCommand
from serverless_credits.domain.errors import OperationInProgress, ServiceBusy
from serverless_credits.domain.models import (
    EntryType,
    IdempotencyState,
    OperationResult,
    utc_now,
)
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import LedgerAudit
from tests.support import Clock

pytestmark = pytest.mark.integration

ACCOUNT = "acct_crash"


class ProcessDied(BaseException):
    """The execution environment is gone: no handler of the library sees this."""


def settings() -> Settings:
    # A short wait for a pending record keeps "in progress" answers quick.
    return get_settings().model_copy(update={"in_progress_wait_seconds": 0.05})


class Process:
    """One function instance: its own store objects over the test's table, its own ledger."""

    def __init__(self, store: CreditsStore, clock: Clock) -> None:
        self.store = CreditsStore(store.client, store.table_name)
        self.ledger = wiring.build_ledger(
            self.store, PriceCatalog(self.store.catalog, 60), settings(), clock=clock
        )

    def die(self, target: Any, method: str, *, before: bool = False) -> None:
        """`target.method` runs (unless `before`), then the process dies."""
        real = getattr(target, method)

        def dying(*args: Any, **kwargs: Any) -> Any:
            if not before:
                real(*args, **kwargs)
            raise ProcessDied(method)

        setattr(target, method, dying)


@pytest.fixture
def clock() -> Clock:
    return Clock(utc_now())


@pytest.fixture
def opened(local_store: CreditsStore, clock: Clock, local_materialize: Callable[[], int]) -> None:
    Process(local_store, clock).ledger.create_account(
        CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(100))
    )
    local_materialize()  # the ledger is caught up before the crash


def charge(key: str = "crash-1", amount: str = "4") -> DebitCommand:
    return DebitCommand(
        account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount), endpoint="/v1/c"
    )


def past_the_lease(clock: Clock) -> None:
    clock.now += timedelta(seconds=settings().lease_seconds + 1)


def assert_charged_once(
    store: CreditsStore, audit: LedgerAudit, clock: Clock, result: OperationResult
) -> None:
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 96 == result.balance_after
    [entry] = snapshot.of_type(EntryType.DEBIT)
    assert entry.transaction_id == result.transaction_id
    assert (entry.amount, entry.idempotency_key) == (Decimal(-4), "crash-1")
    usage = audit.usage(ACCOUNT, clock.now.date() - timedelta(days=1), clock.now.date())
    assert (usage.calls, usage.failed, usage.credits_used) == (1, 0, Decimal(4))
    record = store.idempotency.get(ACCOUNT, "crash-1")
    assert record is not None
    assert record.state is IdempotencyState.COMPLETED
    assert record.expires_at is not None  # finalized: the entry exists, the record may expire


# Where the process dies, and what a retry within the lease answers.
CRASH_POINTS = {
    "after the lease": ("idempotency", "lease", False, "in progress"),
    "after the account update": ("accounts", "apply", False, "in progress"),
    "inside complete": ("idempotency", "complete", True, "in progress"),
    "after complete": ("idempotency", "complete", False, "replay"),
}


@pytest.mark.usefixtures("opened")
@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_a_debit_that_crashed_between_steps_is_charged_exactly_once(
    local_store: CreditsStore,
    audit: LedgerAudit,
    clock: Clock,
    local_materialize: Callable[[], int],
    point: str,
) -> None:
    store_name, method, before, within_lease = CRASH_POINTS[point]
    crashing = Process(local_store, clock)
    crashing.die(getattr(crashing.store, store_name), method, before=before)
    with pytest.raises(ProcessDied):
        crashing.ledger.debit(charge())
    applied = point != "after the lease"
    assert local_store.accounts.get(ACCOUNT, consistent=True).balance == (  # type: ignore[union-attr]
        96 if applied else 100
    )

    # A retry within the lease: "in progress" (or the completed result), never a 2nd charge.
    if within_lease == "in progress":
        with pytest.raises(OperationInProgress):
            Process(local_store, clock).ledger.debit(charge())
    else:
        assert Process(local_store, clock).ledger.debit(charge()).replayed is True

    # Past the lease, before the stream is materialized: only an operation that never
    # reached the account may be taken over.
    past_the_lease(clock)
    if applied and within_lease == "in progress":
        with pytest.raises(OperationInProgress):
            Process(local_store, clock).ledger.debit(charge())
    first = None
    if not applied:
        first = Process(local_store, clock).ledger.debit(charge())
        assert (first.replayed, first.balance_after) == (False, Decimal(96))

    # Once materialized, every retry replays the one charge.
    local_materialize()
    retried = Process(local_store, clock).ledger.debit(charge())
    assert retried.replayed is True
    if first is not None:
        assert retried == first.model_copy(update={"replayed": True})
    assert_charged_once(local_store, audit, clock, retried)


@pytest.mark.usefixtures("opened")
def test_a_writer_that_stalls_past_its_lease_never_applies_late(
    local_store: CreditsStore,
    audit: LedgerAudit,
    clock: Clock,
    local_materialize: Callable[[], int],
) -> None:
    """A writer pauses right after its lease until the lease has run out; meanwhile a retry
    recovers the key and applies the debit. When the first writer resumes, its update is
    refused: it must not land after recovery decided it never would."""
    stalled = Process(local_store, clock)
    real_lease = stalled.store.idempotency.lease
    recovered: list[OperationResult] = []

    def lease_then_stall(*args: Any, **kwargs: Any) -> None:
        real_lease(*args, **kwargs)
        past_the_lease(clock)  # the pause
        recovered.append(Process(local_store, clock).ledger.debit(charge()))

    stalled.store.idempotency.lease = lease_then_stall  # type: ignore[method-assign]

    with pytest.raises(ServiceBusy):
        stalled.ledger.debit(charge())

    [result] = recovered
    assert (result.replayed, result.balance_after) == (False, Decimal(96))
    local_materialize()
    assert Process(local_store, clock).ledger.debit(charge()) == result.model_copy(
        update={"replayed": True}
    )
    assert_charged_once(local_store, audit, clock, result)


@pytest.mark.usefixtures("opened")
@pytest.mark.parametrize("amount", [None, Decimal(4)], ids=["full", "partial"])
@pytest.mark.parametrize(
    "point", ["after the refund claim", "after the account update", "inside complete"]
)
def test_a_refund_that_crashed_between_steps_is_refunded_exactly_once(
    *,
    local_store: CreditsStore,
    audit: LedgerAudit,
    clock: Clock,
    local_materialize: Callable[[], int],
    point: str,
    amount: Decimal | None,
) -> None:
    charged = Process(local_store, clock).ledger.debit(charge("to-refund", "10"))
    local_materialize()  # a refund names the debit's entry
    refund = RefundCommand(
        account_id=ACCOUNT,
        idempotency_key="refund-1",
        transaction_id=charged.transaction_id,
        amount=amount,
    )
    crashing = Process(local_store, clock)
    if point == "after the refund claim":
        crashing.die(crashing.store.refunds, "claim")
    elif point == "after the account update":
        crashing.die(crashing.store.accounts, "apply")
    else:
        crashing.die(crashing.store.idempotency, "complete", before=True)
    with pytest.raises(ProcessDied):
        crashing.ledger.refund(refund)

    with pytest.raises(OperationInProgress):
        Process(local_store, clock).ledger.refund(refund)
    past_the_lease(clock)
    local_materialize()
    result = Process(local_store, clock).ledger.refund(refund)
    again = Process(local_store, clock).ledger.refund(refund)

    refunded = amount or Decimal(10)
    assert result.balance_after == 90 + refunded
    assert result.replayed is (point != "after the refund claim")
    assert again == result.model_copy(update={"replayed": True})
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 90 + refunded
    [entry] = snapshot.of_type(EntryType.REFUND)
    assert (entry.transaction_id, entry.amount) == (result.transaction_id, refunded)
    assert local_store.refunds.refunded(ACCOUNT, charged.transaction_id) == refunded
    usage = audit.usage(ACCOUNT, clock.now.date() - timedelta(days=1), clock.now.date())
    assert (usage.calls, usage.credits_used) == (1, 10 - refunded)
