"""The credit-lot rules alone (`domain.lots`): lot ids that sort in burn order, the plans of
each kind of change, and the shares a refund gives back. No AWS."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serverless_credits.domain.errors import LotChanged, TooManyActiveLots
from serverless_credits.domain.lots import (
    MAX_ACTIVE_LOTS,
    MAX_LOTS_ON_ITEM,
    OVERDRAFT_LOT,
    Check,
    LotMove,
    burn_order,
    expirable,
    expired_credit,
    new_lot_id,
    opening_lots,
    plan_burn,
    plan_capture,
    plan_credit,
    plan_expiry,
    plan_reserve,
    plan_return,
    rank_of,
    refund_lot_id,
    returns_of,
)
from serverless_credits.domain.models import Account

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
UNIT = Decimal("0.000001")


def lot(priority: int = 50, expires_in: timedelta | None = None, age: int = 0) -> str:
    expires = NOW + expires_in if expires_in is not None else None
    return new_lot_id(priority, expires, NOW - timedelta(seconds=age))


def account(lots: Mapping[str, Decimal | int], **fields: Any) -> Account:
    amounts = {lot_id: Decimal(amount) for lot_id, amount in lots.items()}
    balance = sum(amounts.values(), Decimal(0))
    figures: dict[str, Any] = {"balance": balance, "available": balance, **fields}
    return Account(account_id="acct_lots", created_at=NOW, updated_at=NOW, lots=amounts, **figures)


def taken(moves: tuple[LotMove, ...]) -> dict[str, Decimal]:
    return {move.lot_id: move.delta for move in moves if move.delta}


# ---------------------------------------------------------------- lot ids
def test_a_lot_id_says_its_priority_expiry_and_grant_time() -> None:
    lot_id = new_lot_id(73, NOW + DAY, NOW, salt="beef")

    rank = rank_of(lot_id)

    assert rank is not None
    assert (rank.priority, rank.expires, rank.granted) == (73, NOW + DAY, NOW)
    assert lot_id.endswith("beef")
    assert not rank.expired(NOW + DAY - timedelta(seconds=1))
    assert rank.expired(NOW + DAY)
    assert rank_of(OVERDRAFT_LOT) is None
    assert rank_of("lot_not-a-lot-id-at-all!") is None


@given(
    st.lists(
        st.tuples(
            st.integers(0, 100),
            st.none() | st.integers(1, 10**6),  # seconds to expiry
            st.integers(0, 10**6),  # seconds of age
        ),
        min_size=2,
        max_size=12,
    )
)
def test_lot_ids_sort_in_burn_order(specs: list[tuple[int, int | None, int]]) -> None:
    """Highest priority first, then soonest expiry (none last), then oldest."""
    ids = {
        new_lot_id(p, NOW + timedelta(seconds=x) if x else None, NOW - timedelta(seconds=a)): (
            -p,
            x if x is not None else float("inf"),
            -a,
        )
        for p, x, a in specs
    }

    by_id = burn_order(ids)
    by_rule = sorted(ids, key=lambda lot_id: (ids[lot_id], lot_id))

    assert [ids[lot_id] for lot_id in by_id] == [ids[lot_id] for lot_id in by_rule]


def test_an_account_from_before_lots_gets_one_lot_or_its_debt() -> None:
    (opening,) = opening_lots(Decimal(12), NOW)
    assert rank_of(opening) is not None
    assert opening_lots(Decimal(-3), NOW) == {OVERDRAFT_LOT: Decimal(-3)}
    assert opening_lots(Decimal(0), NOW) == {}


# ---------------------------------------------------------------- burns
def test_a_burn_empties_lots_in_order_and_dips_into_the_last() -> None:
    first, second, third = lot(90), lot(50, DAY), lot(50)

    plan = plan_burn(account({third: 5, first: 2, second: 4}, lot_gen=7), Decimal(5), NOW)

    assert plan.moves == (
        LotMove(first, Decimal(-2), Check.EXACT, Decimal(2)),
        LotMove(second, Decimal(-3), Check.MORE_THAN, Decimal(4)),
    )
    assert plan.generation == 7  # a lot added since refuses it
    assert plan.allocation() == {first: Decimal(-2), second: Decimal(-3)}


def test_a_burn_never_takes_from_an_expired_lot_and_counts_it_out_of_the_funds() -> None:
    expired, live = lot(90, timedelta(seconds=-1)), lot(10)

    plan = plan_burn(account({expired: 10, live: 5}), Decimal(3), NOW)

    assert taken(plan.moves) == {live: Decimal(-3)}
    assert plan.expired == 10


def test_what_no_lot_covers_goes_to_the_overdraft_lot() -> None:
    only = lot()

    plan = plan_burn(account({only: 2}, overdraft_limit=Decimal(5)), Decimal(4), NOW)

    assert plan.moves[-1] == LotMove(OVERDRAFT_LOT, Decimal(-2), Check.NONE)


@given(
    st.lists(st.integers(1, 10**7), min_size=1, max_size=8),
    st.integers(1, 10**8),
)
def test_a_burn_takes_exactly_the_amount_to_the_smallest_unit(sizes: list[int], units: int) -> None:
    lots = {lot(50, age=n): Decimal(size) * UNIT for n, size in enumerate(sizes)}
    amount = Decimal(units) * UNIT

    plan = plan_burn(account(lots, overdraft_limit=Decimal(1000)), amount, NOW)

    assert -sum(taken(plan.moves).values(), Decimal(0)) == amount
    for move in plan.moves:
        if move.lot_id != OVERDRAFT_LOT:
            assert move.after >= 0


def test_a_reserve_moves_no_lot_but_counts_expired_credit_out() -> None:
    expired = lot(50, timedelta(seconds=-5))

    plan = plan_reserve(account({expired: 4, lot(): 6}, lot_gen=2), NOW)

    assert (plan.moves, plan.generation, plan.expired) == ((), 2, Decimal(4))


def test_a_capture_burns_pinned_expired_credit_first() -> None:
    expired, live = lot(50, timedelta(seconds=-5)), lot(90)
    # 8 reserved, only 2 available: 8 of the expired 10 are pinned by the hold.
    pinned = account({expired: 10, live: 0}, reserved=Decimal(8), available=Decimal(2))
    pinned = pinned.model_copy(update={"lots": {expired: Decimal(10)}})

    plan = plan_capture(pinned, Decimal(6), NOW)

    assert taken(plan.moves) == {expired: Decimal(-6)}
    assert plan.available_is == 2  # what is pinned depends on available exactly


def test_a_capture_with_nothing_pinned_burns_live_lots() -> None:
    expired, live = lot(50, timedelta(seconds=-5)), lot(10)
    view = account({expired: 3, live: 10}, reserved=Decimal(5), available=Decimal(8))

    plan = plan_capture(view, Decimal(5), NOW)

    assert taken(plan.moves) == {live: Decimal(-5)}
    assert plan.available_at_least == 3  # still nothing pinned when it lands


# ---------------------------------------------------------------- credits
def test_a_credit_repays_the_overdraft_first_then_opens_its_lot() -> None:
    new = lot(60)

    plan = plan_credit(account({OVERDRAFT_LOT: -4}), Decimal(10), new, NOW)

    assert plan.moves == (
        LotMove(OVERDRAFT_LOT, Decimal(4), Check.EXACT, Decimal(-4)),
        LotMove(new, Decimal(6), Check.ABSENT),
    )
    assert (plan.opens, plan.max_lots) == (1, MAX_ACTIVE_LOTS + 1)


def test_a_credit_that_only_repays_opens_no_lot() -> None:
    plan = plan_credit(account({OVERDRAFT_LOT: -4}), Decimal(3), lot(), NOW)

    assert plan.moves == (LotMove(OVERDRAFT_LOT, Decimal(3), Check.EXACT, Decimal(-4)),)
    assert plan.opens == 0


def test_a_credit_assumes_no_debt_it_did_not_see() -> None:
    new = lot()

    plan = plan_credit(account({}), Decimal(3), new, NOW)

    assert plan.moves[0] == LotMove(OVERDRAFT_LOT, Decimal(0), Check.ABSENT)


def test_a_credit_past_the_lot_limit_is_refused() -> None:
    full = account({lot(age=n): 1 for n in range(MAX_ACTIVE_LOTS)})

    with pytest.raises(TooManyActiveLots):
        plan_credit(full, Decimal(1), lot(), NOW)


# ---------------------------------------------------------------- refunds and expiry
def test_returns_go_back_last_burned_first_after_earlier_refunds() -> None:
    first, second = lot(90), lot(10)
    paid = {first: Decimal(-4), second: Decimal(-2), OVERDRAFT_LOT: Decimal(-1)}

    assert returns_of(paid, Decimal(0), Decimal(2)) == {OVERDRAFT_LOT: 1, second: 1}
    assert returns_of(paid, Decimal(2), Decimal(3)) == {second: 1, first: 2}
    assert returns_of({}, Decimal(0), Decimal(5)) == {}


def test_a_return_adds_reopens_or_moves_to_a_new_lot() -> None:
    present, emptied, expired = lot(90), lot(50), lot(40, timedelta(seconds=-1))
    new = refund_lot_id({expired: Decimal(-1)}, NOW)
    returns = {present: Decimal(1), emptied: Decimal(2), expired: Decimal(3)}

    plan = plan_return(account({present: 5}), Decimal(7), returns, new, NOW)

    assert set(plan.moves) == {
        LotMove(present, Decimal(1), Check.PRESENT),
        LotMove(emptied, Decimal(2), Check.ABSENT),
        LotMove(new, Decimal(4), Check.ABSENT),  # the expired share and the unplaced 1
    }
    assert (plan.opens, plan.max_lots) == (2, MAX_LOTS_ON_ITEM)
    rank = rank_of(new)
    assert rank is not None
    assert (rank.priority, rank.expires) == (40, NOW + 30 * DAY)


def test_a_return_to_a_full_item_goes_to_its_last_ranked_live_lot() -> None:
    lots = {lot(50, age=n): 1 for n in range(MAX_LOTS_ON_ITEM)}
    last = burn_order(lots)[-1]

    plan = plan_return(account(lots), Decimal(2), {}, lot(), NOW)

    assert plan.moves == (LotMove(last, Decimal(2), Check.PRESENT),)
    assert plan.opens == 0


def test_an_expiry_takes_at_most_what_is_available() -> None:
    expired = lot(50, timedelta(seconds=-1))
    view = account({expired: 10}, reserved=Decimal(7), available=Decimal(3))

    assert expirable(view, expired, NOW) == 3
    assert expired_credit(view, NOW) == 10
    plan = plan_expiry(view, expired, Decimal(10), Decimal(3))
    assert plan.moves == (LotMove(expired, Decimal(-3), Check.EXACT, Decimal(10)),)
    assert plan.available_at_least == 3
    with pytest.raises(LotChanged):
        plan_expiry(view, expired, Decimal(9), Decimal(3))  # planned on another remainder


def test_nothing_expires_before_its_time_or_from_an_overdrawn_account() -> None:
    live, expired = lot(50, DAY), lot(50, timedelta(seconds=-1))

    assert expirable(account({live: 5}), live, NOW) == 0
    assert expirable(account({expired: 5}, available=Decimal(-1)), expired, NOW) == 0


def test_an_expiry_planned_on_more_than_is_available_now_is_planned_again() -> None:
    expired = lot(50, timedelta(seconds=-1))
    view = account({expired: 10}, reserved=Decimal(9), available=Decimal(1))

    with pytest.raises(LotChanged):  # a hold reserved meanwhile: the expirer plans again
        plan_expiry(view, expired, Decimal(10), Decimal(3))
