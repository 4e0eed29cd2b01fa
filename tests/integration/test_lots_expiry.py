"""Expiry of credit lots on DynamoDB Local, racing debits and holds.

Twelve instances debit one account while the test clock passes the expiry of six lots, a
sweeper (the ExpirerFunction, on a clock a second late, so expired lots sit unswept on the
item while debits go on) and an early expirer (a clock half a second ahead, expiring some
lots directly while the debiters still see them live) race them. Every expired lot is
removed exactly once, with what it held at expiry; no lot goes negative; no debit takes
from a lot past its expiry at the debit's own clock (`PlanTimes`), swept or not.

Holds: an expiry takes only what is `available`; what open holds reserve stays pinned on
the item, captures burn it first, and a sweep after the holds close takes the rest.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from serverless_credits.domain.commands import (
    CaptureCommand,
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    ReleaseCommand,
    ReserveCommand,
)
from serverless_credits.domain.errors import (
    InsufficientCredits,
    OperationInProgress,
    ServiceBusy,
)
from serverless_credits.domain.models import (
    Account,
    EntryType,
    LedgerEntry,
    OperationResult,
    utc_now,
)
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import (
    LedgerAudit,
    LotReplay,
    PlanTimes,
    assert_lots_sum_to_the_balance,
    lot_terms,
    wait_until,
)
from tests.support import Clock

pytestmark = pytest.mark.integration

ACCOUNT = "acct_expiring_lots"
DEBITERS = 12
MAX_DEBITS = 80  # per thread: a bound, should the clock never get there
SECOND = timedelta(seconds=1)
LIFETIME = timedelta(minutes=5, seconds=5)  # just over MIN_LOT_LIFETIME


class ShiftedClock:
    """Real time, shifted by `offset` (settable): runs, unlike `tests.support.Clock`,
    so that the expiries pass while the threads work."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() + self.offset

    def skewed(self, by: timedelta) -> Callable[[], datetime]:
        return lambda: self() + by


# (priority, seconds after the first expiry, credits), whatever the debit rate: a small
# lot spent first, before it expires; four big ones above the backing lot, each burned
# (soonest expiring first) until it expires half burned; two below it, never burned,
# expiring whole. The backing lot never expires and pays once they are gone.
EXPIRING = [
    (90, 5, 5),
    (70, 0, 5_000),
    (60, 1, 5_000),
    (60, 2, 5_000),
    (60, 4, 5_000),
    (5, 3, 100),
    (5, 5, 100),
]
BACKING = (10, 100_000)


@dataclass
class Debits:
    applied: list[OperationResult] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)


def debit_work(ledger: Ledger, worker: int, stop: threading.Event) -> Debits:
    rng = random.Random(worker)
    debits = Debits()
    for number in range(MAX_DEBITS):
        if stop.is_set():
            break
        amount = Decimal(rng.randint(500_000, 3_000_000)) / 1_000_000
        command = DebitCommand(
            account_id=ACCOUNT, idempotency_key=f"d{worker}-{number}", amount=amount
        )
        try:
            debits.applied.append(ledger.debit(command))
        except (InsufficientCredits, ServiceBusy) as refused:
            debits.refused[type(refused).__name__] += 1
    return debits


@dataclass
class Expiries:
    sweeps: int = 0
    expired: int = 0  # lots a sweep (or an expiry call) took credit from
    failed: Counter[str] = field(default_factory=Counter)


def sweep_work(
    ledger: Ledger, store: CreditsStore, lots: list[str], stop: threading.Event
) -> Expiries:
    """The ExpirerFunction, as often as it can, until every expiring lot left the item."""
    done = Expiries()
    while not stop.is_set():
        report = ledger.lots.sweep()
        done.sweeps += 1
        done.expired += report.expired
        if report.failed:
            done.failed["sweep failed"] += report.failed
        account = store.accounts.get(ACCOUNT, consistent=True)
        assert account is not None
        if not set(lots) & set(account.lots or {}):
            return done
        stop.wait(0.02)  # polling the index, not pacing the test
    return done


