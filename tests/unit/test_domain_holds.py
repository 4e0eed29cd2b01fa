"""Hold rules (domain.holds, domain.posting, domain.operations): how a hold, its capture, its
release and its expiry move an account's figures, the fence each step puts on the account
item's `holds` map and why a refused step was refused, and what the results and usage of
hold steps say. No AWS: the property at the end applies random steps to an account image
through the postings alone, as storage applies them to the item."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serverless_credits.domain.errors import (
    AccountSuspended,
    CreditsError,
    HoldNotFound,
    HoldNotOpen,
    InsufficientCredits,
    TooManyOpenHolds,
    ValidationFailed,
)
from serverless_credits.domain.holds import (
    DEFAULT_HOLD_SECONDS,
    HOLD_ID_PATTERN,
    MAX_HOLD_SECONDS,
    MAX_OPEN_HOLDS,
    capture_amount,
    epoch,
    expired_holds,
    hold_expiry,
    new_hold_id,
    not_open,
    open_hold,
)
from serverless_credits.domain.models import (
    Account,
    AccountStatus,
    EntryType,
    Hold,
    HoldStatus,
    LedgerEntry,
    OpenHold,
    Operation,
    ReleaseReason,
)
from serverless_credits.domain.operations import ledger_entry, result_of, usage_of
from serverless_credits.domain.posting import (
    HoldFence,
    Posting,
    check_allowed,
    posting_for,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "acct_holds"
HOLD = "hold_0123456789abcdef"
OTHER = "hold_fedcba9876543210"
OP_ID = "0123456789abcdef0123456789abcdef"
Amount = Decimal | str | int


def account(**fields: Any) -> Account:
    figures: dict[str, Any] = {"balance": Decimal(10), "available": Decimal(10), **fields}
    return Account(account_id=ACCOUNT, created_at=NOW, updated_at=NOW, **figures)


def open_entry(amount: str | int, expires_in: int = 60, created_ago: int = 0) -> OpenHold:
    return OpenHold(
        a=Decimal(amount),
        x=epoch(NOW) + expires_in,
        c=epoch(NOW) - created_ago,
    )


def holding(holds: dict[str, OpenHold], **fields: Any) -> Account:
    """An account with `holds` open on its item, its figures consistent with them."""
    reserved = sum((held.amount for held in holds.values()), Decimal(0))
    balance = Decimal(fields.pop("balance", 10))
    return account(
        balance=balance, reserved=reserved, available=balance - reserved, holds=holds, **fields
    )


def hold_op(amount: str | int, hold_id: str = HOLD, seconds: int = 60) -> Operation:
    return Operation(
        type=EntryType.HOLD,
        amount=Decimal(0),
        held=Decimal(amount),
        hold_id=hold_id,
        expires_at=hold_expiry(NOW, seconds),
    )


def capture_op(taken: Amount, held: Amount, hold_id: str = HOLD, **fields: Any) -> Operation:
    return Operation(
        type=EntryType.CAPTURE,
        amount=-Decimal(taken),
        held=-Decimal(held),
        hold_id=hold_id,
        **fields,
    )


def release_op(
    held: Amount, hold_id: str = HOLD, reason: ReleaseReason = ReleaseReason.RELEASED
) -> Operation:
    return Operation(
        type=EntryType.RELEASE,
        amount=Decimal(0),
        held=-Decimal(held),
        hold_id=hold_id,
        reason=reason,
    )


def figures(rule: Posting) -> tuple[Decimal, ...]:
    """(balance, available, reserved, used, total, requests) deltas of a posting."""
    deltas = (rule.balance, rule.available, rule.reserved, rule.used, rule.total)
    return (*deltas, Decimal(rule.requests))


def d(*values: str | int) -> tuple[Decimal, ...]:
    return tuple(Decimal(value) for value in values)


# ---------------------------------------------------------------- postings
def test_a_hold_moves_credits_from_available_to_reserved_and_needs_them() -> None:
    rule = posting_for(hold_op("7.5"), NOW, account())

    assert figures(rule) == d(0, "-7.5", "7.5", 0, 0, 0)
    assert rule.funds_needed == Decimal("7.5")
    assert rule.require_active is True
    # The fence opens the hold's entry: its amount, its expiry and when it was made.
    assert rule.hold == HoldFence(
        HOLD, opens=OpenHold(a=Decimal("7.5"), x=epoch(NOW) + 60, c=epoch(NOW))
    )
    assert rule.hold.max_open == MAX_OPEN_HOLDS
    assert (rule.hold.held, rule.hold.live_at, rule.hold.expired_at) == (None, None, None)


def test_a_full_capture_takes_the_hold_out_of_the_balance_and_counts_a_call() -> None:
    rule = posting_for(capture_op(5, 5), NOW, account())

    assert figures(rule) == d(-5, 0, -5, 5, 0, 1)
    assert rule.total - rule.used == rule.balance


def test_a_partial_capture_gives_the_rest_back_to_available() -> None:
    rule = posting_for(capture_op("3.25", 5), NOW, account())

    assert figures(rule) == d("-3.25", "1.75", -5, "3.25", 0, 1)
    # A capture only takes what its hold set aside: no funds check, any status.
    assert rule.funds_needed is None
    assert rule.require_active is False
    # Its fence: the hold present with the amount read, and still live now.
    assert rule.hold == HoldFence(HOLD, held=Decimal(5), live_at=epoch(NOW))


@pytest.mark.parametrize("reason", [ReleaseReason.RELEASED, ReleaseReason.EXPIRED])
def test_a_release_or_an_expiry_gives_all_of_the_hold_back(reason: ReleaseReason) -> None:
    rule = posting_for(release_op(4, reason=reason), NOW, account())

    assert figures(rule) == d(0, 4, -4, 0, 0, 0)
    assert rule.funds_needed is None
    assert rule.require_active is False


def test_a_release_is_fenced_on_the_amount_only_an_expiry_also_on_being_due() -> None:
    released = posting_for(release_op(4), NOW, account()).hold
    expired = posting_for(release_op(4, reason=ReleaseReason.EXPIRED), NOW, account()).hold

    assert released == HoldFence(HOLD, held=Decimal(4))
    assert expired == HoldFence(HOLD, held=Decimal(4), expired_at=epoch(NOW))


def test_a_hold_without_an_expiry_cannot_be_posted() -> None:
    with pytest.raises(ValueError, match="expiry"):
        posting_for(hold_op(1).model_copy(update={"expires_at": None}), NOW, account())


def test_operations_without_a_hold_have_no_fence() -> None:
    for operation in (
        Operation(type=EntryType.DEBIT, amount=Decimal(-1)),
        Operation(type=EntryType.TOPUP, amount=Decimal(1)),
    ):
        assert posting_for(operation, NOW, account()).hold is None


# ---------------------------------------------------------------- what a refused step meets
def test_a_reserve_past_the_cap_on_open_holds_is_too_many_open_holds() -> None:
    fence = posting_for(hold_op(1, hold_id=OTHER), NOW, account()).hold
    assert fence is not None
    below = {f"hold_{n:016x}": open_entry("0.1") for n in range(MAX_OPEN_HOLDS - 1)}
    full = {**below, HOLD: open_entry("0.1")}

    error = fence.refusal(holding(full))

    assert isinstance(error, TooManyOpenHolds)
    assert error.code == "TOO_MANY_OPEN_HOLDS"
    assert error.details == {"accountId": ACCOUNT, "limit": MAX_OPEN_HOLDS}
    assert fence.refusal(holding(below)) is None
    assert fence.refusal(account()) is None  # an item from before holds: no map, no holds


@pytest.mark.parametrize(
    ("holds", "status"),
    [
        ({}, "closed"),  # captured, released or expired: gone from the item
        ({OTHER: open_entry(5)}, "closed"),
        ({HOLD: open_entry(6)}, "closed"),  # present, but not with the amount read
    ],
)
def test_a_close_without_the_hold_as_read_is_hold_not_open(
    holds: dict[str, OpenHold], status: str
) -> None:
    for rule in (
        posting_for(capture_op(5, 5), NOW, account()),
        posting_for(release_op(5), NOW, account()),
        posting_for(release_op(5, reason=ReleaseReason.EXPIRED), NOW, account()),
    ):
        assert rule.hold is not None
        error = rule.hold.refusal(holding(holds))
        assert isinstance(error, HoldNotOpen)
        assert error.code == "HOLD_NOT_OPEN"
        assert error.details == {"holdId": HOLD, "status": status}


def test_a_capture_at_or_after_the_expiry_is_hold_not_open_expired() -> None:
    fence = posting_for(capture_op(5, 5), NOW, account()).hold
    assert fence is not None

    for expires_in in (0, -1):
        error = fence.refusal(holding({HOLD: open_entry(5, expires_in=expires_in)}))
        assert isinstance(error, HoldNotOpen)
        assert error.details == {"holdId": HOLD, "status": "expired"}
    assert fence.refusal(holding({HOLD: open_entry(5, expires_in=1)})) is None


def test_an_expiry_before_the_hold_is_due_is_refused_as_still_open() -> None:
    fence = posting_for(release_op(5, reason=ReleaseReason.EXPIRED), NOW, account()).hold
    assert fence is not None

    error = fence.refusal(holding({HOLD: open_entry(5, expires_in=1)}))

    assert isinstance(error, HoldNotOpen)
    assert error.details == {"holdId": HOLD, "status": "open"}
    assert fence.refusal(holding({HOLD: open_entry(5, expires_in=0)})) is None
    assert fence.refusal(holding({HOLD: open_entry(5, expires_in=-60)})) is None


def test_a_release_is_allowed_whatever_the_expiry() -> None:
    fence = posting_for(release_op(5), NOW, account()).hold
    assert fence is not None

    assert fence.refusal(holding({HOLD: open_entry(5, expires_in=-60)})) is None
    assert fence.refusal(holding({HOLD: open_entry(5, expires_in=60)})) is None


def test_a_hold_needs_an_active_account_and_the_funds_its_steps_do_not() -> None:
    suspended = holding({HOLD: open_entry(5)}, status=AccountStatus.SUSPENDED)

    with pytest.raises(AccountSuspended):
        check_allowed(suspended, posting_for(hold_op(1, hold_id=OTHER), NOW, account()))
    with pytest.raises(InsufficientCredits) as refused:
        check_allowed(
            holding({HOLD: open_entry(8)}), posting_for(hold_op(3, OTHER), NOW, account())
        )
    assert refused.value.details == {"available": Decimal(2), "requested": Decimal(3)}
    check_allowed(holding({HOLD: open_entry(8)}), posting_for(hold_op(2, OTHER), NOW, account()))
    # Credits set aside while the account was active can still be captured or released.
    check_allowed(suspended, posting_for(capture_op(5, 5), NOW, account()))
    check_allowed(suspended, posting_for(release_op(5), NOW, account()))
    # An overdrawn account still captures what its hold set aside.
    overdrawn = holding({HOLD: open_entry(5)}, balance=Decimal(-1))
    check_allowed(overdrawn, posting_for(capture_op(5, 5), NOW, account()))


def test_the_fence_is_judged_before_the_status() -> None:
    """A late capture on a suspended account says the hold is gone, not that the account is
    suspended (which would not stop a capture anyway)."""
    suspended = holding({}, status=AccountStatus.SUSPENDED)

    with pytest.raises(HoldNotOpen):
        check_allowed(suspended, posting_for(capture_op(5, 5), NOW, suspended))


# ---------------------------------------------------------------- domain.holds
def test_open_hold_finds_the_entry_of_the_account_item() -> None:
    held = open_entry(5)

    assert open_hold(holding({HOLD: held}), HOLD, NOW, capture=True) == held
    assert open_hold(holding({HOLD: held}), HOLD, NOW, capture=False) == held
    assert open_hold(holding({OTHER: held}), HOLD, NOW, capture=True) is None
    assert open_hold(account(), HOLD, NOW, capture=True) is None  # no map at all


def test_open_hold_refuses_a_capture_of_an_expired_hold_but_not_its_release() -> None:
    """A release of an expired hold the ExpirerFunction has not reached gives it back all
    the same; a capture of it would charge for work past the agreed time."""
    expired = open_entry(5, expires_in=0)

    with pytest.raises(HoldNotOpen) as refused:
        open_hold(holding({HOLD: expired}), HOLD, NOW, capture=True)

    assert refused.value.details == {"holdId": HOLD, "status": "expired"}
    assert open_hold(holding({HOLD: expired}), HOLD, NOW, capture=False) == expired


def known_hold(status: HoldStatus) -> Hold:
    return Hold(account_id=ACCOUNT, hold_id=HOLD, status=status, amount=Decimal(5))


def test_not_open_names_how_a_known_hold_closed_and_an_unknown_one_not_found() -> None:
    unknown = not_open(ACCOUNT, HOLD, None)
    assert isinstance(unknown, HoldNotFound)
    assert unknown.code == "HOLD_NOT_FOUND"
    assert unknown.details == {"accountId": ACCOUNT, "holdId": HOLD}

    for status in (HoldStatus.CAPTURED, HoldStatus.RELEASED, HoldStatus.EXPIRED):
        error = not_open(ACCOUNT, HOLD, known_hold(status))
        assert isinstance(error, HoldNotOpen)
        assert error.details == {"holdId": HOLD, "status": status.value}
    # The HOLD item still says open: its close is on its way through the stream.
    late = not_open(ACCOUNT, HOLD, known_hold(HoldStatus.OPEN))
    assert isinstance(late, HoldNotOpen)
    assert late.details == {"holdId": HOLD, "status": "closed"}


def test_a_capture_takes_all_of_the_hold_by_default_or_part_of_it() -> None:
    held = open_entry("5.500000")

    assert str(capture_amount(held, HOLD, None)) == "5.5"
    assert capture_amount(held, HOLD, Decimal("2.25")) == Decimal("2.25")
    assert capture_amount(held, HOLD, Decimal("5.5")) == Decimal("5.5")


def test_capturing_more_than_the_hold_holds_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed) as refused:
        capture_amount(open_entry(5), HOLD, Decimal("5.000001"))

    assert refused.value.code == "VALIDATION_ERROR"
    assert refused.value.details == {"field": "amount", "holdId": HOLD, "held": Decimal(5)}


def test_a_hold_expires_on_a_whole_second() -> None:
    made = NOW.replace(microsecond=999_999)

    assert hold_expiry(made, 300) == NOW + timedelta(seconds=300)
    assert hold_expiry(NOW, MAX_HOLD_SECONDS) == NOW + timedelta(days=7)
    assert DEFAULT_HOLD_SECONDS == 300
    assert epoch(hold_expiry(made, 1)) == epoch(NOW) + 1


def test_expired_holds_are_those_at_or_past_their_expiry() -> None:
    holds = {
        "hold_000000000000000c": open_entry(1, expires_in=1),
        "hold_000000000000000b": open_entry(1, expires_in=0),
        "hold_000000000000000a": open_entry(1, expires_in=-3600),
    }

    assert expired_holds(holding(holds), NOW) == ["hold_000000000000000a", "hold_000000000000000b"]
    assert expired_holds(account(), NOW) == []


def test_hold_ids_are_random_and_match_the_pattern() -> None:
    ids = {new_hold_id() for _ in range(100)}

    assert len(ids) == 100
    assert all(re.fullmatch(HOLD_ID_PATTERN, hold_id) for hold_id in ids)
    assert not re.fullmatch(HOLD_ID_PATTERN, "hold_0123456789ABCDEF")


# ---------------------------------------------------------------- results and usage
def after(**fields: Any) -> Account:
    figures: dict[str, Any] = {
        "balance": Decimal(100),
        "available": Decimal(95),
        "reserved": Decimal(5),
        "version": 7,
        **fields,
    }
    return account(**figures)


def test_the_result_of_a_reserve_is_the_hold() -> None:
    result = result_of(OP_ID, hold_op("5.000000", seconds=300), after())

    assert result.transaction_id == "txn_7_0123456789ab"
    assert (result.hold_id, result.expires_at) == (HOLD, NOW + timedelta(seconds=300))
    assert str(result.amount) == "5"  # what it holds, not the entry's amount of 0
    assert (result.balance_after, result.available) == d(100, 95)
    assert result.released is None
    assert set(result.model_dump(by_alias=True)) == {
        "transactionId",
        "amount",
        "balanceAfter",
        "available",
        "replayed",
        "holdId",
        "expiresAt",
    }


def test_the_result_of_a_capture_says_what_was_taken_and_released() -> None:
    result = result_of(OP_ID, capture_op(3, 5), after(balance=97, available=97, reserved=0))

    assert (result.amount, result.released, result.hold_id) == (Decimal(3), Decimal(2), HOLD)
    assert result.expires_at is None
    assert set(result.model_dump(by_alias=True)) == {
        "transactionId",
        "amount",
        "balanceAfter",
        "available",
        "replayed",
        "holdId",
        "released",
    }


@pytest.mark.parametrize("reason", [ReleaseReason.RELEASED, ReleaseReason.EXPIRED])
def test_the_result_of_a_release_is_what_it_gave_back(reason: ReleaseReason) -> None:
    result = result_of(OP_ID, release_op("5.0", reason=reason), after(available=100, reserved=0))

    assert (result.amount, result.released, result.available) == d(5, 5, 100)
    assert str(result.released) == "5"


def test_other_results_carry_no_hold_fields() -> None:
    result = result_of(OP_ID, Operation(type=EntryType.DEBIT, amount=Decimal(-2)), after())

    assert set(result.model_dump(mode="json", by_alias=True)) == {
        "transactionId",
        "amount",
        "balanceAfter",
        "available",
        "replayed",
    }


def entry_of(operation: Operation) -> LedgerEntry:
    return ledger_entry(
        account_id=ACCOUNT,
        op_id=OP_ID,
        idempotency_key="key-1",
        operation=operation,
        after=after(),
        created_at=NOW,
    )


def test_a_capture_counts_as_a_call_and_a_hold_or_release_does_not() -> None:
    capture = capture_op(3, 5, action="voice_call_minute", endpoint="/v1/calls")

    usage = usage_of(entry_of(capture), capture)

    assert usage is not None
    assert (usage.day, usage.calls, usage.failed) == (NOW.date(), 1, 0)
    assert usage.credits_used == 3
    assert usage.by_type == {"voice_call_minute": Decimal(3)}
    assert usage.by_endpoint == {"/v1/calls": 1}
    for operation in (
        hold_op(5),
        release_op(5),
        release_op(5, reason=ReleaseReason.EXPIRED),
    ):
        assert usage_of(entry_of(operation), operation) is None


def test_hold_step_entries_carry_the_hold_and_the_change_of_reserved() -> None:
    hold = entry_of(hold_op(5))
    capture = entry_of(capture_op(3, 5))
    expired = entry_of(release_op(5, reason=ReleaseReason.EXPIRED))

    assert (hold.type, hold.hold_id) == (EntryType.HOLD, HOLD)
    assert (hold.amount, hold.held) == d(0, 5)
    assert hold.expires_at == NOW + timedelta(seconds=60)
    assert capture.type is EntryType.CAPTURE
    assert (capture.amount, capture.held) == d(-3, -5)
    assert (expired.type, expired.reason) == (EntryType.RELEASE, ReleaseReason.EXPIRED)
    assert expired.held == -5
    assert (hold.balance_after, hold.available_after) == d(100, 95)


# ---------------------------------------------------------------- the property
@dataclass
class Model:
    """An account item as storage keeps it, moved only by postings."""

    state: Account
    now: datetime
    counter: int = 0

    def apply(self, operation: Operation) -> CreditsError | None:
        rule = posting_for(operation, self.now, self.state)
        try:
            check_allowed(self.state, rule)
        except CreditsError as error:
            return error
        holds = dict(self.state.holds or {})
        if rule.hold is not None:
            if rule.hold.opens is not None:
                holds[rule.hold.hold_id] = rule.hold.opens
            else:
                del holds[rule.hold.hold_id]
        s = self.state
        self.state = s.model_copy(
            update={
                "balance": s.balance + rule.balance,
                "available": s.available + rule.available,
                "reserved": s.reserved + rule.reserved,
                "used": s.used + rule.used,
                "total": s.total + rule.total,
                "lifetime_requests": s.lifetime_requests + rule.requests,
                "holds": holds,
            }
        )
        return None

    def pick(self, index: int) -> tuple[str, OpenHold] | None:
        holds = sorted((self.state.holds or {}).items())
        return holds[index % len(holds)] if holds else None


AMOUNTS = st.integers(min_value=1, max_value=4000).map(lambda cents: Decimal(cents) / 100)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), AMOUNTS, st.integers(1, 120)),
        st.tuples(st.just("capture"), st.integers(0, 99), st.integers(0, 100)),
        st.tuples(st.just("release"), st.integers(0, 99), st.just(0)),
        st.tuples(st.just("expire"), st.integers(0, 99), st.just(0)),
        st.tuples(st.just("debit"), AMOUNTS, st.just(0)),
        st.tuples(st.just("topup"), AMOUNTS, st.just(0)),
        st.tuples(st.just("wait"), st.integers(1, 90), st.just(0)),
    ),
    max_size=40,
)


def step(model: Model, kind: str, first: Any, second: int) -> None:
    """One step, and whether it was refused exactly when the fence says it should be."""
    if kind == "wait":
        model.now += timedelta(seconds=first)
        return
    if kind == "debit":
        model.apply(Operation(type=EntryType.DEBIT, amount=-first))
        return
    if kind == "topup":
        assert model.apply(Operation(type=EntryType.TOPUP, amount=first)) is None
        return
    if kind == "reserve":
        model.counter += 1
        hold_id = f"hold_{model.counter:016x}"
        operation = Operation(
            type=EntryType.HOLD,
            amount=Decimal(0),
            held=first,
            hold_id=hold_id,
            expires_at=hold_expiry(model.now, second),
        )
        error = model.apply(operation)
        assert error is None or isinstance(error, InsufficientCredits)
        return
    picked = model.pick(first)
    if picked is None:
        return
    hold_id, held = picked
    due = held.expires_at <= epoch(model.now)
    if kind == "capture":
        taken = (held.amount * second / 100).quantize(Decimal("0.000001")) or held.amount
        error = model.apply(capture_op(taken, held.amount, hold_id))
        assert (error is not None) == due
    elif kind == "release":
        assert model.apply(release_op(held.amount, hold_id)) is None
    else:
        error = model.apply(release_op(held.amount, hold_id, ReleaseReason.EXPIRED))
        assert (error is not None) == (not due)


@settings(max_examples=150, deadline=None)
@given(steps=STEPS, opening=AMOUNTS)
def test_any_sequence_of_hold_steps_keeps_available_and_reserved_exact(
    steps: list[tuple[str, Any, int]], opening: Decimal
) -> None:
    model = Model(
        state=account(balance=opening, available=opening, total=opening, holds={}), now=NOW
    )

    for kind, first, second in steps:
        step(model, kind, first, second)
        state = model.state
        open_amounts = sum((held.amount for held in (state.holds or {}).values()), Decimal(0))
        assert state.available == state.balance - state.reserved
        assert state.reserved == open_amounts
        assert state.available >= 0  # no overdraft: never overspent
        assert state.total - state.used == state.balance
