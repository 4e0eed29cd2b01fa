"""Crashes between the steps of a reserve, a capture and an expiry, on DynamoDB Local, and
a capture whose account update timed out: a retry with the same key (past the lease, once
the stream is materialized) holds or captures exactly once, a hold whose reserve landed is
never held forever (captured, or expired by the sweep or the reconciler), and the ledger is
exact.

Crashes are injected as in `test_write_path_crashes`: each "process" is a ledger on store
objects of its own, one of whose methods runs (or not) and then raises `ProcessDied`, which
no handler of the library catches; every process shares one settable clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    CaptureCommand,
    CreateAccountCommand,
    ReserveCommand,
)
from serverless_credits.domain.errors import HoldNotOpen, OperationInProgress
from serverless_credits.domain.models import (
    EntryType,
    HoldStatus,
    IdempotencyState,
    OperationResult,
    ReleaseReason,
    utc_now,
)
from serverless_credits.domain.outcomes import OutcomeUnknown
from serverless_credits.ledger.holds import expiry_key
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.ledger.reconciler import Reconciler
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import BackgroundMaterializer, HoldsLedger, LedgerAudit
from tests.integration.test_write_path_crashes import Process, ProcessDied, past_the_lease
from tests.support import Clock

pytestmark = pytest.mark.integration

ACCOUNT = "acct_hold_crash"
OPENING = Decimal(100)
HELD = Decimal(10)
HOLD_SECONDS = 600  # outlives any lease: a recovered capture still finds the hold live
SHORT_HOLD_SECONDS = 30  # runs out within a lease


@pytest.fixture
def clock() -> Clock:
    return Clock(utc_now())


@pytest.fixture
def opened(local_store: CreditsStore, clock: Clock, local_materialize: Callable[[], int]) -> None:
    Process(local_store, clock).ledger.create_account(
        CreateAccountCommand(account_id=ACCOUNT, opening_balance=OPENING)
    )
    local_materialize()


def reserve(seconds: int = HOLD_SECONDS) -> ReserveCommand:
    return ReserveCommand(
        account_id=ACCOUNT, idempotency_key="reserve-1", amount=HELD, expires_in=seconds
    )


def capture(hold_id: str, amount: Decimal | None = None) -> CaptureCommand:
    return CaptureCommand(
        account_id=ACCOUNT, idempotency_key="capture-1", hold_id=hold_id, amount=amount
    )


def reserved_now(store: CreditsStore) -> tuple[Decimal, Decimal, list[str]]:
    """balance, reserved and the open holds, as the account item has them."""
    account = store.accounts.get(ACCOUNT, consistent=True)
    assert account is not None
    return account.balance, account.reserved, sorted(account.holds or {})


def the_hold(store: CreditsStore) -> str:
    """The hold a crashed reserve opened (its id is in the operation leased under the key)."""
    record = store.idempotency.get(ACCOUNT, "reserve-1")
    assert record is not None
    assert record.operation.hold_id is not None
    return record.operation.hold_id


def sweep(store: CreditsStore, clock: Clock, expiry: int = HOLD_SECONDS) -> None:
    """The ExpirerFunction, a minute after the hold expired: it expires exactly that hold."""
    clock.now += timedelta(seconds=expiry + 60)
    report = Process(store, clock).ledger.holds.sweep()
    assert (report.due, report.expired, report.failed) == (1, 1, 0), report


def reconcile(store: CreditsStore, clock: Clock, expiry: int = HOLD_SECONDS) -> None:
    """The reconciler's nightly pass, after the hold expired: it expires it too."""
    clock.now += timedelta(seconds=expiry + 60)
    process = Process(store, clock)
    reconciler = Reconciler(
        accounts=process.store.accounts,
        records=process.store.idempotency,
        entries=process.store.entries,
        usage=process.store.usage,
        holds=process.store.holds,
        lots=process.store.lots,
        expire_hold=process.ledger.holds.expire,
        expire_lot=process.ledger.lots.expire,
        settings=get_settings(),
        clock=clock,
    )
    report = reconciler.account(ACCOUNT)
    assert report.consistent, report.as_dict()
    assert len(report.expired_holds) == 1, report.as_dict()


