"""Idempotent replays on DynamoDB Local, sequential and concurrent: one charge per key."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import CreateAccountCommand, DebitCommand, RefundCommand
from serverless_credits.domain.errors import IdempotencyConflict, OperationInProgress
from serverless_credits.domain.models import EntryType, OperationResult
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import LedgerAudit, wait_until

pytestmark = pytest.mark.integration

ACCOUNT = "acct_idem"
THREADS = 16
T = TypeVar("T")


@pytest.fixture
def ledger(local_store: CreditsStore) -> Ledger:
    ledger = wiring.ledger()
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(100)))
    return ledger


def function_instance(store: CreditsStore) -> Ledger:
    """A ledger with its own cache, as another warm Lambda execution environment has."""
    return wiring.build_ledger(store, PriceCatalog(store.catalog, 60), get_settings())


def all_at_once(tasks: list[Callable[[], T]]) -> list[T | Exception]:
    """Run the tasks on as many threads, released together; each one's result or error."""
    start = threading.Barrier(len(tasks))

    def run(task: Callable[[], T]) -> T | Exception:
        start.wait()
        try:
            return task()
        except Exception as error:  # the caller asserts on each outcome
            return error

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        return list(pool.map(run, tasks))


def debit(amount: str, key: str = "once", **fields: str) -> DebitCommand:
    return DebitCommand(account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount), **fields)


def test_sequential_repeats_charge_once_and_return_the_original_result(
    ledger: Ledger, local_store: CreditsStore, audit: LedgerAudit
) -> None:
    first = ledger.debit(debit("7.25", endpoint="/v1/x"))
    repeats = [ledger.debit(debit("7.25", endpoint="/v1/x")) for _ in range(3)]
    elsewhere = function_instance(local_store).debit(debit("7.25", endpoint="/v1/x"))

    assert first.replayed is False
    for repeat in [*repeats, elsewhere]:
        assert repeat == first.model_copy(update={"replayed": True})
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == Decimal("92.75")
    assert len(snapshot.of_type(EntryType.DEBIT)) == 1
    assert audit.usage(ACCOUNT).calls == 1


def test_sequential_reuse_with_other_parameters_is_a_conflict(
    ledger: Ledger, audit: LedgerAudit
) -> None:
    ledger.debit(debit("5"))

    with pytest.raises(IdempotencyConflict):
        ledger.debit(debit("6"))
    with pytest.raises(IdempotencyConflict):
        ledger.debit(debit("5", description="changed"))

    assert audit.check(ACCOUNT).account.balance == 95


def test_concurrent_requests_with_one_key_charge_exactly_once(
    ledger: Ledger, local_store: CreditsStore, audit: LedgerAudit
) -> None:
    instances = [ledger if n % 2 == 0 else function_instance(local_store) for n in range(THREADS)]

    outcomes = all_at_once(
        [functools.partial(instance.debit, debit("3")) for instance in instances]
    )

    results = [outcome for outcome in outcomes if isinstance(outcome, OperationResult)]
    assert len(results) == THREADS, outcomes
    assert len({result.transaction_id for result in results}) == 1
    assert sum(not result.replayed for result in results) == 1
    assert {result.balance_after for result in results} == {Decimal(97)}
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 97
    assert [e.transaction_id for e in snapshot.of_type(EntryType.DEBIT)] == [
        results[0].transaction_id
    ]
    usage = audit.usage(ACCOUNT)
    assert (usage.calls, usage.credits_used) == (1, Decimal(3))


def test_concurrent_requests_with_one_key_and_different_parameters(
    ledger: Ledger, local_store: CreditsStore, audit: LedgerAudit
) -> None:
    amounts = ["1" if n % 2 else "2" for n in range(THREADS)]

    outcomes = all_at_once(
        [
            functools.partial(function_instance(local_store).debit, debit(amount))
            for amount in amounts
        ]
    )

    results = {
        amount: outcome
        for amount, outcome in zip(amounts, outcomes, strict=True)
        if isinstance(outcome, OperationResult)
    }
    assert len(results) == 1, outcomes  # only the winner's parameters succeed
    [(winning_amount, winner)] = results.items()
    for amount, outcome in zip(amounts, outcomes, strict=True):
        if amount == winning_amount:
            assert isinstance(outcome, OperationResult)
            assert outcome.transaction_id == winner.transaction_id
        else:
            assert isinstance(outcome, IdempotencyConflict)
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 100 - Decimal(winning_amount)
    assert len(snapshot.of_type(EntryType.DEBIT)) == 1


def test_concurrent_repeats_of_one_refund_refund_once(
    ledger: Ledger,
    local_store: CreditsStore,
    audit: LedgerAudit,
    local_materialize: Callable[[], int],
) -> None:
    charged = ledger.debit(debit("10", key="to-refund"))
    local_materialize()  # a refund names the debit's ledger entry
    refund = RefundCommand(
        account_id=ACCOUNT, idempotency_key="refund-once", transaction_id=charged.transaction_id
    )

    outcomes = all_at_once(
        [lambda: function_instance(local_store).refund(refund) for _ in range(8)]
    )

    results = [outcome for outcome in outcomes if isinstance(outcome, OperationResult)]
    assert len(results) == 8, outcomes
    assert len({result.transaction_id for result in results}) == 1
    assert sum(not result.replayed for result in results) == 1
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 100
    assert len(snapshot.of_type(EntryType.REFUND)) == 1


