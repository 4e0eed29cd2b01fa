"""What the ledger's integration tests share: reading back an account's whole ledger and
checking the invariants SPEC.md lists under "Ledger rules"."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from devtools.streams import StreamPoller, materializer_poller
from serverless_credits import wiring
from serverless_credits.config import get_settings
from serverless_credits.domain.lots import OVERDRAFT_LOT
from serverless_credits.domain.models import (
    Account,
    DailyUsage,
    EntryType,
    HoldStatus,
    LedgerEntry,
    Lot,
    ReleaseReason,
    utc_now,
)
from serverless_credits.ledger.operations import Ledger
from serverless_credits.ledger.prices import PriceCatalog
from serverless_credits.storage.store import CreditsStore


@dataclass(frozen=True)
class LedgerSnapshot:
    account: Account
    entries: list[LedgerEntry]  # oldest first

    def of_type(self, entry_type: EntryType) -> list[LedgerEntry]:
        return [entry for entry in self.entries if entry.type is entry_type]


@dataclass(frozen=True)
class HoldsLedger:
    """An account's ledger read as holds: each hold's hold entry and closing entry."""

    snapshot: LedgerSnapshot
    opened: dict[str, LedgerEntry]  # hold id -> its hold entry
    closed: dict[str, LedgerEntry]  # hold id -> its capture or release entry

    def status(self, hold_id: str) -> HoldStatus:
        closing = self.closed.get(hold_id)
        return HoldStatus.OPEN if closing is None else hold_status(closing)


def hold_status(closing: LedgerEntry) -> HoldStatus:
    """What a capture or release entry made of its hold."""
    if closing.type is EntryType.CAPTURE:
        return HoldStatus.CAPTURED
    if closing.reason is ReleaseReason.EXPIRED:
        return HoldStatus.EXPIRED
    return HoldStatus.RELEASED


class LedgerAudit:
    """Reads an account back (consistently, once the stream is materialized) and proves the
    ledger rules hold for it."""

    def __init__(self, store: CreditsStore, materialize: Callable[[], int]) -> None:
        self.store = store
        self.materialize = materialize

    def snapshot(self, account_id: str) -> LedgerSnapshot:
        self.materialize()
        account = self.store.accounts.get(account_id, consistent=True)
        assert account is not None, f"account {account_id} is missing"
        entries, more = self.store.entries.page(account_id, limit=100_000, newest_first=False)
        assert more is None
        return LedgerSnapshot(account, entries)

    def check(self, account_id: str) -> LedgerSnapshot:
        """balance == sum(amounts); each balanceAfter == previous + amount; a gapless
        sequence 1..N equal to the account's version; the overdraft floor; the lifetime
        figures (balance == total - used + adjusted, `domain.posting`)."""
        snapshot = self.snapshot(account_id)
        account, entries = snapshot.account, snapshot.entries
        assert [e.sequence for e in entries] == list(range(1, len(entries) + 1))
        assert account.version == len(entries)
        previous = Decimal(0)
        for entry in entries:
            assert entry.balance_after == previous + entry.amount, entry
            assert entry.balance_after >= -account.overdraft_limit, entry
            previous = entry.balance_after
        assert account.balance == sum((e.amount for e in entries), Decimal(0)) == previous
        assert account.balance >= -account.overdraft_limit
        assert account.total - account.used + account.adjusted == account.balance
        assert account.available == account.balance - account.reserved
        if entries:
            assert entries[-1].available_after == account.available
        created = [e.created_at for e in entries]
        assert created == sorted(created)
        assert len(set(created)) == len(created)
        assert len({e.transaction_id for e in entries}) == len(entries)
        return snapshot

    def check_holds(self, account_id: str) -> HoldsLedger:
        """`check`, and the rules of holds at every version: `reserved` is the running sum
        of `held` and `availableAfter == balanceAfter - reserved`, never below the overdraft
        floor; each hold has exactly one hold entry and at most one closing entry (capture
        or release) after it, giving back exactly what it held, a capture taking no more;
        the account item's open holds are those without a closing entry, `reserved` their
        sum, and each HOLD item agrees with the entries."""
        snapshot = self.check(account_id)
        account, floor = snapshot.account, -snapshot.account.overdraft_limit
        opened: dict[str, LedgerEntry] = {}
        closed: dict[str, LedgerEntry] = {}
        held_by: dict[str, Decimal] = {}  # hold id -> what it held
        reserved = Decimal(0)
        for entry in snapshot.entries:
            reserved += entry.held or Decimal(0)
            assert reserved >= 0, entry
            assert entry.available_after == entry.balance_after - reserved, entry
            assert entry.available_after >= floor, entry
            hold_id = entry.hold_id
            if entry.type is EntryType.HOLD:
                assert hold_id is not None, entry
                assert hold_id not in opened, f"a hold opened twice: {entry}"
                assert entry.held is not None, entry
                assert entry.held > 0, entry
                assert entry.amount == 0, entry
                opened[hold_id], held_by[hold_id] = entry, entry.held
            elif entry.type in (EntryType.CAPTURE, EntryType.RELEASE):
                assert hold_id in held_by, f"closes a hold never opened: {entry}"
                assert hold_id not in closed, f"a hold closed twice: {entry}"
                assert entry.held == -held_by[hold_id], entry
                assert -held_by[hold_id] <= entry.amount <= 0, entry  # a capture takes <= held
                assert (entry.type is EntryType.RELEASE) == (entry.reason is not None), entry
                closed[hold_id] = entry
            else:
                assert (entry.held, hold_id) == (None, None), entry
        still_open = {h: held for h, held in held_by.items() if h not in closed}
        assert {h: held.amount for h, held in (account.holds or {}).items()} == still_open
        assert account.reserved == reserved == sum(still_open.values(), Decimal(0))
        items = self.store.holds.get_many(account_id, opened)
        assert set(items) == set(opened)
        for hold_id, item in items.items():
            assert (item.amount, item.opened_by) == (
                held_by[hold_id],
                opened[hold_id].transaction_id,
            )
            closing = closed.get(hold_id)
            if closing is None:
                assert (item.status, item.closed_by) == (HoldStatus.OPEN, None), item
            else:
                assert item.status is hold_status(closing), item
                assert (item.closed_by, item.captured) == (
                    closing.transaction_id,
                    -closing.amount,
                ), item
        return HoldsLedger(snapshot, opened, closed)

    def usage(
        self, account_id: str, first: date | None = None, last: date | None = None
    ) -> DailyUsage:
        """The account's usage summed over yesterday and today (a run may cross midnight),
        or over `first`..`last` (tests on a settable clock)."""
        self.materialize()
        today = utc_now().date()
        last = last or today
        first = first or min(last, today) - timedelta(days=1)
        rows = self.store.usage.daily(account_id, first, last)
        total = DailyUsage(day=today)
        for row in rows:
            total = total.model_copy(
                update={
                    "calls": total.calls + row.calls,
                    "failed": total.failed + row.failed,
                    "credits_used": total.credits_used + row.credits_used,
                }
            )
        return total


@pytest.fixture
def local_materialize(local_store: CreditsStore) -> Callable[[], int]:
    """Run the materializer over DynamoDB Local's stream of the test's table."""
    return materializer_poller(local_store.client, local_store.table_name).drain


@pytest.fixture
def audit(local_store: CreditsStore, local_materialize: Callable[[], int]) -> LedgerAudit:
    return LedgerAudit(local_store, local_materialize)


def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.01
) -> None:
    """Poll `predicate` until it holds, or fail after `timeout` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        time.sleep(interval)