def early_work(ledger: Ledger, lots: list[str], stop: threading.Event) -> Expiries:
    """Expire `lots` one by one (as the reconciler does) on a clock ahead of the debiters'."""
    done = Expiries()
    left = list(lots)
    while left and not stop.is_set():
        for lot in list(left):
            try:
                result = ledger.lots.expire(ACCOUNT, lot)
            except (OperationInProgress, ServiceBusy) as busy:  # the sweeper is at it
                done.failed[type(busy).__name__] += 1
                continue
            if result is not None and not result.replayed:
                done.expired += 1
            account = ledger.account(ACCOUNT)
            if lot not in (account.lots or {}):
                left.remove(lot)
        stop.wait(0.01)
    return done


def test_lots_expiring_under_concurrent_debits_are_removed_once_and_never_spent(
    local_store: CreditsStore, audit: LedgerAudit
) -> None:
    clock = ShiftedClock()
    plans = PlanTimes()
    setup = plans.instance(local_store, clock)
    setup.create_account(CreateAccountCommand(account_id=ACCOUNT))
    first_expiry = (clock() + LIFETIME).replace(microsecond=0)
    expiring: dict[str, datetime] = {}
    for number, (priority, after, amount) in enumerate(EXPIRING):
        expires_at = first_expiry + after * SECOND
        result = setup.grant(
            CreditCommand(
                account_id=ACCOUNT,
                idempotency_key=f"lot-{number}",
                amount=Decimal(amount),
                priority=priority,
                expires_at=expires_at,
            )
        )
        assert result.lots is not None
        [lot] = result.lots
        expiring[lot] = expires_at
    setup.grant(
        CreditCommand(
            account_id=ACCOUNT,
            idempotency_key="backing",
            amount=Decimal(BACKING[1]),
            priority=BACKING[0],
        )
    )
    audit.materialize()  # the LOT items: listed in the expiry index
    early = [lot for number, lot in enumerate(expiring) if number % 2]
    # The clock jumps to a second and a half before the first expiry, then runs.
    clock.offset = first_expiry - 1.5 * SECOND - utc_now()
    last_expiry = max(expiring.values())

    stop, reading = threading.Event(), threading.Event()
    reads: list[Account] = []

    def poll() -> None:
        while not reading.is_set():
            account = local_store.accounts.get(ACCOUNT, consistent=True)
            assert account is not None
            reads.append(account)

    with ThreadPoolExecutor(max_workers=DEBITERS + 3) as executor:
        reader = executor.submit(poll)
        debiting = [
            executor.submit(debit_work, plans.instance(local_store, clock), worker, stop)
            for worker in range(DEBITERS)
        ]
        sweeping = executor.submit(
            sweep_work,
            plans.instance(local_store, clock.skewed(-SECOND)),
            local_store,
            list(expiring),
            stop,
        )
        early_expiring = executor.submit(
            early_work, plans.instance(local_store, clock.skewed(SECOND / 2)), early, stop
        )
        try:
            swept = sweeping.result(timeout=60)
            # Debits go on a little past the last expiry and the last sweep.
            swept_at = version(local_store)
            wait_until(
                lambda: clock() > last_expiry + SECOND and version(local_store) > swept_at + 20,
                timeout=30,
            )
            stop.set()
            outcomes = [future.result(timeout=60) for future in debiting]
            directly = early_expiring.result(timeout=30)
        finally:  # a failing thread must not leave the others running
            stop.set()
            reading.set()
        reader.result(timeout=30)

    debits = [result for outcome in outcomes for result in outcome.applied]
    refused = sum((outcome.refused for outcome in outcomes), Counter[str]())
    snapshot = audit.check(ACCOUNT)
    entries = snapshot.entries
    terms = lot_terms(local_store, ACCOUNT)
    replay = LotReplay(terms, plans.at).run(entries)

    # Never a negative lot, the lots summing to the balance, at every read.
    assert len(reads) > 20
    for account in reads:
        assert_lots_sum_to_the_balance(account)
    # Every debit took exactly what the burn order says at its own clock: no expired lot.
    assert replay.violations == []
    spent_expired = [
        (entry.sequence, lot)
        for entry in entries
        if entry.type is EntryType.DEBIT
        for lot in entry.lots or {}
        if lot in expiring and expiring[lot] <= plans.at[entry.sequence]
    ]
    assert spent_expired == []

    # Each expiring lot left the item exactly once, with what the debits had left of it.
    assert not set(expiring) & set(snapshot.account.lots or {})
    expiries = snapshot.of_type(EntryType.EXPIRY)
    by_lot = Counter(entry.lot_id for entry in expiries)
    initial = {lot.lot_id: lot.initial_amount for lot in local_store.lots.page(ACCOUNT, 100)[0]}
    for lot in expiring:
        left = initial[lot] - replay.paid.get(lot, Decimal(0))
        assert by_lot[lot] == (1 if left > 0 else 0), (lot, left, by_lot)
        taken = -sum((e.amount for e in expiries if e.lot_id == lot), Decimal(0))
        assert taken == left, lot
    assert all(e.lots == {e.lot_id: e.amount} for e in expiries)
    assert swept.expired + directly.expired == len(expiries)

    # The race was run: debits burned expiring lots, some lots expired half burned,
    # debits ran while an expired lot was still on the item (skipping it), and after.
    burned = {lot for result in debits for lot in result.lots or {} if lot in expiring}
    unswept = skipped_unswept(entries, expiring, plans.at)
    print(
        f"{len(debits)} debits ({dict(refused)}), {swept.sweeps} sweeps, expiries "
        f"{dict(by_lot)}, burned {len(burned)} of the expiring lots, {unswept} debits "
        f"planned while an expired lot sat unswept; early expirer {directly}"
    )
    spent_first, *big = list(expiring)[:5]
    assert by_lot[spent_first] == 0
    assert burned == {spent_first, *big}, "a lot expired before the debits reached it"
    assert len(expiries) == len(EXPIRING) - 1
    assert unswept > 0, "no debit ran between an expiry and its sweep"
    assert any(plans.at[e.sequence] > last_expiry for e in entries if e.type is EntryType.DEBIT)


