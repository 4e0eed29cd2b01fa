"""Credit lots through the ledger on moto (`domain.lots`, `ledger.lots`): every credit opens
a lot, debits burn them in order (priority, expiry, age), expired credit is never spent,
refunds go back where they came from, and the lots always sum to the balance.

Concurrency, the guards under contention and the burn-order property run on DynamoDB Local
(tests/integration/test_lots_*.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from serverless_credits import wiring
from serverless_credits.domain.commands import (
    AdjustmentCommand,
    CaptureCommand,
    CreateAccountCommand,
    CreditCommand,
    DebitCommand,
    RefundCommand,
    ReserveCommand,
    VoidCommand,
)
from serverless_credits.domain.errors import (
    InsufficientCredits,
    TooManyActiveLots,
    ValidationFailed,
)
from serverless_credits.domain.lots import (
    MAX_ACTIVE_LOTS,
    OVERDRAFT_LOT,
    rank_of,
)
from serverless_credits.domain.models import Account, EntryType, LedgerEntry
from serverless_credits.ledger.operations import Ledger
from serverless_credits.storage import keys
from serverless_credits.storage.store import CreditsStore
from tests.support import Clock, materializing_ledger

ACCOUNT = "acct_lots"
START = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _materialize() -> int:  # replaced per test by the `materialize` fixture
    raise AssertionError("no stream to materialize")


@pytest.fixture(autouse=True)
def _reads_are_materialized(
    materialize: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "_materialize", materialize)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def ledger(moto_store: CreditsStore, materialize: Callable[[], int], clock: Clock) -> Ledger:
    ledger = materializing_ledger(moto_store, materialize, clock)
    ledger.create_account(CreateAccountCommand(account_id=ACCOUNT))
    return ledger


def grant(
    ledger: Ledger,
    amount: int | str,
    *,
    key: str,
    priority: int | None = None,
    expires_at: datetime | None = None,
    topup: bool = False,
    reference: str | None = None,
) -> str:
    """Credit `amount` and return the lot it opened."""
    command = CreditCommand(
        account_id=ACCOUNT,
        idempotency_key=key,
        amount=Decimal(amount),
        priority=priority,
        expires_at=expires_at,
        reference=reference,
    )
    result = ledger.top_up(command) if topup else ledger.grant(command)
    assert result.lots is not None
    (lot_id,) = [lot for lot, moved in result.lots.items() if moved > 0]
    return lot_id


def debit(ledger: Ledger, amount: int | str, key: str) -> dict[str, Decimal]:
    result = ledger.debit(
        DebitCommand(account_id=ACCOUNT, idempotency_key=key, amount=Decimal(amount))
    )
    return dict(result.lots or {})


def account(store: CreditsStore) -> Account:
    found = store.accounts.get(ACCOUNT, consistent=True)
    assert found is not None
    return found


def lots(store: CreditsStore) -> dict[str, Decimal]:
    return dict(account(store).lots or {})


def entries(store: CreditsStore) -> list[LedgerEntry]:
    _materialize()
    found, _ = store.entries.page(ACCOUNT, limit=1000, newest_first=False)
    return found


def assert_lots_sum_to_the_balance(store: CreditsStore) -> None:
    current = account(store)
    assert sum((current.lots or {}).values(), Decimal(0)) == current.balance
    assert all(
        remaining > 0 for lot, remaining in (current.lots or {}).items() if lot != OVERDRAFT_LOT
    )
    ledger_lots: dict[str, Decimal] = {}
    for entry in entries(store):
        assert sum((entry.lots or {}).values(), Decimal(0)) == entry.amount or (
            entry.type is EntryType.HOLD or entry.type is EntryType.RELEASE
        )
        for lot, moved in (entry.lots or {}).items():
            ledger_lots[lot] = ledger_lots.get(lot, Decimal(0)) + moved
    assert {lot: left for lot, left in ledger_lots.items() if left} == current.lots


# ---------------------------------------------------------------- lots and burn order
def test_a_credit_opens_a_lot_that_ranks_by_priority_expiry_and_age(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    lot = grant(ledger, 10, key="g", priority=70, expires_at=START + 3 * DAY, reference="po-1")

    rank = rank_of(lot)
    assert rank is not None
    assert (rank.priority, rank.expires, rank.granted) == (70, START + 3 * DAY, START)
    assert lots(moto_store) == {lot: Decimal(10)}
    (entry,) = entries(moto_store)
    assert (entry.lot_id, entry.priority, entry.expires_at) == (lot, 70, START + 3 * DAY)
    assert entry.lots == {lot: Decimal(10)}
    described = moto_store.lots.get_many(ACCOUNT, [lot])[lot]
    assert (described.initial_amount, described.reference, described.source) == (
        Decimal(10),
        "po-1",
        EntryType.GRANT,
    )


def test_debits_burn_highest_priority_then_soonest_expiry_then_oldest(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock
) -> None:
    old = grant(ledger, 5, key="old", priority=50, topup=True)
    clock.now += timedelta(seconds=1)
    young = grant(ledger, 5, key="young", priority=50, topup=True)
    later = grant(ledger, 5, key="later", priority=50, expires_at=START + 9 * DAY, topup=True)
    sooner = grant(ledger, 5, key="sooner", priority=50, expires_at=START + 2 * DAY, topup=True)
    first = grant(ledger, 5, key="first", priority=90)

    paid = [debit(ledger, 5, key=f"d{n}") for n in range(5)]

    assert paid == [{lot: Decimal(-5)} for lot in (first, sooner, later, old, young)]
    assert lots(moto_store) == {}
    assert_lots_sum_to_the_balance(moto_store)


def test_a_debit_spans_lots_exactly_and_records_who_paid(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    a = grant(ledger, "0.000003", key="a", priority=80)
    b = grant(ledger, 10, key="b", priority=60)

    paid = debit(ledger, "2.000004", key="d")

    assert paid == {a: Decimal("-0.000003"), b: Decimal("-2.000001")}
    assert lots(moto_store) == {b: Decimal("7.999999")}
    assert entries(moto_store)[-1].lots == paid
    assert_lots_sum_to_the_balance(moto_store)


def test_a_debit_beyond_every_lot_is_refused_and_changes_nothing(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    grant(ledger, 3, key="a")
    before = account(moto_store)

    with pytest.raises(InsufficientCredits):
        debit(ledger, 4, key="d")

    assert account(moto_store) == before


def test_an_overdraft_is_a_negative_lot_the_next_credit_repays_first(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    moto_store.accounts.update_settings(ACCOUNT, {"overdraftLimit": Decimal(10)})
    a = grant(ledger, 3, key="a")

    assert debit(ledger, 5, key="d") == {a: Decimal(-3), OVERDRAFT_LOT: Decimal(-2)}
    assert lots(moto_store) == {OVERDRAFT_LOT: Decimal(-2)}
    result = ledger.top_up(CreditCommand(account_id=ACCOUNT, idempotency_key="t", amount=10))

    assert result.lots is not None
    new = next(lot for lot in result.lots if lot != OVERDRAFT_LOT)
    assert result.lots == {OVERDRAFT_LOT: Decimal(2), new: Decimal(8)}
    assert lots(moto_store) == {new: Decimal(8)}
    assert_lots_sum_to_the_balance(moto_store)


# ---------------------------------------------------------------- expiry
def test_expired_credit_is_never_spent_before_the_sweep_and_the_sweep_takes_it_once(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock
) -> None:
    promo = grant(ledger, 10, key="promo", priority=90, expires_at=START + DAY)
    paid = grant(ledger, 5, key="paid", topup=True)
    clock.now = START + DAY  # the promo has expired; no sweep yet

    with pytest.raises(InsufficientCredits) as refused:
        debit(ledger, 6, key="too-much")
    assert refused.value.available == 5
    assert debit(ledger, 5, key="ok") == {paid: Decimal(-5)}

    _materialize()  # the LOT item (and its place in the expiry index) comes from the stream
    report = ledger.lots.sweep()
    again = ledger.lots.sweep()

    assert (report.due, report.expired) == (1, 1)
    assert (again.due, again.expired) == (0, 0)  # out of the index once gone
    assert lots(moto_store) == {}
    expiry = entries(moto_store)[-1]
    assert (expiry.type, expiry.amount, expiry.lot_id) == (EntryType.EXPIRY, Decimal(-10), promo)
    assert expiry.lots == {promo: Decimal(-10)}
    current = account(moto_store)
    figures = (current.balance, current.adjusted, current.used, current.total)
    assert figures == (Decimal(0), Decimal(-10), Decimal(5), Decimal(15))
    assert_lots_sum_to_the_balance(moto_store)


def test_an_expiry_never_takes_credit_an_open_hold_reserved(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock
) -> None:
    promo = grant(ledger, 10, key="promo", expires_at=START + DAY)
    hold = ledger.holds.reserve(
        ReserveCommand(account_id=ACCOUNT, idempotency_key="r", amount=8, expires_in=7 * 86400)
    )
    clock.now = START + DAY
    _materialize()

    ledger.lots.sweep()

    # Only the unreserved 2 expire; 8 stay pinned for the hold, which captures them.
    assert lots(moto_store) == {promo: Decimal(8)}
    assert account(moto_store).available == 0
    assert ledger.lots.sweep().pinned == 1
    assert hold.hold_id is not None
    captured = ledger.holds.capture(
        CaptureCommand(account_id=ACCOUNT, idempotency_key="c", hold_id=hold.hold_id, amount=6)
    )
    assert captured.lots == {promo: Decimal(-6)}
    ledger.lots.sweep()  # the 2 the capture did not take were released: now they expire
    assert lots(moto_store) == {}
    assert account(moto_store).balance == 0
    assert_lots_sum_to_the_balance(moto_store)


def test_a_reserve_cannot_count_on_expired_credit(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock
) -> None:
    grant(ledger, 10, key="promo", expires_at=START + DAY)
    clock.now = START + DAY

    with pytest.raises(InsufficientCredits):
        ledger.holds.reserve(ReserveCommand(account_id=ACCOUNT, idempotency_key="r", amount=1))


def test_a_lot_must_outlive_a_few_minutes(ledger: Ledger) -> None:
    with pytest.raises(ValidationFailed):
        grant(ledger, 10, key="g", expires_at=START + timedelta(seconds=30))


# ---------------------------------------------------------------- refunds, voids, adjustments
def test_a_refund_goes_back_to_the_lots_that_paid_last_burned_first(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    a = grant(ledger, 4, key="a", priority=80)
    b = grant(ledger, 10, key="b", priority=60)
    debit(ledger, 6, key="d")  # a: -4 (emptied), b: -2
    charge = entries(moto_store)[-1].transaction_id

    first = ledger.refund(
        RefundCommand(account_id=ACCOUNT, idempotency_key="r1", transaction_id=charge, amount=3)
    )
    second = ledger.refund(
        RefundCommand(account_id=ACCOUNT, idempotency_key="r2", transaction_id=charge)
    )

    assert first.lots == {b: Decimal(2), a: Decimal(1)}
    assert second.lots == {a: Decimal(3)}  # the emptied lot came back
    assert lots(moto_store) == {a: Decimal(4), b: Decimal(10)}
    assert_lots_sum_to_the_balance(moto_store)


def test_a_refund_into_an_expired_lot_opens_a_new_lot_expiring_later(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock
) -> None:
    promo = grant(ledger, 5, key="promo", priority=70, expires_at=START + DAY)
    debit(ledger, 5, key="d")
    charge = entries(moto_store)[-1].transaction_id
    clock.now = START + 2 * DAY

    refunded = ledger.refund(
        RefundCommand(account_id=ACCOUNT, idempotency_key="r", transaction_id=charge)
    )

    assert refunded.lots is not None
    (new,) = refunded.lots
    assert new != promo
    rank = rank_of(new)
    assert rank is not None
    assert (rank.priority, rank.expires) == (70, START + 32 * DAY)
    assert lots(moto_store) == {new: Decimal(5)}
    _materialize()
    assert moto_store.lots.get_many(ACCOUNT, [new])[new].source is EntryType.REFUND
    assert_lots_sum_to_the_balance(moto_store)


def test_a_void_returns_the_whole_charge_to_its_lots(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    a = grant(ledger, 2, key="a", priority=80)
    b = grant(ledger, 10, key="b")
    debit(ledger, 5, key="call-1")

    voided = ledger.void(VoidCommand(account_id=ACCOUNT, idempotency_key="call-1"))

    assert voided.lots == {a: Decimal(2), b: Decimal(3)}
    assert lots(moto_store) == {a: Decimal(2), b: Decimal(10)}
    assert_lots_sum_to_the_balance(moto_store)


def test_adjustments_open_a_lot_upward_and_burn_in_order_downward(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    a = grant(ledger, 3, key="a", priority=90)
    b = grant(ledger, 10, key="b")

    up = ledger.adjust(
        AdjustmentCommand(account_id=ACCOUNT, idempotency_key="up", amount=4, reason="goodwill")
    )
    down = ledger.adjust(
        AdjustmentCommand(account_id=ACCOUNT, idempotency_key="dn", amount=-5, reason="fix")
    )

    assert up.lots is not None
    assert len(up.lots) == 1
    assert down.lots == {a: Decimal(-3), b: Decimal(-2)}
    assert_lots_sum_to_the_balance(moto_store)


# ---------------------------------------------------------------- limits and old items
def test_past_the_lot_limit_a_grant_is_refused_and_debits_go_on(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    for number in range(MAX_ACTIVE_LOTS):
        grant(ledger, 1, key=f"g{number}")
    before = account(moto_store)

    with pytest.raises(TooManyActiveLots) as refused:
        grant(ledger, 1, key="one-too-many")

    assert refused.value.details == {"accountId": ACCOUNT, "limit": MAX_ACTIVE_LOTS}
    assert account(moto_store) == before
    debit(ledger, 3, key="d")  # three lots emptied: room again
    grant(ledger, 1, key="fits-again")
    assert_lots_sum_to_the_balance(moto_store)


def test_an_account_from_before_lots_gets_its_balance_as_one_lot(
    ledger: Ledger, moto_store: CreditsStore
) -> None:
    grant(ledger, 10, key="g")
    moto_store.client.update_item(
        TableName=moto_store.table_name,
        Key={"pk": {"S": keys.account_pk(ACCOUNT)}, "sk": {"S": keys.ACCOUNT_SK}},
        UpdateExpression="REMOVE lots, lotGen",
    )
    wiring.reset()
    fresh = wiring.build_ledger(moto_store, wiring.prices(), clock=lambda: START)

    paid = fresh.debit(DebitCommand(account_id=ACCOUNT, idempotency_key="d", amount=4))

    assert paid.lots is not None
    (opening,) = paid.lots
    assert lots(moto_store) == {opening: Decimal(6)}


def test_a_grant_retried_when_its_lot_is_about_to_expire_replays(
    ledger: Ledger, clock: Clock
) -> None:
    expires = START + timedelta(minutes=10)
    first = grant(ledger, 10, key="g", expires_at=expires)
    clock.now = expires - timedelta(minutes=1)  # a new grant could not expire this soon

    again = grant(ledger, 10, key="g", expires_at=expires)

    assert again == first
    with pytest.raises(ValidationFailed):
        grant(ledger, 10, key="other", expires_at=expires)


def test_a_sweep_does_not_count_another_expirers_expiry_as_its_own(
    ledger: Ledger, moto_store: CreditsStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant(ledger, 10, key="promo", expires_at=START + DAY)
    clock.now = START + DAY
    _materialize()
    expire = ledger.lots.expire
    first = expire(ACCOUNT, next(iter(lots(moto_store))))
    assert first is not None

    # The sweep's own call lands on the same key after the other expirer's: a replay.
    monkeypatch.setattr(
        ledger.lots, "expire", lambda *_, **__: first.model_copy(update={"replayed": True})
    )
    report = ledger.lots.sweep()

    assert (report.due, report.expired, report.gone) == (1, 0, 1)
    assert ledger.lots.sweep().due == 0  # and out of the index
