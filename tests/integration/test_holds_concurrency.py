"""Holds under concurrency on DynamoDB Local: many threads reserving, capturing, releasing,
debiting and expiring on one hot account, a capture racing the expiry of its hold, and a
storm of one reserve's retries. Whatever the interleaving, every hold closes at most once,
`available == balance - reserved` at every version, the funds are never overspent, and the
ledger read back from the stream says exactly what the callers were told.

Expirers run on a clock ahead of the others (as a skewed Lambda host's would be): short
holds are due for them while still live for a capture, so the time conditions of the fence
let both through and only the hold's entry in the account item's `holds` map decides.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest

from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.commands import (
    CaptureCommand,
    CreateAccountCommand,
    DebitCommand,
    ReleaseCommand,
    ReserveCommand,
)
from serverless_credits.domain.errors import (
    HoldNotOpen,
    InsufficientCredits,
    OperationInProgress,
    TooManyOpenHolds,
)
from serverless_credits.domain.models import EntryType, OperationResult, ReleaseReason, utc_now
from serverless_credits.domain.money import QUANTUM
from serverless_credits.ledger import holds
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import BackgroundMaterializer, LedgerAudit
from tests.support import Clock

pytestmark = pytest.mark.integration

ACCOUNT = "acct_hot_holds"
THREADS = 16
EXPIRERS = 4  # of the threads: the others reserve, capture, release and debit
OPS_PER_THREAD = 20
OPENING_BALANCE = Decimal(60)
OVERDRAFT = Decimal(5)
AMOUNTS = (Decimal(1), Decimal("0.25"), Decimal("2.5"), Decimal("3.333333"), Decimal(4))
SHORT_HOLD, LONG_HOLD = 10, 600  # seconds
SKEW = timedelta(seconds=60)  # how far ahead the expirers' clock runs
RECENT = 6  # captures and releases pick among the latest holds, so that they collide


def skewed() -> datetime:
    return utc_now() + SKEW


def instance(store: CreditsStore, clock: Callable[[], datetime] = utc_now) -> Ledger:
    """A function instance of its own (its own caches), on the test's table."""
    return wiring.build_ledger(store, PriceCatalog(store.catalog, 60), get_settings(), clock=clock)


def part_of(amount: Decimal, rng: random.Random) -> Decimal:
    return max(
        (amount * rng.choice([Decimal("0.1"), Decimal("0.5"), Decimal("0.9")])).quantize(
            QUANTUM, rounding=ROUND_DOWN
        ),
        QUANTUM,
    )


@dataclass
class Pool:
    """The holds reserved so far, shared by the threads (with the amount each holds)."""

    held: dict[str, Decimal] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, result: OperationResult) -> None:
        assert result.hold_id is not None
        with self.lock:
            self.held[result.hold_id] = result.amount

    def recent(self, rng: random.Random) -> tuple[str, Decimal] | None:
        with self.lock:
            latest = list(self.held.items())[-RECENT:]
        return rng.choice(latest) if latest else None


@dataclass
class Outcome:
    applied: list[tuple[str, OperationResult]] = field(default_factory=list)  # (kind, result)
    refused: Counter[str] = field(default_factory=Counter)  # "kind: error code (status)"
    swept: int = 0  # holds this thread's sweeps expired


def work(ledger: Ledger, worker: int, pool: Pool, start: threading.Barrier) -> Outcome:
    """One thread's requests: a mix decided by its own seeded generator."""
    rng = random.Random(worker)
    outcome = Outcome()
    start.wait()
    for number in range(OPS_PER_THREAD):
        key = f"w{worker}-{number}"
        roll = rng.random()
        kind = "reserve"
        try:
            if roll < 0.4:
                result = ledger.holds.reserve(
                    ReserveCommand(
                        account_id=ACCOUNT,
                        idempotency_key=key,
                        amount=rng.choice(AMOUNTS),
                        expires_in=rng.choice([SHORT_HOLD, LONG_HOLD]),
                    )
                )
                pool.add(result)
            elif roll < 0.85 and (picked := pool.recent(rng)) is not None:
                hold_id, held = picked
                if roll < 0.7:
                    kind = "capture"
                    part = rng.choice([None, part_of(held, rng)])
                    result = ledger.holds.capture(
                        CaptureCommand(
                            account_id=ACCOUNT, idempotency_key=key, hold_id=hold_id, amount=part
                        )
                    )
                    assert result.amount == (held if part is None else part)
                    assert result.released == held - result.amount
                else:
                    kind = "release"
                    result = ledger.holds.release(
                        ReleaseCommand(account_id=ACCOUNT, idempotency_key=key, hold_id=hold_id)
                    )
                    assert result.amount == result.released == held
            else:
                kind = "debit"
                result = ledger.debit(
                    DebitCommand(
                        account_id=ACCOUNT, idempotency_key=key, amount=rng.choice(AMOUNTS)
                    )
                )
        except (InsufficientCredits, TooManyOpenHolds) as refused:
            outcome.refused[f"{kind}: {refused.code}"] += 1
            continue
        except HoldNotOpen as refused:
            assert kind in ("capture", "release")
            outcome.refused[f"{kind}: {refused.code} ({(refused.details or {})['status']})"] += 1
            continue
        assert result.replayed is False
        outcome.applied.append((kind, result))
    return outcome


