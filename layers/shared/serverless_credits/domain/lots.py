"""Credit lots: every top-up, grant, positive adjustment (and a refund that cannot go back
where it came from) adds a lot with its own priority and optional expiry; debits, captures
and negative adjustments burn lots in order (docs/lots.md).

The account item keeps each active lot as `lots.<lotId> = remaining`, so that a change
stays ONE conditional update of it (docs/design-notes.md, "Lots and holds on the account
item"). A lot's id sorts in burn order - highest priority, then soonest expiry (none last),
then oldest - so a writer plans from the ids alone. This module decides every plan; storage
turns a `LotPlan` into the update's SET/REMOVE clauses and one condition per lot touched.

Guards, each closing a way a plan made from a cached image could go wrong:
- every lot a plan empties is conditioned on its exact remainder, every lot it only
  dips into on having more than it takes: a lot another writer burned meanwhile refuses it;
- `lotGen` counts lots added to the item and every burn is conditioned on it: a lot added
  since the plan (it may outrank the ones planned, or have expired already) refuses it;
- expired lots are never burned by a debit, and the expired credit still on the item is
  added to the funds floor, so a debit or reserve before the sweep cannot spend it either;
- an expiry takes at most what is `available` (never credit an open hold reserved); what
  it cannot take stays pinned on the item and is what captures burn first.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from serverless_credits.domain.errors import LotChanged, TooManyActiveLots, ValidationFailed
from serverless_credits.domain.models import Account, EntryType
from serverless_credits.domain.money import normalize

LOT_ID_PREFIX = "lot_"
LOT_ID_PATTERN = r"^lot_[0-9a-z]{21}$"
# The debt of an account in overdraft, as a lot of negative remainder: `balance` is the sum
# of `lots` at every version. Burned last, repaid first by the next credit.
OVERDRAFT_LOT = "overdraft"
# Sized from the account item's write-unit budget (bench/results/lots.md): each active lot
# adds about 28 bytes to the item every change writes (more with long amounts); with 50
# open holds and this many lots the item stays within 4 KB (4 write units a change).
MAX_ACTIVE_LOTS = 25
# A refund is never refused for the lot count: returning credits may reopen or add lots
# up to this many; past it, what would need one more lot goes to the last-ranked lot. Kept
# small so that the item stays within 4 KB with the longest amounts (measured: 30 lots,
# 50 holds and 15-digit amounts reach 4,096 bytes).
MAX_LOTS_ON_ITEM = MAX_ACTIVE_LOTS + 3
DEFAULT_PRIORITY = 50
# Given credit is spent before bought credit that expires at the same time.
DEFAULT_PRIORITIES: Mapping[EntryType, int] = {
    EntryType.TOPUP: 50,
    EntryType.GRANT: 60,
    EntryType.ADJUSTMENT: 50,
}
# A lot must outlive the staleness a writer's cached image may have, and be worth having.
MIN_LOT_LIFETIME = timedelta(minutes=5)
# Credits returned to a lot that has expired meanwhile go to a new lot expiring this long
# after the refund.
REFUND_LOT_LIFETIME = timedelta(days=30)
UNITS = "credits"

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PRIORITY_WIDTH, _EXPIRY_WIDTH, _GRANTED_WIDTH, _SALT_WIDTH = 2, 7, 8, 4
_NEVER = 36**_EXPIRY_WIDTH - 1  # "zzzzzzz": no expiry sorts after every expiry


def _base36(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])
    if number:
        raise ValueError("number too large for its field")
    return "".join(reversed(digits))


@dataclass(frozen=True)
class LotRank:
    """What a lot id says: enough to order lots and to tell an expired one."""

    priority: int
    expires_at: int | None  # epoch seconds
    granted_ms: int

    @property
    def expires(self) -> datetime | None:
        return None if self.expires_at is None else datetime.fromtimestamp(self.expires_at, UTC)

    @property
    def granted(self) -> datetime:
        return datetime.fromtimestamp(self.granted_ms / 1000, UTC)

    def expired(self, now: datetime) -> bool:
        """Past its expiry at `now`, in whole epoch seconds (as hold expiry is judged)."""
        return self.expires_at is not None and self.expires_at <= int(now.timestamp())


def new_lot_id(
    priority: int, expires_at: datetime | None, granted_at: datetime, salt: str | None = None
) -> str:
    """A lot id that sorts in burn order: `lot_` + base36 of (100 - priority, expiry epoch
    seconds or never, grant epoch milliseconds) + 4 random characters."""
    if not 0 <= priority <= 100:
        raise ValueError("priority is 0-100")
    expiry = _NEVER if expires_at is None else int(expires_at.timestamp())
    return (
        LOT_ID_PREFIX
        + _base36(100 - priority, _PRIORITY_WIDTH)
        + _base36(expiry, _EXPIRY_WIDTH)
        + _base36(int(granted_at.timestamp() * 1000), _GRANTED_WIDTH)
        + (salt if salt is not None else secrets.token_hex(2))
    )


def rank_of(lot_id: str) -> LotRank | None:
    """The rank a lot id encodes; None for the overdraft lot or anything else."""
    body = lot_id[len(LOT_ID_PREFIX) :]
    if not lot_id.startswith(LOT_ID_PREFIX) or len(body) != 21:
        return None
    try:
        priority = 100 - int(body[:2], 36)
        expiry = int(body[2:9], 36)
        granted = int(body[9:17], 36)
    except ValueError:
        return None
    return LotRank(priority, None if expiry == _NEVER else expiry, granted)


def lot_expired(lot_id: str, now: datetime) -> bool:
    rank = rank_of(lot_id)
    return rank is not None and rank.expired(now)


def burn_order(lot_ids: Iterable[str]) -> list[str]:
    """Lots in the order they are burned (the overdraft lot is no credit: left out)."""
    return sorted(lot_id for lot_id in lot_ids if lot_id != OVERDRAFT_LOT)


def default_priority(entry_type: EntryType) -> int:
    return DEFAULT_PRIORITIES.get(entry_type, DEFAULT_PRIORITY)


def check_lot_expiry(expires_at: datetime | None, now: datetime) -> None:
    """A new lot's expiry is at least `MIN_LOT_LIFETIME` away (a writer's cached image of
    the account is never older than that: docs/lots.md)."""
    if expires_at is not None and expires_at < now + MIN_LOT_LIFETIME:
        raise ValidationFailed(
            f"expiresAt must be at least {int(MIN_LOT_LIFETIME.total_seconds())} seconds ahead",
            {"field": "expiresAt"},
        )


def opening_lots(balance: Decimal, account_created: datetime) -> dict[str, Decimal]:
    """The lots of an account written before lots existed: its balance as one lot with the
    default priority and no expiry (or its debt as the overdraft lot)."""
    if balance > 0:
        return {opening_lot_id(account_created): balance}
    if balance < 0:
        return {OVERDRAFT_LOT: balance}
    return {}


def opening_lot_id(account_created: datetime) -> str:
    """The id `opening_lots` gives the balance of an account from before lots:
    deterministic (the account's creation time, a fixed salt), so listings name it before
    the account's next write gives it to the item."""
    return new_lot_id(DEFAULT_PRIORITY, None, account_created, salt="0000")


def lots_on(account: Account) -> dict[str, Decimal]:
    """The account's lots: its item's `lots` map or, for an item written before lots, the
    opening lot its next write will give it (`storage.accounts.open_lots`)."""
    if account.lots is not None:
        return dict(account.lots)
    return opening_lots(account.balance, account.created_at)


# ---------------------------------------------------------------- plans
class Check(StrEnum):
    """What a move requires of its lot's entry in the item."""

    ABSENT = "absent"  # not there: the move opens it
    EXACT = "exact"  # exactly `seen`: the move empties it, or repays or expires an exact part
    MORE_THAN = "more_than"  # more than the move takes: it stays on the item
    PRESENT = "present"  # there, whatever it holds: the move adds to it
    NONE = "none"  # nothing: the overdraft lot, bounded by the funds floor instead


@dataclass(frozen=True)
class LotMove:
    lot_id: str
    delta: Decimal  # signed change of the lot's remainder (0: a condition only)
    check: Check
    seen: Decimal = Decimal(0)  # the remainder the plan saw (EXACT)

    @property
    def empties(self) -> bool:
        """The lot leaves the item (its remainder reaches zero)."""
        return self.check is Check.EXACT and self.seen + self.delta == 0

    @property
    def after(self) -> Decimal:
        return normalize(self.seen + self.delta)


@dataclass(frozen=True)
class LotPlan:
    """How one change moves the account's lots, and what it assumes of them."""

    moves: tuple[LotMove, ...] = ()
    # The `lotGen` the plan was made at: no lot added since (None: not conditioned).
    generation: int | None = None
    # Lots the plan adds to the item: `lotGen` goes up, and the item may have at most
    # `max_lots` lots afterwards (None: not conditioned).
    opens: int = 0
    max_lots: int | None = None
    # Expired credit on the item when planned: a debit's or reserve's funds floor is raised
    # by it, so that nothing expired is spent before the sweep.
    expired: Decimal = Decimal(0)
    # Conditions on `available` (captures of pinned credit, expiries).
    available_is: Decimal | None = None
    available_at_least: Decimal | None = None

    def allocation(self) -> dict[str, Decimal]:
        """Which lots paid (negative) or received (positive) how much: on the ledger entry."""
        return {move.lot_id: normalize(move.delta) for move in self.moves if move.delta}


@dataclass
class _Planner:
    lots: dict[str, Decimal]
    now: datetime
    moves: list[LotMove] = field(default_factory=list)

    def burn(self, lot_ids: Iterable[str], amount: Decimal) -> Decimal:
        """Take up to `amount` from `lot_ids` in order; what is left to take."""
        for lot_id in lot_ids:
            if amount <= 0:
                break
            remaining = self.lots[lot_id]
            if remaining <= 0:
                continue
            if remaining <= amount:
                self.moves.append(LotMove(lot_id, -remaining, Check.EXACT, remaining))
                amount -= remaining
            else:
                self.moves.append(LotMove(lot_id, -amount, Check.MORE_THAN, remaining))
                amount = Decimal(0)
        return amount

    def to_overdraft(self, amount: Decimal) -> None:
        if amount > 0:
            self.moves.append(LotMove(OVERDRAFT_LOT, -amount, Check.NONE))


def _lots(view: Account) -> dict[str, Decimal]:
    return dict(view.lots or {})


def _expired_ids(lots: Mapping[str, Decimal], now: datetime) -> list[str]:
    return [lot_id for lot_id in burn_order(lots) if lot_expired(lot_id, now)]


def _live_ids(lots: Mapping[str, Decimal], now: datetime) -> list[str]:
    return [lot_id for lot_id in burn_order(lots) if not lot_expired(lot_id, now)]


def expired_credit(view: Account, now: datetime) -> Decimal:
    """Credit on the item in lots past their expiry (not yet swept, or pinned by holds)."""
    lots = _lots(view)
    return sum((lots[lot_id] for lot_id in _expired_ids(lots, now)), Decimal(0))


def spendable_credit(view: Account, now: datetime) -> Decimal:
    """What a debit or reserve may take: available, less expired credit, plus overdraft."""
    return view.available - expired_credit(view, now) + view.overdraft_limit


def plan_burn(view: Account, amount: Decimal, now: datetime) -> LotPlan:
    """A debit or a negative adjustment: live lots in burn order, then the overdraft lot
    (the funds floor, raised by the expired credit, bounds it)."""
    planner = _Planner(_lots(view), now)
    planner.to_overdraft(planner.burn(_live_ids(planner.lots, now), amount))
    return LotPlan(
        tuple(planner.moves),
        generation=view.lot_gen,
        expired=expired_credit(view, now),
    )


def plan_reserve(view: Account, now: datetime) -> LotPlan:
    """A reserve moves no lot (lots pay at capture), but its funds floor counts expired
    credit as gone, which needs every lot on the item known."""
    return LotPlan(generation=view.lot_gen, expired=expired_credit(view, now))


def plan_capture(view: Account, amount: Decimal, now: datetime) -> LotPlan:
    """A capture burns lots at capture time: first expired credit the holds pinned (what an
    expiry could not take because holds reserved it), then live lots in burn order, then
    the overdraft lot (a hold never needs more than its reserve left)."""
    planner = _Planner(_lots(view), now)
    expired_ids = _expired_ids(planner.lots, now)
    expired = sum((planner.lots[lot_id] for lot_id in expired_ids), Decimal(0))
    # An expiry takes min(expired, available): the rest is pinned by the holds.
    pinned = expired - min(expired, max(view.available, Decimal(0)))
    available_is = available_at_least = None
    if pinned > 0:
        available_is = view.available  # pinned credit depends on available exactly
    elif expired > 0:
        available_at_least = expired  # still nothing pinned
    rest = amount - min(amount, pinned)
    planner.burn(expired_ids, min(amount, pinned))
    planner.to_overdraft(planner.burn(_live_ids(planner.lots, now), rest))
    return LotPlan(
        tuple(planner.moves),
        generation=view.lot_gen,
        available_is=available_is,
        available_at_least=available_at_least,
    )


def plan_credit(view: Account, amount: Decimal, lot_id: str, now: datetime) -> LotPlan:
    """A top-up, grant or positive adjustment: repays the overdraft lot first, the rest
    opens the operation's lot. Refused when that would pass `MAX_ACTIVE_LOTS`."""
    lots = _lots(view)
    moves: list[LotMove] = []
    debt = -lots.get(OVERDRAFT_LOT, Decimal(0))
    if debt > 0:
        repaid = min(debt, amount)
        moves.append(LotMove(OVERDRAFT_LOT, repaid, Check.EXACT, -debt))
        amount -= repaid
    else:  # the plan assumes no debt: a debt it did not see refuses it
        moves.append(LotMove(OVERDRAFT_LOT, Decimal(0), Check.ABSENT))
    if amount <= 0:
        return LotPlan(tuple(moves))
    if lot_id in lots:  # pragma: no cover - lot ids are salted
        raise ValueError("lot already exists")
    active = len([lot for lot in lots if lot != OVERDRAFT_LOT])
    if active >= MAX_ACTIVE_LOTS:
        raise TooManyActiveLots(view.account_id, MAX_ACTIVE_LOTS)
    moves.append(LotMove(lot_id, amount, Check.ABSENT))
    # The overdraft lot, present or not, is one of the item's entries: count it.
    cap = MAX_ACTIVE_LOTS + (1 if OVERDRAFT_LOT in lots else 0)
    return LotPlan(tuple(moves), opens=1, max_lots=cap)


def plan_return(
    view: Account,
    amount: Decimal,
    returns: Mapping[str, Decimal],
    new_lot_id: str,
    now: datetime,
) -> LotPlan:
    """A refund or void of `amount`: each share in `returns` goes back to the lot that paid
    it - added to it while it is on the item, reopening it once it was spent - unless that
    lot has expired (or is the overdraft, repaid since). Those shares, and whatever
    `returns` does not place (a charge from before lots), go to the operation's new lot."""
    lots = _lots(view)
    moves: list[LotMove] = []
    reopened: dict[str, Decimal] = {}
    homeless = amount - sum((share for share in returns.values() if share > 0), Decimal(0))
    for lot_id, share in sorted(returns.items()):
        if share <= 0:
            continue
        if lot_id == OVERDRAFT_LOT:
            debt = -lots.get(OVERDRAFT_LOT, Decimal(0))
            repaid = min(debt, share) if debt > 0 else Decimal(0)
            if repaid:
                moves.append(LotMove(OVERDRAFT_LOT, repaid, Check.EXACT, -debt))
            else:  # the plan assumes no debt: a debt it did not see refuses it
                moves.append(LotMove(OVERDRAFT_LOT, Decimal(0), Check.ABSENT))
            homeless += share - repaid
        elif lot_expired(lot_id, now) or rank_of(lot_id) is None:
            homeless += share
        elif lot_id in lots:
            moves.append(LotMove(lot_id, share, Check.PRESENT))
        else:
            reopened[lot_id] = share
    if homeless > 0:
        reopened[new_lot_id] = reopened.get(new_lot_id, Decimal(0)) + homeless
    if len(lots) + len(reopened) > MAX_LOTS_ON_ITEM:
        last = next((lot for lot in reversed(_live_ids(lots, now))), None)
        if last is not None:  # the item is full: the last-ranked live lot takes them
            moves.append(LotMove(last, sum(reopened.values(), Decimal(0)), Check.PRESENT))
            return LotPlan(_merged(moves))
    moves.extend(LotMove(lot_id, share, Check.ABSENT) for lot_id, share in reopened.items())
    cap = MAX_LOTS_ON_ITEM if reopened else None
    return LotPlan(_merged(moves), opens=len(reopened), max_lots=cap)


def _merged(moves: list[LotMove]) -> tuple[LotMove, ...]:
    """One move per lot (a storage update may name a path once)."""
    merged: dict[str, LotMove] = {}
    for move in moves:
        earlier = merged.get(move.lot_id)
        if earlier is None:
            merged[move.lot_id] = move
        else:
            merged[move.lot_id] = LotMove(
                move.lot_id, earlier.delta + move.delta, earlier.check, earlier.seen
            )
    return tuple(merged.values())


def plan_expiry(view: Account, lot_id: str, seen: Decimal, amount: Decimal) -> LotPlan:
    """The expiry of `amount` of lot `lot_id`, planned when it held `seen`: refused
    (`LotChanged`) when the lot holds anything else now, and conditioned on `available`
    covering it, so an expiry never takes credit an open hold reserved."""
    lots = _lots(view)
    if lots.get(lot_id) != seen or view.available < amount:
        raise LotChanged(lot_id)  # planned on another state: the expirer plans it again
    return LotPlan((LotMove(lot_id, -amount, Check.EXACT, seen),), available_at_least=amount)


def expirable(view: Account, lot_id: str, now: datetime) -> Decimal:
    """What an expiry of `lot_id` may take now: its remainder, at most what is available
    (the rest is pinned by open holds until they close); 0 when it has nothing to take."""
    remaining = (view.lots or {}).get(lot_id, Decimal(0))
    if remaining <= 0 or not lot_expired(lot_id, now):
        return Decimal(0)
    return normalize(min(remaining, max(view.available, Decimal(0))))


def expired_lots(view: Account, now: datetime) -> list[str]:
    """The lots on the item past their expiry at `now`, in burn order."""
    return _expired_ids(_lots(view), now)


def returns_of(
    paid: Mapping[str, Decimal], already: Decimal, amount: Decimal
) -> dict[str, Decimal]:
    """Where a refund of `amount` goes, given the lots that paid the charge (`paid`, the
    charge's entry's negative allocation) and what earlier refunds of it returned: the
    lots in reverse burn order (the overdraft first, then the lot burned last), skipping
    what earlier refunds gave back. A charge from before lots has no allocation: {}."""
    order = [OVERDRAFT_LOT] if OVERDRAFT_LOT in paid else []
    order += list(reversed(burn_order(paid)))
    shares: dict[str, Decimal] = {}
    for lot_id in order:
        portion = -paid[lot_id]
        skipped = min(portion, already)
        already -= skipped
        portion -= skipped
        take = min(portion, amount)
        if take > 0:
            shares[lot_id] = normalize(take)
            amount -= take
    # Whatever is left (a charge from before lots) goes to the refund's new lot.
    return shares


def refund_lot_id(paid: Mapping[str, Decimal], now: datetime) -> str:
    """The lot a refund's homeless shares open: the highest priority among the lots that
    paid, expiring `REFUND_LOT_LIFETIME` after the refund when any of them had an expiry."""
    ranks = [rank for rank in map(rank_of, paid) if rank is not None]
    priority = max((rank.priority for rank in ranks), default=DEFAULT_PRIORITY)
    expiring = any(rank.expires_at is not None for rank in ranks)
    return new_lot_id(priority, now + REFUND_LOT_LIFETIME if expiring else None, now)


__all__ = [
    "DEFAULT_PRIORITY",
    "LOT_ID_PATTERN",
    "MAX_ACTIVE_LOTS",
    "MAX_LOTS_ON_ITEM",
    "OVERDRAFT_LOT",
    "UNITS",
    "Check",
    "LotMove",
    "LotPlan",
    "LotRank",
    "burn_order",
    "check_lot_expiry",
    "default_priority",
    "expirable",
    "expired_credit",
    "expired_lots",
    "lot_expired",
    "lots_on",
    "new_lot_id",
    "opening_lot_id",
    "opening_lots",
    "plan_burn",
    "plan_capture",
    "plan_credit",
    "plan_expiry",
    "plan_reserve",
    "plan_return",
    "rank_of",
    "refund_lot_id",
    "returns_of",
    "spendable_credit",
]
