"""Posting rules: how each kind of operation moves an account's figures, and what it needs
from the account to be allowed. Decided here once; storage turns a `Posting` into one
conditional update of the account item, and its refusal image back into a domain error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from serverless_credits.domain.errors import (
    AccountSuspended,
    CreditsError,
    HoldNotOpen,
    InsufficientCredits,
    TooManyOpenHolds,
)
from serverless_credits.domain.holds import MAX_OPEN_HOLDS, epoch
from serverless_credits.domain.lots import (
    LotPlan,
    default_priority,
    new_lot_id,
    plan_burn,
    plan_capture,
    plan_credit,
    plan_expiry,
    plan_reserve,
    plan_return,
)
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
    lots: LotPlan | None = None

    @property
    def expired_credit(self) -> Decimal:
        """Expired credit still on the item: a debit or reserve may not count on it."""
        return self.lots.expired if self.lots is not None else Decimal(0)

    def floor(self, overdraft_limit: Decimal) -> Decimal | None:
        if self.funds_needed is None:
            return None
        return normalize(self.funds_needed - overdraft_limit + self.expired_credit)


def posting_for(operation: Operation, now: datetime, view: Account) -> Posting:
    """The posting of `operation` applied at `now` (the time hold fences and lot expiry
    are judged at), its lots planned on `view`: the account's latest known image (the
    update's conditions refuse the posting if the item has moved since in a way that
    matters)."""
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
        lots=_lot_plan(operation, now, view),
    )


def _lot_plan(operation: Operation, now: datetime, view: Account) -> LotPlan | None:
    """How the operation moves the account's credit lots (`domain.lots`)."""
    entry_type, amount = operation.type, operation.amount
    if entry_type is EntryType.RELEASE:
        return None  # a release gives back `available`; lots pay only at capture
    if entry_type in (EntryType.HOLD, EntryType.CAPTURE):
        # A reserve moves no lot; a capture burns them at capture time.
        return plan_capture(view, -amount, now) if amount else plan_reserve(view, now)
    if entry_type is EntryType.EXPIRY:
        if operation.lot_id is None or operation.lot_seen is None:
            raise ValueError("an expiry names its lot and what it held")
        return plan_expiry(view, operation.lot_id, operation.lot_seen, -amount)
    if amount < 0:  # a debit or a downward adjustment
        return plan_burn(view, -amount, now)
    lot_id = _lot_id(operation, now)
    if entry_type in _UNDOING:
        return plan_return(view, amount, operation.returns or {}, lot_id, now)
    return plan_credit(view, amount, lot_id, now)


def _lot_id(operation: Operation, now: datetime) -> str:
    # Every credit the ledger makes names its lot; an operation leased before lots existed
    # gets one with its type's defaults.
    return operation.lot_id or new_lot_id(default_priority(operation.type), None, now, "0000")


def _requests(operation: Operation) -> int:
    if operation.type in _CALLS:
        return 1
    if operation.type in _UNDOING and operation.failed_call:
        return -1
    return 0


def _funds_needed(entry_type: EntryType, amount: Decimal, held: Decimal) -> Decimal | None:
    if entry_type is EntryType.HOLD:
        return held
    # An expiry takes only what is available (its lot plan's condition), never overdraft.
    if amount < 0 and entry_type not in (EntryType.CAPTURE, EntryType.EXPIRY):
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
        account.available - posting.expired_credit + account.overdraft_limit < posting.funds_needed
    ):
        # What the caller may count on: expired credit not yet swept is not available.
        available = account.available - posting.expired_credit
        raise InsufficientCredits(normalize(available), normalize(posting.funds_needed))