def expire_work(ledger: Ledger, worker: int, pool: Pool, start: threading.Barrier) -> Outcome:
    """An expirer: sweeps (the ExpirerFunction) and expiries of one hold (the reconciler)."""
    rng = random.Random(worker)
    outcome = Outcome()
    start.wait()
    for number in range(OPS_PER_THREAD):
        if number % 2 == 0 or (picked := pool.recent(rng)) is None:
            report = ledger.holds.sweep()
            # `failed`: another sweep's expiry of the same hold was still in flight after
            # the wait budget; left for the next sweep.
            outcome.swept += report.expired
            continue
        try:
            result = ledger.holds.expire(ACCOUNT, picked[0])
        except HoldNotOpen as refused:  # not due yet, or closed under it
            outcome.refused[f"expire: {refused.code} ({(refused.details or {})['status']})"] += 1
            continue
        except OperationInProgress:  # another expirer is at it
            outcome.refused["expire: in progress"] += 1
            continue
        if result is None:
            outcome.refused["expire: gone"] += 1
        elif result.replayed:
            outcome.refused["expire: replayed"] += 1
        else:
            outcome.applied.append(("expire", result))
    return outcome


def test_concurrent_hold_steps_on_one_account_close_each_hold_once_and_never_overspend(
    local_store: CreditsStore,
    audit: LedgerAudit,
    background_materializer: BackgroundMaterializer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twelve threads reserve, capture, release and debit, four expire (sweeps, and
    expiries of one hold), all on one account, a few hundred requests in all."""
    # A capture or release of a hold closed a moment ago waits for its HOLD item (written
    # from the stream) to tell HOLD_NOT_OPEN from HOLD_NOT_FOUND. Sixteen threads on two
    # cores can put the stream poller seconds behind: the wait must outlast that here.
    monkeypatch.setattr(holds, "KNOWN_HOLD_WAIT_SECONDS", 60.0)
    shared = wiring.ledger()
    shared.create_account(
        CreateAccountCommand(
            account_id=ACCOUNT, opening_balance=OPENING_BALANCE, overdraft_limit=OVERDRAFT
        )
    )
    pool = Pool()
    start = threading.Barrier(THREADS)
    with ThreadPoolExecutor(max_workers=THREADS) as executor:
        futures = []
        for worker in range(THREADS):
            if worker < EXPIRERS:
                ledger = instance(local_store, skewed)
                futures.append(executor.submit(expire_work, ledger, worker, pool, start))
            else:
                ledger = shared if worker % 2 else instance(local_store)
                futures.append(executor.submit(work, ledger, worker, pool, start))
        outcomes = [future.result() for future in futures]
    background_materializer.stop()

    applied = [pair for outcome in outcomes for pair in outcome.applied]
    refused = sum((outcome.refused for outcome in outcomes), Counter[str]())
    swept = sum(outcome.swept for outcome in outcomes)
    kinds = Counter(kind for kind, _ in applied)
    print(f"applied {dict(kinds)}, swept {swept}, refused {dict(refused)}")
    assert all(kinds[kind] for kind in ("reserve", "capture", "release", "debit")), kinds
    assert kinds["expire"] + swept > 0, "no hold expired"
    assert refused["reserve: INSUFFICIENT_CREDITS"], "the funds cover only part of the holds"

    ledger_holds = audit.check_holds(ACCOUNT)
    entries = ledger_holds.snapshot.entries
    account = ledger_holds.snapshot.account
    # Every answer is one entry, every entry (but the opening grant and the sweeps'
    # expiries) one answer.
    by_id = {entry.transaction_id: entry for entry in entries}
    assert len({result.transaction_id for _, result in applied}) == len(applied)
    for _, result in applied:
        entry = by_id.pop(result.transaction_id)
        assert (entry.balance_after, entry.available_after) == (
            result.balance_after,
            result.available,
        )
        assert entry.hold_id == result.hold_id
    [opening] = [e for e in by_id.values() if e.type is EntryType.GRANT]
    unanswered = [e for e in by_id.values() if e is not opening]
    assert all(e.reason is ReleaseReason.EXPIRED for e in unanswered), unanswered
    assert len(unanswered) == swept
    expired = [e for e in entries if e.reason is ReleaseReason.EXPIRED]
    assert len(expired) == kinds["expire"] + swept
    assert len(ledger_holds.opened) == kinds["reserve"]
    assert set(ledger_holds.opened) == set(pool.held)
    captures = ledger_holds.snapshot.of_type(EntryType.CAPTURE)
    assert len(captures) == kinds["capture"]
    assert len(ledger_holds.closed) == kinds["capture"] + kinds["release"] + len(expired)

    # The funds: what was consumed (debits and captures) never exceeds what was funded.
    spent = -sum((e.amount for e in entries if e.amount < 0), Decimal(0))
    assert account.used == spent <= OPENING_BALANCE + OVERDRAFT
    assert account.balance == OPENING_BALANCE - spent >= -OVERDRAFT
    assert account.lifetime_requests == kinds["capture"] + kinds["debit"]

    # Nothing is held forever: past every expiry, one sweep releases all that is open.
    later = instance(local_store, lambda: utc_now() + timedelta(days=8))
    report = later.holds.sweep()
    still_open = [h for h in ledger_holds.opened if h not in ledger_holds.closed]
    assert (report.expired, report.failed) == (len(still_open), 0)
    final = audit.check_holds(ACCOUNT)
    assert final.snapshot.account.holds == {}
    assert final.snapshot.account.reserved == 0
    assert set(final.closed) == set(final.opened)


ROUNDS = 30
RACE_HELD = Decimal(2)


def race_capture(
    ledger: Ledger, hold_id: str, part: Decimal | None, start: threading.Barrier
) -> OperationResult | HoldNotOpen:
    start.wait()
    try:
        return ledger.holds.capture(
            CaptureCommand(
                account_id=ACCOUNT, idempotency_key=f"c-{hold_id}", hold_id=hold_id, amount=part
            )
        )
    except HoldNotOpen as refused:
        return refused


def race_expiry(ledger: Ledger, hold_id: str, sweep: bool, start: threading.Barrier) -> str:
    """ "expired" when this expiry released the hold, or what it found instead."""
    start.wait()
    if sweep:
        report = ledger.holds.sweep()
        assert (report.due, report.failed) == (1, 0), report
        return "expired" if report.expired == 1 else "swept: already closed"
    try:
        result = ledger.holds.expire(ACCOUNT, hold_id)
    except HoldNotOpen as refused:
        return f"refused: {(refused.details or {})['status']}"
    if result is None:
        return "gone"
    return "replayed" if result.replayed else "expired"


class Gate:
    """While `closed`, holds each of two instances' account updates until both have
    reached theirs: both sides read the hold open, and their updates race at the fence."""

    def __init__(self) -> None:
        self.barrier: threading.Barrier | None = None

    def close(self) -> None:
        self.barrier = threading.Barrier(2)

    def open(self) -> None:
        self.barrier = None

    def instance(self, store: CreditsStore, clock: Callable[[], datetime]) -> Ledger:
        own = CreditsStore(store.client, store.table_name)
        real = own.accounts.apply

        def apply(*args: Any, **kwargs: Any) -> Any:
            if self.barrier is not None:
                self.barrier.wait(timeout=30)
            return real(*args, **kwargs)

        own.accounts.apply = apply  # type: ignore[method-assign]
        return instance(own, clock)


def test_a_capture_racing_the_expiry_of_its_hold_exactly_one_lands(
    local_store: CreditsStore, audit: LedgerAudit, local_materialize: Callable[[], int]
) -> None:
    """Round after round, a capture and an expiry (a direct one or a sweep) of the same hold
    start together; in every other round their account updates are also held until both
    are ready, so that they meet at the fence. The expirer's clock is past the hold's
    expiry, the capturer's is not: only the fence on the hold's entry keeps them apart."""
    now = utc_now()
    gate = Gate()
    capturer = gate.instance(local_store, Clock(now))
    expirer = gate.instance(local_store, Clock(now + timedelta(seconds=120)))
    capturer.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(500)))
    captured: list[OperationResult] = []
    found: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=2) as executor:
        for number in range(ROUNDS):
            hold_id = capturer.holds.reserve(
                ReserveCommand(
                    account_id=ACCOUNT,
                    idempotency_key=f"r{number}",
                    amount=RACE_HELD,
                    expires_in=60,
                )
            ).hold_id
            assert hold_id is not None
            local_materialize()  # its HOLD item: listed as due, and known once closed
            start = threading.Barrier(2)
            part = None if number % 2 else Decimal("0.5")
            at_the_fence = number % 4 >= 2
            if at_the_fence:
                gate.close()
            capturing = executor.submit(race_capture, capturer, hold_id, part, start)
            expiring = executor.submit(race_expiry, expirer, hold_id, number % 3 == 0, start)
            capture, expiry = capturing.result(timeout=60), expiring.result(timeout=60)
            gate.open()

            if isinstance(capture, OperationResult):
                assert expiry != "expired", f"round {number}: captured and expired"
                assert expiry in ("gone", "refused: closed", "swept: already closed"), expiry
                if at_the_fence:
                    assert expiry != "gone", "the expiry read the hold open"
                assert (capture.replayed, capture.amount) == (False, part or RACE_HELD)
                captured.append(capture)
            else:
                assert expiry == "expired", f"round {number}: neither landed ({capture!r})"
                assert capture.code == "HOLD_NOT_OPEN"
            found[f"{expiry}{' (at the fence)' if at_the_fence else ''}"] += 1
            account = local_store.accounts.get(ACCOUNT, consistent=True)
            assert account is not None
            assert account.holds == {}
            assert account.reserved == 0

    print(f"captures won {len(captured)} of {ROUNDS} rounds; the expiries: {dict(found)}")
    ledger_holds = audit.check_holds(ACCOUNT)
    assert len(ledger_holds.opened) == len(ledger_holds.closed) == ROUNDS
    captures = ledger_holds.snapshot.of_type(EntryType.CAPTURE)
    assert sorted(e.transaction_id for e in captures) == sorted(r.transaction_id for r in captured)
    expiries = [e for e in ledger_holds.closed.values() if e.reason is ReleaseReason.EXPIRED]
    assert (
        len(expiries)
        == ROUNDS - len(captured)
        == found["expired"] + found["expired (at the fence)"]
    )
    taken = sum((r.amount for r in captured), Decimal(0))
    assert ledger_holds.snapshot.account.balance == 500 - taken


STORM = 32


def test_a_storm_of_one_reserves_retries_holds_once(
    local_store: CreditsStore, audit: LedgerAudit
) -> None:
    """32 copies of one reserve (one idempotency key) at once, over several instances: one
    hold, one entry; every other copy replays it or is told it is in progress."""
    shared = wiring.ledger()
    shared.create_account(CreateAccountCommand(account_id=ACCOUNT, opening_balance=Decimal(10)))
    command = ReserveCommand(
        account_id=ACCOUNT, idempotency_key="storm", amount=Decimal(3), expires_in=300
    )
    start = threading.Barrier(STORM)

    def reserve(ledger: Ledger) -> OperationResult | OperationInProgress:
        start.wait()
        try:
            return ledger.holds.reserve(command)
        except OperationInProgress as busy:
            return busy

    with ThreadPoolExecutor(max_workers=STORM) as executor:
        ledgers = [shared if n % 2 else instance(local_store) for n in range(STORM)]
        answers = list(executor.map(reserve, ledgers))

    results = [a for a in answers if isinstance(a, OperationResult)]
    [first] = [r for r in results if not r.replayed]
    assert all(r == first.model_copy(update={"replayed": True}) for r in results if r.replayed)
    assert first.hold_id is not None
    ledger_holds = audit.check_holds(ACCOUNT)
    assert list(ledger_holds.opened) == [first.hold_id]
    assert ledger_holds.opened[first.hold_id].transaction_id == first.transaction_id
    account = ledger_holds.snapshot.account
    assert (account.reserved, account.available, account.balance) == (
        Decimal(3),
        Decimal(7),
        Decimal(10),
    )
    assert shared.holds.reserve(command) == first.model_copy(update={"replayed": True})