def assert_one_hold(audit: LedgerAudit, hold_id: str, fate: HoldStatus) -> HoldsLedger:
    """The ledger has exactly one hold, `hold_id` for `HELD`, ended as `fate`."""
    ledger_holds = audit.check_holds(ACCOUNT)
    assert list(ledger_holds.opened) == [hold_id]
    assert ledger_holds.opened[hold_id].held == HELD
    assert ledger_holds.status(hold_id) is fate
    assert len(ledger_holds.snapshot.of_type(EntryType.CAPTURE)) == (
        1 if fate is HoldStatus.CAPTURED else 0
    )
    return ledger_holds


# Where the process dies, and what a retry within the lease answers.
CRASH_POINTS = {
    "after the lease": ("idempotency", "lease", False, "in progress"),
    "after the account update": ("accounts", "apply", False, "in progress"),
    "inside complete": ("idempotency", "complete", True, "in progress"),
    "after complete": ("idempotency", "complete", False, "replay"),
}


@dataclass(frozen=True)
class Crashed:
    applied: bool  # the update reached the account
    pending: bool  # and its record is not completed: a retry must wait for the stream


def crash(store: CreditsStore, clock: Clock, point: str, call: Callable[[Process], Any]) -> Crashed:
    """Run `call` in a process that dies at `point`. A retry within the lease never
    applies it a second time."""
    store_name, method, before, within_lease = CRASH_POINTS[point]
    crashing = Process(store, clock)
    crashing.die(getattr(crashing.store, store_name), method, before=before)
    with pytest.raises(ProcessDied):
        call(crashing)
    if within_lease == "in progress":
        with pytest.raises(OperationInProgress):
            call(Process(store, clock))
    else:
        assert call(Process(store, clock)).replayed is True
    applied = point != "after the lease"
    return Crashed(applied, applied and within_lease == "in progress")


def recover(
    store: CreditsStore,
    clock: Clock,
    materialize: Callable[[], int],
    crashed: Crashed,
    call: Callable[[Process], OperationResult],
) -> OperationResult:
    """The client's retry past the lease: before the stream is materialized, only an
    operation that never reached the account is taken over; once it is, a replay."""
    past_the_lease(clock)
    first = None
    if crashed.pending:
        with pytest.raises(OperationInProgress):
            call(Process(store, clock))
    elif not crashed.applied:
        first = call(Process(store, clock))
        assert first.replayed is False
    materialize()
    retried = call(Process(store, clock))
    assert retried.replayed is True
    if first is not None:
        assert retried == first.model_copy(update={"replayed": True})
    return retried


@pytest.mark.usefixtures("opened")
@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_a_reserve_that_crashed_between_steps_holds_once_and_is_captured_once(
    local_store: CreditsStore,
    audit: LedgerAudit,
    clock: Clock,
    local_materialize: Callable[[], int],
    point: str,
) -> None:
    def reserving(process: Process) -> OperationResult:
        return process.ledger.holds.reserve(reserve())

    crashed = crash(local_store, clock, point, reserving)
    hold_id = the_hold(local_store)
    assert reserved_now(local_store) == (
        (OPENING, HELD, [hold_id]) if crashed.applied else (OPENING, Decimal(0), [])
    )

    held = recover(local_store, clock, local_materialize, crashed, reserving)
    assert (held.hold_id, held.amount, held.available) == (hold_id, HELD, OPENING - HELD)
    assert reserved_now(local_store) == (OPENING, HELD, [hold_id])
    record = local_store.idempotency.get(ACCOUNT, "reserve-1")
    assert record is not None
    assert record.state is IdempotencyState.COMPLETED

    captured = Process(local_store, clock).ledger.holds.capture(capture(hold_id, Decimal(4)))
    assert (captured.amount, captured.released, captured.balance_after) == (
        Decimal(4),
        Decimal(6),
        Decimal(96),
    )
    assert reserved_now(local_store) == (Decimal(96), Decimal(0), [])
    assert_one_hold(audit, hold_id, HoldStatus.CAPTURED)