def test_concurrent_different_refunds_never_exceed_the_debit(
    ledger: Ledger,
    local_store: CreditsStore,
    audit: LedgerAudit,
    local_materialize: Callable[[], int],
) -> None:
    charged = ledger.debit(debit("10", key="to-refund"))
    local_materialize()

    outcomes = all_at_once(
        [
            functools.partial(
                function_instance(local_store).refund,
                RefundCommand(
                    account_id=ACCOUNT,
                    idempotency_key=f"refund-{n}",
                    transaction_id=charged.transaction_id,
                    amount=Decimal(3),
                ),
            )
            for n in range(8)
        ]
    )

    refunded = [outcome for outcome in outcomes if isinstance(outcome, OperationResult)]
    assert len(refunded) == 3, outcomes  # 3 x 3 <= 10 < 4 x 3
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 99
    assert len(snapshot.of_type(EntryType.REFUND)) == 3
    assert local_store.refunds.refunded(ACCOUNT, charged.transaction_id) == 9


# ---------------------------------------------------------------- a storm on one key
STORM = 32


def impatient_instance(store: CreditsStore, wait_seconds: float) -> Ledger:
    """A function instance that waits `wait_seconds` for a request with the same key."""
    settings = get_settings().model_copy(update={"in_progress_wait_seconds": wait_seconds})
    return wiring.build_ledger(
        CreditsStore(store.client, store.table_name), PriceCatalog(store.catalog, 60), settings
    )


def split(
    outcomes: list[OperationResult | Exception],
) -> tuple[
    list[OperationResult], list[OperationResult], list[OperationInProgress], list[Exception]
]:
    """Outcomes as (first applications, replays, in-progress refusals, anything else)."""
    applied = [o for o in outcomes if isinstance(o, OperationResult) and not o.replayed]
    replays = [o for o in outcomes if isinstance(o, OperationResult) and o.replayed]
    waiting = [o for o in outcomes if isinstance(o, OperationInProgress)]
    other = [o for o in outcomes if not isinstance(o, OperationResult | OperationInProgress)]
    return applied, replays, waiting, other


def test_a_storm_of_32_requests_with_one_key_charges_once(
    ledger: Ledger, local_store: CreditsStore, audit: LedgerAudit
) -> None:
    instances = [
        ledger if n % 4 == 0 else impatient_instance(local_store, 0.0 if n % 4 == 1 else 1.0)
        for n in range(STORM)
    ]

    outcomes = all_at_once(
        [functools.partial(instance.debit, debit("2.5", key="storm")) for instance in instances]
    )

    applied, replays, waiting, other = split(outcomes)
    assert other == [], other  # nothing crashed, no conflict, no busy
    assert len(applied) == 1, outcomes
    assert len(applied) + len(replays) + len(waiting) == STORM
    [winner] = applied
    assert {r.transaction_id for r in replays} <= {winner.transaction_id}
    assert all(r == winner.model_copy(update={"replayed": True}) for r in replays)
    assert all(error.code == "OPERATION_IN_PROGRESS" for error in waiting)
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == Decimal("97.5") == winner.balance_after
    assert [e.transaction_id for e in snapshot.of_type(EntryType.DEBIT)] == [winner.transaction_id]
    usage = audit.usage(ACCOUNT)
    assert (usage.calls, usage.failed, usage.credits_used) == (1, 0, Decimal("2.5"))

    # Whoever was told "in progress" retries and gets the one charge.
    for _ in waiting:
        assert impatient_instance(local_store, 1.0).debit(debit("2.5", key="storm")) == (
            winner.model_copy(update={"replayed": True})
        )
    assert audit.check(ACCOUNT).account.balance == Decimal("97.5")


def test_a_storm_while_the_first_request_is_held_gets_both_answers(
    ledger: Ledger, local_store: CreditsStore, audit: LedgerAudit
) -> None:
    """The first request holds its lease (its account update is held back): 16 requests
    that do not wait are told OPERATION_IN_PROGRESS, then the first one completes and 15
    more replay it. Exactly one charge."""
    holder = impatient_instance(local_store, 0.0)
    release = threading.Event()
    accounts = holder.write_path._accounts
    real_apply = accounts.apply

    def held_apply(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(timeout=30)
        return real_apply(*args, **kwargs)

    accounts.apply = held_apply  # type: ignore[method-assign]
    with ThreadPoolExecutor(max_workers=1) as first:
        winner_future = first.submit(holder.debit, debit("4", key="held"))
        wait_until(lambda: local_store.idempotency.get(ACCOUNT, "held") is not None)

        early = all_at_once(
            [
                functools.partial(impatient_instance(local_store, 0.0).debit, debit("4", "held"))
                for _ in range(STORM // 2)
            ]
        )
        release.set()
        winner = winner_future.result(timeout=30)
    late = all_at_once(
        [
            functools.partial(impatient_instance(local_store, 0.0).debit, debit("4", "held"))
            for _ in range(STORM // 2 - 1)
        ]
    )

    assert all(isinstance(outcome, OperationInProgress) for outcome in early), early
    assert winner.replayed is False
    assert late == [winner.model_copy(update={"replayed": True})] * (STORM // 2 - 1)
    snapshot = audit.check(ACCOUNT)
    assert snapshot.account.balance == 96 == winner.balance_after
    assert len(snapshot.of_type(EntryType.DEBIT)) == 1