def version(store: CreditsStore) -> int:
    account = store.accounts.get(ACCOUNT, consistent=True)
    assert account is not None
    return account.version


def skipped_unswept(
    entries: list[LedgerEntry], expiring: dict[str, datetime], plan_times: dict[int, datetime]
) -> int:
    """Debits planned past a lot's expiry while the lot still had credit on the item."""
    held: dict[str, Decimal] = {}
    count = 0
    for entry in entries:
        if entry.type is EntryType.DEBIT:
            now = plan_times[entry.sequence]
            if any(held.get(lot, 0) > 0 and at <= now for lot, at in expiring.items()):
                count += 1
        for lot, moved in (entry.lots or {}).items():
            held[lot] = held.get(lot, Decimal(0)) + moved
    return count


# ---------------------------------------------------------------- expiry vs open holds
START = datetime(2031, 6, 1, 12, 0, 0, tzinfo=UTC)


def test_an_expiry_takes_only_what_is_available_and_holds_keep_the_rest_pinned(
    local_store: CreditsStore, audit: LedgerAudit
) -> None:
    clock = Clock(START)
    plans = PlanTimes()
    ledger = plans.instance(local_store, clock)
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT))

    def account() -> Account:
        found = ledger.account(ACCOUNT)
        assert_lots_sum_to_the_balance(found)
        assert found.available >= 0, found
        return found

    def credit(key: str, amount: int, priority: int, expires: datetime | None) -> str:
        result = ledger.grant(
            CreditCommand(
                account_id=ACCOUNT,
                idempotency_key=key,
                amount=Decimal(amount),
                priority=priority,
                expires_at=expires,
            )
        )
        assert result.lots is not None
        [lot] = result.lots
        return lot

    def reserve(key: str, amount: int) -> str:
        result = ledger.holds.reserve(
            ReserveCommand(
                account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount), expires_in=86_400
            )
        )
        assert result.hold_id is not None
        return result.hold_id

    promo = credit("promo", 10, 90, START + timedelta(hours=1))
    bonus = credit("bonus", 6, 80, START + timedelta(hours=2))
    paid = credit("paid", 5, 50, None)
    a, b, c = reserve("a", 8), reserve("b", 6), reserve("c", 4)
    assert account().available == 3  # 21 - 18

    clock.now = START + timedelta(hours=1)  # the promo expires: 10 on the item
    audit.materialize()
    first = ledger.lots.sweep()
    assert (first.expired, first.pinned) == (1, 0)
    after = account()
    assert after.lots == {promo: Decimal(7), bonus: Decimal(6), paid: Decimal(5)}
    assert after.available == 0
    # Nothing more to take while the holds reserve it: pinned, not failed.
    again = ledger.lots.sweep()
    assert (again.expired, again.pinned, again.failed) == (0, 1, 0)
    # A debit cannot reach pinned (expired) credit, nor anything reserved.
    with pytest.raises(InsufficientCredits):
        ledger.debit(DebitCommand(account_id=ACCOUNT, idempotency_key="d", amount=Decimal(1)))

    # A capture burns pinned credit first, then live lots in order.
    captured = ledger.holds.capture(
        CaptureCommand(account_id=ACCOUNT, idempotency_key="ca", hold_id=a, amount=Decimal(5))
    )
    assert captured.lots == {promo: Decimal(-5)}
    assert account().available == 3  # the 3 the capture did not take came back
    # The sweep takes what the capture freed: available (3) caps it at the 2 left.
    assert ledger.lots.sweep().expired == 1
    after = account()
    assert after.lots == {bonus: Decimal(6), paid: Decimal(5)}
    assert after.available == 1

    clock.now = START + timedelta(hours=2)  # the bonus expires with 6 on the item
    assert ledger.lots.sweep().expired == 1  # takes the 1 available
    assert account().lots == {bonus: Decimal(5), paid: Decimal(5)}
    # A release frees 4: the next sweep takes them, 1 stays pinned for the last hold.
    ledger.holds.release(ReleaseCommand(account_id=ACCOUNT, idempotency_key="rc", hold_id=c))
    assert account().available == 4
    assert ledger.lots.sweep().expired == 1
    after = account()
    assert after.lots == {bonus: Decimal(1), paid: Decimal(5)}
    assert (after.available, after.reserved) == (Decimal(0), Decimal(6))
    captured = ledger.holds.capture(
        CaptureCommand(account_id=ACCOUNT, idempotency_key="cb", hold_id=b, amount=Decimal(3))
    )
    assert captured.lots == {bonus: Decimal(-1), paid: Decimal(-2)}  # pinned first, then live
    gone = ledger.lots.sweep()  # the bonus left the item: out of the index
    assert (gone.due, gone.expired, gone.gone) == (1, 0, 1)
    assert ledger.lots.sweep().due == 0
    final = account()
    assert final.lots == {paid: Decimal(3)}
    assert (final.balance, final.available, final.reserved) == (Decimal(3), Decimal(3), Decimal(0))

    # The ledger: available never negative, every expiry once per remainder it took.
    ledger_holds = audit.check_holds(ACCOUNT)
    assert all(
        e.available_after is None or e.available_after >= 0 for e in ledger_holds.snapshot.entries
    )
    expiries = [(e.lot_id, e.amount) for e in ledger_holds.snapshot.of_type(EntryType.EXPIRY)]
    assert expiries == [
        (promo, Decimal(-3)),
        (promo, Decimal(-2)),
        (bonus, Decimal(-1)),
        (bonus, Decimal(-4)),
    ]
    replay = LotReplay(lot_terms(local_store, ACCOUNT), plans.at).run(ledger_holds.snapshot.entries)
    assert replay.violations == []
    assert replay.lots == final.lots
