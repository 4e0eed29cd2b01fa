"""The write path on moto (ledger.write_path): lease -> one account update -> completion, and
every other answer an idempotency key can get: replay, conflict, a bounded wait for a request
in progress, recovery of an expired lease, a refusal that frees the key, and an update whose
outcome is unknown (left to the materializer, never applied twice).

Time is a settable `Clock`; the wait for another request polls with `sleep`, which these
tests replace (to let "the other request" or the materializer act meanwhile)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from serverless_credits import wiring
from serverless_credits.config import Settings, get_settings
from serverless_credits.domain.commands import CreateAccountCommand, DebitCommand
from serverless_credits.domain.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    OperationInProgress,
    RefundNotAllowed,
    ServiceBusy,
)
from serverless_credits.domain.idempotency import fingerprint, parameters
from serverless_credits.domain.models import (
    Account,
    EntryType,
    IdempotencyRecord,
    IdempotencyState,
    LedgerEntry,
    Operation,
    OperationResult,
    utc_now,
)
from serverless_credits.ledger import write_path
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.write_path import WriteRequest
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore
from tests.support import Clock

ACCOUNT = "acct_write"
LEASE = timedelta(seconds=60)


class Sleeper:
    """`sleep` for the ledger: records each delay and runs `during` (what happens while the
    request waits), advancing a fake monotonic clock the wait's deadline reads."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.during: Callable[[], object] = lambda: None
        self.elapsed = 0.0

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.elapsed += seconds
        self.during()

    def monotonic(self) -> float:
        return self.elapsed


@pytest.fixture
def clock() -> Clock:
    return Clock(utc_now())


@pytest.fixture
def sleeper(monkeypatch: pytest.MonkeyPatch) -> Sleeper:
    sleeper = Sleeper()
    # Only the write path's deadline reads this fake time (not the process's `time`).
    monkeypatch.setattr(write_path, "time", sleeper)
    return sleeper


def settings(**changes: Any) -> Settings:
    return get_settings().model_copy(update=changes)


@pytest.fixture
def ledger(moto_store: CreditsStore, clock: Clock, sleeper: Sleeper) -> Ledger:
    built = wiring.build_ledger(moto_store, wiring.prices(), settings(), clock=clock, sleep=sleeper)
    built.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(100)))
    return built


def debit(ledger: Ledger, amount: int | str = 10, key: str = "k") -> OperationResult:
    return ledger.debit(
        DebitCommand(account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount))
    )


def account(store: CreditsStore) -> Account:
    found = store.accounts.get(ACCOUNT, consistent=True)
    assert found is not None
    return found


def record(store: CreditsStore, key: str = "k") -> IdempotencyRecord:
    found = store.idempotency.get(ACCOUNT, key)
    assert found is not None
    return found


def ledger_entries(store: CreditsStore, materialize: Callable[[], int]) -> list[LedgerEntry]:
    materialize()
    found, _ = store.entries.page(ACCOUNT, limit=100, newest_first=False)
    return found


def account_updates(store: CreditsStore) -> list[str]:
    """Records every update of the account item from now on."""
    updates: list[str] = []

    def record_update(params: dict[str, Any], **_: Any) -> None:
        if params["Key"]["pk"]["S"] == keys.account_pk(ACCOUNT):
            updates.append(params.get("ConditionExpression", ""))

    store.client.meta.events.register("before-parameter-build.dynamodb.UpdateItem", record_update)
    return updates


def pending_debit(
    store: CreditsStore, clock: Clock, key: str = "k", amount: int = 10, op_id: str = "a" * 32
) -> IdempotencyRecord:
    """The lease another request took for the same debit, as that request left it."""
    command = DebitCommand(account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount))
    leased = IdempotencyRecord(
        account_id=ACCOUNT,
        idempotency_key=key,
        fingerprint=fingerprint("debit", parameters(command)),
        op_id=op_id,
        state=IdempotencyState.PENDING,
        operation=Operation(type=EntryType.DEBIT, amount=Decimal(-amount)),
        lease_expires_at=clock.now + LEASE,
        created_at=clock.now,
    )
    store.idempotency.lease(leased, clock.now)
    return leased


