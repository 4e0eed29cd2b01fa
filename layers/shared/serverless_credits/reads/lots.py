"""The account's credit lots for the customer HTTP API (GET /v1/credits/balances).

What is left of each active lot is the account item's `lots` map alone (`domain.lots`),
read with one strongly consistent GetItem, so a lot is listed with its new remainder the
moment a debit, grant or expiry returns, and the listed amounts always add up to the
balance route's `balance` (the overdraft lot of an account in debt is listed too, negative:
`total` says so). What each lot was granted as - its initial amount, reference, source,
grant time - is its LOT item, written from the account's stream (`storage.lots`), read
with one BatchGetItem. A lot whose LOT item is not written yet, or the opening lot an
account from before lots has its balance as (`domain.lots.opening_lots`), is listed all
the same: its id says its priority, expiry and grant time (`domain.lots.rank_of`).

`status=all` is the history: every lot the account was ever granted, from its LOT items,
a page at a time (one GetItem and one Query), in lot-id order - the burn rank: priority,
expiry, age - continued by the signed cursor of the other paged routes (`reads.cursor`),
whose position here is the page's last lot id.

Cost, whatever the size of the ledger: active lots, 1 GetItem + 1 BatchGetItem (at most
`domain.lots.MAX_LOTS_ON_ITEM` keys; none for an account without lots); a history page, 1 GetItem +
1 Query of at most `limit` LOT items.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, Field

from serverless_credits.domain.errors import AccountNotFound, ValidationFailed
from serverless_credits.domain.lots import (
    LOT_ID_PATTERN,
    OVERDRAFT_LOT,
    UNITS,
    burn_order,
    lots_on,
    opening_lot_id,
    rank_of,
)
from serverless_credits.domain.models import Account, CamelModel, Lot, utc_now
from serverless_credits.domain.money import Credits, normalize
from serverless_credits.reads.cursor import CursorSigner
from serverless_credits.reads.queries import DEFAULT_LIMIT, MAX_LIMIT
from serverless_credits.storage.store import CreditsStore

logger = logging.getLogger(__name__)

SCOPE = "balances:all"  # what a history cursor is bound to (no other route's scope)
POSITION = re.compile(LOT_ID_PATTERN)
OVERDRAFT_ID = OVERDRAFT_LOT  # the overdraft lot's `balanceId`


class LotListing(StrEnum):
    """The `status` query parameter: which lots to list."""

    ACTIVE = "active"  # the lots on the account item, in burn order, summing to the balance
    ALL = "all"  # every lot ever granted, paged (the history)


class LotStatus(StrEnum):
    ACTIVE = "active"  # holds credit a debit may spend
    EXPIRED = "expired"  # past `expiresAt`: never spent by a debit
    EXHAUSTED = "exhausted"  # spent to nothing before its expiry
    OVERDRAFT = "overdraft"  # the account's debt, as a negative lot


class LotSource(StrEnum):
    """What opened a lot: the ledger entry's type, or `opening` for the balance an account
    had when lots were introduced."""

    TOPUP = "topup"
    GRANT = "grant"
    ADJUSTMENT = "adjustment"
    REFUND = "refund"
    VOID = "void"
    OPENING = "opening"


class BalanceLot(CamelModel):
    """One credit lot (Deepgram's `balanceId`, `amount`, `units`, `purchaseOrderId`, plus
    what ranks and dates it)."""

    balance_id: str = Field(description="The lot's id (`overdraft` for the account's debt)")
    amount: Credits = Field(
        description="Credits left in the lot (negative for `overdraft`; 0 for a lot no longer "
        "active in the history)"
    )
    units: str = Field(description="Always `credits`")
    purchase_order_id: str | None = Field(
        default=None, description="The reference the top-up or grant was given, if any"
    )
    priority: int | None = Field(
        default=None, description="0-100: higher is spent first (null for `overdraft`)"
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="When what is left expires (null: never)"
    )
    granted_at: AwareDatetime | None = Field(
        default=None,
        description="When the lot was opened, to the millisecond (null for `overdraft`)",
    )
    initial_amount: Credits | None = Field(
        default=None,
        description="Credits the lot was opened with (null until its record is written, "
        "shortly after the grant, and for `opening` and `overdraft`)",
    )
    status: LotStatus = Field(
        description="`active`; `expired` (past `expiresAt`: listed among the active lots "
        "while open holds still reserve its credit, until they close); `exhausted` (history "
        "only); `overdraft`"
    )
    source: LotSource | None = Field(
        default=None,
        description="What opened it: topup, grant, adjustment, refund, void, or `opening` "
        "(the balance before lots existed); null for `overdraft` and until its record is "
        "written",
    )


class BalancesView(CamelModel):
    """GET /v1/credits/balances: the account's credit lots."""

    balances: list[BalanceLot] = Field(
        description="status=active: the lots holding credit, in the order debits spend them "
        "(`overdraft` last). status=all: a page of every lot ever granted, in lot-id order"
    )
    total: Credits | None = Field(
        default=None,
        description="status=active: the sum of `amount` over `balances`, exactly the balance "
        "route's `balance` (null for status=all)",
    )
    has_more: bool = Field(
        default=False, description="status=all: more lots follow (read them with `nextCursor`)"
    )
    next_cursor: str | None = Field(
        default=None,
        description="status=all: pass as `cursor` to read the next page (null on the last)",
    )


