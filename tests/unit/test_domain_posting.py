"""Posting rules (domain.posting): the deltas each kind of operation adds to an account, what
it needs from the account, and how a refusal's image becomes a domain error. No AWS."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from serverless_credits.domain.errors import (
    AccountSuspended,
    InsufficientCredits,
)
from serverless_credits.domain.models import Account, AccountStatus, EntryType, Operation
from serverless_credits.domain.posting import Posting, check_allowed, posting_for

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def account(**fields: Any) -> Account:
    figures: dict[str, Any] = {"balance": Decimal(10), "available": Decimal(10), **fields}
    return Account(account_id="acct_post", created_at=NOW, updated_at=NOW, **figures)


LOT = "lot_1e00000000000000000000"  # a lot the account holds (an expiry names one)


def posting(entry_type: EntryType, amount: str | int) -> Posting:
    lot = {"lot_id": LOT, "lot_seen": Decimal(5)} if entry_type is EntryType.EXPIRY else {}
    operation = Operation(type=entry_type, amount=Decimal(amount), **lot)
    return posting_for(operation, NOW, account(lots={LOT: Decimal(5)}))


@pytest.mark.parametrize(
    ("entry_type", "amount", "expected"),
    [
        # A debit consumes, counts a request, needs an active account and the funds.
        # expected: (used, total, adjusted, requests, requires active, funds needed)
        (EntryType.DEBIT, "-2.5", ("2.5", "0", "0", 1, True, "2.5")),
        # Credits add to the lifetime total and need nothing.
        (EntryType.TOPUP, "7", ("0", "7", "0", 0, False, None)),
        (EntryType.GRANT, "0.000001", ("0", "0.000001", "0", 0, False, None)),
        # A refund or a void gives back what was used: `used` goes down, `total` stays.
        (EntryType.REFUND, "3", ("-3", "0", "0", 0, False, None)),
        (EntryType.VOID, "2", ("-2", "0", "0", 0, False, None)),
        # A correction either way is neither a credit nor use: it is `adjusted`. A
        # downward one is checked against the funds, whatever the account's status.
        (EntryType.ADJUSTMENT, "4", ("0", "0", "4", 0, False, None)),
        (EntryType.ADJUSTMENT, "-4", ("0", "0", "-4", 0, False, "4")),
        # Expired credits are not use either; an expiry takes only what is available (its
        # lot plan's condition), never into the overdraft.
        (EntryType.EXPIRY, "-1.5", ("0", "0", "-1.5", 0, False, None)),
    ],
)
def test_each_kind_of_operation_moves_the_figures_it_should(
    entry_type: EntryType, amount: str, expected: tuple[str, str, str, int, bool, str | None]
) -> None:
    used, total, adjusted, requests, active, needed = expected

    rule = posting(entry_type, amount)

    assert (rule.balance, rule.available) == (Decimal(amount), Decimal(amount))
    assert (rule.used, rule.total, rule.adjusted) == (
        Decimal(used),
        Decimal(total),
        Decimal(adjusted),
    )
    assert rule.requests == requests
    assert rule.require_active is active
    assert rule.funds_needed == (Decimal(needed) if needed is not None else None)
    # `balance == total - used + adjusted` holds after every posting.
    assert rule.total - rule.used + rule.adjusted == rule.balance


@pytest.mark.parametrize("entry_type", [EntryType.REFUND, EntryType.VOID])
def test_a_call_refunded_as_failed_leaves_the_lifetime_requests(entry_type: EntryType) -> None:
    # The daily usage counts such a call failed: the account's `lifetimeRequests` (the
    # summary's successful requests, lifetime) takes it back out, so the two agree.
    failed = Operation(type=entry_type, amount=Decimal(2), failed_call=True)
    goodwill = Operation(type=entry_type, amount=Decimal(2))

    assert posting_for(failed, NOW, account()).requests == -1
    assert posting_for(goodwill, NOW, account()).requests == 0


def test_the_funds_floor_takes_the_overdraft_off_what_is_needed() -> None:
    rule = posting(EntryType.DEBIT, "-10")

    assert rule.floor(Decimal(0)) == Decimal(10)
    assert rule.floor(Decimal("2.5")) == Decimal("7.5")
    assert rule.floor(Decimal(25)) == Decimal(-15)
    assert str(rule.floor(Decimal(10))) == "0"  # normalized for the condition's value
    assert posting(EntryType.TOPUP, "10").floor(Decimal(5)) is None


@pytest.mark.parametrize(
    ("available", "overdraft", "amount", "allowed"),
    [
        ("10", "0", "-10", True),  # the whole balance
        ("10", "0", "-10.000001", False),
        ("10", "5", "-15", True),  # down to the overdraft limit
        ("10", "5", "-15.000001", False),
        ("-5", "5", "-0.000001", False),  # already at the limit
        ("-5", "5", "1", True),  # a credit needs no funds
    ],
)
def test_check_allowed_refuses_what_would_dig_past_the_overdraft(
    available: str, overdraft: str, amount: str, allowed: bool
) -> None:
    state = account(available=Decimal(available), overdraft_limit=Decimal(overdraft))
    entry_type = EntryType.DEBIT if Decimal(amount) < 0 else EntryType.TOPUP
    rule = posting(entry_type, amount)

    if allowed:
        check_allowed(state, rule)
        return
    with pytest.raises(InsufficientCredits) as refused:
        check_allowed(state, rule)
    assert refused.value.available == Decimal(available)
    assert refused.value.details == {
        "available": Decimal(available),
        "requested": -Decimal(amount),
    }


def test_funds_are_judged_on_available_not_balance() -> None:
    held = account(balance=Decimal(10), reserved=Decimal(8), available=Decimal(2))

    with pytest.raises(InsufficientCredits) as refused:
        check_allowed(held, posting(EntryType.DEBIT, "-3"))

    assert refused.value.available == 2


@pytest.mark.parametrize("status", [AccountStatus.SUSPENDED, AccountStatus.CLOSED])
def test_only_debits_need_an_active_account(status: AccountStatus) -> None:
    inactive = account(status=status)

    with pytest.raises(AccountSuspended) as refused:
        check_allowed(inactive, posting(EntryType.DEBIT, "-1"))
    assert refused.value.details == {"accountId": "acct_post", "status": status.value}
    check_allowed(inactive, posting(EntryType.TOPUP, "1"))
    check_allowed(inactive, posting(EntryType.ADJUSTMENT, "-1"))
    check_allowed(inactive, posting(EntryType.REFUND, "1"))


def test_an_inactive_account_is_reported_before_missing_funds() -> None:
    broke = account(status=AccountStatus.SUSPENDED, available=Decimal(0))

    with pytest.raises(AccountSuspended):
        check_allowed(broke, posting(EntryType.DEBIT, "-5"))


def test_an_image_with_an_overdraft_the_writer_did_not_assume_allows_the_debit() -> None:
    # The writer assumed no overdraft; the image shows one that covers the debit.
    current = account(available=Decimal(1), overdraft_limit=Decimal(10))

    check_allowed(current, posting(EntryType.DEBIT, "-5"))
    with pytest.raises(InsufficientCredits) as refused:
        check_allowed(current, posting(EntryType.DEBIT, "-12"))
    assert refused.value.available == 1