@pytest.mark.usefixtures("opened")
@pytest.mark.parametrize("closer", [sweep, reconcile], ids=["sweep", "reconciler"])
@pytest.mark.parametrize("point", [p for p in CRASH_POINTS if p != "after the lease"])
def test_a_reserve_that_landed_and_was_never_retried_is_expired(
    *,
    local_store: CreditsStore,
    audit: LedgerAudit,
    clock: Clock,
    local_materialize: Callable[[], int],
    point: str,
    closer: Callable[[CreditsStore, Clock], None],
) -> None:
    """The client gave up after the crash: the hold it never heard of is not held forever."""
    crash(local_store, clock, point, lambda process: process.ledger.holds.reserve(reserve()))
    hold_id = the_hold(local_store)
    local_materialize()  # the HOLD item, in the expiry index

    closer(local_store, clock)

    assert reserved_now(local_store) == (OPENING, Decimal(0), [])
    ledger_holds = assert_one_hold(audit, hold_id, HoldStatus.EXPIRED)
    assert ledger_holds.snapshot.account.available == OPENING
    item = local_store.holds.get(ACCOUNT, hold_id)
    assert item is not None
    assert item.status is HoldStatus.EXPIRED
    # The reserve's late retry replays what it was told then, and opens nothing new.
    late = Process(local_store, clock).ledger.holds.reserve(reserve())
    assert (late.replayed, late.hold_id) == (True, hold_id)
    assert reserved_now(local_store) == (OPENING, Decimal(0), [])


def held_hold(store: CreditsStore, clock: Clock, materialize: Callable[[], int]) -> str:
    held = Process(store, clock).ledger.holds.reserve(reserve())
    materialize()
    assert held.hold_id is not None
    return held.hold_id


@pytest.mark.usefixtures("opened")
@pytest.mark.parametrize("amount", [None, Decimal(4)], ids=["all", "part"])
@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_a_capture_that_crashed_between_steps_captures_exactly_once(
    *,
    local_store: CreditsStore,
    audit: LedgerAudit,
    clock: Clock,
    local_materialize: Callable[[], int],
    point: str,
    amount: Decimal | None,
) -> None:
    hold_id = held_hold(local_store, clock, local_materialize)

    def capturing(process: Process) -> OperationResult:
        return process.ledger.holds.capture(capture(hold_id, amount))

    crashed = crash(local_store, clock, point, capturing)
    taken = amount or HELD
    assert reserved_now(local_store) == (
        (OPENING - taken, Decimal(0), []) if crashed.applied else (OPENING, HELD, [hold_id])
    )

    result = recover(local_store, clock, local_materialize, crashed, capturing)
    assert (result.amount, result.released) == (taken, HELD - taken)
    assert result.balance_after == result.available == OPENING - taken
    assert reserved_now(local_store) == (OPENING - taken, Decimal(0), [])
    # Past its expiry, the sweep finds nothing to expire: the hold closed once.
    clock.now += timedelta(seconds=HOLD_SECONDS)
    report = Process(local_store, clock).ledger.holds.sweep()
    assert (report.due, report.expired) == (0, 0)
    ledger_holds = assert_one_hold(audit, hold_id, HoldStatus.CAPTURED)
    [entry] = ledger_holds.snapshot.of_type(EntryType.CAPTURE)
    assert (entry.transaction_id, entry.amount) == (result.transaction_id, -taken)
    assert ledger_holds.snapshot.account.used == taken


@pytest.mark.usefixtures("opened")
def test_a_capture_that_never_landed_and_whose_hold_expired_meanwhile_captures_nothing(
    local_store: CreditsStore,
    audit: LedgerAudit,
    clock: Clock,
    local_materialize: Callable[[], int],
) -> None:
    """The capture's process died after its lease; by the time the client retries the hold
    has expired: the retry is refused and the sweep gives the credits back."""
    held = Process(local_store, clock).ledger.holds.reserve(reserve(SHORT_HOLD_SECONDS))
    local_materialize()
    assert held.hold_id is not None
    crash(
        local_store,
        clock,
        "after the lease",
        lambda process: process.ledger.holds.capture(capture(str(held.hold_id))),
    )

    past_the_lease(clock)  # and past the hold's expiry
    with pytest.raises(HoldNotOpen) as refused:
        Process(local_store, clock).ledger.holds.capture(capture(held.hold_id))
    assert (refused.value.details or {})["status"] == HoldStatus.EXPIRED
    assert reserved_now(local_store) == (OPENING, HELD, [held.hold_id])

    sweep(local_store, clock, expiry=0)
    assert reserved_now(local_store) == (OPENING, Decimal(0), [])
    assert_one_hold(audit, held.hold_id, HoldStatus.EXPIRED)