# ---------------------------------------------------------------- views
def lot_view(
    lot_id: str,
    remaining: Decimal | None,
    granted: Lot | None,
    *,
    opening_id: str,
    now: datetime,
) -> BalanceLot:
    """A lot as the API shows it: its remainder from the account item (None: no longer
    on it), what it was granted as from its LOT item (None: not written yet, or the
    opening lot: its id ranks and dates it)."""
    rank = rank_of(lot_id)
    if rank is not None and rank.expired(now):
        status = LotStatus.EXPIRED  # on the item (not swept yet, or pinned by holds) or gone
    elif remaining is not None:
        status = LotStatus.ACTIVE
    else:
        status = LotStatus.EXHAUSTED
    amount = normalize(remaining) if remaining is not None else Decimal(0)
    if granted is not None:
        return BalanceLot(
            balance_id=lot_id,
            amount=amount,
            units=UNITS,
            purchase_order_id=granted.reference,
            priority=granted.priority,
            expires_at=granted.expires_at,
            # The id's grant time (ms), not the entry's: a lot's `grantedAt` does not
            # change when its LOT item arrives.
            granted_at=rank.granted if rank else granted.granted_at,
            initial_amount=normalize(granted.initial_amount),
            status=status,
            source=LotSource(granted.source.value),
        )
    return BalanceLot(
        balance_id=lot_id,
        amount=amount,
        units=UNITS,
        priority=rank.priority if rank else None,
        expires_at=rank.expires if rank else None,
        granted_at=rank.granted if rank else None,
        status=status,
        source=LotSource.OPENING if lot_id == opening_id else None,
    )


def overdraft_view(debt: Decimal) -> BalanceLot:
    return BalanceLot(
        balance_id=OVERDRAFT_ID, amount=normalize(debt), units=UNITS, status=LotStatus.OVERDRAFT
    )


def _account(store: CreditsStore, account_id: str) -> Account:
    account = store.accounts.get(account_id, consistent=True)
    if account is None:
        raise AccountNotFound(account_id)
    return account


# ---------------------------------------------------------------- active lots
def active_lots(
    store: CreditsStore, account_id: str, *, now: datetime | None = None
) -> BalancesView:
    """The lots holding credit, in burn order, the overdraft lot last: one GetItem of the
    account (strongly consistent) and one BatchGetItem of their LOT items. `status` is
    judged at `now` (default: the current time) as a debit judges a lot's expiry."""
    account = _account(store, account_id)
    on_item = lots_on(account)
    ranked = burn_order(on_item)
    granted = store.lots.get_many(account_id, ranked) if ranked else {}
    at, opening_id = now or utc_now(), opening_lot_id(account.created_at)
    listed = [
        lot_view(lot_id, on_item[lot_id], granted.get(lot_id), opening_id=opening_id, now=at)
        for lot_id in ranked
    ]
    if OVERDRAFT_LOT in on_item:
        listed.append(overdraft_view(on_item[OVERDRAFT_LOT]))
    total = normalize(sum((lot.amount for lot in listed), Decimal(0)))
    if total != account.balance:  # the write path keeps them equal: worth an alarm
        logger.warning(
            "lots do not sum to the balance",
            extra={"account_id": account_id, "lots": str(total), "balance": str(account.balance)},
        )
    return BalancesView(balances=listed, total=total)