def timeout_after_the_update(store: CreditsStore) -> None:
    """The next account update lands, but its answer is lost (a read timeout)."""
    pending: list[bool] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        pending.append(params["Key"]["pk"]["S"] == keys.account_pk(ACCOUNT))

    def lose_the_answer(**_: Any) -> None:
        # `after-call` runs once DynamoDB applied the request: raising there loses its answer.
        if pending.pop() and not lost:
            lost.append(True)
            raise ReadTimeoutError(endpoint_url="http://dynamodb")

    lost: list[bool] = []
    store.client.meta.events.register("before-parameter-build.dynamodb.UpdateItem", note)
    store.client.meta.events.register("after-call.dynamodb.UpdateItem", lose_the_answer)


def timeout_before_the_update(store: CreditsStore) -> None:
    """The next account update never reaches DynamoDB, and the caller cannot tell."""
    armed = [True]

    def drop(params: dict[str, Any], **_: Any) -> None:
        if armed[0] and params["Key"]["pk"]["S"] == keys.account_pk(ACCOUNT):
            armed[0] = False
            raise ReadTimeoutError(endpoint_url="http://dynamodb")

    store.client.meta.events.register("before-parameter-build.dynamodb.UpdateItem", drop)


# ---------------------------------------------------------------- lease, apply, complete
def test_a_write_leases_updates_the_account_once_and_completes_the_record(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock, materialize: Callable[[], int]
) -> None:
    updates = account_updates(moto_store)

    result = debit(ledger, "12.5")

    after = account(moto_store)
    assert len(updates) == 1
    assert (result.amount, result.balance_after, result.available) == (
        Decimal("12.5"),
        Decimal("87.5"),
        Decimal("87.5"),
    )
    assert after.last_op is not None
    assert result.transaction_id == f"txn_2_{after.last_op.id[:12]}"
    completed = record(moto_store)
    assert (completed.state, completed.result, completed.sequence) == (
        IdempotencyState.COMPLETED,
        result,
        2,
    )
    assert completed.expires_at is None  # no TTL until the entry exists
    assert completed.lease_expires_at == clock.now + LEASE
    assert completed.operation.amount == Decimal("-12.5")
    # The entry comes from the stream, exactly as the response described it.
    entry = ledger_entries(moto_store, materialize)[-1]
    assert (entry.transaction_id, entry.balance_after, entry.available_after) == (
        result.transaction_id,
        result.balance_after,
        result.available,
    )
    assert record(moto_store).expires_at is not None


