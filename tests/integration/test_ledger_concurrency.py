"""Concurrent debits on one hot account, on DynamoDB Local: never overspent, nothing lost,
each debit succeeds or fails cleanly, and the ledger chain stays exact."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import CreateAccountCommand, DebitCommand
from serverless_credits.domain.errors import InsufficientCredits, ServiceBusy
from serverless_credits.domain.models import EntryType, OperationResult
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import LedgerAudit

pytestmark = pytest.mark.integration

THREADS = 16
DEBITS_PER_THREAD = 50
OPENING_BALANCE = Decimal(40)
AMOUNTS = (Decimal(1), Decimal("0.5"), Decimal("0.25"), Decimal("1.75"), Decimal("0.333333"))
ENDPOINT = "/v1/hot"


@dataclass
class WorkerOutcome:
    charged: list[tuple[Decimal, OperationResult]] = field(default_factory=list)
    declined: list[InsufficientCredits] = field(default_factory=list)
    busy: int = 0


def run_worker(
    ledger: Ledger, account_id: str, worker: int, start: threading.Barrier
) -> WorkerOutcome:
    outcome = WorkerOutcome()
    amounts = itertools.cycle(AMOUNTS[worker % len(AMOUNTS) :] + AMOUNTS[: worker % len(AMOUNTS)])
    start.wait()
    for number in range(DEBITS_PER_THREAD):
        amount = next(amounts)
        command = DebitCommand(
            account_id=account_id,
            idempotency_key=f"w{worker}-d{number}",
            amount=amount,
            endpoint=ENDPOINT,
        )
        try:
            outcome.charged.append((amount, ledger.debit(command)))
        except InsufficientCredits as declined:
            outcome.declined.append(declined)
        except ServiceBusy:
            outcome.busy += 1
    return outcome


def test_concurrent_debits_never_overspend_and_keep_the_ledger_exact(
    local_store: CreditsStore, audit: LedgerAudit
) -> None:
    account_id = "acct_hot"
    shared = wiring.ledger()
    shared.create_account(
        CreateAccountCommand(account_id=account_id, opening_balance=OPENING_BALANCE)
    )
    # Half the threads share the process's ledger (and its cache, as one warm function's
    # threads would); the others each have their own, as separate function instances do.
    ledgers = [
        shared
        if worker % 2 == 0
        else wiring.build_ledger(local_store, PriceCatalog(local_store.catalog, 60), get_settings())
        for worker in range(THREADS)
    ]
    start = threading.Barrier(THREADS)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [
            pool.submit(run_worker, ledgers[worker], account_id, worker, start)
            for worker in range(THREADS)
        ]
        outcomes = [future.result() for future in futures]

    charged = [pair for outcome in outcomes for pair in outcome.charged]
    declined = [error for outcome in outcomes for error in outcome.declined]
    busy = sum(outcome.busy for outcome in outcomes)
    assert len(charged) + len(declined) + busy == THREADS * DEBITS_PER_THREAD
    assert charged, "some debits must succeed"
    assert declined, "the balance covers only part of the debits"
    spent = sum((amount for amount, _ in charged), Decimal(0))
    assert spent <= OPENING_BALANCE

    snapshot = audit.check(account_id)  # chain, gapless sequence, sum of amounts
    final = snapshot.account
    assert final.balance >= 0
    assert OPENING_BALANCE - spent == final.balance
    assert final.used == spent
    assert final.lifetime_requests == len(charged)

    debits = snapshot.of_type(EntryType.DEBIT)
    assert len(debits) == len(charged)
    assert len(snapshot.entries) == len(charged) + 1  # and the opening grant
    by_id = {entry.transaction_id: entry for entry in debits}
    assert set(by_id) == {result.transaction_id for _, result in charged}
    for amount, result in charged:
        entry = by_id[result.transaction_id]
        assert entry.amount == -amount == -result.amount
        assert entry.balance_after == result.balance_after
        assert result.replayed is False
    assert busy == 0, "single-item updates do not contend: no debit gives up"
    for error in declined:
        assert error.available >= 0
        assert error.details is not None
        assert error.details["requested"] > error.available

    usage = audit.usage(account_id)
    assert usage.credits_used == spent
    assert usage.calls - usage.failed == len(debits)
    assert usage.failed == len(declined)


ACCOUNTS = 4
THREADS_PER_ACCOUNT = 4
DEBITS_PER_WORKER = 30
SEVERAL_OPENING = Decimal(25)


def test_concurrent_debits_on_several_accounts_keep_each_ledger_exact(
    local_store: CreditsStore, audit: LedgerAudit
) -> None:
    """Threads debit four accounts at once (each account on several threads, each thread on
    one account): the accounts' chains never mix, none is overspent."""
    accounts = [f"acct_many_{n}" for n in range(ACCOUNTS)]
    shared = wiring.ledger()
    for account_id in accounts:
        shared.create_account(
            CreateAccountCommand(account_id=account_id, opening_balance=SEVERAL_OPENING)
        )
    workers = [(account_id, n) for account_id in accounts for n in range(THREADS_PER_ACCOUNT)]
    start = threading.Barrier(len(workers))

    def work(account_id: str, worker: int) -> WorkerOutcome:
        ledger = (
            shared
            if worker % 2
            else wiring.build_ledger(local_store, PriceCatalog(local_store.catalog, 60))
        )
        outcome = WorkerOutcome()
        start.wait()
        for number in range(DEBITS_PER_WORKER):
            amount = AMOUNTS[(worker + number) % len(AMOUNTS)]
            command = DebitCommand(
                account_id=account_id,
                idempotency_key=f"w{worker}-d{number}",  # the same keys on every account
                amount=amount,
            )
            try:
                outcome.charged.append((amount, ledger.debit(command)))
            except InsufficientCredits as declined:
                outcome.declined.append(declined)
            except ServiceBusy:
                outcome.busy += 1
        return outcome

    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        futures = {pool.submit(work, *worker): worker[0] for worker in workers}
        by_account: dict[str, list[WorkerOutcome]] = {a: [] for a in accounts}
        for future, account_id in futures.items():
            by_account[account_id].append(future.result())

    for account_id, outcomes in by_account.items():
        charged = [pair for outcome in outcomes for pair in outcome.charged]
        declined = sum(len(outcome.declined) for outcome in outcomes)
        assert sum(outcome.busy for outcome in outcomes) == 0
        assert len(charged) + declined == THREADS_PER_ACCOUNT * DEBITS_PER_WORKER
        assert charged, account_id
        assert declined, account_id
        spent = sum((amount for amount, _ in charged), Decimal(0))
        snapshot = audit.check(account_id)
        assert snapshot.account.balance == SEVERAL_OPENING - spent >= 0
        assert {e.transaction_id for e in snapshot.of_type(EntryType.DEBIT)} == {
            result.transaction_id for _, result in charged
        }
        assert all(e.account_id == account_id for e in snapshot.entries)
        usage = audit.usage(account_id)
        assert (usage.calls, usage.failed) == (len(charged) + declined, declined)
        assert usage.credits_used == spent
