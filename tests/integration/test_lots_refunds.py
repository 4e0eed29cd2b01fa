"""Refunds and credit lots on DynamoDB Local: credits go back to the lots that paid them -
reopening a lot that was spent but has not expired - unless the lot has expired since: then
they open a new lot (the highest priority among the paying lots, expiring
`REFUND_LOT_LIFETIME` after the refund), named on the refund's entry. Concurrent partial
refunds of one debit never give back more than it charged."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from serverless_credits.domain.commands import (
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
)
from serverless_credits.domain.errors import RefundNotAllowed
from serverless_credits.domain.lots import REFUND_LOT_LIFETIME
from serverless_credits.domain.models import Account, EntryType, OperationResult
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage.store import CreditsStore
from tests.integration.conftest import (
    LedgerAudit,
    LotReplay,
    PlanTimes,
    assert_lots_sum_to_the_balance,
    lot_terms,
)
from tests.support import Clock

pytestmark = pytest.mark.integration

ACCOUNT = "acct_lot_refunds"
START = datetime(2032, 2, 1, 9, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class Lots:
    """One account's ledger on the test clock, with the few steps these tests take."""

    def __init__(self, store: CreditsStore, audit: LedgerAudit) -> None:
        self.store, self.audit = store, audit
        self.clock = Clock(START)
        self.plans = PlanTimes()
        self.ledger = self.plans.instance(store, self.clock)
        self.ledger.create_account(CreateAccountCommand(account_id=ACCOUNT))

    def instance(self) -> Ledger:
        return self.plans.instance(self.store, self.clock)

    def grant(
        self, key: str, amount: int, priority: int, expires_at: datetime | None = None
    ) -> str:
        result = self.ledger.grant(
            CreditCommand(
                account_id=ACCOUNT,
                idempotency_key=key,
                amount=Decimal(amount),
                priority=priority,
                expires_at=expires_at,
            )
        )
        assert result.lots is not None
        [lot] = result.lots
        return lot

    def debit(self, key: str, amount: int) -> OperationResult:
        result = self.ledger.debit(
            DebitCommand(account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount))
        )
        self.audit.materialize()  # a refund finds the debit's entry (and what its lots paid)
        return result

    def refund(
        self, key: str, debit: OperationResult, amount: int | None = None
    ) -> OperationResult:
        return self.ledger.refund(
            RefundCommand(
                account_id=ACCOUNT,
                idempotency_key=key,
                transaction_id=debit.transaction_id,
                amount=None if amount is None else Decimal(amount),
            )
        )

    def account(self) -> Account:
        found = self.ledger.account(ACCOUNT)
        assert_lots_sum_to_the_balance(found)
        return found

    def check(self) -> LotReplay:
        snapshot = self.audit.check(ACCOUNT)
        replay = LotReplay(lot_terms(self.store, ACCOUNT), self.plans.at).run(snapshot.entries)
        assert replay.violations == []
        assert replay.lots == (snapshot.account.lots or {})
        return replay


@pytest.fixture
def lots(local_store: CreditsStore, audit: LedgerAudit) -> Lots:
    return Lots(local_store, audit)


def test_a_refund_paid_by_a_lot_expired_since_opens_a_new_lot_named_on_its_entry(
    lots: Lots,
) -> None:
    promo = lots.grant("promo", 5, 70, START + HOUR)
    paid = lots.grant("paid", 10, 50)
    charge = lots.debit("d", 7)
    assert charge.lots == {promo: Decimal(-5), paid: Decimal(-2)}
    lots.clock.now = START + 2 * HOUR  # the promo (spent) has expired since

    refunded = lots.refund("r", charge)

    assert refunded.lots is not None
    [new] = set(refunded.lots) - {paid}
    assert refunded.lots == {paid: Decimal(2), new: Decimal(5)}
    assert lots.account().lots == {paid: Decimal(10), new: Decimal(5)}
    lots.audit.materialize()
    entry = lots.audit.snapshot(ACCOUNT).entries[-1]
    assert (entry.type, entry.lot_id, entry.lots) == (EntryType.REFUND, new, refunded.lots)
    item = lots.store.lots.get_many(ACCOUNT, [new])[new]
    assert (item.source, item.initial_amount, item.priority, item.expires_at) == (
        EntryType.REFUND,
        Decimal(5),
        70,  # the paying lot's
        lots.clock.now + REFUND_LOT_LIFETIME,
    )
    assert item.granted_by == entry.transaction_id
    # It ranks as its priority says: it pays before the lot of priority 50.
    assert lots.debit("d2", 6).lots == {new: Decimal(-5), paid: Decimal(-1)}
    lots.check()


def test_a_refund_never_feeds_an_expired_lot_the_sweep_is_about_to_take(lots: Lots) -> None:
    promo = lots.grant("promo", 10, 70, START + HOUR)
    charge = lots.debit("d", 4)
    lots.clock.now = START + HOUR  # 6 expired credits sit on the item, unswept

    refunded = lots.refund("r", charge)

    assert refunded.lots is not None
    [new] = refunded.lots
    assert new != promo
    assert lots.account().lots == {promo: Decimal(6), new: Decimal(4)}
    lots.audit.materialize()
    report = lots.ledger.lots.sweep()
    assert report.expired == 1
    assert lots.account().lots == {new: Decimal(4)}
    expiry = lots.audit.snapshot(ACCOUNT).entries[-1]
    assert (expiry.type, expiry.lots) == (EntryType.EXPIRY, {promo: Decimal(-6)})
    lots.check()


