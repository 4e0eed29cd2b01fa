"""Posting rules: how each kind of operation moves an account's figures, and what it needs
from the account to be allowed. Decided here once; storage turns a `Posting` into one
conditional update of the account item, and its refusal image back into a domain error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from serverless_credits.domain.errors import (
    AccountNotFound,
    AccountSuspended,
    CreditsError,
    HoldNotOpen,
    InsufficientCredits,
    TooManyOpenHolds,
)
from serverless_credits.domain.holds import MAX_OPEN_HOLDS, epoch
from serverless_credits.domain.models import (
    Account,
    AccountStatus,
    EntryType,
    HoldStatus,
    OpenHold,
    Operation,
    ReleaseReason,
)
from serverless_credits.domain.money import normalize

# Lifetime figures, so that `balance == total - used + adjusted` after every change:
# - `used`: credits consumed by debits and captures, net of refunds and voids (the one
#   definition of use, the same the daily usage counters sum: `domain.operations.usage_of`);
# - `total`: credits added by top-ups and grants;
# - `adjusted`: everything else, net: operators' adjustments either way and expired
#   credits. Neither is use, nor a credit the customer bought or was given.
_CONSUMING = frozenset({EntryType.DEBIT, EntryType.CAPTURE, EntryType.REFUND, EntryType.VOID})
_CREDITING = frozenset({EntryType.TOPUP, EntryType.GRANT})
_ADJUSTING = frozenset({EntryType.ADJUSTMENT, EntryType.EXPIRY})
# Billable calls: counted in `lifetimeRequests`; a hold counts when it is captured. A call
# refunded as failed (`failed_call`: every void, a refund flagged so) is taken back out,
# as the daily usage counters count it failed: `lifetimeRequests` is the lifetime sum of
# the stats' `successfulRequests`.
_CALLS = frozenset({EntryType.DEBIT, EntryType.CAPTURE})
_UNDOING = frozenset({EntryType.REFUND, EntryType.VOID})
# What a suspended or closed account may not do. Capturing or releasing a hold stays
# possible: the credits were set aside while the account was active.
_NEEDS_ACTIVE = frozenset({EntryType.DEBIT, EntryType.HOLD})


@dataclass(frozen=True)
class HoldFence:
    """The condition a hold step puts on the account item's `holds.<holdId>` entry.

    A reserve `opens` it (absent before, fewer than `max_open` holds); a capture, release
    or expiry closes it (present, holding exactly `held`). A capture also needs it unexpired
    at `live_at`, an expiry needs it expired at `expired_at` (epoch seconds): a capture
    racing an expiry, exactly one of them lands."""

    hold_id: str
    opens: OpenHold | None = None
    held: Decimal | None = None
    live_at: int | None = None
    expired_at: int | None = None
    max_open: int = MAX_OPEN_HOLDS

    def refusal(self, account: Account) -> CreditsError | None:
        """Why `account` (an image that refused the update) refuses this step, if it does."""
        holds = account.holds or {}
        current = holds.get(self.hold_id)
        if self.opens is not None:
            if current is not None:  # pragma: no cover - hold ids are random
                return HoldNotOpen(self.hold_id, HoldStatus.OPEN.value)
            if len(holds) >= self.max_open:
                return TooManyOpenHolds(account.account_id, self.max_open)
            return None
        return self._closing_refusal(current)

    def _closing_refusal(self, current: OpenHold | None) -> CreditsError | None:
        if current is None or current.amount != self.held:
            return HoldNotOpen(self.hold_id, "closed")
        if self.live_at is not None and current.expires_at <= self.live_at:
            return HoldNotOpen(self.hold_id, HoldStatus.EXPIRED.value)
        if self.expired_at is not None and current.expires_at > self.expired_at:
            return HoldNotOpen(self.hold_id, HoldStatus.OPEN.value)
        return None


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
    reserved: Decimal = Decimal(0)
    hold: HoldFence | None = None
    adjusted: Decimal = Decimal(0)

    def floor(self, overdraft_limit: Decimal) -> Decimal | None:
        if self.funds_needed is None:
            return None
        return normalize(self.funds_needed - overdraft_limit)


def posting_for(operation: Operation, now: datetime) -> Posting:
    """The posting of `operation` applied at `now` (the time hold fences are judged at)."""
    amount = operation.amount
    held = operation.held or Decimal(0)
    zero = Decimal(0)
    return Posting(
        balance=amount,
        # What is reserved is not available: a hold takes from `available` at once, its
        # capture or release gives back what it held, less what the capture took.
        available=amount - held,
        used=-amount if operation.type in _CONSUMING else zero,
        total=amount if operation.type in _CREDITING else zero,
        adjusted=amount if operation.type in _ADJUSTING else zero,
        requests=_requests(operation),
        require_active=operation.type in _NEEDS_ACTIVE,
        # Debits, holds and downward adjustments may not dig past the overdraft limit; a
        # capture only takes what its hold already set aside.
        funds_needed=_funds_needed(operation.type, amount, held),
        reserved=held,
        hold=_fence(operation, now),
    )


def _requests(operation: Operation) -> int:
    if operation.type in _CALLS:
        return 1
    if operation.type in _UNDOING and operation.failed_call:
        return -1
    return 0


def _funds_needed(entry_type: EntryType, amount: Decimal, held: Decimal) -> Decimal | None:
    if entry_type is EntryType.HOLD:
        return held
    if amount < 0 and entry_type is not EntryType.CAPTURE:
        return -amount
    return None


def _fence(operation: Operation, now: datetime) -> HoldFence | None:
    hold_id = operation.hold_id
    if hold_id is None or operation.held is None:
        return None
    if operation.type is EntryType.HOLD:
        if operation.expires_at is None:
            raise ValueError("a hold needs its expiry")
        opened = OpenHold(a=operation.held, x=epoch(operation.expires_at), c=epoch(now))
        return HoldFence(hold_id, opens=opened)
    held = -operation.held
    if operation.type is EntryType.CAPTURE:
        return HoldFence(hold_id, held=held, live_at=epoch(now))
    if operation.reason is ReleaseReason.EXPIRED:
        return HoldFence(hold_id, held=held, expired_at=epoch(now))
    return HoldFence(hold_id, held=held)


def check_allowed(account: Account, posting: Posting) -> None:
    """Raise the refusal an account's state gives `posting`, if any."""
    if posting.hold is not None:
        error = posting.hold.refusal(account)
        if error is not None:
            raise error
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