@dataclass
class BackgroundMaterializer:
    """The Materializer function running beside the test, as it does in AWS (and in
    `make run`): a stream poller in a thread. `stop()` before auditing, so that the audit's
    own drain (a second consumer reading from the start of the stream) is a pure redelivery."""

    poller: StreamPoller
    _stop: threading.Event
    _thread: threading.Thread

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the stream poller did not stop"


@pytest.fixture
def background_materializer(local_store: CreditsStore) -> Iterator[BackgroundMaterializer]:
    poller = materializer_poller(local_store.client, local_store.table_name)
    stop = threading.Event()
    thread = threading.Thread(
        target=poller.run, args=(stop,), kwargs={"interval": 0.01}, daemon=True
    )
    thread.start()
    running = BackgroundMaterializer(poller, stop, thread)
    yield running
    running.stop()


# ---------------------------------------------------------------- credit lots
@dataclass(frozen=True)
class LotTerms:
    """What a lot was granted as, as far as its burn order goes (known to the test, or
    read from its LOT item: never from its id, whose order is what is being checked)."""

    priority: int
    expires_at: datetime | None
    granted_at: datetime

    @classmethod
    def of(cls, lot: Lot) -> LotTerms:
        return cls(lot.priority, lot.expires_at, lot.granted_at)

    def expired(self, now: datetime) -> bool:
        # Expiry is whole seconds: past it from its very second on.
        return self.expires_at is not None and self.expires_at <= now