def test_a_completed_key_is_replayed_without_touching_the_account(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    first = debit(ledger)
    updates = account_updates(moto_store)

    again = debit(ledger)

    assert again == first.model_copy(update={"replayed": True})
    assert updates == []
    assert account(moto_store).balance == 90


def test_a_key_reused_for_another_request_is_a_conflict(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    debit(ledger, 10)

    with pytest.raises(IdempotencyConflict):
        debit(ledger, 11)

    assert account(moto_store).balance == 90


def test_a_key_leased_by_another_request_is_a_conflict_too(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock
) -> None:
    pending_debit(moto_store, clock, amount=10)

    with pytest.raises(IdempotencyConflict):
        debit(ledger, 11)


# ---------------------------------------------------------------- a request in progress
def test_a_request_in_progress_is_waited_for_and_its_result_replayed(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock, sleeper: Sleeper
) -> None:
    leased = pending_debit(moto_store, clock)
    theirs = OperationResult(
        transaction_id="txn_2_aaaaaaaaaaaa",
        amount=Decimal(10),
        balance_after=Decimal(90),
        available=Decimal(90),
    )

    def the_other_request_finishes() -> None:
        if len(sleeper.delays) == 2:
            moto_store.idempotency.complete(
                ACCOUNT, "k", op_id=leased.op_id, result=theirs, sequence=2
            )

    sleeper.during = the_other_request_finishes
    updates = account_updates(moto_store)

    again = debit(ledger)

    assert again == theirs.model_copy(update={"replayed": True})
    assert updates == []  # never applied by the waiting request
    assert sleeper.delays == [0.01, 0.02]


def test_a_request_still_in_progress_after_the_wait_is_operation_in_progress(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock, sleeper: Sleeper
) -> None:
    pending_debit(moto_store, clock)
    updates = account_updates(moto_store)

    with pytest.raises(OperationInProgress) as refused:
        debit(ledger)

    assert refused.value.code == "OPERATION_IN_PROGRESS"
    assert refused.value.details == {"idempotencyKey": "k"}
    assert updates == []
    # Polls back off (doubling from 10 ms, capped at 200 ms) within the 1 s wait budget.
    assert sleeper.delays == [0.01, 0.02, 0.04, 0.08, 0.16, 0.2, 0.2, 0.2, 0.2]
    assert sum(sleeper.delays[:-1]) < get_settings().in_progress_wait_seconds <= sum(sleeper.delays)
    assert record(moto_store).state is IdempotencyState.PENDING


def test_a_lease_released_while_waiting_is_leased_again(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock, sleeper: Sleeper
) -> None:
    leased = pending_debit(moto_store, clock)
    sleeper.during = lambda: moto_store.idempotency.release(ACCOUNT, "k", leased.op_id)

    result = debit(ledger)

    assert (result.replayed, result.balance_after) == (False, Decimal(90))
    assert record(moto_store).op_id != leased.op_id


# ---------------------------------------------------------------- recovery of an expired lease
def test_an_expired_lease_that_never_reached_the_account_is_taken_over_and_applied_once(
    ledger: Ledger,
    moto_store: CreditsStore,
    clock: Clock,
    materialize: Callable[[], int],
) -> None:
    leased = pending_debit(moto_store, clock)  # its request died before the update
    materialize()  # the ledger is caught up with the account
    clock.now += LEASE
    updates = account_updates(moto_store)

    result = debit(ledger)

    assert (result.replayed, result.amount, result.balance_after) == (
        False,
        Decimal(10),
        Decimal(90),
    )
    assert len(updates) == 1
    taken = record(moto_store)
    assert taken.op_id != leased.op_id
    assert result.transaction_id == f"txn_2_{taken.op_id[:12]}"
    assert [e.transaction_id for e in ledger_entries(moto_store, materialize)][-1] == (
        result.transaction_id
    )
    assert debit(ledger) == result.model_copy(update={"replayed": True})


def test_an_expired_lease_is_not_recovered_before_the_ledger_caught_up(
    ledger: Ledger,
    moto_store: CreditsStore,
    clock: Clock,
    materialize: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("the function died after its update")

    monkeypatch.setattr(moto_store.idempotency, "complete", crash)
    with pytest.raises(RuntimeError):
        debit(ledger)  # applied, never completed, never answered
    monkeypatch.undo()
    clock.now += LEASE
    updates = account_updates(moto_store)

    # The account is ahead of its ledger: the operation may be in it. Wait for the stream.
    with pytest.raises(OperationInProgress):
        debit(ledger)
    materialize()  # the materializer completes the record from the version it wrote
    again = debit(ledger)

    assert updates == []
    assert (again.replayed, again.balance_after) == (True, Decimal(90))
    assert account(moto_store).version == 2
    assert again.transaction_id == ledger_entries(moto_store, materialize)[-1].transaction_id


# ---------------------------------------------------------------- refusals free the key
def test_a_refused_operation_releases_its_lease_so_the_key_can_be_used_again(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    with pytest.raises(InsufficientCredits):
        debit(ledger, 500)

    assert moto_store.idempotency.get(ACCOUNT, "k") is None
    result = debit(ledger, 5)  # the same key, another request: not a conflict
    assert (result.replayed, result.balance_after) == (False, Decimal(95))


def test_a_failure_before_the_update_releases_the_lease(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    request = WriteRequest(
        ACCOUNT, "refund-k", "f" * 64, Operation(type=EntryType.REFUND, amount=Decimal(1))
    )

    def refuse(_: IdempotencyRecord) -> None:
        raise RefundNotAllowed("no", {})

    with pytest.raises(RefundNotAllowed):
        ledger.write_path.submit(request, before_apply=refuse)

    assert moto_store.idempotency.get(ACCOUNT, "refund-k") is None
    assert account(moto_store).balance == 100


def test_a_lease_too_close_to_expiry_is_not_used_and_is_released_for_the_retry(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock, materialize: Callable[[], int]
) -> None:
    request = WriteRequest(
        ACCOUNT, "slow", "f" * 64, Operation(type=EntryType.DEBIT, amount=Decimal(-1))
    )

    def stall(_: IdempotencyRecord) -> None:
        clock.now += LEASE - timedelta(seconds=4)

    with pytest.raises(ServiceBusy):
        ledger.write_path.submit(request, before_apply=stall)
    assert account(moto_store).version == 1  # never sent: too late to land safely
    assert moto_store.idempotency.get(ACCOUNT, "slow") is None  # so the key is free again

    result = ledger.write_path.submit(request)

    assert (result.replayed, result.balance_after) == (False, Decimal(99))
    assert account(moto_store).version == 2


# ---------------------------------------------------------------- unknown outcomes
def test_a_lost_answer_is_settled_from_the_stream_and_never_applied_twice(
    ledger: Ledger, moto_store: CreditsStore, sleeper: Sleeper, materialize: Callable[[], int]
) -> None:
    timeout_after_the_update(moto_store)
    sleeper.during = materialize  # the Materializer function runs while the writer waits
    updates = account_updates(moto_store)

    result = debit(ledger)

    assert sleeper.delays  # the answer was lost: the writer waited for the stream
    assert len(updates) == 1
    assert (result.replayed, result.balance_after, result.available) == (
        False,
        Decimal(90),
        Decimal(90),
    )
    after = account(moto_store)
    assert (after.balance, after.version) == (Decimal(90), 2)
    [_, entry] = ledger_entries(moto_store, materialize)
    assert entry.transaction_id == result.transaction_id
    assert debit(ledger) == result.model_copy(update={"replayed": True})
    assert len(updates) == 1


def test_a_lost_answer_not_yet_materialized_is_in_progress_then_replayed(
    ledger: Ledger, moto_store: CreditsStore, materialize: Callable[[], int]
) -> None:
    timeout_after_the_update(moto_store)

    with pytest.raises(OperationInProgress):
        debit(ledger)
    with pytest.raises(OperationInProgress):  # a retry within the lease waits too
        debit(ledger)
    materialize()
    again = debit(ledger)

    assert (again.replayed, again.balance_after) == (True, Decimal(90))
    assert account(moto_store).version == 2


def test_an_update_that_never_landed_is_applied_once_after_the_lease(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock, materialize: Callable[[], int]
) -> None:
    timeout_before_the_update(moto_store)

    with pytest.raises(OperationInProgress):
        debit(ledger)  # unknown: the writer must not send it again
    assert account(moto_store).version == 1
    materialize()
    clock.now += LEASE
    result = debit(ledger)

    assert (result.replayed, result.balance_after) == (False, Decimal(90))
    assert account(moto_store).version == 2
    assert [e.sequence for e in ledger_entries(moto_store, materialize)] == [1, 2]


def test_a_completion_that_fails_is_left_to_the_materializer(
    ledger: Ledger,
    moto_store: CreditsStore,
    materialize: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def busy(*_: Any, **__: Any) -> None:
        raise ServiceBusy("throttled")

    monkeypatch.setattr(moto_store.idempotency, "complete", busy)
    result = debit(ledger)  # applied: the caller gets its exact result all the same
    monkeypatch.undo()

    assert (result.replayed, result.balance_after) == (False, Decimal(90))
    assert record(moto_store).state is IdempotencyState.PENDING
    materialize()
    finalized = record(moto_store)
    assert (finalized.state, finalized.result) == (IdempotencyState.COMPLETED, result)
    assert debit(ledger) == result.model_copy(update={"replayed": True})


def test_the_wait_budget_comes_from_the_settings(
    moto_store: CreditsStore, clock: Clock, sleeper: Sleeper
) -> None:
    impatient = wiring.build_ledger(
        moto_store,
        wiring.prices(),
        settings(in_progress_wait_seconds=0),
        clock=clock,
        sleep=sleeper,
    )
    impatient.create_account(CreateAccountCommand(account_id=ACCOUNT))
    pending_debit(moto_store, clock)

    with pytest.raises(OperationInProgress):
        debit(impatient)

    assert sleeper.delays == []