def test_refunds_into_spent_but_unexpired_lots_reopen_them(lots: Lots) -> None:
    first = lots.grant("first", 4, 80, START + 240 * HOUR)
    second = lots.grant("second", 10, 60)
    charge = lots.debit("d", 6)
    assert charge.lots == {first: Decimal(-4), second: Decimal(-2)}
    assert lots.account().lots == {second: Decimal(8)}  # the first lot left the item

    partial = lots.refund("r1", charge, 3)  # the lot burned last gets its share first
    rest = lots.refund("r2", charge)

    assert partial.lots == {second: Decimal(2), first: Decimal(1)}
    assert rest.lots == {first: Decimal(3)}
    assert lots.account().lots == {first: Decimal(4), second: Decimal(10)}
    # Reopened under its own id, it keeps its rank: it pays first again.
    assert lots.debit("d2", 5).lots == {first: Decimal(-4), second: Decimal(-1)}
    lots.check()


REFUNDERS = 8
SHARE = Decimal(2)


def charge_three_lots(lots: Lots) -> tuple[OperationResult, dict[str, Decimal]]:
    """A debit of 10 paid by three lots: 3 by the top one, 3 by the middle, 4 by the last."""
    top = lots.grant("top", 3, 90, START + 100 * HOUR)
    middle = lots.grant("middle", 3, 80)
    bottom = lots.grant("bottom", 10, 70)
    charge = lots.debit("d", 10)
    paid = {top: Decimal(-3), middle: Decimal(-3), bottom: Decimal(-4)}
    assert charge.lots == paid
    return charge, paid


def returned_by(results: list[OperationResult]) -> dict[str, Decimal]:
    returned: dict[str, Decimal] = {}
    for result in results:
        for lot, moved in (result.lots or {}).items():
            returned[lot] = returned.get(lot, Decimal(0)) + moved
    return returned


def test_concurrent_partial_refunds_of_one_debit_never_return_more_than_it_charged(
    lots: Lots,
) -> None:
    """Eight instances refund 2 of a debit of 10 at once: five land, three are refused."""
    charge, _ = charge_three_lots(lots)
    start = threading.Barrier(REFUNDERS)

    def refund(number: int) -> OperationResult | RefundNotAllowed:
        ledger = lots.instance()
        command = RefundCommand(
            account_id=ACCOUNT,
            idempotency_key=f"r{number}",
            transaction_id=charge.transaction_id,
            amount=SHARE,
        )
        start.wait()
        try:
            return ledger.refund(command)
        except RefundNotAllowed as refused:
            return refused

    with ThreadPoolExecutor(max_workers=REFUNDERS) as executor:
        answers = list(executor.map(refund, range(REFUNDERS)))

    landed = [a for a in answers if isinstance(a, OperationResult)]
    assert len(landed) == 5
    assert sum((r.amount for r in landed), Decimal(0)) == 10
    assert sum(returned_by(landed).values(), Decimal(0)) == 10
    assert lots.account().balance == 16
    refunds = lots.audit.snapshot(ACCOUNT).of_type(EntryType.REFUND)
    assert sorted(e.transaction_id for e in refunds) == sorted(r.transaction_id for r in landed)
    lots.check()


def test_overlapping_partial_refunds_return_each_lot_what_it_paid(lots: Lots) -> None:
    """Two refunds of 4 of the same debit, each reading what was refunded before the other
    claims its share (held at a barrier): between them the lots get back what they paid
    last first - 4 to the bottom lot, 3 to the middle one, 1 to the top one."""
    charge, paid = charge_three_lots(lots)
    both_read = threading.Barrier(2)

    def refund(number: int) -> OperationResult:
        ledger = lots.instance()
        refunds = ledger._refunds  # this instance's own store
        real = refunds.refunded
        waited = False

        def refunded(account_id: str, transaction_id: str) -> Decimal:
            nonlocal waited
            seen = real(account_id, transaction_id)
            if not waited:  # the first read only: a retry must not wait again
                waited = True
                both_read.wait(timeout=30)
            return seen

        refunds.refunded = refunded  # type: ignore[method-assign]
        return ledger.refund(
            RefundCommand(
                account_id=ACCOUNT,
                idempotency_key=f"r{number}",
                transaction_id=charge.transaction_id,
                amount=Decimal(4),
            )
        )

    with ThreadPoolExecutor(max_workers=2) as executor:
        landed = list(executor.map(refund, range(2)))

    returned = returned_by(landed)
    print(f"returned {returned} for {paid}")
    assert sum(returned.values(), Decimal(0)) == 8
    lots.check()
    [top, middle, bottom] = paid
    assert returned == {bottom: Decimal(4), middle: Decimal(3), top: Decimal(1)}