_NEVER = datetime.max.replace(tzinfo=UTC)


def burn_model(
    lots: Mapping[str, Decimal], amount: Decimal, terms: Mapping[str, LotTerms], now: datetime
) -> dict[str, Decimal]:
    """What a debit of `amount` planned at `now` must take (the issue's rule, written
    independently of `domain.lots`): live lots by highest priority, then soonest expiry
    (none last), then oldest; expired lots never; what they cannot pay, the overdraft."""
    live = [lot for lot, left in lots.items() if left > 0 and not terms[lot].expired(now)]
    live.sort(
        key=lambda lot: (
            -terms[lot].priority,
            terms[lot].expires_at or _NEVER,
            terms[lot].granted_at,
            lot,
        )
    )
    taken: dict[str, Decimal] = {}
    for lot in live:
        if amount <= 0:
            break
        take = min(lots[lot], amount)
        taken[lot] = -take
        amount -= take
    if amount > 0:
        taken[OVERDRAFT_LOT] = -amount
    return taken


@dataclass
class LotReplay:
    """An account's lots replayed from its ledger in sequence order: after every entry the
    lots sum to `balanceAfter` and none is negative; every debit (and downward adjustment)
    took exactly what `burn_model` takes from the lots as they were just before it, at the
    time it was planned (`plan_times[sequence]`, else the entry's `createdAt`)."""

    terms: Mapping[str, LotTerms]
    plan_times: Mapping[int, datetime] = field(default_factory=dict)
    lots: dict[str, Decimal] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)  # debits that burned out of order
    paid: dict[str, Decimal] = field(default_factory=dict)  # lot -> what debits took

    def run(self, entries: list[LedgerEntry]) -> LotReplay:
        for entry in entries:
            burns = entry.type is EntryType.DEBIT or (
                entry.type is EntryType.ADJUSTMENT and entry.amount < 0
            )
            allocation = dict(entry.lots or {})
            if burns:
                now = self.plan_times.get(entry.sequence, entry.created_at)
                expected = burn_model(self.lots, -entry.amount, self.terms, now)
                if allocation != expected:
                    self.violations.append(
                        f"#{entry.sequence}: took {allocation}, the order says {expected}"
                    )
                for lot, moved in allocation.items():
                    self.paid[lot] = self.paid.get(lot, Decimal(0)) - moved
            for lot, moved in allocation.items():
                self.lots[lot] = self.lots.get(lot, Decimal(0)) + moved
            self.lots = {lot: left for lot, left in self.lots.items() if left}
            assert sum(self.lots.values(), Decimal(0)) == entry.balance_after, entry
            negative = {lot: v for lot, v in self.lots.items() if v < 0 and lot != OVERDRAFT_LOT}
            assert not negative, f"#{entry.sequence}: negative lots {negative}"
        return self


def lot_terms(store: CreditsStore, account_id: str) -> dict[str, LotTerms]:
    """The terms of every lot the account was ever granted (its LOT items)."""
    found: dict[str, LotTerms] = {}
    after: str | None = None
    while True:
        page, after = store.lots.page(account_id, limit=500, after=after)
        found.update({lot.lot_id: LotTerms.of(lot) for lot in page})
        if after is None:
            return found


class PlanTimes:
    """The writer's clock at each update that landed (the `now` the write path planned it
    at), by account version: ledger instances whose account store records it."""

    def __init__(self) -> None:
        self.at: dict[int, datetime] = {}
        self._lock = threading.Lock()

    def instance(
        self, store: CreditsStore, clock: Callable[[], datetime], **options: Any
    ) -> Ledger:
        own = CreditsStore(store.client, store.table_name)
        real = own.accounts.apply

        def apply(*args: Any, **kwargs: Any) -> Account:
            after = real(*args, **kwargs)
            with self._lock:
                self.at[after.version] = kwargs["now"]
            return after

        own.accounts.apply = apply  # type: ignore[method-assign]
        return wiring.build_ledger(
            own, PriceCatalog(own.catalog, 60), get_settings(), clock=clock, **options
        )


def assert_lots_sum_to_the_balance(account: Account) -> None:
    """What every read of the account item must show."""
    lots = account.lots or {}
    assert sum(lots.values(), Decimal(0)) == account.balance, account
    assert all(left > 0 for lot, left in lots.items() if lot != OVERDRAFT_LOT), lots
    assert account.available == account.balance - account.reserved, account