@pytest.mark.usefixtures("opened")
@pytest.mark.parametrize("point", ["after the account update", "inside complete"])
def test_an_expiry_that_crashed_is_not_expired_again(
    local_store: CreditsStore,
    audit: LedgerAudit,
    clock: Clock,
    local_materialize: Callable[[], int],
    point: str,
) -> None:
    """The sweep's process died after its expiry reached the account: the next sweep finds
    the hold closed, and the entry comes from the stream."""
    hold_id = held_hold(local_store, clock, local_materialize)
    clock.now += timedelta(seconds=HOLD_SECONDS + 60)
    store_name, method, before, _ = CRASH_POINTS[point]
    crashing = Process(local_store, clock)
    crashing.die(getattr(crashing.store, store_name), method, before=before)
    with pytest.raises(ProcessDied):
        crashing.ledger.holds.expire(ACCOUNT, hold_id)
    assert reserved_now(local_store) == (OPENING, Decimal(0), [])

    again = Process(local_store, clock).ledger.holds.sweep()  # the next minute's sweep
    assert (again.due, again.expired, again.already_closed) == (1, 0, 1)
    assert Process(local_store, clock).ledger.holds.expire(ACCOUNT, hold_id) is None
    local_materialize()
    assert Process(local_store, clock).ledger.holds.sweep().due == 0
    record = local_store.idempotency.get(ACCOUNT, expiry_key(hold_id))
    assert record is not None
    assert record.state is IdempotencyState.COMPLETED
    ledger_holds = assert_one_hold(audit, hold_id, HoldStatus.EXPIRED)
    assert ledger_holds.closed[hold_id].reason is ReleaseReason.EXPIRED


def time_out(process: Process, *, landed: bool) -> None:
    """The account update times out (`OutcomeUnknown`): after reaching DynamoDB when
    `landed`, before it otherwise. The write path must not send it again."""
    accounts = process.store.accounts
    real = accounts.apply
    calls: list[int] = []

    def timing_out(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        assert len(calls) == 1, "the update was sent again after an unknown outcome"
        if landed:
            real(*args, **kwargs)
        raise OutcomeUnknown("ReadTimeoutError")

    accounts.apply = timing_out  # type: ignore[method-assign]


@pytest.mark.usefixtures("opened")
def test_a_capture_whose_update_timed_out_after_landing_learns_its_result_from_the_stream(
    local_store: CreditsStore,
    audit: LedgerAudit,
    clock: Clock,
    local_materialize: Callable[[], int],
    background_materializer: BackgroundMaterializer,
) -> None:
    hold_id = held_hold(local_store, clock, local_materialize)
    process = Process(local_store, clock)
    # Waiting long enough for the stream: the materializer, not the budget, decides.
    process.ledger = wiring.build_ledger(
        process.store,
        PriceCatalog(process.store.catalog, 60),
        get_settings().model_copy(update={"in_progress_wait_seconds": 5.0}),
        clock=clock,
    )
    time_out(process, landed=True)

    result = process.ledger.holds.capture(capture(hold_id, Decimal(3)))

    assert (result.replayed, result.amount, result.released) == (False, Decimal(3), Decimal(7))
    assert result.balance_after == OPENING - 3
    background_materializer.stop()
    assert_one_hold(audit, hold_id, HoldStatus.CAPTURED)
    again = Process(local_store, clock).ledger.holds.capture(capture(hold_id, Decimal(3)))
    assert again == result.model_copy(update={"replayed": True})


@pytest.mark.usefixtures("opened")
def test_a_capture_whose_update_timed_out_before_landing_is_captured_once_on_retry(
    local_store: CreditsStore,
    audit: LedgerAudit,
    clock: Clock,
    local_materialize: Callable[[], int],
) -> None:
    hold_id = held_hold(local_store, clock, local_materialize)
    process = Process(local_store, clock)
    time_out(process, landed=False)

    with pytest.raises(OperationInProgress):  # the stream has nothing to tell
        process.ledger.holds.capture(capture(hold_id, Decimal(3)))
    assert reserved_now(local_store) == (OPENING, HELD, [hold_id])
    with pytest.raises(OperationInProgress):  # within the lease, the key stays taken
        Process(local_store, clock).ledger.holds.capture(capture(hold_id, Decimal(3)))

    result = recover(
        local_store,
        clock,
        local_materialize,
        Crashed(applied=False, pending=False),
        lambda p: p.ledger.holds.capture(capture(hold_id, Decimal(3))),
    )
    assert (result.amount, result.balance_after) == (Decimal(3), OPENING - 3)
    ledger_holds = assert_one_hold(audit, hold_id, HoldStatus.CAPTURED)
    [entry] = ledger_holds.snapshot.of_type(EntryType.CAPTURE)
    assert entry.transaction_id == result.transaction_id
