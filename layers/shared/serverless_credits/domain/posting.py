"""Posting rules: how each kind of operation moves an account's figures, and what it needs
from the account to be allowed. Decided here once; storage turns a `Posting` into one
conditional update of the account item, and its refusal image back into a domain error."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from serverless_credits.domain.errors import (
    AccountNotFound,
    AccountSuspended,
    CreditsError,
    InsufficientCredits,
)
from serverless_credits.domain.models import Account, AccountStatus, EntryType, Operation
from serverless_credits.domain.money import normalize

# Lifetime figures: `used` is what was consumed (debits net of refunds, and downward
# corrections), `total` what was credited, so that `total - used == balance` always.
_CONSUMING = frozenset({EntryType.DEBIT, EntryType.REFUND, EntryType.VOID})


@dataclass(frozen=True)
class Posting:
    """The deltas one operation adds to the account item, and its preconditions."""

    balance: Decimal
    available: Decimal
    used: Decimal
    total: Decimal
    requests: int
    require_active: bool
    # The least `available` may be before the change, given the overdraft the writer
    # assumed (None: no funds check). `available + overdraft >= amount` is not expressible
    # in a condition, so the floor is computed here and the overdraft pinned beside it.
    funds_needed: Decimal | None

    def floor(self, overdraft_limit: Decimal) -> Decimal | None:
        if self.funds_needed is None:
            return None
        return normalize(self.funds_needed - overdraft_limit)


def posting_for(operation: Operation) -> Posting:
    amount = operation.amount
    consuming = operation.type in _CONSUMING or amount < 0
    debit = operation.type is EntryType.DEBIT
    return Posting(
        balance=amount,
        available=amount,
        used=-amount if consuming else Decimal(0),
        total=Decimal(0) if consuming else amount,
        requests=1 if debit else 0,
        require_active=debit,
        # Debits and downward adjustments may not dig past the overdraft limit.
        funds_needed=-amount if amount < 0 else None,
    )


def check_allowed(account: Account, posting: Posting) -> None:
    """Raise the refusal an account's state gives `posting`, if any."""
    if posting.require_active and account.status is not AccountStatus.ACTIVE:
        raise AccountSuspended(account.account_id, account.status.value)
    if posting.funds_needed is not None and (
        account.available + account.overdraft_limit < posting.funds_needed
    ):
        raise InsufficientCredits(normalize(account.available), normalize(posting.funds_needed))


def refusal(account_id: str, current: Account | None, posting: Posting) -> CreditsError | None:
    """Why a conditional update was refused, judged from the item's image at that moment
    (`ALL_OLD`): the domain error, or None when only the assumed overdraft was stale and
    the update should be planned again from `current`."""
    if current is None:
        return AccountNotFound(account_id)
    try:
        check_allowed(current, posting)
    except CreditsError as error:
        return error
    return None