# ---------------------------------------------------------------- history
def _unrecorded(
    on_item: Mapping[str, Decimal], recorded: Mapping[str, Lot], after: str | None, upto: str | None
) -> list[str]:
    """Lots on the item without a LOT item (the opening lot; a lot the stream has not
    recorded yet) whose ids fall in the span a history page covers: after the cursor, up
    to the page's last LOT item (to the end on the last page)."""
    return [
        lot_id
        for lot_id in on_item
        if lot_id != OVERDRAFT_LOT
        and lot_id not in recorded
        and (after is None or lot_id > after)
        and (upto is None or lot_id <= upto)
    ]


def lot_history(
    store: CreditsStore,
    account_id: str,
    signer: CursorSigner,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    now: datetime | None = None,
) -> BalancesView:
    """A page of every lot the account was ever granted, in lot-id order: one GetItem of
    the account (remainders) and one Query of at most `limit` LOT items. A lot no longer
    on the item is listed with amount 0: `expired` when past its expiry, else `exhausted`.
    Lots on the item without a LOT item yet are merged in where their ids sort."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}", {"field": "limit"})
    after = (
        signer.verify(cursor, account_id=account_id, scope=SCOPE, position=POSITION)
        if cursor is not None
        else None
    )
    account = _account(store, account_id)
    found, last = store.lots.page(account_id, limit, after)
    recorded = {lot.lot_id: lot for lot in found}
    on_item = lots_on(account)
    ids = sorted([*recorded, *_unrecorded(on_item, recorded, after, last)])
    page = ids[:limit]
    more = last is not None or len(ids) > limit
    at, opening_id = now or utc_now(), opening_lot_id(account.created_at)
    return BalancesView(
        balances=[
            lot_view(
                lot_id, on_item.get(lot_id), recorded.get(lot_id), opening_id=opening_id, now=at
            )
            for lot_id in page
        ],
        has_more=more,
        next_cursor=(
            signer.sign(account_id=account_id, scope=SCOPE, position=page[-1])
            if more and page
            else None
        ),
    )


# ---------------------------------------------------------------- the route
def balances(
    store: CreditsStore,
    account_id: str,
    signer: Callable[[], CursorSigner],
    *,
    status: LotListing = LotListing.ACTIVE,
    limit: int | None = None,
    cursor: str | None = None,
    now: datetime | None = None,
) -> BalancesView:
    """GET /v1/credits/balances: the active lots, or (`status=all`) a page of the history.
    `limit` and `cursor` page the history only: with the active lots (never more than
    `domain.lots.MAX_LOTS_ON_ITEM`, one answer) they are refused, naming the field.
    `signer` is asked for the cursor signer only for the history: the active lots need no
    key (in AWS, no read of the signing secret)."""
    if status is LotListing.ACTIVE:
        for name, value in (("limit", limit), ("cursor", cursor)):
            if value is not None:
                raise ValidationFailed(
                    f"'{name}' pages the history: use it with status=all", {"field": name}
                )
        return active_lots(store, account_id, now=now)
    return lot_history(
        store,
        account_id,
        signer(),
        limit=DEFAULT_LIMIT if limit is None else limit,
        cursor=cursor,
        now=now,
    )


__all__ = [
    "OVERDRAFT_ID",
    "SCOPE",
    "BalanceLot",
    "BalancesView",
    "LotListing",
    "LotSource",
    "LotStatus",
    "active_lots",
    "balances",
    "lot_history",
    "lot_view",
    "overdraft_view",
]
